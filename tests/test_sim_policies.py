"""Every shipped scenario runs with every registered policy; the oracle is the cheapest that meets the SLO."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from autoscaler.sim import engine
from autoscaler.sim.policies import registry
from autoscaler.sim.policies.oracle import fill_short_dips, rolling_future_max
from autoscaler.sim.scenario import SCENARIO_DIR, load_inputs, load_scenario

SCENARIOS = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
FAST_KNOBS = {"predictive": {"tune_batching": False}}  # keeps the test fast; the benchmark tunes


def test_every_shipped_trace_has_a_scenario() -> None:
    traces = {load_scenario(s).trace for s in SCENARIOS}
    shipped = {
        p.name for p in (SCENARIO_DIR / "traces").iterdir() if p.suffix in (".csv", ".gz") and "profile" not in p.name
    }
    assert shipped <= traces, f"no scenario for {sorted(shipped - traces)}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_runs_with_every_policy(scenario: str) -> None:
    sc = load_scenario(scenario)
    inp = load_inputs(sc, duration_s=1200.0, history_s=2 * 3600.0)
    assert inp.trace.duration_s == pytest.approx(1200.0, abs=600.0)
    for name in registry.names():
        res = engine.run(
            inp.trace, inp.spec, name, knobs=FAST_KNOBS.get(name, {}), history_rps=inp.history_rps, seed=sc.seed
        )
        s = res.summary
        assert s["policy"] == name and s["trace"] == inp.trace.name
        assert s["requests"] > 0
        assert 0.0 <= s["slo_attainment"] <= 1.0
        assert s["replica_hours"] >= inp.spec.min_replicas * inp.trace.n_seconds / 3600.0 - 1e-9
        assert math.isfinite(s["p50_ms"])
        tl = res.timeline
        w = tl.window()
        assert tl.desired[w].min() >= inp.spec.min_replicas and tl.desired[w].max() <= inp.spec.max_replicas


@pytest.mark.parametrize(
    ("scenario", "duration_s"), [("azure-functions-8h", 2 * 3600.0), ("worldcup98-7d", 2 * 3600.0)]
)
def test_oracle_is_cheapest_among_policies_meeting_the_slo(scenario: str, duration_s: float) -> None:
    inp = load_inputs(load_scenario(scenario), duration_s=duration_s, history_s=3 * 3600.0)
    rows = {}
    for name in registry.names():
        rows[name] = engine.run(
            inp.trace, inp.spec, name, knobs=FAST_KNOBS.get(name, {}), history_rps=inp.history_rps
        ).summary
    oracle = rows["oracle"]
    assert oracle["meets_slo"], f"oracle misses its own goal: {oracle['slo_attainment']}"
    meeting = {k: v["replica_hours"] for k, v in rows.items() if v["meets_slo"] and k != "oracle"}
    assert "static-peak" in meeting
    for name, rh in meeting.items():
        assert oracle["replica_hours"] <= rh + 1e-9, f"{name} meets the SLO with fewer replica-hours than the oracle"


def test_fill_short_dips_and_future_max() -> None:
    need = np.array([3, 3, 1, 1, 3, 3, 1, 1, 1, 1, 1, 3])
    filled = fill_short_dips(need, max_gap_s=3)
    assert filled.tolist() == [3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 3]
    x = np.array([0, 5, 0, 0, 0, 7, 0, 0])
    assert rolling_future_max(x, 2).tolist() == [5, 5, 0, 7, 7, 7, 0, 0]
    brute = [max(x[i : i + 4]) for i in range(len(x))]
    assert rolling_future_max(x, 3).tolist() == brute


def test_scenario_errors_name_the_field(tmp_path: Path) -> None:
    from autoscaler.sim.scenario import ScenarioError, parse_scenario

    good = {"trace": "worldcup98_60s.csv", "spec": "examples/resnet50-t4.yaml"}
    with pytest.raises(ScenarioError, match="policies: unknown policy 'hpa-gpu'"):
        parse_scenario({**good, "policies": ["hpa-gpu"]}, "x.yaml")
    with pytest.raises(ScenarioError, match="rate_scale: expected a number > 0"):
        parse_scenario({**good, "rate_scale": -2}, "x.yaml")
    with pytest.raises(ScenarioError, match="fidelity"):
        parse_scenario({**good, "fidelity": "exact"}, "x.yaml")
    with pytest.raises(ScenarioError, match="colour: unknown field"):
        parse_scenario({**good, "colour": "red"}, "x.yaml")
    with pytest.raises(ScenarioError, match="trace: expected a file path"):
        parse_scenario({"spec": "a.yaml"}, "x.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trace: nope.csv\nspec: examples/resnet50-t4.yaml\n")
    with pytest.raises(ScenarioError, match="trace"):
        load_inputs(load_scenario(bad))
