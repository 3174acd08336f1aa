"""ForecastDriver: bucketing, missing data, warm start, fallback notes, refit cadence, caching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.forecast.base import ForecastError
from autoscaler.forecast.driver import ForecastDriver, impute
from autoscaler.spec.types import ForecasterSpec

STEP_S = 60
SEASON_S = 3_600  # a one-hour "season" of 60 steps keeps the tests fast
M = SEASON_S // STEP_S


def spec(model: str = "auto", refit_s: int = 600) -> ForecasterSpec:
    return ForecasterSpec(
        model=model, season_length_s=SEASON_S, step_s=STEP_S, history_s=10 * SEASON_S, refit_interval_s=refit_s
    )


def load(t_s: np.ndarray) -> np.ndarray:
    return 100 + 50 * np.sin(2 * np.pi * t_s / SEASON_S)


def history(n_steps: int, end_s: float = 0.0, seed: int = 0) -> np.ndarray:
    t = end_s - STEP_S * np.arange(n_steps, 0, -1) + STEP_S / 2
    return load(t) + np.random.default_rng(seed).normal(0, 2, n_steps)


def test_warm_start_forecasts_immediately_with_a_seasonal_model() -> None:
    d = ForecastDriver(spec("holt-winters"))
    d.warm_start(history(4 * M, end_s=36_000.0), end_s=36_000.0)
    fc = d.forecast(36_000.0, 600.0)
    assert fc is not None and d.fit_count == 1 and fc.model == "holt-winters"
    assert fc.origin_s == 36_000.0 and fc.step_s == STEP_S and fc.horizon == 11
    truth = load(36_000.0 + STEP_S * np.arange(11) + STEP_S / 2)
    assert np.max(np.abs(fc.mean - truth)) < 10.0
    assert fc.note == ""


def test_auto_with_less_than_two_seasons_falls_back_and_notes_it() -> None:
    d = ForecastDriver(spec("auto"))
    d.warm_start(history(int(1.5 * M)), end_s=0.0)
    fc = d.forecast(0.0, 300.0)
    assert fc is not None and fc.model == "holt"
    assert "less than two seasons" in fc.note
    fixed = ForecastDriver(spec("seasonal-naive"))
    fixed.warm_start(history(30), end_s=0.0)
    fc2 = fixed.forecast(0.0, 300.0)
    assert fc2 is not None and fc2.model == "holt" and "seasonal-naive needs" in fc2.note


def test_switches_to_seasonal_once_two_seasons_have_been_observed() -> None:
    d = ForecastDriver(spec("auto", refit_s=600))
    d.warm_start(history(int(1.5 * M)), end_s=0.0)
    assert d.forecast(0.0, 300.0) is not None and d.model_name == "holt"
    for t in range(0, 2 * SEASON_S, 15):
        d.observe(float(t), float(load(np.array([t]))[0]))
        d.forecast(float(t), 300.0)
    assert d.model_name in ("holt-winters", "seasonal-naive")
    fc = d.forecast(2.0 * SEASON_S, 300.0)
    assert fc is not None and "less than two seasons" not in fc.note


def test_none_until_ten_valid_buckets() -> None:
    d = ForecastDriver(spec())
    assert d.forecast(0.0, 300.0) is None
    for i in range(10):
        d.observe(i * 60.0 + 1, 10.0)
    assert d.forecast(9 * 60.0 + 1, 300.0) is None  # 9 completed buckets
    d.observe(10 * 60.0 + 1, 10.0)
    assert d.forecast(10 * 60.0 + 1, 300.0) is not None


def test_missing_data_is_never_zero() -> None:
    base = history(4 * M, end_s=0.0)
    held, zeroed = ForecastDriver(spec("holt")), ForecastDriver(spec("holt"))
    for d in (held, zeroed):
        d.warm_start(base, end_s=0.0)
        d.forecast(0.0, 300.0)
    for t in range(0, 300, 15):
        held.observe(float(t), None if t % 30 else math.nan)
        zeroed.observe(float(t), 0.0)
    f_held, f_zero = held.forecast(300.0, 300.0), zeroed.forecast(300.0, 300.0)
    assert f_held is not None and f_zero is not None
    assert f_held.mean[0] > 40.0  # carried forward near the last level, not dragged to 0
    assert f_zero.mean[0] < f_held.mean[0] / 2
    assert "last 5 step(s) missing" in f_held.note and "missing" not in f_zero.note
    assert list(held.values[-5:]) == pytest.approx([math.nan] * 5, nan_ok=True)


def test_buckets_average_observations_and_late_ones_are_dropped() -> None:
    d = ForecastDriver(spec())
    d.observe(0.0, 10.0)
    d.observe(30.0, 20.0)
    d.observe(65.0, 40.0)  # completes the first bucket
    d.observe(10.0, 99.0)  # late: that bucket is closed
    assert list(d.values) == [15.0] and d.late_observations == 1
    d.observe(250.0, 5.0)  # buckets 2 and 3 saw nothing: missing
    assert d.values[1] == 40.0 and math.isnan(d.values[2]) and math.isnan(d.values[3])


def test_forecast_is_cached_within_a_bucket_and_refits_on_schedule() -> None:
    d = ForecastDriver(spec("holt-winters", refit_s=600), min_refit_interval_s=0)
    d.warm_start(history(4 * M), end_s=0.0)
    a = d.forecast(0.0, 120.0)
    b = d.forecast(30.0, 120.0)
    assert a is b  # same bucket, same horizon: no new work
    for t in range(0, 1_800, 15):
        d.observe(float(t), 100.0)
        d.forecast(float(t), 120.0)
    assert d.fit_count == 3  # the warm-start fit, then refits at 600 s and 1200 s
    default = ForecastDriver(spec("holt-winters", refit_s=600))
    assert default.refit_interval_s == SEASON_S  # floor of one season unless the caller lowers it


def test_warm_start_on_finer_grid_is_averaged() -> None:
    d = ForecastDriver(spec())
    per_s = np.repeat([10.0, 20.0, np.nan], 60)
    per_s[125] = 50.0  # one valid second in an otherwise missing minute
    d.warm_start(per_s, end_s=180.0, step_s=1.0)
    assert list(d.values) == [10.0, 20.0, 50.0]
    with pytest.raises(ForecastError, match="must divide the forecast step"):
        d.warm_start(per_s, end_s=180.0, step_s=7.0)


def test_impute_uses_last_season_then_interpolation() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 6.0, np.nan, np.nan])
    out = impute(y, 4)
    assert out[4] == 1.0  # same phase one season earlier
    assert out[6] == 3.0 and out[7] == 4.0
    np.testing.assert_array_equal(impute(np.array([1.0, np.nan, 3.0]), 1), [1.0, 2.0, 3.0])


def test_bad_spec_is_rejected_and_named_model_used() -> None:
    with pytest.raises(ForecastError, match=r"model 'arima' is unknown"):
        ForecastDriver(spec("arima"))
    d = ForecastDriver(spec("holt-winters"))
    d.warm_start(history(3 * M), end_s=0.0)
    fc = d.forecast(0.0, 120.0)
    assert fc is not None and fc.model == "holt-winters"


def test_silence_longer_than_the_history_keeps_forecasting() -> None:
    d = ForecastDriver(spec("holt"))
    d.warm_start(history(4 * M), end_s=0.0)
    assert d.forecast(0.0, 300.0) is not None
    later = 50 * SEASON_S  # 50 h without a single observation; history holds 10 h
    d.observe(later, 120.0)
    fc = d.forecast(later + 61.0, 300.0)
    assert fc is not None and np.all(np.isfinite(fc.mean)) and fc.origin_s == later + 60.0
    assert len(d.values) <= d.history_len


def cold_start(model: str, values: list[float], horizon_s: float = 300.0) -> tuple[ForecastDriver, list[float]]:
    """Replay per-step values from an empty driver (4 ticks per step); the p90 peak over the horizon
    at the last tick of every step (NaN while there is no forecast yet)."""
    d = ForecastDriver(spec(model, refit_s=3_600))
    peaks = []
    for k, v in enumerate(values):
        fc = None
        for j in range(4):
            t = k * STEP_S + j * STEP_S / 4
            d.observe(t, v)
            fc = d.forecast(t, horizon_s)
        peaks.append(math.nan if fc is None else float(fc.quantile(0.9).max()))
    return d, peaks


@pytest.mark.parametrize("model", ["auto", "holt"])
def test_cold_start_ramp_then_flat_does_not_keep_extrapolating(model: str) -> None:
    # a daemon without history sees a 12-step ramp to 5 rps, then flat load: before the short-history
    # fix the fallback kept the ramp's trend for an hour and its p90 grew to 66 rps (14 rps 2 steps later)
    ramp = [float(v) for v in np.linspace(0.0, 5.0, 12)]
    d, peaks = cold_start(model, ramp + [5.0] * 30)
    after = np.array(peaks[12:])
    assert np.all(after <= 2.0 * 5.0), f"p90 after the ramp: {after.round(1).tolist()}"
    assert np.all(after[5:] <= 1.5 * 5.0)
    fc = d.forecast(42 * STEP_S, 300.0)
    assert fc is not None and np.all(np.abs(fc.mean - 5.0) < 0.5)
    # refitted on every bucket while the fit had fewer than 30 points (10, 11, ... 30), then on schedule
    assert d.fit_count == 21


def test_cold_start_sustained_ramp_is_still_followed() -> None:
    values = [float(v) for v in np.linspace(1.0, 20.0, 30)]
    d, _ = cold_start("auto", values)
    fc = d.forecast(30 * STEP_S, 300.0)
    assert fc is not None and d.model_name == "holt"
    assert np.all(np.diff(fc.mean) > 0) and fc.mean[-1] > values[-1] + 1.0
    assert fc.quantile(0.9)[-1] > values[-1] + 2.0
