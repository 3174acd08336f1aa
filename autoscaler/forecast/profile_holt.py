"""Seasonal profile + damped Holt: a robust daily shape with a level that adapts every step.

Owned as its own model because the backtests showed why Holt-Winters loses to plain Holt at the
short horizons we provision for (5 min): its seasonal states are re-learned from each noisy day, so
the seasonal term adds noise. Here the season is a *profile*: the per-phase median of the last
`profile_seasons` seasons (robust to one odd day, e.g. a match day), smoothed by a circular moving
average over ~1/96 of the season (15 min for a daily season), fixed between refits. Holt's damped
level/trend then runs on the deseasonalised series, so it tracks the current level like `holt` and
the profile supplies the shape ahead. An STL decomposition would give a similar profile, but
statsmodels' STL takes ~11 s for a week at 60 s; the median profile takes milliseconds.
Works on the sqrt scale like the others (base.py); needs two seasons of history.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from autoscaler.core.types import FloatArray
from autoscaler.forecast.base import ErrorIntervalForecaster, ForecastError
from autoscaler.forecast.holt import Holt


class ProfileHolt(ErrorIntervalForecaster):
    name: ClassVar[str] = "profile-holt"

    def __init__(
        self,
        *,
        season_length: int,
        profile_seasons: int = 7,
        smooth_steps: int | None = None,
        fit_window: int = 720,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        if season_length < 2 or profile_seasons < 2:
            raise ForecastError(
                f"{self.name}: season_length >= 2 and profile_seasons >= 2 expected "
                f"(got {season_length}, {profile_seasons})"
            )
        self.season_length = int(season_length)
        self.profile_seasons = profile_seasons
        self.smooth_steps = max(self.season_length // 96, 1) if smooth_steps is None else max(smooth_steps, 1)
        self._holt = Holt(transform="none", fit_window=fit_window, max_horizon=self.max_horizon)
        self._profile = np.zeros(self.season_length)  # indexed by phase t % m
        self._t = 0

    def min_length(self) -> int:
        return 2 * self.season_length + 1

    def _fit_z(self, z: FloatArray) -> FloatArray:
        m = self.season_length
        n = len(z)
        k = min(self.profile_seasons, n // m)
        block = z[n - k * m :].reshape(k, m)
        prof = np.empty(m)
        prof[(n - k * m + np.arange(m)) % m] = np.median(block, axis=0)
        w = self.smooth_steps
        if w > 1:
            padded = np.concatenate((prof[-(w // 2) :], prof, prof[: w - 1 - w // 2]))
            prof = np.convolve(padded, np.ones(w) / w, mode="valid")
        self._profile = prof
        self._t = n
        d = z - prof[np.arange(n) % m]
        return self._holt._fit_z(d)

    def _step_z(self, z: float) -> None:
        self._holt._step_z(z - float(self._profile[self._t % self.season_length]))  # NaN stays NaN
        self._t += 1

    def _point_z(self, h: int) -> FloatArray:
        phases = (self._t + np.arange(h)) % self.season_length
        out: FloatArray = self._holt._point_z(h) + self._profile[phases]
        return out
