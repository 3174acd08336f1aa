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
  request × the pod's request rate + host CPU held while the device is busy (`sim/cpu.py`: a
  saturated pod reads ~97 % of its request). A pod has no CPU sample until a full window after it
  became ready.
* **Burst signal**: arrivals (served + rejected) over the last `burst_window_s` seconds as the
  daemon's direct TF Serving scrape sees them at the tick (no Prometheus lag).
* Latency at the SLO quantile as `histogram_quantile` over TF Serving's latency buckets reports it
  (interpolated inside a 1.8×-wide bucket, the bias our calibration corrects for in a real cluster;
  of *served* requests: TF Serving records latency for OK responses only, so an overloaded replica
  shows the wait through a full batch queue, not infinity), queue
  latency, batch size, GPU utilization and rejections are averaged over the rate window ending at
  the last scrape.

Masked trace gaps (`Timeline.gap`: the load of those seconds is unknown and served bridged) are
missing data here, as in a monitoring outage: no Prometheus scrape at a gap second (rates come from
the samples left in the window, none once the window holds no two), no metrics-server sample whose
window touches the gap, no burst signal or queue-proxy concurrency for a gap second.

`build_view()` only reads timeline indices below the tick time: nothing here can see the future.
It is cheap (a 7-day replay at KPA's 2 s tick calls it 302,400 times): it counts the pods and
snapshots the cluster; pods, rates, `total_rps`, the observation, batching and the in-flight
totals (also of each second since the last tick, `in_flight_history`) are computed only if the
policy reads them (`ClusterView.deferred`), from that snapshot and from timeline entries the
engine has closed (never rewritten), so reading them late changes nothing. Per-pod counter samples
are cached for a scrape interval; a pod ready for two windows and not deleted shares the steady rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from autoscaler.core.types import Observation, Signal, SignalStatus
from autoscaler.sim.cluster import Cluster, Pod
from autoscaler.sim.cpu import CpuModel
from autoscaler.sim.fluid import RateTable, interp_one
from autoscaler.sim.timeline import Timeline
from autoscaler.sim.view import ClusterView, PodView, cached_property
from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec

_Stats = tuple[int, int, int, float, float]  # a pod's (first_t, last_t, n, delta, first_v) in a window


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


# signals that are the same at every tick (Signals are immutable)
_add_reduce = np.add.reduce  # np.sum without its Python wrapper (same reduction, same bits)
_NO_RATE = Signal.missing(SignalStatus.MISSING, "no pod has two request_count samples in the rate window")
_NO_DATA = Signal.missing(SignalStatus.MISSING, "no data yet")
_NO_SCRAPE = Signal.missing(SignalStatus.MISSING, "no scrape yet")
_NO_POD_STARTED = Signal.missing(SignalStatus.MISSING, "no pod has started yet")
_ZERO = Signal.of(0.0)
_GAP = Signal.missing(SignalStatus.MISSING, "no data: logging gap in the trace")


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
        self.cpu = CpuModel.for_spec(spec, idle_m=cfg.idle_cpu_millicores)
        self.cpu_request_m = spec.profile.cpu_request_millicores
        self._svc_sizes = [float(b) for b in spec.profile.batch_sizes]  # for the queue-latency signal
        self._svc_ms = [float(ms) for ms in spec.profile.batch_latency_ms]
        self._tables: dict[BatchingParams, RateTable] = {}
        self._last_params: BatchingParams | None = None
        self._last_table: RateTable | None = None
        self._names: dict[int, str] = {}
        self._pending: dict[int, tuple[Pod, float, PodView]] = {}
        self._stats_tl: Timeline | None = None
        self._stats_scrapes: list[int] = []
        self._stats: dict[tuple[int, float | None], _Stats | None] = {}

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

    def stats_cache(self, tl: Timeline, scrapes: list[int]) -> dict[tuple[int, float | None], _Stats | None]:
        """`counter_stats` results for this scrape set, by (ready_s, deleted_s); reset when it changes."""
        if tl is not self._stats_tl or scrapes != self._stats_scrapes:
            self._stats_tl, self._stats_scrapes = tl, list(scrapes)
            self._stats.clear()
        return self._stats

    def counter_stats(self, tl: Timeline, ready_s: int, deleted_s: float | None, scrapes: list[int]) -> _Stats | None:
        """(first_t, last_t, n, delta, first_v) of a pod's scraped counter, as `pod_rate` finds them.

        Cached while the scrape set (and timeline) stay the same, i.e. for a whole scrape interval:
        they depend on the pod's readiness and deletion times and on final timeline entries only.
        """
        cache = self.stats_cache(tl, scrapes)
        key = (ready_s, deleted_s)
        if key in cache:
            return cache[key]
        pod = Pod(0, 0.0, ready_s, self.spec.batching.initial, deleted_s)
        got: _Stats | None = None
        vals = [(t, v) for t in scrapes if (v := self._counter(tl, pod, t)) is not None]
        if len(vals) >= 2:
            (t0, v0), (t1, v1) = vals[0], vals[-1]
            got = (t0, t1, len(vals), v1 - v0, v0)
        cache[key] = got
        return got

    def table(self, params: BatchingParams) -> RateTable:
        if params is self._last_params and self._last_table is not None:  # skips hashing the dataclass
            return self._last_table
        t = self._tables.get(params)
        if t is None:
            t = self._tables[params] = self.tables(params)
        self._last_params, self._last_table = params, t
        return t

    def build_view(self, tl: Timeline, cluster: Cluster, now_s: int) -> ClusterView:
        """The view at `now_s`: counts now; pods, rates and the observation when a policy reads them.

        Deferred parts read a snapshot of the cluster taken here and timeline entries below the
        tick's index only, which the engine never rewrites: reading them later gives the same view.
        """
        cluster.forget_deleted_before(now_s - self.config.rate_window_s)
        pods = tuple(cluster.pods)
        ready_n = cluster.ready_count(now_s)
        deleted = tuple(cluster.deleted) if cluster.deleted else ()
        src = _TickSource(self, tl, now_s, pods, deleted, cluster.template, ready_n)
        src.deleted_off_template = cluster.deleted_off_template()
        src.spec_replicas = cluster.spec_replicas
        src.uniform = cluster.uniform
        src.cluster = cluster
        view = ClusterView.deferred(
            now_s=tl.start_s + now_s,
            spec_replicas=cluster.spec_replicas,
            status_replicas=len(pods),
            ready_replicas=ready_n,
            pending_replicas=len(pods) - ready_n,
            source=src,
        )
        if self.live_latency:  # request fidelity fills the latency columns as it goes: read them now
            _ = view.pods, view.total_rps, view.observation, view.batching
        return view

    def observation(self, src: _TickSource) -> Observation:
        """What our Prometheus sources would report at the snapshot's tick."""
        tl, now_s, scrapes, ready_n = src.tl, src.now_s, src.scrapes, src.ready_n
        total_rps = src.total_rps()
        t_abs = tl.start_s + now_s
        req = Signal.of(total_rps) if total_rps is not None else _NO_RATE
        hi = tl.index(now_s)
        b_lo = max(0, hi - self.burst_window_s)
        burst = _NO_DATA
        if tl.has_gaps and tl.gap[b_lo:hi].any():
            burst = _GAP
        elif hi > b_lo:
            burst = Signal.of(float(_add_reduce(tl.arrivals[b_lo:hi])) / (hi - b_lo))  # = np.sum
        # window averages ending at the last scrape
        rejected = latency = batch = gpu = queue = _NO_SCRAPE
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
                        lat_q, mean_lat, mb, busy = self.table(src.batching()).point(n_served / pod_s)
                    latency = Signal.of(lat_q)
                    batch = Signal.of(mb)
                    gpu = Signal.of(busy)
                    queue = Signal.of(max(0.0, mean_lat - interp_one(mb, self._svc_sizes, self._svc_ms)))
                elif pod_s > 0:
                    gpu = _ZERO
        cold = _NO_POD_STARTED
        cl = src.cluster  # cold starts up to now are facts of the past: final
        recent = cl.recent_cold_starts_s(now_s, 10) if cl is not None else []
        if recent:
            cold = Signal.of(float(sum(recent) / len(recent)))
        return Observation(
            time_s=t_abs,
            request_rate_rps=req,
            burst_rate_rps=burst,
            error_rate_rps=_ZERO,
            rejected_rps=rejected,
            latency_ms=latency,
            queue_latency_ms=queue,
            mean_batch_size=batch,
            gpu_util=gpu,
            cold_start_s=cold,
            current_replicas=src.spec_replicas,
            ready_replicas=ready_n,
            pending_replicas=len(src.pod_list) - ready_n,
        )


class _TickSource:
    """One tick's `ViewSource`: the cluster as snapshotted at the tick, and the timeline's past.

    A pod's `ready_s` never changes, and pods still in the Deployment have no `deleted_s` at the
    tick (deleted pods keep theirs), so the tuples of pods are a faithful snapshot.
    """

    def __init__(
        self,
        pipe: MetricsPipeline,
        tl: Timeline,
        now_s: int,
        pods: tuple[Pod, ...],
        deleted: tuple[Pod, ...],
        template: BatchingParams,
        ready_n: int,
    ) -> None:
        self.pipe = pipe
        self.tl = tl
        self.now_s = now_s
        self.pod_list = pods
        self.deleted = deleted
        self.template = template
        self.ready_n = ready_n
        self.spec_replicas = 0
        self.uniform = False  # every pod runs the template (no rollout): `batching()` is the template
        self.deleted_off_template = True  # some deleted pod (still in rate windows) runs other parameters
        self.cluster: Cluster | None = None  # read for cold starts up to now only (final facts)
        self._pod_rates: list[float | None] | None = None
        self._deleted_rates: list[float | None] | None = None
        self._batching: BatchingParams | None = None
        self._conc: float | None = None

    @cached_property
    def scrapes(self) -> list[int]:
        """Prometheus scrapes of the pods inside the rate window ending now (timeline seconds)."""
        cfg, now_s, tl = self.pipe.config, self.now_s, self.tl
        got = self.pipe.scrapes_in(now_s - cfg.rate_window_s, now_s, cfg.scrape_interval_s, cfg.scrape_offset_s)
        if tl.has_gaps:  # no scrape lands in a logging gap
            return [s for s in got if tl.index(s) >= 0 and not tl.gap[tl.index(s)]]
        return [s for s in got if tl.index(s) >= 0]

    def _rates(self, pods: tuple[Pod, ...]) -> list[float | None]:
        sc, now_s, w = self.scrapes, self.now_s, self.pipe.config.rate_window_s
        # pods ready long before the window and not deleted share one rate (identical counters);
        # ready two windows ago, their first sample is far from zero: no clamp towards zero
        shared: float | None = None
        if len(sc) >= 2:
            tl = self.tl
            d = float(tl.cum_share[tl.index(sc[-1])] - tl.cum_share[tl.index(sc[0])])
            shared = extrapolated_rate(sc[0], sc[-1], len(sc), d, math.inf, now_s - w, now_s)
        old, lo = now_s - 2 * w, now_s - w
        pipe, tl = self.pipe, self.tl
        cache = pipe.stats_cache(tl, sc)
        out: list[float | None] = []
        for p in pods:
            if p.ready_s > now_s:
                out.append(None)  # not ready yet: never scraped
            elif shared is not None and p.deleted_s is None and p.ready_s <= old:
                out.append(shared)
            else:  # Prometheus' rate() over the pod's own samples, from its cached counter stats
                key = (p.ready_s, p.deleted_s)
                st = cache[key] if key in cache else pipe.counter_stats(tl, p.ready_s, p.deleted_s, sc)
                r = None if st is None else extrapolated_rate(st[0], st[1], st[2], st[3], st[4], lo, now_s)
                out.append(None if r is None or math.isnan(r) else r)
        return out

    def pod_rates(self) -> list[float | None]:
        if self._pod_rates is None:
            self._pod_rates = self._rates(self.pod_list)
        return self._pod_rates

    def total_rps(self) -> float | None:
        if self._deleted_rates is None:
            self._deleted_rates = self._rates(self.deleted)
        total = 0.0
        have_rate = False
        for r in (*self.pod_rates(), *self._deleted_rates):
            if r is not None:
                total += r
                have_rate = True
        return total if have_rate else None

    def batching(self) -> BatchingParams:
        """`Cluster.running_batching` at the tick: the template once any ready pod runs it."""
        if self._batching is None:
            t = self.template
            if self.uniform:
                self._batching = t
                return t
            ready = [p for p in self.pod_list if p.ready_s <= self.now_s]
            ok = not ready or any(p.params is t or p.params == t for p in ready)
            self._batching = t if ok else ready[0].params
        return self._batching

    def observation(self) -> Observation:
        return self.pipe.observation(self)

    def _concurrency(self) -> float:
        """In-flight requests per ready pod over the last second (Little's law: rate × mean latency)."""
        if self._conc is None:
            self._conc = self._concurrency_at(self.now_s, self.batching())
        return self._conc

    def _concurrency_at(self, s: int, params: BatchingParams) -> float:
        """`_concurrency` of the view at second s <= now: from the second before s only."""
        pipe, tl = self.pipe, self.tl
        last_i = s + tl.preroll_s - 1
        if tl.has_gaps and last_i >= 0 and tl.gap[last_i]:
            return math.nan  # no queue-proxy stats for a gap second
        per_pod_arrivals = 0.0
        if last_i >= 0:
            ready = tl.ready.item(last_i)
            if ready > 0:
                per_pod_arrivals = tl.arrivals.item(last_i) / ready
        if pipe.live_latency:
            lat_last = tl.mean_latency_ms.item(last_i) if last_i >= 0 else math.nan
        else:
            lat_last = pipe.table(params).mean_ms_at(per_pod_arrivals)
        return per_pod_arrivals * lat_last / 1000.0 if math.isfinite(lat_last) else 0.0

    def in_flight(self) -> float | None:
        """Sum over ready pods of their concurrency, summed as `sum()` over the pods would."""
        if self.ready_n == 0:
            return None
        c = self._concurrency()
        return None if math.isnan(c) else float(sum([c] * self.ready_n))

    def in_flight_history(self, n: int) -> list[tuple[float, float | None]]:
        """`in_flight()` of the views at seconds now - n + 1 .. now that the timeline has."""
        out = self.in_flight_past(n)
        out.append((self.tl.start_s + self.now_s, self.in_flight()))
        return out

    def in_flight_past(self, n: int) -> list[tuple[float, float | None]]:
        """`in_flight()` of the views at seconds now - n + 1 .. now - 1 that the timeline has.

        Patches happen only at ticks, so since the last one pods only became ready (and deleted
        what a rollout then replaces): second s had `tl.ready` ready pods (counted after those ready
        at s) and `running_batching` over the pods ready at s, live or deleted since (kept a window).
        """
        tl, now, t = self.tl, self.now_s, self.template
        out: list[tuple[float, float | None]] = []
        start, ready_col, pre = tl.start_s, tl.ready, tl.preroll_s
        if self.uniform and not self.deleted_off_template:  # every pod ready at s ran the template
            for s in range(max(now - n + 1, -pre), now):
                ready_n = int(ready_col.item(s + pre))
                c = self._concurrency_at(s, t) if ready_n else math.nan
                out.append((start + s, None if math.isnan(c) else float(sum([c] * ready_n))))
            return out
        pods = (*self.pod_list, *self.deleted)
        for s in range(max(now - n + 1, -pre), now):
            ready_n = int(ready_col.item(s + pre))
            if ready_n == 0:
                out.append((start + s, None))
                continue
            # the API lists pods oldest first: by id
            ready = sorted((p for p in pods if p.ready_s <= s and (p.deleted_s is None or p.deleted_s > s)),
                           key=lambda p: p.pod_id)  # fmt: skip
            params = t if not ready or any(p.params == t for p in ready) else ready[0].params
            c = self._concurrency_at(s, params)
            out.append((start + s, None if math.isnan(c) else float(sum([c] * ready_n))))
        return out

    def pods(self) -> tuple[PodView, ...]:
        pipe, tl, now_s = self.pipe, self.tl, self.now_s
        cfg = pipe.config
        rates = self.pod_rates()
        # metrics-server CPU
        m_last = math.floor((now_s - cfg.scrape_offset_s) / cfg.metrics_resolution_s) * cfg.metrics_resolution_s
        m_last += cfg.scrape_offset_s
        cw = cfg.cpu_window_s
        cpu_full: float | None = None
        gap_in_window = tl.has_gaps and bool(tl.gap[max(0, tl.index(m_last - cw)) : tl.index(m_last)].any())
        if tl.index(m_last - cw) >= 0 and not gap_in_window:
            share = float(tl.cum_share[tl.index(m_last)] - tl.cum_share[tl.index(m_last - cw)]) / cw
            cpu_full = pipe.cpu.millicores(share, pipe.table(self.batching()).point(share)[3])
        conc: float | None = self._concurrency()
        if conc is not None and math.isnan(conc):
            conc = None  # a gap second: no queue-proxy stats
        cpu_from = m_last - cw
        start, req_m = tl.start_s, pipe.cpu_request_m
        names, pending = pipe._names, pipe._pending
        running = PodView.running
        out: list[PodView] = []
        for p, r in zip(self.pod_list, rates, strict=True):
            if p.ready_s <= now_s:
                name = names.get(p.pod_id)
                if name is None:
                    if len(names) > 10_000:
                        names.clear()
                    name = names[p.pod_id] = p.name
                cpu = cpu_full if p.ready_s <= cpu_from else None
                out.append(running(name, start + p.created_s, start + p.ready_s, cpu, req_m, r, conc))
            else:  # a Pending pod looks the same every tick until it is ready
                hit = pending.get(p.pod_id)
                if hit is None or hit[0] is not p or hit[1] != start:
                    if len(pending) > 10_000:
                        pending.clear()
                    pv = PodView(p.name, "Pending", False, start + p.created_s, None, None, req_m, None, None)
                    hit = pending[p.pod_id] = (p, start, pv)
                out.append(hit[2])
        return tuple(out)
