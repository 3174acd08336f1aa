"""Holt's linear method with a damped trend: the short-history model.

Owned as its own model because a seasonal model needs two full seasons (two days at a daily season)
before it can be fitted, and the daemon must forecast from its first minutes of data instead of
failing (the predictive HPA crashes there; we fall back to this and say so). It needs 10 points,
follows the level and the local slope, and the damping keeps a short-lived ramp from being
extrapolated into the far future. Fitted on the most recent `fit_window` points (default 720) so it
tracks the current regime; same recursion and intervals as Holt-Winters without the season.
"""

from __future__ import annotations

from typing import Any, ClassVar

from autoscaler.forecast.holt_winters import HoltWinters


class Holt(HoltWinters):
    name: ClassVar[str] = "holt"
    seasonal: ClassVar[bool] = False

    def __init__(self, *, season_length: int = 1, fit_window: int = 720, **kw: Any) -> None:
        kw.setdefault("trend", True)
        kw.setdefault("damped", True)
        super().__init__(season_length=season_length, fit_window=fit_window, **kw)
