"""Holt's linear method with a damped trend: the short-history model.

Owned as its own model because a seasonal model needs two full seasons (two days at a daily season)
before it can be fitted, and the daemon must forecast from its first minutes of data instead of
failing (the predictive HPA crashes there; we fall back to this and say so). It needs 10 points,
follows the level and the local slope, and the damping keeps a short-lived ramp from being
extrapolated into the far future. Fitted on the most recent `fit_window` points (default 720) so it
tracks the current regime; same recursion and intervals as Holt-Winters without the season.

Very short history (fitted on fewer than `short_history` points, default 30): a cold start often sees a
handful of points on a ramp, and the free fit then keeps the ramp's slope (smoothing_trend ~0, damping
~0.98 leaves it almost undamped for an hour) and has too few errors for the empirical intervals (fewer
than 20: zero width). So, until the model is refitted on more points (the driver refits it every step
while `short_history_mode` is set):
* the damping is bounded to [0.5, `short_damping`] (default 0.9): the slope state itself decays by the
  damping every step, so a ramp that has ended stops being extrapolated within a few steps, and the
  trend adds at most damping / (1 - damping) = 9 slopes however long the horizon;
* the trend's extrapolation is capped: k steps ahead the trend moves the forecast by at most the range
  the last k + 1 observations span (on the transformed scale), so a ramp that has flattened is not
  extrapolated beyond what was just seen, while a sustained ramp still is;
* intervals are normal-theory: the RMS of the one-step errors (in-sample, then the fresh ones from
  update()) times sqrt(h), with a half-width between `short_floor` (0.05) and `short_ceiling` (0.25)
  times the current level on the transformed scale (on sqrt(y): the upper end stays within ~1.56x and
  the lower end below ~0.9x of the point forecast), not read off a handful of errors (fewer than 20
  gave a zero-width interval) or a fitted variance.
Refitted on 30 points or more, the model is the unconstrained damped Holt with empirical intervals.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np

from autoscaler.core.types import FloatArray
from autoscaler.forecast.base import ForecastError
from autoscaler.forecast.holt_winters import HoltWinters

SHORT_HISTORY = 30  # points: below this the fit is the constrained short-history one


class Holt(HoltWinters):
    name: ClassVar[str] = "holt"
    seasonal: ClassVar[bool] = False

    def __init__(
        self,
        *,
        season_length: int = 1,
        fit_window: int = 720,
        short_history: int = SHORT_HISTORY,
        short_damping: float = 0.9,
        short_floor: float = 0.05,
        short_ceiling: float = 0.25,
        **kw: Any,
    ) -> None:
        kw.setdefault("trend", True)
        kw.setdefault("damped", True)
        super().__init__(season_length=season_length, fit_window=fit_window, **kw)
        if not (0.5 <= short_damping <= 1.0 and 0.0 < short_floor <= short_ceiling):
            raise ForecastError(
                f"{self.name}: 0.5 <= short_damping <= 1 and 0 < short_floor <= short_ceiling expected "
                f"(got {short_damping}, {short_floor}, {short_ceiling})"
            )
        self.short_history = short_history
        self.short_damping = short_damping
        self.short_floor = short_floor
        self.short_ceiling = short_ceiling
        self.short_history_mode = False
        self._recent = np.zeros(0)  # the latest observations on the transformed scale (short mode)

    def _param_bounds(self, n: int) -> dict[str, tuple[float, float]] | None:
        if n < self.short_history and self.damped:
            return {"damping_trend": (0.5, self.short_damping)}
        return None

    def _fit_z(self, z_all: FloatArray) -> FloatArray:
        errs = super()._fit_z(z_all)
        z = self._window(z_all)
        self.short_history_mode = len(z) < self.short_history
        self._recent = z[-self.short_history :].copy()
        return errs

    def _step_z(self, z: float) -> None:
        super()._step_z(z)
        if self.short_history_mode and not math.isnan(z):
            self._recent = np.append(self._recent[1 - self.short_history :], z)

    def _point_z(self, h: int) -> FloatArray:
        out = super()._point_z(h)
        if not (self.short_history_mode and self.trend):
            return out
        # cap the trend's contribution k steps ahead by the range of the last k + 1 observations
        back = self._recent[::-1]
        spans = np.maximum.accumulate(back) - np.minimum.accumulate(back)
        cap = spans[np.minimum(np.arange(1, h + 1), len(spans) - 1)]
        trend = np.clip(out - self._level, -cap, cap)
        capped: FloatArray = self._level + trend
        return capped

    def _terms(self, h: int, level: float) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        if not self.short_history_mode:
            return super()._terms(h, level)
        one_step = self._errors[0]
        valid = one_step[~np.isnan(one_step)]
        sigma = float(np.sqrt(np.mean(np.square(valid)))) if len(valid) else 0.0
        q = NormalDist().inv_cdf(0.5 + level / 2.0)
        ref = max(abs(self._level), 1e-6)
        k = np.arange(1, h + 1)
        half = np.clip(q * sigma * np.sqrt(k), self.short_floor * ref, self.short_ceiling * ref)
        # the half-width at `level`; the variance that goes with it (for the bias-corrected mean)
        var = np.square(half / q)
        return -half, half, np.zeros(h), var
