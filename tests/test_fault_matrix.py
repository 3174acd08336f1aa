"""A smaller run of benchmarks/fault_matrix.py: every bad column reads 0, and the counters count.

The matrix drives the real loop, actuator, elector, adapter and KEDA scaler through faults; here a
few of each group run for 2 ticks, and every hostile-client row plus the leader race at 1/20 of
the benchmark's request counts (at least one request each). The counters are checked to be able to fail (a logged
traceback and a Deployment write after the lease ended are counted), so a 0 is a measurement.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fault_matrix as fm

SMALL = [
    "prom-down",
    "prom-nan",
    "prom-absurd",
    "k8s-409",
    "k8s-403-writes",
    "k8s-lease-lost-in-retry",
    "k8s-deployment-deleted",
    "spec-laughs",
    "spec-deep",
    "spec-cr-other-namespace",
]
EDGE = [f.name for f in fm.FAULTS if f.group in fm.EDGE_GROUPS]


async def test_small_fault_matrix_has_no_bad_counts() -> None:
    rows = await fm.run_matrix(SMALL, warmup=2, ticks=2)
    assert sorted(r.fault for r in rows) == sorted(SMALL)
    for r in rows:
        assert r.ticks == 2
        assert r.ok, {c: getattr(r, c) for c in fm.Row.BAD}
        assert r.max_tick_s < fm.PERIOD_S  # every tick fits its decision period


async def test_hostile_clients_and_racing_leaders_have_no_bad_counts() -> None:
    rows = await fm.run_matrix(EDGE, warmup=0, ticks=0, edge_scale=0.05)
    assert sorted(r.fault for r in rows) == sorted(EDGE)
    for r in rows:
        assert r.ticks >= 1
        assert r.ok, (r.fault, {c: getattr(r, c) for c in fm.Row.BAD})
        assert r.max_tick_s <= fm.fault_hostile.ANSWER_BOUND_S
    race = next(r for r in rows if r.fault == "leader-race")
    assert race.notes["handovers"] >= 1 and race.notes["deployment_writes"] >= 1  # the race did happen


async def test_the_edge_counters_can_count() -> None:
    """A legitimate client's 200 where a refusal was required is a bad answer; daemons that
    ignore the Lease write as non-holders."""
    accepted = await fm.fault_hostile._cert_case("client", (401,))(2)
    assert accepted.bad_answers == 2
    race = await fm.fault_leaders.leader_race(12, fm.SPEC, trust_lease=False)
    assert race.writes_by_non_holder > 0


def test_the_counters_can_count() -> None:
    counter = fm.TracebackCounter()
    log = logging.getLogger("fault-matrix-selftest")
    log.addHandler(counter)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
        log.error("no traceback")
    finally:
        log.removeHandler(counter)
    assert counter.count == 1


def test_every_fault_group_is_present_and_names_are_unique() -> None:
    names = [f.name for f in fm.FAULTS]
    assert len(names) == len(set(names)) >= 30
    assert {f.group for f in fm.FAULTS} == {"prometheus", "kubernetes", "spec", "hostile", "keda", "leaders"}


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
