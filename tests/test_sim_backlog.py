"""The fluid server's carried backlog (`sim/fluid.backlog_scan`): overload fills the batch queue,
a full queue rejects the excess, and the queue drains (with its wait) after the load drops."""

from __future__ import annotations

import numpy as np
import pytest
from fixed_policy import Fixed

from autoscaler.core.capacity import CapacityModel
from autoscaler.sim import engine
from autoscaler.sim.fluid import RateTable, backlog_scan, rate_table
from autoscaler.spec.types import ServingAutoscalerSpec, TargetRef

SPEC = ServingAutoscalerSpec(name="t", target=TargetRef("ns", "d", "m"), min_replicas=1, max_replicas=4)


def _table() -> RateTable:
    return rate_table(CapacityModel(SPEC.profile), SPEC.batching.initial, SPEC.slo)


def test_overload_queues_then_rejects_then_drains() -> None:
    tb = _table()
    mu, cap = tb.mu_rps, tb.queue_cap
    fill_s = int(cap // (0.5 * mu)) + 1  # seconds of 1.5 x mu until the queue is full
    arrivals = [1.5 * mu] * (fill_s + 5) + [0.8 * mu] * 200 + [0.0] * 5
    totals = [2.0 * a for a in arrivals]  # two replicas: every per-replica quantity times 2
    over = [i for i, a in enumerate(arrivals) if a > mu]
    q = backlog_scan(tb, totals, [2.0] * len(totals), over, 0.0)
    rej = dict(zip(q.idx, q.rejected, strict=True))
    # filling: nothing rejected, the queue grows by the excess (0.5 mu per replica and second)
    assert all(rej[i] == 0.0 for i in range(fill_s - 1))
    assert q.backlog_end[0] == pytest.approx(2 * 0.5 * mu)
    # full: the excess over the queue capacity is rejected (0.5 mu per replica and second)
    assert rej[fill_s + 2] == pytest.approx(2 * 0.5 * mu)
    assert q.backlog_end[fill_s + 2] == pytest.approx(2 * cap)
    # draining at 0.2 mu per second: requests wait behind the backlog, beyond the SLO at first
    first_drain = fill_s + 5
    assert q.lat0_ms[q.idx.index(first_drain)] == pytest.approx(cap / mu * 1000.0 + tb.full_batch_ms)
    assert q.lat0_ms[q.idx.index(first_drain)] > SPEC.slo.latency_ms
    assert all(rej[i] == 0.0 for i in q.idx if i >= first_drain)
    drain_s = (cap - SPEC.batching.initial.max_batch_size) / (0.2 * mu)
    assert q.idx[-1] == pytest.approx(first_drain + drain_s, abs=1.5)  # then the tables take over
    assert q.backlog_end[-1] < 2 * SPEC.batching.initial.max_batch_size + 2 * 0.2 * mu


def test_a_fleet_within_capacity_carries_no_backlog() -> None:
    tb = _table()
    q = backlog_scan(tb, [0.99 * tb.mu_rps] * 50, [1.0] * 50, [], 0.0)
    assert q.idx == []


@pytest.mark.parametrize("speculate", [True, False])
def test_the_replay_waits_behind_the_backlog_after_an_overload(speculate: bool) -> None:
    mu = _table().mu_rps
    rate = np.concatenate([np.full(60, 1.5 * mu), np.full(120, 0.8 * mu)])
    res = engine.run_rates(rate, SPEC, Fixed(1), speculate=speculate, preroll_s=60)
    tl = res.timeline
    w = tl.window()
    p50 = tl.p50_ms[w]
    within = tl.within_slo[w] / tl.arrivals[w]
    # below capacity right after the overload, yet still waiting behind its queue
    assert p50[61] > SPEC.slo.latency_ms and within[61] == 0.0
    # drained later: back to the steady state
    assert p50[-1] < SPEC.slo.latency_ms and within[-1] > 0.9
    assert float(tl.rejected[w][60:].sum()) == 0.0
