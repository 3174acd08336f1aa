"""Converting our autoscaling/v2 HorizontalPodAutoscaler manifests for clusters older than 1.23.

The shipped HPA (manifests/examples/tfserving/hpa.yaml) is `autoscaling/v2`, served from
Kubernetes 1.23. Older clusters (the e2e suite's 1.20) serve `autoscaling/v2beta2`, whose spec has
the same shape (kubernetes pkg/apis/autoscaling/v2beta2 and v2 types.go: identical `metrics`,
`scaleTargetRef` and `behavior`) except for fields added later. Those are refused with the field's
path rather than dropped, because dropping one silently changes how the HPA scales:
- `behavior.scaleUp/scaleDown.tolerance` (per-direction tolerance, KEP-4951, 1.33): older HPAs use
  the global `--horizontal-pod-autoscaler-tolerance` (default 0.1);
- `type: ContainerResource` metrics (KEP-1610): alpha behind a feature gate before 1.27.
"""

from __future__ import annotations

import copy
from typing import Any

V2 = "autoscaling/v2"
V2BETA2 = "autoscaling/v2beta2"


def hpa_to_v2beta2(doc: dict[str, Any]) -> dict[str, Any]:
    """An `autoscaling/v2` HPA manifest as `autoscaling/v2beta2` (a new dict; `doc` is unchanged).

    Raises ValueError naming the field when `doc` is not a v2 HPA or uses a field v2beta2 lacks.
    """
    if not isinstance(doc, dict):
        raise ValueError(f"HPA manifest: expected a mapping, got {type(doc).__name__}")
    if doc.get("kind") != "HorizontalPodAutoscaler":
        raise ValueError(f"kind: expected HorizontalPodAutoscaler, got {doc.get('kind')!r}")
    if doc.get("apiVersion") != V2:
        raise ValueError(f"apiVersion: expected {V2}, got {doc.get('apiVersion')!r}")
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise ValueError("spec: expected a mapping")
    for i, metric in enumerate(spec.get("metrics") or ()):
        if isinstance(metric, dict) and metric.get("type") == "ContainerResource":
            raise ValueError(
                f"spec.metrics[{i}].type: ContainerResource is alpha (feature gate) in autoscaling/v2beta2 clusters"
            )
    behavior = spec.get("behavior") or {}
    for direction in ("scaleUp", "scaleDown"):
        rules = behavior.get(direction) or {}
        if "tolerance" in rules:
            raise ValueError(
                f"spec.behavior.{direction}.tolerance: not in {V2BETA2} (the cluster-wide "
                "--horizontal-pod-autoscaler-tolerance applies); remove it for this cluster"
            )
    out = copy.deepcopy(doc)
    out["apiVersion"] = V2BETA2
    return out
