"""The replica rules of `decide()`: proposals, panic, scale-in guard, pending pods, HPA behavior, reason.

Split from `core/decide.py` (which owns the tick's inputs, capacity, calibration and batching) so the
replica arithmetic reads top to bottom in one function, `plan_replicas`, the way Knative's
`autoscaler.go` reads. Pure: takes the tick's cleaned inputs and a per-replica capacity, returns a
`Plan` (desired count, the binding constraint, each signal's proposal, the new HPA history, the panic
state and the human-readable reason that ends up in Kubernetes Events and Grafana).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from autoscaler.core.hpa import (
    HpaHistory,
    normalize_desired_replicas_with_behaviors,
    store_scale_event,
)
from autoscaler.core.state import State
from autoscaler.core.types import Binding, Forecast, Proposal, fmt_rps
from autoscaler.spec.types import ServingAutoscalerSpec

# Panic lasts one "stable window" after the last over-threshold tick (Knative KPA). The spec has no
# field for it; it is derived from the burst (panic) window: stable = PANIC_STABLE_WINDOW_FACTOR ×
# provisioning.burst_window_s. The factor 6 is 60 s / 10 s, our default stable and burst windows, so
# the default spec keeps a 60 s panic hold (Knative's own defaults are a 60 s stable window and a 6 s
# panic window, 10 %). A shorter burst window (the demo's 2 s) gives a proportionally shorter hold.
PANIC_STABLE_WINDOW_FACTOR = 6.0
PANIC_STABLE_WINDOW_S = 60.0  # with the default burst window of 10 s


def panic_stable_window_s(spec: ServingAutoscalerSpec) -> float:
    """How long panic mode (never scale down) lasts after the last burst over the threshold."""
    return PANIC_STABLE_WINDOW_FACTOR * max(0.0, spec.provisioning.burst_window_s)


MAX_PROPOSAL_REPLICAS = 1_000_000  # proposals from absurd loads saturate here (then [min, max] applies)
_CEIL_SLACK = 1e-9  # 4.0000000001 replicas of float noise is 4, not 5


def ceil_replicas(load_rps: float, per_replica_rps: float) -> int:
    """Replicas needed for `load_rps` at `per_replica_rps` each; saturates instead of overflowing."""
    if not load_rps > 0.0:  # also NaN
        return 0
    if not per_replica_rps > 0.0:
        return MAX_PROPOSAL_REPLICAS
    ratio = load_rps / per_replica_rps
    if not math.isfinite(ratio) or ratio >= MAX_PROPOSAL_REPLICAS:
        return MAX_PROPOSAL_REPLICAS
    return max(1, math.ceil(ratio * (1.0 - _CEIL_SLACK)))


@lru_cache(maxsize=64)
def quantile_label(q: float) -> str:
    """0.99 -> 'p99', 0.999 -> 'p99.9'."""
    return f"p{q * 100:g}"


@dataclass(frozen=True)
class ForecastUse:
    """The forecast as provisioned for: the quantile's peak over [now, now + lead], lo/hi at that step."""

    load_rps: float
    lo_rps: float | None
    hi_rps: float | None
    model: str
    quantile: float
    horizon_s: float  # how far ahead the peak was searched (the lead time)


def forecast_peak(forecast: Forecast | None, now_s: float, lead_s: float, q: float) -> tuple[ForecastUse | None, str]:
    """The forecast's q-quantile peak over the lead time, or None and why it cannot be used."""
    if forecast is None:
        return None, "no forecast: reactive only"
    end_s = now_s + max(lead_s, 1e-6)
    try:
        found = forecast.peak_step(now_s, end_s, q)
        if found is None:
            return None, (f"forecast ({forecast.model}) does not cover the next {lead_s:.0f} s: reactive only")
        peak, i = found
        if not math.isfinite(peak):
            return None, f"forecast ({forecast.model}) has non-finite values: ignored, reactive only"
    except (ValueError, ArithmeticError) as exc:
        return None, f"forecast ({forecast.model}) unusable ({exc}): reactive only"
    lo = float(forecast.lo[i]) if i < forecast.horizon else math.nan
    hi = float(forecast.hi[i]) if i < forecast.horizon else math.nan
    return (
        ForecastUse(
            load_rps=peak,
            lo_rps=lo if math.isfinite(lo) else None,
            hi_rps=hi if math.isfinite(hi) else None,
            model=forecast.model,
            quantile=q,
            horizon_s=lead_s,
        ),
        "",
    )


@dataclass(frozen=True)
class Inputs:
    """One tick's cleaned inputs (None = not available / not usable)."""

    spec: ServingAutoscalerSpec
    state: State
    now_s: float
    current_replicas: int
    ready_replicas: int
    pending_replicas: int
    load_rps: float | None  # observed arrivals (served + rejected), fresh and finite
    load_note: str  # why load_rps is None
    burst_rps: float | None
    forecast: ForecastUse | None
    lead_s: float
    surge_ratio: float | None = None  # core/surge.py: the load may climb this much over the lead time
    surge_cap_rps: float | None = None  # ... but not above the highest load of the history
    surge_learned: bool = True  # False: the start-up prior (core.surge.SURGE_PRIOR_RATIO), no history yet
    # an independent check (core/serving_signals.py: the GPU busier than the model explains) forbids a
    # scale-down below the last desired count this tick; the text says why
    no_scale_down: str | None = None


@dataclass(frozen=True)
class Plan:
    desired: int
    binding: Binding
    reason: str
    proposals: tuple[Proposal, ...]
    hpa: HpaHistory
    panic_trigger_s: float | None  # None = not panicking after this tick
    panic_max_replicas: int
    notes: tuple[str, ...]


def plan_replicas(inp: Inputs, capacity_rps: float) -> Plan:
    """Rules 1-7 of docs/design.md for one tick, given the per-replica capacity at the SLO."""
    spec, st, now_s = inp.spec, inp.state, inp.now_s
    prov = spec.provisioning
    lo, hi = spec.min_replicas, spec.max_replicas
    ref = st.last_desired_replicas  # the HPA's "current": what we last asked for
    load, burst, fc = inp.load_rps, inp.burst_rps, inp.forecast
    notes: list[str] = []

    usable = max(0.0, capacity_rps * (1.0 - prov.headroom))
    slo, per = _capacity_texts(usable, spec.slo.latency_quantile, spec.slo.latency_ms, prov.headroom)
    if usable <= 0.0:
        notes.append(f"capacity at the SLO is 0: even light load misses {slo}; any load proposes the maximum")

    p_fc = ceil_replicas(fc.load_rps, usable) if fc is not None else None
    p_obs = ceil_replicas(load, usable) if load is not None else None
    p_burst = ceil_replicas(burst, usable) if burst is not None else None
    surge = inp.surge_ratio
    surge_rps = None if load is None or surge is None else load * surge
    if surge_rps is not None and load is not None and inp.surge_cap_rps is not None:
        surge_rps = max(load, min(surge_rps, inp.surge_cap_rps))  # a reserve never exceeds the history's peak
    p_surge = ceil_replicas(surge_rps, usable) if surge_rps is not None else None

    # --- burst guard (Knative panic mode) -------------------------------------------------
    ready = max(1, inp.ready_replicas)
    panic_limit_rps = prov.panic_threshold * usable * ready
    over = burst is not None and burst > panic_limit_rps
    if over:
        trigger_s: float | None = now_s
    elif st.panic_last_trigger_s is not None and now_s - st.panic_last_trigger_s < panic_stable_window_s(spec):
        trigger_s = st.panic_last_trigger_s
    else:
        trigger_s = None
    panicking = trigger_s is not None
    panic_max = st.panic_max_replicas if (panicking and st.panic_last_trigger_s is not None) else 0
    if over and st.panic_last_trigger_s is None:
        notes.append(f"panic: entered (burst {fmt_rps(burst or 0.0)} rps > {fmt_rps(panic_limit_rps)} rps)")
    elif st.panic_last_trigger_s is not None and not panicking:
        notes.append(f"panic: exited ({panic_stable_window_s(spec):g} s without a burst over the threshold)")

    proposals: list[Proposal] = []
    if fc is not None and p_fc is not None:
        proposals.append(Proposal("forecast", p_fc, fc.load_rps, _lead_text(fc.quantile, inp.lead_s, fc.model)))
    if load is not None and p_obs is not None:
        proposals.append(Proposal("observed", p_obs, load, "served + rejected, rate window"))
    if surge_rps is not None and surge is not None and p_surge is not None:
        proposals.append(Proposal("surge", p_surge, surge_rps, f"observed × {surge:.2f} surge reserve"))
    if burst is not None and p_burst is not None:
        state_txt = "over" if over else "under"
        detail = f"{state_txt} panic threshold {prov.panic_threshold:g}× capacity of {ready} ready pods"
        proposals.append(Proposal("burst", p_burst, burst, detail))

    # --- the policy's own recommendation: max over signals --------------------------------
    driver, raw = "", -1
    signals = (("forecast", p_fc), ("observed", p_obs), ("surge", p_surge), ("burst", p_burst if panicking else None))
    for name, value in signals:
        if value is not None and value > raw:
            driver, raw = name, value
    driver_text = _driver_text(inp, driver, p_fc, p_obs, p_burst, per, panic_limit_rps, p_surge)
    binding = Binding.NONE
    clause = ""
    if driver == "observed" and p_fc is not None:
        binding = Binding.REACTIVE_FLOOR
    elif driver == "surge":
        binding = Binding.SURGE_RESERVE
    elif driver == "burst":
        binding = Binding.PANIC
    target = raw if raw >= 0 else ref

    hold = max(inp.current_replicas, ref)
    if load is None:  # rule 5: missing data -> hold; forecast/burst may raise, never lower
        binding = Binding.HOLD_MISSING_DATA
        target = max(hold, target)
    elif target < ref:  # rule 4: a scale-in needs the observed load to agree, with tolerance
        tol = min(max(spec.behavior.scale_down.tolerance, 0.0), 0.99)
        need_in = min(ref, ceil_replicas(load, usable * (1.0 - tol)))
        if need_in > target:
            binding = Binding.SCALE_IN_GUARD
            alone = f"forecast alone would allow {p_fc}; " if p_fc is not None and p_fc < need_in else ""
            clause += (
                f"; {alone}observed {fmt_rps(load)} rps needs {need_in} within the {tol:.0%} "
                "scale-down tolerance (scale-in needs the observed load to agree)"
            )
            target = need_in
    elif p_fc is not None and p_fc < ref and target == ref and driver in ("observed", "surge"):
        binding = Binding.SCALE_IN_GUARD
        clause += f"; forecast alone would scale in to {p_fc}, but the observed load does not agree"

    # --- rule 6: no cascade while our new pods are pending ---------------------------------
    if target > ref and inp.pending_replicas > 0 and st.last_scale_up_s is not None:
        load_need = max(p_obs or 0, p_burst or 0)
        if load_need <= ref:
            clause += (
                f"; {inp.pending_replicas} pods from the scale-up to {st.last_scale_up_to_replicas} "
                f"{max(0.0, now_s - st.last_scale_up_s):.0f} s ago are still pending and the observed load fits {ref}: "
                f"no further scale-up to {target} (no cascade)"
            )
            target = ref
            if binding is not Binding.HOLD_MISSING_DATA:
                binding = Binding.PENDING_PODS

    # --- rule 7: HPA stabilization and rate policies, [min, max] ----------------------------
    pre = min(max(target, lo), hi)
    desired, hpa_reason, history = normalize_desired_replicas_with_behaviors(
        st.hpa,
        spec.behavior,
        current_replicas=ref,
        prenormalized_desired=pre,
        min_replicas=lo,
        max_replicas=hi,
        now_s=now_s,
    )
    new_binding, text = _constraint(spec, hpa_reason, target, pre, desired)
    if new_binding is not None:
        clause += text
        if binding is not Binding.HOLD_MISSING_DATA:
            binding = new_binding

    # --- safety floors override rate limits: never down on missing data or in panic ---------
    floor = lo
    if load is None:
        floor = max(floor, min(hold, hi))
    if panicking:
        floor = max(floor, min(max(ref, panic_max), hi))
    if desired < floor:
        clause += f"; kept at {floor} (never scale down {'on missing data' if load is None else 'in panic'})"
        desired = floor
        binding = Binding.HOLD_MISSING_DATA if load is None else Binding.PANIC
    if inp.no_scale_down is not None and desired < min(ref, hi):
        desired = min(ref, hi)
        clause += f"; kept at {desired}: {inp.no_scale_down}"
        binding = Binding.GPU_SATURATION
    desired = min(max(desired, lo), hi)

    if desired != ref:
        history = store_scale_event(history, spec.behavior, prev_replicas=ref, new_replicas=desired, now_s=now_s)
    if desired > ref:
        verb = f"scale up {ref}→{desired}"
    elif desired < ref:
        verb = f"scale down {ref}→{desired}"
    else:
        verb = f"hold at {desired}"
    if inp.current_replicas != ref:
        verb += f" (Deployment at {inp.current_replicas})"
    if load is None:
        raised = f"; {driver_text} raises it" if raw > hold else ""
        reason = (
            f"{verb}: observed load unavailable ({inp.load_note}); holding ≥ {min(hold, hi)}, "
            f"never scaling down on missing data{raised}{clause}"
        )
    else:
        reason = f"{verb}: {driver_text}{clause}"
    return Plan(
        desired=desired,
        binding=binding,
        reason=reason,
        proposals=tuple(proposals),
        hpa=history,
        panic_trigger_s=trigger_s,
        panic_max_replicas=max(panic_max, desired) if panicking else 0,
        notes=tuple(notes),
    )


# The tick's texts that depend on a few values only, memoized (the simulator decides ~40k times a week).
@lru_cache(maxsize=1024)
def _capacity_texts(usable_rps: float, quantile: float, latency_ms: float, headroom: float) -> tuple[str, str]:
    """('p99 ≤ 100 ms', '123 rps/replica (p99 ≤ 100 ms, 20% headroom)')."""
    slo = f"{quantile_label(quantile)} ≤ {latency_ms:g} ms"
    return slo, f"{fmt_rps(usable_rps)} rps/replica ({slo}, {headroom:.0%} headroom)"


@lru_cache(maxsize=1024)
def _lead_text(quantile: float, lead_s: float, model: str) -> str:
    return f"peak {quantile_label(quantile)} over next {lead_s:.0f} s ({model})"


def _driver_text(
    inp: Inputs,
    driver: str,
    p_fc: int | None,
    p_obs: int | None,
    p_burst: int | None,
    per: str,
    panic_limit_rps: float,
    p_surge: int | None = None,
) -> str:
    prov = inp.spec.provisioning
    if driver == "forecast" and inp.forecast is not None:
        fc = inp.forecast
        return (
            f"forecast {quantile_label(fc.quantile)} {fmt_rps(fc.load_rps)} rps over next "
            f"{inp.lead_s:.0f} s needs {p_fc} × {per}"
        )
    if driver == "observed" and inp.load_rps is not None:
        suffix = " (no forecast: reactive only)" if inp.forecast is None else ""
        return f"observed load {fmt_rps(inp.load_rps)} rps needs {p_obs} × {per}{suffix}"
    if driver == "surge" and inp.load_rps is not None and inp.surge_ratio is not None:
        capped = ""
        if inp.surge_cap_rps is not None and inp.load_rps * inp.surge_ratio > inp.surge_cap_rps:
            capped = f", capped at the history's peak {fmt_rps(inp.surge_cap_rps)} rps"
        why = (
            f"the climb this target's history shows within {inp.lead_s:.0f} s"
            if inp.surge_learned
            else "start-up reserve: too little history to learn this target's own yet"
        )
        return (
            f"observed load {fmt_rps(inp.load_rps)} rps × surge reserve {inp.surge_ratio:.2f}{capped} "
            f"({why}) needs {p_surge} × {per}"
        )
    if driver == "burst" and inp.burst_rps is not None:
        return (
            f"panic: burst {fmt_rps(inp.burst_rps)} rps over {prov.burst_window_s:g} s "
            f"(threshold {fmt_rps(panic_limit_rps)} rps = {prov.panic_threshold:g}× ready capacity) "
            f"needs {p_burst} × {per}"
        )
    return "no usable load signal"


def _constraint(
    spec: ServingAutoscalerSpec, hpa_reason: str, target: int, pre: int, desired: int
) -> tuple[Binding | None, str]:
    """Which of min/max/stabilization/rate policy changed the count, and how to say it."""
    lo, hi = spec.min_replicas, spec.max_replicas
    if desired != pre:
        if hpa_reason == "ScaleUpLimit":
            return Binding.SCALE_UP_LIMIT, f"; scale-up rate policy allows {desired} now (wants {pre})"
        if hpa_reason == "ScaleDownLimit":
            return Binding.SCALE_DOWN_LIMIT, f"; scale-down rate policy allows {desired} now (wants {pre})"
        if hpa_reason == "TooManyReplicas":
            return Binding.MAX, f"; capped at max_replicas {hi}"
        if hpa_reason == "TooFewReplicas":
            return Binding.MIN, f"; raised to min_replicas {lo}"
        rules = spec.behavior.scale_down if desired > pre else spec.behavior.scale_up
        direction = "down" if desired > pre else "up"
        return Binding.STABILIZATION, (
            f"; {desired} held by the {rules.stabilization_window_s} s scale-{direction} "
            f"stabilization window (wants {pre})"
        )
    if pre != target:
        if target > hi:
            return Binding.MAX, f"; capped at max_replicas {hi} (needs {target})"
        return Binding.MIN, f"; raised to min_replicas {lo} (needs {target})"
    return None, ""
