"""A smaller run of benchmarks/fault_matrix.py: every bad column reads 0, and the counters count.

The matrix drives the real loop, actuator, elector, adapter and KEDA scaler through faults; here a
few of each group run for 2 ticks. The counters are checked to be able to fail (a logged
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


async def test_small_fault_matrix_has_no_bad_counts() -> None:
    rows = await fm.run_matrix(SMALL, warmup=2, ticks=2)
    assert sorted(r.fault for r in rows) == sorted(SMALL)
    for r in rows:
        assert r.ticks == 2
        assert r.ok, {c: getattr(r, c) for c in fm.Row.BAD}
        assert r.max_tick_s < fm.PERIOD_S  # every tick fits its decision period


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
    assert len(names) == len(set(names)) >= 25
    assert {f.group for f in fm.FAULTS} == {"prometheus", "kubernetes", "spec"}


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
