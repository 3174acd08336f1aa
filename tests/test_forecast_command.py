"""The `forecast` CLI command: backtest table, selected model, forecast, plot, clear errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from autoscaler.commands import forecast as cmd


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    cmd.register(p)
    return p.parse_args(list(argv))


def test_defaults_use_a_shipped_trace() -> None:
    args = parse()
    assert args.trace == cmd.DEFAULT_TRACE and args.model == "auto" and args.step_s == 60.0


def test_backtest_table_selection_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "fc.png"
    # 8 h trace with a 1 h "season" so the seasonal models take part
    rc = cmd.run(
        parse("--trace", "azure_functions2019_500fn_8h_http_only_60s", "--season-s", "3600", "--plot", str(png))
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "rolling-origin backtest" in out and "selected:" in out
    for name in ("seasonal-naive", "holt-winters", "holt", "naive"):
        assert name in out
    assert "forecast from t=" in out
    assert png.stat().st_size > 10_000


def test_short_trace_falls_back_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cmd.run(parse("--trace", "azure_llm2023_code_req", "--horizon-s", "300"))
    out = capsys.readouterr().out
    assert rc == 0 and "less than two seasons" in out and "selected: holt" in " ".join(out.split())


def test_errors_are_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd.run(parse("--trace", "no_such_trace")) == 2
    assert "no such file" in capsys.readouterr().err
    assert cmd.run(parse("--trace", "servegen_m-large_600s", "--step-s", "60")) == 2
    assert "whole multiple of the trace's 600 s step" in capsys.readouterr().err
