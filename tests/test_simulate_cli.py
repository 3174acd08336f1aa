"""`simulate` from the command line: every policy by default, and a peak the spec cannot run is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoscaler.cli import main
from autoscaler.sim.baselines import registry

TRACE = "azure_functions2019_500fn_8h_http_only_60s.csv"


def test_trace_without_policies_runs_every_policy(tmp_path: Path) -> None:
    out = tmp_path / "all"
    argv = ["simulate", "--trace", TRACE, "--duration-s", "600", "--no-plots", "--no-timelines", "--out", str(out)]
    assert main(argv) == 0
    rows = json.loads((out / "summary.json").read_text())
    assert [r["policy"] for r in rows] == registry.names()


def test_target_peak_above_max_replicas_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--trace", TRACE, "--duration-s", "600", "--target-peak-replicas", "50", "--no-plots"]
    assert main(argv) == 2
    shown = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "--target-peak-replicas" in shown and "50 is above the spec's maxReplicas 40" in shown


def test_target_peak_at_max_replicas_is_allowed(tmp_path: Path) -> None:
    argv = ["simulate", "--trace", TRACE, "--duration-s", "600", "--target-peak-replicas", "40"]
    argv += ["--policies", "static-peak", "--no-plots", "--no-timelines", "--out", str(tmp_path / "at-max")]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "at-max" / "summary.json").read_text())
    assert rows[0]["max_replicas_used"] == 40
