"""The KEDA external scaler against hostile or misconfigured clients (real gRPC on loopback).

A ScaledObject in one namespace must not read another namespace's decision through its trigger
metadata; long inputs are not echoed; streams and message sizes are capped; and `run` wires TLS
with client-certificate authentication (KEDA's caCert / tlsClientCert / tlsClientKey).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from test_keda_scaler import NOW_S, decision

from autoscaler.adapter import certs
from autoscaler.adapter.keda_scaler import KedaScalerServer, pb2, pb2_grpc, start_keda_scaler
from autoscaler.commands.run import _keda_credentials
from autoscaler.core.store import DecisionStore
from autoscaler.core.types import TargetKey


def store_with(ns: str, deployment: str, desired: int) -> DecisionStore:
    store = DecisionStore()
    t = TargetKey(ns, deployment)
    store.put_decision(t, deployment, decision(t, desired, NOW_S))
    return store


@pytest.fixture
async def scaler() -> AsyncIterator[tuple[KedaScalerServer, Any]]:
    server = await start_keda_scaler(
        store_with("prod", "resnet", 9), 0, now_s=lambda: NOW_S, host="127.0.0.1", max_streams=2
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    yield server, pb2_grpc.ExternalScalerStub(channel)
    await channel.close()
    await server.stop(0)


def so(so_namespace: str, **meta: str) -> Any:
    return pb2.ScaledObjectRef(name="so", namespace=so_namespace, scalerMetadata=meta)


async def test_a_scaledobject_reads_only_its_own_namespace(scaler: tuple[KedaScalerServer, Any]) -> None:
    _, stub = scaler
    assert (await stub.IsActive(so("prod", deployment="resnet"), timeout=5)).result is True
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.GetMetrics(
            pb2.GetMetricsRequest(scaledObjectRef=so("tenant", deployment="resnet", namespace="prod"))
        )
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.IsActive(so("tenant", deployment="resnet"), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND  # tenant/resnet: not prod's


async def test_long_inputs_are_not_echoed(scaler: tuple[KedaScalerServer, Any]) -> None:
    _, stub = scaler
    for ref in (so("prod", deployment="x" * 20_000), so("n" * 20_000, deployment="resnet")):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.IsActive(ref, timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(e.value.details() or "") < 300


async def test_oversized_messages_are_refused(scaler: tuple[KedaScalerServer, Any]) -> None:
    _, stub = scaler
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.IsActive(so("prod", deployment="resnet", pad="p" * 200_000), timeout=5)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_open_streams_are_capped(scaler: tuple[KedaScalerServer, Any]) -> None:
    server, stub = scaler
    held = [stub.StreamIsActive(so("prod", deployment="resnet")) for _ in range(2)]
    for call in held:
        assert (await call.read()).result is True
    assert server.service.open_streams == 2
    extra = stub.StreamIsActive(so("prod", deployment="resnet"))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await extra.read()
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for call in held:
        call.cancel()


async def test_run_serves_tls_and_requires_a_client_certificate(tmp_path: Path) -> None:
    ca = certs.self_signed(tmp_path, common_name="keda-test-ca", stem="ca")
    serving = certs.issue(ca, tmp_path, common_name="tfs-autoscaler", stem="serving", hosts=("localhost",))
    client = certs.issue(ca, tmp_path, common_name="keda-operator", stem="client", client=True)
    args = argparse.Namespace(
        keda_cert=str(serving.cert_file),
        keda_key=str(serving.key_file),
        keda_client_ca=str(ca.cert_file),
        adapter_cert=None,
        adapter_key=None,
    )
    server = await start_keda_scaler(
        store_with("prod", "resnet", 9), 0, now_s=lambda: NOW_S, host="127.0.0.1", credentials=_keda_credentials(args)
    )
    opts = (("grpc.ssl_target_name_override", "localhost"),)
    try:
        ca_pem = ca.cert_file.read_bytes()
        with_cert = grpc.ssl_channel_credentials(ca_pem, client.key_file.read_bytes(), client.cert_file.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", with_cert, options=opts) as ch:
            ok = await pb2_grpc.ExternalScalerStub(ch).IsActive(so("prod", deployment="resnet"), timeout=5)
            assert ok.result is True
        no_cert = grpc.ssl_channel_credentials(ca_pem)
        async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", no_cert, options=opts) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await pb2_grpc.ExternalScalerStub(ch).IsActive(so("prod", deployment="resnet"), timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError):
                await pb2_grpc.ExternalScalerStub(ch).IsActive(so("prod", deployment="resnet"), timeout=5)
    finally:
        await server.stop(0)
