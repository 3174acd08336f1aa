"""The surge reserve: learned from the history's own climbs, at the SLO's miss budget, and used by decide()."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from autoscaler.core.decide import State, decide
from autoscaler.core.surge import MIN_SEASONS, MIN_WINDOWS, surge_budget, surge_ratios, window_peak
from autoscaler.core.types import Binding, Forecast, Observation, Signal
from autoscaler.spec.types import ServingAutoscalerSpec, TargetRef


def _excess_share(y: np.ndarray, r: float, k: int, base_steps: int) -> float:
    b = window_peak(y, base_steps)[: len(y) - k]
    a = np.stack([y[j : len(y) - k + j] for j in range(1, k + 1)])
    return float(np.maximum(a - r * b, 0.0).sum() / a.sum())


def test_ratio_is_the_smallest_that_keeps_the_excess_within_budget() -> None:
    rng = np.random.default_rng(3)
    y = 100.0 * rng.lognormal(0.0, 0.3, 5000)
    budget = surge_budget(0.999)
    (r1, r2, r3) = surge_ratios(y, 3, budget)
    assert 1.0 < r1 <= r2 <= r3
    for k, r in ((1, r1), (2, r2), (3, r3)):
        assert _excess_share(y, r, k, 1) <= budget * 1.0001
        assert _excess_share(y, r * 0.99, k, 1) > budget  # a smaller ratio would break it


def test_a_smooth_load_needs_no_reserve_and_a_spiky_one_does() -> None:
    smooth = np.full(2000, 500.0)
    assert surge_ratios(smooth, 2, surge_budget(0.999)) == (1.0, 1.0)
    spiky = smooth.copy()
    spiky[::50] *= 3.0  # a 3x minute every 50 minutes: 2 % of the minutes, ~4 % of the requests
    r = surge_ratios(spiky, 1, surge_budget(0.999))[0]
    assert 2.5 < r <= 3.0
    # measured against the window's peak, a spike that repeats within the window costs nothing more
    assert surge_ratios(spiky, 1, surge_budget(0.999), base_steps=60)[0] == 1.0


def test_too_little_or_missing_history_learns_nothing() -> None:
    assert surge_ratios(np.full(MIN_WINDOWS - 1, 5.0), 3, 0.001) == ()
    assert surge_ratios(np.full(5000, np.nan), 3, 0.001) == ()
    assert surge_ratios(np.zeros(5000), 3, 0.001) == ()
    with_gaps = np.full(5000, 100.0)
    with_gaps[::3] = np.nan  # windows that touch a gap are skipped, the rest still count
    assert surge_ratios(with_gaps, 1, 0.001) == (1.0,)


def _days_with_one_outage(days: int, day_steps: int = 1440) -> np.ndarray:
    """A noisy diurnal load; on three days the logging stops for 10 steps at the daily peak and the load
    comes back at once."""
    rng = np.random.default_rng(7)
    t = np.arange(days * day_steps)
    y = 1000.0 * (1.2 + np.sin(2 * np.pi * t / day_steps)) * rng.lognormal(0.0, 0.1, len(t))
    for day in (1, 5, 9)[: max(0, days - 1)]:
        y[day * day_steps + 350 : day * day_steps + 360] = 1.0  # an outage: a trickle, then the whole load
    return y


def test_pooling_days_keeps_one_rare_event_from_setting_every_days_reserve() -> None:
    y = _days_with_one_outage(14)
    budget = surge_budget(0.999, 0.125)
    whole = surge_ratios(y, 2, budget, base_steps=5)
    pooled = surge_ratios(y, 2, budget, base_steps=5, season_steps=1440, pool_quantile=0.5)
    # three outages' recoveries are more than a 1.25e-4 budget of the fortnight's requests
    assert whole[-1] > 4.0
    assert 1.0 <= pooled[0] <= pooled[1] < 1.6
    # the outage days alone need the big ratio: the pool's upper quantile finds it
    assert surge_ratios(y, 2, budget, base_steps=5, season_steps=1440, pool_quantile=1.0)[-1] > 4.0
    # and each pooled ratio is the median of the days' own ratios
    days = [surge_ratios(y[i * 1440 : (i + 1) * 1440], 2, budget, base_steps=5)[0] for i in range(14)]
    assert pooled[0] == pytest.approx(max(1.0, float(np.median(days))))


def test_pooling_needs_enough_seasons_and_a_valid_quantile() -> None:
    y = _days_with_one_outage(MIN_SEASONS - 1)
    budget = surge_budget(0.999)
    assert surge_ratios(y, 2, budget, season_steps=1440, pool_quantile=0.5) == surge_ratios(y, 2, budget)
    with pytest.raises(ValueError, match="pool_quantile"):
        surge_ratios(y, 2, budget, season_steps=1440, pool_quantile=0.0)


def _steady(rate_rps: float) -> Observation:
    """4 ready replicas, no pending, no rejections, at `rate_rps`."""
    return Observation(
        time_s=0.0,
        request_rate_rps=Signal.of(rate_rps),
        burst_rate_rps=Signal.of(rate_rps),
        rejected_rps=Signal.of(0.0),
        current_replicas=4,
        ready_replicas=4,
        pending_replicas=0,
    )


def test_decide_provisions_the_surge_reserve_over_the_lead_time() -> None:
    spec = ServingAutoscalerSpec(name="r", target=TargetRef("ml", "r", "r"), max_replicas=100)
    flat = np.full(10, 1000.0)
    fc = Forecast(origin_s=0.0, step_s=60.0, mean=flat, lo=flat, hi=flat, level=0.95, model="flat")
    obs = _steady(1000.0)
    plain, _ = decide(spec, State.initial(spec, 0.0, 4), obs, fc, now_s=0.0)
    reserve = replace(fc, surge=(1.5, 2.0, 2.5, 3.0, 3.5))
    d, _ = decide(spec, State.initial(spec, 0.0, 4), obs, reserve, now_s=0.0)
    k = int(np.ceil(d.lead_time_s / 60.0))
    (p,) = [p for p in d.proposals if p.signal == "surge"]
    assert p.load_rps == pytest.approx(1000.0 * reserve.surge[k - 1])
    assert d.desired_replicas > plain.desired_replicas and d.binding is Binding.SURGE_RESERVE
    assert "surge reserve" in d.reason


def test_the_reserve_never_exceeds_the_history_peak() -> None:
    spec = ServingAutoscalerSpec(name="r", target=TargetRef("ml", "r", "r"), max_replicas=100)
    flat = np.full(10, 1000.0)
    fc = Forecast(
        origin_s=0.0, step_s=60.0, mean=flat, lo=flat, hi=flat, level=0.95, model="flat",
        surge=(4.0,) * 5, surge_cap_rps=1500.0,
    )  # fmt: skip
    obs = _steady(1000.0)
    d, _ = decide(spec, State.initial(spec, 0.0, 4), obs, fc, now_s=0.0)
    (p,) = [p for p in d.proposals if p.signal == "surge"]
    assert p.load_rps == 1500.0 and "capped at the history's peak" in d.reason
    # a load above the old peak is never cut below itself
    above = _steady(2000.0)
    d2, _ = decide(spec, State.initial(spec, 0.0, 4), above, fc, now_s=0.0)
    (p2,) = [p for p in d2.proposals if p.signal == "surge"]
    assert p2.load_rps == 2000.0


def test_a_driver_with_too_little_history_uses_the_start_up_prior_and_says_so() -> None:
    from autoscaler.core.surge import SURGE_PRIOR_RATIO
    from autoscaler.forecast.driver import driver_for

    spec = ServingAutoscalerSpec(name="r", target=TargetRef("ml", "r", "r"), max_replicas=100)
    step_s = float(spec.forecaster.step_s)
    short = driver_for(spec)  # 1 h of history: fewer than MIN_WINDOWS steps to learn from
    short.warm_start(np.full(60, 1000.0), 3600.0, step_s=step_s)
    fc = short.forecast(3600.0, 600.0)
    assert fc is not None and not fc.surge_learned and fc.surge_cap_rps is None
    assert set(fc.surge) == {SURGE_PRIOR_RATIO}
    d, _ = decide(spec, State.initial(spec, 0.0, 4), replace(_steady(1000.0), time_s=3600.0), fc, now_s=3600.0)
    (p,) = [p for p in d.proposals if p.signal == "surge"]
    assert p.load_rps == pytest.approx(1000.0 * SURGE_PRIOR_RATIO)
    assert d.binding is Binding.SURGE_RESERVE and "start-up reserve" in d.reason
    # with a day of flat history the target's own (no) surge is learned and replaces the prior
    rng = np.random.default_rng(1)
    long = driver_for(spec)
    long.warm_start(1000.0 * rng.lognormal(0.0, 0.01, 1440), 86_400.0, step_s=step_s)
    fc2 = long.forecast(86_400.0, 600.0)
    assert fc2 is not None and fc2.surge_learned and fc2.surge[0] < 1.1 and fc2.surge_cap_rps is not None
