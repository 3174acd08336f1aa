"""autoscaling/v2 → v2beta2 HPA conversion for pre-1.23 clusters (the e2e suite's 1.20)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from autoscaler.generate.hpa_compat import hpa_to_v2beta2

EXAMPLE = Path(__file__).resolve().parents[1] / "manifests" / "examples" / "tfserving" / "hpa.yaml"


def example() -> dict:
    doc: dict = yaml.safe_load(EXAMPLE.read_text())
    return doc


def test_shipped_example_converts_with_spec_unchanged() -> None:
    doc = example()
    before = copy.deepcopy(doc)
    out = hpa_to_v2beta2(doc)
    assert out["apiVersion"] == "autoscaling/v2beta2"
    assert out["spec"] == before["spec"] and out["metadata"] == before["metadata"]
    assert doc == before  # the input is not modified
    out["spec"]["minReplicas"] = 99
    assert doc["spec"]["minReplicas"] == before["spec"]["minReplicas"]  # a deep copy


@pytest.mark.parametrize("direction", ["scaleUp", "scaleDown"])
def test_per_direction_tolerance_is_refused_with_its_path(direction: str) -> None:
    doc = example()
    doc["spec"]["behavior"][direction]["tolerance"] = "0.05"
    with pytest.raises(ValueError, match=rf"spec\.behavior\.{direction}\.tolerance"):
        hpa_to_v2beta2(doc)


def test_container_resource_metric_is_refused() -> None:
    doc = example()
    doc["spec"]["metrics"].append({"type": "ContainerResource", "containerResource": {"name": "cpu"}})
    with pytest.raises(ValueError, match=r"spec\.metrics\[1\]\.type"):
        hpa_to_v2beta2(doc)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("apiVersion", "autoscaling/v1", "apiVersion: expected autoscaling/v2"), ("kind", "Deployment", "kind:")],
)
def test_wrong_object_is_refused(field: str, value: str, message: str) -> None:
    doc = example()
    doc[field] = value
    with pytest.raises(ValueError, match=message):
        hpa_to_v2beta2(doc)
