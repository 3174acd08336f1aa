"""Front-proxy (requestheader) authentication and TLS for the aggregated metrics API.

Owned here because the kube-aggregator authenticates the user itself and proxies with its client
certificate plus `X-Remote-User`/`X-Remote-Group` headers (k8s.io/apiserver
`pkg/authentication/request/headerrequest/requestheader.go`, `NewDynamicVerifyOptionsSecure`;
kubernetes.io "Configure the Aggregation Layer"). Those headers may only be believed when the TCP peer
presented a certificate that verifies against the requestheader client CA and whose CN is in
`requestheader-allowed-names` (empty = any CN). TLS uses CERT_OPTIONAL so kubelet probes (no client
cert) still reach /healthz.

The adapter must not import the Kubernetes client: the runtime reads ConfigMap
`kube-system/extension-apiserver-authentication` and passes its `data` to
`RequestHeaderAuth.from_configmap_data`.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDictProxy


@dataclass(frozen=True)
class RequestHeaderAuth:
    """requestheader authentication settings (the kube-apiserver `--requestheader-*` flags)."""

    client_ca_pem: str
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_headers_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @staticmethod
    def from_configmap_data(data: Mapping[str, str]) -> RequestHeaderAuth:
        """Build from `extension-apiserver-authentication` data (header keys hold JSON arrays)."""

        def arr(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = data.get(key)
            if raw is None or raw.strip() == "":
                return default
            parsed = json.loads(raw)
            if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
                raise ValueError(f"{key}: expected a JSON array of strings, got {raw!r}")
            return tuple(parsed)

        ca = data.get("requestheader-client-ca-file")
        if not ca:
            raise ValueError("requestheader-client-ca-file is missing: the cluster has no front-proxy CA")
        return RequestHeaderAuth(
            client_ca_pem=ca,
            allowed_names=arr("requestheader-allowed-names", ()),
            username_headers=arr("requestheader-username-headers", ("X-Remote-User",)),
            group_headers=arr("requestheader-group-headers", ("X-Remote-Group",)),
            extra_headers_prefixes=arr("requestheader-extra-headers-prefix", ("X-Remote-Extra-",)),
        )


@dataclass(frozen=True)
class RemoteUser:
    name: str
    groups: tuple[str, ...]
    extra: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class AuthFailure:
    code: int  # 401 or 403
    reason: str  # "Unauthorized" / "Forbidden"
    message: str


def peer_common_name(peercert: Any) -> str | None:
    """The CN of a verified peer certificate dict (ssl.getpeercert()), None if no cert."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


def authenticate(auth: RequestHeaderAuth, peercert: Any, headers: CIMultiDictProxy[str]) -> RemoteUser | AuthFailure:
    """Decide who the request is from. `peercert` is only non-empty when it verified against the CA."""
    cn = peer_common_name(peercert)
    if cn is None:
        return AuthFailure(401, "Unauthorized", "Unauthorized: no verified client certificate")
    if auth.allowed_names and cn not in auth.allowed_names:
        return AuthFailure(
            403,
            "Forbidden",
            f"forbidden: client certificate CN {cn!r} is not in requestheader-allowed-names",
        )
    user = next((v for h in auth.username_headers if (v := headers.get(h, "").strip())), "")
    if not user:
        return AuthFailure(401, "Unauthorized", "Unauthorized: no remote user header")
    groups = tuple(g for h in auth.group_headers for g in headers.getall(h, ()) if g)
    extra: dict[str, list[str]] = {}
    for prefix in auth.extra_headers_prefixes:
        plen = len(prefix)
        for key, value in headers.items():
            if len(key) > plen and key[:plen].lower() == prefix.lower():
                extra.setdefault(key[plen:].lower(), []).append(value)
    return RemoteUser(user, groups, {k: tuple(v) for k, v in extra.items()})


def server_ssl_context(cert_file: str, key_file: str, client_ca_pem: str | None) -> ssl.SSLContext:
    """TLS server context: serving cert, and CERT_OPTIONAL client verification against the CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.set_alpn_protocols(["http/1.1"])  # aiohttp speaks HTTP/1.1; Go clients fall back from h2 cleanly
    if client_ca_pem:
        ctx.load_verify_locations(cadata=client_ca_pem)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
