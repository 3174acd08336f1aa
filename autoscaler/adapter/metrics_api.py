"""The aggregated metrics API server (aiohttp): custom.metrics.k8s.io v1beta1+v1beta2, external v1beta1.

Owned here: URL routing, discovery documents, JSON shapes per API version, authentication, authorization
(a SubjectAccessReview per user and request, `authz.py`) and the Status error contract. What the values
*are* comes from `provider.py` (which reads only the DecisionStore). Wire formats follow
kubernetes-sigs/custom-metrics-apiserver (`pkg/apiserver/installer/cmhandlers.go`, `emhandlers.go`,
`pkg/provider/errors.go`) and the kube-aggregator (`pkg/apiserver/handler_discovery.go`):
`kind`/`apiVersion` on every body, 406 for aggregated discovery, 404 Status for unknown metrics/objects,
400 Status for malformed selectors, and a catch-all middleware so no request ever gets aiohttp's HTML
error page.

Entry points: `create_app(store, now_s=...)` (mount anywhere) and `serve(...)` (HTTPS listener with a
mounted or self-signed serving certificate, under the connection limits of `limits.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from autoscaler.adapter import wire
from autoscaler.adapter.auth import AuthFailure, RemoteUser, RequestHeaderAuth, authenticate, server_ssl_context
from autoscaler.adapter.authz import CachingAuthorizer, request_attributes
from autoscaler.adapter.certs import CertPair, self_signed
from autoscaler.adapter.limits import ServerLimits, listen
from autoscaler.adapter.provider import (
    CustomMetricValue,
    DecisionStoreProvider,
    ExternalMetricValue,
    MetricNotFoundError,
    PodLabels,
    record_labels,
)
from autoscaler.adapter.selectors import Selector, SelectorError, parse_selector
from autoscaler.core.store import DecisionStore

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/openapi/v2", "/openapi/v3"})
PROVIDER_KEY = web.AppKey("provider", DecisionStoreProvider)
AUTH_KEY = web.AppKey("auth", object)
AUTHZ_KEY = web.AppKey("authz", object)
REMOTE_USER_KEY = web.RequestKey("remote_user", RemoteUser)  # who the aggregator says is asking

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StatusError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(), status=status, content_type="application/json"
    )


def _status(code: int, reason: str, message: str) -> web.Response:
    return _json(wire.status(code, reason, message), code)


_NOT_FOUND = "the server could not find the requested resource"
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed"}


@web.middleware
async def status_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as a metav1.Status JSON body."""
    try:
        return await handler(request)
    except StatusError as e:
        return _status(e.code, e.reason, e.message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        reason = _REASONS.get(e.status, e.reason.replace(" ", ""))
        message = _NOT_FOUND if e.status == 404 else e.reason
        return _status(e.status, reason, message)
    except Exception:
        log.exception("metrics API: unhandled error for %s", request.path_qs)
        return _status(500, "InternalError", "an internal error occurred")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    auth = request.app[AUTH_KEY]
    if isinstance(auth, RequestHeaderAuth) and request.path not in OPEN_PATHS:
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        who = authenticate(auth, peercert, request.headers)
        if isinstance(who, AuthFailure):
            return _status(who.code, who.reason, who.message)
        request[REMOTE_USER_KEY] = who
        authz = request.app[AUTHZ_KEY]
        if isinstance(authz, CachingAuthorizer):
            segments = [unquote(p) for p in request.rel_url.raw_path.strip("/").split("/")]
            attrs = request_attributes(request.method, segments)
            verdict = await asyncio.to_thread(authz.authorize, who, attrs)
            if not verdict.allowed:
                what = f"{attrs.resource}.{attrs.group}" if attrs.is_resource else "path"
                named = f" {attrs.name!r}" if attrs.name else ""
                why = f": {verdict.reason}" if verdict.reason else ""
                msg = f"{what}{named} is forbidden: User {who.name!r} {attrs.describe()}{why}"
                return _status(403, "Forbidden", msg[:1024])
    return await handler(request)


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok", content_type="text/plain")


async def _openapi(request: web.Request) -> web.Response:
    return _status(404, "NotFound", _NOT_FOUND)  # the aggregator skips 404 gracefully (§2.4)


def _selector(request: web.Request, param: str) -> Selector:
    raw = request.query.get(param)
    try:
        return parse_selector(raw)
    except SelectorError as e:
        raise StatusError(400, "BadRequest", f"invalid {param} {raw!r}: {e}") from None


def _segments(request: web.Request) -> list[str]:
    parts = request.rel_url.raw_path.strip("/").split("/")
    out = [unquote(p) for p in parts]
    for p in out:
        if p in ("", ".", "..") or "/" in p or "%" in p or "?" in p:
            raise StatusError(404, "NotFound", _NOT_FOUND)
    return out


def _custom_item(version: str, v: CustomMetricValue, metric_selector: Selector) -> dict[str, Any]:
    ref = v.described_object
    described: dict[str, Any] = {"kind": ref.kind, "name": ref.name, "apiVersion": ref.api_version}
    if ref.namespace:
        described["namespace"] = ref.namespace
    sel = metric_selector.as_label_selector()
    if version == "v1beta1":
        return {
            "describedObject": described,
            "metricName": v.metric,
            "timestamp": wire.rfc3339(v.time_s),
            "window": v.window_s,
            "value": wire.quantity(v.value),
            "selector": sel,
        }
    return {
        "describedObject": described,
        "metric": {"name": v.metric, "selector": sel},
        "timestamp": wire.rfc3339(v.time_s),
        "windowSeconds": v.window_s,
        "value": wire.quantity(v.value),
    }


def _external_item(v: ExternalMetricValue) -> dict[str, Any]:
    return {
        "metricName": v.metric,
        "metricLabels": v.labels,
        "timestamp": wire.rfc3339(v.time_s),
        "window": v.window_s,
        "value": wire.quantity(v.value),
    }


def _resource_list(provider: DecisionStoreProvider, group: str, version: str) -> dict[str, Any]:
    if group == wire.CUSTOM_GROUP:
        resources = [
            wire.api_resource(f"{m.group_resource}/{m.metric}", namespaced=m.namespaced, kind="MetricValueList")
            for m in provider.list_all_metrics()
        ]
    else:
        resources = [
            wire.api_resource(m, namespaced=True, kind="ExternalMetricValueList")
            for m in provider.list_all_external_metrics()
        ]
    return wire.api_resource_list(group, version, resources)


def _custom(provider: DecisionStoreProvider, request: web.Request, version: str, rest: list[str]) -> dict[str, Any]:
    msel = _selector(request, "metricLabelSelector")
    if len(rest) == 4 and rest[0] == "namespaces" and rest[2] == "metrics":
        values = [provider.get_metric_by_name("", "namespaces", rest[1], rest[3], msel)]
    elif len(rest) == 5 and rest[0] == "namespaces":
        _, ns, resource, name, metric = rest
        if name == "*":
            sel = _selector(request, "labelSelector")
            values = provider.get_metric_by_selector(ns, resource, sel, metric, msel)
        else:
            values = [provider.get_metric_by_name(ns, resource, name, metric, msel)]
    elif len(rest) == 3:  # cluster-scoped object (only the namespaces pseudo-resource has metrics)
        resource, name, metric = rest
        if name == "*":
            sel = _selector(request, "labelSelector")
            values = provider.get_metric_by_selector("", resource, sel, metric, msel)
        else:
            values = [provider.get_metric_by_name("", resource, name, metric, msel)]
    else:
        raise StatusError(404, "NotFound", _NOT_FOUND)
    return {
        "kind": "MetricValueList",
        "apiVersion": f"{wire.CUSTOM_GROUP}/{version}",
        "metadata": {},
        "items": [_custom_item(version, v, msel) for v in values],
    }


def _external(provider: DecisionStoreProvider, request: web.Request, rest: list[str]) -> dict[str, Any]:
    if len(rest) != 3 or rest[0] != "namespaces":
        raise StatusError(404, "NotFound", _NOT_FOUND)
    msel = _selector(request, "labelSelector")
    values = provider.get_external_metric(rest[1], msel, rest[2])
    return {
        "kind": "ExternalMetricValueList",
        "apiVersion": f"{wire.EXTERNAL_GROUP}/v1beta1",
        "metadata": {},
        "items": [_external_item(v) for v in values],
    }


async def _apis(request: web.Request) -> web.Response:
    if request.method not in ("GET", "HEAD"):
        raise StatusError(405, "MethodNotAllowed", f"the server does not allow method {request.method}")
    provider = request.app[PROVIDER_KEY]
    segs = _segments(request)[1:]  # drop "apis"
    if not segs:
        if wire.AGGREGATED_DISCOVERY_MARKER in request.headers.get("Accept", ""):
            raise StatusError(406, "NotAcceptable", "aggregated discovery is not served; use legacy discovery")
        return _json(wire.api_group_list())
    group = segs[0]
    versions = wire.GROUP_VERSIONS.get(group)
    if versions is None:
        raise StatusError(404, "NotFound", _NOT_FOUND)
    if len(segs) == 1:
        return _json(wire.api_group(group))
    version = segs[1]
    if version not in versions:
        raise StatusError(404, "NotFound", _NOT_FOUND)
    if len(segs) == 2:
        return _json(_resource_list(provider, group, version))
    try:
        if group == wire.CUSTOM_GROUP:
            return _json(_custom(provider, request, version, segs[2:]))
        return _json(_external(provider, request, segs[2:]))
    except MetricNotFoundError as e:
        raise StatusError(404, "NotFound", e.message) from None


def create_app(
    store: DecisionStore,
    *,
    now_s: Callable[[], float],
    max_age_s: float = 120.0,
    window_s: int = 60,
    auth: RequestHeaderAuth | None = None,
    pod_labels: PodLabels = record_labels,
    authz: CachingAuthorizer | None = None,
) -> web.Application:
    """The metrics API as an aiohttp app. `auth=None` disables requestheader auth (local/demo only);
    `authz` authorizes each authenticated user's request (SubjectAccessReview)."""
    provider = DecisionStoreProvider(store, now_s=now_s, max_age_s=max_age_s, window_s=window_s, pod_labels=pod_labels)
    app = web.Application(middlewares=[status_middleware, auth_middleware])
    app[PROVIDER_KEY] = provider
    app[AUTH_KEY] = auth
    app[AUTHZ_KEY] = authz
    for path in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(path, _ok)
    app.router.add_get("/openapi/v2", _openapi)
    app.router.add_get("/openapi/v3", _openapi)
    app.router.add_route("*", "/apis{tail:.*}", _apis)
    return app


@dataclass
class MetricsServer:
    """A running metrics API listener."""

    runner: web.AppRunner
    host: str
    port: int
    scheme: str
    cert: CertPair | None  # the serving cert (self-signed ones double as their own CA bundle)
    listener: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self.runner.server is not None:
            await self.runner.server.shutdown(1.0)
        await self.runner.cleanup()


async def serve(
    store: DecisionStore,
    *,
    now_s: Callable[[], float],
    host: str = "0.0.0.0",
    port: int = 6443,
    tls: bool = True,
    cert_file: str | None = None,
    key_file: str | None = None,
    cert_dir: str | None = None,
    cert_hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    auth: RequestHeaderAuth | None = None,
    max_age_s: float = 120.0,
    pod_labels: PodLabels = record_labels,
    limits: ServerLimits | None = None,
    authz: CachingAuthorizer | None = None,
) -> MetricsServer:
    """Start the metrics API. With `tls` and no cert/key given, a self-signed cert is generated
    into `cert_dir` (a temp dir if None). `port=0` picks a free port (see `.port`)."""
    app = create_app(store, now_s=now_s, max_age_s=max_age_s, auth=auth, pod_labels=pod_labels, authz=authz)
    cert: CertPair | None = None
    ssl_ctx = None
    if tls:
        if cert_file and key_file:
            cert = CertPair(Path(cert_file), Path(key_file))
        else:
            directory = Path(cert_dir or tempfile.mkdtemp(prefix="tfs-adapter-certs-"))
            cert = self_signed(directory, hosts=cert_hosts)
            log.info("metrics API: generated a self-signed serving certificate at %s", cert.cert_file)
        ssl_ctx = server_ssl_context(str(cert.cert_file), str(cert.key_file), auth.client_ca_pem if auth else None)
    if auth is None:
        log.warning("metrics API: requestheader authentication is disabled; do not expose this port")
    elif authz is None:
        log.warning("metrics API: no authorizer: every authenticated user may read every namespace")
    limits = limits or ServerLimits()
    runner = web.AppRunner(app, access_log=None, **limits.handler_kwargs())
    await runner.setup()
    listener = await listen(runner, host, port, ssl_ctx, limits)
    bound_port = int(listener.sockets[0].getsockname()[1]) if listener.sockets else port
    return MetricsServer(runner, host, bound_port, "https" if tls else "http", cert, listener)
