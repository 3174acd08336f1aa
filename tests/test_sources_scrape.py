"""ScrapeSource against live emulator replicas: rates, quantiles, batch sizes, and explicit failures."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from autoscaler.core.types import SignalStatus, TargetKey
from autoscaler.emulator import EmulatorReplica, ReplicaConfig, poisson_arrivals, replay
from autoscaler.sources.histogram import fraction_at_or_below, histogram_quantile
from autoscaler.sources.scrape import ScrapeSource, parse_tf_serving_page
from autoscaler.spec.types import SLO, BatchingParams, ServingAutoscalerSpec, TargetRef

SPEC = ServingAutoscalerSpec(
    name="resnet", target=TargetRef("serving", "resnet", "resnet"), slo=SLO(latency_quantile=0.9, latency_ms=10)
)
KEY = TargetKey("serving", "resnet")


def test_histogram_quantile_matches_promql_interpolation() -> None:
    b = [(1.0, 10.0), (2.0, 30.0), (4.0, 40.0), (math.inf, 40.0)]
    assert histogram_quantile(0.5, b) == pytest.approx(1.0 + (20 - 10) / 20)  # rank 20 in (1, 2]
    assert histogram_quantile(0.25, b) == pytest.approx(1.0)  # rank 10: top of the first bucket
    assert histogram_quantile(0.05, b) == pytest.approx(0.2)  # first bucket starts at 0
    assert histogram_quantile(1.0, [(1.0, 1.0), (math.inf, 5.0)]) == 1.0  # rank in +Inf: largest finite
    assert math.isnan(histogram_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]))
    assert math.isnan(histogram_quantile(0.5, [(1.0, 3.0)]))  # no +Inf bucket


def test_fraction_at_or_below_inverts_histogram_quantile() -> None:
    b = [(1.0, 10.0), (2.0, 30.0), (4.0, 40.0), (math.inf, 40.0)]
    for q in (0.1, 0.25, 0.5, 0.8, 0.95):
        assert fraction_at_or_below(histogram_quantile(q, b), b) == pytest.approx(q)
    assert fraction_at_or_below(9.0, [(1.0, 1.0), (math.inf, 4.0)]) == 0.25  # +Inf bucket is a miss
    assert math.isnan(fraction_at_or_below(1.0, [(1.0, 0.0), (math.inf, 0.0)]))


def test_parser_keeps_tf_serving_counter_names() -> None:
    page = (
        "# TYPE :tensorflow:serving:request_count counter\n"
        ':tensorflow:serving:request_count{model_name="m",status="OK"} 7\n'
    )
    s = parse_tf_serving_page(page)
    assert s[(":tensorflow:serving:request_count", (("model_name", "m"), ("status", "OK")))] == 7.0


async def test_scrape_source_measures_what_the_replicas_were_driven_to() -> None:
    params = BatchingParams(max_batch_size=8, batch_timeout_us=4_000, num_batch_threads=2)
    cfgs = [ReplicaConfig(namespace="serving", batching=params, time_scale=2.0) for _ in range(2)]
    reps = [await EmulatorReplica(c).start() for c in cfgs]
    src = ScrapeSource({KEY: {f"resnet-{i}": r.url for i, r in enumerate(reps)}}, rate_window_s=30.0)
    try:
        await asyncio.gather(*(r.wait_ready(2) for r in reps))
        loop = asyncio.get_running_loop()
        obs0 = await asyncio.to_thread(src.observe, [SPEC], loop.time())
        assert obs0[KEY].request_rate_rps.status is SignalStatus.MISSING  # one scrape: no rate yet
        rate = 300.0
        t0 = loop.time()
        res = await replay(poisson_arrivals(rate, 2.0, seed=7), [r.url for r in reps], model="resnet")
        obs = (await asyncio.to_thread(src.observe, [SPEC], loop.time()))[KEY]
        elapsed = loop.time() - t0
        pods = src.observe_pods([SPEC], loop.time() - 0.0)
    finally:
        for r in reps:
            await r.stop()
        src.close()
    assert obs.request_rate_rps.ok and obs.request_rate_rps.value is not None
    # counter increase / scrape interval: exactly the OK count over the elapsed time between scrapes
    assert obs.request_rate_rps.value == pytest.approx(res.ok / elapsed, rel=0.15)
    assert obs.rejected_rps.value == 0.0 and obs.error_rate_rps.value == 0.0
    served_batches = sum(sum(r.metrics.processed_batch_size.cells[()].counts) for r in reps)
    assert obs.mean_batch_size.value == pytest.approx(res.ok / served_batches, rel=1e-6)
    assert obs.mean_batch_size.value is not None and 1.0 <= obs.mean_batch_size.value <= 8.0
    # p90 from buckets vs the client-side p90 (client adds HTTP overhead; buckets are ×1.8 wide)
    assert obs.latency_ms.value is not None
    assert res.latency_quantile_ms(0.9) / 2.5 < obs.latency_ms.value < res.latency_quantile_ms(0.9) * 1.5
    # attainment: exactly the replicas' own buckets (both scrapes bracket the whole run)
    own: dict[float, float] = {}
    for r in reps:
        h = r.metrics.request_latency.cells[("resnet", "predict", "REST")]
        cum = 0.0
        for le, c in zip([*r.metrics.request_latency.limits, math.inf], h.counts, strict=True):
            cum += c
            own[le] = own.get(le, 0.0) + cum
    assert obs.slo_attainment.value == pytest.approx(fraction_at_or_below(10_000.0, own.items()), abs=1e-3)
    assert obs.queue_latency_ms.ok and obs.gpu_util.status is SignalStatus.MISSING
    assert obs.current_replicas == 2 and obs.ready_replicas == 2 and obs.pending_replicas == 0
    assert obs.cold_start_s.ok
    assert [p.pod for p in pods[KEY]] == ["resnet-0", "resnet-1"]
    per_pod = [p.request_rate_rps or 0.0 for p in pods[KEY]]
    assert sum(per_pod) == pytest.approx(obs.request_rate_rps.value, rel=1e-9)
    assert all(p.batch_fill is not None and 0 < p.batch_fill <= 1 for p in pods[KEY])


async def test_scrape_failures_are_explicit_never_zero(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    # a port nobody listens on
    src = ScrapeSource({KEY: {"resnet-0": "http://127.0.0.1:9"}}, timeout_s=0.5)
    obs = (await asyncio.to_thread(src.observe, [SPEC], 100.0))[KEY]
    assert obs.request_rate_rps.status is SignalStatus.ERROR and obs.request_rate_rps.value is None
    assert obs.latency_ms.status is SignalStatus.ERROR
    assert any("resnet-0" in r.getMessage() for r in caplog.records)
    src.set_endpoints(KEY, {})
    obs = (await asyncio.to_thread(src.observe, [SPEC], 101.0))[KEY]
    assert obs.request_rate_rps.status is SignalStatus.MISSING
    src.close()


async def test_overload_shows_up_as_rejections_not_errors() -> None:
    # one thread, tiny queue, slow service: most of a burst is rejected with UNAVAILABLE (HTTP 503)
    params = BatchingParams(max_batch_size=2, batch_timeout_us=0, num_batch_threads=1, max_enqueued_batches=2)
    r = await EmulatorReplica(ReplicaConfig(namespace="serving", batching=params, service_scale=3.0)).start()
    src = ScrapeSource({KEY: {"resnet-0": r.url}}, rate_window_s=30.0)
    try:
        await r.wait_ready(2)
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(src.observe, [SPEC], loop.time())
        res = await replay(poisson_arrivals(400.0, 1.0, seed=5), [r.url], model="resnet")
        obs = (await asyncio.to_thread(src.observe, [SPEC], loop.time()))[KEY]
    finally:
        await r.stop()
        src.close()
    assert res.rejected > res.ok > 0 and res.errors == 0
    assert obs.rejected_rps.value is not None and obs.request_rate_rps.value is not None
    assert obs.rejected_rps.value / obs.request_rate_rps.value == pytest.approx(res.rejected / res.ok, rel=1e-6)
    assert obs.error_rate_rps.value == 0.0
    assert obs.arrival_rps.value == pytest.approx(obs.request_rate_rps.value + obs.rejected_rps.value)
