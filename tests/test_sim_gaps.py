"""Masked trace gaps are unknown load, not idle: bridged for serving, missing to policies, not scored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from autoscaler.core.types import SignalStatus
from autoscaler.sim import engine
from autoscaler.sim.report import write_report
from autoscaler.sim.scenario import REPO_ROOT
from autoscaler.sim.view import ClusterView, PolicyContext, PolicyOutput
from autoscaler.sim.workload import Trace, bridge_gaps, load_trace
from autoscaler.spec import load_spec

SPEC = load_spec(REPO_ROOT / "examples" / "resnet50-t4.yaml")
STEP_S = 60
BEFORE_MIN, GAP_MIN, AFTER_MIN = 90, 168, 60  # a 2.8 h logging outage, as in ServeGen's M-mid/M-large logs


def gapped_trace(tmp_path: Path) -> Trace:
    """~3,000 requests/s (about 10 replicas) with a 2.8 h run of zero minutes in the middle."""
    rng = np.random.default_rng(7)
    n = BEFORE_MIN + GAP_MIN + AFTER_MIN
    counts = np.round(3_000.0 * STEP_S * (1.0 + 0.05 * rng.standard_normal(n)))
    counts[BEFORE_MIN : BEFORE_MIN + GAP_MIN] = 0
    path = tmp_path / "gapped_60s.csv"
    rows = "\n".join(f"{i * STEP_S},{int(c)}" for i, c in enumerate(counts))
    path.write_text(f"t_s,requests\n{rows}\n")
    trace = load_trace(path, mask_gaps=True)
    assert int(np.isnan(trace.rate_per_second()).sum()) == GAP_MIN * STEP_S  # the loader's rule masks it
    return trace


def test_bridge_gaps_interpolates_between_the_known_neighbours() -> None:
    out = bridge_gaps(np.array([np.nan, 2.0, np.nan, np.nan, 8.0, np.nan]))
    assert out.tolist() == [2.0, 2.0, 4.0, 6.0, 8.0, 8.0]
    assert bridge_gaps(np.array([np.nan, np.nan])).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("policy", ["hpa-rps", "predictive"])
def test_a_gap_is_bridged_excluded_and_held_through(tmp_path: Path, policy: str) -> None:
    trace = gapped_trace(tmp_path)
    res = engine.run(trace, SPEC, policy)
    s, tl = res.summary, res.timeline
    w = tl.window()
    gap = slice(tl.index(BEFORE_MIN * STEP_S), tl.index((BEFORE_MIN + GAP_MIN) * STEP_S))
    assert s["gap_policy"] == "bridged+excluded" and s["gap_seconds"] == GAP_MIN * STEP_S
    # the cluster serves the bridged load through the gap ...
    assert tl.arrivals[gap].min() > 2_500.0
    assert s["gap_requests"] == pytest.approx(tl.arrivals[gap].sum(), rel=1e-9)
    # ... which is left out of the scored requests and replica-hours
    assert s["requests"] == pytest.approx(tl.arrivals[w].sum() - tl.arrivals[gap].sum(), rel=1e-9)
    assert s["replica_hours"] + s["gap_replica_hours"] == pytest.approx(tl.pods[w].sum() / 3600.0)
    # the policy saw missing data, held its fleet, and met the load when the trace came back
    assert tl.desired[gap].min() >= 9
    assert s["slo_attainment"] >= 0.999, s


def test_summary_and_report_state_the_gap_policy(tmp_path: Path) -> None:
    res = engine.run(gapped_trace(tmp_path), SPEC, "hpa-rps")
    summary = write_report([res], tmp_path / "out", timelines=False, plots=False)
    (row,) = json.loads(summary.read_text())
    assert (row["gap_policy"], row["gap_seconds"]) == ("bridged+excluded", GAP_MIN * STEP_S)
    assert row["history_s"] == 0 and "no history" in row["history_note"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "10,080 s of masked logging gaps (bridged+excluded)" in html and "no history before the window" in html


class Recorder:
    """Keeps 10 replicas and records what the metrics pipeline shows at each tick."""

    name: ClassVar[str] = "recorder"
    knob: ClassVar[str] = "none"
    clairvoyant: ClassVar[bool] = False
    period_s = 15.0

    def __init__(self) -> None:
        self.seen: list[tuple[float, float | None, bool, float | None, float | None]] = []

    def start(self, ctx: PolicyContext) -> None:
        pass

    def decide(self, view: ClusterView) -> PolicyOutput:
        cpu = view.pods[0].cpu_millicores if view.pods else None
        fresh = view.observation.request_rate_rps.status is SignalStatus.OK
        self.seen.append((view.now_s, view.total_rps, fresh, cpu, view.in_flight))
        return PolicyOutput(10)


def test_the_pipeline_reports_a_gap_as_missing_data() -> None:
    rate = np.full(3_600, 3_000.0)
    rate[1_200:2_400] = np.nan
    rec = Recorder()
    engine.run_rates(rate, SPEC, rec)
    by_t = {t: rest for t, *rest in rec.seen}
    rps, fresh, cpu, in_flight = by_t[1_800.0]  # deep in the gap: no scrape, no sample, no stats
    assert (rps, fresh, cpu, in_flight) == (None, False, None, None)
    rps, fresh, cpu, in_flight = by_t[1_080.0]  # before it, and a few minutes after it, all present
    assert rps == pytest.approx(3_000.0, rel=0.02) and fresh and cpu is not None and in_flight is not None
    rps, fresh, cpu, in_flight = by_t[2_700.0]
    assert rps == pytest.approx(3_000.0, rel=0.02) and fresh and cpu is not None and in_flight is not None
