"""`tfserving-autoscaler demo` end to end, and the pieces it is built from.

The end-to-end test runs the command in a subprocess for 40 s (as a user would), reads /metrics and
the metrics adapter while it runs, and checks from its JSON summary the story the demo tells: replicas
rose soon after the trace's load rose, fell after it fell, and the SLO held (attainment >= 95 %, the
floor stated here; the default 90 s run measures ~100 %). The fast tests cover the packaged data
(spec and trace window, loaded through importlib.resources) and the clear failure without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path

import aiohttp
import pytest

from autoscaler.commands.demo import register
from autoscaler.demo.load import DemoDataError, demo_spec, load_demo_spec, offered_load

ROOT = Path(__file__).resolve().parents[1]
ATTAINMENT_FLOOR = 0.95


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser)
    return parser.parse_args(list(argv))


def test_packaged_spec_and_trace_window_tell_a_rise_and_fall() -> None:
    spec = demo_spec(load_demo_spec(None), _args())
    assert spec.slo.latency_ms == 2000.0  # 100 ms x dilation 20
    assert spec.behavior.scale_down.stabilization_window_s == 20
    rate, history, where, compression = offered_load(_args(), 72.0, 90)
    assert len(rate) == 90 and len(history) == 135 and compression == pytest.approx(240 / 90)  # 360 s / 2.67
    assert "azure_llm2023_code_req" in where and "CC-BY-4.0" in where
    peak_s = max(range(90), key=lambda i: rate[i])
    assert max(rate) == pytest.approx(72.0)
    assert max(rate[:5]) < 0.2 * 72.0  # quiet start ...
    assert 15 <= peak_s <= 45  # ... a peak in the first half ...
    assert max(rate[-20:]) < 0.15 * 72.0  # ... and quiet again, long enough for the scale-down
    short = demo_spec(load_demo_spec(None), _args("--duration-s", "40"))
    assert short.behavior.scale_down.stabilization_window_s == 9  # shrinks with a shorter run


def test_a_trace_that_does_not_cover_the_window_fails_clearly() -> None:
    with pytest.raises(DemoDataError, match=r"covers 300-1291 s, not the window 100-340 s"):
        offered_load(_args("--trace-start-s", "100", "--trace-end-s", "340"), 72.0, 40)
    with pytest.raises(DemoDataError, match="expected 0 <= --trace-start-s < --trace-end-s"):
        offered_load(_args("--trace-start-s", "900", "--trace-end-s", "800"), 72.0, 40)


@pytest.mark.slow  # ~45 s: the real demo as a process; runs in CI (`pytest -q` selects slow tests too)
@pytest.mark.timeout(150)
async def test_demo_replicas_follow_the_load_up_and_down_within_the_slo(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "autoscaler",
        "demo",
        "--duration-s",
        "40",
        "--plain",
        "--summary-json",
        str(summary_path),
        cwd=tmp_path,  # no repository files needed: the spec and the trace are package data
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    lines: list[str] = []
    while len(urls) < 2:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line, "demo exited before printing its URLs"
        lines.append(line)
        if m := re.search(r"/metrics:\s+(\S+)", line):
            urls["metrics"] = m.group(1)
        if m := re.search(r"metrics adapter:\s+(http://\S+?)/apis", line):
            urls["adapter"] = m.group(1)
    metrics_text = ""
    async with aiohttp.ClientSession() as http:
        for _ in range(50):  # wait for the first decision to show up
            async with http.get(urls["metrics"]) as resp:
                assert resp.status == 200
                metrics_text = await resp.text()
            if "tfserving_autoscaler_desired_replicas{" in metrics_text:
                break
            await asyncio.sleep(0.2)
        async with http.get(f"{urls['adapter']}/apis/external.metrics.k8s.io/v1beta1") as resp:
            assert resp.status == 200
            assert (await resp.json())["kind"] == "APIResourceList"
    desired = re.search(r"^tfserving_autoscaler_desired_replicas\{([^}]*)\} (\S+)$", metrics_text, re.M)
    assert desired is not None, metrics_text[-2000:]
    assert 'deployment="resnet50"' in desired.group(1) and 'namespace="serving"' in desired.group(1)
    assert float(desired.group(2)) >= 2.0  # minReplicas of the demo spec
    out, err = await asyncio.wait_for(proc.communicate(), 100)
    assert proc.returncode == 0, err.decode()[-2000:]
    text = "".join(lines) + out.decode()
    intro = "".join(lines)
    assert "slowed 20x" in intro and "compressed 6x" in intro and "stabilization 9 s" in intro
    assert re.search(r"t=\s*\d+s load=", text)  # plain progress lines when stdout is not a TTY
    assert "summary" in text and "SLO attainment" in text

    s = json.loads(summary_path.read_text())
    assert s["requests"] > 800 and s["ok"] > 0
    r, rows = s["replicas"], s["timeline"]
    assert r["initial"] == 2
    # rose with the load: the first scale-up came after the load rose, and soon after
    rise_s = next(x["t_s"] for x in rows if x["offered_rps"] and x["offered_rps"] > 2 * rows[0]["offered_rps"])
    assert s["first_scale_up_s"] is not None and rise_s <= s["first_scale_up_s"] <= rise_s + 8
    assert r["max"] >= 5  # the peak needs about 5.3 replicas' planned capacity
    # fell after it: a scale-down after the offered peak, back to at most half the peak count
    assert s["first_scale_down_s"] is not None and s["first_scale_down_s"] > s["offered_rps"]["peak_s"]
    assert r["final"] <= r["max"] // 2 and r["min_after_peak"] < r["max"]
    assert s["scale_events"]["up"] >= 1 and s["scale_events"]["down"] >= 1
    # and the SLO held
    assert s["slo_attainment"] >= ATTAINMENT_FLOOR
    assert s["verdict"].startswith(f"replicas followed the load: 2→{r['max']}→")
    assert f"verdict: {s['verdict']}" in text
