"""Holt-Winters exponential smoothing (additive seasonality; trend optional, damped by default).

Owned here: the parameters are estimated by statsmodels' `ExponentialSmoothing` (the only statsmodels
use of this model), after that the model is a few floats and one season of seasonal states, advanced by
our own copy of statsmodels' additive recursion, so `update()` costs O(1) per point and the fitted
object pickles small (the daemon refits in a process pool; nothing of statsmodels is kept).

Choices, measured on the shipped traces (benchmarks/forecast_accuracy.py):
* `initialization_method="heuristic"` and `use_brute=False`: the default estimated initial state makes
  a daily season (1,440 states at 60 s) ~40x slower to fit; brute-force start values cost 8x for the
  same SSE. A 14-day fit at 60 s takes ~0.2 s without trend.
* sqrt transform (base.py): additive seasonality on sqrt-rates fits quiet nights and busy days alike.
* trend off by default: the estimated trend smoothing on every shipped trace is ~0 and a trend term
  triples the fit time; `trend=True` adds a damped additive trend.
* fitting uses only the most recent `fit_seasons` seasons (default 4; at least 2,000 points), so the
  model follows a regime change within days and the fit cost is bounded however much history there is.
* interval errors skip the first two seasons of the fit window when it has three or more: the heuristic
  initial seasonal state is read off them, so their in-sample errors are too small.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import numpy as np

from autoscaler.core.types import FloatArray
from autoscaler.forecast.base import ErrorIntervalForecaster, ForecastError


class HoltWinters(ErrorIntervalForecaster):
    name: ClassVar[str] = "holt-winters"
    seasonal: ClassVar[bool] = True

    def __init__(
        self,
        *,
        season_length: int,
        trend: bool = False,
        damped: bool = True,
        fit_seasons: int = 4,
        fit_window: int = 0,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        if self.seasonal and season_length < 2:
            raise ForecastError(f"{self.name}: season_length must be >= 2 steps (got {season_length})")
        self.season_length = int(season_length) if self.seasonal else 1
        self.trend = trend
        self.damped = damped and trend
        self.fit_seasons = fit_seasons
        self.fit_window = fit_window  # > 0: fit on at most this many points (non-seasonal use)
        self.alpha = self.beta = self.gamma = 0.0
        self.phi = 1.0
        self._level = 0.0
        self._slope = 0.0
        self._season = np.zeros(self.season_length)  # ring: phase i % m -> latest seasonal state
        self._t = 0  # index of the next observation (relative to the fitted window)
        self._steps = np.zeros(0, dtype=np.int64)  # cached arange / damped-trend multipliers
        self._damp = np.zeros(0)

    def min_length(self) -> int:
        # statsmodels' heuristic initialisation needs two full seasons (10 points without a season)
        return 2 * self.season_length + 1 if self.seasonal else 10

    def _window(self, z: FloatArray) -> FloatArray:
        if self.seasonal:
            keep = max(max(self.fit_seasons, 2) * self.season_length, 2_000)
        else:
            keep = self.fit_window if self.fit_window > 0 else len(z)
        return z[-max(keep, self.min_length()) :]

    def _fit_z(self, z_all: FloatArray) -> FloatArray:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        z = self._window(z_all)
        m = self.season_length
        model = ExponentialSmoothing(
            z,
            trend="add" if self.trend else None,
            damped_trend=self.damped,
            seasonal="add" if self.seasonal else None,
            seasonal_periods=m if self.seasonal else None,
            initialization_method="heuristic",
            bounds=self._param_bounds(len(z)),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning on flat series; the fit is still usable
            res = model.fit(use_brute=False)
        p = res.params

        def get(key: str, default: float) -> float:
            v = p.get(key, default)
            return default if v is None or not math.isfinite(float(v)) else float(v)

        self.alpha = get("smoothing_level", 0.0)
        self.beta = get("smoothing_trend", 0.0) if self.trend else 0.0
        self.gamma = get("smoothing_seasonal", 0.0) if self.seasonal else 0.0
        self.phi = get("damping_trend", 1.0) if self.damped else 1.0
        n = len(z)
        level = np.asarray(res.level, dtype=np.float64)
        slope = np.asarray(res.trend, dtype=np.float64) if self.trend else np.zeros(n)
        if self.seasonal:
            init = np.asarray(p["initial_seasons"], dtype=np.float64)
            season_ext = np.concatenate((init, np.asarray(res.season, dtype=np.float64)))
        else:
            season_ext = np.zeros(n + 1)
        self._level, self._slope, self._t = float(level[-1]), float(slope[-1]), n
        self._steps = np.zeros(0, dtype=np.int64)  # phi changed: recompute the cache
        if self.seasonal:
            idx = np.arange(n - m, n)
            self._season = np.empty(m)
            self._season[idx % m] = season_ext[idx + m]
        # in-sample k-step errors: forecast of z[t] from origin t-k
        errs = np.full((self.max_horizon, n), np.nan)
        damp = np.cumsum(self.phi ** np.arange(1, self.max_horizon + 1))
        for k in range(1, min(self.max_horizon, n - 1) + 1):
            t = np.arange(k, n)
            fc = level[: n - k] + damp[k - 1] * slope[: n - k]
            if self.seasonal:
                fc = fc + season_ext[t - m * -(-k // m) + m]
            errs[k - 1, k:] = z[k:] - fc
        if self.seasonal and n >= 3 * m:
            # the heuristic initial state is read off the first two seasons: errors there are optimistic
            errs[:, : 2 * m] = np.nan
        return errs

    def _param_bounds(self, n: int) -> dict[str, tuple[float, float]] | None:
        """Bounds on the smoothing parameters for a fit on n points (None: statsmodels' defaults)."""
        return None

    def _step_z(self, z: float) -> None:
        m = self.season_length
        i = self._t % m
        s_old = float(self._season[i]) if self.seasonal else 0.0
        base = self._level + self.phi * self._slope
        if math.isnan(z):
            z = base + s_old  # missing: advance with zero correction
        level = self.alpha * (z - s_old) + (1.0 - self.alpha) * base
        self._slope = self.beta * (level - self._level) + (1.0 - self.beta) * self.phi * self._slope
        if self.seasonal:
            self._season[i] = self.gamma * (z - base) + (1.0 - self.gamma) * s_old
        self._level = level
        self._t += 1

    def _point_z(self, h: int) -> FloatArray:
        if len(self._steps) < h:
            self._steps = np.arange(h)
            self._damp = np.cumsum(self.phi ** np.arange(1, h + 1))
        out: FloatArray
        if self.seasonal:
            out = self._level + self._season[(self._t + self._steps[:h]) % self.season_length]
        else:
            out = np.full(h, self._level)
        if self.trend:
            out = out + self._damp[:h] * self._slope
        return out
