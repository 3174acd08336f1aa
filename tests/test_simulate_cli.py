"""`simulate` from the command line: every policy by default, and a peak the spec cannot run is an error."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from autoscaler.cli import main
from autoscaler.sim.policies import registry

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


@pytest.mark.parametrize(
    ("scenario", "history_s", "note"),
    [
        ("azure-llm-code-1h", 0, "no history before the window"),  # per-request log, all replayed
        ("azure-functions-8h", 3600, "1.0 h of history before the window, under the two seasons"),
        ("worldcup98-7d", 14 * 86400, "14.0 days of history"),
    ],
)
def test_summary_says_how_much_history_warmed_the_forecasters(
    tmp_path: Path, scenario: str, history_s: int, note: str
) -> None:
    out = tmp_path / scenario
    argv = ["simulate", scenario, "--duration-s", "600", "--policies", "predictive", "--no-plots", "--out", str(out)]
    assert main(argv) == 0
    (row,) = json.loads((out / "summary.json").read_text())
    assert row["history_s"] == history_s and note in row["history_note"]
    assert note in (out / "report.html").read_text()
    if history_s:  # with history the forecaster forecasts from the first tick on
        with (out / "predictive" / "timeline.csv").open() as f:
            first = next(csv.DictReader(f))
        assert first["forecast_rps"] not in ("nan", "")
