"""The KEDA external scaler over a real gRPC connection on 127.0.0.1, called the way KEDA calls it.

KEDA (pkg/scalers/external_scaler.go) sends ScaledObjectRef{name, namespace, scalerMetadata} with the
trigger metadata, reads GetMetricSpec once (target = targetSizeFloat if > 0 else targetSize), then
GetMetrics with the metric name stripped of its `s<i>-` prefix (value = metricValueFloat if > 0 else
metricValue) and IsActive; the HPA it generates uses AverageValue, i.e. ceil(value*1000 / target*1000).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from autoscaler.adapter import _protogen
from autoscaler.adapter.keda_scaler import KedaScalerServer, pb2, pb2_grpc, start_keda_scaler
from autoscaler.core.store import DecisionStore
from autoscaler.core.types import Binding, Decision, TargetKey
from autoscaler.spec.types import BatchingParams

NOW_S = 1_780_000_000.0


def decision(target: TargetKey, desired: int, time_s: float, valid: bool = True) -> Decision:
    return Decision(
        target=target,
        time_s=time_s,
        desired_replicas=desired,
        current_replicas=1,
        valid=valid,
        reason="test",
        binding=Binding.NONE,
        batching=BatchingParams(),
    )


def ref(deployment: str | None, namespace: str = "serving", name: str = "so") -> Any:
    meta = {"scalerAddress": "tfserving-autoscaler.tfs-autoscaler:9090", "namespace": namespace}
    if deployment is not None:
        meta["deployment"] = deployment
    return pb2.ScaledObjectRef(name=name, namespace="serving", scalerMetadata=meta)


class Env:
    def __init__(self, store: DecisionStore, clock: list[float], server: KedaScalerServer, stub: Any) -> None:
        self.store, self.clock, self.server, self.stub = store, clock, server, stub

    def put(self, deployment: str, desired: int, time_s: float = NOW_S, valid: bool = True) -> None:
        t = TargetKey("serving", deployment)
        self.store.put_decision(t, deployment, decision(t, desired, time_s, valid))


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    store = DecisionStore()
    clock = [NOW_S]
    server = await start_keda_scaler(store, 0, now_s=lambda: clock[0], host="127.0.0.1", poll_interval_s=0.02)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    yield Env(store, clock, server, pb2_grpc.ExternalScalerStub(channel))
    await channel.close()
    await server.stop(0)


async def keda_hpa_replicas(stub: Any, so_ref: Any) -> tuple[int, bool]:
    """What KEDA + the HPA make of our answers: (replicas, active)."""
    spec_resp = await stub.GetMetricSpec(so_ref, timeout=5)
    (spec,) = spec_resp.metricSpecs
    target = spec.targetSizeFloat if spec.targetSizeFloat > 0 else float(spec.targetSize)
    metrics = await stub.GetMetrics(
        pb2.GetMetricsRequest(scaledObjectRef=so_ref, metricName=spec.metricName), timeout=5
    )
    total = 0.0
    for mv in metrics.metricValues:
        assert mv.metricName == spec.metricName
        total += mv.metricValueFloat if mv.metricValueFloat > 0 else float(mv.metricValue)
    active = (await stub.IsActive(so_ref, timeout=5)).result
    # KEDA: GenerateMetricInMili / GetMetricTargetMili; HPA External AverageValue: ceil(usage / target).
    usage_milli, target_milli = round(total * 1000), round(target * 1000)
    return math.ceil(usage_milli / target_milli), active


@pytest.mark.parametrize("desired", [1, 3, 7, 40, 250])
async def test_keda_lands_on_desired_replicas(env: Env, desired: int) -> None:
    env.put("resnet", desired)
    env.put("bert", 99)  # another target must not leak into this one
    replicas, active = await keda_hpa_replicas(env.stub, ref("resnet"))
    assert (replicas, active) == (desired, True)
    spec = (await env.stub.GetMetricSpec(ref("resnet"))).metricSpecs[0]
    assert spec.metricName == "tfserving-desired-replicas-serving-resnet"
    assert spec.targetSize == 1 and spec.targetSizeFloat == 1.0


async def test_zero_desired_is_inactive(env: Env) -> None:
    env.put("resnet", 0)
    replicas, active = await keda_hpa_replicas(env.stub, ref("resnet"))
    assert (replicas, active) == (0, False)


async def test_invalid_decision_keeps_last_valid(env: Env) -> None:
    env.put("resnet", 6)
    env.put("resnet", 1, valid=False)
    replicas, _ = await keda_hpa_replicas(env.stub, ref("resnet"))
    assert replicas == 6


async def test_unknown_stale_and_bad_metadata_are_errors(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await env.stub.IsActive(ref("nope"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    env.put("resnet", 5, time_s=NOW_S - 500)  # older than max_age_s=120: never "inactive", an error
    for call in (
        env.stub.IsActive(ref("resnet")),
        env.stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref("resnet"), metricName="x")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "old" in (e.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await env.stub.GetMetricSpec(ref(None))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The namespace defaults to the ScaledObject's own when the metadata omits it.
    env.put("resnet", 5)
    so = pb2.ScaledObjectRef(name="so", namespace="serving", scalerMetadata={"deployment": "resnet"})
    assert (await env.stub.IsActive(so)).result is True


async def test_stream_is_active_pushes_on_store_changes(env: Env) -> None:
    env.put("resnet", 2)
    stream = env.stub.StreamIsActive(ref("resnet"))
    it = stream.__aiter__()

    async def nxt() -> bool:
        msg = await asyncio.wait_for(it.__anext__(), timeout=3)
        return bool(msg.result)

    assert await nxt() is True  # current state on open
    env.put("resnet", 0)
    assert await nxt() is False
    env.put("resnet", 0)  # no change: nothing pushed, next push is the real change
    env.put("resnet", 4)
    assert await nxt() is True
    env.clock[0] = NOW_S + 1_000  # stale: nothing pushed (KEDA keeps state) ...
    env.put("bert", 1)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(it.__anext__()), timeout=0.3)
    stream.cancel()


async def test_stream_metric_spec_matches_get_metric_spec(env: Env) -> None:
    stream = env.stub.StreamMetricSpec(ref("resnet"))
    first = await asyncio.wait_for(stream.__aiter__().__anext__(), timeout=3)
    assert first == await env.stub.GetMetricSpec(ref("resnet"))
    stream.cancel()


def test_proto_compiles_into_a_fresh_directory(tmp_path: Path) -> None:
    out = tmp_path / "_generated"
    _protogen.generate(out)
    assert _protogen.is_current(out)
    grpc_src = (out / "externalscaler_pb2_grpc.py").read_text()
    assert "from . import externalscaler_pb2 as" in grpc_src
    assert "ExternalScalerServicer" in grpc_src and "StreamIsActive" in grpc_src
    (tmp_path / "_generated" / "PROTO_SHA256").write_text("0\n")
    assert not _protogen.is_current(out)  # a changed .proto triggers recompilation
    assert _protogen.is_current()  # the package's own generated code is current
