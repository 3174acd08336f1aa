"""Connection limits for the metrics API listener: timeouts, a connection cap, request-size caps.

The listener is reachable by anyone who can reach the pod (client certificates are optional at
the TLS layer so kubelet probes work), so it must not let a client hold resources for free.
aiohttp's keep-alive timer stops once a client sends a first byte, so a client that sends half a
request line and stalls ("slowloris") held its connection forever; 300 of them held 300 tasks and
sockets past 140 s. Here, per connection:

* TLS handshakes must finish within `tls_handshake_timeout_s` (asyncio's server option);
* a request's head (request line + headers) must arrive within `header_timeout_s` of its first byte;
* an idle keep-alive connection closes after `idle_timeout_s` (also before the first request);
* a request body our handlers do not read is drained for at most `body_timeout_s`, then closed;
* at most `max_connections` are served at once; the next is closed on accept;
* a request line over `max_line_bytes`, a header over `max_field_bytes` or more than `max_headers`
  headers is answered with a Kubernetes `Status` (400) and logged in one line, no traceback.

Implemented as an aiohttp `RequestHandler` subclass served by our own `loop.create_server`, so the
limits apply before any application code runs. The defaults follow kube-apiserver's generic
server where it has one (Go net/http: 1 MiB of headers; we allow far less since our requests are
small GETs from the aggregator).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from autoscaler.adapter import wire

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLimits:
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    body_timeout_s: float = 10.0
    tls_handshake_timeout_s: float = 10.0
    max_connections: int = 512
    max_line_bytes: int = 8192
    max_field_bytes: int = 8192
    max_headers: int = 100

    def handler_kwargs(self) -> dict[str, Any]:
        """The aiohttp RequestHandler settings these limits map to."""
        return {
            "keepalive_timeout": self.idle_timeout_s,
            "lingering_time": self.body_timeout_s,
            "max_line_size": self.max_line_bytes,
            "max_field_size": self.max_field_bytes,
            "max_headers": self.max_headers,
        }


class GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol plus the header timeout, connection cap and Status errors."""

    def __init__(self, manager: Server, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._rejected = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert self._manager is not None
        if len(self._manager.connections) >= self._limits.max_connections:
            self._rejected = True
            log.warning("metrics API: connection limit reached; closing a new connection")
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        if not self._rejected:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:
            self._cancel_head_timer()  # a complete head arrived
        elif self._head_timer is None and self._current_request is None and data:
            self._head_timer = self._loop.call_later(self._limits.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._current_request is None:
            log.info("metrics API: request head not received in %.0f s; closing", self._limits.header_timeout_s)
            self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        detail = (exc.message or type(exc).__name__)[:200]
        log.info("metrics API: malformed or oversized request: %s", detail)  # a client error: no traceback
        body = wire.status(400, "BadRequest", f"malformed or oversized request: {detail}")
        resp = web.Response(
            body=json.dumps(body, separators=(",", ":")).encode(), status=400, content_type="application/json"
        )
        resp.force_close()
        return resp


async def listen(
    runner: web.AppRunner, host: str, port: int, ssl_ctx: ssl.SSLContext | None, limits: ServerLimits
) -> asyncio.Server:
    """Serve `runner`'s app on host:port with `limits` (the runner must be set up already)."""
    loop = asyncio.get_running_loop()
    manager = runner.server
    assert manager is not None, "call runner.setup() first"
    kwargs = {**limits.handler_kwargs(), "access_log": None}

    def factory() -> GuardedHandler:
        return GuardedHandler(manager, limits, loop=loop, **kwargs)

    return await loop.create_server(
        factory,
        host,
        port,
        ssl=ssl_ctx,
        ssl_handshake_timeout=limits.tls_handshake_timeout_s if ssl_ctx is not None else None,
        backlog=limits.max_connections,
    )
