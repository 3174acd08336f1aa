"""PrometheusSource when Prometheus is down, slow or broken: ERROR for every target, logged, never zero."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from autoscaler.core.types import SignalStatus, TargetKey
from autoscaler.sources.prometheus import PrometheusSource
from autoscaler.spec.types import ServingAutoscalerSpec, TargetRef

TARGETS = [ServingAutoscalerSpec(name=f"m{i}", target=TargetRef("prod", f"m{i}", f"m{i}")) for i in range(3)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(handler: web.Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/api/v1/query", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture
async def slow_prometheus() -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(3.0)
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    async for url in _serve(handler):
        yield url


@pytest.fixture
async def broken_prometheus() -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"status": "error", "errorType": "internal", "error": "boom"}, status=500)

    async for url in _serve(handler):
        yield url


def _assert_all_error(obs: dict[TargetKey, object]) -> None:
    assert set(obs) == {TargetKey("prod", f"m{i}") for i in range(3)}
    for o in obs.values():
        for name in ("request_rate_rps", "burst_rate_rps", "latency_ms", "gpu_util", "mean_batch_size", "rejected_rps"):
            s = getattr(o, name)
            assert s.status is SignalStatus.ERROR and s.value is None, (name, s)
        assert o.current_replicas is None  # type: ignore[attr-defined]


async def test_prometheus_down(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    src = PrometheusSource(f"http://127.0.0.1:{_free_port()}", timeout_s=1.0)
    obs = await asyncio.to_thread(src.observe, TARGETS, time.time())
    src.close()
    _assert_all_error(obs)  # type: ignore[arg-type]
    msgs = [r.getMessage() for r in caplog.records]
    assert any("signal request_rate failed" in m for m in msgs)
    assert any("signal latency_ms is error" in m and "prod/m0" in m for m in msgs)


async def test_prometheus_slow_times_out(slow_prometheus: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    src = PrometheusSource(slow_prometheus, timeout_s=0.5)
    t0 = time.monotonic()
    obs = await asyncio.to_thread(src.observe, TARGETS, time.time())
    took = time.monotonic() - t0
    src.close()
    _assert_all_error(obs)  # type: ignore[arg-type]
    assert took < 2.5  # queries run concurrently and each gives up after timeout_s
    assert any("timeout after 0.5s" in r.getMessage() for r in caplog.records)


async def test_prometheus_http_error(broken_prometheus: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    src = PrometheusSource(broken_prometheus, timeout_s=1.0)
    obs = await asyncio.to_thread(src.observe, TARGETS, time.time())
    src.close()
    _assert_all_error(obs)  # type: ignore[arg-type]
    assert any("500" in r.getMessage() for r in caplog.records)


@pytest.fixture
async def canned_prometheus() -> AsyncIterator[str]:
    """Fresh TF Serving series, but kube-state-metrics 500 s old, for a model named like its Deployment."""
    now = time.time()

    def vec(metric: dict[str, str], v: float) -> dict[str, object]:
        return {"metric": metric, "value": [now, str(v)]}

    async def handler(request: web.Request) -> web.Response:
        q = request.query["query"]
        result: list[dict[str, object]] = []
        if q.startswith("max by (namespace, model_name) (timestamp("):
            result = [
                vec({"namespace": "prod", "model_name": "m0"}, now - 10),
                vec({"namespace": "prod", "deployment": "m0"}, now - 500),
            ]
        elif q.startswith("sum by (namespace, model_name, status)"):
            result = [vec({"namespace": "prod", "model_name": "m0", "status": "OK"}, 42.0)]
        elif "__name__=~" in q:
            result = [vec({"__name__": "kube_deployment_spec_replicas", "namespace": "prod", "deployment": "m0"}, 3)]
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})

    async for url in _serve(handler):
        yield url


async def test_model_and_deployment_freshness_are_kept_apart(canned_prometheus: str) -> None:
    src = PrometheusSource(canned_prometheus, timeout_s=2.0)
    o = (await asyncio.to_thread(src.observe, TARGETS[:1], time.time()))[TargetKey("prod", "m0")]
    src.close()
    assert o.request_rate_rps.ok and o.request_rate_rps.value == 42.0  # TF Serving series are fresh
    assert o.current_replicas is None  # kube-state-metrics is 500 s old: stale, not trusted
    assert o.gpu_util.status is SignalStatus.MISSING
