"""Signals the request metrics do not carry: GPU utilization and TF Serving's model status.

Owned here, beside `decide.py`, so the decision function stays one readable tick: this module
turns the two signals into (a) the ready capacity the replica rules use and (b) an independent
check on the calibrated capacity model. Both are pure and both are inert when the signal is
absent (the simulator has neither), so a decision without them is exactly the decision the request metrics alone give.

GPU saturation check. DCGM's `DCGM_FI_DEV_GPU_UTIL` is the fraction of the sample period during
which one or more kernels ran on the device (NVIDIA DCGM field reference, "GPU utilization");
the capacity model predicts the same quantity for the served rate per replica: the per-thread
busy fraction `Steady.utilization` of `c` batch threads that really run in parallel, combined
as P(at least one busy) = 1 − (1 − u)^c (exact for one thread, the GPU profiles' case). The
model is calibrated from latency only (`decide._calibrated`); a GPU busy near 100 % while the
model predicts, say, 60 % means batches take longer than the model thinks and the capacity it
reports is too high. Latency will show it only once the queue builds. The check's answer is
bounded on purpose: it never raises the replica count by itself, it forbids a scale-down below
the last desired count while it holds, binds as `Binding.GPU_SATURATION` with the numbers in the
reason, and flags the calibration in the notes. It needs observed GPU busy >= `GPU_SATURATED`
and busy − modelled >= `GPU_MODEL_GAP`, both above DCGM's whole-percent rounding and the
sampling-window mismatch (DCGM samples ~1 s, the rate window is ~1 m).

Model status. A pod Kubernetes calls Ready may still be loading its SavedModel when its probe
checks only the port; TF Serving says AVAILABLE only once a version serves. The ready count is
cut to the pods that answered AVAILABLE plus those that did not answer (their Kubernetes
readiness stands), and the pods cut are counted as pending: the calibration waits for them, the
burst threshold counts only serving pods, and a scale-up does not cascade while they load. A
version rollout (two versions live) is named in the notes and the decision record.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from autoscaler.core.capacity import CapacityModel
from autoscaler.core.types import ModelStatus, Observation, SignalStatus
from autoscaler.spec.types import BatchingParams

GPU_SATURATED = 0.90  # observed busy fraction at or above which the GPU counts as saturated
GPU_MODEL_GAP = 0.25  # ... when the model predicts at least this much less (absolute busy fraction)


@dataclass(frozen=True)
class GpuCheck:
    """The GPU saturation check of one tick. `observed`/`modelled` are None when not available."""

    observed: float | None = None
    modelled: float | None = None
    saturated: bool = False  # the model underestimates the GPU's work: no scale-down
    note: str = ""

    def hold_text(self, rate_per_replica_rps: float | None = None) -> str:
        """The reason clause when the check keeps the count."""
        o, m = self.observed or 0.0, self.modelled or 0.0
        at = f" at {rate_per_replica_rps:.3g} rps/replica" if rate_per_replica_rps is not None else ""
        return (
            f"GPU busy {o:.0%} while the capacity model predicts {m:.0%}{at}: the model underestimates "
            "service time, so no scale-down"
        )


NO_GPU = GpuCheck()


def modelled_busy_fraction(model: CapacityModel, rate_per_replica_rps: float, params: BatchingParams) -> float:
    """P(at least one batch executing) per replica at this rate: 1 − (1 − u)^c over c parallel threads."""
    u = min(1.0, max(0.0, model.steady(rate_per_replica_rps, params).utilization))
    c = model.service.servers(params)
    return 1.0 - (1.0 - u) ** c


def gpu_check(
    model: CapacityModel,
    params: BatchingParams,
    obs: Observation,
    ready: int,
    fresh: bool,
    quantize: Callable[[float], float] = float,
) -> tuple[GpuCheck, float | None]:
    """The check for this tick and the served rate per replica it compared at (None when inert).

    Inert (`NO_GPU`-like, not saturated) without a fresh, OK GPU signal, without served load or
    without a ready pod: absent data changes nothing. `quantize` rounds the rate per replica (the
    caller's grid, so the model's solves are shared across ticks).
    """
    sig = obs.gpu_util
    if not fresh or sig.status is not SignalStatus.OK or sig.value is None or not math.isfinite(sig.value):
        return NO_GPU, None
    observed = min(1.0, max(0.0, sig.value))
    served = obs.request_rate_rps.value if obs.request_rate_rps.ok else None
    if served is None or not math.isfinite(served) or served <= 0.0 or ready < 1:
        return GpuCheck(observed, None, False, f"gpu: busy {observed:.0%} (no served load to compare)"), None
    rate = quantize(served / ready)
    try:
        point = model.steady(rate, params)
        modelled = modelled_busy_fraction(model, rate, params) if not point.overloaded else 1.0
    except (ValueError, ArithmeticError):
        return GpuCheck(observed, None, False, f"gpu: busy {observed:.0%} (model failed)"), None
    saturated = observed >= GPU_SATURATED and observed - modelled >= GPU_MODEL_GAP
    note = f"gpu: busy {observed:.0%} observed vs {modelled:.0%} modelled at {rate:.3g} rps/replica"
    if saturated:
        note += "; calibration suspect (service time underestimated)"
    return GpuCheck(observed, modelled, saturated, note), rate


def model_ready(status: ModelStatus | None, ready: int, pending: int) -> tuple[int, int, str]:
    """(ready, pending, note) with TF Serving's model status applied; unchanged when not asked."""
    if status is None:
        return ready, pending, ""
    bound = max(0, status.ready_bound)
    cut = max(0, ready - bound)
    note = f"model status: {status.text()}"
    if cut:
        note += f"; {cut} Ready pod{'s' if cut != 1 else ''} not serving yet (counted as pending)"
    if status.rollout:
        note += f"; version rollout in progress (versions {', '.join(map(str, status.live_versions))})"
    return ready - cut, pending + cut, note
