"""Model-specific checks: our state recursion reproduces statsmodels, seasonal naive copies the season,
the sqrt transform keeps the interval asymmetric and non-negative, intervals track fresh errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from autoscaler.forecast import registry
from autoscaler.forecast.base import ForecastError
from autoscaler.forecast.holt_winters import HoltWinters

M = 24


def series(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.maximum(10 + 5 * np.sin(2 * np.pi * t / M) + 0.01 * t + rng.normal(0, 1, n), 0.0)


@pytest.mark.parametrize("trend", [False, True])
def test_holt_winters_update_matches_statsmodels_recursion(trend: bool) -> None:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = series(20 * M)
    n = 16 * M
    model = HoltWinters(season_length=M, trend=trend, transform="none", fit_seasons=100)
    model.fit(y[:n], 60.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref0 = ExponentialSmoothing(
            y[:n],
            trend="add" if trend else None,
            damped_trend=trend,
            seasonal="add",
            seasonal_periods=M,
            initialization_method="heuristic",
        ).fit(use_brute=False)
        # same parameters and initial state on the longer series = what update() must reproduce
        ref = ExponentialSmoothing(
            y,
            trend="add" if trend else None,
            damped_trend=trend,
            seasonal="add",
            seasonal_periods=M,
            initialization_method="known",
            initial_level=ref0.params["initial_level"],
            initial_trend=ref0.params["initial_trend"] if trend else None,
            initial_seasonal=ref0.params["initial_seasons"],
        ).fit(
            smoothing_level=model.alpha,
            smoothing_trend=model.beta if trend else None,
            smoothing_seasonal=model.gamma,
            damping_trend=model.phi if trend else None,
            optimized=False,
        )
    np.testing.assert_allclose(model._point_z(M - 1), ref0.forecast(M - 1), rtol=1e-9, atol=1e-9)
    model.update(y[n:])
    np.testing.assert_allclose(model._point_z(M - 1), ref.forecast(M - 1), rtol=1e-8, atol=1e-8)


def test_seasonal_naive_repeats_last_season_and_tracks_updates() -> None:
    y = series(3 * M)
    m = registry.create("seasonal-naive", season_length=M, transform="none").fit(y, 60.0)
    np.testing.assert_allclose(m.predict(M, origin_s=0.0).mean, y[-M:], atol=np.abs(y).max() * 0.05)
    m.update(np.array([100.0, np.nan]))
    pz = m._point_z(M)
    assert pz[-2] == 100.0  # the new value is next season's forecast of its phase
    assert pz[-1] == y[-M + 1]  # missing value: last season's value kept for that phase


def test_sqrt_transform_gives_asymmetric_non_negative_interval() -> None:
    y = np.random.default_rng(1).poisson(3.0, 30 * M).astype(float)
    fc = registry.create("naive", season_length=M).fit(y, 60.0).predict(1, origin_s=0.0, level=0.95)
    assert fc.lo[0] >= 0.0
    assert fc.hi[0] - fc.mean[0] > fc.mean[0] - fc.lo[0]  # Poisson-like: longer upper tail
    none = registry.create("naive", season_length=M, transform="none").fit(y, 60.0)
    assert none.predict(1, origin_s=0.0).lo[0] >= 0.0
    with pytest.raises(ForecastError, match=r"transform 'cube' is unknown"):
        registry.create("naive", season_length=M, transform="cube")


def test_intervals_widen_when_fresh_errors_grow() -> None:
    rng = np.random.default_rng(2)
    quiet = 50 + rng.normal(0, 1, 400)
    model = registry.create("naive", season_length=M, transform="none", recalibrate_every=50).fit(quiet, 60.0)
    first = model.predict(1, origin_s=0.0)
    width0 = float(first.hi[0] - first.lo[0])
    model.update(50 + rng.normal(0, 10, 2_000))
    fc = model.predict(1, origin_s=0.0)
    assert fc.hi[0] - fc.lo[0] > 5 * width0
    assert model.fits == 1


def test_horizon_beyond_max_horizon_keeps_widening() -> None:
    y = series(10 * M)
    fc = registry.create("holt", season_length=M, max_horizon=5).fit(y, 60.0).predict(20, origin_s=0.0)
    width = fc.hi - fc.lo
    assert width[19] > width[4]


def test_holt_on_a_short_ramp_damps_the_trend_and_has_honest_intervals() -> None:
    from autoscaler.forecast.holt import Holt

    ramp = np.linspace(0.0, 5.0, 12)
    model = Holt().fit(ramp, 60.0)
    assert model.phi <= 0.9 + 1e-9
    fc = model.predict(5, origin_s=0.0, level=0.9)
    assert np.all(fc.hi - fc.lo > 0.5)  # 11 in-sample errors: no longer a zero-width interval
    model.update(np.full(5, 5.0))  # the ramp has ended: five flat steps, no refit
    fc = model.predict(5, origin_s=0.0)
    assert np.all(np.abs(fc.mean - 5.0) < 0.5)  # before: 8.5 five steps ahead
    assert fc.quantile(0.9).max() < 1.5 * 5.0
    # a genuine ramp is still extrapolated
    up = registry.create("holt", season_length=1).fit(np.linspace(1.0, 20.0, 25), 60.0).predict(5, origin_s=0.0)
    assert np.all(np.diff(up.mean) > 0) and up.mean[-1] > 21.0


def test_holt_short_history_mode_only_below_the_threshold() -> None:
    from autoscaler.forecast.holt import SHORT_HISTORY, Holt

    y = series(SHORT_HISTORY + 10)
    short, long = Holt().fit(y[: SHORT_HISTORY - 1], 60.0), Holt().fit(y, 60.0)
    assert short.short_history_mode and not long.short_history_mode
    level_z, mu_z = short._level, short._point_z(10)  # the model works on sqrt(y)
    for level in (0.5, 0.99):
        fc = short.predict(10, origin_s=0.0, level=level)
        # the interval's half-width on the sqrt scale stays within 5 %..25 % of the level
        assert np.all(np.sqrt(fc.hi) - mu_z <= 0.25 * level_z + 1e-9)
        assert np.all(mu_z - np.sqrt(fc.lo) >= 0.05 * level_z - 1e-9)
