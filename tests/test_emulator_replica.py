"""The TF Serving emulator over real HTTP: REST paths, errors, model status, metric page, batching."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.emulator import EmulatorReplica, ReplicaConfig, poisson_arrivals, replay
from autoscaler.emulator.tfmetrics import LATENCY_BUCKETS_US, QUEUING_BUCKETS_US, strcat_double
from autoscaler.spec.types import BatchingParams


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def _post(url: str, body: bytes | str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as s, s.post(url, data=body) as r:
        return r.status, json.loads(await r.text())


def test_bucket_layout_matches_tf_serving() -> None:
    assert len(LATENCY_BUCKETS_US) == 33 and len(QUEUING_BUCKETS_US) == 52
    rendered = [strcat_double(b) for b in LATENCY_BUCKETS_US[:6]]
    assert rendered == ["10", "18", "32.4", "58.32", "104.976", "188.957"]
    assert strcat_double(LATENCY_BUCKETS_US[-1]).endswith("e+09")
    assert 1.0e9 < LATENCY_BUCKETS_US[-1] < 1.5e9
    assert 1.0e6 < QUEUING_BUCKETS_US[-1] < 1.2e6


async def test_model_status_loading_then_available_and_errors() -> None:
    async with EmulatorReplica(ReplicaConfig(startup_delay_s=0.4)) as r:
        code, _, text = await _get(f"{r.url}/v1/models/resnet")
        doc = json.loads(text)
        assert code == 200 and doc["model_version_status"][0]["state"] == "LOADING"
        # predict while loading: TF Serving answers NOT_FOUND for a servable not yet available
        code, err = await _post(f"{r.url}/v1/models/resnet:predict", '{"instances": [[1.0]]}')
        assert code == 404 and "Servable not found" in str(err["error"])
        await r.wait_ready(5)
        code, _, text = await _get(f"{r.url}/v1/models/resnet/versions/1")
        assert json.loads(text) == {
            "model_version_status": [
                {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        }
        code, _, text = await _get(f"{r.url}/v1/models/other")
        assert code == 404 and "error" in json.loads(text)
        code, err = await _post(f"{r.url}/v1/models/resnet:predict", "{not json")
        assert code == 400 and "JSON Parse error" in str(err["error"])
        code, err = await _post(f"{r.url}/v1/models/resnet:predict", '{"foo": 1}')
        assert code == 400
        code, out = await _post(f"{r.url}/v1/models/resnet/versions/1:predict", '{"instances": [[1], [2], [3]]}')
        assert code == 200 and len(out["predictions"]) == 3  # type: ignore[arg-type]
        code, out = await _post(f"{r.url}/v1/models/resnet:predict", '{"inputs": {"x": [[1], [2]]}}')
        assert code == 200 and len(out["outputs"]) == 2  # type: ignore[arg-type]
        code, err = await _post(f"{r.url}/v1/models/resnet/versions/7:predict", '{"instances": [[1]]}')
        assert code == 404


async def test_metric_page_is_rendered_like_tf_serving() -> None:
    async with EmulatorReplica(ReplicaConfig(time_scale=5.0)) as r:
        await r.wait_ready(2)
        code, ctype, page = await _get(f"{r.url}/monitoring/prometheus/metrics")
        assert code == 200 and ctype == "text/plain"
        assert ":tensorflow:serving:request_count" not in page  # a series appears only after an observation
        for _ in range(5):
            await _post(f"{r.url}/v1/models/resnet:predict", '{"instances": [[1.0]]}')
        await _post(f"{r.url}/v1/models/nope:predict", '{"instances": [[1.0]]}')
        _, _, page = await _get(f"{r.url}/monitoring/prometheus/metrics")
    lines = page.splitlines()
    assert not any(ln.startswith("# HELP") for ln in lines)
    assert "# TYPE :tensorflow:serving:request_count counter" in lines
    assert ':tensorflow:serving:request_count{model_name="resnet",status="OK"} 5' in lines
    assert ':tensorflow:serving:request_count{model_name="nope",status="NOT_FOUND"} 1' in lines
    assert not any("_total" in ln for ln in lines)
    prefix = ':tensorflow:serving:request_latency_bucket{model_name="resnet",API="predict",entrypoint="REST",'
    les = [ln[len(prefix) :].split('"')[1] for ln in lines if ln.startswith(prefix)]
    assert les[:3] == ["10", "18", "32.4"] and les[-1] == "+Inf" and len(les) == 34
    assert ':tensorflow:serving:request_latency_count{model_name="resnet",API="predict",entrypoint="REST"} 5' in lines
    # batching-session metrics carry no model_name; unlabeled sums render with empty braces
    assert any(
        ln.startswith(
            ':tensorflow:serving:batching_session:queuing_latency_bucket{thread_pool_name="batch_threads",le="100"}'
        )
        for ln in lines
    )
    assert ":tensorflow:serving:batching_session:processed_batch_size_count{} " in page
    assert not any("batching_session" in ln and "model_name" in ln for ln in lines)
    fams = {f.name: f for f in text_string_to_metric_families(page)}
    lat = fams[":tensorflow:serving:request_latency"]
    cum = [s.value for s in lat.samples if s.name.endswith("_bucket")]
    assert cum == sorted(cum) and cum[-1] == 5
    # latency is in microseconds: 5 single-row batches at ≥ 7.34 ms / 5
    total_us = next(s.value for s in lat.samples if s.name.endswith("_sum"))
    assert 5 * 7.34e3 / 5 * 0.9 < total_us < 5 * 200e3


async def test_batches_fill_and_queue_rejects_when_full() -> None:
    params = BatchingParams(max_batch_size=4, batch_timeout_us=200_000, num_batch_threads=1, max_enqueued_batches=2)
    async with EmulatorReplica(ReplicaConfig(batching=params)) as r:
        await r.wait_ready(2)
        url = f"{r.url}/v1/models/resnet:predict"
        # 4 concurrent single-row requests fill one batch before the 200 ms timeout
        results = await asyncio.gather(*[_post(url, '{"instances": [[1]]}') for _ in range(4)])
        assert [c for c, _ in results] == [200] * 4
        pbs = r.metrics.processed_batch_size.cells[()]
        assert pbs.sum == 4 and sum(pbs.counts) == 1
        # 1 thread busy + 2 enqueued batches of 4: the 13th concurrent request is rejected
        results = await asyncio.gather(*[_post(url, '{"instances": [[1]]}') for _ in range(16)])
        codes = [c for c, _ in results]
        assert codes.count(503) >= 1 and codes.count(200) >= 8
        assert all("error" in body for c, body in results if c == 503)
        assert r.metrics.request_count.cells[("resnet", "UNAVAILABLE")] == codes.count(503)
        # a task larger than max_batch_size is INVALID_ARGUMENT
        code, _ = await _post(url, '{"instances": [[1], [2], [3], [4], [5]]}')
        assert code == 400


async def test_loadgen_round_robin_over_changing_endpoints() -> None:
    async with (
        EmulatorReplica(ReplicaConfig(time_scale=20.0)) as a,
        EmulatorReplica(ReplicaConfig(time_scale=20.0)) as b,
    ):
        await asyncio.gather(a.wait_ready(2), b.wait_ready(2))
        live = [a.url]
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, live.append, b.url)
        arrivals = poisson_arrivals(200.0, 1.0, seed=3)
        res = await replay(arrivals, lambda: list(live), model="resnet")
        ok_a = a.metrics.request_count.cells[("resnet", "OK")]
        ok_b = b.metrics.request_count.cells[("resnet", "OK")]
        assert res.sent == len(arrivals) and res.ok == ok_a + ok_b == res.sent
        # b joined half way: it got about a quarter of the requests (half of the second half)
        assert 0.15 < ok_b / res.sent < 0.35
        assert res.latency_quantile_ms(0.5) < res.latency_quantile_ms(0.99) < 200.0
        send = res.send_offset_s
        assert np.all(np.diff(send) >= -1e-9) and send[-1] == pytest.approx(arrivals[-1] - arrivals[0], abs=0.1)


def test_emulate_command_starts_replicas_and_prints_urls(capsys: pytest.CaptureFixture[str]) -> None:
    from autoscaler.cli import main

    rc = main(["emulate", "--replicas", "2", "--port", "0", "--duration-s", "1.0", "--rate-rps", "40"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    urls = [ln.split()[1] for ln in out if ln.startswith("resnet-emulator-")]
    assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:") and u.endswith("/v1/models/resnet") for u in urls)
    summary = json.loads(out[-1])
    assert summary["sent"] == summary["ok"] > 10 and summary["errors"] == 0
