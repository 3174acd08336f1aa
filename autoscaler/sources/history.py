"""Load history for forecaster warm-up: a target's offered load over the last days, from Prometheus.

Owns the range query a (re)started daemon runs once per target so it can forecast at once
instead of after days of observation. The series is `promql.rate_history` (OK + UNAVAILABLE
responses/s, the same quantity as `Observation.arrival_rps`) on a grid ending at `now_s` with the
forecaster's `step_s`; each point is the mean rate over the step before it. Long ranges are cut
into chunks below Prometheus' 11,000-points-per-series limit. Gaps (no samples) stay NaN, never
zero. A failed query raises `HistoryError` (logged): the caller starts cold rather than on a lie.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

import numpy as np
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from autoscaler.core.types import FloatArray
from autoscaler.sources import promql
from autoscaler.spec.types import ServingAutoscalerSpec

log = logging.getLogger(__name__)

MAX_POINTS_PER_QUERY = 10_000  # Prometheus rejects > 11,000 points per series


class HistoryError(RuntimeError):
    """The history range query failed (Prometheus down, timeout, bad response)."""


def history_grid(since_s: float, step_s: float, now_s: float) -> FloatArray:
    """Evaluation times: every `step_s` ending exactly at `now_s`, none before `since_s + step_s`."""
    if step_s <= 0:
        raise ValueError(f"step_s must be > 0, got {step_s}")
    n = math.floor((now_s - since_s) / step_s + 1e-9)
    if n <= 0:
        return np.zeros(0)
    return now_s - step_s * np.arange(n - 1, -1, -1, dtype=np.float64)


def fetch_rate_history(
    url: str,
    spec: ServingAutoscalerSpec,
    *,
    since_s: float,
    step_s: float,
    now_s: float,
    rate_window_s: float | None = None,
    timeout_s: float = 30.0,
) -> FloatArray:
    """Requests/s of `spec`'s model per step over (since_s, now_s]; NaN where Prometheus has no data.

    `rate_window_s` defaults to `step_s` (each point averages its own step); make it larger than
    two scrape intervals.
    """
    grid = history_grid(since_s, step_s, now_s)
    out = np.full(len(grid), np.nan)
    if len(grid) == 0:
        return out
    query = promql.rate_history(spec.target.namespace, spec.target.model_names, rate_window_s or step_s)
    prom = PrometheusConnect(url=url.rstrip("/"), disable_ssl=True, retry=Retry(total=0), timeout=timeout_s)
    try:
        for lo in range(0, len(grid), MAX_POINTS_PER_QUERY):
            chunk = grid[lo : lo + MAX_POINTS_PER_QUERY]
            try:
                res = prom.custom_query_range(
                    query,
                    start_time=datetime.fromtimestamp(float(chunk[0]), UTC),
                    end_time=datetime.fromtimestamp(float(chunk[-1]), UTC),
                    step=promql.duration(step_s),
                )
            except Exception as e:
                log.error("history for %s (signal rate_history) failed: %s: %s", spec.name, type(e).__name__, e)
                raise HistoryError(f"{spec.target.namespace}/{spec.target.deployment}: {e}") from e
            for series in res:
                for t, v in series.get("values", ()):
                    i = round((float(t) - float(chunk[0])) / step_s)
                    if 0 <= i < len(chunk):
                        out[lo + i] = float(v)
    finally:
        prom.close()
    out[~np.isfinite(out)] = np.nan
    missing = int(np.isnan(out).sum())
    if missing:
        log.info("history for %s: %d of %d steps have no data (kept NaN)", spec.name, missing, len(out))
    return out
