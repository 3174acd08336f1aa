"""Multi-model servers through a real Prometheus: per-model signals joined into one Deployment.

Two emulated pods of one Deployment each serve two models (one batch queue per model, one device).
The PrometheusSource must see the summed load, each model's share, the worst model's latency and
the per-pod batch queue / GPU signals that `promql.pod_model` leaves out for multi-model pods.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from autoscaler.control.controller import PredictiveController
from autoscaler.core.types import Observation, Signal, SignalStatus, TargetKey
from autoscaler.emulator import (
    EmulatorReplica,
    FakeDcgmExporter,
    FakeKubeStateMetrics,
    ReplicaConfig,
    poisson_arrivals,
    replay,
)
from autoscaler.sources.history import fetch_rate_history
from autoscaler.sources.multimodel import combine, sum_rates, worst_latency
from autoscaler.sources.prometheus import PrometheusSource
from autoscaler.spec.types import (
    SLO,
    BatchingParams,
    Provisioning,
    ServedModel,
    ServiceProfile,
    ServingAutoscalerSpec,
    TargetRef,
)

if TYPE_CHECKING:
    from tests.fixtures.prometheus import PrometheusServer

NS = "t-prom-multimodel"
FAST = ServiceProfile(batch_sizes=(1, 8), batch_latency_ms=(2.0, 6.0), source="fast")
SLOW = ServiceProfile(batch_sizes=(1, 8), batch_latency_ms=(6.0, 20.0), source="slow")
RATES = {"slow": 40.0, "fast": 120.0}  # per Deployment
SPEC = ServingAutoscalerSpec(
    name="mm",
    target=TargetRef(NS, "mm", "slow", models=(ServedModel("slow", profile=SLOW), ServedModel("fast", profile=FAST))),
    slo=SLO(latency_quantile=0.9, latency_ms=50.0),
    provisioning=Provisioning(burst_window_s=4.0),
    profile=SLOW,
)
KEY = TargetKey(NS, "mm")


@dataclass
class Live:
    replicas: list[EmulatorReplica]
    obs: Observation
    pods: tuple[object, ...]
    busy_fraction: float
    history_rps: list[float]
    src: PrometheusSource
    query_time_s: float


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(prometheus: PrometheusServer) -> AsyncIterator[Live]:
    prom = prometheus
    params = BatchingParams(max_batch_size=8, batch_timeout_us=2_000, num_batch_threads=2)
    names = ["mm-6b7f9c8d4-abcde", "mm-6b7f9c8d4-fghij"]
    reps = [
        await EmulatorReplica(
            ReplicaConfig(
                model_name="slow",
                profile=SLOW,
                other_models=(ServedModel("fast", profile=FAST),),
                namespace=NS,
                pod=n,
                batching=params,
                time_scale=2.0,
            )
        ).start()
        for n in names
    ]
    dcgm = await FakeDcgmExporter(reps, sample_period_s=1.0).start()
    ksm = await FakeKubeStateMetrics().start()
    now = time.time()
    ksm.set_deployment(NS, "mm", spec=2, status=2, ready=2)
    for pod in names:
        ksm.set_pod(NS, pod, created_s=now - 300, ready_time_s=now - 250)
    prom.set_targets("tfserving", [(f"127.0.0.1:{r.port}", {"namespace": NS, "pod": r.pod}) for r in reps])
    prom.set_targets("dcgm", [(f"127.0.0.1:{dcgm.port}", {})])
    prom.set_targets("ksm", [(f"127.0.0.1:{ksm.port}", {})])
    src = PrometheusSource(prom.url, timeout_s=5.0, rate_window_s=6.0, scrape_interval_s=1.0)
    try:
        await asyncio.gather(*(r.wait_ready(2) for r in reps))
        hostports = [f"127.0.0.1:{p}" for p in (*(r.port for r in reps), dcgm.port, ksm.port)]
        await asyncio.to_thread(prom.wait_up, hostports)
        urls = [r.url for r in reps]
        busy0 = [r.busy_seconds() for r in reps]
        loads = [
            asyncio.create_task(replay(poisson_arrivals(rate, 14.0, seed=i), urls, model=m))
            for i, (m, rate) in enumerate(RATES.items())
        ]
        t0 = asyncio.get_running_loop().time()
        await asyncio.sleep(9.0)
        q = time.time()
        obs = await asyncio.to_thread(src.observe, [SPEC], q)
        pods = await asyncio.to_thread(src.observe_pods, [SPEC], q)
        hist = await asyncio.to_thread(
            fetch_rate_history, prom.url, SPEC, since_s=q - 4.0, step_s=2.0, now_s=q, rate_window_s=6.0
        )
        elapsed = asyncio.get_running_loop().time() - t0
        busy = sum(r.busy_seconds() - b for r, b in zip(reps, busy0, strict=True)) / elapsed / len(reps)
        for t in loads:
            t.cancel()
        yield Live(reps, obs[KEY], pods[KEY], busy, [float(x) for x in hist], src, q)
    finally:
        src.close()
        for r in reps:
            await r.stop()
        await dcgm.stop()
        await ksm.stop()
        for job in ("tfserving", "dcgm", "ksm"):
            prom.set_targets(job, [])


@pytest.mark.prometheus
@pytest.mark.asyncio(loop_scope="module")
async def test_deployment_signals_are_the_models_combined(live: Live) -> None:
    o = live.obs
    print(f"observed: {o}\nbusy: {live.busy_fraction}")
    total = sum(RATES.values())
    assert o.request_rate_rps.ok and o.request_rate_rps.value == pytest.approx(total, rel=0.2)
    assert o.burst_rate_rps.ok and o.burst_rate_rps.value == pytest.approx(total, rel=0.3)
    rates = dict(o.model_rates_rps)
    assert set(rates) == {"slow", "fast"}
    assert rates["fast"] / (rates["fast"] + rates["slow"]) == pytest.approx(0.75, abs=0.07)
    assert o.latency_ms.ok and "worst of 2 models" in o.latency_ms.detail
    assert o.slo_attainment.ok and 0.0 < (o.slo_attainment.value or 0.0) <= 1.0
    # the per-pod signals a pod_model join drops for multi-model pods
    assert o.mean_batch_size.ok and 1.0 <= (o.mean_batch_size.value or 0.0) <= 8.0
    assert o.queue_latency_ms.ok and (o.queue_latency_ms.value or 0.0) >= 0.0
    assert o.gpu_util.ok and o.gpu_util.value == pytest.approx(live.busy_fraction, abs=0.15)
    assert (o.current_replicas, o.ready_replicas) == (2, 2)
    assert [p.pod for p in live.pods] == ["mm-6b7f9c8d4-abcde", "mm-6b7f9c8d4-fghij"]  # type: ignore[attr-defined]
    pod_total = sum(p.request_rate_rps or 0.0 for p in live.pods)  # type: ignore[attr-defined]
    assert pod_total == pytest.approx(o.request_rate_rps.value or 0.0, rel=0.1)
    # the forecaster's warm-up history is the Deployment's load: every model's, summed
    assert live.history_rps and live.history_rps[-1] == pytest.approx(total, rel=0.25)
    # the decision sizes the Deployment for the observed mix (mostly the fast model)
    d = PredictiveController(SPEC, None).decide(o, None, o.time_s)
    assert d.valid and d.observed_rps == pytest.approx(o.arrival_rps.value)


@pytest.mark.prometheus
@pytest.mark.asyncio(loop_scope="module")
async def test_problems_name_the_model_and_per_pod_signals_are_not_reported_missing(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """The per-model joins of queue wait, batch size and GPU are empty for multi-model pods by design:
    no warning about them; a model without series is named in the line about it."""
    caplog.set_level("DEBUG", logger="autoscaler.sources.prometheus")
    ghost_model = replace(SPEC.target, models=(*SPEC.target.models, ServedModel("ghost")))
    o = (await asyncio.to_thread(live.src.observe, [replace(SPEC, target=ghost_model)], live.query_time_s))[KEY]
    assert o.request_rate_rps.ok and "ghost: no series yet, 0" in o.request_rate_rps.detail
    lines = [r.getMessage() for r in caplog.records]
    assert not any(f"signal {n} is" in ln for ln in lines for n in ("queue_latency_ms", "mean_batch_size", "gpu_util"))
    assert any("request_rate_rps is missing" in ln and f"{KEY} [ghost]" in ln for ln in lines)


def test_combine_rules() -> None:
    """Sum of rates (a model without series is 0), worst latency, request-weighted attainment."""
    a = Observation(
        time_s=1.0,
        request_rate_rps=Signal.of(30.0),
        rejected_rps=Signal.of(10.0),
        latency_ms=Signal.of(80.0),
        slo_attainment=Signal.of(0.9),
        current_replicas=3,
    )
    b = Observation(
        time_s=1.0,
        request_rate_rps=Signal.of(90.0),
        rejected_rps=Signal.of(0.0),
        latency_ms=Signal.of(20.0),
        slo_attainment=Signal.of(1.0),
        current_replicas=3,
    )
    missing = Signal.missing(SignalStatus.MISSING, "no request_count series")
    c = Observation(time_s=1.0, request_rate_rps=missing, rejected_rps=missing, latency_ms=missing)
    o = combine({"a": a, "b": b, "c": c}, a)
    assert o.request_rate_rps.value == 120.0 and "c: no series yet, 0" in o.request_rate_rps.detail
    assert o.rejected_rps.value == 10.0 and o.latency_ms.value == 80.0
    assert o.slo_attainment.value == pytest.approx((30 * 0.9 + 90 * 1.0) / 120)
    assert o.model_rates_rps == (("a", 40.0), ("b", 90.0), ("c", 0.0))
    assert o.current_replicas == 3
    err = Signal.missing(SignalStatus.ERROR, "query failed")
    assert sum_rates([Signal.of(1.0), err], ["a", "b"]) is err  # a sum with a failed part is no sum
    assert sum_rates([missing, missing], ["a", "b"]).status is SignalStatus.MISSING
    nan = Signal.missing(SignalStatus.NAN, "0/0")
    assert worst_latency([nan, Signal.of(5.0)], ["a", "b"]).value == 5.0  # idle model: left out
    assert worst_latency([nan, nan], ["a", "b"]) is nan


@pytest.mark.asyncio
async def test_direct_scrape_combines_the_models_too() -> None:
    """The Prometheus-less path: per-model counters summed, the worst model's latency, each share."""
    from autoscaler.sources.scrape import ScrapeSource

    params = BatchingParams(max_batch_size=8, batch_timeout_us=2_000, num_batch_threads=2)
    cfg = ReplicaConfig(
        model_name="slow", profile=SLOW, other_models=(ServedModel("fast", profile=FAST),), batching=params
    )
    reps = [await EmulatorReplica(cfg).start() for _ in range(2)]
    src = ScrapeSource({KEY: {f"mm-{i}": r.url for i, r in enumerate(reps)}}, rate_window_s=30.0)
    try:
        await asyncio.gather(*(r.wait_ready(2) for r in reps))
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(src.observe, [SPEC], loop.time())
        urls = [r.url for r in reps]
        res = await asyncio.gather(
            replay(poisson_arrivals(60.0, 2.0, seed=5), urls, model="slow"),
            replay(poisson_arrivals(180.0, 2.0, seed=6), urls, model="fast"),
        )
        obs = (await asyncio.to_thread(src.observe, [SPEC], loop.time()))[KEY]
        pods = src.observe_pods([SPEC], loop.time())[KEY]
    finally:
        for r in reps:
            await r.stop()
        src.close()
    ok = {m: r.ok for m, r in zip(("slow", "fast"), res, strict=True)}
    rates = dict(obs.model_rates_rps)
    assert rates["slow"] / rates["fast"] == pytest.approx(ok["slow"] / ok["fast"], rel=1e-9)  # exact counters
    assert obs.request_rate_rps.value == pytest.approx(rates["slow"] + rates["fast"], rel=1e-9)
    assert obs.latency_ms.ok and obs.latency_ms.detail.startswith("worst of 2 models")
    assert obs.mean_batch_size.ok and obs.current_replicas == 2
    assert sum(p.request_rate_rps or 0.0 for p in pods) == pytest.approx(obs.request_rate_rps.value, rel=1e-9)
    assert all(p.latency_ms is not None for p in pods)
