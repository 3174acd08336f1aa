"""The metrics API's connection limits, over real TLS sockets on loopback.

A client that stalls mid-request, a client that connects and sends nothing, one connection over
the cap, and oversized requests: the first three are closed by the server (the test reads EOF; the
wait_for guard only keeps a broken server from hanging the test, it asserts no timing), the last
are answered with a Kubernetes Status body and logged without a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator

import pytest

from autoscaler.adapter.limits import ServerLimits
from autoscaler.adapter.metrics_api import MetricsServer, serve
from autoscaler.core.store import DecisionStore

GUARD_S = 15.0  # far above every limit below: reaching it means the server never closed


@pytest.fixture
async def server() -> AsyncIterator[MetricsServer]:
    limits = ServerLimits(
        header_timeout_s=0.3, idle_timeout_s=0.3, body_timeout_s=0.3, tls_handshake_timeout_s=1.0, max_connections=4
    )
    srv = await serve(DecisionStore(), now_s=lambda: 0.0, host="127.0.0.1", port=0, tls=True, limits=limits)
    try:
        yield srv
    finally:
        await srv.close()


def client_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def connect(srv: MetricsServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", srv.port, ssl=client_ctx())


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        rest = await asyncio.wait_for(reader.read(), GUARD_S)
    except TimeoutError:
        return False
    except (ConnectionResetError, ssl.SSLError):
        return True
    return rest == b"" or rest.startswith(b"HTTP/1.1 4")


async def test_a_stalled_request_head_is_closed(server: MetricsServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # ... and never the rest
    await writer.drain()
    assert await closed_by_server(reader)
    writer.close()


async def test_an_idle_connection_is_closed(server: MetricsServer) -> None:
    reader, writer = await connect(server)
    assert await closed_by_server(reader)
    writer.close()


async def test_keep_alive_connection_is_closed_after_its_idle_timeout(server: MetricsServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"ok"), GUARD_S)
    assert head.startswith(b"HTTP/1.1 200")
    assert await closed_by_server(reader)
    writer.close()


async def test_connections_over_the_cap_are_refused(server: MetricsServer) -> None:
    held = [await connect(server) for _ in range(4)]
    reader, writer = await connect(server)  # the fifth
    assert await closed_by_server(reader)
    for _, w in [*held, (reader, writer)]:
        w.close()


async def raw_request(srv: MetricsServer, head: bytes) -> tuple[int, dict[str, object]]:
    reader, writer = await connect(srv)
    writer.write(head)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), GUARD_S)
    writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    "head",
    [
        b"GET /apis/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"\r\n",
    ],
    ids=["url", "header", "header-count"],
)
async def test_oversized_requests_get_a_status_and_no_traceback(
    server: MetricsServer, head: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code, body = await raw_request(server, head)
    assert code == 400
    assert body["kind"] == "Status" and body["reason"] == "BadRequest" and body["code"] == 400
    assert not [r for r in caplog.records if r.exc_info]
