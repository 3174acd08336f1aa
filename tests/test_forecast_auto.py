"""Model selection by rolling-origin backtest, and the short-history fallback."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.forecast.auto import backtest, mase_scale, select
from autoscaler.forecast.base import ForecastError
from autoscaler.forecast.registry import create, names

M = 24


def seasonal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 100 + 60 * np.sin(2 * np.pi * t / M) + rng.normal(0, 2, n)


def test_strong_season_selects_a_seasonal_model_with_mase_below_one() -> None:
    sel = select(seasonal(12 * M), 60.0, M, horizon=3, backtest_steps=4 * M)
    assert sel.name in ("holt-winters", "seasonal-naive") and not sel.fallback
    assert set(sel.scores) == set(names())
    assert sel.scores[sel.name].mase == min(s.mase for s in sel.scores.values())
    assert sel.scores["naive"].mase > sel.scores[sel.name].mase
    assert sel.name in sel.note and "MASE at 3 steps" in sel.note
    # returned model is already walked to the end of the history
    assert sel.forecaster.n_obs == 12 * M


def test_random_walk_selects_a_non_seasonal_model() -> None:
    rng = np.random.default_rng(4)
    y = 500 + np.cumsum(rng.normal(0, 5, 12 * M))
    sel = select(y, 60.0, M, horizon=1, backtest_steps=4 * M)
    assert sel.name in ("naive", "holt")
    assert "non-seasonal" in sel.note


def test_less_than_two_seasons_falls_back_and_says_so() -> None:
    sel = select(seasonal(int(1.5 * M)), 60.0, M)
    assert sel.fallback and sel.name == "holt" and sel.scores == {}
    assert "less than two seasons" in sel.note
    fc = sel.forecaster.predict(5, origin_s=0.0)
    assert np.all(fc.hi >= fc.lo)
    with pytest.raises(ForecastError, match="expected at least 10"):
        select(seasonal(5), 60.0, M)


def test_backtest_errors_are_at_the_requested_horizon() -> None:
    y = np.arange(200, dtype=float)  # a straight line
    actual, mean, _lo, _hi = backtest(
        create("naive", season_length=1, transform="none"), y, 60.0, test_steps=50, horizon=4, stride=2
    )
    # origins 150, 152, ... 196: the outcome 4 steps ahead of origin o (data up to o-1) is y[o + 3]
    np.testing.assert_array_equal(actual, np.arange(153, 200, 2, dtype=float))
    # naive errors on a line are all exactly +4 in-sample, so the mean (bias-corrected by the mean
    # empirical error, base.py) lands on the line
    np.testing.assert_allclose(mean, actual, atol=1e-6)
    assert mase_scale(y, 1) == pytest.approx(1.0)


def test_unknown_candidate_is_rejected() -> None:
    with pytest.raises(ForecastError, match=r"unknown candidates \['arima'\]"):
        select(seasonal(4 * M), 60.0, M, candidates=["arima"])
