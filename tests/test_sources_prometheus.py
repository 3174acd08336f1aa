"""PrometheusSource against a real Prometheus scraping emulator replicas, fake DCGM and fake KSM."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from autoscaler.core.types import Observation, SignalStatus, TargetKey
from autoscaler.emulator import (
    EmulatorReplica,
    FakeDcgmExporter,
    FakeKubeStateMetrics,
    ReplicaConfig,
    poisson_arrivals,
    replay,
)
from autoscaler.sources.histogram import fraction_at_or_below, histogram_quantile
from autoscaler.sources.prometheus import PrometheusSource
from autoscaler.spec.types import SLO, BatchingParams, Provisioning, ServingAutoscalerSpec, TargetRef

if TYPE_CHECKING:
    from tests.fixtures.prometheus import PrometheusServer

pytestmark = [pytest.mark.prometheus, pytest.mark.asyncio(loop_scope="module")]

NS = "t-prom-live"
RATE_RPS = 150.0
LOAD_S = 9.0
SPEC = ServingAutoscalerSpec(
    name="resnet",
    target=TargetRef(NS, "resnet", "resnet"),
    slo=SLO(latency_quantile=0.9, latency_ms=10.0),  # inside the latency distribution: attainment < 1
    provisioning=Provisioning(burst_window_s=4.0, stale_after_s=120.0),
)
IDLE = ServingAutoscalerSpec(name="idle", target=TargetRef(NS, "idle", "idle"), slo=SLO(latency_quantile=0.9))
GHOST = ServingAutoscalerSpec(name="ghost", target=TargetRef(NS, "ghost", "ghost"))
KEY, IDLE_KEY, GHOST_KEY = (TargetKey(NS, n) for n in ("resnet", "idle", "ghost"))


@dataclass
class Live:
    replicas: list[EmulatorReplica]
    idle: EmulatorReplica
    obs: dict[TargetKey, Observation]
    pods: dict[TargetKey, tuple[object, ...]]
    busy_fraction: list[float]
    src: PrometheusSource
    query_time_s: float


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(prometheus: PrometheusServer) -> AsyncIterator[Live]:
    prom = prometheus
    params = BatchingParams(max_batch_size=8, batch_timeout_us=3_000, num_batch_threads=2)
    names = ["resnet-6b7f9c8d4-abcde", "resnet-6b7f9c8d4-fghij"]
    reps = [
        await EmulatorReplica(ReplicaConfig(namespace=NS, pod=n, batching=params, time_scale=2.0)).start()
        for n in names
    ]
    idle = await EmulatorReplica(ReplicaConfig(model_name="idle", namespace=NS, pod="idle-5c4d3b2a1-zzzzz")).start()
    dcgm = await FakeDcgmExporter([*reps, idle], sample_period_s=1.0).start()
    ksm = await FakeKubeStateMetrics().start()
    now = time.time()
    ksm.set_deployment(NS, "resnet", spec=3, status=3, ready=2)
    for pod, cold in zip([*names, "resnet-6b7f9c8d4-kkkkk"], (40.0, 45.0, 60.0), strict=True):
        ksm.set_pod(NS, pod, created_s=now - 300, ready_time_s=now - 300 + cold)
    prom.set_targets("tfserving", [(f"127.0.0.1:{r.port}", {"namespace": NS, "pod": r.pod}) for r in [*reps, idle]])
    prom.set_targets("dcgm", [(f"127.0.0.1:{dcgm.port}", {})])
    prom.set_targets("ksm", [(f"127.0.0.1:{ksm.port}", {})])
    src = PrometheusSource(prom.url, timeout_s=5.0, rate_window_s=6.0, scrape_interval_s=1.0)
    try:
        await asyncio.gather(*(r.wait_ready(2) for r in [*reps, idle]))
        # one request makes the idle model's series exist; then it stays idle
        await replay(poisson_arrivals(50, 0.1, seed=2)[:1], [idle.url], model="idle")
        hostports = [f"127.0.0.1:{p}" for p in (*(r.port for r in [*reps, idle]), dcgm.port, ksm.port)]
        await asyncio.to_thread(prom.wait_up, hostports)
        busy0 = [r.busy_seconds() for r in reps]
        load = asyncio.create_task(
            replay(poisson_arrivals(RATE_RPS, LOAD_S + 5, seed=11), [r.url for r in reps], model="resnet")
        )
        t0 = asyncio.get_running_loop().time()
        await asyncio.sleep(LOAD_S)
        q_time = time.time()
        obs = await asyncio.to_thread(src.observe, [SPEC, IDLE, GHOST], q_time)
        pods = await asyncio.to_thread(src.observe_pods, [SPEC], q_time)
        elapsed = asyncio.get_running_loop().time() - t0
        busy = [(r.busy_seconds() - b0) / elapsed for r, b0 in zip(reps, busy0, strict=True)]
        load.cancel()
        yield Live(reps, idle, obs, pods, busy, src, q_time)  # type: ignore[arg-type]
    finally:
        src.close()
        for r in [*reps, idle]:
            await r.stop()
        await dcgm.stop()
        await ksm.stop()
        for job in ("tfserving", "dcgm", "ksm"):
            prom.set_targets(job, [])


async def test_rates_latency_batches_gpu_and_replicas_match_the_emulators(live: Live) -> None:
    o = live.obs[KEY]
    print(f"observed: {o}\nbusy fractions: {live.busy_fraction}")  # shown with pytest -s
    assert o.request_rate_rps.ok and o.request_rate_rps.value == pytest.approx(RATE_RPS, rel=0.2)
    assert o.burst_rate_rps.ok and o.burst_rate_rps.value == pytest.approx(RATE_RPS, rel=0.3)
    assert o.rejected_rps.value == 0.0 and o.error_rate_rps.value == 0.0  # real zeros: series exist
    # the emulators' own histograms over the whole run, through the same interpolation (µs → ms)
    buckets: dict[float, float] = {}
    for r in live.replicas:
        h = r.metrics.request_latency.cells[("resnet", "predict", "REST")]
        cum = 0.0
        for le, c in zip([*r.metrics.request_latency.limits, math.inf], h.counts, strict=True):
            cum += c
            buckets[le] = buckets.get(le, 0.0) + cum
    want_ms = histogram_quantile(0.9, buckets.items()) / 1e3
    assert o.latency_ms.ok and o.latency_ms.value == pytest.approx(want_ms, rel=0.35)
    want_att = fraction_at_or_below(10_000.0, buckets.items())
    assert 0.05 < want_att < 0.999  # the SLO sits inside the distribution, so this is a real check
    assert o.slo_attainment.ok and o.slo_attainment.value == pytest.approx(want_att, abs=0.1)
    pbs = [r.metrics.processed_batch_size.cells[()] for r in live.replicas]
    want_bs = sum(h.sum for h in pbs) / sum(sum(h.counts) for h in pbs)
    assert o.mean_batch_size.ok and o.mean_batch_size.value == pytest.approx(want_bs, rel=0.25)
    ql = [r.metrics.queuing_latency.cells[("batch_threads",)] for r in live.replicas]
    want_ql_ms = sum(h.sum for h in ql) / sum(sum(h.counts) for h in ql) / 1e3
    assert o.queue_latency_ms.ok and o.queue_latency_ms.value == pytest.approx(want_ql_ms, rel=0.5, abs=0.3)
    assert o.gpu_util.ok and o.gpu_util.value == pytest.approx(sum(live.busy_fraction) / 2, abs=0.15)
    assert 0.05 < (o.gpu_util.value or 0) < 1.0
    assert (o.current_replicas, o.ready_replicas, o.pending_replicas) == (3, 2, 1)
    assert o.cold_start_s.ok and o.cold_start_s.value == pytest.approx(45.0, abs=0.01)  # median of 40/45/60
    pods = live.pods[KEY]
    assert [p.pod for p in pods] == sorted(r.pod for r in live.replicas)  # type: ignore[attr-defined]
    total = sum(p.request_rate_rps or 0.0 for p in pods)  # type: ignore[attr-defined]
    assert total == pytest.approx(o.request_rate_rps.value, rel=0.05)
    assert all(0.0 < (p.batch_fill or 0.0) <= 1.0 for p in pods)  # type: ignore[attr-defined]


async def test_idle_model_is_a_real_zero_but_its_latency_is_nan_and_ghost_is_missing(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    idle = live.obs[IDLE_KEY]
    assert idle.request_rate_rps.status is SignalStatus.OK and idle.request_rate_rps.value == 0.0
    assert idle.latency_ms.status is SignalStatus.NAN and idle.latency_ms.value is None  # 0/0 quantile
    ghost = live.obs[GHOST_KEY]
    for s in (ghost.request_rate_rps, ghost.latency_ms, ghost.gpu_util, ghost.mean_batch_size):
        assert s.status is SignalStatus.MISSING and s.value is None
    assert ghost.current_replicas is None
    # every round logs a line naming the signal and the target; an unchanged problem (the fixture's
    # round already reported it) drops to DEBUG, a new one is a WARNING
    caplog.set_level("DEBUG", logger="autoscaler.sources.prometheus")
    await asyncio.to_thread(live.src.observe, [GHOST], live.query_time_s)
    recs = [r for r in caplog.records if "request_rate_rps is missing" in r.getMessage()]
    assert recs and str(GHOST_KEY) in recs[-1].getMessage() and recs[-1].levelname == "DEBUG"
    caplog.clear()
    await asyncio.to_thread(live.src.observe, [GHOST, IDLE], live.query_time_s)
    recs = [r for r in caplog.records if "latency_ms is nan" in r.getMessage()]
    assert recs and str(IDLE_KEY) in recs[-1].getMessage() and recs[-1].levelname == "WARNING"


async def test_stale_series_are_stale_not_zero(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="autoscaler.sources.prometheus")
    # evaluate 200 s after the last scrape: inside the 5 m lookback, beyond stale_after_s=120
    later = live.query_time_s + 200.0
    o = (await asyncio.to_thread(live.src.observe, [SPEC], later))[KEY]
    for s in (o.request_rate_rps, o.latency_ms, o.burst_rate_rps, o.mean_batch_size):
        assert s.status is SignalStatus.STALE and s.value is None, s
    assert o.current_replicas is None  # kube-state-metrics series equally old
    assert any("stale" in r.getMessage() and str(KEY) in r.getMessage() for r in caplog.records)
