"""KEDA external scaler (grpc.aio): hands our desired replicas to a ScaledObject of type
`external` / `external-push`.

Owned here because KEDA is the second way decisions reach the HPA (docs/design.md "One engine, three
shells"), for clusters where KEDA already owns the external metrics API group. It reads only the
DecisionStore.

Trigger metadata: `{scalerAddress, deployment}`. The target's namespace is always the
ScaledObject's own (KEDA fills `ScaledObjectRef.namespace` from the object, a tenant cannot forge
it); a `namespace` entry is accepted only if it names that same namespace, so one tenant cannot
read another's decision. Hostile clients are bounded: 64 KiB messages, at most `max_streams` open
streams (RESOURCE_EXHAUSTED beyond), error messages quote inputs clipped to 64 characters. TLS,
with client-certificate authentication (KEDA's `caCert`/`tlsClientCert`/`tlsClientKey` trigger
authentication), comes from `server_credentials()`. The arithmetic that lands KEDA's HPA exactly on our number:
GetMetricSpec returns targetSize 1 (and targetSizeFloat 1.0) -> KEDA builds an External metric with
target AverageValue = 1 (1000m); GetMetrics returns desired replicas D -> KEDA publishes D (D*1000m);
the HPA computes ceil(D*1000 / 1000) = D replicas (GetExternalPerPodMetricReplicas). The HPA's
tolerance still applies (|D/current - 1| <= 0.1 keeps current), see docs/hpa-paths.md.

Stale or unknown targets answer with a gRPC error (UNAVAILABLE / NOT_FOUND), never "inactive" or 0:
KEDA keeps the current replicas (or applies the ScaledObject's fallback) when a scaler errors, and the
HPA never scales down on a failed metric; answering `false` could scale a serving Deployment to zero.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from autoscaler.adapter import _protogen
from autoscaler.core.store import DecisionStore
from autoscaler.core.types import Decision, TargetKey

log = logging.getLogger(__name__)

pb2, pb2_grpc = _protogen.load()

SERVICE_NAME = "externalscaler.ExternalScaler"
METRIC_PREFIX = "tfserving-desired-replicas"
TARGET_SIZE = 1
MAX_MESSAGE_BYTES = 64 * 1024  # a ScaledObjectRef is a few hundred bytes
MAX_STREAMS = 256  # open StreamIsActive/StreamMetricSpec calls (KEDA opens one per ScaledObject)
MAX_CONCURRENT_RPCS = 1024
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _clip(value: str, n: int = 64) -> str:
    """An input quoted for an error message, never longer than `n` characters."""
    return repr(value if len(value) <= n else value[:n] + "...")


class ScalerError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def metric_name(target: TargetKey) -> str:
    """Per-target metric name (KEDA prefixes `s<index>-` for the HPA and strips it again)."""
    return f"{METRIC_PREFIX}-{target.namespace}-{target.deployment}"


def target_of(ref: Any) -> TargetKey:
    """The target a ScaledObjectRef points at: its `deployment` metadata in the ScaledObject's namespace."""
    meta = dict(ref.scalerMetadata)
    deployment = meta.get("deployment", "").strip()
    namespace = str(ref.namespace or "").strip()
    if not namespace:
        raise ScalerError(grpc.StatusCode.INVALID_ARGUMENT, "the ScaledObjectRef has no namespace")
    if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        raise ScalerError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid namespace {_clip(namespace)}")
    if not deployment:
        raise ScalerError(grpc.StatusCode.INVALID_ARGUMENT, "trigger metadata needs 'deployment'")
    if len(deployment) > 253 or not _DNS_SUBDOMAIN.match(deployment):
        raise ScalerError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"trigger metadata 'deployment': expected a Deployment name (got {_clip(deployment)})",
        )
    other = meta.get("namespace", "").strip()
    if other and other != namespace:
        raise ScalerError(
            grpc.StatusCode.PERMISSION_DENIED,
            f"trigger metadata 'namespace' {_clip(other)} is not the ScaledObject's namespace "
            f"{_clip(namespace)}; a ScaledObject may only read targets in its own namespace",
        )
    return TargetKey(namespace, deployment)


def server_credentials(cert_file: str, key_file: str, client_ca_file: str | None = None) -> Any:
    """gRPC TLS credentials; with `client_ca_file`, clients must present a certificate it signed."""
    ca = Path(client_ca_file).read_bytes() if client_ca_file else None
    pair = (Path(key_file).read_bytes(), Path(cert_file).read_bytes())
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


class ExternalScalerService:
    """The `externalscaler.ExternalScaler` servicer (method names are the RPC names)."""

    def __init__(
        self,
        store: DecisionStore,
        *,
        now_s: Callable[[], float],
        max_age_s: float = 120.0,
        poll_interval_s: float = 0.25,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self.store = store
        self.now_s = now_s
        self.max_age_s = max_age_s
        self.poll_interval_s = poll_interval_s
        self.max_streams = max_streams
        self.open_streams = 0

    async def _open_stream(self, context: Any) -> None:
        if self.open_streams >= self.max_streams:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"too many open streams (max {self.max_streams})")
        self.open_streams += 1

    def decision(self, target: TargetKey) -> Decision:
        """The fresh last valid decision for `target`, or ScalerError."""
        rec = self.store.get(target)
        if rec is None:
            raise ScalerError(grpc.StatusCode.NOT_FOUND, f"no autoscaling target {target}")
        if not rec.published:
            raise ScalerError(
                grpc.StatusCode.NOT_FOUND, f"{target} is in preview mode: its decisions are not published"
            )
        d = rec.decision
        if d is None:
            raise ScalerError(grpc.StatusCode.UNAVAILABLE, f"no valid decision yet for {target}")
        age_s = self.now_s() - d.time_s
        if age_s > self.max_age_s:
            raise ScalerError(
                grpc.StatusCode.UNAVAILABLE,
                f"last valid decision for {target} is {age_s:.0f} s old (max {self.max_age_s:.0f} s)",
            )
        return d

    async def _call(self, context: Any, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ScalerError as e:
            await context.abort(e.code, e.message)

    async def IsActive(self, request: Any, context: Any) -> Any:
        def answer() -> Any:
            d = self.decision(target_of(request))
            return pb2.IsActiveResponse(result=d.desired_replicas > 0)

        return await self._call(context, answer)

    async def StreamIsActive(self, request: Any, context: Any) -> AsyncIterator[Any]:
        """Push the activity now and again whenever the decision changes (polls `store.version`)."""
        try:
            target = target_of(request)
        except ScalerError as e:
            await context.abort(e.code, e.message)
            return
        await self._open_stream(context)
        try:
            async for item in self._activity(target):
                yield item
        finally:
            self.open_streams -= 1

    async def _activity(self, target: TargetKey) -> AsyncIterator[Any]:
        # Freshness only decays with time, and a stale target pushes nothing, so re-reading on
        # store writes (version changes) is enough to catch every state worth pushing.
        last_sent: tuple[bool, int] | None = None
        last_version = -1
        while True:
            version = self.store.version
            if version != last_version:
                last_version = version
                try:
                    d: Decision | None = self.decision(target)
                except ScalerError:
                    d = None  # unknown/stale: push nothing, KEDA keeps its state
                if d is not None:
                    state = (d.desired_replicas > 0, d.desired_replicas)
                    if state != last_sent:
                        last_sent = state
                        yield pb2.IsActiveResponse(result=state[0])
            await asyncio.sleep(self.poll_interval_s)

    def _spec(self, request: Any) -> Any:
        target = target_of(request)
        spec = pb2.MetricSpec(
            metricName=metric_name(target), targetSize=TARGET_SIZE, targetSizeFloat=float(TARGET_SIZE)
        )
        return pb2.GetMetricSpecResponse(metricSpecs=[spec])

    async def GetMetricSpec(self, request: Any, context: Any) -> Any:
        return await self._call(context, lambda: self._spec(request))

    async def StreamMetricSpec(self, request: Any, context: Any) -> AsyncIterator[Any]:
        """The spec never changes (target 1), so send it once and keep the stream open."""
        try:
            spec = self._spec(request)
        except ScalerError as e:
            await context.abort(e.code, e.message)
            return
        await self._open_stream(context)
        try:
            yield spec
            while True:
                await asyncio.sleep(3600.0)
        finally:
            self.open_streams -= 1

    async def GetMetrics(self, request: Any, context: Any) -> Any:
        def answer() -> Any:
            target = target_of(request.scaledObjectRef)
            d = self.decision(target)
            name = request.metricName or metric_name(target)
            value = pb2.MetricValue(
                metricName=name, metricValue=d.desired_replicas, metricValueFloat=float(d.desired_replicas)
            )
            return pb2.GetMetricsResponse(metricValues=[value])

        return await self._call(context, answer)


@dataclass
class KedaScalerServer:
    server: Any  # grpc.aio.Server
    port: int
    service: ExternalScalerService

    async def stop(self, grace_s: float | None = 1.0) -> None:
        await self.server.stop(grace_s)


async def start_keda_scaler(
    store: DecisionStore,
    port: int,
    *,
    now_s: Callable[[], float],
    host: str = "0.0.0.0",
    max_age_s: float = 120.0,
    poll_interval_s: float = 0.25,
    credentials: Any = None,
    max_streams: int = MAX_STREAMS,
) -> KedaScalerServer:
    """Start the gRPC server on `host:port` (`port=0` picks one; see `.port`).

    `credentials` (`server_credentials()`) enables TLS for KEDA's `caCert`/`tlsClientCert` options.
    """
    service = ExternalScalerService(
        store, now_s=now_s, max_age_s=max_age_s, poll_interval_s=poll_interval_s, max_streams=max_streams
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_metadata_size", 16 * 1024),
        ],
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    pb2_grpc.add_ExternalScalerServicer_to_server(service, server)
    address = f"{host}:{port}"
    secure = credentials is not None
    bound = server.add_secure_port(address, credentials) if secure else server.add_insecure_port(address)
    await server.start()
    log.info("KEDA external scaler listening on %s:%d", host, bound)
    return KedaScalerServer(server, int(bound), service)
