"""Absurd values from Prometheus are faults, not load: NAN with a reason, never a measurement.

A broken recording rule or exporter answering 1e308 requests/s used to pin the target at
maxReplicas and in panic mode for a minute; negative rates and out-of-range ratios likewise.
A canned Prometheus (aiohttp on loopback) answers every query with such values.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from test_sources_prometheus_failures import TARGETS, _serve

from autoscaler.core.types import SignalStatus, TargetKey
from autoscaler.sources.prometheus import PrometheusSource


@pytest.fixture
async def absurd_prometheus() -> AsyncIterator[str]:
    now = time.time()

    def vec(metric: dict[str, str], v: float | str) -> dict[str, object]:
        return {"metric": metric, "value": [now, str(v)]}

    async def handler(request: web.Request) -> web.Response:
        q = request.query["query"]
        m = {"namespace": "prod", "model_name": "m0"}
        if q.startswith("max by (namespace, model_name) (timestamp("):
            result = [vec(m, now - 5)]
        elif q.startswith("sum by (namespace, model_name, status)"):
            result = [vec({**m, "status": "OK"}, 1e308), vec({**m, "status": "UNAVAILABLE"}, -3.0)]
        elif "__name__=~" in q:
            result = [
                vec({"__name__": "kube_deployment_spec_replicas", "namespace": "prod", "deployment": "m0"}, 1e300)
            ]
        elif "DCGM" in q:
            result = [vec(m, 7.5)]  # a ratio of 7.5
        else:
            result = [vec(m, 1e308)]
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})

    async for url in _serve(handler):
        yield url


async def test_absurd_values_are_nan_not_load(absurd_prometheus: str) -> None:
    src = PrometheusSource(absurd_prometheus, timeout_s=2.0)
    try:
        o = (await asyncio.to_thread(src.observe, TARGETS[:1], time.time()))[TargetKey("prod", "m0")]
    finally:
        src.close()
    for name in ("request_rate_rps", "rejected_rps", "burst_rate_rps", "latency_ms", "gpu_util", "mean_batch_size"):
        s = getattr(o, name)
        assert s.status is SignalStatus.NAN and s.value is None, (name, s)
        assert "implausible value" in s.detail
    assert o.error_rate_rps.ok and o.error_rate_rps.value == 0.0  # no error statuses: a plain zero
    assert o.current_replicas is None
