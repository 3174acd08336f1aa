"""Scenario rate scaling by superposition: the `superpose_s` field, its CLI flag and the shipped scenarios."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autoscaler.cli import main
from autoscaler.core.capacity import CapacityModel
from autoscaler.sim.scenario import ScenarioError, load_inputs, load_scenario, parse_scenario
from autoscaler.sim.workload import load_trace

GOOD = {"trace": "azure_llm2023_code_req.csv", "spec": "examples/resnet50-t4.yaml"}


def test_superpose_s_field_is_parsed_and_checked() -> None:
    assert parse_scenario(GOOD, "x.yaml").superpose_s is None
    assert parse_scenario({**GOOD, "superpose_s": 30}, "x.yaml").superpose_s == 30.0
    for bad in (0, 0.5, -1, "60s", True):
        with pytest.raises(ScenarioError, match=r"x\.yaml: superpose_s: expected"):
            parse_scenario({**GOOD, "superpose_s": bad}, "x.yaml")


@pytest.mark.parametrize("name", ["nasa-1s-7d", "azure-llm-code-1h"])
def test_sparse_shipped_scenarios_scale_by_superposition(name: str) -> None:
    sc = load_scenario(name)
    assert sc.superpose_s == 60.0 and sc.target_peak_replicas == 30.0
    inp = load_inputs(sc, duration_s=3600.0, history_s=3600.0)
    assert inp.trace.superpose_s == 60.0 and inp.trace.step_s == 1.0 and inp.trace.timestamps_s is None
    cap = CapacityModel(inp.spec.profile).capacity_at_slo_rps(inp.spec.batching.initial, inp.spec.slo)
    r = inp.trace.rate_per_second()
    # target_peak_replicas is read off the superposed series: its busiest second needs exactly 30 replicas
    assert np.nanmax(r) / cap == pytest.approx(30.0)
    dup = load_inputs(replace(sc, superpose_s=None), duration_s=3600.0, history_s=3600.0)
    assert inp.rate_scale > 2 * dup.rate_scale  # duplication's bursts set the peak far above the typical load


def test_scenario_history_lines_up_with_the_window() -> None:
    sc = load_scenario("nasa-1s-7d")
    inp = load_inputs(sc, duration_s=3600.0, history_s=7200.0)
    both = load_trace(
        inp.trace.source_path,
        rate_scale=inp.rate_scale,
        start_s=sc.start_s - 7200.0,
        duration_s=3 * 3600.0,
        mask_gaps=True,
        superpose_s=60,
    ).rate_per_second()
    np.testing.assert_array_equal(np.concatenate((inp.history_rps, inp.trace.rate_per_second())), both)


def _flat(capsys: pytest.CaptureFixture[str]) -> str:
    """Captured stdout with rich's line wrapping undone (it wraps at 80 columns, path lengths vary)."""
    return " ".join(capsys.readouterr().out.split())


def test_simulate_superpose_s_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--policies", "static-peak", "--duration-s", "600", "--no-plots", "--no-timelines"]
    trace = ["simulate", "--trace", "azure_llm2023_code_req.csv", *common]
    assert main([*trace, "--superpose-s", "30", "--out", str(tmp_path / "a")]) == 0
    assert "superposed over 30 s" in _flat(capsys)
    assert (tmp_path / "a" / "summary.json").is_file()
    off = ["simulate", "azure-llm-code-1h", *common, "--superpose-s", "0", "--out", str(tmp_path / "b")]
    assert main(off) == 0  # 0 turns the scenario's superposition off: back to duplication
    assert "superposed" not in _flat(capsys)
    assert main([*trace, "--superpose-s", "0.5", "--out", str(tmp_path / "c")]) == 2
    assert "superpose_s must be a finite number of seconds >= 1" in _flat(capsys)
    json.loads((tmp_path / "b" / "summary.json").read_text())
