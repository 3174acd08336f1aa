"""The ServingAutoscaler CustomResourceDefinition, with the schema generated from the spec model."""

from __future__ import annotations

from typing import Any

from autoscaler.spec import openapi_schema
from autoscaler.spec.types import API_VERSION, KIND

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "servingautoscalers"


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "tfserving-autoscaler"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": "servingautoscaler",
                "shortNames": ["tfsa"],
                "categories": ["autoscaling"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Target", "type": "string", "jsonPath": ".spec.target.deployment"},
                        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
                        {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
                        {"name": "Current", "type": "integer", "jsonPath": ".status.currentReplicas"},
                        {"name": "Reason", "type": "string", "jsonPath": ".status.binding"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                }
            ],
        },
    }
