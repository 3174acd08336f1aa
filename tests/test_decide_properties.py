"""Hypothesis properties of core.decide: bounds under garbage, no scale-down on missing data, purity.

Inputs are arbitrary: rates NaN/inf/negative/huge, replica counts out of range or unknown, forecasts
with NaN/inf/negative values and any origin, observations from the past or the future, and states
produced by earlier arbitrary ticks.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.core.decide import State, decide
from autoscaler.core.types import MISSING, Forecast, Observation, Signal, SignalStatus
from autoscaler.spec.types import Provisioning, ServingAutoscalerSpec, TargetRef

SETTINGS = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])

garbage = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=50_000.0),
    st.sampled_from([0.0, -1.0, 1e308, math.inf, -math.inf, math.nan]),
)


@st.composite
def signals(draw: st.DrawFn) -> Signal:
    kind = draw(st.sampled_from(["ok", "raw", "missing"]))
    if kind == "missing":
        status = draw(st.sampled_from([s for s in SignalStatus if s is not SignalStatus.OK]))
        return Signal.missing(status, "gone")
    value = draw(garbage)
    # "raw" bypasses Signal.of's cleaning: an OK signal carrying NaN/inf/negative.
    return Signal.of(value) if kind == "ok" else Signal(value)


replica_counts = st.one_of(st.none(), st.integers(min_value=-3, max_value=10_000))


@st.composite
def observations(draw: st.DrawFn, now_s: float) -> Observation | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    age = draw(st.sampled_from([0.0, 5.0, 119.0, 121.0, 10_000.0, -500.0, math.nan]))
    return Observation(
        time_s=now_s - age,
        request_rate_rps=draw(signals()),
        burst_rate_rps=draw(signals()),
        rejected_rps=draw(signals()),
        latency_ms=draw(signals()),
        mean_batch_size=draw(signals()),
        cold_start_s=draw(signals()),
        current_replicas=draw(replica_counts),
        ready_replicas=draw(replica_counts),
        pending_replicas=draw(replica_counts),
    )


@st.composite
def forecasts(draw: st.DrawFn, now_s: float) -> Forecast | None:
    if draw(st.booleans()):
        return None
    n = draw(st.integers(1, 12))
    mean = np.array(draw(st.lists(garbage, min_size=n, max_size=n)), dtype=np.float64)
    spread = np.array(draw(st.lists(garbage, min_size=n, max_size=n)), dtype=np.float64)
    origin = now_s - draw(st.sampled_from([0.0, 30.0, 600.0, 100_000.0, -50.0]))
    step = draw(st.sampled_from([1.0, 15.0, 60.0]))
    with np.errstate(all="ignore"):
        lo, hi = mean - spread, mean + spread
    return Forecast(origin, step, mean, lo, hi, 0.8, "garbage")


@st.composite
def specs(draw: st.DrawFn) -> ServingAutoscalerSpec:
    lo = draw(st.integers(0, 5))
    hi = draw(st.integers(max(lo, 1), 40))
    lead = draw(st.sampled_from([None, 0.0, 60.0, 600.0]))
    return ServingAutoscalerSpec(
        name="p",
        target=TargetRef("ns", "dep", "m"),
        min_replicas=lo,
        max_replicas=hi,
        provisioning=Provisioning(lead_time_s=lead),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ServingAutoscalerSpec, State, Observation | None, Forecast | None, float]:
    """A spec, a state reached through a few arbitrary ticks, and the next tick's inputs."""
    spec = draw(specs())
    t = 1_000.0
    state = State.initial(spec, t, draw(st.integers(0, 60)))
    for _ in range(draw(st.integers(0, 3))):
        t += draw(st.sampled_from([1.0, 15.0, 61.0]))
        _, state = decide(spec, state, draw(observations(t)), draw(forecasts(t)), now_s=t)
    t += 15.0
    return spec, state, draw(observations(t)), draw(forecasts(t)), t


@SETTINGS
@given(scenarios())
def test_desired_always_within_min_max(case: tuple) -> None:  # type: ignore[type-arg]
    spec, state, o, fc, now_s = case
    d, new_state = decide(spec, state, o, fc, now_s=now_s)
    assert spec.min_replicas <= d.desired_replicas <= spec.max_replicas
    assert spec.min_replicas <= new_state.last_desired_replicas <= spec.max_replicas
    assert all(p.replicas >= 0 for p in d.proposals)
    for v in (d.observed_rps, d.forecast_rps, d.capacity_rps, d.lead_time_s):
        assert v is None or math.isfinite(v)
    assert d.reason


@SETTINGS
@given(scenarios(), st.sampled_from(["missing", "nan-status", "stale", "raw-nan", "negative"]))
def test_no_scale_down_on_missing_data(case: tuple, how: str) -> None:  # type: ignore[type-arg]
    spec, state, o, fc, now_s = case
    if o is None or o.current_replicas is None or o.current_replicas < 0:
        o = Observation(time_s=now_s, current_replicas=3)
    if how == "missing":
        o = dataclasses.replace(o, request_rate_rps=Signal.missing(SignalStatus.ERROR, "down"))
    elif how == "nan-status":
        o = dataclasses.replace(o, request_rate_rps=Signal.of(math.nan))
    elif how == "raw-nan":
        o = dataclasses.replace(o, request_rate_rps=Signal(math.nan))
    elif how == "negative":
        o = dataclasses.replace(o, request_rate_rps=Signal(-5.0))
    else:
        o = dataclasses.replace(o, time_s=now_s - spec.provisioning.stale_after_s - 1.0)
    d, _ = decide(spec, state, o, fc, now_s=now_s)
    assert d.valid
    assert o.current_replicas is not None
    floor = min(max(o.current_replicas, state.last_desired_replicas), spec.max_replicas)
    assert d.desired_replicas >= max(floor, spec.min_replicas)
    assert d.binding.value == "hold-missing-data"
    assert "never scaling down on missing data" in d.reason


@SETTINGS
@given(scenarios())
def test_deterministic_and_does_not_mutate_inputs(case: tuple) -> None:  # type: ignore[type-arg]
    spec, state, o, fc, now_s = case
    before = copy.deepcopy((spec, state, o, fc))
    d1, s1 = decide(spec, state, o, fc, now_s=now_s)
    d2, s2 = decide(spec, state, o, fc, now_s=now_s)
    assert d1 == d2 and s1 == s2
    assert (spec, state, o) == before[:3]
    if fc is not None:
        assert before[3] is not None
        for a, b in ((fc.mean, before[3].mean), (fc.lo, before[3].lo), (fc.hi, before[3].hi)):
            np.testing.assert_array_equal(a, b)


@SETTINGS
@given(scenarios())
def test_never_below_observed_need_or_down_in_panic(case: tuple) -> None:  # type: ignore[type-arg]
    """Reactive floor + scale-in guard: the count never drops below what the observed load needs,
    and never drops at all in panic. (Scale-up rate limits may hold it below the need, never below
    the last desired count.)"""
    spec, state, o, fc, now_s = case
    d, _ = decide(spec, state, o, fc, now_s=now_s)
    ref = state.last_desired_replicas
    observed = [p.replicas for p in d.proposals if p.signal == "observed"]
    if d.valid and observed:
        assert d.desired_replicas >= min(observed[0], ref, spec.max_replicas)
    if d.valid and d.panic:
        assert d.desired_replicas >= min(ref, spec.max_replicas)


@SETTINGS
@given(scenarios())
def test_scale_in_only_when_observed_load_agrees(case: tuple) -> None:  # type: ignore[type-arg]
    """Rule 4: any scale-in below the last desired count has a valid observed proposal below it."""
    spec, state, o, fc, now_s = case
    d, _ = decide(spec, state, o, fc, now_s=now_s)
    ref = min(state.last_desired_replicas, spec.max_replicas)
    if d.valid and d.desired_replicas < ref:
        observed = [p.replicas for p in d.proposals if p.signal == "observed"]
        assert observed and observed[0] < ref
        assert d.binding.value != "hold-missing-data"


@SETTINGS
@given(
    st.integers(1, 30),
    st.integers(1, 10),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1e6),
    st.sampled_from([None, 0.0, 0.5, 1.0]),
)
def test_no_cascade_while_our_pods_are_pending(
    ref: int, pending: int, load_fraction: float, forecast_rps: float, burst_fraction: float | None
) -> None:
    """Rule 6: with our pods pending, a forecast (however high) never raises the count while the
    observed and burst load fit in the last desired count."""
    spec = ServingAutoscalerSpec(name="p", target=TargetRef("ns", "dep", "m"), max_replicas=50)
    probe, _ = decide(spec, State.initial(spec, 0.0, ref), Observation(0.0, current_replicas=ref), None, now_s=0.0)
    assert probe.capacity_rps is not None
    fits_rps = ref * probe.capacity_rps * (1.0 - spec.provisioning.headroom) * 0.999
    state = dataclasses.replace(State.initial(spec, 0.0, ref), last_scale_up_s=-15.0)
    o = Observation(
        time_s=0.0,
        request_rate_rps=Signal.of(load_fraction * fits_rps),
        burst_rate_rps=Signal.of(burst_fraction * fits_rps) if burst_fraction is not None else MISSING,
        current_replicas=ref,
        ready_replicas=max(0, ref - pending),
        pending_replicas=pending,
    )
    mean = np.full(10, forecast_rps)
    fc = Forecast(0.0, 60.0, mean, mean * 0.8, mean * 1.2, 0.9, "any")
    d, _ = decide(spec, state, o, fc, now_s=0.0)
    assert d.desired_replicas <= ref
