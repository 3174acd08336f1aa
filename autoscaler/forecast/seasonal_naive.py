"""Seasonal naive (and plain naive) forecasters: tomorrow at 10:00 looks like today at 10:00.

Owned as its own model because it is the yardstick (MASE is scaled by it), the cheapest model that
captures a daily cycle, and a robust fallback: no parameters to estimate, so it cannot diverge.
`naive` is the same model with a season of one step (the next value equals the last one).
Intervals come from the empirical k-step errors (base.py), on the sqrt scale by default.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from autoscaler.core.types import FloatArray
from autoscaler.forecast.base import ErrorIntervalForecaster, ForecastError


class SeasonalNaive(ErrorIntervalForecaster):
    name: ClassVar[str] = "seasonal-naive"

    def __init__(self, *, season_length: int, **kw: Any) -> None:
        super().__init__(**kw)
        if season_length < 1:
            raise ForecastError(f"{self.name}: season_length must be >= 1 step (got {season_length})")
        self.season_length = int(season_length)
        self._last = np.zeros(self.season_length)  # ring: value at time t stored at t % m
        self._t = 0  # index of the next observation

    def min_length(self) -> int:
        # one season to copy plus 20 points to measure its errors
        return max(self.season_length + 20, 10)

    def _fit_z(self, z: FloatArray) -> FloatArray:
        m = self.season_length
        n = len(z)
        self._t = n
        idx = np.arange(n - m, n)
        self._last = np.empty(m)
        self._last[idx % m] = z[idx]
        errs = np.full((self.max_horizon, n), np.nan)
        for k in range(1, self.max_horizon + 1):
            lag = m * -(-k // m)  # m * ceil(k / m)
            if lag < n:
                errs[k - 1, lag:] = z[lag:] - z[:-lag]
        return errs

    def _step_z(self, z: float) -> None:
        m = self.season_length
        if not np.isnan(z):
            self._last[self._t % m] = z
        # missing: keep last season's value as the best guess for this phase
        self._t += 1

    def _point_z(self, h: int) -> FloatArray:
        m = self.season_length
        # forecast of time t_last + k is the latest value of the same phase
        return self._last[(self._t + np.arange(h)) % m].copy()


class Naive(SeasonalNaive):
    """The last value, carried forward (random walk); the non-seasonal yardstick."""

    name: ClassVar[str] = "naive"

    def __init__(self, *, season_length: int = 1, **kw: Any) -> None:
        super().__init__(season_length=1, **kw)
