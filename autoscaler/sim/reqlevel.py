"""Request-level serving: every request through the exact per-replica batching DES.

Owns the exact fidelity of the simulator (validation, short traces). Arrivals are balanced
round-robin over the pods that are ready at their arrival second (gRPC client-side round robin;
"balanced evenly" as the fluid model assumes) and each pod runs `core.batchqueue.simulate_replica`
on its own arrivals. The engine advances one decision period at a time, so each pod is simulated
chunk by chunk; queue state crosses a chunk boundary by re-simulating, at the start of the next
chunk, the requests that were still in the system at the boundary (their arrival times are
kept, so the queue they form is the one that was there). Deleted pods drain what they hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from autoscaler.core.batchqueue import simulate_replica
from autoscaler.core.capacity import ServiceTime
from autoscaler.core.types import FloatArray
from autoscaler.sim.cluster import Pod
from autoscaler.sim.timeline import Timeline
from autoscaler.spec.types import SLO


@dataclass
class RequestServer:
    """Carries per-pod queue state and every latency of the replay (inf = rejected)."""

    service: ServiceTime
    slo: SLO
    arrivals_s: FloatArray  # sorted request times, seconds from window start
    rr_next: int = 0
    carry: dict[int, FloatArray] = field(default_factory=dict)
    latencies_ms: list[FloatArray] = field(default_factory=list)
    _pos: int = 0

    def serve(self, tl: Timeline, t0: int, t1: int, segments: list[tuple[int, int, list[Pod]]]) -> None:
        """Serve arrivals in window seconds [t0, t1); `segments` give the ready pods per sub-range."""
        arr = self.arrivals_s
        lo = self._pos
        hi = int(np.searchsorted(arr, t1, side="left"))
        self._pos = hi
        times = arr[lo:hi]
        n = len(times)
        pod_of = np.full(n, -1, dtype=np.int64)
        pods_by_id: dict[int, Pod] = {}
        for s0, s1, ready in segments:
            a = int(np.searchsorted(times, s0, side="left"))
            b = int(np.searchsorted(times, s1, side="left"))
            if b <= a or not ready:
                continue
            ids = np.array([p.pod_id for p in ready], dtype=np.int64)
            for p in ready:
                pods_by_id[p.pod_id] = p
            pod_of[a:b] = ids[(self.rr_next + np.arange(b - a)) % len(ids)]
            self.rr_next = (self.rr_next + (b - a)) % len(ids)
        lat = np.full(n, np.inf)
        busy_s = 0.0
        batches = 0
        batch_rows = 0
        thread_s = 0.0
        new_carry: dict[int, FloatArray] = {}
        for pid, pod in pods_by_id.items():
            mine = np.flatnonzero(pod_of == pid)
            old = self.carry.get(pid, np.zeros(0))
            seq = np.concatenate((old, times[mine]))
            run = simulate_replica(seq, pod.params, self.service)
            k = len(old)
            lat_all = np.where(run.rejected, np.inf, run.latency_ms)
            lat[mine] = lat_all[k:]
            busy_s += run.busy_s
            batches += len(run.batch_sizes)
            batch_rows += int(run.batch_sizes.sum())
            ready_span = sum(max(0, min(s1, t1) - max(s0, t0)) for s0, s1, r in segments if pod in r)
            thread_s += pod.params.num_batch_threads * ready_span
            done = seq + np.nan_to_num(run.latency_ms, nan=0.0) / 1000.0
            still = (~run.rejected) & (done > t1)
            if still.any():
                new_carry[pid] = seq[still]
        self.carry = new_carry
        self.latencies_ms.append(lat)
        self._record(tl, t0, t1, times, lat, busy_s, thread_s, batches, batch_rows)

    def _record(
        self,
        tl: Timeline,
        t0: int,
        t1: int,
        times: FloatArray,
        lat: FloatArray,
        busy_s: float,
        thread_s: float,
        batches: int,
        batch_rows: int,
    ) -> None:
        m = t1 - t0
        i0 = tl.index(t0)
        sec = np.minimum(np.floor(times).astype(np.int64) - t0, m - 1)
        rej = ~np.isfinite(lat)
        tl.arrivals[i0 : i0 + m] = np.bincount(sec, minlength=m)
        tl.rejected[i0 : i0 + m] = np.bincount(sec, weights=rej.astype(np.float64), minlength=m)
        tl.served[i0 : i0 + m] = tl.arrivals[i0 : i0 + m] - tl.rejected[i0 : i0 + m]
        within = (lat <= self.slo.latency_ms).astype(np.float64)
        tl.within_slo[i0 : i0 + m] = np.bincount(sec, weights=within, minlength=m)
        served_lat = np.where(rej, 0.0, lat)
        tot = np.bincount(sec, weights=served_lat, minlength=m)
        cnt = tl.served[i0 : i0 + m]
        tl.mean_latency_ms[i0 : i0 + m] = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
        q = per_second_quantiles(sec, lat, m, (self.slo.latency_quantile, 0.5, 0.99))
        tl.latency_q_ms[i0 : i0 + m] = q[0]
        ok = ~rej
        tl.served_latency_q_ms[i0 : i0 + m] = per_second_quantiles(sec[ok], lat[ok], m, (self.slo.latency_quantile,))[0]
        tl.p50_ms[i0 : i0 + m] = q[1]
        tl.p99_ms[i0 : i0 + m] = q[2]
        tl.busy[i0 : i0 + m] = busy_s / thread_s if thread_s > 0 else 0.0
        tl.mean_batch[i0 : i0 + m] = batch_rows / batches if batches else math.nan

    def all_latencies_ms(self) -> FloatArray:
        if not self.latencies_ms:
            return np.zeros(0)
        return np.concatenate(self.latencies_ms)


def per_second_quantiles(sec: np.ndarray, lat: FloatArray, m: int, qs: tuple[float, ...]) -> list[FloatArray]:
    """For each second 0..m-1, the 'higher' q-quantile of its latencies (NaN for empty seconds)."""
    out = [np.full(m, np.nan) for _ in qs]
    if len(sec) == 0:
        return out
    order = np.lexsort((lat, sec))
    s_sorted = sec[order]
    l_sorted = lat[order]
    counts = np.bincount(sec, minlength=m)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    for j, q in enumerate(qs):
        pos = starts + np.ceil(q * (counts - 1)).astype(np.int64)
        vals = np.full(m, np.nan)
        vals[has] = l_sorted[pos[has]]
        out[j] = vals
    del s_sorted
    return out
