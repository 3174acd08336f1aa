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

import pytest
from test_runtime_kubeemu import EVENTS, VersionedEmulator, api_client_for, references

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


def test_a_bad_new_file_loads_nothing_and_duplicates_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SPEC.format(max_replicas=10))
    (tmp_path / "b.yaml").write_text(SPEC.format(max_replicas=12))  # same target as a.yaml
    (tmp_path / "c.yaml").write_text("apiVersion: nope\n")
    published: list[list[ServingAutoscalerSpec]] = []
    w = SpecWatcher(clock=ManualClock(), directory=tmp_path, on_change=published.append)
    w.poll()
    assert [s.max_replicas for s in published[-1]] == [10]
    assert list(w.errors) == [str(tmp_path / "c.yaml")]
    (tmp_path / "a.yaml").unlink()
    w.poll()
    assert [s.max_replicas for s in published[-1]] == [12]


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
    crs = references.resource(group="autoscaling.tfserving.dev", version="v1alpha1", plural="servingautoscalers")
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
