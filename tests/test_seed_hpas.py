"""The seed walkthrough's HPAs (manifests/examples/seed-hpa-*): they scale on what they claim to.

Schema validation is test_manifests.py's (every kustomization); here: the Pods-metric HPA asks our
adapter for a metric it really serves, at a target below one replica's capacity at the SLO, and the
CPU/memory HPA's utilization targets refer to resources the example Deployment requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from autoscaler.adapter.provider import POD_REQUEST_RATE, PODS, DecisionStoreProvider
from autoscaler.core.capacity import CapacityModel
from autoscaler.core.store import DecisionStore
from autoscaler.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "manifests" / "examples"


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def test_pods_hpa_reads_a_metric_our_adapter_serves_below_slo_capacity() -> None:
    hpa = _load(EXAMPLES / "seed-hpa-pods-rps" / "hpa.yaml")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == POD_REQUEST_RATE
    provider = DecisionStoreProvider(DecisionStore(), now_s=lambda: 0.0)
    served = {(m.group_resource, m.metric) for m in provider.list_all_metrics()}
    assert (PODS, POD_REQUEST_RATE) in served
    spec = load_spec(ROOT / "examples" / "resnet50-t4.yaml")
    cap_rps = CapacityModel(spec.profile).capacity_at_slo_rps(spec.batching.initial, spec.slo)
    target_rps = float(metric["pods"]["target"]["averageValue"])
    assert 0.6 * cap_rps <= target_rps <= 0.9 * cap_rps, (target_rps, cap_rps)


def test_seed_hpas_target_the_example_deployment_whose_requests_they_use() -> None:
    deploy = _load(EXAMPLES / "tfserving" / "deployment.yaml")
    (container,) = [c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == "tfserving"]
    requests = container["resources"]["requests"]
    hpa = _load(EXAMPLES / "seed-hpa-cpu-memory" / "hpa.yaml")
    names = {m.get("resource", m.get("containerResource", {})).get("name") for m in hpa["spec"]["metrics"]}
    assert names == {"cpu", "memory"} and names <= set(requests)
    for d in (hpa, _load(EXAMPLES / "seed-hpa-pods-rps" / "hpa.yaml")):
        assert d["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
        assert d["metadata"]["namespace"] == deploy["metadata"]["namespace"]
