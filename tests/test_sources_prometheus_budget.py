"""A slow Prometheus costs one tick at most one query timeout: every query of a tick, per-pod ones
included, is in flight at once, and `observe_pods` at the same instant asks nothing more.

The fake Prometheus (aiohttp on loopback) holds every query until the test ends and records how
many were waiting at once. Before, queries went out in waves of 8 and the pod queries in a third
wave, so a tick lasted about three timeouts. Timing is not asserted; the waves are counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web
from test_sources_prometheus_failures import TARGETS, _serve

from autoscaler.core.types import SignalStatus
from autoscaler.sources.prometheus import PrometheusSource
from autoscaler.spec.types import SLO, Provisioning


class Held:
    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.seen = 0
        self.release = asyncio.Event()

    async def handler(self, request: web.Request) -> web.Response:
        self.seen += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})


@pytest.fixture
async def held() -> AsyncIterator[tuple[Held, str]]:
    h = Held()
    async for url in _serve(h.handler):
        yield h, url
        h.release.set()


async def test_one_tick_sends_every_query_in_one_wave(held: tuple[Held, str]) -> None:
    h, url = held
    # distinct burst windows, quantiles and SLOs: 7 + 3 + 3 + 3 observation queries + 2 + 3 pod queries
    targets = [
        replace(t, slo=SLO(latency_quantile=q, latency_ms=ms), provisioning=Provisioning(burst_window_s=bw))
        for t, q, ms, bw in zip(TARGETS, (0.9, 0.95, 0.99), (50.0, 100.0, 200.0), (10.0, 20.0, 40.0), strict=True)
    ]
    src = PrometheusSource(url, timeout_s=0.5, scrape_interval_s=5.0)
    now_s = time.time()
    try:
        obs = await asyncio.to_thread(src.observe, targets, now_s)
        sent = src.queries_sent
        pods = await asyncio.to_thread(src.observe_pods, targets, now_s)
    finally:
        h.release.set()
        src.close()
    assert sent == 21
    assert h.max_in_flight == sent  # one wave (before: 8, then 8, then 5)
    assert src.queries_sent == sent  # observe_pods reused the tick's answers
    assert all(o.request_rate_rps.status is SignalStatus.ERROR for o in obs.values())
    assert all(p == () for p in pods.values())  # no pod signals on a timed-out tick, no invented zeros
