"""A multi-model TF Serving emulator: each model's REST path and metrics, one device for all queues."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from autoscaler.emulator import EmulatorReplica, ReplicaConfig, poisson_arrivals, replay
from autoscaler.emulator.batcher import BatchStats
from autoscaler.spec.types import BatchingParams, ServedModel, ServiceProfile

FAST = ServiceProfile(batch_sizes=(1, 8), batch_latency_ms=(4.0, 8.0), source="fast")
SLOW = ServiceProfile(batch_sizes=(1, 8), batch_latency_ms=(10.0, 30.0), source="slow")
CONFIG = ReplicaConfig(
    model_name="slow",
    profile=SLOW,
    other_models=(ServedModel("fast", profile=FAST),),
    batching=BatchingParams(max_batch_size=8, batch_timeout_us=1_000, num_batch_threads=2),
    time_scale=4.0,
)


async def test_each_model_has_its_path_status_and_labelled_metrics() -> None:
    async with EmulatorReplica(CONFIG) as r, aiohttp.ClientSession() as s:
        await r.wait_ready(2)
        for model in ("slow", "fast"):
            async with s.get(f"{r.url}/v1/models/{model}") as resp:
                doc = await resp.json()
                assert resp.status == 200 and doc["model_version_status"][0]["state"] == "AVAILABLE"
        async with s.get(f"{r.url}/v1/models/other") as resp:
            assert resp.status == 404
        res_slow = await replay(poisson_arrivals(200, 0.3, seed=1), [r.url], model="slow", time_scale=4.0)
        res_fast = await replay(poisson_arrivals(200, 0.3, seed=2), [r.url], model="fast", time_scale=4.0)
        page = r.metrics.render()
    for model, res in (("slow", res_slow), ("fast", res_fast)):
        n = int((res.status == 200).sum())
        assert n == len(res.status) > 20
        assert f':tensorflow:serving:request_count{{model_name="{model}",status="OK"}} {n}' in page
        latency = f':tensorflow:serving:request_latency_count{{model_name="{model}",API="predict",entrypoint="REST"}}'
        assert f"{latency} {n}" in page
        assert f'load_attempt_count{{model_path="/models/{model}/1",status="success"}} 1' in page
    # TF Serving's session-batching series carry no model_name: one set for the whole server
    assert not any("batching_session" in ln and "model_name" in ln for ln in page.splitlines())


async def test_models_share_one_device_batches_never_overlap() -> None:
    """Both models' batches run one at a time on the device (their service times add up)."""
    spans: list[tuple[float, float]] = []
    r = EmulatorReplica(CONFIG)
    on_batch = r._on_batch

    def record(stats: BatchStats) -> None:
        end = asyncio.get_running_loop().time()
        spans.append((stats.started_s, end))
        on_batch(stats)

    r._on_batch = record  # type: ignore[method-assign]
    async with r:
        await r.wait_ready(2)
        busy0 = r.busy_seconds()
        await asyncio.gather(
            replay(poisson_arrivals(300, 0.5, seed=3), [r.url], model="slow", time_scale=4.0),
            replay(poisson_arrivals(300, 0.5, seed=4), [r.url], model="fast", time_scale=4.0),
        )
        busy = r.busy_seconds() - busy0
    spans.sort()
    assert len(spans) > 20
    overlaps = sum(1 for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1] - 1e-6)
    assert overlaps == 0
    assert busy == pytest.approx(sum(e - s for s, e in spans), rel=0.05)  # device busy = Σ batch times


def test_emulate_command_serves_every_model_of_a_multi_model_spec(capsys: pytest.CaptureFixture[str]) -> None:
    from autoscaler.cli import main

    spec = str(Path(__file__).resolve().parents[1] / "examples" / "multimodel-t4.yaml")
    rc = main(["emulate", "--spec", spec, "--port", "0", "--duration-s", "0.5"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    (line,) = [ln for ln in out if ln.startswith("resnet-fp32-emulator-0 ")]
    assert line.split()[1].endswith("/v1/models/resnet-fp32,resnet-amp")
