"""The daemon's forecaster factory: one `ForecastDriver` per target, or None (reactive only).

Kept separate so the loop depends only on the small `ForecastLike` protocol, and so a spec whose
forecaster cannot be built (unknown model, bad step/season) degrades to reactive decisions with a
log line instead of taking the daemon down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from autoscaler.control import ForecastLike
from autoscaler.core.types import FloatArray
from autoscaler.spec.types import ServingAutoscalerSpec

log = logging.getLogger(__name__)


def forecaster_factory(spec: ServingAutoscalerSpec) -> ForecastLike | None:
    try:
        from autoscaler.forecast.driver import driver_for

        driver: ForecastLike = driver_for(spec)
        return driver
    except Exception as exc:
        log.error(
            "no forecaster for target; deciding reactively",
            extra={"target": f"{spec.target.namespace}/{spec.target.deployment}", "error": str(exc)[:200]},
        )
        return None


def prometheus_history(url: str) -> Callable[[ServingAutoscalerSpec, float], FloatArray]:
    """Warm-start history from Prometheus: `forecaster.historySeconds` at `forecaster.stepSeconds`."""
    from autoscaler.sources.history import fetch_rate_history

    def fetch(spec: ServingAutoscalerSpec, now_s: float) -> FloatArray:
        f = spec.forecaster
        return fetch_rate_history(url, spec, since_s=now_s - f.history_s, step_s=float(f.step_s), now_s=now_s)

    return fetch
