"""Request-level serving (autoscaler/sim/reqlevel.py): decision boundaries and routing.

A replay is served one decision period at a time; each pod's scheduler state must cross the
boundary whole, so where the periods fall changes no request's latency. Routing is kube-proxy's
per-request random choice by default (reproducible for a seed), round robin on request.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.cli import main
from autoscaler.core.capacity import CapacityModel
from autoscaler.sim import engine
from autoscaler.sim.cluster import Pod
from autoscaler.sim.reqlevel import RequestServer
from autoscaler.sim.timeline import Timeline
from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec, TargetRef

SPEC = ServingAutoscalerSpec(name="t", target=TargetRef("ns", "d", "m"))  # ResNet-50 / T4, p99 <= 100 ms
MODEL = CapacityModel(SPEC.profile)
CAP_RPS = MODEL.capacity_at_slo_rps(SPEC.batching.initial, SPEC.slo)


def poisson_arrivals(rate_rps: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rate_rps)
    return np.sort(np.repeat(np.arange(len(rate_rps)), counts) + rng.random(int(counts.sum())))


def serve(
    arrivals: np.ndarray,
    n_s: int,
    cuts: list[int],
    ready_at: list[tuple[int, int, list[Pod]]],
    *,
    routing: str = "random",
    seed: int = 0,
) -> tuple[RequestServer, Timeline]:
    """Serve [0, n_s) in periods cut at `cuts`; `ready_at` gives the ready pods per second range."""
    tl = Timeline(preroll_s=0, n_s=n_s, start_s=0.0)
    rs = RequestServer(MODEL.service, SPEC.slo, arrivals, routing=routing, seed=seed)
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < n_s), n_s]
    for t0, t1 in zip(bounds, bounds[1:], strict=False):
        segs = [(max(s0, t0), min(s1, t1), pods) for s0, s1, pods in ready_at if max(s0, t0) < min(s1, t1)]
        rs.serve(tl, t0, t1, segs)
        tl.filled = t1
    rs.drain(tl)
    return rs, tl


def attainment(rs: RequestServer) -> float:
    return float(np.mean(rs.all_latencies_ms() <= SPEC.slo.latency_ms))


def test_a_burst_cut_into_decision_periods_keeps_its_backlog() -> None:
    """The issue's case: one pod, 60 s, a 10 s burst at 500 rps over 150 rps. Re-simulating the
    carried requests on a fresh replica at each boundary lost the backlog: 57.5 % within 100 ms in
    one piece, 60.2 % in 15 s pieces, 61.2 % in 2 s pieces. Now every cut gives the same requests
    the same latencies."""
    rate = np.full(60, 150.0)
    rate[22:32] = 500.0
    arrivals = poisson_arrivals(rate, 0)
    pod = [(0, 60, [Pod(0, -10.0, -10, SPEC.batching.initial)])]
    whole, tl_whole = serve(arrivals, 60, [], pod)
    assert 0.5 < attainment(whole) < 0.65
    for piece_s in (15, 2):
        cut, tl = serve(arrivals, 60, list(range(piece_s, 60, piece_s)), pod)
        np.testing.assert_array_equal(cut.all_latencies_ms(), whole.all_latencies_ms())
        np.testing.assert_array_equal(tl.within_slo, tl_whole.within_slo)
        np.testing.assert_array_equal(tl.p99_ms, tl_whole.p99_ms)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    load=st.floats(0.3, 1.6),
    cuts=st.lists(st.integers(1, 39), max_size=10),
    routing=st.sampled_from(["random", "round-robin"]),
    small_queue=st.booleans(),
)
def test_cutting_the_window_anywhere_changes_nothing(
    seed: int, load: float, cuts: list[int], routing: str, small_queue: bool
) -> None:
    """Three pods, one deleted at 25 s (it drains), one ready at 12 s; overload rejects when the
    queue is short. Latencies, rejections, per-second columns and busy time are the same however
    the 40 s are cut into periods."""
    params = BatchingParams(max_enqueued_batches=2) if small_queue else SPEC.batching.initial
    a, b, c = (Pod(i, -10.0, -10, params) for i in range(3))
    ready_at = [(0, 12, [a, b]), (12, 25, [a, b, c]), (25, 40, [a, c])]
    rate = np.full(40, 2 * load * CAP_RPS)
    rate[5:9] *= 2.5
    arrivals = poisson_arrivals(rate, seed % 1000)
    whole, tl_whole = serve(arrivals, 40, [], ready_at, routing=routing, seed=seed)
    cut, tl = serve(arrivals, 40, cuts, ready_at, routing=routing, seed=seed)
    lat = whole.all_latencies_ms()
    assert not np.isnan(lat).any() and len(lat) == len(arrivals)
    np.testing.assert_array_equal(cut.all_latencies_ms(), lat)
    for col in ("arrivals", "rejected", "within_slo", "latency_q_ms", "served_latency_q_ms", "p99_ms"):
        np.testing.assert_array_equal(getattr(tl, col), getattr(tl_whole, col), err_msg=col)
    # busy seconds of the ready pods' batches: the per-period mean times the ready server-seconds
    servers = np.array([2.0] * 12 + [3.0] * 13 + [2.0] * 15)
    assert float((tl.busy * servers).sum()) == pytest.approx(float((tl_whole.busy * servers).sum()), rel=1e-9)
    if small_queue and load > 1.2:
        assert np.isinf(lat).any(), "an overloaded short queue must reject"


def many_pods_p99_ms(routing: str, seed: int) -> float:
    pods = [Pod(i, -10.0, -10, SPEC.batching.initial) for i in range(30)]
    arrivals = poisson_arrivals(np.full(30, 0.7 * CAP_RPS * len(pods)), 1)
    rs, _ = serve(arrivals, 30, [15], [(0, 30, pods)], routing=routing, seed=seed)
    return float(np.quantile(rs.all_latencies_ms(), 0.99, method="higher"))


def test_random_routing_is_reproducible_and_burstier_than_round_robin() -> None:
    """30 pods at 70 % of their SLO capacity: per-pod arrivals are Poisson under random routing
    (kube-proxy) but Erlang-30 under round robin, whose p99 is half (45 vs 23 ms)."""
    rand = many_pods_p99_ms("random", seed=5)
    assert many_pods_p99_ms("random", seed=5) == rand
    assert many_pods_p99_ms("random", seed=6) != rand
    rr = many_pods_p99_ms("round-robin", seed=5)
    assert rr == many_pods_p99_ms("round-robin", seed=6), "round robin draws nothing"
    assert rand > 1.3 * rr


def test_routing_must_be_known() -> None:
    with pytest.raises(ValueError, match="routing"):
        RequestServer(MODEL.service, SPEC.slo, np.zeros(0), routing="least-connections")
    with pytest.raises(ValueError, match="routing"):
        engine.run_rates(np.ones(60), SPEC, "static-peak", routing="round_robin")


def test_simulate_command_routes_as_told(tmp_path: Path) -> None:
    """`simulate --fidelity request --routing`: the summary records the routing; same seed, same run."""
    rows = {}
    for routing in ("round-robin", "random", "random"):
        out = tmp_path / routing
        common = ["simulate", "azure-functions-8h", "--duration-s", "120", "--policies", "static-peak"]
        flags = ["--fidelity", "request", "--routing", routing, "--no-plots", "--no-timelines", "--out", str(out)]
        assert main([*common, *flags]) == 0
        row = json.loads((out / "summary.json").read_text())[0]
        assert row["routing"] == routing and row["fidelity"] == "request"
        if routing in rows:
            assert row["p99_ms"] == rows[routing]["p99_ms"]
        rows[routing] = row
    assert rows["random"]["requests"] == rows["round-robin"]["requests"] > 0
    with pytest.raises(SystemExit):
        main(["simulate", "azure-functions-8h", "--routing", "least-connections"])
