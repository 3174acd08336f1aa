"""The decision core's memos and shortcuts equal what they stand for (core/decide.py, core/types.py).

* `_capacity_rps` memoizes capacity per (profile, SLO, 1 % scale step, batching params): equal to
  the shared model's `capacity_at_slo_rps`, and forgotten by `clear_model_caches`.
* Calibration compares the observed quantile with the model's bucketed one directly: equal to
  comparing a debiased observation (observed × exact / bucketed) against the exact quantile, in which
  the exact quantile cancels.
* `Forecast.peak_step` is memoized on the forecast: equal to the array expression, fresh per copy.
* `decide()` builds its new `State` field by field (no `dataclasses.replace`): a hold tick carries every
  field it does not set each tick.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import decide as decide_module
from autoscaler.core.capacity import Calibration, CapacityModel, calibrate, histogram_quantile_ms
from autoscaler.core.decide import State, clear_model_caches, decide
from autoscaler.core.hpa_behavior import HpaHistory, record_initial_recommendation
from autoscaler.core.types import Decision, Forecast, Observation, Signal
from autoscaler.spec.types import BatchingParams, Provisioning, ServingAutoscalerSpec, TargetRef

SPEC = ServingAutoscalerSpec(
    name="resnet",
    target=TargetRef("ml", "resnet", "resnet"),
    min_replicas=1,
    max_replicas=20,
    provisioning=Provisioning(lead_time_s=60.0, decision_period_s=15.0, metrics_lag_s=30.0),
)


@pytest.mark.parametrize("scale", [0.62, 0.995, 1.0, 1.004, 1.37, math.nan, -1.0])
def test_capacity_memo_equals_the_shared_model(scale: float) -> None:
    clear_model_caches()
    for params in (SPEC.batching.initial, BatchingParams(32, 0, 2, 100), BatchingParams(0, 0, 1, 1)):
        got = decide_module._capacity_rps(SPEC, Calibration(scale), params)
        model = decide_module._capacity_model(SPEC.profile, scale)
        try:
            want = model.capacity_at_slo_rps(params, SPEC.slo)
        except ValueError:  # invalid parameters have no capacity
            want = 0.0
        assert got == want
        assert decide_module._capacity_rps(SPEC, Calibration(scale), params) == got  # from the memo
    assert decide_module._CAPACITIES
    clear_model_caches()
    assert not decide_module._CAPACITIES


@pytest.mark.parametrize("load", [0.1, 0.4, 0.8])
@pytest.mark.parametrize("observed_factor", [0.7, 1.0, 1.3])
def test_calibration_against_the_bucketed_quantile_equals_the_debiased_exact_one(
    load: float, observed_factor: float
) -> None:
    model = CapacityModel(SPEC.profile, service_scale=1.01**3)
    params, q = SPEC.batching.initial, SPEC.slo.latency_quantile
    rate = load * model.capacity_at_slo_rps(params, SPEC.slo)
    measured = histogram_quantile_ms(model, rate, params, q)
    observed = observed_factor * measured
    cal = Calibration(1.01**3, 4)
    new = calibrate(
        cal, SPEC.profile, params, rate_per_replica_rps=rate, observed_latency_ms=observed, quantile=q,
        observed_batch_size=3.0, model=model, predicted_latency_ms=measured,
    )  # fmt: skip
    exact = model.latency_quantile_ms(rate, params, q)
    old = calibrate(
        cal, SPEC.profile, params, rate_per_replica_rps=rate, observed_latency_ms=observed * exact / measured,
        quantile=q, observed_batch_size=3.0, model=model,
    )  # fmt: skip
    assert new.samples == old.samples
    assert new.service_scale == pytest.approx(old.service_scale, rel=1e-12)


def test_calibrate_rejects_a_prediction_that_is_not_positive() -> None:
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="predicted_latency_ms"):
            calibrate(
                Calibration(), SPEC.profile, SPEC.batching.initial, rate_per_replica_rps=10.0,
                observed_latency_ms=20.0, quantile=0.99, predicted_latency_ms=bad,
            )  # fmt: skip


def _forecast(mean: list[float], spread: list[float]) -> Forecast:
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(spread, dtype=np.float64)
    return Forecast(origin_s=100.0, step_s=60.0, mean=m, lo=m - s, hi=m + s, level=0.9, model="test")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 1e4), st.floats(0.0, 1e3)), min_size=1, max_size=12),
    st.floats(0.0, 900.0),
    st.floats(1.0, 600.0),
    st.sampled_from([0.5, 0.9, 0.95, 0.99]),
)
def test_memoized_forecast_peak_equals_the_array_expression(
    steps: list[tuple[float, float]], start_offset_s: float, length_s: float, q: float
) -> None:
    fc = _forecast([m for m, _ in steps], [s for _, s in steps])
    start_s = fc.origin_s + start_offset_s
    first = fc.peak_step(start_s, start_s + length_s, q)
    assert fc.peak_step(start_s, start_s + length_s, q) == first  # the memo
    lo_i = max(0, math.floor((start_s - fc.origin_s) / fc.step_s))
    hi_i = min(fc.horizon, math.ceil((start_s + length_s - fc.origin_s) / fc.step_s))
    if hi_i <= lo_i:
        assert first is None
        return
    values = fc.quantile(q)[lo_i:hi_i]
    assert first is not None
    assert first[0] == float(values.max())
    assert first[1] == lo_i + int(np.argmax(values))


def test_forecast_peak_memo_is_per_forecast_and_not_part_of_equality() -> None:
    fc = _forecast([10.0, 30.0, 20.0], [1.0, 1.0, 1.0])
    assert fc.peak_step(100.0, 280.0, 0.95) is not None
    copy = dataclasses.replace(fc, note="copied")
    assert copy._peaks == {}
    assert dataclasses.replace(copy, note="") == fc


# The fields a hold tick sets afresh: the HPA's per-sync recommendation record, the calibration
# regime's clock, and the bookkeeping of the call itself. Every other field is carried.
_SET_EACH_TICK = {"hpa", "calibration_regime_since_s", "last_decision_s", "last_valid", "invalid_streak"}


def _unlike_initial(state: State, earlier: Decision) -> State:
    """`state` with every field changed to a value `State.initial` never gives, chosen by the field's
    value type (a field of a new type fails here, asking for a value)."""
    by_type: dict[type, object] = {
        HpaHistory: record_initial_recommendation(HpaHistory(), 4, 1.0),
        BatchingParams: BatchingParams(16, 2000, 2, 50),
        Calibration: Calibration(1.1, 7),
        Decision: earlier,
    }
    changed: dict[str, object] = {}
    for f in dataclasses.fields(State):
        v = getattr(state, f.name)
        if f.name == "panic_max_replicas":  # keeps the tick a hold at 4 while panicking
            changed[f.name] = 4
        elif isinstance(v, int):
            changed[f.name] = v + 1
        elif f.name.endswith("_s"):  # a time (float, or None for never)
            changed[f.name] = 12.0 if v is None else v + 7.0
        elif f.name == "last_valid":
            changed[f.name] = earlier
        else:
            assert type(v) in by_type, f"State.{f.name}: give _unlike_initial a value of type {type(v).__name__}"
            changed[f.name] = by_type[type(v)]
    return dataclasses.replace(state, **changed)


def test_decide_carries_every_state_field_it_does_not_set_each_tick() -> None:
    """decide() spells out each State field (faster than dataclasses.replace): a field it forgets
    would silently fall back to its default every tick. A hold tick from a state unlike the initial one
    in every field must carry every field but the few it sets each tick (new fields included)."""
    init = State.initial(SPEC, 5.0, 3)
    obs0 = Observation(time_s=10.0, request_rate_rps=Signal.of(50.0), current_replicas=3, ready_replicas=3)
    earlier, _ = decide(SPEC, init, obs0, None, now_s=10.0)
    state = _unlike_initial(init, earlier)
    assert [f.name for f in dataclasses.fields(State) if getattr(state, f.name) == getattr(init, f.name)] == []
    obs = Observation(time_s=20.0, request_rate_rps=Signal.of(50.0), current_replicas=4, ready_replicas=4)
    decision, new = decide(SPEC, state, obs, None, now_s=20.0)
    assert decision.valid and decision.desired_replicas == state.last_desired_replicas == 4, decision.reason
    carried = [f.name for f in dataclasses.fields(State) if f.name not in _SET_EACH_TICK]
    assert {n: getattr(new, n) for n in carried} == {n: getattr(state, n) for n in carried}
    assert new.invalid_streak == 0
    assert new.last_valid is decision
    assert new.last_decision_s == 20.0
