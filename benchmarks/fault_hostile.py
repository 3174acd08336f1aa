"""Hostile clients: the rows of the fault matrix that attack the serving edges.

The metrics adapter serves over real TLS with requestheader client-certificate authentication
(the front-proxy CA and CN the kube-aggregator presents); the KEDA scaler serves gRPC over TLS
with a required client certificate (KEDA's caCert / tlsClientCert / tlsClientKey). Both on
127.0.0.1, both over a DecisionStore holding one fresh decision. Each case sends a bounded number
of hostile requests and judges every answer: a refusal of the right kind (401/403/400, TLS
handshake failure, gRPC UNAVAILABLE / INVALID_ARGUMENT / NOT_FOUND / RESOURCE_EXHAUSTED ...) within
`ANSWER_BOUND_S`, or for a well-formed request from a legitimate client, its answer. A 5xx (or gRPC
INTERNAL/UNKNOWN) is counted as such; an acceptance that should have been a refusal, a wrong
refusal, or an answer later than the bound is a `bad_answer`.
The leader race lives in benchmarks/fault_leaders.py and reports through the same `Tally`.
"""

from __future__ import annotations

import asyncio
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import grpc
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.adapter import certs
from autoscaler.adapter.auth import RequestHeaderAuth
from autoscaler.adapter.keda_scaler import pb2, pb2_grpc, server_credentials, start_keda_scaler
from autoscaler.adapter.limits import ServerLimits
from autoscaler.adapter.metrics_api import MetricsServer, serve
from autoscaler.core.store import DecisionStore
from autoscaler.core.types import Binding, Decision, TargetKey
from autoscaler.spec.types import BatchingParams

ANSWER_BOUND_S = 10.0  # every hostile request is answered (or closed) within this
NOW_S = 1_780_000_000.0
NS = "ml"
EXTERNAL = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/tfserving_autoscaler_desired_replicas"
AGGREGATOR = {"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"}
LIMITS = ServerLimits(header_timeout_s=1.0, idle_timeout_s=1.0, body_timeout_s=1.0, tls_handshake_timeout_s=2.0)


@dataclass
class Tally:
    """What a hostile case measured."""

    requests: int = 0
    http_5xx: int = 0
    bad_answers: int = 0
    max_answer_s: float = 0.0
    writes_by_non_holder: int = 0
    notes: dict[str, int] = field(default_factory=dict)  # what happened, for the reader (not judged)

    def answer(self, took_s: float, *, ok: bool, five_xx: bool = False, outcome: str = "") -> None:
        self.requests += 1
        if outcome:
            self.notes[outcome] = self.notes.get(outcome, 0) + 1
        self.http_5xx += five_xx
        self.bad_answers += (not ok and not five_xx) or took_s > ANSWER_BOUND_S
        self.max_answer_s = max(self.max_answer_s, took_s)


@dataclass(frozen=True)
class Pki:
    serving: certs.CertPair  # self-signed serving cert for 127.0.0.1 / localhost (its own CA)
    proxy_ca: certs.CertPair
    client: certs.CertPair  # CN front-proxy-client, signed by proxy_ca: the legitimate client
    foreign: certs.CertPair  # same CN, signed by another CA
    expired: certs.CertPair  # same CN and CA, expired yesterday


@cache
def pki() -> Pki:
    d = Path(tempfile.mkdtemp(prefix="fault-hostile-pki-"))
    proxy_ca = certs.self_signed(d, common_name="front-proxy-ca", stem="proxy-ca")
    other_ca = certs.self_signed(d, common_name="other-ca", stem="other-ca")

    def client(ca: certs.CertPair, stem: str, days: int = 30) -> certs.CertPair:
        return certs.issue(ca, d, common_name="front-proxy-client", stem=stem, client=True, days=days)

    return Pki(
        serving=certs.self_signed(d, common_name="adapter", stem="serving", hosts=("127.0.0.1", "localhost")),
        proxy_ca=proxy_ca,
        client=client(proxy_ca, "client"),
        foreign=client(other_ca, "foreign"),
        expired=client(proxy_ca, "expired", days=-1),
    )


def _store() -> DecisionStore:
    store = DecisionStore()
    t = TargetKey(NS, "resnet")
    d = Decision(
        target=t, time_s=NOW_S, desired_replicas=7, current_replicas=5, valid=True, reason="fault matrix",
        binding=Binding.NONE, batching=BatchingParams(),
    )  # fmt: skip
    store.put_decision(t, "resnet", d)
    return store


def client_ssl(cert: certs.CertPair | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki().serving.cert_file))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert_file), str(cert.key_file))
    return ctx


# ---------------------------------------------------------------------- metrics adapter
async def _adapter() -> MetricsServer:
    p = pki()
    auth = RequestHeaderAuth(client_ca_pem=p.proxy_ca.cert_pem(), allowed_names=("front-proxy-client",))
    return await serve(
        _store(), now_s=lambda: NOW_S, host="127.0.0.1", port=0, cert_file=str(p.serving.cert_file),
        key_file=str(p.serving.key_file), auth=auth, limits=LIMITS,
    )  # fmt: skip


async def _get(
    http: aiohttp.ClientSession, url: str, ctx: ssl.SSLContext, tally: Tally, ok_codes: Sequence[int], *, tls_ok: bool
) -> None:
    """One GET; `tls_ok`: a refused TLS handshake is the right answer."""
    t0 = time.perf_counter()
    try:
        async with http.get(url, ssl=ctx, headers=AGGREGATOR, timeout=aiohttp.ClientTimeout(total=30)) as resp:
            await resp.read()
            code = resp.status
        tally.answer(time.perf_counter() - t0, ok=code in ok_codes, five_xx=code >= 500, outcome=f"http_{code}")
    except (aiohttp.ClientConnectionError, ssl.SSLError) as e:
        refused = tls_ok or isinstance(e, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)
        tally.answer(time.perf_counter() - t0, ok=refused, outcome="connection_refused")
    except TimeoutError:
        tally.answer(time.perf_counter() - t0, ok=False, outcome="timeout")


def _cert_case(which: str, ok_codes: Sequence[int]) -> Callable[[int], Awaitable[Tally]]:
    async def case(n: int) -> Tally:
        tally, srv = Tally(), await _adapter()
        cert = None if which == "none" else getattr(pki(), which)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
                for _ in range(n):
                    await _get(http, srv.url + EXTERNAL, client_ssl(cert), tally, ok_codes, tls_ok=which != "none")
        finally:
            await srv.close()
        return tally

    return case


async def slowloris(n: int) -> Tally:
    """n connections each send half a request head and stall; each must be closed within the
    bound, and a legitimate request sent meanwhile must still be answered."""
    tally, srv = Tally(), await _adapter()
    ctx = client_ssl(pki().client)

    async def held() -> None:
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port, ssl=ctx)
        writer.write(b"GET " + EXTERNAL.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()
        try:
            rest = await asyncio.wait_for(reader.read(), 2 * ANSWER_BOUND_S)
            ok = rest == b"" or rest.split(b" ", 2)[1:2] in ([b"400"], [b"408"])
        except (ConnectionResetError, ssl.SSLError):
            ok = True
        except TimeoutError:
            ok = False
        tally.answer(time.perf_counter() - t0, ok=ok, outcome="closed_by_server" if ok else "held")
        writer.close()

    try:
        tasks = [asyncio.ensure_future(held()) for _ in range(n)]
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as http:
            await _get(http, srv.url + EXTERNAL, ctx, tally, (200,), tls_ok=False)
        await asyncio.gather(*tasks)
    finally:
        await srv.close()
    return tally


OVERSIZED = (
    b"GET /apis/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"\r\n",
)


async def oversized(n: int) -> Tally:
    """Oversized URL, header and header count: each answered 400 within the bound."""
    tally, srv = Tally(), await _adapter()
    try:
        for i in range(n):
            t0 = time.perf_counter()
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port, ssl=client_ssl(pki().client))
            writer.write(OVERSIZED[i % len(OVERSIZED)])
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 2 * ANSWER_BOUND_S)
            writer.close()
            code = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0  # 1.0 on parse errors
            status = b'"kind":"Status"' in data
            tally.answer(
                time.perf_counter() - t0, ok=code == 400 and status, five_xx=code >= 500, outcome=f"http_{code}"
            )
    finally:
        await srv.close()
    return tally


async def concurrent(n: int) -> Tally:
    """n GETs at once from legitimate clients, one connection each: 200, or a connection closed
    on accept past the cap; never a 5xx, never later than the bound."""
    tally, srv = Tally(), await _adapter()
    ctx = client_ssl(pki().client)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as http:
            await asyncio.gather(*(_get(http, srv.url + EXTERNAL, ctx, tally, (200,), tls_ok=False) for _ in range(n)))
    finally:
        await srv.close()
    return tally


_segment = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["namespaces", NS, "pods", "*", "deployments.apps", "resnet", "tfserving_autoscaler_desired_replicas", "..", "%"]
)
_selector = st.text(alphabet="abc=!,()in notx-._/ ", max_size=40) | st.text(max_size=20)


async def fuzz_paths(n: int) -> Tally:
    """n hypothesis-generated paths and label selectors (derandomized), from a legitimate client."""
    tally, srv = Tally(), await _adapter()
    p = pki()
    pool = urllib3.PoolManager(
        ca_certs=str(p.serving.cert_file), cert_file=str(p.client.cert_file), key_file=str(p.client.key_file),
        retries=False, timeout=30.0,
    )  # fmt: skip
    base = st.sampled_from(["/apis/custom.metrics.k8s.io/v1beta2", "/apis/external.metrics.k8s.io/v1beta1", ""])

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(base=base, segments=st.lists(_segment, max_size=6), selector=st.none() | _selector)
    def one(base: str, segments: list[str], selector: str | None) -> None:
        path = base + "".join("/" + quote(s, safe="") for s in segments)
        fields = {} if selector is None else {"labelSelector": selector, "metricLabelSelector": selector}
        t0 = time.perf_counter()
        resp = pool.request("GET", srv.url + (path or "/"), fields=fields, headers=AGGREGATOR)
        tally.answer(
            time.perf_counter() - t0, ok=resp.status < 500, five_xx=resp.status >= 500, outcome=f"http_{resp.status}"
        )

    try:
        await asyncio.to_thread(one)
    finally:
        pool.clear()
        await srv.close()
    return tally


# ---------------------------------------------------------------------- KEDA scaler
REF = pb2.ScaledObjectRef(name="so", namespace=NS, scalerMetadata={"deployment": "resnet"})
GRPC_OPTS = (("grpc.ssl_target_name_override", "localhost"),)
REFUSED = (grpc.StatusCode.UNAVAILABLE,)
FINE = (
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.RESOURCE_EXHAUSTED,
)  # fmt: skip


async def _keda() -> Any:
    p = pki()
    creds = server_credentials(str(p.serving.cert_file), str(p.serving.key_file), str(p.proxy_ca.cert_file))
    return await start_keda_scaler(_store(), 0, now_s=lambda: NOW_S, host="127.0.0.1", credentials=creds)


def _channel_creds(cert: certs.CertPair | None) -> grpc.ChannelCredentials:
    ca = pki().serving.cert_file.read_bytes()
    if cert is None:
        return grpc.ssl_channel_credentials(ca)
    return grpc.ssl_channel_credentials(ca, cert.key_file.read_bytes(), cert.cert_file.read_bytes())


async def _rpc(stub: Any, req: Any, tally: Tally, ok: Sequence[grpc.StatusCode]) -> None:
    t0 = time.perf_counter()
    try:
        await stub.GetMetrics(req, timeout=ANSWER_BOUND_S)
        code = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as e:
        code = e.code()
    five = code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    tally.answer(time.perf_counter() - t0, ok=code in ok, five_xx=five, outcome=f"grpc_{code.name}")


def _keda_case(which: str) -> Callable[[int], Awaitable[Tally]]:
    async def case(n: int) -> Tally:
        tally, server = Tally(), await _keda()
        cert = None if which == "none" else getattr(pki(), which)
        try:
            for _ in range(n):  # a fresh channel each time: each is a new handshake
                ch = grpc.aio.secure_channel(f"127.0.0.1:{server.port}", _channel_creds(cert), options=GRPC_OPTS)
                await _rpc(pb2_grpc.ExternalScalerStub(ch), pb2.GetMetricsRequest(scaledObjectRef=REF), tally, REFUSED)
                await ch.close()
        finally:
            await server.stop(0)
        return tally

    return case


async def keda_concurrent(n: int) -> Tally:
    tally, server = Tally(), await _keda()
    ch = grpc.aio.secure_channel(f"127.0.0.1:{server.port}", _channel_creds(pki().client), options=GRPC_OPTS)
    stub = pb2_grpc.ExternalScalerStub(ch)
    try:
        req = pb2.GetMetricsRequest(scaledObjectRef=REF)
        await asyncio.gather(*(_rpc(stub, req, tally, (grpc.StatusCode.OK,)) for _ in range(n)))
    finally:
        await ch.close()
        await server.stop(0)
    return tally


async def keda_fuzz(n: int) -> Tally:
    """n hypothesis-generated ScaledObject refs (names, namespaces, trigger metadata)."""
    tally, server = Tally(), await _keda()
    ch = grpc.secure_channel(f"127.0.0.1:{server.port}", _channel_creds(pki().client), options=GRPC_OPTS)
    stub = pb2_grpc.ExternalScalerStub(ch)
    text = st.text(max_size=40) | st.sampled_from([NS, "resnet", "", "kube-system", "a" * 300])

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        name=text,
        namespace=text,
        meta=st.dictionaries(st.sampled_from(["deployment", "namespace", "metricName"]) | text, text, max_size=4),
        metric=text,
    )
    def one(name: str, namespace: str, meta: dict[str, str], metric: str) -> None:
        ref = pb2.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=meta)
        t0 = time.perf_counter()
        try:
            stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName=metric), timeout=ANSWER_BOUND_S)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        five = code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
        tally.answer(time.perf_counter() - t0, ok=code in FINE, five_xx=five, outcome=f"grpc_{code.name}")

    try:
        await asyncio.to_thread(one)
    finally:
        ch.close()
        await server.stop(0)
    return tally


HOSTILE_CASES: dict[str, Callable[[int], Awaitable[Tally]]] = {
    "hostile-no-client-cert": _cert_case("none", (401,)),
    "hostile-wrong-ca": _cert_case("foreign", (401,)),
    "hostile-expired-cert": _cert_case("expired", (401,)),
    "hostile-slowloris": slowloris,
    "hostile-oversized": oversized,
    "hostile-1000-concurrent": concurrent,
    "hostile-fuzz-paths": fuzz_paths,
    "keda-no-client-cert": _keda_case("none"),
    "keda-wrong-ca": _keda_case("foreign"),
    "keda-expired-cert": _keda_case("expired"),
    "keda-1000-concurrent": keda_concurrent,
    "keda-fuzz": keda_fuzz,
}
# requests per case in the full run (the test scales these down)
HOSTILE_N = {
    "hostile-1000-concurrent": 1000,
    "keda-1000-concurrent": 1000,
    "hostile-slowloris": 300,
    "hostile-fuzz-paths": 200,
    "keda-fuzz": 200,
    "hostile-oversized": 30,
    "leader-race": 60,
}
DEFAULT_N = 20
MIN_N = {"leader-race": 12}  # two mute-and-heal cycles of the holder, however small the run
