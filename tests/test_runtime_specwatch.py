"""Spec hot reload from a ConfigMap-style directory, and from ServingAutoscaler custom resources.

The directory is laid out exactly like a kubelet ConfigMap volume: visible names are symlinks
into `..data`, itself a symlink to a timestamped dir that is swapped atomically on update. A bad
update keeps the last good spec and reports the error (log, gauge, SpecInvalid Event via kmock).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import kmock
import pytest
from kubernetes import client as k8s
from test_runtime_kubeemu import EVENTS, VersionedEmulator, api_client_for

from autoscaler.actuators.events import EventRecorder
from autoscaler.core.store import DecisionStore
from autoscaler.runtime.clock import ManualClock
from autoscaler.runtime.specwatch import SpecErrorReporter, SpecWatcher, crd_lister
from autoscaler.runtime.telemetry import Telemetry
from autoscaler.spec.types import ServingAutoscalerSpec

SPEC = """\
apiVersion: autoscaling.tfserving.dev/v1alpha1
kind: ServingAutoscaler
metadata: {{name: resnet, namespace: ml}}
spec:
  target: {{deployment: resnet, modelName: resnet}}
  slo: {{latencyMs: 100}}
  maxReplicas: {max_replicas}
"""


class ConfigMapVolume:
    """A directory updated the way the kubelet updates a mounted ConfigMap."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.n = 0

    def publish(self, files: dict[str, str]) -> None:
        self.n += 1
        ts = self.root / f"..2026_11_28_13_00_{self.n:02d}.000{self.n}"
        ts.mkdir()
        for name, text in files.items():
            (ts / name).write_text(text)
        tmp = self.root / "..data_tmp"
        os.symlink(ts.name, tmp)
        os.replace(tmp, self.root / "..data")  # atomic swap
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                os.symlink(f"..data/{name}", link)


def test_configmap_swap_reload_and_bad_file_keeps_last_good(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    vol = ConfigMapVolume(tmp_path)
    vol.publish({"resnet.yaml": SPEC.format(max_replicas=10)})
    published: list[list[ServingAutoscalerSpec]] = []
    errors: list[tuple[str, list[str], list[str]]] = []
    cleared: list[str] = []
    w = SpecWatcher(
        clock=ManualClock(),
        directory=tmp_path,
        on_change=published.append,
        on_error=lambda src, probs, kept: errors.append((src, probs, [s.name for s in kept])),
        on_clear=cleared.append,
    )
    assert w.poll() is True
    assert [s.max_replicas for s in published[-1]] == [10]
    assert w.poll() is False  # nothing changed: no reload

    vol.publish({"resnet.yaml": SPEC.format(max_replicas=20)})  # same visible name, new ..data
    assert w.poll() is True
    assert [s.max_replicas for s in published[-1]] == [20]

    caplog.set_level(logging.ERROR)
    vol.publish({"resnet.yaml": SPEC.format(max_replicas=-3)})
    assert w.poll() is False  # the last good spec stays in force
    assert [s.max_replicas for s in published[-1]] == [20]
    ((src, problems, kept),) = errors
    assert src.endswith("resnet.yaml") and kept == ["resnet"]
    assert any("maxReplicas" in p for p in problems)
    assert any("keeping the last good" in r.getMessage() for r in caplog.records)

    vol.publish({"resnet.yaml": SPEC.format(max_replicas=30)})  # fixed
    assert w.poll() is True
    assert [s.max_replicas for s in published[-1]] == [30]
    assert cleared == [src] and w.errors == {}


def test_a_bad_new_file_loads_nothing_and_duplicates_apply_neither(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SPEC.format(max_replicas=10))
    (tmp_path / "b.yaml").write_text(SPEC.format(max_replicas=12))  # same target as a.yaml
    (tmp_path / "c.yaml").write_text("apiVersion: nope\n")
    published: list[list[ServingAutoscalerSpec]] = []
    w = SpecWatcher(clock=ManualClock(), directory=tmp_path, on_change=published.append)
    w.poll()
    assert published[-1] == []  # neither wins by file-name order
    assert list(w.errors) == [str(tmp_path / "c.yaml")]
    assert sorted(w.conflicts) == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]
    (tmp_path / "a.yaml").unlink()
    w.poll()
    assert [s.max_replicas for s in published[-1]] == [12]
    assert w.conflicts == {}


pytestmark_kube = pytest.mark.kmock(cls=VersionedEmulator)


@pytestmark_kube
async def test_spec_errors_become_metric_and_event(tmp_path: Path, kmock: VersionedEmulator) -> None:
    kmock.declare(EVENTS)
    clock = ManualClock()
    telemetry = Telemetry(DecisionStore())
    reporter = SpecErrorReporter(telemetry, clock, EventRecorder(api_client_for(kmock)))
    (tmp_path / "resnet.yaml").write_text(SPEC.format(max_replicas=10))
    w = SpecWatcher(
        clock=clock, directory=tmp_path, on_change=lambda _: None, on_error=reporter.error, on_clear=reporter.clear
    )
    await asyncio.to_thread(w.poll)
    (tmp_path / "resnet.yaml").write_text(SPEC.format(max_replicas=0) + "# edited\n")
    await asyncio.to_thread(w.poll)
    (event,) = kmock.all(EVENTS, "ml")
    assert event["reason"] == "SpecInvalid" and event["type"] == "Warning"
    assert event["involvedObject"]["name"] == "resnet" and "maxReplicas" in event["message"]
    text = telemetry.render().decode()
    assert f'tfserving_autoscaler_spec_errors{{source="{tmp_path / "resnet.yaml"}"}} 1.0' in text


@pytestmark_kube
async def test_custom_resources_are_read_when_the_crd_exists(kmock: VersionedEmulator) -> None:
    kmock.declare(EVENTS)
    published: list[list[ServingAutoscalerSpec]] = []
    clock = ManualClock()
    reporter = SpecErrorReporter(Telemetry(DecisionStore()), clock, EventRecorder(api_client_for(kmock)))
    w = SpecWatcher(
        clock=clock,
        on_change=published.append,
        list_crs=crd_lister(api_client_for(kmock)),
        on_error=reporter.error,
        on_clear=reporter.clear,
    )
    await asyncio.to_thread(w.poll)  # CRD absent: 404 -> skipped, nothing published but an empty set
    assert published == [[]]
    crs = kmock.resource(group="autoscaling.tfserving.dev", version="v1alpha1", plural="servingautoscalers")
    cr = {
        "apiVersion": "autoscaling.tfserving.dev/v1alpha1",
        "kind": "ServingAutoscaler",
        "metadata": {"uid": "u1", "creationTimestamp": "2026-11-28T13:00:00Z"},
        "spec": {
            "target": {"deployment": "resnet", "modelName": "resnet"},
            "slo": {"latencyMs": 100},
            "maxReplicas": 7,
        },
        "status": {"observedGeneration": 1},
    }
    kmock.seed(crs, "ml", "resnet", cr)
    await asyncio.to_thread(w.poll)
    assert [(s.target.namespace, s.max_replicas) for s in published[-1]] == [("ml", 7)]

    cr["spec"]["maxReplicas"] = 0  # an invalid edit (seed bumps the resourceVersion)
    kmock.seed(crs, "ml", "resnet", cr)
    await asyncio.to_thread(w.poll)
    assert [s.max_replicas for s in published[-1]] == [7]  # last good spec kept
    kinds = sorted(e["involvedObject"]["kind"] for e in kmock.all(EVENTS, "ml") if e["reason"] == "SpecInvalid")
    assert kinds == ["Deployment", "ServingAutoscaler"]


CRS = kmock.resource(group="autoscaling.tfserving.dev", version="v1alpha1", plural="servingautoscalers")


def cr(target: dict[str, str], max_replicas: int, mode: str = "hpa") -> dict[str, object]:
    return {
        "apiVersion": "autoscaling.tfserving.dev/v1alpha1",
        "kind": "ServingAutoscaler",
        "metadata": {},
        "spec": {"target": target, "slo": {"latencyMs": 100}, "maxReplicas": max_replicas, "mode": mode},
    }


def cr_watcher(
    kmock: VersionedEmulator, telemetry: Telemetry, published: list[list[ServingAutoscalerSpec]]
) -> SpecWatcher:
    clock = ManualClock()
    reporter = SpecErrorReporter(telemetry, clock, EventRecorder(api_client_for(kmock)))
    return SpecWatcher(
        clock=clock,
        on_change=published.append,
        list_crs=crd_lister(api_client_for(kmock)),
        on_error=reporter.error,
        on_clear=reporter.clear,
    )


@pytestmark_kube
async def test_a_custom_resource_cannot_take_over_another_namespace(kmock: VersionedEmulator) -> None:
    kmock.declare(EVENTS)
    telemetry = Telemetry(DecisionStore())
    published: list[list[ServingAutoscalerSpec]] = []
    w = cr_watcher(kmock, telemetry, published)
    kmock.seed(CRS, "prod", "resnet", cr({"deployment": "resnet", "modelName": "resnet"}, 10))
    await asyncio.to_thread(w.poll)
    attacker = cr({"deployment": "resnet", "modelName": "resnet", "namespace": "prod"}, 10000, mode="direct")
    kmock.seed(CRS, "aaa-tenant", "evil", attacker)  # sorts before prod's own
    await asyncio.to_thread(w.poll)
    (spec,) = published[-1]
    assert (spec.target.namespace, spec.max_replicas, spec.mode.value) == ("prod", 10, "hpa")
    (problem,) = w.errors["cr:aaa-tenant/evil"]
    assert "spec.target.namespace" in problem and "own namespace" in problem
    (event,) = [e for e in kmock.all(EVENTS, "aaa-tenant") if e["reason"] == "SpecInvalid"]
    assert event["involvedObject"]["kind"] == "ServingAutoscaler" and event["involvedObject"]["name"] == "evil"
    assert not kmock.all(EVENTS, "prod")  # nothing was said (or done) in the victim's namespace
    assert 'spec_errors{source="cr:aaa-tenant/evil"} 1.0' in telemetry.render().decode()


def test_the_operators_spec_files_may_name_any_namespace(tmp_path: Path) -> None:
    (tmp_path / "prod.yaml").write_text(
        SPEC.replace("namespace: ml}", "namespace: ops}")
        .format(max_replicas=5)
        .replace("modelName: resnet}", "modelName: resnet, namespace: prod}")
    )
    published: list[list[ServingAutoscalerSpec]] = []
    w = SpecWatcher(clock=ManualClock(), directory=tmp_path, on_change=published.append)
    w.poll()
    assert [(s.target.namespace, s.max_replicas) for s in published[-1]] == [("prod", 5)]
    assert w.errors == {}


@pytestmark_kube
async def test_a_second_spec_for_a_target_is_an_error_on_both(kmock: VersionedEmulator) -> None:
    kmock.declare(EVENTS)
    telemetry = Telemetry(DecisionStore())
    published: list[list[ServingAutoscalerSpec]] = []
    w = cr_watcher(kmock, telemetry, published)
    target = {"deployment": "resnet", "modelName": "resnet"}
    kmock.seed(CRS, "ml", "zz-first", cr(target, 7))
    await asyncio.to_thread(w.poll)
    kmock.seed(CRS, "ml", "aa-second", cr(target, 70))  # sorts first: must not win by name
    await asyncio.to_thread(w.poll)
    assert [s.max_replicas for s in published[-1]] == [7]  # the incumbent keeps serving, loudly
    assert sorted(w.conflicts) == ["cr:ml/aa-second", "cr:ml/zz-first"]
    named = sorted(
        e["involvedObject"]["name"]
        for e in kmock.all(EVENTS, "ml")
        if e["reason"] == "SpecInvalid" and e["involvedObject"]["kind"] == "ServingAutoscaler"
    )
    assert named == ["aa-second", "zz-first"]
    text = telemetry.render().decode()
    assert 'spec_errors{source="cr:ml/aa-second"} 1.0' in text and 'spec_errors{source="cr:ml/zz-first"} 1.0' in text
    api = k8s.CustomObjectsApi(api_client_for(kmock))
    await asyncio.to_thread(
        api.delete_namespaced_custom_object,
        "autoscaling.tfserving.dev",
        "v1alpha1",
        "ml",
        "servingautoscalers",
        "aa-second",
    )
    await asyncio.to_thread(w.poll)
    assert [s.max_replicas for s in published[-1]] == [7] and w.conflicts == {}
    assert 'spec_errors{source="cr:ml/zz-first"} 0.0' in telemetry.render().decode()
