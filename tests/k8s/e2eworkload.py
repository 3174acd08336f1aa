"""The e2e workload: a TF Serving Deployment and its ServingAutoscaler object, sized for a busy laptop.

The ServingAutoscaler is the packaged demo spec (autoscaler/data/demo-spec.yaml: ResNet-50 on a
T4) with the demo's time dilation applied the same way `tfserving-autoscaler demo` does
(commands/demo.py:demo_spec): batch latency, batch timeout and SLO × 20, so one replica serves
about 18 requests/s at the SLO and a few tens of requests/s need several replicas. The emulator
replicas that stand in for the pods get the same profile.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from kubeapi import ROOT

from autoscaler.core.capacity import CapacityModel
from autoscaler.emulator import ReplicaConfig
from autoscaler.spec.parse import parse_spec
from autoscaler.spec.types import ServingAutoscalerSpec

DILATION = 20.0
DEMO_SPEC = ROOT / "autoscaler" / "data" / "demo-spec.yaml"


def autoscaler_object(namespace: str, name: str, rest_port: int, *, mode: str = "hpa") -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(yaml.safe_load(DEMO_SPEC.read_text()))
    doc["metadata"] = {"name": name, "namespace": namespace}
    spec = doc["spec"]
    spec["target"].update({"deployment": name, "restPort": rest_port})
    spec["target"].pop("namespace", None)
    spec["mode"] = mode
    spec["minReplicas"] = 1
    spec["slo"]["latencyMs"] *= DILATION
    for row in spec["profile"]["batchLatency"]:
        row["latencyMs"] = round(row["latencyMs"] * DILATION, 3)
    spec["batching"]["initial"]["batchTimeoutMicros"] = int(
        spec["batching"]["initial"]["batchTimeoutMicros"] * DILATION
    )
    spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = 5
    # Scale up by at most 4 pods per 15 s: the example HPA (Pods 8 or 100 % per 15 s) then never
    # limits what it follows, even when its 15 s window lags ours by a sync period. The demo's
    # 2 s periods would let the daemon outrun the HPA (1 → 5 → 10 took the HPA 11 s, not 10).
    spec["behavior"]["scaleUp"] = {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
    }
    return doc


def parsed(doc: dict[str, Any]) -> ServingAutoscalerSpec:
    return parse_spec(doc, "e2e", custom_resource=True)


def capacity_rps(doc: dict[str, Any]) -> float:
    """What one replica serves at the SLO with the initial batching (the daemon's own capacity model)."""
    spec = parsed(doc)
    return float(CapacityModel(spec.profile).capacity_at_slo_rps(spec.batching.initial, spec.slo))


def replica_config(doc: dict[str, Any]) -> ReplicaConfig:
    spec = parsed(doc)
    return ReplicaConfig(model_name=spec.target.model_name, batching=spec.batching.initial, profile=spec.profile)


def deployment(namespace: str, name: str, replicas: int = 1) -> dict[str, Any]:
    """A TF Serving Deployment with the strategy the batching rollout needs (maxUnavailable 0)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "tfserving", "image": "tensorflow/serving:2.14.1", "ports": [{"containerPort": 8501}]}
                    ]
                },
            },
        },
    }
