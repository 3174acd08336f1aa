"""The GPU saturation check through the real metrics path: emulated replicas slower than the spec's
profile, the fake DCGM exporter, a real Prometheus, `PrometheusSource`, then `decide()`.

The replicas run the profile's batches 4× slower (`service_scale=4`: the hardware the spec's capacity
model was not calibrated for). At ~70 requests/s per replica their GPUs are busy ~100 % while the
model predicts under half that, and the observed load fits one replica by the model: without the GPU
signal the policy scales 2 → 1 onto a GPU that is already saturated; with it, it holds at 2 and says why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from autoscaler.core import telemetry_names as n
from autoscaler.core.decide import State, decide
from autoscaler.core.serving_signals import GPU_MODEL_GAP, GPU_SATURATED
from autoscaler.core.store import DecisionStore
from autoscaler.core.types import Binding, Observation, Signal, SignalStatus, TargetKey
from autoscaler.emulator import (
    EmulatorReplica,
    FakeDcgmExporter,
    FakeKubeStateMetrics,
    ReplicaConfig,
    poisson_arrivals,
    replay,
)
from autoscaler.runtime.records import decision_dict
from autoscaler.runtime.telemetry import Telemetry
from autoscaler.sources.prometheus import PrometheusSource
from autoscaler.spec.types import BatchingParams, Provisioning, ServingAutoscalerSpec, TargetRef

if TYPE_CHECKING:
    from tests.fixtures.prometheus import PrometheusServer

pytestmark = [pytest.mark.prometheus, pytest.mark.asyncio(loop_scope="module")]

NS = "t-gpu-saturation"
PARAMS = BatchingParams(max_batch_size=8, batch_timeout_us=3_000, num_batch_threads=1)
SPEC = ServingAutoscalerSpec(
    name="resnet",
    target=TargetRef(NS, "resnet", "resnet"),
    min_replicas=1,
    max_replicas=4,
    provisioning=Provisioning(lead_time_s=60.0, stale_after_s=120.0),
)
SPEC = dataclasses.replace(SPEC, batching=dataclasses.replace(SPEC.batching, initial=PARAMS))
KEY = TargetKey(NS, "resnet")
RATE_RPS = 140.0  # two replicas: 70 rps each
LOAD_S = 8.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def observed(prometheus: PrometheusServer) -> AsyncIterator[Observation]:
    prom = prometheus
    names = ["resnet-6b7f9c8d4-aaaaa", "resnet-6b7f9c8d4-bbbbb"]
    reps = [
        await EmulatorReplica(ReplicaConfig(namespace=NS, pod=n, batching=PARAMS, service_scale=4.0)).start()
        for n in names
    ]
    dcgm = await FakeDcgmExporter(reps, sample_period_s=1.0).start()
    ksm = await FakeKubeStateMetrics().start()
    ksm.set_deployment(NS, "resnet", spec=2, status=2, ready=2)
    prom.set_targets("tfserving", [(f"127.0.0.1:{r.port}", {"namespace": NS, "pod": r.pod}) for r in reps])
    prom.set_targets("dcgm", [(f"127.0.0.1:{dcgm.port}", {})])
    prom.set_targets("ksm", [(f"127.0.0.1:{ksm.port}", {})])
    src = PrometheusSource(prom.url, timeout_s=5.0, rate_window_s=6.0, scrape_interval_s=1.0)
    try:
        await asyncio.gather(*(r.wait_ready(2) for r in reps))
        hostports = [f"127.0.0.1:{p}" for p in (*(r.port for r in reps), dcgm.port, ksm.port)]
        await asyncio.to_thread(prom.wait_up, hostports)
        load = asyncio.create_task(
            replay(poisson_arrivals(RATE_RPS, LOAD_S + 5, seed=5), [r.url for r in reps], model="resnet")
        )
        await asyncio.sleep(LOAD_S)
        obs = (await asyncio.to_thread(src.observe, [SPEC], time.time()))[KEY]
        load.cancel()
        yield obs
    finally:
        src.close()
        for r in reps:
            await r.stop()
        await dcgm.stop()
        await ksm.stop()
        for job in ("tfserving", "dcgm", "ksm"):
            prom.set_targets(job, [])


async def test_saturated_gpu_holds_the_scale_down_the_model_wants(observed: Observation) -> None:
    o = observed
    print(f"observed: gpu {o.gpu_util} rate {o.request_rate_rps} replicas {o.current_replicas}/{o.ready_replicas}")
    assert o.gpu_util.ok and (o.gpu_util.value or 0.0) >= GPU_SATURATED
    assert o.request_rate_rps.ok and (o.current_replicas, o.ready_replicas) == (2, 2)
    now_s = o.time_s
    state = State.initial(SPEC, now_s - 3600.0, 2)  # the start's stabilization window is long past
    no_gpu = dataclasses.replace(o, gpu_util=Signal.missing(SignalStatus.MISSING, "no DCGM"))
    blind, _ = decide(SPEC, state, no_gpu, None, now_s=now_s)
    assert blind.desired_replicas == 1  # the capacity model alone: the load fits one replica
    d, _ = decide(SPEC, state, o, None, now_s=now_s)
    assert d.desired_replicas == 2 and d.binding is Binding.GPU_SATURATION
    assert d.gpu_util is not None and d.gpu_util_model is not None
    assert d.gpu_util - d.gpu_util_model >= GPU_MODEL_GAP
    assert f"GPU busy {d.gpu_util:.0%} while the capacity model predicts {d.gpu_util_model:.0%}" in d.reason
    doc = decision_dict(d)
    assert doc["binding"] == "gpu-saturation" and doc["gpu_util"] == round(d.gpu_util, 3)
    telemetry = Telemetry(DecisionStore())
    telemetry.store.put_decision(KEY, "resnet", d, o)
    text = telemetry.render().decode()
    lv = f'deployment="resnet",model="resnet",namespace="{NS}"'
    assert f"{n.GPU_UTIL}{{{lv}}} {d.gpu_util}" in text
    assert f"{n.GPU_UTIL_MODEL}{{{lv}}} {d.gpu_util_model}" in text
    assert 'binding="gpu-saturation"' in text
