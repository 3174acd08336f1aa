"""/metrics, /healthz and /readyz for the daemon: a prometheus-client Collector over the store.

Per-target gauges are not kept as mutable gauges: a custom Collector renders them from the
`DecisionStore` at scrape time, so /metrics can never disagree with what the adapter serves.
Process-level series (decision latency histogram, source errors, actuations, spec errors, leader
status, forecast error, rollout pending) live in a private `CollectorRegistry` updated by the
loop. Metric names come from `autoscaler.core.telemetry_names` (shared with dashboards and rules).
Readiness flips after the first successful tick. Served with aiohttp on `--metrics-port`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from autoscaler.core import telemetry_names as n
from autoscaler.core.store import DecisionStore
from autoscaler.core.types import TargetKey

log = logging.getLogger(__name__)


_LABELS = ("namespace", "deployment")
_TARGET_LABELS = ("namespace", "deployment", "model")
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def reason_template(reason: str) -> str:
    """The reason with its numbers replaced by '#': a bounded label value (a fixed set of templates)."""
    return _NUMBER.sub("#", reason)[:160]


class StoreCollector(Collector):
    """Renders every target's latest decision and observation from the DecisionStore."""

    def __init__(self, store: DecisionStore) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        def fam(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=(*_TARGET_LABELS, *extra))

        f = {
            "desired": fam(n.DESIRED_REPLICAS, "Desired replicas (the last valid decision)."),
            "current": fam(n.CURRENT_REPLICAS, "Deployment spec.replicas as observed."),
            "ready": fam(n.READY_REPLICAS, "Ready replicas as observed."),
            "obs": fam(n.OBSERVED_RPS, "Observed arrival rate (served + rejected), requests/s."),
            "fc": fam(n.FORECAST_RPS, "Forecast load provisioned for (quantile over the lead time), requests/s."),
            "fc_lo": fam(n.FORECAST_LO_RPS, "Lower bound of the forecast interval, requests/s."),
            "fc_hi": fam(n.FORECAST_HI_RPS, "Upper bound of the forecast interval, requests/s."),
            "cap": fam(n.CAPACITY_RPS, "Per-replica capacity at the latency SLO, requests/s."),
            "lat": fam(n.LATENCY_MS, "Observed latency at the SLO quantile, milliseconds."),
            "gpu": fam(n.GPU_UTIL, "Observed GPU busy fraction (DCGM), mean over ready pods."),
            "gpu_m": fam(n.GPU_UTIL_MODEL, "GPU busy fraction the capacity model predicts at the observed rate."),
            "mready": fam(n.MODEL_READY_REPLICAS, "Replicas counted as ready capacity (model AVAILABLE)."),
            "mroll": fam(n.MODEL_ROLLOUT, "1 while two model versions are live on the pods, else 0."),
            "mbs": fam(n.BATCH_MAX_SIZE, "Chosen TF Serving max_batch_size."),
            "bto": fam(n.BATCH_TIMEOUT_US, "Chosen TF Serving batch_timeout_micros."),
            "bth": fam(n.BATCH_THREADS, "Chosen TF Serving num_batch_threads."),
            "beq": fam(n.BATCH_MAX_ENQUEUED, "Chosen TF Serving max_enqueued_batches."),
            "valid": fam(n.DECISION_VALID, "1 if the most recent decision was valid, else 0."),
            "ts": fam(n.DECISION_TIMESTAMP, "Time of the most recent decision, Unix seconds."),
            "slo_ms": fam(n.SLO_LATENCY_MS, "The spec's SLO latency, milliseconds."),
            "att": fam(n.SLO_ATTAINMENT, "Observed fraction of requests within the SLO latency."),
            "goal": fam(n.SLO_ATTAINMENT_GOAL, "The spec's SLO attainment goal."),
        }
        info = InfoMetricFamily(
            n.DECISION_INFO.removesuffix("_info"),
            "The binding constraint and reason of the last decision.",
            labels=(*_TARGET_LABELS, "binding", "reason", "forecast_model"),
        )

        def add(key: str, labels: list[str], value: float | int | None) -> None:
            if value is not None and math.isfinite(float(value)):
                f[key].add_metric(labels, float(value))

        for rec in self._store.snapshot():
            lv = [rec.target.namespace, rec.target.deployment, rec.model_name]
            if rec.slo is not None:
                add("slo_ms", lv, rec.slo.latency_ms)
                add("goal", lv, rec.slo.attainment)
            d, last, obs = rec.decision, rec.last_attempt, rec.observation
            if d is not None:
                if rec.published:  # a preview decision must not reach an HPA through this gauge
                    add("desired", lv, d.desired_replicas)
                add("fc", lv, d.forecast_rps)
                add("fc_lo", lv, d.forecast_lo_rps)
                add("fc_hi", lv, d.forecast_hi_rps)
                add("cap", lv, d.capacity_rps)
                add("mbs", lv, d.batching.max_batch_size)
                add("bto", lv, d.batching.batch_timeout_us)
                add("bth", lv, d.batching.num_batch_threads)
                add("beq", lv, d.batching.max_enqueued_batches)
            if last is not None:
                add("gpu", lv, last.gpu_util)
                add("gpu_m", lv, last.gpu_util_model)
                add("mready", lv, last.model_ready_replicas)
                if obs is not None and obs.model_status is not None:
                    add("mroll", lv, 1 if obs.model_status.rollout else 0)
                add("valid", lv, 1 if last.valid else 0)
                add("ts", lv, last.time_s)
                add("obs", lv, last.observed_rps)
                info.add_metric(
                    lv,
                    {
                        "binding": last.binding.value,
                        "reason": reason_template(last.reason),
                        "forecast_model": last.forecast_model or "",
                    },
                )
            if obs is not None:
                add("current", lv, obs.current_replicas)
                add("ready", lv, obs.ready_replicas)
                add("lat", lv, obs.latency_ms.value)
                add("att", lv, obs.slo_attainment.value)
        yield from f.values()
        yield info


class Telemetry:
    """The daemon's process metrics + the store collector, and the aiohttp app serving them."""

    def __init__(self, store: DecisionStore) -> None:
        self.store = store
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(StoreCollector(store))
        self.decision_latency = Histogram(
            n.DECISION_LATENCY,
            "Wall time of one target's decide() call.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.source_errors = Counter(
            n.SOURCE_ERRORS.removesuffix("_total"),
            "Signals that could not be read (missing, stale, NaN, query error).",
            labelnames=(*_LABELS, "signal", "status"),
            registry=self.registry,
        )
        self.actuations = Counter(
            n.ACTUATIONS.removesuffix("_total"),
            "Actuation outcomes per tick.",
            labelnames=(*_LABELS, "kind", "result"),
            registry=self.registry,
        )
        self.leader = Gauge(n.IS_LEADER, "1 on the leader, 0 on standbys.", registry=self.registry)
        self.forecast_error = Gauge(
            n.FORECAST_ABS_ERROR,
            "|forecast - actual| / actual for the step that just ended.",
            labelnames=_LABELS,
            registry=self.registry,
        )
        self.rollout_pending = Gauge(
            n.BATCHING_ROLLOUT_PENDING, "1 while a batching rollout is in progress.", _LABELS, registry=self.registry
        )
        self.spec_errors = Gauge(
            n.SPEC_ERRORS, "1 while a spec source is invalid (last good spec kept).", ["source"], registry=self.registry
        )
        self.ticks = Counter(n.TICKS.removesuffix("_total"), "Control-loop ticks.", ["result"], registry=self.registry)
        self.leader.set(0)
        self.ready = False

    def labels(self, key: TargetKey) -> tuple[str, str]:
        return key.namespace, key.deployment

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def app(self) -> web.Application:
        app = web.Application()

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=self.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def readyz(_: web.Request) -> web.Response:
            if self.ready:
                return web.Response(text="ok")
            return web.Response(status=503, text="waiting for the first successful tick")

        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        return app


async def serve(telemetry: Telemetry, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the telemetry server; returns the runner (for cleanup) and the bound port."""
    runner = web.AppRunner(telemetry.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])
