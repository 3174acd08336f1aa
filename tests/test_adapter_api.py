"""The metrics API over real HTTPS, read with the official `kubernetes` client the way the HPA reads it.

A real aiohttp server on 127.0.0.1 (own event loop in a thread), a CA-signed serving certificate,
front-proxy client certificates signed by a test requestheader CA, and `kubernetes.client.ApiClient`
as the HTTP client. Covers every path form, both custom-metrics versions, quantity round trips,
HPA arithmetic, staleness, auth refusals, Status bodies, and fuzzed paths/selectors (never 5xx).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import kubernetes.client
import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.utils import parse_quantity

from autoscaler.adapter import certs
from autoscaler.adapter.auth import RequestHeaderAuth
from autoscaler.adapter.metrics_api import MetricsServer, serve
from autoscaler.core.store import DecisionStore, PodSignals
from autoscaler.core.types import Binding, Decision, TargetKey
from autoscaler.spec.types import BatchingParams

NOW_S = 1_780_000_000.0  # 2026-05-28T20:26:40Z
CM = "/apis/custom.metrics.k8s.io"
EM = "/apis/external.metrics.k8s.io/v1beta1"
AGGREGATOR_HEADERS = {"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"}
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def decision(ns: str, dep: str, desired: int, time_s: float, **kw: Any) -> Decision:
    return Decision(
        target=TargetKey(ns, dep),
        time_s=time_s,
        desired_replicas=desired,
        current_replicas=desired,
        valid=True,
        reason="test",
        binding=Binding.NONE,
        batching=BatchingParams(),
        **kw,
    )


def fill_store(store: DecisionStore) -> None:
    resnet = TargetKey("serving", "resnet")
    store.put_decision(
        resnet,
        "resnet",
        decision("serving", "resnet", 7, NOW_S - 5, forecast_rps=123.4567, capacity_rps=25.5),
        labels={"app": "tfs-resnet", "tier": "gpu"},
    )
    store.put_pods(
        resnet,
        "resnet",
        (
            PodSignals("tfs-resnet-a", request_rate_rps=12.5, latency_ms=40.0, batch_fill=0.5, time_s=NOW_S - 3),
            PodSignals("tfs-resnet-b", request_rate_rps=10.0001, latency_ms=55.5, batch_fill=0.25, time_s=NOW_S),
            PodSignals("tfs-resnet-old", request_rate_rps=99.0, time_s=NOW_S - 1_000),  # stale: omitted
        ),
    )
    bert = TargetKey("serving", "bert")
    store.put_decision(bert, "bert", decision("serving", "bert", 3, NOW_S - 1), labels={"app": "tfs-bert"})
    store.put_pods(bert, "bert", (PodSignals("tfs-bert-x", request_rate_rps=4.0, time_s=NOW_S),))
    stale = TargetKey("serving", "stale")
    store.put_decision(stale, "old", decision("serving", "stale", 9, NOW_S - 1_000), labels={"app": "x"})
    other = TargetKey("other", "resnet")
    store.put_decision(other, "resnet", decision("other", "resnet", 2, NOW_S), labels={"app": "tfs-resnet"})


@dataclass
class Pki:
    serving_ca: certs.CertPair
    serving: certs.CertPair
    proxy_ca: certs.CertPair
    proxy_client: certs.CertPair  # CN front-proxy-client (allowed)
    intruder: certs.CertPair  # right CA, CN not allowed
    foreign: certs.CertPair  # allowed CN, signed by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d: Path = tmp_path_factory.mktemp("pki")
    serving_ca = certs.self_signed(d, common_name="test-serving-ca", stem="serving-ca")
    proxy_ca = certs.self_signed(d, common_name="test-front-proxy-ca", stem="proxy-ca")
    other_ca = certs.self_signed(d, common_name="other-ca", stem="other-ca")
    return Pki(
        serving_ca=serving_ca,
        serving=certs.issue(serving_ca, d, common_name="adapter", stem="serving", hosts=("127.0.0.1",)),
        proxy_ca=proxy_ca,
        proxy_client=certs.issue(proxy_ca, d, common_name="front-proxy-client", stem="pc", client=True),
        intruder=certs.issue(proxy_ca, d, common_name="intruder", stem="intruder", client=True),
        foreign=certs.issue(other_ca, d, common_name="front-proxy-client", stem="foreign", client=True),
    )


@dataclass
class Running:
    server: MetricsServer
    store: DecisionStore
    clock: list[float]
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    clients: dict[str, kubernetes.client.ApiClient] = field(default_factory=dict)


@pytest.fixture(scope="module")
def adapter(pki: Pki) -> Iterator[Running]:
    store = DecisionStore()
    fill_store(store)
    clock = [NOW_S]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    auth = RequestHeaderAuth(client_ca_pem=pki.proxy_ca.cert_pem(), allowed_names=("front-proxy-client",))
    coro = serve(
        store,
        now_s=lambda: clock[0],
        host="127.0.0.1",
        port=0,
        cert_file=str(pki.serving.cert_file),
        key_file=str(pki.serving.key_file),
        auth=auth,
        max_age_s=120.0,
    )
    server = asyncio.run_coroutine_threadsafe(coro, loop).result(10)
    running = Running(server, store, clock, loop, thread)
    yield running
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def client(running: Running, pki: Pki, who: str = "proxy_client") -> kubernetes.client.ApiClient:
    if who not in running.clients:
        cfg = kubernetes.client.Configuration(host=running.server.url)
        cfg.ssl_ca_cert = str(pki.serving_ca.cert_file)
        if who != "anonymous":
            pair: certs.CertPair = getattr(pki, who)
            cfg.cert_file, cfg.key_file = str(pair.cert_file), str(pair.key_file)
        cfg.retries = False
        running.clients[who] = kubernetes.client.ApiClient(cfg)
    return running.clients[who]


def get(
    api: kubernetes.client.ApiClient,
    path: str,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """GET through the kubernetes client (param_serialize + call_api, as its generated APIs do).

    Returns (status, decoded JSON body) for 2xx and errors alike.
    """
    hdrs = {"Accept": "application/json", **AGGREGATOR_HEADERS, **(headers or {})}
    method, url, hdrs, _, _ = api.param_serialize(
        "GET", path, query_params=list((query or {}).items()), header_params=hdrs, auth_settings=[]
    )
    resp = api.call_api(method, url, header_params=hdrs, _request_timeout=10)
    return resp.status, json.loads(resp.read())


@pytest.fixture
def api(adapter: Running, pki: Pki) -> kubernetes.client.ApiClient:
    adapter.clock[0] = NOW_S
    return client(adapter, pki)


def milli(q: str) -> int:
    """What the HPA reads: Quantity.MilliValue() = ceil(q*1000)."""
    return math.ceil(parse_quantity(q) * 1000)


def assert_status(body: dict[str, Any], code: int, reason: str, message: str | None = None) -> None:
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == code and body["reason"] == reason
    if message is not None:
        assert body["message"] == message


# ------------------------------------------------------------------------------------------ discovery
def test_discovery_documents(api: kubernetes.client.ApiClient) -> None:
    code, body = get(api, "/apis")
    assert code == 200 and body["kind"] == "APIGroupList"
    groups = {g["name"]: g for g in body["groups"]}
    assert groups["custom.metrics.k8s.io"]["preferredVersion"]["version"] == "v1beta2"
    assert [v["version"] for v in groups["custom.metrics.k8s.io"]["versions"]] == ["v1beta2", "v1beta1"]
    code, body = get(api, "/apis/external.metrics.k8s.io")
    assert code == 200 and body["kind"] == "APIGroup" and body["preferredVersion"]["version"] == "v1beta1"
    for version in ("v1beta1", "v1beta2"):
        code, body = get(api, f"{CM}/{version}")
        assert code == 200 and body["kind"] == "APIResourceList" and body["apiVersion"] == "v1"
        assert body["groupVersion"] == f"custom.metrics.k8s.io/{version}"
        res = {r["name"]: r for r in body["resources"]}
        assert res["pods/tfserving_request_rate"]["namespaced"] is True
        assert res["deployments.apps/tfserving_autoscaler_desired_replicas"]["kind"] == "MetricValueList"
        assert res["namespaces/tfserving_autoscaler_desired_replicas"]["namespaced"] is False
        assert all(r["verbs"] == ["get"] for r in body["resources"])
    code, body = get(api, EM)
    names = {r["name"] for r in body["resources"]}
    assert {"tfserving_autoscaler_desired_replicas", "tfserving_autoscaler_forecast_rps"} <= names
    assert all(r["kind"] == "ExternalMetricValueList" for r in body["resources"])


@pytest.mark.parametrize("v", ["v2", "v2beta1"])
def test_aggregated_discovery_accept_gets_406(api: kubernetes.client.ApiClient, v: str) -> None:
    accept = f"application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList,application/json"
    code, body = get(api, "/apis", headers={"Accept": accept})
    assert code == 406
    assert_status(body, 406, "NotAcceptable")


# ---------------------------------------------------------------------------------------- pods metrics
@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
def test_pods_metric_by_selector_both_versions(api: kubernetes.client.ApiClient, version: str) -> None:
    path = f"{CM}/{version}/namespaces/serving/pods/*/tfserving_request_rate"
    code, body = get(api, path, {"labelSelector": "app=tfs-resnet"})
    assert code == 200
    assert body["kind"] == "MetricValueList" and body["apiVersion"] == f"custom.metrics.k8s.io/{version}"
    assert body["metadata"] == {}
    items = {i["describedObject"]["name"]: i for i in body["items"]}
    assert set(items) == {"tfs-resnet-a", "tfs-resnet-b"}  # stale pod and other targets' pods left out
    a = items["tfs-resnet-a"]
    assert a["describedObject"] == {"kind": "Pod", "namespace": "serving", "name": "tfs-resnet-a", "apiVersion": "v1"}
    assert TIMESTAMP_RE.match(a["timestamp"]) and a["timestamp"] == "2026-05-28T20:26:37Z"
    assert parse_quantity(a["value"]) == parse_quantity("12.5") and a["value"] == "12500m"
    assert milli(items["tfs-resnet-b"]["value"]) == 10001  # 10.0001 -> ceil to 10001m (never below)
    if version == "v1beta1":
        assert a["metricName"] == "tfserving_request_rate" and a["window"] == 60 and a["selector"] is None
        assert "metric" not in a and "windowSeconds" not in a
    else:
        assert a["metric"] == {"name": "tfserving_request_rate", "selector": None} and a["windowSeconds"] == 60
        assert "metricName" not in a and "window" not in a
    # The HPA's Pods/AverageValue reduction: sum(milli) // count, then ceil(avg/target*ready).
    avg_milli = sum(milli(i["value"]) for i in body["items"]) // len(body["items"])
    assert avg_milli == (12500 + 10001) // 2


def test_pods_metric_label_selector_and_named_pod(api: kubernetes.client.ApiClient) -> None:
    path = f"{CM}/v1beta2/namespaces/serving/pods/*/tfserving_latency_ms"
    code, body = get(
        api, path, {"labelSelector": "app in (tfs-resnet,tfs-bert)", "metricLabelSelector": "pod=tfs-resnet-b"}
    )
    assert code == 200 and [i["describedObject"]["name"] for i in body["items"]] == ["tfs-resnet-b"]
    assert body["items"][0]["metric"]["selector"] == {"matchLabels": {"pod": "tfs-resnet-b"}}
    assert parse_quantity(body["items"][0]["value"]) == parse_quantity("55.5")
    code, body = get(api, f"{CM}/v1beta1/namespaces/serving/pods/tfs-resnet-a/tfserving_batch_fill")
    assert code == 200 and len(body["items"]) == 1 and body["items"][0]["value"] == "500m"
    code, body = get(api, f"{CM}/v1beta2/namespaces/serving/pods/tfs-resnet-old/tfserving_request_rate")
    assert code == 404
    msg = "the server could not find the metric tfserving_request_rate for pods tfs-resnet-old"
    assert_status(body, 404, "NotFound", msg)


# ----------------------------------------------------------------------- object / namespace / external
@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
def test_object_metric_on_deployment(api: kubernetes.client.ApiClient, version: str) -> None:
    path = f"{CM}/{version}/namespaces/serving/deployments.apps/resnet/tfserving_autoscaler_desired_replicas"
    code, body = get(api, path)
    assert code == 200 and len(body["items"]) == 1
    item = body["items"][0]
    assert item["describedObject"] == {
        "kind": "Deployment",
        "namespace": "serving",
        "name": "resnet",
        "apiVersion": "apps/v1",
    }
    assert parse_quantity(item["value"]) == 7
    # HPA Object metric, AverageValue target 1: ceil(7000 / 1000) = 7.
    assert math.ceil(milli(item["value"]) / 1000) == 7
    code, body = get(api, path.replace("/resnet/", "/stale/"))
    assert code == 404
    msg = "the server could not find the metric tfserving_autoscaler_desired_replicas for deployments.apps stale"
    assert_status(body, 404, "NotFound", msg)


def test_namespace_metric_sums_fresh_targets(api: kubernetes.client.ApiClient) -> None:
    path = f"{CM}/v1beta2/namespaces/serving/metrics/tfserving_autoscaler_desired_replicas"
    code, body = get(api, path)
    assert code == 200
    assert body["items"][0]["describedObject"] == {"kind": "Namespace", "name": "serving", "apiVersion": "v1"}
    assert parse_quantity(body["items"][0]["value"]) == 7 + 3  # the stale target (9) is left out
    code, body = get(api, path, {"metricLabelSelector": "deployment=bert"})
    assert code == 200 and body["items"][0]["value"] == "3"


def test_external_desired_replicas_lands_on_decision(api: kubernetes.client.ApiClient) -> None:
    path = f"{EM}/namespaces/serving/tfserving_autoscaler_desired_replicas"
    code, body = get(api, path, {"labelSelector": "deployment=resnet"})
    assert code == 200
    assert body["kind"] == "ExternalMetricValueList" and body["apiVersion"] == "external.metrics.k8s.io/v1beta1"
    (item,) = body["items"]
    assert item["metricName"] == "tfserving_autoscaler_desired_replicas" and item["window"] == 60
    assert item["metricLabels"] == {
        "namespace": "serving", "deployment": "resnet", "model": "resnet", "app": "tfs-resnet", "tier": "gpu",
    }  # fmt: skip
    assert item["timestamp"] == "2026-05-28T20:26:35Z"
    # HPA External metric, AverageValue 1: replicas = ceil(sum(milli) / 1000).
    assert math.ceil(sum(milli(i["value"]) for i in body["items"]) / 1000) == 7
    code, body = get(
        api, f"{EM}/namespaces/serving/tfserving_autoscaler_forecast_rps", {"labelSelector": "model=resnet"}
    )
    assert code == 200 and body["items"][0]["value"] == "123457m"  # ceil to milli: never under-reports
    assert 0 <= parse_quantity(body["items"][0]["value"]) - parse_quantity("123.4567") < parse_quantity("0.001")
    code, body = get(
        api, f"{EM}/namespaces/serving/tfserving_autoscaler_capacity_rps", {"labelSelector": "app=tfs-resnet"}
    )
    assert code == 200 and body["items"][0]["value"] == "25500m"
    code, body = get(api, f"{EM}/namespaces/other/tfserving_autoscaler_desired_replicas")
    assert code == 200 and [i["metricLabels"]["namespace"] for i in body["items"]] == ["other"]


def test_stale_and_unknown_are_404(adapter: Running, api: kubernetes.client.ApiClient) -> None:
    path = f"{EM}/namespaces/serving/tfserving_autoscaler_desired_replicas"
    code, body = get(api, path, {"labelSelector": "deployment=stale"})
    msg = "the server could not find the metric tfserving_autoscaler_desired_replicas for provided labels"
    assert code == 404
    assert_status(body, 404, "NotFound", msg)
    code, body = get(api, f"{EM}/namespaces/serving/no_such_metric")
    assert code == 404 and body["message"] == "the server could not find the metric no_such_metric for provided labels"
    code, body = get(api, f"{CM}/v1beta2/namespaces/serving/pods/*/no_such_metric", {"labelSelector": "app=x"})
    assert_status(body, 404, "NotFound", "the server could not find the metric no_such_metric for pods")
    code, body = get(
        api, f"{CM}/v1beta2/namespaces/serving/pods/*/tfserving_request_rate", {"labelSelector": "app=none"}
    )
    msg = "the server could not find the metric tfserving_request_rate for pods * with selector app=none"
    assert_status(body, 404, "NotFound", msg)
    # Time passes with no new decision: the fresh target goes stale too (injected clock).
    adapter.clock[0] = NOW_S + 200
    code, body = get(api, path, {"labelSelector": "deployment=resnet"})
    assert code == 404
    code, body = get(api, f"{CM}/v1beta2/namespaces/serving/pods/*/tfserving_request_rate")
    assert code == 404  # all pods stale -> missing for the HPA
    adapter.clock[0] = NOW_S
    code, _ = get(api, path, {"labelSelector": "deployment=resnet"})
    assert code == 200


@pytest.mark.parametrize(
    "selector",
    ["app=", "=x", "app in (a", "app notin a", "a b", "app==x==y", "-bad=x", "a=b,", "a=!b", "x/y/z=1", "a>b"],
)
def test_malformed_selectors_are_400(api: kubernetes.client.ApiClient, selector: str) -> None:
    if selector == "app=":  # empty value is valid: matches no fresh series -> 404, not 400
        code, _ = get(
            api, f"{EM}/namespaces/serving/tfserving_autoscaler_desired_replicas", {"labelSelector": selector}
        )
        assert code == 404
        return
    for path, param in (
        (f"{EM}/namespaces/serving/tfserving_autoscaler_desired_replicas", "labelSelector"),
        (f"{CM}/v1beta2/namespaces/serving/pods/*/tfserving_request_rate", "labelSelector"),
        (f"{CM}/v1beta1/namespaces/serving/pods/*/tfserving_request_rate", "metricLabelSelector"),
    ):
        code, body = get(api, path, {param: selector})
        assert code == 400, (path, selector, body)
        assert_status(body, 400, "BadRequest")
        assert param in body["message"]


# ------------------------------------------------------------------------------------------- security
def test_health_open_and_openapi_404(adapter: Running, pki: Pki) -> None:
    anon = client(adapter, pki, "anonymous")
    for path in ("/healthz", "/livez", "/readyz"):
        method, url, hdrs, _, _ = anon.param_serialize("GET", path, auth_settings=[])
        resp = anon.call_api(method, url, header_params=hdrs)
        assert resp.status == 200 and resp.read() == b"ok"
        assert resp.headers["Content-Type"].startswith("text/plain")
    for path in ("/openapi/v2", "/openapi/v3"):
        code, body = get(anon, path)
        assert code == 404
        assert_status(body, 404, "NotFound")


def test_refusals(adapter: Running, pki: Pki) -> None:
    path = f"{EM}/namespaces/serving/tfserving_autoscaler_desired_replicas"
    code, body = get(client(adapter, pki, "anonymous"), path)
    assert code == 401
    assert_status(body, 401, "Unauthorized")
    code, body = get(client(adapter, pki, "intruder"), path)
    assert code == 403 and "intruder" in body["message"]
    assert_status(body, 403, "Forbidden")
    code, body = get(client(adapter, pki, "anonymous"), f"{CM}/v1beta2")  # discovery needs auth too
    assert code == 401
    # A certificate from another CA fails the TLS handshake itself.
    with pytest.raises(urllib3.exceptions.HTTPError):
        get(client(adapter, pki, "foreign"), path)
    # Allowed cert but no X-Remote-User: not authenticated.
    api = client(adapter, pki)
    resp = api.rest_client.pool_manager.request(
        "GET", adapter.server.url + path, headers={"Accept": "application/json"}
    )
    assert resp.status == 401 and json.loads(resp.data)["kind"] == "Status"
    code, _ = get(api, path)
    assert code == 200


def test_methods_and_unknown_paths(adapter: Running, pki: Pki) -> None:
    api = client(adapter, pki)
    pool = api.rest_client.pool_manager
    resp = pool.request("POST", adapter.server.url + f"{CM}/v1beta2", headers=AGGREGATOR_HEADERS)
    assert resp.status == 405 and json.loads(resp.data)["reason"] == "MethodNotAllowed"
    for path in ("/apis/foo.example.com", f"{CM}/v9", f"{CM}/v1beta2/x", "/nothing/here", f"{EM}/namespaces/a/b/c"):
        code, body = get(api, path)
        assert code == 404, path
        assert_status(body, 404, "NotFound")


# ---------------------------------------------------------------------------------------- fuzzing
_segment = st.one_of(
    st.sampled_from(["namespaces", "serving", "pods", "*", "metrics", "deployments.apps", "resnet",
                     "tfserving_request_rate", "tfserving_autoscaler_desired_replicas", "nodes", "..", "."]),
    st.text(min_size=0, max_size=12),
)  # fmt: skip
_selector = st.one_of(
    st.text(alphabet="abc=!,() in/.-_xyz<>0123456789", max_size=30),
    st.text(max_size=20),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    base=st.sampled_from([f"{CM}/v1beta1", f"{CM}/v1beta2", EM, "/apis", "/apis/custom.metrics.k8s.io", ""]),
    segments=st.lists(_segment, max_size=6),
    label_selector=st.none() | _selector,
    metric_selector=st.none() | _selector,
)
def test_fuzzed_requests_never_5xx(
    adapter: Running, pki: Pki, base: str, segments: list[str], label_selector: str | None, metric_selector: str | None
) -> None:
    adapter.clock[0] = NOW_S
    pool = client(adapter, pki).rest_client.pool_manager
    path = base + "".join("/" + quote(s, safe="") for s in segments)
    fields = {
        k: v for k, v in (("labelSelector", label_selector), ("metricLabelSelector", metric_selector)) if v is not None
    }
    resp = pool.request("GET", adapter.server.url + (path or "/"), fields=fields, headers=AGGREGATOR_HEADERS)
    assert resp.status < 500, (path, fields, resp.data[:300])
    if resp.status != 200 or resp.headers.get("Content-Type", "").startswith("application/json"):
        body = json.loads(resp.data)
        assert "kind" in body and ("apiVersion" in body)
