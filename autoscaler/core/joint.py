"""Joint choice of replicas × batching: the pair that costs the fewest replica-hours at the SLO.

The batching tuner (`core.batching`) ranks parameters by per-replica capacity at the SLO, and the
replica planner turns a capacity into a replica count. Taken one after the other, a higher
capacity always looked worth a rolling restart once it beat `min_gain`, even when the replica
count it buys is the same (at `min_replicas`, or when the count rounds to the same integer), and
the restart wave itself was never priced. Here every candidate is a (batching, replicas) pair,
and its cost is what the cluster pays:

    cost = replicas × horizon_s  +  restart wave (only if the batching changes)

in pod-seconds. The horizon is how long the choice stands: a new batching cannot change again
for `min_rollout_interval_s`, floored at `HORIZON_FLOOR_S`. The restart wave is the rolling update
the batching file needs (TF Serving reads `--batching_parameters_file` once, at startup): with
`maxUnavailable: 0` (the actuator refuses anything else) the Deployment controller adds
`maxSurge` new pods, waits for them to become available, removes as many old ones, and repeats
(kubernetes pkg/controller/deployment/rolling.go, `reconcileNewReplicaSet` /
`reconcileOldReplicaSets`), so it runs ceil(replicas / maxSurge) waves of one pod startup each,
with `maxSurge` extra pods throughout: maxSurge × waves × startup_s extra pod-seconds.

Pure and deterministic: ties go to the pair without a restart, then to the caller's order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec

HORIZON_FLOOR_S = 3_600.0  # a batching choice is judged over at least an hour


@dataclass(frozen=True)
class PairOption:
    """One candidate: run `replicas` pods with `params` (per-replica `capacity_rps` at the SLO)."""

    params: BatchingParams
    capacity_rps: float
    replicas: int
    restart: bool  # True when choosing it changes the batching, i.e. rolls every pod


@dataclass(frozen=True)
class JointChoice:
    option: PairOption
    cost_pod_s: float
    costs_pod_s: tuple[float, ...]  # per option, in the caller's order
    reason: str


def horizon_s(spec: ServingAutoscalerSpec) -> float:
    """How long a batching choice stands: the rollout interval, at least `HORIZON_FLOOR_S`."""
    return max(spec.batching.min_rollout_interval_s, HORIZON_FLOOR_S)


def restart_wave_pod_s(replicas: int, startup_s: float, max_surge: int = 1) -> float:
    """Extra pod-seconds of a rolling restart with maxUnavailable 0 and `max_surge` surge pods."""
    if replicas < 0 or max_surge < 1 or not (math.isfinite(startup_s) and startup_s >= 0.0):
        raise ValueError(
            f"restart wave: expected replicas >= 0, max_surge >= 1 and a finite startup_s >= 0 "
            f"(got {replicas}, {max_surge}, {startup_s!r})"
        )
    waves = math.ceil(replicas / max_surge)
    return float(min(max_surge, replicas) * waves * startup_s)


def pair_cost_pod_s(option: PairOption, horizon: float, startup_s: float, max_surge: int = 1) -> float:
    wave = restart_wave_pod_s(option.replicas, startup_s, max_surge) if option.restart else 0.0
    return option.replicas * horizon + wave


def choose_pair(options: Sequence[PairOption], *, horizon: float, startup_s: float, max_surge: int = 1) -> JointChoice:
    """The option with the fewest pod-seconds over `horizon` (restart wave included)."""
    if not options:
        raise ValueError("choose_pair: expected at least one option")
    if not (math.isfinite(horizon) and horizon > 0.0):
        raise ValueError(f"choose_pair: expected a finite horizon > 0 s (got {horizon!r})")
    costs = tuple(pair_cost_pod_s(o, horizon, startup_s, max_surge) for o in options)
    best = min(range(len(options)), key=lambda i: (costs[i], options[i].restart, i))
    win = options[best]
    keep = next((i for i, o in enumerate(options) if not o.restart), None)
    if keep is None or keep == best:
        others = [i for i in range(len(options)) if i != best]
        if others:
            alt = min(others, key=lambda i: costs[i])
            saving_h = (options[best].replicas - options[alt].replicas) * horizon / 3600.0
            wave_h = (costs[alt] - options[alt].replicas * horizon) / 3600.0
            reason = (
                f"{options[alt].replicas} replicas with new batching save {max(0.0, -saving_h):.2f} replica-h over "
                f"{horizon / 3600:.1f} h, not more than the restart wave's {wave_h:.2f}"
            )
        else:
            reason = "only option"
    else:
        saving_h = (options[keep].replicas - win.replicas) * horizon / 3600.0
        wave_h = (costs[best] - win.replicas * horizon) / 3600.0
        reason = (
            f"{options[keep].replicas} -> {win.replicas} replicas saves {saving_h:.2f} replica-h over "
            f"{horizon / 3600:.1f} h, more than the restart wave's {wave_h:.2f}"
        )
    return JointChoice(win, costs[best], costs, reason)
