"""`decide()`: the pure decision function — load in, replicas and batching out, with its reasons.

This is the heart of the product and the one place the safety rules of docs/design.md live. It is pure
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
    gently (weight 0.2, ≤ 5 % per tick), against the model's quantile as TF Serving's buckets report it
    (`core.capacity.calibration`).
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

from autoscaler.core import cache
from autoscaler.core.batching import choose_batching
from autoscaler.core.cache import LRU, coarse_scale_step, quantized_rate, scale_step, step_scale
from autoscaler.core.capacity import (
    CALIBRATION_MAX_STEP,
    TF_LATENCY_BUCKETS_MS,
    Calibration,
    CapacityModel,
    calibrated,
    shared_model,
)
from autoscaler.core.decide_rules import (
    PANIC_STABLE_WINDOW_FACTOR,
    PANIC_STABLE_WINDOW_S,
    Inputs,
    Plan,
    forecast_peak,
    panic_stable_window_s,
    plan_replicas,
)
from autoscaler.core.joint import PairOption, choose_pair, horizon_s
from autoscaler.core.serving_signals import NO_GPU, gpu_check, model_ready
from autoscaler.core.state import State
from autoscaler.core.types import (
    Binding,
    Decision,
    Forecast,
    Observation,
    SignalStatus,
    TargetKey,
)
from autoscaler.core.types import finite_nonneg as _finite_nonneg
from autoscaler.spec.types import SLO, BatchingParams, ServiceProfile, ServingAutoscalerSpec

__all__ = [
    "BATCHING_RECHECK_S",
    "CALIBRATION_MAX_STEP",
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

    cal, regime_since_s, cal_note = calibrated(
        spec,
        state,
        obs,
        fresh=fresh,
        ready=ready,
        capacity_rps=_capacity_rps(spec, state.calibration, state.batching),
        now_s=now_s,
    )
    gpu, gpu_rate = NO_GPU, None  # the simulator has no GPU signal: not even a model lookup
    if obs.gpu_util.status is SignalStatus.OK:
        model = shared_model(spec.profile, step_scale(scale_step(cal.service_scale)), exact_tail=False)
        gpu, gpu_rate = gpu_check(model, state.batching, obs, max(0, ready), fresh, quantized_rate)
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
    # every field spelled out (dataclasses.replace re-reads the field list on every call); created_s is
    # the only one kept
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
        lead = cold_s + p.decision_period_s + p.metrics_lag_s
        return lead, (
            f"lead time {lead:.0f} s = measured cold start {cold_s:.0f} s + decision period "
            f"{p.decision_period_s:g} s + metrics lag {p.metrics_lag_s:g} s"
        )
    return spec.lead_time_s, (
        f"lead time {spec.lead_time_s:.0f} s from the spec's startup estimate (no measured cold start)"
    )


# The tuner costs ~0.1-1 s (a grid of capacity searches); after it ran, wait this long before asking again.
BATCHING_RECHECK_S = 300.0
# Per-replica capacity at the SLO per (profile, SLO, 1 % scale step, batching parameters): a pure
# function of its key, read twice a tick, so one lookup instead of a model lookup and its memos.
_CAPACITIES: LRU[tuple[ServiceProfile, SLO, int, BatchingParams], float] = LRU("decide: capacity per replica", 4096)


def clear_model_caches() -> None:
    """Forget every memo of the core: models, steady states, capacities, rankings (`core/cache.py`);
    benchmarks measure cold runs."""
    cache.clear_all()


def _capacity_model(profile: ServiceProfile, service_scale: float, *, coarse: bool = False) -> CapacityModel:
    """The shared model at the service scale quantized to 1 % (`cache.scale_step`), so its memos
    survive across ticks; `coarse`: the tuner's, on the ~10 % grid and without the exact one-server
    tail (it ranks ~40 parameter sets by capacity; the gain is relative).
    """
    step = scale_step(service_scale)
    if coarse:
        return shared_model(profile, step_scale(coarse_scale_step(step)), exact_tail=False)
    return shared_model(profile, step_scale(step))


def _capacity_rps(spec: ServingAutoscalerSpec, cal: Calibration, params: BatchingParams) -> float:
    key = (spec.profile, spec.slo, scale_step(cal.service_scale), params)
    hit = _CAPACITIES.get(key)
    if hit is not None:
        return hit
    model = shared_model(spec.profile, step_scale(key[2]))
    try:
        capacity = model.capacity_at_slo_rps(params, spec.slo)
    except (ValueError, ArithmeticError):
        capacity = 0.0
    return _CAPACITIES.put(key, capacity if math.isfinite(capacity) and capacity > 0.0 else 0.0)


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
