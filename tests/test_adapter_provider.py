"""The provider without sockets: per-pod label resolvers, index invalidation on store writes,
selector narrowing, the freshness boundary, and the catch-all Status for internal errors."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
import pytest

from autoscaler.adapter.metrics_api import serve
from autoscaler.adapter.provider import (
    DESIRED_REPLICAS,
    POD_REQUEST_RATE,
    DecisionStoreProvider,
    MetricNotFoundError,
)
from autoscaler.adapter.selectors import parse_selector
from autoscaler.core.store import DecisionStore, PodSignals, TargetRecord
from autoscaler.core.types import Binding, Decision, TargetKey
from autoscaler.spec.types import BatchingParams

NOW_S = 1_000_000.0
EVERYTHING = parse_selector("")


def put(store: DecisionStore, dep: str, desired: int, time_s: float = NOW_S, **labels: str) -> None:
    t = TargetKey("ns", dep)
    d = Decision(
        target=t, time_s=time_s, desired_replicas=desired, current_replicas=1, valid=True, reason="t",
        binding=Binding.NONE, batching=BatchingParams(),
    )  # fmt: skip
    store.put_decision(t, dep, d, labels=dict(labels))


def test_per_pod_labels_resolver() -> None:
    store = DecisionStore()
    put(store, "a", 2, app="a")
    pods = tuple(PodSignals(f"a-{i}", request_rate_rps=float(i + 1), time_s=NOW_S) for i in range(4))
    store.put_pods(TargetKey("ns", "a"), "a", pods)

    def by_pod(rec: TargetRecord, pod: PodSignals) -> Mapping[str, str]:
        return {**rec.labels, "canary": "true" if pod.pod.endswith(("-0", "-1")) else "false"}

    provider = DecisionStoreProvider(store, now_s=lambda: NOW_S, pod_labels=by_pod)
    got = provider.get_metric_by_selector("ns", "pods", parse_selector("canary=true"), POD_REQUEST_RATE, EVERYTHING)
    assert [v.described_object.name for v in got] == ["a-0", "a-1"]
    assert [v.value for v in got] == [1.0, 2.0]
    default = DecisionStoreProvider(store, now_s=lambda: NOW_S)
    with pytest.raises(MetricNotFoundError, match="with selector canary=true"):
        default.get_metric_by_selector("ns", "pods", parse_selector("canary=true"), POD_REQUEST_RATE, EVERYTHING)
    assert len(default.get_metric_by_selector("ns", "pods", parse_selector("app=a"), POD_REQUEST_RATE, EVERYTHING)) == 4


def test_store_writes_are_seen_immediately() -> None:
    store = DecisionStore()
    put(store, "a", 2, app="a")
    provider = DecisionStoreProvider(store, now_s=lambda: NOW_S)
    sel = parse_selector("deployment=a")
    assert [v.value for v in provider.get_external_metric("ns", sel, DESIRED_REPLICAS)] == [2.0]
    put(store, "a", 5, app="a")
    assert [v.value for v in provider.get_external_metric("ns", sel, DESIRED_REPLICAS)] == [5.0]
    store.remove(TargetKey("ns", "a"))
    with pytest.raises(MetricNotFoundError):
        provider.get_external_metric("ns", sel, DESIRED_REPLICAS)


def test_selector_narrowing_matches_full_scan() -> None:
    store = DecisionStore()
    for i in range(20):
        put(store, f"d{i:02d}", i, app=f"x{i % 3}", tier="gpu" if i % 2 else "cpu")
    provider = DecisionStoreProvider(store, now_s=lambda: NOW_S)
    for text in ("app in (x2,x0)", "tier=gpu,app=x1", "app=x1,tier!=gpu", "!nothing,app notin (x0)", "model=d07"):
        sel = parse_selector(text)
        try:
            got = [v.labels["deployment"] for v in provider.get_external_metric("ns", sel, DESIRED_REPLICAS)]
        except MetricNotFoundError:
            got = []
        want = [r.target.deployment for r in store.snapshot() if sel.matches({**r.labels, "model": r.model_name})]
        assert got == want and got, text


def test_pod_selector_narrowing_matches_full_scan() -> None:
    store = DecisionStore()
    for i in range(12):
        put(store, f"d{i:02d}", 1, app=f"x{i % 3}", tier="gpu" if i % 2 else "cpu")
        pods = tuple(PodSignals(f"d{i:02d}-{j}", request_rate_rps=1.0, time_s=NOW_S) for j in range(3))
        store.put_pods(TargetKey("ns", f"d{i:02d}"), f"d{i:02d}", pods)
    provider = DecisionStoreProvider(store, now_s=lambda: NOW_S)
    for text in ("app in (x2,x0)", "tier=gpu,app=x1", "app=x1,tier!=gpu", "app notin (x0)", "tier"):
        sel = parse_selector(text)
        got = [
            v.described_object.name
            for v in provider.get_metric_by_selector("ns", "pods", sel, POD_REQUEST_RATE, EVERYTHING)
        ]
        want = [p.pod for r in store.snapshot() if sel.matches(r.labels) for p in r.pods]
        assert got == want and got, text


def test_freshness_boundary() -> None:
    store = DecisionStore()
    put(store, "a", 3, time_s=NOW_S - 60.0)
    clock = [NOW_S]
    provider = DecisionStoreProvider(store, now_s=lambda: clock[0], max_age_s=60.0)
    assert provider.get_external_metric("ns", EVERYTHING, DESIRED_REPLICAS)[0].value == 3.0  # exactly max age
    clock[0] += 0.001
    with pytest.raises(MetricNotFoundError):
        provider.get_external_metric("ns", EVERYTHING, DESIRED_REPLICAS)


async def test_internal_error_is_a_status_body() -> None:
    """A bug in a plug-in (here the pod-label resolver) still answers with a metav1.Status, not HTML."""
    store = DecisionStore()
    put(store, "a", 2, app="a")
    store.put_pods(TargetKey("ns", "a"), "a", (PodSignals("a-0", request_rate_rps=1.0, time_s=NOW_S),))

    def broken(rec: TargetRecord, pod: PodSignals) -> Mapping[str, str]:
        raise RuntimeError("resolver bug")

    server = await serve(store, now_s=lambda: NOW_S, host="127.0.0.1", port=0, tls=False, pod_labels=broken)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"{server.url}/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/*/{POD_REQUEST_RATE}"
            async with session.get(url) as resp:
                body = await resp.json()
                assert resp.status == 500 and resp.content_type == "application/json"
                assert body["kind"] == "Status" and body["reason"] == "InternalError" and body["code"] == 500
                assert "resolver bug" not in body["message"]  # internals are logged, not leaked
            async with session.get(
                f"{server.url}/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/{DESIRED_REPLICAS}"
            ) as resp:
                assert resp.status == 500  # the index build fails for every path; the server stays up
            async with session.get(f"{server.url}/healthz") as resp:
                assert resp.status == 200 and await resp.text() == "ok"
    finally:
        await server.close()
