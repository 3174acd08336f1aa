"""Model selection by rolling-origin backtest on recent history (MASE at the configured horizon).

Owned here so the daemon, the simulator's predictive policy and the `forecast` command choose models
the same way. Each candidate is fitted on the history minus the last `backtest_steps` points (default
min(one season, 480)), then walked forward through them with `update()` (no refit), forecasting
`horizon` steps ahead from every `stride`-th origin (default 3).
The score is MASE: mean |error| at that horizon divided by the in-sample one-step MAE of the seasonal
naive forecast on the training part (the standard scaling; < 1 beats seasonal naive in-sample). The
winner is returned already walked up to the end of the history, so it is ready to forecast without
another fit (its parameters are a backtest window old; the driver refits on schedule).

With less than two seasons of history no seasonal model can be fitted or judged: selection falls back
to the short-history model (`holt`) and says so in `note` (the predictive HPA crashes there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from autoscaler.core.types import FloatArray
from autoscaler.forecast.base import ErrorIntervalForecaster, ForecastError, check_series
from autoscaler.forecast.registry import create, is_seasonal, names

FALLBACK_MODEL = "holt"
BACKTEST_STEPS = 480  # default backtest window (8 h at 60 s), at most one season
MIN_POINTS = 10


@dataclass(frozen=True)
class Score:
    mase: float  # at the selection horizon
    coverage: float  # fraction of outcomes inside the central interval
    origins: int
    level: float


@dataclass(frozen=True)
class Selection:
    name: str
    forecaster: ErrorIntervalForecaster
    scores: dict[str, Score] = field(default_factory=dict)
    note: str = ""
    fallback: bool = False


def mase_scale(y: FloatArray, season_length: int) -> float:
    """In-sample one-step MAE of the seasonal naive forecast (lag 1 when the series is too short)."""
    lag = season_length if len(y) > season_length else 1
    d = np.abs(y[lag:] - y[:-lag])
    scale = float(d.mean()) if len(d) else 0.0
    # a perfectly periodic (or constant) history has no scale: report MAE itself rather than ~1e14
    return scale if scale > 1e-9 * max(float(np.mean(np.abs(y))), 1.0) else 1.0


def backtest(
    model: ErrorIntervalForecaster,
    y: FloatArray,
    step_s: float,
    *,
    test_steps: int,
    horizon: int,
    level: float = 0.95,
    stride: int = 1,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Fit on y[:-test_steps], walk forward with update(), forecasting from every `stride`-th origin;
    return (actual, mean, lo, hi) at `horizon` steps ahead."""
    n = len(y)
    train = n - test_steps
    model.fit(y[:train], step_s)
    origins = range(0, max(test_steps - horizon + 1, 0), stride)
    actual, mean, lo, hi = (np.empty(len(origins)) for _ in range(4))
    done = 0
    for j, i in enumerate(origins):
        model.update(y[train + done : train + i])
        done = i
        fc = model.predict(horizon, origin_s=0.0, level=level)
        actual[j] = y[train + i + horizon - 1]
        mean[j], lo[j], hi[j] = fc.mean[-1], fc.lo[-1], fc.hi[-1]
    model.update(y[train + done :])
    return actual, mean, lo, hi


def select(
    y: FloatArray,
    step_s: float,
    season_length: int,
    *,
    candidates: Sequence[str] | None = None,
    horizon: int = 5,
    backtest_steps: int | None = None,
    level: float = 0.95,
    stride: int = 3,
    levels: tuple[float, ...] = (),
) -> Selection:
    """Pick the candidate with the lowest MASE at `horizon` steps on the most recent history
    (`levels`: further interval levels the winner will be asked for, base.track_levels)."""
    arr = check_series(y, model="auto", min_length=MIN_POINTS)
    cands = list(candidates) if candidates is not None else names()
    unknown = [c for c in cands if c not in names()]
    if unknown or not cands:
        raise ForecastError(f"auto: unknown candidates {unknown} (expected a non-empty subset of {names()})")
    if season_length < 2:  # no season to model: only the non-seasonal candidates apply
        cands = [c for c in cands if not is_seasonal(c)] or [FALLBACK_MODEL]
    n = len(arr)
    history_h = n * step_s / 3600.0
    season_h = season_length * step_s / 3600.0
    if n < 2 * season_length:
        name = FALLBACK_MODEL if FALLBACK_MODEL in cands else cands[0]
        model = create(name, season_length=season_length)
        model.track_levels(levels)
        if n < model.min_length():
            raise ForecastError(f"auto: {n} points is too little history for {name} (need {model.min_length()})")
        note = (
            f"only {history_h:.1f} h of history, less than two seasons ({2 * season_h:.1f} h): "
            f"using {name} without seasonality until there is enough"
        )
        return Selection(name, model.fit(arr, step_s), {}, note, fallback=True)
    test = backtest_steps if backtest_steps is not None else min(season_length, BACKTEST_STEPS)
    test = max(min(test, n - MIN_POINTS), horizon + 1)
    train = n - test
    scale = mase_scale(arr[:train], season_length)
    scores: dict[str, Score] = {}
    fitted: dict[str, ErrorIntervalForecaster] = {}
    skipped: list[str] = []
    for name in cands:
        model = create(name, season_length=season_length, max_horizon=max(horizon, 30))
        model.track_levels(levels)
        if train < model.min_length():
            skipped.append(f"{name} (needs {model.min_length()} training points, has {train})")
            continue
        actual, mean, lo, hi = backtest(
            model, arr, step_s, test_steps=test, horizon=horizon, level=level, stride=stride
        )
        mase = float(np.mean(np.abs(actual - mean))) / scale if len(actual) else math.inf
        cover = float(np.mean((actual >= lo) & (actual <= hi))) if len(actual) else math.nan
        scores[name] = Score(mase, cover, len(actual), level)
        fitted[name] = model
    if not scores:
        name = FALLBACK_MODEL
        model = create(name, season_length=season_length)
        model.track_levels(levels)
        model.fit(arr, step_s)
        return Selection(name, model, {}, f"no candidate could be backtested: {', '.join(skipped)}", True)
    best = min(scores, key=lambda k: (scores[k].mase, k))
    ranking = ", ".join(f"{k} {s.mase:.3f}" for k, s in sorted(scores.items(), key=lambda kv: kv[1].mase))
    note = f"{best} selected: MASE at {horizon} steps ({horizon * step_s:g} s) over the last {test} steps: {ranking}"
    if skipped:
        note += f"; not evaluated: {', '.join(skipped)}"
    if not is_seasonal(best):
        note += " (a non-seasonal model won on recent history)"
    return Selection(best, fitted[best], scores, note)
