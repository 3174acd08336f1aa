"""Metrics in: PromQL builders, the Prometheus source, the direct TF Serving scrape, load history.

Every source implements `MetricSource.observe(targets, now_s)` (blocking; the control loop runs it with
`asyncio.to_thread`, so an event loop, e.g. the demo's emulators, keeps serving meanwhile).
"""

from __future__ import annotations

from autoscaler.sources.base import MetricSource, PodMetricSource, target_key
from autoscaler.sources.history import HistoryError, fetch_rate_history
from autoscaler.sources.prometheus import PrometheusSource
from autoscaler.sources.scrape import ScrapeSource

__all__ = [
    "HistoryError",
    "MetricSource",
    "PodMetricSource",
    "PrometheusSource",
    "ScrapeSource",
    "fetch_rate_history",
    "target_key",
]
