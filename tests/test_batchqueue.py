"""Tests of the exact batch-scheduler simulator (autoscaler/core/batchqueue.py).

Three kinds of evidence: hand-worked scenarios of TF Serving's scheduling rules, agreement with
a deliberately naive event-by-event reference implementation on random inputs (the fast one
jumps over arrivals with bisection), and closed-form queueing theory: with max_batch_size=1
and no timeout the replica is an M/D/c queue. Resuming a replica's state at any horizon gives
the one-call run exactly.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.batchqueue import ReplicaState, advance_replica, simulate_replica
from autoscaler.core.capacity import ServiceTime
from autoscaler.spec.types import BatchingParams, ServiceProfile

# Scheduler mechanics with `num_batch_threads` real parallel servers (a device that runs several
# batches at once); the one-GPU default (device_parallelism=1) is checked separately below.
SVC = ServiceTime(ServiceProfile(device_parallelism=64))
ONE_GPU = ServiceTime(ServiceProfile())
S1 = SVC.s(1)


def mdc_mean_wait_s(rate_rps: float, service_s: float, servers: int, states: int = 600) -> float:
    """Exact mean waiting time of M/D/c, from the embedded Markov chain at multiples of D.

    For M/D/c, N(t + D) = max(N(t) - c, 0) + A(t, t + D]: every customer in service at t has
    left by t + D and nobody who starts later has. So the number in system at any time has the
    stationary law of that chain (Crommelin 1932; Tijms, "A First Course in Stochastic
    Models", 2003, §9.6). Lq = E[(N - c)^+] and Wq = Lq / λ by Little's law.
    """
    a = rate_rps * service_s
    j = np.arange(states)
    pmf = np.exp(-a + j * math.log(a) - np.array([math.lgamma(x + 1.0) for x in j]))
    trans = np.zeros((states, states))
    for n in range(states):
        base = max(n - servers, 0)
        width = states - base
        trans[n, base:] = pmf[:width]
        trans[n, states - 1] += 1.0 - pmf[:width].sum()
    system = trans.T - np.eye(states)
    system[-1, :] = 1.0
    rhs = np.zeros(states)
    rhs[-1] = 1.0
    pi = np.linalg.solve(system, rhs)
    return float((pi * np.maximum(j - servers, 0)).sum() / rate_rps)


def poisson_arrivals(rate_rps: float, n: int, seed: int) -> np.ndarray:
    gaps = np.random.default_rng(seed).exponential(1.0 / rate_rps, n)
    return np.cumsum(gaps)


def test_markov_chain_reproduces_pollaczek_khinchine() -> None:
    rho = 0.7
    expected = rho * S1 / (2 * (1 - rho))
    assert mdc_mean_wait_s(rho / S1, S1, 1) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("servers", [1, 2, 4])
def test_mdc_mean_wait_matches_theory(servers: int) -> None:
    rho = 0.6
    rate = rho * servers / S1
    arrivals = poisson_arrivals(rate, 400_000, seed=servers)
    run = simulate_replica(arrivals, BatchingParams(1, 0, servers, 10**9), SVC)
    wait_s = float(np.mean(run.latency_ms)) / 1000.0 - S1
    # Pollaczek–Khinchine for M/D/1, the exact embedded chain for c > 1
    theory = rho * S1 / (2 * (1 - rho)) if servers == 1 else mdc_mean_wait_s(rate, S1, servers)
    assert wait_s == pytest.approx(theory, rel=0.02)
    assert not run.rejected.any()
    assert run.busy_fraction == pytest.approx(rho, rel=0.02)


def test_lone_request_waits_for_the_timeout() -> None:
    params = BatchingParams(32, 2_000, 4, 100)
    run = simulate_replica(np.array([0.0, 1.0]), params, SVC)
    assert run.latency_ms.tolist() == pytest.approx([2.0 + SVC.ms(1)] * 2)
    assert run.batch_sizes.tolist() == [1, 1]


def test_requests_within_the_timeout_share_a_batch() -> None:
    params = BatchingParams(32, 2_000, 4, 100)
    run = simulate_replica(np.array([0.0, 0.0005, 0.0015]), params, SVC)
    assert run.batch_sizes.tolist() == [3]
    done_ms = 2.0 + SVC.ms(3)
    assert run.latency_ms.tolist() == pytest.approx([done_ms, done_ms - 0.5, done_ms - 1.5])


def test_full_batch_leaves_before_the_timeout() -> None:
    params = BatchingParams(2, 50_000, 1, 100)
    run = simulate_replica(np.array([0.0, 0.001]), params, SVC)
    assert run.batch_sizes.tolist() == [2]
    assert run.latency_ms[0] == pytest.approx(1.0 + SVC.ms(2))


def test_open_batch_keeps_filling_while_threads_are_busy() -> None:
    params = BatchingParams(32, 0, 1, 100)
    arrivals = np.array([0.0, 0.001, 0.002, 0.003])
    run = simulate_replica(arrivals, params, SVC)
    assert run.batch_sizes.tolist() == [1, 3]  # the three later ones wait for the thread together
    second_done_ms = SVC.ms(1) + SVC.ms(3)
    assert run.latency_ms[1:].tolist() == pytest.approx(
        [second_done_ms - 1.0, second_done_ms - 2.0, second_done_ms - 3.0]
    )
    assert run.busy_s == pytest.approx(SVC.s(1) + SVC.s(3))


@pytest.mark.parametrize(
    ("max_enqueued", "expected_rejected"), [(1, [False, False, True, True]), (2, [False] * 3 + [True])]
)
def test_queue_bound_rejects_like_tf_serving(max_enqueued: int, expected_rejected: list[bool]) -> None:
    # B=1, one thread busy with the first request: the 2nd fills the open batch; the 3rd needs a
    # new batch, allowed only if the queue holds fewer than max_enqueued_batches batches.
    params = BatchingParams(1, 0, 1, max_enqueued)
    run = simulate_replica(np.array([0.0, 0.001, 0.002, 0.003]), params, SVC)
    assert run.rejected.tolist() == expected_rejected
    assert np.isnan(run.latency_ms[run.rejected]).all()
    assert int(run.batch_sizes.sum()) == int((~run.rejected).sum())


def test_overload_rejects_the_excess() -> None:
    params = BatchingParams(8, 1_000, 2, 5)
    mu = 2 * 8 / SVC.s(8)
    run = simulate_replica(poisson_arrivals(1.5 * mu, 60_000, seed=3), params, SVC)
    served_rps = (~run.rejected).sum() / run.duration_s
    assert served_rps == pytest.approx(mu, rel=0.03)
    assert run.busy_fraction > 0.97


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="arrivals_s"):
        simulate_replica(np.array([1.0, 0.5]), BatchingParams(), SVC)
    with pytest.raises(ValueError, match="max_batch_size"):
        simulate_replica(np.array([1.0]), BatchingParams(max_batch_size=0), SVC)
    empty = simulate_replica(np.array([]), BatchingParams(), SVC)
    assert empty.latency_ms.size == 0 and empty.duration_s == 0.0


def reference_replica(arrivals: list[float], params: BatchingParams) -> tuple[list[float], list[int]]:
    """Naive event-by-event transcription of SharedBatchScheduler (Schedule / ScheduleBatch)."""
    big_b, timeout_s = params.max_batch_size, params.batch_timeout_us * 1e-6
    free_at = [0.0] * params.num_batch_threads
    closed: deque[list[int]] = deque()
    open_batch: list[int] = []
    open_t = 0.0
    latency = [math.nan] * len(arrivals)
    sizes: list[int] = []

    def try_schedule(now: float) -> None:
        nonlocal open_batch
        for k in range(len(free_at)):
            if free_at[k] > now:
                continue
            batch: list[int] | None = None
            if closed:
                batch = closed.popleft()
            elif open_batch and (len(open_batch) >= big_b or now >= open_t + timeout_s):
                batch, open_batch = open_batch, []
            if batch is None:
                return
            done = now + SVC.s(len(batch))
            free_at[k] = done
            sizes.append(len(batch))
            for idx in batch:
                latency[idx] = (done - arrivals[idx]) * 1000.0

    i = 0
    now = 0.0
    while i < len(arrivals) or open_batch or closed:
        candidates = [t for t in free_at if t > now]
        if open_batch and open_t + timeout_s > now:
            candidates.append(open_t + timeout_s)
        next_internal = min(candidates) if candidates else math.inf
        if i < len(arrivals) and arrivals[i] < next_internal:
            now = arrivals[i]
            try_schedule(now)  # threads freed / timeouts reached exactly now
            if len(open_batch) >= big_b:
                if len(closed) + 1 >= params.max_enqueued_batches:
                    i += 1
                    continue
                closed.append(open_batch)
                open_batch = []
            if not open_batch:
                open_t = now
            open_batch.append(i)
            i += 1
        else:
            now = next_internal
        try_schedule(now)
    return latency, sizes


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 300),
    load=st.floats(0.05, 2.5),
    big_b=st.integers(1, 12),
    timeout_us=st.sampled_from([0, 500, 2_000, 10_000]),
    threads=st.integers(1, 4),
    max_enqueued=st.integers(1, 4),
)
def test_fast_simulator_matches_naive_reference(
    seed: int, n: int, load: float, big_b: int, timeout_us: int, threads: int, max_enqueued: int
) -> None:
    params = BatchingParams(big_b, timeout_us, threads, max_enqueued)
    rate = load * threads * big_b / SVC.s(big_b)
    arrivals = poisson_arrivals(rate, n, seed)
    run = simulate_replica(arrivals, params, SVC)
    ref_latency, ref_sizes = reference_replica(arrivals.tolist(), params)
    np.testing.assert_allclose(run.latency_ms, np.array(ref_latency), rtol=1e-9, atol=1e-9)
    assert sorted(run.batch_sizes.tolist()) == sorted(ref_sizes)
    assert run.busy_s == pytest.approx(sum(SVC.s(b) for b in ref_sizes))


def test_one_gpu_runs_one_batch_at_a_time_whatever_the_thread_count() -> None:
    """The profile times one batch alone: on one GPU extra threads add no device throughput."""
    arrivals = np.arange(4_000) / 2_000.0  # 2,000 rps, far beyond one T4's ~430 rps at batch 32
    params = BatchingParams(32, 0, 8, 1_000_000)
    run = simulate_replica(arrivals, params, ONE_GPU)
    served = int((~run.rejected).sum())
    throughput_rps = served / (np.nanmax(arrivals[~run.rejected] + run.latency_ms[~run.rejected] / 1000.0))
    assert throughput_rps <= 32 / ONE_GPU.s(32) * 1.02
    assert run.busy_fraction <= 1.0 + 1e-9 and run.num_batch_threads == 1


def _serve_in_pieces(
    arrivals: np.ndarray, params: BatchingParams, service: ServiceTime, cuts_s: list[float]
) -> tuple[np.ndarray, np.ndarray, list[int], float, ReplicaState]:
    """Serve `arrivals` cut at `cuts_s` (then drained); per-request latency and rejection by tag."""
    state = ReplicaState.idle(params, service)
    latency = np.full(len(arrivals), -1.0)
    rejected = np.zeros(len(arrivals), dtype=bool)
    sizes: list[int] = []
    busy_s = 0.0
    lo = 0
    for until in [*cuts_s, math.inf]:
        hi = int(np.searchsorted(arrivals, until, side="left"))
        step = advance_replica(state, arrivals[lo:hi], until_s=until, tags=np.arange(lo, hi))
        lo = hi
        assert not (latency[step.tags] != -1.0).any(), "a request resolved twice"
        latency[step.tags] = step.latency_ms
        rejected[step.tags] = step.rejected
        sizes += step.batch_sizes.tolist()
        busy_s += step.busy_s
    return latency, rejected, sizes, busy_s, state


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 300),
    load=st.floats(0.05, 2.5),
    big_b=st.integers(1, 12),
    timeout_us=st.sampled_from([0, 500, 2_000, 10_000]),
    threads=st.integers(1, 4),
    max_enqueued=st.integers(1, 4),
    one_gpu=st.booleans(),
    grid=st.booleans(),
    fractions=st.lists(st.floats(0.0, 1.0), max_size=8),
    on_events=st.lists(st.tuples(st.integers(0, 299), st.sampled_from([0.0, 1e-4, 5e-4])), max_size=4),
)
def test_cutting_a_window_at_any_horizon_changes_nothing(
    seed: int,
    n: int,
    load: float,
    big_b: int,
    timeout_us: int,
    threads: int,
    max_enqueued: int,
    one_gpu: bool,
    grid: bool,
    fractions: list[float],
    on_events: list[tuple[int, float]],
) -> None:
    """Serving [t0, t2) in one call equals [t0, t1) then [t1, t2), bit for bit, wherever t1 falls:
    inside a burst, on (or just before) an arrival, a timeout deadline, a thread's busy-until time."""
    service = ONE_GPU if one_gpu else SVC
    params = BatchingParams(big_b, timeout_us, threads, max_enqueued)
    rate = load * service.servers(params) * big_b / service.s(big_b)
    arrivals = poisson_arrivals(rate, n, seed)
    if grid:  # ties: many requests at the same instant, cuts exactly on them
        arrivals = np.round(arrivals / 5e-4) * 5e-4
    span = float(arrivals[-1]) * 1.1 + 1e-3
    whole = simulate_replica(arrivals, params, service)
    cuts = {f * span for f in fractions}
    for k, before_s in on_events:
        a = float(arrivals[k % n])
        done = a + float(np.nan_to_num(whole.latency_ms[k % n])) / 1000.0  # a thread frees here
        cuts |= {a - before_s, a + timeout_us * 1e-6 - before_s, done - before_s}
    cuts_s = sorted(c for c in cuts if c > 0.0)
    latency, rejected, sizes, busy_s, state = _serve_in_pieces(arrivals, params, service, cuts_s)
    np.testing.assert_array_equal(rejected, whole.rejected)
    np.testing.assert_array_equal(latency[~rejected], whole.latency_ms[~whole.rejected])
    assert np.isnan(latency[rejected]).all()
    assert sizes == whole.batch_sizes.tolist()
    assert busy_s == pytest.approx(whole.busy_s, rel=1e-12)
    assert state.is_idle() and state.pending_s == [] and state.tags == []


def test_the_backlog_crosses_a_boundary_with_its_open_batch_and_busy_threads() -> None:
    """Hand-worked: one thread busy past the boundary, an open batch whose timeout falls after it."""
    params = BatchingParams(max_batch_size=2, batch_timeout_us=10_000, num_batch_threads=1, max_enqueued_batches=8)
    s2 = SVC.s(2)
    state = ReplicaState.idle(params, ONE_GPU)
    first = advance_replica(state, np.array([0.0, 0.0]), until_s=0.005)  # full batch, dispatched at 0
    assert first.batch_sizes.tolist() == [2] and first.latency_ms.tolist() == pytest.approx([s2 * 1e3] * 2)
    late = advance_replica(state, np.array([0.006]), until_s=0.010)  # opens a batch: deadline 0.016
    assert late.tags.size == 0 and state.open_n == 1 and state.pending_s == [0.006]
    assert state.threads == [pytest.approx(s2)]  # busy past the horizon
    # the thread frees at S(2) = 9.3 ms; the request at 12 ms fills the open batch, which goes at once
    last = advance_replica(state, np.array([0.012]), until_s=math.inf)
    assert sorted(last.tags.tolist()) == [2, 3]
    done = max(s2, 0.012) + s2
    assert sorted(last.latency_ms.tolist()) == pytest.approx(sorted([(done - 0.006) * 1e3, (done - 0.012) * 1e3]))


def test_resuming_rejects_arrivals_before_the_horizon_and_bad_tags() -> None:
    state = ReplicaState.idle(BatchingParams(), SVC)
    advance_replica(state, np.array([0.5]), until_s=1.0)
    with pytest.raises(ValueError, match="arrivals_s"):
        advance_replica(state, np.array([0.9]), until_s=2.0)
    with pytest.raises(ValueError, match="arrivals_s"):
        advance_replica(state, np.array([2.5]), until_s=2.0)
    with pytest.raises(ValueError, match="until_s"):
        advance_replica(state, np.array([]), until_s=1.0)
    with pytest.raises(ValueError, match="tags"):
        advance_replica(state, np.array([1.5]), until_s=2.0, tags=np.array([1, 2]))


def test_a_batch_due_exactly_at_the_horizon_waits_for_the_arrival_there() -> None:
    """The open batch's deadline is the horizon and the next piece's first arrival lands exactly
    on it and fills the batch: one batch of two, as in one call, not a batch of one at the deadline."""
    params = BatchingParams(max_batch_size=2, batch_timeout_us=500, num_batch_threads=1, max_enqueued_batches=8)
    horizon = 0.25 + params.batch_timeout_us * 1e-6
    whole = simulate_replica(np.array([0.25, horizon]), params, ONE_GPU)
    assert whole.batch_sizes.tolist() == [2]
    state = ReplicaState.idle(params, ONE_GPU)
    assert advance_replica(state, np.array([0.25]), until_s=horizon).tags.size == 0
    step = advance_replica(state, np.array([horizon]), until_s=math.inf)
    assert step.batch_sizes.tolist() == [2]
    np.testing.assert_array_equal(step.latency_ms[np.argsort(step.tags)], whole.latency_ms)
