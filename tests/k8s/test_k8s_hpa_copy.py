"""Issue 15 (7): our HPA copy (autoscaler/core/hpa.py + hpa_behavior.py) against the real 1.20 HPA.

A scripted External metric (AverageValue target 1, so the raw proposal is ceil(value)) is read by
the real HPA controller through the aggregator; the HPA has a `behavior` block whose windows and
periods (12 s, 8 s) are not multiples of the 5 s sync period, so no reconcile falls on a window's
edge. Every metric read is recorded with its time, and every scale write the controller makes is
taken from the API server's audit log. Our copy is then run over the same reads at the same times
(`get_external_per_pod_metric_replicas` with 1.20's global 10 % tolerance, then `reconcile`) and
must write the same replica counts after the same reads. The script covers: a scale-up limited by
a Pods policy, two values inside the tolerance band (no change), a scale-down held by the
stabilization window, then limited by a Percent policy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from controlplane import ControlPlane
from daemonproc import apiservice_available, install_daemon
from e2eworkload import deployment
from kubeapi import Kube, ReplicaWatch, until
from metricstub import ScriptedExternalMetric

from autoscaler.core.hpa import HpaHistory, Tolerances, get_external_per_pod_metric_replicas, milli_value, reconcile
from autoscaler.spec.types import Behavior, PolicyType, ScalingPolicy, ScalingRules, SelectPolicy

pytestmark = pytest.mark.timeout(600)

# a metric name the shipped hpa-reader ClusterRole grants: 1.20's bootstrap role for the HPA
# controller does not cover external.metrics.k8s.io (checked: 403 without hpa-reader.yaml)
NS, NAME, METRIC = "hpa-copy", "model", "tfserving_autoscaler_desired_replicas"
MIN_REPLICAS, MAX_REPLICAS = 1, 20
BEHAVIOR: dict[str, Any] = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 8}],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 12,
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 8}],
    },
}
# One value per reconcile: hold at 1; rise to 6 at +2 per 8 s; 5.6 and 6.5 lie inside the 10 %
# band around 6 (no change); 7.4 scales to 8; the fall to 2 waits out the 12 s window, then
# halves per 8 s; the fall to 1 waits again. No ratio lies on the band's edge, where 1.20's
# |1 - ratio| > tolerance and 1.33's per-direction bounds may round differently.
SCRIPT = [1.0] * 2 + [6.0] * 5 + [5.6] * 2 + [6.5] * 2 + [7.4] * 2 + [2.0] * 6 + [1.0] * 4


def hpa_object() -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2beta2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": MIN_REPLICAS,
            "maxReplicas": MAX_REPLICAS,
            "metrics": [
                {
                    "type": "External",
                    "external": {"metric": {"name": METRIC}, "target": {"type": "AverageValue", "averageValue": "1"}},
                }
            ],
            "behavior": BEHAVIOR,
        },
    }


def rules(doc: dict[str, Any]) -> ScalingRules:
    return ScalingRules(
        stabilization_window_s=int(doc["stabilizationWindowSeconds"]),
        select_policy=SelectPolicy(doc["selectPolicy"]),
        policies=tuple(
            ScalingPolicy(PolicyType(p["type"]), int(p["value"]), int(p["periodSeconds"])) for p in doc["policies"]
        ),
    )


def copy_writes(reads: list[tuple[float, float]], start_replicas: int) -> list[tuple[int, int]]:
    """(read index, replicas) for every scale write our copy makes over the recorded reads."""
    behavior = Behavior(scale_up=rules(BEHAVIOR["scaleUp"]), scale_down=rules(BEHAVIOR["scaleDown"]))
    history, current, out = HpaHistory(), start_replicas, []
    for i, (t, value) in enumerate(reads):
        # status.replicas == spec.replicas: the ReplicaSet controller created the pods within the 5 s sync
        proposal = get_external_per_pod_metric_replicas(
            current, 1000, [milli_value(f"{round(value * 1000)}m")], tolerances=Tolerances(0.1, 0.1)
        ).replicas
        res = reconcile(
            history,
            behavior,
            current_replicas=current,
            proposals=[proposal],
            min_replicas=MIN_REPLICAS,
            max_replicas=MAX_REPLICAS,
            now_s=t,
        )
        history = res.history
        if res.rescale:
            out.append((i, res.desired_replicas))
            current = res.desired_replicas
    return out


def real_writes(
    changes: list[tuple[float, int]], reads: list[tuple[float, float]], t_end: float
) -> list[tuple[int, int]]:
    """(index of the last read before the change, replicas) for each change of the Deployment's spec.replicas."""
    out = []
    for t, replicas in changes[1:]:  # the first entry is the state when the watch started
        if t >= t_end:
            continue
        before = [i for i, (tr, _) in enumerate(reads) if tr <= t]
        assert before, f"replicas changed at {t} before any metric read"
        out.append((before[-1], replicas))
    return out


async def test_hpa_copy_writes_what_the_real_hpa_writes(
    kube: Kube, control_plane: ControlPlane, tmp_path: Path
) -> None:
    installed = await asyncio.to_thread(install_daemon, kube, tmp_path / "install")
    stub = ScriptedExternalMetric(METRIC, SCRIPT, NS)
    await stub.start(installed.adapter_port, installed.adapter_cert)
    try:
        await until(
            "the external metrics APIService (scripted server) to become Available",
            lambda: apiservice_available(kube, "v1beta1.external.metrics.k8s.io"),
            timeout_s=120,
        )
        await asyncio.to_thread(kube.create_namespace, NS)
        await asyncio.to_thread(kube.apply, [deployment(NS, NAME, replicas=1)])
        await until(
            "the Deployment's first pod (status.replicas 1) before the HPA's first reconcile",
            lambda: ((kube.get("apps/v1", "Deployment", NAME, NS) or {}).get("status") or {}).get("replicas") == 1,
        )
        with ReplicaWatch(kube, NS, NAME) as watch:
            await asyncio.to_thread(kube.apply, [hpa_object()])
            # one read past the script: every write that belongs to a scripted read has landed by then
            await until(
                "the HPA to read the whole script",
                lambda: len(stub.reads) > len(SCRIPT),
                timeout_s=len(SCRIPT) * 12 + 60,
            )
    finally:
        await stub.stop()
    reads = stub.reads[: len(SCRIPT)]
    t_end = stub.reads[len(SCRIPT)][0]
    real = real_writes(watch.changes, reads, t_end)
    writers = {user for t, user, _ in control_plane.scale_writes(NS, NAME) if t < t_end}
    assert writers == {"system:serviceaccount:kube-system:horizontal-pod-autoscaler"}, writers
    ours = copy_writes(reads, start_replicas=1)
    gaps = [round(b[0] - a[0], 2) for a, b in zip(reads, reads[1:], strict=False)]
    print(f"\nreads {len(reads)}, gaps between reconciles (s) {gaps}\nreal HPA writes {real}\nour copy writes {ours}")
    assert real == ours
    # the script's story (SCRIPT): up to 8 at the 7.4 reads, nothing inside the tolerance band, back to 1
    assert max(r for _, r in real) == 8 and real[-1][1] == 1
    band = range(7, 11)
    assert not [w for w in real if w[0] in band] and [r for i, r in real if i < band.start][-1] == 6
