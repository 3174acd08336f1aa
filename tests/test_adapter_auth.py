"""requestheader configuration and decisions: ConfigMap parsing, custom header names, allowed CNs,
and a self-signed serving certificate accepted by a real TLS handshake from the kubernetes client."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import kubernetes.client
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from autoscaler.adapter.auth import AuthFailure, RemoteUser, RequestHeaderAuth, authenticate
from autoscaler.adapter.metrics_api import serve
from autoscaler.core.store import DecisionStore

CM_DATA = {
    "client-ca-file": "CLIENT-CA",
    "requestheader-client-ca-file": "FRONT-PROXY-CA",
    "requestheader-allowed-names": '["front-proxy-client","aggregator"]',
    "requestheader-username-headers": '["X-Custom-User"]',
    "requestheader-group-headers": '["X-Custom-Group"]',
    "requestheader-extra-headers-prefix": '["X-Custom-Extra-"]',
}


def peer(cn: str) -> dict[str, object]:
    """The shape ssl.SSLSocket.getpeercert() returns for a verified certificate."""
    return {"subject": ((("organizationName", "k8s"),), (("commonName", cn),))}


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_configmap_parsing_and_custom_headers() -> None:
    auth = RequestHeaderAuth.from_configmap_data(CM_DATA)
    assert auth.client_ca_pem == "FRONT-PROXY-CA"
    assert auth.allowed_names == ("front-proxy-client", "aggregator")
    h = headers(
        ("X-Custom-User", "system:kube-aggregator"),
        ("X-Custom-Group", "system:masters"),
        ("X-Custom-Group", "system:authenticated"),
        ("X-Custom-Extra-Scopes", "a"),
        ("X-Custom-Extra-Scopes", "b"),
        ("X-Remote-User", "ignored"),
    )
    who = authenticate(auth, peer("aggregator"), h)
    assert who == RemoteUser(
        "system:kube-aggregator", ("system:masters", "system:authenticated"), {"scopes": ("a", "b")}
    )
    # The default header names are not honoured once the ConfigMap names others.
    assert isinstance(authenticate(auth, peer("aggregator"), headers(("X-Remote-User", "u"))), AuthFailure)


def test_defaults_and_refusals() -> None:
    auth = RequestHeaderAuth.from_configmap_data({"requestheader-client-ca-file": "CA"})
    assert auth.allowed_names == () and auth.username_headers == ("X-Remote-User",)
    ok = authenticate(auth, peer("anyone"), headers(("X-Remote-User", "u")))  # empty allow-list: any CN
    assert isinstance(ok, RemoteUser) and ok.name == "u"
    strict = RequestHeaderAuth("CA", allowed_names=("front-proxy-client",))
    no_cert = authenticate(strict, None, headers(("X-Remote-User", "u")))
    assert isinstance(no_cert, AuthFailure) and no_cert.code == 401
    wrong_cn = authenticate(strict, peer("mallory"), headers(("X-Remote-User", "u")))
    assert isinstance(wrong_cn, AuthFailure) and wrong_cn.code == 403 and "mallory" in wrong_cn.message
    with pytest.raises(ValueError, match="requestheader-client-ca-file"):
        RequestHeaderAuth.from_configmap_data({"client-ca-file": "x"})
    with pytest.raises(ValueError, match="JSON array"):
        RequestHeaderAuth.from_configmap_data({**CM_DATA, "requestheader-allowed-names": '"x"'})


async def test_self_signed_serving_cert_is_generated_and_verifiable(tmp_path: Path) -> None:
    server = await serve(DecisionStore(), now_s=lambda: 0.0, host="127.0.0.1", port=0, cert_dir=str(tmp_path))
    try:
        assert server.cert is not None and server.cert.cert_file.parent == tmp_path
        cfg = kubernetes.client.Configuration(host=server.url)
        cfg.ssl_ca_cert = str(server.cert.cert_file)  # the self-signed cert is its own CA bundle
        api = kubernetes.client.ApiClient(cfg)

        def call() -> tuple[int, bytes]:
            method, url, hdrs, _, _ = api.param_serialize("GET", "/apis/external.metrics.k8s.io/v1beta1")
            resp = api.call_api(method, url, header_params=hdrs)
            return resp.status, resp.read()

        status, body = await asyncio.to_thread(call)
        assert status == 200 and json.loads(body)["kind"] == "APIResourceList"  # auth=None: open (demo)
        ctx = ssl.create_default_context(cafile=str(tmp_path / "serving.crt"))
        _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx, server_hostname="localhost")
        sans = writer.get_extra_info("peercert")["subjectAltName"]
        assert ("DNS", "localhost") in sans and ("IP Address", "127.0.0.1") in sans
        writer.close()
        await writer.wait_closed()
    finally:
        await server.close()
