"""The model registry: names -> forecaster classes, and a picklable module-level `fit_model`.

Owned here so the spec (`forecaster.model`), `auto` selection, the CLI and the contract tests all see
the same list, and so the daemon can refit in a process pool: `fit_model` is a plain module-level
function whose arguments and result (a fitted forecaster: a few floats and arrays) pickle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autoscaler.core.types import FloatArray
from autoscaler.forecast.base import ErrorIntervalForecaster, ForecastError
from autoscaler.forecast.holt import Holt
from autoscaler.forecast.holt_winters import HoltWinters
from autoscaler.forecast.profile_holt import ProfileHolt
from autoscaler.forecast.seasonal_naive import Naive, SeasonalNaive

_MODELS: dict[str, Callable[..., ErrorIntervalForecaster]] = {
    cls.name: cls for cls in (SeasonalNaive, HoltWinters, ProfileHolt, Holt, Naive)
}
SEASONAL = frozenset({"seasonal-naive", "holt-winters", "profile-holt"})


def names() -> list[str]:
    """Registered model names, in a stable order."""
    return list(_MODELS)


def is_seasonal(name: str) -> bool:
    return name in SEASONAL


def create(name: str, *, season_length: int, **kw: Any) -> ErrorIntervalForecaster:
    """A new, unfitted forecaster. `season_length` is in steps (ignored by non-seasonal models)."""
    cls = _MODELS.get(name)
    if cls is None:
        raise ForecastError(f"forecaster {name!r} is unknown (expected 'auto' or one of {names()})")
    return cls(season_length=season_length, **kw)


def min_length(name: str, season_length: int) -> int:
    """Fewest points the model needs to fit."""
    return create(name, season_length=season_length).min_length()


def fit_model(
    name: str, y: FloatArray, step_s: float, season_length: int, *, levels: tuple[float, ...] = (), **kw: Any
) -> ErrorIntervalForecaster:
    """Create and fit one model (its intervals kept for `levels` too); module-level for a process pool."""
    model = create(name, season_length=season_length, **kw)
    model.track_levels(levels)
    return model.fit(y, step_s)
