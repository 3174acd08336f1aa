"""The `simulate` command and its report: summary.json, timelines, plots, HTML; clear errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from autoscaler.cli import main
from autoscaler.sim.timeline import CSV_COLUMNS

REQUIRED = {
    "policy",
    "trace",
    "requests",
    "slo_ms",
    "slo_quantile",
    "slo_attainment",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "rejected",
    "replica_hours",
    "scale_events",
    "mean_gpu_util",
    "wall_s",
    "meets_slo",
    "knobs",
}


def test_simulate_scenario_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "simulate",
            "azure-functions-8h",
            "--duration-s",
            "1800",
            "--policies",
            "static-peak,oracle,hpa-rps",
            "--knob",
            "hpa-rps.target_rps_per_pod=300",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    rows = json.loads((out / "summary.json").read_text())
    assert [r["policy"] for r in rows] == ["static-peak", "oracle", "hpa-rps"]
    for r in rows:
        assert set(r) >= REQUIRED
        assert r["trace"] == "azure_functions2019_500fn_8h_http_only_60s"
    assert rows[2]["knobs"] == {"target_rps_per_pod": 300}
    by = {r["policy"]: r for r in rows}
    assert by["oracle"]["x_oracle"] == pytest.approx(1.0)
    assert by["static-peak"]["replica_hours"] >= by["oracle"]["replica_hours"]
    with (out / "oracle" / "timeline.csv").open() as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 1800
    assert list(lines[0]) == ["t_s", *CSV_COLUMNS]
    arrivals = sum(float(x["arrivals"]) for x in lines)
    assert arrivals == pytest.approx(by["oracle"]["requests"], rel=1e-3)
    for png in ("load_vs_capacity", "replicas", "latency", "cost_vs_attainment"):
        assert (out / f"{png}.png").stat().st_size > 5_000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "static-peak" in html
    shown = capsys.readouterr().out
    assert "× oracle" in shown and "hpa-rps" in shown


def test_simulate_from_trace_flags(tmp_path: Path) -> None:
    out = tmp_path / "flags"
    rc = main(
        [
            "simulate",
            "--trace",
            "servegen_m-large_600s.csv",
            "--start-s",
            "86400",
            "--duration-s",
            "7200",
            "--rate-scale",
            "0.01",
            "--policies",
            "static-peak",
            "--no-plots",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    rows = json.loads((out / "summary.json").read_text())
    assert rows[0]["requests"] > 0 and rows[0]["policy"] == "static-peak"
    assert not (out / "replicas.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "no-such-scenario"], "no-such-scenario"),
        (["simulate", "azure-functions-8h", "--policies", "hpa-gpu"], "unknown policy 'hpa-gpu'"),
        (["simulate", "--trace", "missing.csv"], "missing.csv"),
        (["simulate", "azure-functions-8h", "--knob", "oops"], "POLICY.KNOB=VALUE"),
    ],
)
def test_bad_input_names_what_is_wrong(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in " ".join(capsys.readouterr().out.split())  # (rich wraps long lines)
