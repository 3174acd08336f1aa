"""What a policy may see of the simulated cluster at one decision tick.

The simulator owns the truth (every arrival, every pod's queue); policies only see this
view, built by the metrics pipeline with the same delays a real cluster has: Prometheus
scrape interval, `rate()` windows, metrics-server windows. Keeping the view explicit is what
makes the baselines honest: no policy can peek at the future or at un-scraped counters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autoscaler.core.types import FloatArray, Observation
from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec


@dataclass(frozen=True)
class PodView:
    """One pod as the Kubernetes API and the metrics pipeline show it."""

    name: str
    phase: str  # "Pending" (starting: scheduling, image pull, model load, warmup) | "Running"
    ready: bool
    created_s: float
    ready_since_s: float | None
    cpu_millicores: float | None  # metrics-server usage over its window; None = no sample yet
    cpu_request_millicores: int
    rps: float | None  # per-pod rate(request_count[window]) as Prometheus returns it now
    concurrency: float | None  # mean requests in flight over the last second (queue-proxy style)


@dataclass(frozen=True)
class ClusterView:
    """The cluster at `now_s`, as seen through the (lagged) metrics pipeline."""

    now_s: float
    spec_replicas: int  # scale.spec.replicas (what was last asked for)
    status_replicas: int  # pods that exist and are not terminating
    ready_replicas: int
    pending_replicas: int
    pods: tuple[PodView, ...]
    total_rps: float | None  # sum(rate(request_count[window])) over the target; None = no data
    observation: Observation  # exactly what our Prometheus sources would report
    batching: BatchingParams  # parameters in effect on the running pods


@dataclass(frozen=True)
class PolicyContext:
    """Given to a policy once, before the replay starts."""

    spec: ServingAutoscalerSpec
    start_s: float
    initial_replicas: int
    step_s: float  # the simulator's time step (1 s in fluid mode)
    # Per-step history of the offered load *before* start_s (for warm-up), requests/s.
    history_rps: FloatArray
    history_step_s: float
    # The whole future offered load, per second, requests/s. Only clairvoyant policies
    # (`oracle`, `static-peak`) may read it; the engine checks that others do not declare it.
    future_rps: FloatArray | None = None


@dataclass(frozen=True)
class PolicyOutput:
    """A policy's decision at one tick."""

    desired_replicas: int
    batching: BatchingParams | None = None  # None = keep the current parameters
    forecast_rps: float | None = None
    forecast_lo_rps: float | None = None
    forecast_hi_rps: float | None = None
    reason: str = ""


def empty_history() -> FloatArray:
    return np.zeros(0, dtype=np.float64)
