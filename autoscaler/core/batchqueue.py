"""Exact discrete-event simulation of one TF Serving replica's shared batch scheduler.

Owns the ground truth the analytic capacity model (`core/capacity.py`) is validated against,
and the per-replica engine of the request-level simulator. It reproduces the scheduling rules
of TensorFlow's `SharedBatchScheduler` (tensorflow/core/kernels/batching_util/
shared_batch_scheduler.h) for single-request tasks:

* Requests join the *open* batch. A request that does not fit (open batch full) closes it and
  starts a new one — unless the queue already holds `max_enqueued_batches` batches (closed ones
  waiting for a thread plus the open one), in which case it is rejected (UNAVAILABLE).
* A free batch thread takes the oldest closed batch; if there is none, it closes and takes the
  open batch once that batch is *schedulable*: full, or `batch_timeout_us` after its first
  request. So while all threads are busy the open batch keeps filling past its timeout up to
  `max_batch_size`, which is why batch size grows with load.
* `min(num_batch_threads, profile.device_parallelism)` batches run in parallel (the profile
  times one batch alone on the device, so on one GPU batches execute one at a time and extra
  threads add no device throughput); a batch of b requests takes the deterministic
  `ServiceTime` S(b), and every request of it completes when the batch does.

Not modelled: the scheduler's 1 ms idle-poll granularity for noticing an expired timeout
(idle threads here react instantly), task splitting, padding to `allowed_batch_sizes`.

Speed: the loop runs per *batch*, not per request — arrivals joining a batch are found with
bisection on the sorted arrival array — and uses only floats, ints and a heap of thread free
times, so it pushes millions of requests per second (benchmarks/capacity_model.py).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autoscaler.core.capacity import ServiceTime, validate_params
from autoscaler.core.types import FloatArray
from autoscaler.spec.types import BatchingParams

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ReplicaRun:
    """Outcome of pushing one arrival sequence through one replica."""

    latency_ms: FloatArray  # per request, arrival -> completion; NaN for rejected
    rejected: BoolArray  # per request
    batch_sizes: IntArray  # per processed batch, in dispatch order
    busy_s: float  # total thread-busy seconds (sum of batch service times)
    duration_s: float  # first arrival -> max(last arrival, last completion)
    num_batch_threads: int = 1  # parallel servers: min(num_batch_threads, device_parallelism)

    @property
    def busy_fraction(self) -> float:
        """Mean fraction of batch threads busy over `duration_s` (GPU utilization proxy)."""
        if self.duration_s <= 0.0:
            return 0.0
        return self.busy_s / (self.num_batch_threads * self.duration_s)

    def fraction_within(self, latency_ms: float) -> float:
        """Fraction of *arriving* requests completed within `latency_ms` (rejected = miss)."""
        n = len(self.latency_ms)
        if n == 0:
            return 1.0
        served = self.latency_ms[~self.rejected]
        return float(np.count_nonzero(served <= latency_ms)) / n

    def latency_quantile_ms(self, q: float) -> float:
        """q-quantile over arriving requests, rejected counted as infinitely late."""
        n = len(self.latency_ms)
        if n == 0:
            return 0.0
        lat = np.where(self.rejected, np.inf, self.latency_ms)
        return float(np.quantile(lat, q, method="higher"))


def _as_sorted_arrivals(arrivals_s: FloatArray) -> list[float]:
    arr = np.asarray(arrivals_s, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"arrivals_s: expected a 1-D array of times in seconds (got shape {arr.shape})")
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError("arrivals_s: expected finite times in seconds (got NaN or inf)")
    if arr.size > 1 and np.any(np.diff(arr) < 0):
        raise ValueError("arrivals_s: expected non-decreasing arrival times")
    return arr.tolist()  # type: ignore[no-any-return]


def simulate_replica(arrivals_s: FloatArray, params: BatchingParams, service: ServiceTime) -> ReplicaRun:
    """Run the arrivals (sorted, seconds) through one replica's batch scheduler."""
    validate_params(params)
    arr = _as_sorted_arrivals(arrivals_s)
    n = len(arr)
    big_b = params.max_batch_size
    max_batches = params.max_enqueued_batches
    timeout_s = params.batch_timeout_us * 1e-6
    svc = service.table_s(big_b)
    threads = [-math.inf] * service.servers(params)  # heap of free times of the parallel servers
    inf = math.inf

    # Dispatched batches: first request index, size, completion time. Members of a batch are
    # always consecutive request indices (rejections happen only between batches).
    b_start: list[int] = []
    b_size: list[int] = []
    b_done: list[float] = []
    rej_lo: list[int] = []  # rejected request index ranges [lo, hi)
    rej_hi: list[int] = []
    closed: list[int] = []  # start indices of closed (always full) batches waiting, FIFO
    closed_head = 0
    i = 0  # next arrival not yet seen
    o_s = 0  # first request of the open batch
    open_n = 0  # requests in the open batch
    open_t = 0.0  # arrival time of its first request

    def arrivals_until(t_end: float) -> None:
        """Admit every arrival strictly before t_end (no thread frees before t_end)."""
        nonlocal i, o_s, open_n, open_t
        while i < n and arr[i] < t_end:
            if open_n == 0:
                o_s, open_n, open_t = i, 1, arr[i]
                i += 1
            elif open_n < big_b:
                hi = min(n, i + big_b - open_n)
                j = bisect_left(arr, t_end, i, hi)
                open_n += j - i
                i = j
            elif len(closed) - closed_head + 1 >= max_batches:
                j = bisect_left(arr, t_end, i)
                rej_lo.append(i)
                rej_hi.append(j)
                i = j
            else:
                closed.append(o_s)
                o_s, open_n, open_t = i, 1, arr[i]
                i += 1

    heapreplace = heapq.heapreplace
    start_append, size_append, done_append = b_start.append, b_size.append, b_done.append
    full_s = svc[big_b]
    while True:
        f = threads[0]
        if closed_head < len(closed):
            # every thread is busy until f; arrivals before f may close or be rejected
            arrivals_until(f)
            done = f + full_s
            heapreplace(threads, done)
            start_append(closed[closed_head])
            size_append(big_b)
            done_append(done)
            closed_head += 1
            continue
        if open_n == 0:
            if i >= n:
                break
            o_s, open_n, open_t = i, 1, arr[i]
            i += 1
        ready = open_t + timeout_s
        fill_idx = o_s + big_b - 1
        full_t = arr[fill_idx] if fill_idx < n else inf
        if f <= full_t <= ready:
            # the arrival that fills the batch finds a free thread: dispatched on arrival
            if i <= fill_idx:
                i = fill_idx + 1
            open_n = big_b
            d = full_t
        else:
            d = ready if ready < full_t else full_t
            if f > d:
                d = f
            if i < n and arr[i] < d:
                arrivals_until(d)
                if closed_head < len(closed):
                    continue  # a full batch was closed meanwhile; it goes first at f
        done = d + svc[open_n]
        heapreplace(threads, done)
        start_append(o_s)
        size_append(open_n)
        done_append(done)
        open_n = 0

    arr_np = np.asarray(arrivals_s, dtype=np.float64)
    latency_ms = np.full(n, np.nan)
    rejected = np.zeros(n, dtype=np.bool_)
    sizes = np.asarray(b_size, dtype=np.int64)
    busy_s = float(np.asarray(svc)[sizes].sum()) if sizes.size else 0.0
    if sizes.size:
        starts = np.asarray(b_start, dtype=np.int64)
        offsets = np.cumsum(sizes) - sizes
        idx = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(offsets, sizes) + np.repeat(starts, sizes)
        latency_ms[idx] = (np.repeat(np.asarray(b_done), sizes) - arr_np[idx]) * 1000.0
    for lo, hi in zip(rej_lo, rej_hi, strict=True):
        rejected[lo:hi] = True
    if n:
        end = max(arr[-1], max(b_done) if b_done else arr[-1])
        duration_s = end - arr[0]
    else:
        duration_s = 0.0
    return ReplicaRun(latency_ms, rejected, sizes, busy_s, duration_s, service.servers(params))
