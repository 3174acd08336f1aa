"""fetch_rate_history against a real Prometheus over promtool-backfilled days of TF Serving counters."""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from autoscaler.sources.history import HistoryError, fetch_rate_history, history_grid
from autoscaler.spec.types import ServingAutoscalerSpec, TargetRef
from tests.fixtures.prometheus import HAVE_PROMETHEUS, PrometheusServer, backfill_openmetrics, free_port

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(not HAVE_PROMETHEUS, reason="Prometheus binary not installed"),
]

SCRAPE_S = 30.0
DAYS = 2.0
SPEC = ServingAutoscalerSpec(name="resnet", target=TargetRef("hist", "resnet", "resnet"))
GAP = (6 * 3600.0, 7 * 3600.0)  # seconds after the start with no samples (an outage of the scrape)


def true_rate(t_rel_s: float | np.ndarray) -> np.ndarray:
    """Offered load: a daily cycle between 20 and 180 rps (the counters integrate it exactly)."""
    return 100.0 + 80.0 * np.sin(2 * np.pi * np.asarray(t_rel_s) / 86_400.0)


def _counter(t_rel_s: np.ndarray) -> np.ndarray:
    return 100.0 * t_rel_s + 80.0 * 86_400.0 / (2 * np.pi) * (1 - np.cos(2 * np.pi * t_rel_s / 86_400.0))


@pytest.fixture(scope="module")
def history_prometheus() -> Iterator[tuple[PrometheusServer, float]]:
    end_s = math.floor(time.time() / SCRAPE_S) * SCRAPE_S - 120.0
    start_s = end_s - DAYS * 86_400.0
    t_rel = np.arange(0.0, DAYS * 86_400.0 + 1, SCRAPE_S)
    t_rel = t_rel[(t_rel < GAP[0]) | (t_rel >= GAP[1])]
    ok = np.floor(_counter(t_rel) * 0.9)
    rejected = np.floor(_counter(t_rel) * 0.1)
    lines = ["# TYPE :tensorflow:serving:request_count unknown"]
    for status, vals in (("OK", ok), ("UNAVAILABLE", rejected), ("INVALID_ARGUMENT", np.floor(t_rel / 60))):
        for t, v in zip(t_rel, vals, strict=True):
            lines.append(
                f':tensorflow:serving:request_count{{namespace="hist",pod="resnet-1",model_name="resnet",'
                f'status="{status}"}} {v:.0f} {start_s + t:.0f}'
            )
    lines.append("# EOF")
    with tempfile.TemporaryDirectory(prefix="prom-hist-") as d:
        work = Path(d)
        backfill_openmetrics("\n".join(lines) + "\n", work / "data", work)
        with PrometheusServer(work, data_dir=work / "data") as server:
            yield server, end_s


def test_history_recovers_the_daily_cycle_with_gaps_as_nan(history_prometheus: tuple[PrometheusServer, float]) -> None:
    server, end_s = history_prometheus
    since_s = end_s - DAYS * 86_400.0
    y = fetch_rate_history(server.url, SPEC, since_s=since_s, step_s=300.0, now_s=end_s)
    grid = history_grid(since_s, 300.0, end_s)
    assert len(y) == len(grid) == int(DAYS * 86_400 / 300)
    t_mid = grid - 150.0 - since_s  # each point is the mean over the step before it
    in_gap = (grid - since_s > GAP[0] + 60) & (grid - since_s - 300 < GAP[1] - 60)
    assert np.all(np.isnan(y[in_gap])) and in_gap.sum() >= 10  # an outage is NaN, never zero
    good = ~np.isnan(y)
    assert good.sum() > 0.9 * len(y)
    # OK + UNAVAILABLE only (INVALID_ARGUMENT errors are not load we could serve)
    assert np.allclose(y[good], true_rate(t_mid[good]), rtol=0.03, atol=1.0)


def test_history_is_chunked_beyond_11000_points(history_prometheus: tuple[PrometheusServer, float]) -> None:
    server, end_s = history_prometheus
    since_s = end_s - 1.5 * 86_400.0
    y = fetch_rate_history(server.url, SPEC, since_s=since_s, step_s=10.0, now_s=end_s, rate_window_s=90.0)
    assert len(y) == 12_960 > 11_000  # one query would be refused by Prometheus
    grid = history_grid(since_s, 10.0, end_s)
    good = ~np.isnan(y)
    assert good.sum() > 0.9 * len(y)
    assert np.allclose(y[good], true_rate(grid[good] - 45.0 - since_s + 0.5 * 86_400.0), rtol=0.05, atol=2.0)


def test_history_failure_raises_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    with pytest.raises(HistoryError):
        fetch_rate_history(f"http://127.0.0.1:{free_port()}", SPEC, since_s=0.0, step_s=60.0, now_s=3600.0)
    assert any("rate_history" in r.getMessage() and "resnet" in r.getMessage() for r in caplog.records)


def test_simulate_from_prometheus_replays_the_history(
    history_prometheus: tuple[PrometheusServer, float], tmp_path: Path
) -> None:
    """`simulate --from-prometheus URL --target NS/DEPLOY --since 6h` runs every named policy on real history."""
    import json

    from autoscaler.cli import main

    server, _ = history_prometheus
    out = tmp_path / "replay"
    rc = main(
        [
            "simulate",
            "--from-prometheus",
            server.url,
            "--target",
            "hist/resnet",
            "--since",
            "3h",
            "--step-s",
            "60",
            "--policies",
            "static-peak,oracle,hpa-rps",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    rows = json.loads((out / "summary.json").read_text())
    assert [r["policy"] for r in rows] == ["static-peak", "oracle", "hpa-rps"]
    # the replayed load is the history's: served + rejected (≈ the true daily-cycle rate), 3 h of it
    t = np.arange(0, 3 * 3600)  # the window is the last 3 h before "now" (history ends ~2 min earlier)
    assert rows[0]["trace"] == "prometheus:hist/resnet"
    assert rows[0]["requests"] > 0.5 * float(np.mean(true_rate(DAYS * 86_400.0 - 3 * 3600 + t))) * 3 * 3600
    assert all(r["replica_hours"] > 0 for r in rows)


def test_simulate_from_prometheus_bad_input_is_named(history_prometheus: tuple[PrometheusServer, float]) -> None:
    from autoscaler.cli import main

    server, _ = history_prometheus
    assert main(["simulate", "--from-prometheus", server.url, "--target", "nonsense"]) == 2
    assert main(["simulate", "--from-prometheus", server.url, "--target", "hist/resnet", "--since", "soon"]) == 2
    # a model Prometheus has never seen: a clear error, no simulation of zero load
    assert main(["simulate", "--from-prometheus", server.url, "--target", "hist/ghost", "--since", "1h"]) == 1
