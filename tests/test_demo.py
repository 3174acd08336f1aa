"""`tfserving-autoscaler demo` end to end: the real loop against local emulator replicas.

Runs the command in a subprocess for 30 s (as a user would), reads /metrics and the metrics
adapter while it runs, and checks from its JSON summary that replicas followed the load: the
first scale-up came after the trace's load rose, and more replicas ran at high load than before.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(90)
async def test_demo_scales_up_with_the_load_and_serves_metrics(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "autoscaler",
        "demo",
        "--duration-s",
        "30",
        "--plain",
        "--summary-json",
        str(summary_path),
        cwd=ROOT,
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
    assert 'tfserving_autoscaler_desired_replicas{deployment="resnet50",namespace="serving"}' in metrics_text
    out, err = await asyncio.wait_for(proc.communicate(), 80)
    assert proc.returncode == 0, err.decode()[-2000:]
    text = "".join(lines) + out.decode()
    assert "summary" in text and "SLO attainment" in text
    assert re.search(r"t=\s*\d+s load=", text)  # plain progress lines when stdout is not a TTY

    s = json.loads(summary_path.read_text())
    assert s["requests"] > 500 and s["ok"] > 0
    assert 0.0 <= s["slo_attainment"] <= 1.0
    assert s["replicas"]["initial"] == 1
    assert s["replicas"]["max"] >= 3  # the wave needs several replicas
    assert s["scale_events"]["up"] >= 1
    rows = s["timeline"]
    rise_s = next(r["t_s"] for r in rows if r["offered_rps"] and r["offered_rps"] > 2 * rows[0]["offered_rps"])
    assert s["first_scale_up_s"] is not None and s["first_scale_up_s"] >= rise_s  # after the load rose ...
    assert s["first_scale_up_s"] <= rise_s + 10  # ... and soon after
    before = [r["desired"] for r in rows if r["t_s"] < rise_s and r["desired"]]
    busy = [r["desired"] for r in rows if r["offered_rps"] and r["offered_rps"] > 0.5 * s["offered_rps"]["peak"]]
    assert before and busy and max(before) == 1 and max(busy) > max(before)
