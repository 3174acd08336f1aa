"""Open-loop load generator: replays request arrival times against TF Serving REST endpoints.

Owns driving load in tests and the demo. The caller supplies arrival timestamps (a numpy array;
loading a trace is the simulator's job, and the emulator layer must not import `sim/`). Each
request is sent at its arrival time whether or not earlier ones have answered (open loop, as
real clients behave under a traffic trace), round robin over the endpoints that are ready *at
that moment* (a callable may return a changing list while replicas start and stop). Bounded by
request count and wall time. Records per-request send time, latency and HTTP status, and
summarizes sent / ok / rejected (503, TF UNAVAILABLE) / errors and latency quantiles.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
import numpy as np
import numpy.typing as npt

from autoscaler.core.types import FloatArray

IntArray = npt.NDArray[np.int64]
Endpoints = Sequence[str] | Callable[[], Sequence[str]]


@dataclass(frozen=True)
class LoadResult:
    """Per-request records (aligned arrays) and their summary."""

    send_offset_s: FloatArray  # when each request was sent, seconds after the replay started
    latency_ms: FloatArray  # NaN when no HTTP response arrived
    status: IntArray  # HTTP status; 0 = connection error/timeout, -1 = no ready endpoint
    duration_s: float

    @property
    def sent(self) -> int:
        return int(np.count_nonzero(self.status != -1))

    @property
    def ok(self) -> int:
        return int(np.count_nonzero(self.status == 200))

    @property
    def rejected(self) -> int:
        return int(np.count_nonzero(self.status == 503))

    @property
    def errors(self) -> int:
        return int(np.count_nonzero((self.status != 200) & (self.status != 503)))

    def latency_quantile_ms(self, q: float, *, ok_only: bool = True) -> float:
        mask = self.status == 200 if ok_only else np.isfinite(self.latency_ms)
        vals = self.latency_ms[mask]
        return float(np.quantile(vals, q)) if len(vals) else math.nan

    def summary(self) -> dict[str, float | int]:
        return {
            "requests": len(self.status),
            "sent": self.sent,
            "ok": self.ok,
            "rejected": self.rejected,
            "errors": self.errors,
            "duration_s": round(self.duration_s, 3),
            "rate_rps": round(self.sent / self.duration_s, 3) if self.duration_s > 0 else math.nan,
            "p50_ms": self.latency_quantile_ms(0.5),
            "p95_ms": self.latency_quantile_ms(0.95),
            "p99_ms": self.latency_quantile_ms(0.99),
        }


def _endpoint_fn(endpoints: Endpoints) -> Callable[[], Sequence[str]]:
    if callable(endpoints):
        return endpoints
    fixed = list(endpoints)
    return lambda: fixed


async def replay(
    arrivals_s: FloatArray,
    endpoints: Endpoints,
    *,
    model: str,
    rows: int = 1,
    start_s: float | None = None,
    time_scale: float = 1.0,
    max_requests: int | None = None,
    max_duration_s: float | None = None,
    timeout_s: float = 10.0,
) -> LoadResult:
    """Send one Predict per arrival to `<endpoint>/v1/models/<model>:predict`; wait for all answers.

    `time_scale` k replays k× faster (arrival offsets divided by k). `start_s` is the trace time
    that maps to "now" (default: the first arrival).
    """
    arr = np.sort(np.asarray(arrivals_s, dtype=np.float64))
    if len(arr) == 0:
        return LoadResult(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64), 0.0)
    origin = float(arr[0]) if start_s is None else float(start_s)
    offsets = (arr - origin) / time_scale
    if max_duration_s is not None:
        offsets = offsets[offsets <= max_duration_s]
    if max_requests is not None:
        offsets = offsets[:max_requests]
    n = len(offsets)
    latency = np.full(n, np.nan)
    status = np.full(n, -1, dtype=np.int64)
    sent_at = np.full(n, np.nan)
    get_endpoints = _endpoint_fn(endpoints)
    body = json.dumps({"instances": [[0.0]] * rows}).encode()
    loop = asyncio.get_running_loop()
    rr = 0

    async def one(i: int, url: str, session: aiohttp.ClientSession) -> None:
        t0 = loop.time()
        try:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                status[i] = resp.status
        except (aiohttp.ClientError, TimeoutError):
            status[i] = 0
        latency[i] = (loop.time() - t0) * 1e3 if status[i] > 0 else np.nan

    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    tasks: list[asyncio.Task[None]] = []
    t_start = loop.time()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        i = 0
        while i < n:
            now = loop.time() - t_start
            if offsets[i] > now:
                await asyncio.sleep(offsets[i] - now)
                continue
            # fire everything that is due
            while i < n and offsets[i] <= loop.time() - t_start:
                eps = get_endpoints()
                sent_at[i] = loop.time() - t_start
                if eps:
                    url = f"{eps[rr % len(eps)].rstrip('/')}/v1/models/{model}:predict"
                    rr += 1
                    tasks.append(asyncio.create_task(one(i, url, session)))
                i += 1
        if tasks:
            await asyncio.gather(*tasks)
    duration = max(loop.time() - t_start, float(offsets[-1]) if n else 0.0)
    return LoadResult(sent_at, latency, status, duration)


def poisson_arrivals(rate_rps: float, duration_s: float, seed: int = 0) -> FloatArray:
    """Arrival times of a Poisson process (a convenience for tests and `emulate`)."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate_rps * duration_s)
    return np.sort(rng.uniform(0.0, duration_s, size=n))
