"""Request-level serving: every request through the exact per-replica batching DES.

Owns the exact fidelity of the simulator (validation, short traces). Each arrival goes to one of
the pods that are ready at its arrival second, and each pod runs the batch scheduler of
`core.batchqueue` on its own arrivals.

Routing (`routing=`):

* `random` (default): each request picks a ready pod uniformly at random, independently — how a
  Service spreads many clients' traffic: kube-proxy's iptables mode sends each new connection to
  endpoint k with `-m statistic --mode random --probability 1/(n-k)` (pkg/proxy/iptables/
  proxier.go, `writeServiceToEndpointRules` / `computeProbability`), so every pod sees a random
  thinning of the total (Poisson in, Poisson out). Seeded from the run's seed: reproducible.
* `round-robin`: request k goes to pod k mod n (a single gRPC client with the `round_robin` LB
  policy over every pod, or IPVS `rr` with one request per connection). It smooths each pod's
  arrivals (Erlang-n instead of Poisson), which roughly halves p99 at tens of replicas: an
  optimistic bound, not what a Service gives.

Decision periods: the engine serves one period at a time, and every pod keeps its full scheduler
state across the boundary (`core.batchqueue.ReplicaState`: busy-until time of each batch thread,
closed batches, the open batch and its timeout deadline, the queued requests with their arrival
times), so serving [t0, t2) at once or as [t0, t1) then [t1, t2) gives every request the same
latency (tested). A request's latency is known once its batch is dispatched; the per-second
latency columns of the timeline count, for each arrival second, the requests resolved so far and
are completed when the rest are dispatched (in a later period, or when `drain()` empties every
pod at the end). Rejections are known at the end of the arrival's period. A pod that is no longer
ready (deleted) gets no new arrivals and drains what it holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from autoscaler.core.batchqueue import ReplicaState, ReplicaStep, advance_replica
from autoscaler.core.capacity import ServiceTime
from autoscaler.core.types import FloatArray
from autoscaler.sim.cluster import Pod
from autoscaler.sim.timeline import Timeline
from autoscaler.spec.types import SLO

ROUTINGS = ("random", "round-robin")
_ROUTING_STREAM = 0x524F555445  # mixes into the run's seed: routing draws apart from arrivals/startup


@dataclass
class RequestServer:
    """Carries each pod's scheduler state and every request's latency (inf = rejected, NaN = queued)."""

    service: ServiceTime
    slo: SLO
    arrivals_s: FloatArray  # sorted request times, seconds from window start
    routing: str = "random"
    seed: int = 0
    rr_next: int = 0
    states: dict[int, ReplicaState] = field(default_factory=dict)
    latency_ms: FloatArray = field(init=False)
    _pos: int = 0
    _rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        if self.routing not in ROUTINGS:
            raise ValueError(f"routing: expected one of {', '.join(ROUTINGS)} (got {self.routing!r})")
        self.latency_ms = np.full(len(self.arrivals_s), np.nan)
        self._rng = np.random.default_rng([self.seed, _ROUTING_STREAM])

    def _route(
        self, times: FloatArray, segments: list[tuple[int, int, list[Pod]]]
    ) -> tuple[npt.NDArray[np.int64], dict[int, Pod]]:
        """Pod id of each arrival (-1: no pod ready, rejected), and the pods that were ready."""
        n = len(times)
        pod_of = np.full(n, -1, dtype=np.int64)
        pods_by_id: dict[int, Pod] = {}
        for s0, s1, ready in segments:
            a = int(np.searchsorted(times, s0, side="left"))
            b = int(np.searchsorted(times, s1, side="left"))
            if not ready:
                continue
            for p in ready:
                pods_by_id[p.pod_id] = p
            if b <= a:
                continue
            ids = np.array([p.pod_id for p in ready], dtype=np.int64)
            k = len(ids)
            if self.routing == "random":
                # one double per request, in arrival order: the same draws however the window is cut
                pick = np.minimum((self._rng.random(b - a) * k).astype(np.int64), k - 1)
            else:
                pick = (self.rr_next + np.arange(b - a)) % k
                self.rr_next = (self.rr_next + (b - a)) % k
            pod_of[a:b] = ids[pick]
        return pod_of, pods_by_id

    def serve(self, tl: Timeline, t0: int, t1: int, segments: list[tuple[int, int, list[Pod]]]) -> None:
        """Serve arrivals in window seconds [t0, t1); `segments` give the ready pods per sub-range."""
        arr = self.arrivals_s
        lo = self._pos
        hi = int(np.searchsorted(arr, t1, side="left"))
        self._pos = hi
        times = arr[lo:hi]
        pod_of, pods_by_id = self._route(times, segments)
        self.latency_ms[lo:hi][pod_of < 0] = np.inf
        order = np.argsort(pod_of, kind="stable")
        sorted_ids = pod_of[order]
        busy_s = 0.0
        batches = 0
        batch_rows = 0
        thread_s = 0.0
        first_resolved = lo
        for pid in sorted(set(pods_by_id) | set(self.states)):
            pod = pods_by_id.get(pid)
            if pod is not None:
                ready_span = sum(max(0, min(s1, t1) - max(s0, t0)) for s0, s1, r in segments if pod in r)
                thread_s += self.service.servers(pod.params) * ready_span
            a = int(np.searchsorted(sorted_ids, pid, side="left"))
            b = int(np.searchsorted(sorted_ids, pid, side="right"))
            state = self.states.get(pid)
            if state is None:
                if a == b or pod is None:
                    continue  # idle and given nothing: stays idle
                state = self.states[pid] = ReplicaState.idle(pod.params, self.service)
            mine = order[a:b]
            step = advance_replica(state, times[mine], until_s=float(t1), tags=lo + mine)
            first_resolved = min(first_resolved, self._store(step))
            if state.is_idle():
                del self.states[pid]  # an idle replica is the same as a fresh one
            # each batch counts in the period of its dispatch (a deleted pod's draining ones too)
            busy_s += step.busy_s
            batches += len(step.batch_sizes)
            batch_rows += int(step.batch_sizes.sum())
        m = t1 - t0
        i0 = tl.index(t0)
        sec = np.minimum(np.floor(times).astype(np.int64) - t0, m - 1)
        rej = np.isinf(self.latency_ms[lo:hi])  # rejections are known by now; NaN = still queued
        tl.arrivals[i0 : i0 + m] = np.bincount(sec, minlength=m)
        tl.rejected[i0 : i0 + m] = np.bincount(sec, weights=rej.astype(np.float64), minlength=m)
        tl.served[i0 : i0 + m] = tl.arrivals[i0 : i0 + m] - tl.rejected[i0 : i0 + m]
        tl.busy[i0 : i0 + m] = busy_s / thread_s if thread_s > 0 else 0.0
        tl.mean_batch[i0 : i0 + m] = batch_rows / batches if batches else math.nan
        s_from = min(t0, math.floor(arr[first_resolved])) if first_resolved < lo else t0
        self._record_latency(tl, s_from, t1)

    def drain(self, tl: Timeline) -> None:
        """End of the replay: every pod dispatches what it still holds; complete the columns."""
        first_resolved = self._pos
        for state in self.states.values():
            step = advance_replica(state, np.zeros(0), until_s=math.inf)
            first_resolved = min(first_resolved, self._store(step))
        self.states.clear()
        if first_resolved < self._pos:
            self._record_latency(tl, math.floor(self.arrivals_s[first_resolved]), tl.filled - tl.preroll_s)

    def _store(self, step: ReplicaStep) -> int:
        """Record the step's latencies; return the lowest request index it resolved (or a big one)."""
        if step.tags.size == 0:
            return len(self.latency_ms)
        self.latency_ms[step.tags] = np.where(step.rejected, np.inf, step.latency_ms)
        return int(step.tags.min())

    def _record_latency(self, tl: Timeline, t0: int, t1: int) -> None:
        """(Re)compute the latency columns of seconds [t0, t1) from the requests resolved so far."""
        m = t1 - t0
        if m <= 0:
            return
        arr = self.arrivals_s
        lo = int(np.searchsorted(arr, t0, side="left"))
        hi = int(np.searchsorted(arr, t1, side="left"))
        lat_all = self.latency_ms[lo:hi]
        known = ~np.isnan(lat_all)
        lat = lat_all[known]
        sec = np.minimum(np.floor(arr[lo:hi][known]).astype(np.int64) - t0, m - 1)
        i0 = tl.index(t0)
        rej = ~np.isfinite(lat)
        within = (lat <= self.slo.latency_ms).astype(np.float64)
        tl.within_slo[i0 : i0 + m] = np.bincount(sec, weights=within, minlength=m)
        ok = ~rej
        tot = np.bincount(sec[ok], weights=lat[ok], minlength=m)
        cnt = np.bincount(sec[ok], minlength=m)
        tl.mean_latency_ms[i0 : i0 + m] = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
        q = per_second_quantiles(sec, lat, m, (self.slo.latency_quantile, 0.5, 0.99))
        tl.latency_q_ms[i0 : i0 + m] = q[0]
        tl.served_latency_q_ms[i0 : i0 + m] = per_second_quantiles(sec[ok], lat[ok], m, (self.slo.latency_quantile,))[0]
        tl.p50_ms[i0 : i0 + m] = q[1]
        tl.p99_ms[i0 : i0 + m] = q[2]

    def all_latencies_ms(self) -> FloatArray:
        """Latency of every request served so far (inf = rejected; NaN = still queued before `drain`)."""
        return self.latency_ms[: self._pos]


def per_second_quantiles(sec: np.ndarray, lat: FloatArray, m: int, qs: tuple[float, ...]) -> list[FloatArray]:
    """For each second 0..m-1, the 'higher' q-quantile of its latencies (NaN for empty seconds)."""
    out = [np.full(m, np.nan) for _ in qs]
    if len(sec) == 0:
        return out
    order = np.lexsort((lat, sec))
    l_sorted = lat[order]
    counts = np.bincount(sec, minlength=m)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    for j, q in enumerate(qs):
        pos = starts + np.ceil(q * (counts - 1)).astype(np.int64)
        vals = np.full(m, np.nan)
        vals[has] = l_sorted[pos[has]]
        out[j] = vals
    return out
