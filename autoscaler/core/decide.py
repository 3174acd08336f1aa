"""`decide()`: the pure decision function — load in, replicas and batching out, with its reasons.

This is the heart of the product and the one place the safety rules of DESIGN.md live. It is pure
(no I/O, no wall time: `now_s` is an argument; all memory is the frozen `State` passed in and handed
back), so the daemon, the simulator and the tests run exactly the same code and replay identically.
Style follows Knative's `pkg/autoscaler/scaling/autoscaler.go`: compute each signal's proposal, apply
the burst (panic) guard, then the constraints, and say which one bound.

One tick, in order (each step is visible in the Decision's provenance):
 1. Validity: unknown current replicas -> invalid decision (never actuated; last valid kept).
 2. Data: the observed arrival rate (served + rejected) must be fresh and finite, else HOLD.
 3. Capacity per replica at the SLO from `core.capacity`, calibrated online; usable = × (1 − headroom).
    Calibration learns only in the regime the model explains (fresh data, all pods ready, no
    rejections, load below capacity, latency not a queue), once that has held for a metrics lag,
    gently (weight 0.2, ≤ 5 % per tick), against the model's quantile as TF Serving's buckets report it.
 4. Proposals: forecast (quantile peak over the lead time), observed (reactive floor), burst.
 5. Panic: burst rate > panic_threshold × usable capacity of the ready pods -> propose from the burst
    rate, never scale down, for 6 × burst_window_s after the last trigger (`panic_stable_window_s`).
 6. Scale-in guard: a forecast alone never scales in; the observed load must fit the smaller count
    within the scale-down tolerance.
 7. Pending pods: no further scale-up while our last scale-up's pods are pending, unless the
    observed/burst load exceeds what the last desired count covers (no cascade).
 8. HPA stabilization and rate policies (`core.hpa`), then safety floors, then [min, max].
 9. Batching (`core.batching`): only when tuned, with valid data, never during a scale-up, at most
    once per rollout interval, only when the gain is worth it; replicas use the new parameters.
    The (batching, replicas) pair that wins costs the fewest replica-hours, the restart wave
    included (`core.joint`).

Missing data: a valid forecast (or burst) may raise the count, never lower it; the count never goes
below max(current, last desired). The HPA arithmetic runs on our own sequence of desired counts
(see `core.state`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

from autoscaler.core.batching import choose_batching, clear_rankings
from autoscaler.core.capacity import (
    TF_LATENCY_BUCKETS_MS,
    Calibration,
    CapacityModel,
    cached_model,
    calibrate,
)
from autoscaler.core.decide_rules import (
    PANIC_STABLE_WINDOW_FACTOR,
    PANIC_STABLE_WINDOW_S,
    Inputs,
    Plan,
    fmt_rps,
    forecast_peak,
    panic_stable_window_s,
    plan_replicas,
)
from autoscaler.core.joint import PairOption, choose_pair, horizon_s
from autoscaler.core.serving_signals import NO_GPU, gpu_check, model_ready
from autoscaler.core.state import State
from autoscaler.core.types import Binding, Decision, Forecast, Observation, Signal, SignalStatus, TargetKey
from autoscaler.spec.types import SLO, BatchingParams, ServiceProfile, ServingAutoscalerSpec

__all__ = [
    "BATCHING_RECHECK_S",
    "PANIC_STABLE_WINDOW_FACTOR",
    "PANIC_STABLE_WINDOW_S",
    "TF_LATENCY_BUCKETS_MS",
    "State",
    "clear_model_caches",
    "decide",
    "lead_time",
    "panic_stable_window_s",
]


def decide(
    spec: ServingAutoscalerSpec,
    state: State,
    observation: Observation | None,
    forecast: Forecast | None,
    *,
    now_s: float,
    target: TargetKey | None = None,
) -> tuple[Decision, State]:
    """One decision for one target. Pure: same inputs, same outputs; inputs are never mutated."""
    key = target if target is not None else TargetKey(spec.target.namespace, spec.target.deployment)
    obs = observation
    if obs is None or obs.current_replicas is None or obs.current_replicas < 0 or not math.isfinite(now_s):
        return _invalid(spec, state, key, obs, now_s)
    current = int(obs.current_replicas)
    notes: list[str] = []

    fresh, stale_note = _freshness(spec, obs, now_s)
    if stale_note:
        notes.append(stale_note)
    load_rps, load_note = _observed_load(obs) if fresh else (None, stale_note)
    burst_rps = _finite_nonneg(obs.burst_rate_rps) if fresh else None
    ready = obs.ready_replicas if obs.ready_replicas is not None else current
    # a replica is ready capacity once TF Serving serves its model (not merely when the pod is Ready)
    ready, pending, model_note = model_ready(obs.model_status, ready, max(0, obs.pending_replicas or 0))

    cal, regime_since_s, cal_note = _calibrated(spec, state, obs, fresh, ready, now_s)
    gpu, gpu_rate = NO_GPU, None  # the simulator has no GPU signal: not even a model lookup
    if obs.gpu_util.status is SignalStatus.OK:
        model = _capacity_model_cached(spec.profile, _scale_step(cal.service_scale), False)
        gpu, gpu_rate = gpu_check(model, state.batching, obs, max(0, ready), fresh, _quantized)
    lead_s, lead_note = _lead_time(spec, obs if fresh else None)
    fc, fc_note = forecast_peak(forecast, now_s, lead_s, spec.provisioning.forecast_quantile)
    if fc_note:
        notes.append(fc_note)

    params = state.batching
    capacity_rps = _capacity_rps(spec, cal, params)
    surge_ratio, surge_learned = _surge_ratio(forecast, lead_s)
    inputs = Inputs(
        spec=spec,
        state=state,
        now_s=now_s,
        current_replicas=current,
        ready_replicas=max(0, ready),
        pending_replicas=pending,
        load_rps=load_rps,
        load_note=load_note,
        burst_rps=burst_rps,
        forecast=fc,
        lead_s=lead_s,
        surge_ratio=surge_ratio,
        surge_learned=surge_learned,
        surge_cap_rps=forecast.surge_cap_rps if forecast is not None and surge_learned else None,
        no_scale_down=gpu.hold_text(gpu_rate) if gpu.saturated else None,
    )
    plan = plan_replicas(inputs, capacity_rps)

    tuned = _batching_step(inputs, plan, cal, params, capacity_rps)
    params, capacity_rps, plan, batching_changed = tuned.params, tuned.capacity_rps, tuned.plan, tuned.changed
    if spec.batching.tune:
        notes.append(tuned.note)
    if lead_note:
        notes.append(lead_note)
    notes.append(cal_note)
    if gpu.note:
        notes.append(gpu.note)
    if model_note:
        notes.append(model_note)
    notes.extend(plan.notes)

    decision = Decision(
        target=key,
        time_s=now_s,
        desired_replicas=plan.desired,
        current_replicas=current,
        valid=True,
        reason=plan.reason,
        binding=plan.binding,
        batching=params,
        batching_changed=batching_changed,
        proposals=plan.proposals,
        observed_rps=load_rps,
        forecast_rps=fc.load_rps if fc is not None else None,
        forecast_lo_rps=fc.lo_rps if fc is not None else None,
        forecast_hi_rps=fc.hi_rps if fc is not None else None,
        forecast_model=fc.model if fc is not None else None,
        capacity_rps=capacity_rps,
        lead_time_s=lead_s,
        panic=plan.panic_trigger_s is not None,
        notes=tuple(notes),
        gpu_util=gpu.observed,
        gpu_util_model=gpu.modelled,
        model_ready_replicas=max(0, ready) if obs.model_status is not None else None,
        model_versions=obs.model_status.text() if obs.model_status is not None else "",
    )
    scaled_up = plan.desired > state.last_desired_replicas
    # every field spelled out (dataclasses.replace costs ~10 µs a tick); created_s is the only one kept
    new_state = State(
        created_s=state.created_s,
        last_desired_replicas=plan.desired,
        hpa=plan.hpa,
        panic_last_trigger_s=plan.panic_trigger_s,
        panic_max_replicas=plan.panic_max_replicas,
        last_scale_up_s=now_s if scaled_up else state.last_scale_up_s,
        last_scale_up_from_replicas=state.last_desired_replicas if scaled_up else state.last_scale_up_from_replicas,
        last_scale_up_to_replicas=plan.desired if scaled_up else state.last_scale_up_to_replicas,
        batching=params,
        last_rollout_s=now_s if batching_changed else state.last_rollout_s,
        last_batching_check_s=now_s if tuned.tuner_ran else state.last_batching_check_s,
        calibration=cal,
        calibration_regime_since_s=regime_since_s,
        last_decision_s=now_s,
        last_valid=decision,
        invalid_streak=0,
    )
    return decision, new_state


# --------------------------------------------------------------------------- helpers


def _invalid(
    spec: ServingAutoscalerSpec, state: State, key: TargetKey, obs: Observation | None, now_s: float
) -> tuple[Decision, State]:
    """Current replicas unknown: an invalid decision that repeats the last valid desired count."""
    last = state.last_valid.desired_replicas if state.last_valid is not None else state.last_desired_replicas
    last = min(max(last, spec.min_replicas), spec.max_replicas)
    if obs is None:
        why = "no observation for this target"
    elif obs.current_replicas is None:
        why = "current replica count unknown (Deployment scale not read)"
    elif obs.current_replicas < 0:
        why = f"current replica count invalid ({obs.current_replicas})"
    else:
        why = f"decision time is not finite ({now_s!r})"
    decision = Decision(
        target=key,
        time_s=now_s,
        desired_replicas=last,
        current_replicas=state.last_desired_replicas,
        valid=False,
        reason=f"invalid: {why}; not actuated, keeping the last valid desired count {last}",
        binding=Binding.HOLD_MISSING_DATA,
        batching=state.batching,
        notes=(why,),
    )
    return decision, replace(
        state,
        last_decision_s=now_s if math.isfinite(now_s) else state.last_decision_s,
        invalid_streak=state.invalid_streak + 1,
    )


def _freshness(spec: ServingAutoscalerSpec, obs: Observation, now_s: float) -> tuple[bool, str]:
    limit_s = spec.provisioning.stale_after_s
    if not math.isfinite(obs.time_s):
        return False, f"observation time is not finite ({obs.time_s!r})"
    age_s = now_s - obs.time_s
    if abs(age_s) > limit_s:
        return False, f"observation is stale: {age_s:.0f} s old (stale after {limit_s:g} s)"
    return True, ""


def _surge_ratio(forecast: Forecast | None, lead_s: float) -> tuple[float | None, bool]:
    """The surge reserve for the lead time (`core.surge`) and whether the target's own history taught it
    (False: the forecaster's start-up prior, `core.surge.SURGE_PRIOR_RATIO`)."""
    if forecast is None or not forecast.surge or not forecast.step_s > 0:
        return None, True
    k = min(max(1, math.ceil(lead_s / forecast.step_s - 1e-9)), len(forecast.surge))
    r = forecast.surge[k - 1]
    return (r, forecast.surge_learned) if math.isfinite(r) and r >= 1.0 else (None, True)


def _finite_nonneg(sig: Signal) -> float | None:
    """The signal's value when it is OK, finite and >= 0, else None (read ~9 times a tick)."""
    value = sig.value
    if value is None or sig.status is not SignalStatus.OK or not 0.0 <= value < math.inf:  # NaN fails too
        return None
    return float(value)


def _observed_load(obs: Observation) -> tuple[float | None, str]:
    """Offered load = served + rejected (rejections are demand), or None with the reason."""
    sig = obs.request_rate_rps
    if not sig.ok or sig.value is None:
        status = sig.status.value if sig.status is not SignalStatus.OK else "without a value"
        detail = f": {sig.detail}" if sig.detail else ""
        return None, f"request rate {status}{detail}"
    served = _finite_nonneg(sig)
    if served is None:
        return None, f"request rate invalid ({sig.value!r})"
    rejected = _finite_nonneg(obs.rejected_rps) or 0.0
    total = served + rejected
    return (total, "") if math.isfinite(total) else (None, "request rate overflows")


def lead_time(spec: ServingAutoscalerSpec, observation: Observation | None, now_s: float) -> tuple[float, str]:
    """The lead time `decide()` provisions for at `now_s` with this observation, and its note.

    The spec's fixed lead time, else the measured cold start (when the observation is fresh) plus
    the decision period and metrics lag, else the spec's startup estimate. The controller asks for
    a forecast that covers exactly this (`control.controller`), so the two never disagree.
    """
    fresh = observation is not None and _freshness(spec, observation, now_s)[0]
    return _lead_time(spec, observation if fresh else None)


def _lead_time(spec: ServingAutoscalerSpec, obs: Observation | None) -> tuple[float, str]:
    p = spec.provisioning
    if p.lead_time_s is not None:
        return max(0.0, p.lead_time_s), ""
    cold_s = _finite_nonneg(obs.cold_start_s) if obs is not None else None
    if cold_s is not None:
        return _measured_lead_time(cold_s, p.decision_period_s, p.metrics_lag_s)
    return spec.lead_time_s, (
        f"lead time {spec.lead_time_s:.0f} s from the spec's startup estimate (no measured cold start)"
    )


@lru_cache(maxsize=256)
def _measured_lead_time(cold_s: float, period_s: float, lag_s: float) -> tuple[float, str]:
    """Lead time from a measured cold start, and its note (memoized: the cold start rarely changes)."""
    lead = cold_s + period_s + lag_s
    return lead, (
        f"lead time {lead:.0f} s = measured cold start {cold_s:.0f} s + decision period "
        f"{period_s:g} s + metrics lag {lag_s:g} s"
    )


# The tuner costs ~0.1-1 s (a grid of capacity searches); after it ran, wait this long before asking again.
BATCHING_RECHECK_S = 300.0
# Calibration is quantized to 1 % steps (the tuner's to 10 %) so cached models are reused across ticks;
# 1 % of capacity is well inside any headroom.
_SCALE_STEP = 1.01
_LN_SCALE_STEP = math.log(_SCALE_STEP)
_TUNER_SCALE_STEPS = 10


@lru_cache(maxsize=512)
def _capacity_model_cached(profile: ServiceProfile, scale_step: int, exact_tail: bool = True) -> CapacityModel:
    return CapacityModel(profile, service_scale=_SCALE_STEP**scale_step, exact_tail=exact_tail)


# Per-replica capacity at the SLO per (profile, SLO, scale step, batching parameters): a pure function
# of its key, read twice per tick, so one dictionary lookup instead of a model lookup and its caches.
_CAPACITIES: dict[tuple[ServiceProfile, SLO, int, BatchingParams], float] = {}


def clear_model_caches() -> None:
    """Forget every memoized capacity model and batching ranking (benchmarks measure cold runs)."""
    _capacity_model_cached.cache_clear()
    _CAPACITIES.clear()
    cached_model.cache_clear()
    clear_rankings()


def _scale_step(service_scale: float) -> int:
    """The service scale's index on the 1 % log grid (0, scale 1.0, for a scale that is not finite and > 0)."""
    scale = service_scale if math.isfinite(service_scale) and service_scale > 0 else 1.0
    return round(math.log(scale) / _LN_SCALE_STEP)


def _capacity_model(profile: ServiceProfile, service_scale: float, *, coarse: bool = False) -> CapacityModel:
    """A shared model per (profile, quantized service scale), so its caches survive across ticks.

    Memoization only: the model is a pure function of its key, so `decide()` stays pure. A cold
    `capacity_at_slo_rps` costs ~25 ms; the simulator calls decide() every decision period for days.
    """
    step = _scale_step(service_scale)
    if coarse:  # the tuner's: ranks ~40 parameter sets by capacity, without the exact one-server tail
        return _capacity_model_cached(profile, _TUNER_SCALE_STEPS * round(step / _TUNER_SCALE_STEPS), False)
    return _capacity_model_cached(profile, step)


def _quantized(rate_rps: float) -> float:
    """`rate_rps` rounded to the nearest 1 % step (log grid), so model solves repeat across ticks."""
    if not (math.isfinite(rate_rps) and rate_rps > 0.0):
        return rate_rps
    return float(_SCALE_STEP ** round(math.log(rate_rps) / _LN_SCALE_STEP))


def _capacity_rps(spec: ServingAutoscalerSpec, cal: Calibration, params: BatchingParams) -> float:
    key = (spec.profile, spec.slo, _scale_step(cal.service_scale), params)
    hit = _CAPACITIES.get(key)
    if hit is not None:
        return hit
    model = _capacity_model_cached(spec.profile, key[2])
    try:
        capacity = model.capacity_at_slo_rps(params, spec.slo)
    except (ValueError, ArithmeticError):
        capacity = 0.0
    capacity = capacity if math.isfinite(capacity) and capacity > 0.0 else 0.0
    if len(_CAPACITIES) > 4096:
        _CAPACITIES.clear()
    _CAPACITIES[key] = capacity
    return capacity


# --- online calibration (DESIGN rule 1) -------------------------------------------------------
# TF Serving's request_latency buckets are Exponential(10 µs, 1.8, 33) (docs/specs.md, TF Serving
# metrics): a histogram_quantile interpolates inside a bucket 1.8x wide, so a raw p99 is biased by
# up to 80 %. The model's prediction is passed through the same buckets before the two are compared
# (`capacity.histogram_quantile_ms`).
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


def _calibration_regime(
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
    served = _finite_nonneg(obs.request_rate_rps)
    latency_ms = _finite_nonneg(obs.latency_ms)
    if served is None or served <= 0.0 or latency_ms is None or latency_ms <= 0.0:
        return "no served requests with a latency"
    if (_finite_nonneg(obs.rejected_rps) or 0.0) > 0.0:
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


def _calibrated(
    spec: ServingAutoscalerSpec, state: State, obs: Observation, fresh: bool, ready: int, now_s: float
) -> tuple[Calibration, float | None, str]:
    """Online calibration from TF Serving's own latency: (calibration, regime start, note).

    Learns only from ticks where the model can explain what the replicas report (see
    `_calibration_regime`), after the regime has held for one metrics lag + decision period (so the
    rate window no longer holds an overload), gently (weight 0.2, at most ±5 % per tick), and
    compares the observed quantile with the model's quantile as the same histogram reports it.
    """
    cal = state.calibration
    now_scale = f"service scale x{cal.service_scale:.2f}"
    capacity_rps = _capacity_rps(spec, cal, state.batching)
    why = _calibration_regime(spec, state, obs, ready, capacity_rps, now_s) if fresh else "no fresh data"
    if why:
        return cal, None, f"calibration: {now_scale} kept ({why})"
    since_s = state.calibration_regime_since_s if state.calibration_regime_since_s is not None else now_s
    settle_s = spec.provisioning.metrics_lag_s + spec.provisioning.decision_period_s
    if now_s - since_s < settle_s:
        return cal, since_s, f"calibration: {now_scale} kept (metrics window settling)"
    served = _finite_nonneg(obs.request_rate_rps) or 0.0
    latency_ms = _finite_nonneg(obs.latency_ms) or 0.0
    batch = _finite_nonneg(obs.mean_batch_size)
    rate = _quantized(served / ready)
    q = spec.slo.latency_quantile
    try:
        # the model at the scale rounded to 1 % and the rate rounded to 1 %: both far inside the
        # gentle step below, and the solves are then shared across ticks. The one-batch fixed point
        # (no exact one-server tail): its p99 matches the DES's where calibration learns (below
        # capacity; the tail it misses is beyond the SLO quantile's reach there), at ~1/10 the cost
        model = _capacity_model_cached(spec.profile, _scale_step(cal.service_scale), False)
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


@dataclass(frozen=True)
class _Batching:
    """Outcome of rule 8: the parameters, capacity and plan in effect after this tick."""

    params: BatchingParams
    capacity_rps: float
    plan: Plan
    changed: bool
    tuner_ran: bool
    note: str


def _batching_step(
    inputs: Inputs, plan: Plan, cal: Calibration, params: BatchingParams, capacity_rps: float
) -> _Batching:
    """Rule 8: maybe change batching; replicas are recomputed with the parameters that will be in effect."""
    spec, state = inputs.spec, inputs.state
    blocked = _batching_blocked(spec, state, plan, inputs, inputs.now_s)
    if blocked is not None or inputs.load_rps is None:
        return _Batching(params, capacity_rps, plan, False, False, blocked or "batching: no valid observed load")
    model = _capacity_model(spec.profile, cal.service_scale, coarse=True)  # ranks params; gain is relative
    rate_per_replica_rps = inputs.load_rps / max(1, plan.desired)  # the rate after this decision
    try:
        choice = choose_batching(model, spec, rate_per_replica_rps, params)
    except (ValueError, ArithmeticError) as exc:
        return _Batching(params, capacity_rps, plan, False, True, f"batching: keep current (tuner failed: {exc})")
    keep = _Batching(params, capacity_rps, plan, False, True, f"batching: keep current ({choice.reason})")
    if not choice.changed:
        return keep
    if choice.gain < spec.batching.min_gain:
        note = f"batching: gain {choice.gain:.0%} < min_gain {spec.batching.min_gain:.0%}; keep current"
        return replace(keep, note=note)
    new_capacity = _capacity_rps(spec, cal, choice.params)
    new_plan = plan_replicas(inputs, new_capacity)
    if new_plan.desired > state.last_desired_replicas:
        return replace(keep, note="batching: new parameters would need a scale-up; keep current")
    keep_pair = PairOption(params, capacity_rps, _steady_replicas(spec, plan), restart=False)
    new_pair = PairOption(choice.params, new_capacity, _steady_replicas(spec, new_plan), restart=True)
    pair = choose_pair((keep_pair, new_pair), horizon=horizon_s(spec), startup_s=spec.startup.mean_s)
    if not pair.option.restart:
        return replace(keep, note=f"batching: keep current ({pair.reason})")
    note = f"batching: roll out {_params_text(choice.params)} (+{choice.gain:.0%} capacity; {pair.reason})"
    return _Batching(choice.params, new_capacity, new_plan, True, True, note)


def _steady_replicas(spec: ServingAutoscalerSpec, plan: Plan) -> int:
    """The count the signals ask for once stabilization has passed: the largest proposal, in bounds."""
    if not plan.proposals:
        return plan.desired
    wanted = max(p.replicas for p in plan.proposals)
    return min(max(wanted, spec.min_replicas), spec.max_replicas)


def _batching_blocked(
    spec: ServingAutoscalerSpec, state: State, plan: Plan, inputs: Inputs, now_s: float
) -> str | None:
    """Why batching may not change this tick, or None when it may."""
    b = spec.batching
    if not b.tune:
        return "batching: tuning off"
    if inputs.load_rps is None:
        return "batching: no change without valid observed load"
    if plan.desired > state.last_desired_replicas or plan.panic_trigger_s is not None:
        return "batching: no change during a scale-up"
    if inputs.pending_replicas > 0 and state.last_scale_up_s is not None:
        return "batching: no change while pods from the last scale-up are pending"
    if state.last_rollout_s is not None and now_s - state.last_rollout_s < b.min_rollout_interval_s:
        wait_s = b.min_rollout_interval_s - (now_s - state.last_rollout_s)
        return f"batching: next rollout allowed in {wait_s:.0f} s"
    if state.last_batching_check_s is not None and now_s - state.last_batching_check_s < BATCHING_RECHECK_S:
        return "batching: checked recently, keep current"
    return None


def _params_text(p: BatchingParams) -> str:
    return (
        f"max_batch_size={p.max_batch_size} batch_timeout={p.batch_timeout_us} µs "
        f"threads={p.num_batch_threads} max_enqueued={p.max_enqueued_batches}"
    )
