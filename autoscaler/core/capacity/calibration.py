"""Online calibration of the capacity model: when to learn the service scale, and how much.

Owns rule 1 of docs/design.md: the profile's service times are corrected online by a scale
learned from TF Serving's own latency histogram (`calibrate`, one pure EWMA step), and only in the
regime the model can explain (`calibration_regime`: fresh data, all pods ready, no rejections,
load below capacity, latency not a queue, enough requests for the quantile), once that has held
for a metrics lag, gently (weight 0.2, at most 5 % per tick), against the model's quantile as
TF Serving's buckets report it (`calibrated`, which `decide()` calls once a tick). Learning from
an overloaded replica collapsed the capacity estimate and pinned replicas at max, hence the gate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autoscaler.core.cache import quantized_rate, scale_step, step_scale
from autoscaler.core.capacity.model import CapacityModel, cached_model, shared_model
from autoscaler.core.types import Observation, finite_nonneg, fmt_rps
from autoscaler.spec.types import BatchingParams, ServiceProfile, ServingAutoscalerSpec

if TYPE_CHECKING:  # core.state stores a Calibration: a runtime import would be circular
    from autoscaler.core.state import State


@dataclass(frozen=True)
class Calibration:
    """Online correction of the profile: the real replica serves `service_scale` × slower."""

    service_scale: float = 1.0
    samples: int = 0


CALIBRATION_BOUNDS = (0.5, 3.0)
# TF Serving's request_latency buckets are Exponential(10 µs, 1.8, 33) (`histogram.py`): a
# histogram_quantile interpolates inside a bucket 1.8x wide, so a raw p99 is biased by up to 80 %.
# The gate below passes the model's prediction through the same buckets before the two are compared
# (`histogram_quantile_ms`).


def calibrate(
    cal: Calibration,
    profile: ServiceProfile,
    params: BatchingParams,
    *,
    rate_per_replica_rps: float,
    observed_latency_ms: float,
    quantile: float,
    observed_batch_size: float | None = None,
    model: CapacityModel | None = None,
    predicted_latency_ms: float | None = None,
) -> Calibration:
    """One EWMA step of the service scale from an observation of the real server (pure).

    The model at the current scale predicts the latency at `quantile` for the observed
    per-replica rate; the scale moves by the ratio observed/predicted in log space with weight
    max(1/(samples+1), 0.2), so it converges to the scale at which the model reproduces what
    TF Serving reports, and is clamped to `CALIBRATION_BOUNDS`. If the model calls the replica
    overloaded at a rate it serves with finite latency, the scale is too high and is cut. An
    observed mean batch size, when given, refines the step: at a given rate a slower server
    forms larger batches. `model` is the model to compare with (default: `cached_model` at the
    calibration's scale; a caller may pass one at a slightly rounded scale to share its caches).
    `predicted_latency_ms`, when given, replaces the model's exact quantile as the prediction: the
    caller's model value in the same terms as the observation (e.g. as TF Serving's buckets report it).
    """
    for name, value in (("rate_per_replica_rps", rate_per_replica_rps), ("observed_latency_ms", observed_latency_ms)):
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"{name}: expected a finite value >= 0 (got {value!r})")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile: expected a value in (0, 1) (got {quantile!r})")
    if observed_batch_size is not None and not (math.isfinite(observed_batch_size) and observed_batch_size >= 1):
        raise ValueError(f"observed_batch_size: expected a finite value >= 1 (got {observed_batch_size!r})")
    if observed_latency_ms <= 0.0:
        return cal
    if model is None:
        model = cached_model(profile, cal.service_scale)
    if predicted_latency_ms is None:
        predicted = model.latency_quantile_ms(rate_per_replica_rps, params, quantile)
    elif not predicted_latency_ms > 0.0:  # also NaN
        raise ValueError(f"predicted_latency_ms: expected a value > 0 (got {predicted_latency_ms!r})")
    else:
        predicted = predicted_latency_ms
    log_ratio = math.log(observed_latency_ms / predicted) if math.isfinite(predicted) else math.log(0.8)
    if observed_batch_size is not None and rate_per_replica_rps > 0.0:
        predicted_b = model.mean_batch_size(rate_per_replica_rps, params)
        if observed_batch_size > 1.5 and predicted_b > 1.5:
            log_ratio = 0.75 * log_ratio + 0.25 * math.log(observed_batch_size / predicted_b)
    weight = max(1.0 / (cal.samples + 1), 0.2)
    low, high = CALIBRATION_BOUNDS
    scale = min(high, max(low, cal.service_scale * math.exp(weight * log_ratio)))
    return Calibration(scale, cal.samples + 1)


# calibrate() weighs a sample by max(1/(samples+1), 0.2): the first reading would be taken at face
# value. We start it at this many samples, so every reading weighs 0.2 from the first one on ...
_CALIBRATION_PRIOR_SAMPLES = 4
# ... and the service scale moves at most 5 % per tick, so one outlier cannot swing capacity.
CALIBRATION_MAX_STEP = 0.05
# Latency this far above the SLO is a queue (overload or its aftermath), not slow service.
CALIBRATION_MAX_LATENCY_SLO = 1.5
CALIBRATION_MIN_LOAD = 0.05  # below 5 % of capacity per replica the latency says little about service
# A quantile needs requests beyond it: at least this many expected above the SLO quantile in the
# window (taken as metrics_lag_s, shorter than any real rate window) -- 500 requests for a p99.
# With fewer, the observed quantile is close to the window's maximum and biased low.
CALIBRATION_MIN_TAIL = 5.0


def calibration_regime(
    spec: ServingAutoscalerSpec, state: State, obs: Observation, ready: int, capacity_rps: float, now_s: float
) -> str:
    """'' when the replicas are in the regime the capacity model explains, else why they are not."""
    current = obs.current_replicas
    if ready < 1:
        return "no ready pod"
    if (obs.pending_replicas or 0) > 0 or ready != current:
        return "pods starting or stopping"
    # a changed count (ours in direct mode, the HPA's in hpa mode) means the rate window mixes counts
    if state.last_valid is None or state.last_valid.current_replicas != current:
        return "replica count changed"
    if state.last_rollout_s is not None and now_s - state.last_rollout_s < spec.lead_time_s:
        return "batching rollout: pods mix old and new parameters"
    served = finite_nonneg(obs.request_rate_rps)
    latency_ms = finite_nonneg(obs.latency_ms)
    if served is None or served <= 0.0 or latency_ms is None or latency_ms <= 0.0:
        return "no served requests with a latency"
    if (finite_nonneg(obs.rejected_rps) or 0.0) > 0.0:
        return "requests rejected: the batch queue was full"
    per_replica = served / ready
    if per_replica > capacity_rps:
        return f"overloaded: {fmt_rps(per_replica)} rps/replica > capacity {fmt_rps(capacity_rps)} at the SLO"
    if latency_ms > CALIBRATION_MAX_LATENCY_SLO * spec.slo.latency_ms:
        return f"latency {latency_ms:.0f} ms is a queue, not service (> {CALIBRATION_MAX_LATENCY_SLO:g}x SLO)"
    if per_replica < CALIBRATION_MIN_LOAD * capacity_rps:
        return "too little load to measure"
    window_n = served * spec.provisioning.metrics_lag_s
    need = CALIBRATION_MIN_TAIL / (1.0 - spec.slo.latency_quantile)
    if window_n < need:
        return f"~{window_n:.0f} requests in the window, a p{spec.slo.latency_quantile * 100:g} needs {need:.0f}"
    return ""


def calibrated(
    spec: ServingAutoscalerSpec,
    state: State,
    obs: Observation,
    *,
    fresh: bool,
    ready: int,
    capacity_rps: float,
    now_s: float,
) -> tuple[Calibration, float | None, str]:
    """Online calibration from TF Serving's own latency: (calibration, regime start, note).

    Learns only from ticks where the model can explain what the replicas report (see
    `calibration_regime`), after the regime has held for one metrics lag + decision period (so the
    rate window no longer holds an overload), gently (weight 0.2, at most ±5 % per tick), and
    compares the observed quantile with the model's quantile as the same histogram reports it.
    `capacity_rps`: per-replica capacity at the SLO at the current scale and batching (the gate's
    overload and light-load bounds); `fresh`: the observation is recent enough to act on.
    """
    cal = state.calibration
    now_scale = f"service scale x{cal.service_scale:.2f}"
    why = calibration_regime(spec, state, obs, ready, capacity_rps, now_s) if fresh else "no fresh data"
    if why:
        return cal, None, f"calibration: {now_scale} kept ({why})"
    since_s = state.calibration_regime_since_s if state.calibration_regime_since_s is not None else now_s
    settle_s = spec.provisioning.metrics_lag_s + spec.provisioning.decision_period_s
    if now_s - since_s < settle_s:
        return cal, since_s, f"calibration: {now_scale} kept (metrics window settling)"
    served = finite_nonneg(obs.request_rate_rps) or 0.0
    latency_ms = finite_nonneg(obs.latency_ms) or 0.0
    batch = finite_nonneg(obs.mean_batch_size)
    rate = quantized_rate(served / ready)
    q = spec.slo.latency_quantile
    try:
        # the model at the scale rounded to 1 % and the rate rounded to 1 %: both far inside the
        # gentle step below, and the solves are then shared across ticks. The one-batch fixed point
        # (no exact one-server tail): its p99 matches the DES's where calibration learns (below
        # capacity; the tail it misses is beyond the SLO quantile's reach there), at ~1/10 the cost
        model = shared_model(spec.profile, step_scale(scale_step(cal.service_scale)), exact_tail=False)
        point = model.steady(rate, state.batching)
        # Debiasing: the observed quantile went through TF Serving's buckets, so it is compared with
        # the model's quantile through the same buckets (debiased = observed × exact / bucketed,
        # predicted = exact: the exact quantile cancels, so it is not computed; it is finite unless
        # the model calls the replica overloaded or rejecting more than 1 − q).
        measured_ms = model.reported_quantile_ms(rate, state.batching, q)
        if point.overloaded or (1.0 - point.rejected) < q or not (math.isfinite(measured_ms) and measured_ms > 0.0):
            return cal, since_s, f"calibration: {now_scale} kept (model has no finite latency here)"
        step = calibrate(
            Calibration(cal.service_scale, max(cal.samples, _CALIBRATION_PRIOR_SAMPLES)),
            spec.profile,
            state.batching,
            rate_per_replica_rps=rate,
            observed_latency_ms=latency_ms,
            quantile=q,
            observed_batch_size=batch if batch and batch >= 1.0 else None,
            model=model,
            predicted_latency_ms=measured_ms,
        )
    except (ValueError, ArithmeticError, ZeroDivisionError):
        return cal, since_s, f"calibration: {now_scale} kept (model failed)"
    limit = math.log1p(CALIBRATION_MAX_STEP)
    move = min(limit, max(-limit, math.log(step.service_scale / cal.service_scale)))
    new = Calibration(cal.service_scale * math.exp(move), cal.samples + 1)
    return (
        new,
        since_s,
        (
            f"calibration: service scale x{cal.service_scale:.2f} -> x{new.service_scale:.2f} "
            f"(p{q * 100:g} {latency_ms:.0f} ms observed vs {measured_ms:.0f} ms modelled "
            f"at {fmt_rps(rate)} rps/replica)"
        ),
    )
