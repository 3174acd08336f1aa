"""TF Serving model status end to end: the emulator's version lifecycle, the poller, the daemon's wiring.

Real HTTP throughout: emulator replicas answer `GET /v1/models/<m>` as TF Serving does (START/LOADING
/AVAILABLE/UNLOADING/END), a closed port plays a pod whose server is not up yet, a socket that never
answers plays a hung pod. The daemon's `ModelStatusSource` over `PodDiscoveringSource` finds the pods
through kmock's API server, and a version rollout becomes Events on the Deployment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from test_runtime_kubeemu import DEPLOYMENTS, EVENTS, PODS, VersionedEmulator, api_client_for, deployment

from autoscaler.actuators.events import EventRecorder
from autoscaler.core.decide import State, decide
from autoscaler.core.types import TargetKey
from autoscaler.emulator import EmulatorReplica, ReplicaConfig
from autoscaler.emulator.grpc_service import available
from autoscaler.runtime.discovery import PodDiscoveringSource, PodLister
from autoscaler.runtime.model_status import ROLLOUT_DONE, ROLLOUT_STARTED, ModelStatusSource
from autoscaler.sources.model_status import (
    ModelStatusPoller,
    ModelStatusTracker,
    PodModelStatus,
    StatusRequest,
    fetch_rest,
    parse_rest_status,
)
from autoscaler.sources.scrape import ScrapeSource
from autoscaler.spec.types import ServingAutoscalerSpec, TargetRef

KEY = TargetKey("ml", "resnet")
_HAVE_TFS, _WHY = available()


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Wait for a state (not a duration): poll `check` until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("state not reached")
        await asyncio.sleep(0.05)


async def status_of(url: str, model: str = "resnet") -> tuple[tuple[int, str], ...]:
    return await asyncio.to_thread(fetch_rest, url, model, 2.0)


def http_get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def predict(url: str) -> int:
    req = urllib.request.Request(url + "/v1/models/resnet:predict", data=b'{"instances": [[1.0]]}', method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5.0) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


async def test_emulator_walks_a_version_rollout_like_tf_serving() -> None:
    cfg = ReplicaConfig(model_name="resnet", startup_delay_s=1.5, unload_delay_s=0.3)
    async with EmulatorReplica(cfg) as r:
        assert await status_of(r.url) == ((1, "LOADING"),)
        assert await asyncio.to_thread(predict, r.url) == 404  # nothing serves while loading
        await r.wait_ready(10)
        assert await status_of(r.url) == ((1, "AVAILABLE"),)
        r.load_version(2, delay_s=1.5)
        two_live = await status_of(r.url)
        assert two_live in (((1, "AVAILABLE"), (2, "START")), ((1, "AVAILABLE"), (2, "LOADING")))
        assert await asyncio.to_thread(predict, r.url) == 200  # v1 keeps serving during the load

        async def v1_ended() -> bool:
            return await status_of(r.url) == ((1, "END"), (2, "AVAILABLE"))

        await until(v1_ended)
        code, body = await asyncio.to_thread(http_get, r.url + "/v1/models/resnet/versions/1")
        assert code == 200 and parse_rest_status(json.loads(body)) == ((1, "END"),)
        code, body = await asyncio.to_thread(http_get, r.url + "/v1/models/resnet/versions/3")
        assert code == 404 and "Could not find any versions of model resnet" in body
        assert await status_of(r.url, "other") == ()  # 404: answered, nothing serves
        assert await asyncio.to_thread(predict, r.url) == 200  # now served by v2
        with pytest.raises(ValueError, match="already known"):
            r.load_version(2)


def test_rest_status_parse_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"model_version_status\[0\]\.state: expected one of"):
        parse_rest_status({"model_version_status": [{"version": "1", "state": "READY"}]})
    with pytest.raises(ValueError, match=r"model_version_status\[0\]\.version: expected an integer"):
        parse_rest_status({"model_version_status": [{"version": "v1", "state": "AVAILABLE"}]})
    with pytest.raises(ValueError, match="model_version_status: expected a list"):
        parse_rest_status({"error": "x"})
    with pytest.raises(ValueError, match="protocol: expected 'rest' or 'grpc'"):
        ModelStatusPoller(protocol="http")


async def test_poller_bounds_hung_and_refused_pods_as_unknown() -> None:
    hung = socket.socket()  # accepts connections (kernel backlog), never answers
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens: refused
    poller = ModelStatusPoller(timeout_s=0.5)
    try:
        async with (
            EmulatorReplica(ReplicaConfig(model_name="resnet")) as up,
            EmulatorReplica(ReplicaConfig(model_name="resnet", startup_delay_s=60.0)) as loading,
        ):
            await up.wait_ready(5)
            addrs = {
                "up": up.url,
                "loading": loading.url,
                "hung": f"http://127.0.0.1:{hung.getsockname()[1]}",
                "refused": f"http://127.0.0.1:{closed_port}",
            }
            t0 = time.perf_counter()
            got = await asyncio.to_thread(poller.poll, [StatusRequest(KEY, p, a, "resnet") for p, a in addrs.items()])
            elapsed_s = time.perf_counter() - t0
    finally:
        poller.close()
        hung.close()
    assert elapsed_s < 5.0  # bounded by the timeout, not by the hung pod
    assert got[(KEY, "up")].available and got[(KEY, "up")].answered
    assert got[(KEY, "loading")].versions == ((1, "LOADING"),) and not got[(KEY, "loading")].available
    assert not got[(KEY, "hung")].answered and not got[(KEY, "refused")].answered
    status, cold = ModelStatusTracker().update(KEY, {p: (None, s) for (_, p), s in got.items()}, 100.0)
    assert (status.pods, status.available, status.unknown, status.ready_bound) == (4, 1, 2, 3)
    assert status.versions == ((1, "AVAILABLE", 1), (1, "LOADING", 1))
    assert not status.rollout and not cold.ok


def test_cold_start_is_measured_from_pod_creation_to_model_available() -> None:
    tr = ModelStatusTracker()
    loading = PodModelStatus("a", ((1, "LOADING"),))
    refused = PodModelStatus("b", error="ConnectionRefusedError")
    serving = PodModelStatus("a", ((1, "AVAILABLE"),))
    old = PodModelStatus("c", ((1, "AVAILABLE"),))
    tr.update(KEY, {"a": (100.0, loading), "b": (104.0, refused), "c": (0.0, old)}, 110.0)
    _, cold = tr.update(KEY, {"a": (100.0, serving), "b": (104.0, refused), "c": (0.0, old)}, 120.0)
    # 'a' became AVAILABLE between the polls at 110 and 120: midpoint 115 - created 100; 'c' was
    # already serving when first seen, 'b' is not serving yet: neither gives a sample
    assert cold.ok and cold.value == 15.0 and "median of 1 pods" in cold.detail
    _, cold = tr.update(KEY, {"a": (100.0, serving), "b": (104.0, PodModelStatus("b", ((1, "AVAILABLE"),)))}, 130.0)
    assert cold.value == (15.0 + 21.0) / 2  # b: (120 + 130) / 2 - 104


def _pod(name: str, ip: str, created: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "labels": {"app": "resnet"}, "creationTimestamp": created},
        "spec": {"containers": [{"name": "tfserving", "image": "tensorflow/serving"}]},
        "status": {"phase": "Running", "podIP": ip},
    }


@pytest.mark.kmock(cls=VersionedEmulator)
async def test_daemon_source_counts_available_pods_and_reports_a_rollout(kmock: VersionedEmulator) -> None:
    kmock.declare(EVENTS)
    a = await EmulatorReplica(ReplicaConfig(model_name="resnet", unload_delay_s=0.2)).start()
    cfg_b = ReplicaConfig(model_name="resnet", host="127.0.0.2", port=a.port, startup_delay_s=2.0, unload_delay_s=0.2)
    b = EmulatorReplica(cfg_b)
    await b.start()
    kmock.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=2))
    kmock.seed(PODS, "ml", "resnet-a", _pod("resnet-a", "127.0.0.1", "2026-01-01T00:00:00Z"))
    kmock.seed(PODS, "ml", "resnet-b", _pod("resnet-b", "127.0.0.2", "2026-01-01T00:00:00Z"))
    spec = ServingAutoscalerSpec(name="resnet", target=TargetRef("ml", "resnet", "resnet", rest_port=a.port))
    api = api_client_for(kmock)
    src = ModelStatusSource(
        PodDiscoveringSource(api, ScrapeSource(rate_window_s=30.0)),
        ModelStatusPoller(timeout_s=1.0),
        events=EventRecorder(api),
    )
    try:
        await a.wait_ready(5)
        obs = (await asyncio.to_thread(src.observe, [spec], 1000.0))[KEY]
        assert obs.model_status is not None
        assert (obs.model_status.pods, obs.model_status.available, obs.model_status.unknown) == (2, 1, 0)
        # Kubernetes would call both pods Ready (a TCP probe): the decision counts only 'a'
        obs2 = dataclasses.replace(obs, ready_replicas=2, current_replicas=2, pending_replicas=0)
        d, _ = decide(spec, State.initial(spec, 0.0, 2), obs2, None, now_s=1000.0)
        assert d.model_ready_replicas == 1 and any("1 Ready pod not serving yet" in n for n in d.notes)
        assert kmock.all(EVENTS, "ml") == []

        a.load_version(2, delay_s=3.0)  # a rollout on pod a: v1 AVAILABLE, v2 loading
        obs = (await asyncio.to_thread(src.observe, [spec], 1015.0))[KEY]
        assert obs.model_status is not None and obs.model_status.rollout
        (event,) = kmock.all(EVENTS, "ml")
        assert event["reason"] == ROLLOUT_STARTED and event["involvedObject"]["name"] == "resnet"
        assert "v1 AVAILABLE on 1 pod" in event["message"] and "v2 " in event["message"]
        d, _ = decide(spec, State.initial(spec, 0.0, 2), obs, None, now_s=1015.0)
        assert any("version rollout in progress (versions 1, 2)" in n for n in d.notes)
        assert "v2" in d.model_versions

        await b.wait_ready(10)
        b.load_version(2, delay_s=0.5)  # every pod sees the new version directory

        async def v1_ended() -> bool:
            done = ((1, "END"), (2, "AVAILABLE"))
            return await status_of(a.url) == done and await status_of(b.url) == done

        await until(v1_ended)
        obs = (await asyncio.to_thread(src.observe, [spec], 1030.0))[KEY]
        assert obs.model_status is not None and not obs.model_status.rollout
        assert [e["reason"] for e in kmock.all(EVENTS, "ml")] == [ROLLOUT_STARTED, ROLLOUT_DONE]

        await a.stop()
        await b.stop()
        # pods that stopped answering are unknown, not "not serving": their readiness stands
        obs = (await asyncio.to_thread(src.observe, [spec], 1045.0))[KEY]
        assert obs.model_status is not None and obs.model_status.unknown == 2 and obs.model_status.ready_bound == 2
        assert len(kmock.all(EVENTS, "ml")) == 2
    finally:
        src.close()
        await a.stop()
        await b.stop()


@pytest.mark.skipif(not _HAVE_TFS, reason=_WHY or "tensorflow-serving-api missing")
async def test_grpc_status_agrees_with_rest_during_a_rollout() -> None:
    poller = ModelStatusPoller(timeout_s=5.0, protocol="grpc")  # the first call imports the stubs
    try:
        async with EmulatorReplica(ReplicaConfig(model_name="resnet", grpc_port=0)) as r:
            await r.wait_ready(5)
            r.load_version(2, delay_s=60.0)
            req = StatusRequest(KEY, "p", f"127.0.0.1:{r.grpc_port}", "resnet")
            got = (await asyncio.to_thread(poller.poll, [req]))[(KEY, "p")]
            missing = (await asyncio.to_thread(poller.poll, [dataclasses.replace(req, model="other")]))[(KEY, "p")]
            rest = await status_of(r.url)
    finally:
        poller.close()
    assert got.answered, got.error
    assert got.versions == rest and got.versions[0] == (1, "AVAILABLE") and got.versions[1][0] == 2
    assert missing.answered and missing.versions == ()  # NOT_FOUND: answered, nothing serves


@pytest.mark.kmock(cls=VersionedEmulator)
async def test_prometheus_path_lists_pods_per_namespace_and_asks_them(kmock: VersionedEmulator) -> None:
    """Without the direct scrape's listing, the wrapper lists each namespace once (Deployments, pods),
    matches selectors locally and asks only the target's Running pods."""
    async with EmulatorReplica(ReplicaConfig(model_name="resnet")) as up:
        await up.wait_ready(5)
        kmock.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=1))
        kmock.seed(DEPLOYMENTS, "ml", "other", deployment("other", replicas=1))
        kmock.seed(PODS, "ml", "resnet-a", _pod("resnet-a", "127.0.0.1", "2026-01-01T00:00:00Z"))
        pending = _pod("resnet-p", "127.0.0.3", "2026-01-01T00:00:00Z")
        pending["status"] = {"phase": "Pending"}
        kmock.seed(PODS, "ml", "resnet-p", pending)
        other = _pod("other-a", "127.0.0.1", "2026-01-01T00:00:00Z")
        other["metadata"]["labels"] = {"app": "other"}
        kmock.seed(PODS, "ml", "other-a", other)
        spec = ServingAutoscalerSpec(name="resnet", target=TargetRef("ml", "resnet", "resnet", rest_port=up.port))
        ghost = ServingAutoscalerSpec(name="ghost", target=TargetRef("ml", "ghost", "ghost", rest_port=up.port))
        api = api_client_for(kmock)
        lister = PodLister(api)
        found = await asyncio.to_thread(lister.pods_for, [spec, ghost])
        assert list(found[KEY]) == ["resnet-a"]  # type: ignore[arg-type]
        assert isinstance(found[TargetKey("ml", "ghost")], str)
        inner = ScrapeSource()  # any MetricSource that does not list pods itself (Prometheus in the daemon)
        inner.set_endpoints(KEY, {"resnet-a": up.url})
        src = ModelStatusSource(inner, ModelStatusPoller(timeout_s=1.0), lister=lister)
        before = len(kmock.seen)
        try:
            obs = await asyncio.to_thread(src.observe, [spec, ghost], 1000.0)
        finally:
            src.close()
    lists = [r for r in kmock.seen[before:] if r.method == "GET"]
    assert len(lists) == 2  # one namespace: Deployments + pods, whatever the number of targets
    st = obs[KEY].model_status
    assert st is not None and (st.pods, st.available, st.unknown) == (1, 1, 0)
    assert obs[TargetKey("ml", "ghost")].model_status is None  # no pods known: no status, nothing lowered
