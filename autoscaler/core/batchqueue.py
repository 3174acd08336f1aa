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

Resumable: `ReplicaState` is everything a replica holds at a time horizon H — each parallel
server's busy-until time, the closed batches waiting for a thread, the open batch (its first
request's arrival time starts the timeout), and the arrival times of the requests in them.
`advance_replica(state, arrivals, until_s=H)` takes the arrivals in [previous H, H), runs every
scheduling event before H and stops at the first one at or after H (whether the open batch fills
before its deadline depends on arrivals not yet given). A request's latency is final when its
batch is dispatched (service times are deterministic), so dispatched requests leave the state
and are reported in that step; a thread keeps only its busy-until time. Serving [t0, t2) in one
call and as [t0, t1) then [t1, t2) gives the same latency for every request, the same rejections
and batches (tested); `simulate_replica` is one call with H = infinity.

Speed: the loop runs per *batch*, not per request — arrivals joining a batch are found with
bisection on the sorted arrival array — and uses only floats, ints and a heap of thread free
times, so it pushes millions of requests per second (benchmarks/capacity_model.py).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from dataclasses import dataclass, field

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


def _as_sorted_arrivals(arrivals_s: FloatArray, after_s: float = -math.inf, before_s: float = math.inf) -> list[float]:
    arr = np.asarray(arrivals_s, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"arrivals_s: expected a 1-D array of times in seconds (got shape {arr.shape})")
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError("arrivals_s: expected finite times in seconds (got NaN or inf)")
    if arr.size > 1 and np.any(np.diff(arr) < 0):
        raise ValueError("arrivals_s: expected non-decreasing arrival times")
    if arr.size and (arr[0] < after_s or arr[-1] >= before_s):
        raise ValueError(
            f"arrivals_s: expected times in [{after_s}, {before_s}) — at or after the state's horizon and "
            f"before until_s (got {arr[0]} .. {arr[-1]})"
        )
    return arr.tolist()  # type: ignore[no-any-return]


@dataclass(eq=False)
class ReplicaState:
    """One replica's scheduler state at `horizon_s`, resumable by `advance_replica` (mutable).

    Every request given and not yet dispatched or rejected is held here, in arrival order:
    `pending_s[k]` is its arrival time, `tags[k]` the caller's id for it. Members of a batch
    are consecutive entries; rejected requests between waiting batches stay in the list (their
    outcome was already reported) until the batches before them leave.
    """

    params: BatchingParams
    service_table_s: list[float]  # S(b) for b = 0..max_batch_size, seconds
    threads: list[float]  # heap of the busy-until times of the parallel servers
    horizon_s: float = -math.inf  # every arrival before this has been given
    pending_s: list[float] = field(default_factory=list)
    tags: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)  # first entry of each closed (full) batch, FIFO
    open_start: int = 0  # first entry of the open batch
    open_n: int = 0  # requests in the open batch (0: none)
    open_t: float = 0.0  # arrival time of its first request (the timeout runs from here)
    given: int = 0  # arrivals given so far (the default tags number them)

    @classmethod
    def idle(cls, params: BatchingParams, service: ServiceTime) -> ReplicaState:
        """A replica that has served nothing: every thread free, no queue."""
        validate_params(params)
        return cls(params, service.table_s(params.max_batch_size), [-math.inf] * service.servers(params))

    @property
    def queued(self) -> int:
        """Requests admitted and waiting for a thread (closed batches + the open batch)."""
        big_b = self.params.max_batch_size
        return len(self.closed) * big_b + self.open_n

    def is_idle(self) -> bool:
        """Nothing queued and every thread free by the horizon: behaves as `idle()` from here on."""
        return self.queued == 0 and max(self.threads) <= self.horizon_s


@dataclass(frozen=True)
class ReplicaStep:
    """What one `advance_replica` call resolved: requests dispatched (latency final) or rejected."""

    tags: IntArray  # caller's id of each resolved request
    latency_ms: FloatArray  # arrival -> completion; NaN for rejected
    rejected: BoolArray
    batch_sizes: IntArray  # per batch dispatched in this step, in dispatch order
    busy_s: float  # service seconds of those batches


def _run(
    st: ReplicaState, new: list[float], until_s: float
) -> tuple[list[float], list[int], list[int], list[float], list[int], list[int]]:
    """Advance `st` over the new arrivals up to `until_s` (in place).

    Returns the merged arrival list (pending + new) and, indexed into it, the dispatched
    batches (first entry, size, completion time) and the rejected ranges [lo, hi).
    """
    arr = st.pending_s + new if st.pending_s else new
    n = len(arr)
    big_b = st.params.max_batch_size
    max_batches = st.params.max_enqueued_batches
    timeout_s = st.params.batch_timeout_us * 1e-6
    svc = st.service_table_s
    threads = st.threads
    inf = math.inf

    # Members of a batch are always consecutive entries (rejections happen only between batches).
    b_start: list[int] = []
    b_size: list[int] = []
    b_done: list[float] = []
    rej_lo: list[int] = []  # rejected entry ranges [lo, hi)
    rej_hi: list[int] = []
    closed = st.closed  # start entries of closed (always full) batches waiting, FIFO
    closed_head = 0
    i = len(st.pending_s)  # next arrival not yet seen (every pending entry was admitted)
    o_s, open_n, open_t = st.open_start, st.open_n, st.open_t

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
            if f >= until_s:
                break  # the next event is past the horizon
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
        full_t = arr[fill_idx] if fill_idx < n else inf  # an arrival not given yet is >= until_s
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
            if d >= until_s:
                break  # dispatch at or after the horizon: arrivals from until_s on may fill it first
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
    # the next event is at or after until_s: no thread frees and nothing is dispatched before it
    arrivals_until(until_s)
    st.horizon_s = until_s
    # keep the entries from the oldest one still queued on (none with until_s = inf)
    cut = i
    if closed_head < len(closed):
        cut = closed[closed_head]
    elif open_n:
        cut = o_s
    st.pending_s = arr[cut:]
    st.closed = [c - cut for c in closed[closed_head:]]
    st.open_start, st.open_n, st.open_t = o_s - cut, open_n, open_t
    return arr, b_start, b_size, b_done, rej_lo, rej_hi


def _batch_members(b_start: list[int], b_size: list[int]) -> tuple[IntArray, IntArray]:
    """Entry index of every dispatched request, and its batch's size array."""
    sizes = np.asarray(b_size, dtype=np.int64)
    starts = np.asarray(b_start, dtype=np.int64)
    offsets = np.cumsum(sizes) - sizes
    idx = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(offsets, sizes) + np.repeat(starts, sizes)
    return idx, sizes


def advance_replica(
    state: ReplicaState,
    arrivals_s: FloatArray,
    *,
    until_s: float,
    tags: IntArray | None = None,
) -> ReplicaStep:
    """Give `state` the arrivals in [state.horizon_s, until_s) and run it up to `until_s` (in place).

    `tags` (default: running request numbers) name the requests in the returned step. With
    `until_s = math.inf` and no arrivals the replica drains: everything it holds is dispatched.
    """
    if not until_s > state.horizon_s:
        raise ValueError(f"until_s: expected a time after the state's horizon {state.horizon_s} (got {until_s})")
    new = _as_sorted_arrivals(arrivals_s, state.horizon_s, until_s)
    if tags is None:
        new_tags: list[int] = list(range(state.given, state.given + len(new)))
    else:
        new_tags = np.asarray(tags, dtype=np.int64).tolist()
        if len(new_tags) != len(new):
            raise ValueError(f"tags: expected one per arrival ({len(new)}), got {len(new_tags)}")
    all_tags = state.tags + new_tags if state.tags else new_tags
    state.given += len(new)
    arr, b_start, b_size, b_done, rej_lo, rej_hi = _run(state, new, until_s)
    state.tags = all_tags[len(arr) - len(state.pending_s) :]
    tag_np = np.asarray(all_tags, dtype=np.int64)
    idx, sizes = _batch_members(b_start, b_size)
    rej_idx = (
        np.concatenate([np.arange(lo, hi, dtype=np.int64) for lo, hi in zip(rej_lo, rej_hi, strict=True)])
        if rej_lo
        else np.zeros(0, dtype=np.int64)
    )
    arr_np = np.asarray(arr, dtype=np.float64)
    lat = (np.repeat(np.asarray(b_done, dtype=np.float64), sizes) - arr_np[idx]) * 1000.0
    busy_s = float(np.asarray(state.service_table_s)[sizes].sum()) if sizes.size else 0.0
    return ReplicaStep(
        tags=np.concatenate((tag_np[idx], tag_np[rej_idx])),
        latency_ms=np.concatenate((lat, np.full(len(rej_idx), np.nan))),
        rejected=np.concatenate((np.zeros(len(idx), dtype=np.bool_), np.ones(len(rej_idx), dtype=np.bool_))),
        batch_sizes=sizes,
        busy_s=busy_s,
    )


def simulate_replica(arrivals_s: FloatArray, params: BatchingParams, service: ServiceTime) -> ReplicaRun:
    """Run the arrivals (sorted, seconds) through one idle replica's batch scheduler, to the end."""
    state = ReplicaState.idle(params, service)
    arr = _as_sorted_arrivals(arrivals_s)
    n = len(arr)
    _, b_start, b_size, b_done, rej_lo, rej_hi = _run(state, arr, math.inf)
    arr_np = np.asarray(arrivals_s, dtype=np.float64)
    latency_ms = np.full(n, np.nan)
    rejected = np.zeros(n, dtype=np.bool_)
    sizes = np.asarray(b_size, dtype=np.int64)
    busy_s = float(np.asarray(state.service_table_s)[sizes].sum()) if sizes.size else 0.0
    if sizes.size:
        idx, _ = _batch_members(b_start, b_size)
        latency_ms[idx] = (np.repeat(np.asarray(b_done), sizes) - arr_np[idx]) * 1000.0
    for lo, hi in zip(rej_lo, rej_hi, strict=True):
        rejected[lo:hi] = True
    if n:
        end = max(arr[-1], max(b_done) if b_done else arr[-1])
        duration_s = end - arr[0]
    else:
        duration_s = 0.0
    return ReplicaRun(latency_ms, rejected, sizes, busy_s, duration_s, service.servers(params))
