"""The simulated metrics pipeline: what a policy can know about the cluster, and when.

Owns the delays that make reactive scaling late, so every policy (ours and the baselines) sees
the cluster exactly as it would through Prometheus, metrics-server and the Kubernetes API:

* **Prometheus**: every ready pod's TF Serving `request_count` counter is scraped every
  `scrape_interval_s` (15 s) at a fixed phase `scrape_offset_s` (scrapes and controller syncs are
  not aligned in a real cluster). `rate(x[rate_window_s])` is Prometheus' own `extrapolatedRate`
  (promql/functions.go: extrapolation to the window edges by at most half a sample interval,
  never below zero for counters). A pod needs two samples in the window to have a rate; pods
  deleted less than a window ago still contribute to `sum(rate(...))` (their series are still in
  range), but not to the pod list.
* **metrics-server**: CPU usage per pod is the mean over `cpu_window_s` ending at its last
  scrape (resolution `metrics_resolution_s`); usage = idle baseline + the profile's CPU cost per
  request × the pod's request rate. A pod has no CPU sample until a full window after it became
  ready.
* **Burst signal**: arrivals (served + rejected) over the last `burst_window_s` seconds as the
  daemon's direct TF Serving scrape sees them at the tick (no Prometheus lag).
* Latency at the SLO quantile (of *served* requests: TF Serving records latency for OK responses
  only, so an overloaded replica shows the wait through a full batch queue, not infinity), queue
  latency, batch size, GPU utilization and rejections are averaged over the rate window ending at
  the last scrape.

`build_view()` only reads timeline indices below the tick time: nothing here can see the future.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from autoscaler.core.types import Observation, Signal, SignalStatus
from autoscaler.sim.cluster import Cluster, Pod
from autoscaler.sim.fluid import RateTable
from autoscaler.sim.timeline import Timeline
from autoscaler.sim.view import ClusterView, PodView
from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec


@dataclass(frozen=True)
class PipelineConfig:
    scrape_interval_s: int = 15
    scrape_offset_s: int = 7
    rate_window_s: int = 60
    metrics_resolution_s: int = 15
    cpu_window_s: int = 30
    idle_cpu_millicores: float = 50.0
    burst_window_s: int = 10  # overridden by the spec's provisioning.burst_window_s

    def __post_init__(self) -> None:
        for name in ("scrape_interval_s", "rate_window_s", "metrics_resolution_s", "cpu_window_s"):
            v = getattr(self, name)
            if v < 1:
                raise ValueError(f"pipeline.{name}: expected an integer >= 1 second (got {v})")
        if self.rate_window_s < 2 * self.scrape_interval_s:
            raise ValueError(
                f"pipeline.rate_window_s: expected >= 2 scrape intervals "
                f"({2 * self.scrape_interval_s} s) so rate() has two samples (got {self.rate_window_s})"
            )


def extrapolated_rate(
    first_t: float, last_t: float, n: int, delta: float, first_v: float, range_start: float, range_end: float
) -> float:
    """Prometheus `rate()` of a counter from its first/last sample in the range (no resets).

    `delta` is last minus first sample value; `first_v` the first value (it bounds the
    extrapolation towards the range start: a counter is never extrapolated below zero).
    """
    sampled = last_t - first_t
    if n < 2 or sampled <= 0:
        return math.nan
    avg = sampled / (n - 1)
    threshold = avg * 1.1
    to_start = first_t - range_start
    to_end = range_end - last_t
    if to_start >= threshold:
        to_start = avg / 2.0
    if delta > 0 and first_v >= 0:
        to_zero = sampled * (first_v / delta)
        if to_zero < to_start:
            to_start = to_zero
    if to_end >= threshold:
        to_end = avg / 2.0
    return delta * (sampled + to_start + to_end) / sampled / (range_end - range_start)


class MetricsPipeline:
    """Builds the `ClusterView` a policy sees at a tick, from the timeline's past only."""

    def __init__(
        self,
        spec: ServingAutoscalerSpec,
        tables: Callable[[BatchingParams], RateTable],
        config: PipelineConfig | None = None,
        *,
        live_latency: bool = False,
    ) -> None:
        """`tables` gives the fluid tables (latency at a rate); `live_latency` reads the per-second
        latency columns instead (request-level fidelity fills them as it goes)."""
        cfg = config or PipelineConfig()
        self.tables = tables
        self.live_latency = live_latency
        self.config = cfg
        self.spec = spec
        self.burst_window_s = max(1, round(spec.provisioning.burst_window_s))
        self.cpu_ms_per_request = spec.profile.cpu_ms_per_request
        self.cpu_request_m = spec.profile.cpu_request_millicores

    # ---- scrape schedule -----------------------------------------------------------------------
    def scrapes_in(self, lo_excl: float, hi_incl: float, every: int, offset: int) -> list[int]:
        k0 = math.floor((lo_excl - offset) / every) + 1
        k1 = math.floor((hi_incl - offset) / every)
        return [k * every + offset for k in range(k0, k1 + 1)]

    def _counter(self, tl: Timeline, pod: Pod, t_s: int) -> float | None:
        """The pod's request counter as scraped at window second t_s (None: not scraped)."""
        if pod.ready_s > t_s or (pod.deleted_s is not None and pod.deleted_s <= t_s):
            return None
        i = tl.index(t_s)
        return float(tl.cum_share[i] - tl.cum_share[max(0, tl.index(pod.ready_s))])

    def pod_rate(self, tl: Timeline, pod: Pod, now_s: int, scrapes: list[int]) -> float | None:
        first: tuple[int, float] | None = None
        last: tuple[int, float] | None = None
        n = 0
        for s in scrapes:
            v = self._counter(tl, pod, s)
            if v is None:
                continue
            if first is None:
                first = (s, v)
            last = (s, v)
            n += 1
        if first is None or last is None or n < 2:
            return None
        w = self.config.rate_window_s
        r = extrapolated_rate(first[0], last[0], n, last[1] - first[1], first[1], now_s - w, now_s)
        return None if math.isnan(r) else r

    def build_view(self, tl: Timeline, cluster: Cluster, now_s: int) -> ClusterView:
        cfg = self.config
        w = cfg.rate_window_s
        scrapes = [
            s for s in self.scrapes_in(now_s - w, now_s, cfg.scrape_interval_s, cfg.scrape_offset_s) if tl.index(s) >= 0
        ]
        # pods ready long before the window and not deleted share one rate (identical counters)
        shared_rate: float | None = None
        if len(scrapes) >= 2:
            i0, i1 = tl.index(scrapes[0]), tl.index(scrapes[-1])
            d = float(tl.cum_share[i1] - tl.cum_share[i0])
            shared_rate = extrapolated_rate(scrapes[0], scrapes[-1], len(scrapes), d, math.inf, now_s - w, now_s)
        cluster.forget_deleted_before(now_s - w)
        total = 0.0
        have_rate = False
        pod_rates: dict[int, float | None] = {}
        for p in (*cluster.pods, *cluster.deleted):
            # (ready two windows ago: its first sample is far from zero, no clamp towards zero)
            if shared_rate is not None and p.deleted_s is None and p.ready_s <= now_s - 2 * w:
                r: float | None = shared_rate
            else:
                r = self.pod_rate(tl, p, now_s, scrapes)
            pod_rates[p.pod_id] = r
            if r is not None:
                total += r
                have_rate = True
        # metrics-server CPU
        m_last = math.floor((now_s - cfg.scrape_offset_s) / cfg.metrics_resolution_s) * cfg.metrics_resolution_s
        m_last += cfg.scrape_offset_s
        cw = cfg.cpu_window_s
        cpu_full: float | None = None
        if tl.index(m_last - cw) >= 0:
            share = float(tl.cum_share[tl.index(m_last)] - tl.cum_share[tl.index(m_last - cw)]) / cw
            cpu_full = cfg.idle_cpu_millicores + self.cpu_ms_per_request * share
        last_i = tl.index(now_s) - 1
        per_pod_arrivals = 0.0
        if last_i >= 0 and tl.ready[last_i] > 0:
            per_pod_arrivals = float(tl.arrivals[last_i] / tl.ready[last_i])
        # in-flight requests per pod over the last second (Little's law: rate x mean latency)
        if self.live_latency:
            lat_last = float(tl.mean_latency_ms[last_i]) if last_i >= 0 else math.nan
        else:
            lat_last = self.tables(cluster.running_batching(now_s)).point(per_pod_arrivals)[1]
        conc = per_pod_arrivals * lat_last / 1000.0 if math.isfinite(lat_last) else 0.0
        pods: list[PodView] = []
        ready_n = 0
        for p in cluster.pods:
            ready = p.ready_s <= now_s
            ready_n += ready
            pods.append(
                PodView(
                    name=p.name,
                    phase="Running" if ready else "Pending",
                    ready=ready,
                    created_s=tl.start_s + p.created_s,
                    ready_since_s=tl.start_s + p.ready_s if ready else None,
                    cpu_millicores=cpu_full if ready and p.ready_s <= m_last - cw else None,
                    cpu_request_millicores=self.cpu_request_m,
                    rps=pod_rates.get(p.pod_id) if ready else None,
                    concurrency=conc if ready else None,
                )
            )
        total_rps = total if have_rate else None
        obs = self._observation(tl, cluster, now_s, scrapes, total_rps, ready_n)
        return ClusterView(
            now_s=tl.start_s + now_s,
            spec_replicas=cluster.spec_replicas,
            status_replicas=len(cluster.pods),
            ready_replicas=ready_n,
            pending_replicas=len(cluster.pods) - ready_n,
            pods=tuple(pods),
            total_rps=total_rps,
            observation=obs,
            batching=cluster.running_batching(now_s),
        )

    def _observation(
        self, tl: Timeline, cluster: Cluster, now_s: int, scrapes: list[int], total_rps: float | None, ready_n: int
    ) -> Observation:
        t_abs = tl.start_s + now_s
        req = (
            Signal.of(total_rps)
            if total_rps is not None
            else Signal.missing(SignalStatus.MISSING, "no pod has two request_count samples in the rate window")
        )
        hi = tl.index(now_s)
        b_lo = max(0, hi - self.burst_window_s)
        burst = Signal.missing(SignalStatus.MISSING, "no data yet")
        if hi > b_lo:
            burst = Signal.of(float(np.sum(tl.arrivals[b_lo:hi])) / (hi - b_lo))
        # window averages ending at the last scrape
        rejected = latency = batch = gpu = queue = Signal.missing(SignalStatus.MISSING, "no scrape yet")
        if scrapes:
            e = tl.index(scrapes[-1])
            s = max(0, e - self.config.rate_window_s)
            if e > s:
                rejected = Signal.of(float(tl.cum_rejected[e] - tl.cum_rejected[s]) / (e - s))
                n_served = float(tl.cum_served[e] - tl.cum_served[s])
                pod_s = float(tl.cum_ready[e] - tl.cum_ready[s])
                if n_served > 0 and pod_s > 0:
                    if self.live_latency:
                        served = tl.served[s:e]
                        ok = served > 0
                        wts = served[ok]
                        lat_q = float(np.average(np.nan_to_num(tl.served_latency_q_ms[s:e][ok]), weights=wts))
                        mean_lat = float(np.average(np.minimum(tl.mean_latency_ms[s:e][ok], 1e9), weights=wts))
                        mb = float(np.average(np.nan_to_num(tl.mean_batch[s:e][ok], nan=1.0), weights=wts))
                        busy = float(np.average(tl.busy[s:e], weights=tl.ready[s:e] + 1e-12))
                    else:
                        table = self.tables(cluster.running_batching(now_s))
                        lat_q, mean_lat, mb, busy = table.point(n_served / pod_s)
                    latency = Signal.of(lat_q)
                    batch = Signal.of(mb)
                    gpu = Signal.of(busy)
                    queue = Signal.of(max(0.0, mean_lat - cluster_service_ms(self.spec, mb)))
                elif pod_s > 0:
                    gpu = Signal.of(0.0)
        cold = Signal.missing(SignalStatus.MISSING, "no pod has started yet")
        if cluster.cold_starts_s:
            recent = cluster.cold_starts_s[-10:]
            cold = Signal.of(float(sum(recent) / len(recent)))
        return Observation(
            time_s=t_abs,
            request_rate_rps=req,
            burst_rate_rps=burst,
            error_rate_rps=Signal.of(0.0),
            rejected_rps=rejected,
            latency_ms=latency,
            queue_latency_ms=queue,
            mean_batch_size=batch,
            gpu_util=gpu,
            cold_start_s=cold,
            current_replicas=cluster.spec_replicas,
            ready_replicas=ready_n,
            pending_replicas=len(cluster.pods) - ready_n,
        )


def cluster_service_ms(spec: ServingAutoscalerSpec, batch: float) -> float:
    """Profile service time of one batch (ms), piecewise-linear as in core.capacity.ServiceTime."""
    sizes = spec.profile.batch_sizes
    lat = spec.profile.batch_latency_ms
    return float(np.interp(batch, sizes, lat))
