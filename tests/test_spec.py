"""Spec parsing and validation: defaults, HPA defaulting, and the error messages users read."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autoscaler.spec import SpecError, load_spec, load_specs, parse_spec, parse_specs_text
from autoscaler.spec.types import Mode, PolicyType, SelectPolicy

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def base_doc() -> dict[str, object]:
    return yaml.safe_load((ROOT / "examples" / "resnet50-t4.yaml").read_text())


def problems_for(doc: object) -> list[str]:
    with pytest.raises(SpecError) as exc:
        parse_spec(doc, "t.yaml")
    return exc.value.problems


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_shipped_example_is_valid(path: Path) -> None:
    specs = load_specs(path)
    assert specs and all(s.max_replicas >= s.min_replicas for s in specs)


def test_example_maps_fields_and_units() -> None:
    s = load_spec(ROOT / "examples" / "resnet50-t4.yaml")
    assert s.target.namespace == "serving" and s.target.model_name == "resnet"
    assert s.target.batching_configmap == "resnet50-batching"
    assert s.slo.latency_ms == 100 and s.slo.latency_quantile == 0.99
    assert s.batching.initial.batch_timeout_us == 2000  # batchTimeoutMicros -> _us
    assert s.batching.max_batch_size.max == 64
    assert s.behavior.scale_down.policies[0].type is PolicyType.PERCENT
    assert s.behavior.scale_down.policies[0].period_s == 60
    # leadTimeSeconds: auto -> startup total + decision period + metrics lag
    assert s.provisioning.lead_time_s is None
    assert s.lead_time_s == pytest.approx(2 + 20 + 25 + 13 + 15 + 30)
    assert s.mode is Mode.HPA


def test_example_profile_matches_the_published_table() -> None:
    """The T4 example's profile is the DLE T4 FP32 table, row for row."""
    s = load_spec(ROOT / "examples" / "resnet50-t4.yaml")
    csv_path = ROOT / "simulations" / "traces" / "service_time_profiles_resnet50.csv"  # shipped copy
    rows = {
        int(r["batch"]): float(r["lat_avg_ms"])
        for r in csv.DictReader(csv_path.open())
        if r["gpu"] == "T4-16GB" and r["precision"] == "FP32" and r["source"] == "DLE-TF-RN50v1.5"
    }
    assert dict(zip(s.profile.batch_sizes, s.profile.batch_latency_ms, strict=True)) == rows


def test_hpa_defaulting_fills_each_nil_field_per_direction() -> None:
    doc = base_doc()
    doc["spec"]["behavior"] = {"scaleUp": {"selectPolicy": "Min"}, "scaleDown": {"tolerance": 0.05}}  # type: ignore[index]
    s = parse_spec(doc)
    up, down = s.behavior.scale_up, s.behavior.scale_down
    assert up.select_policy is SelectPolicy.MIN and up.stabilization_window_s == 0
    assert [(p.type, p.value, p.period_s) for p in up.policies] == [
        (PolicyType.PODS, 4, 15),
        (PolicyType.PERCENT, 100, 15),
    ]
    assert down.stabilization_window_s == 300 and down.tolerance == 0.05
    assert [(p.type, p.value, p.period_s) for p in down.policies] == [(PolicyType.PERCENT, 100, 15)]


def test_minimal_spec_takes_documented_defaults() -> None:
    s = load_spec(ROOT / "examples" / "minimal.yaml")
    assert s.min_replicas == 1 and s.forecaster.model == "auto" and s.mode is Mode.HPA
    assert s.profile.batch_sizes[0] == 1 and s.target.rest_port == 8501


@pytest.mark.parametrize(
    ("path", "value", "expect"),
    [
        (("spec", "slo", "latencyMs"), -5, ["spec.slo.latencyMs", "-5", "> 0"]),
        (("spec", "slo", "latencyQuantile"), 1.5, ["spec.slo.latencyQuantile", "1.5", "< 1"]),
        (("spec", "maxReplicas"), 0, ["spec.maxReplicas", "0", ">= 1"]),
        (("spec", "mode"), "yolo", ["spec.mode", "yolo", "'hpa'", "'direct'", "'preview'"]),
        (("spec", "target", "restPort"), 70000, ["spec.target.restPort", "70000", "<= 65535"]),
        (("spec", "provisioning", "leadTimeSeconds"), "soon", ["spec.provisioning.leadTimeSeconds", "soon"]),
        (("spec", "provisioning", "headroom"), 0.95, ["spec.provisioning.headroom", "0.95", "< 0.9"]),
        (("spec", "target", "deployment"), "Bad_Name", ["spec.target.deployment", "Bad_Name"]),
        (("spec", "behavior", "scaleUp", "selectPolicy"), "Avg", ["scaleUp.selectPolicy", "Avg"]),
    ],
)
def test_error_names_field_value_and_allowed_range(path: tuple[str, ...], value: object, expect: list[str]) -> None:
    doc = base_doc()
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})  # type: ignore[assignment,attr-defined]
    node[path[-1]] = value  # type: ignore[index]
    problems = problems_for(doc)
    assert len(problems) == 1, problems
    assert problems[0].startswith("t.yaml: ")
    for fragment in expect:
        assert fragment in problems[0], (fragment, problems[0])


def test_cross_field_errors() -> None:
    doc = base_doc()
    doc["spec"]["minReplicas"] = 50  # type: ignore[index]
    assert "minReplicas (50) must be <= maxReplicas (40)" in problems_for(doc)[0]
    doc = base_doc()
    doc["spec"]["batching"]["bounds"]["maxBatchSize"] = {"min": 64, "max": 8}  # type: ignore[index]
    msg = problems_for(doc)[0]
    assert "spec.batching.bounds.maxBatchSize" in msg and "min (64) must be <= max (8)" in msg
    doc = base_doc()
    doc["spec"]["batching"]["initial"]["maxBatchSize"] = 128  # type: ignore[index]
    assert "batching.initial.maxBatchSize (128) must lie within" in problems_for(doc)[0]


def test_slo_below_single_request_latency_is_rejected() -> None:
    doc = base_doc()
    doc["spec"]["slo"]["latencyMs"] = 5  # type: ignore[index]
    (msg,) = problems_for(doc)
    assert "spec.slo.latencyMs" in msg and "7.34" in msg


def test_profile_must_be_monotone() -> None:
    doc = base_doc()
    doc["spec"]["profile"]["batchLatency"][3]["latencyMs"] = 1.0  # type: ignore[index]
    (msg,) = problems_for(doc)
    assert "spec.profile" in msg and "must not decrease" in msg


def test_unknown_field_missing_field_and_wrong_kind() -> None:
    doc = base_doc()
    doc["spec"]["slo"]["latency_ms"] = 100  # type: ignore[index]  # snake_case typo
    assert any("spec.slo.latency_ms: unknown field" in p for p in problems_for(doc))
    doc = base_doc()
    del doc["spec"]["target"]["modelName"]  # type: ignore[attr-defined]
    assert problems_for(doc) == ["t.yaml: spec.target.modelName: required field is missing"]
    doc = base_doc()
    doc["kind"] = "Deployment"
    assert "kind" in problems_for(doc)[0] and "'ServingAutoscaler'" in problems_for(doc)[0]


def test_all_problems_reported_at_once() -> None:
    doc = base_doc()
    doc["spec"]["slo"]["latencyMs"] = 0  # type: ignore[index]
    doc["spec"]["maxReplicas"] = -1  # type: ignore[index]
    assert len(problems_for(doc)) == 2


def test_yaml_syntax_error_names_line() -> None:
    with pytest.raises(SpecError) as exc:
        parse_specs_text("apiVersion: x\nspec: [unclosed\n", "bad.yaml")
    assert exc.value.problems[0].startswith("bad.yaml: line ")


def test_multi_document_and_empty() -> None:
    text = (ROOT / "examples" / "resnet50-t4.yaml").read_text()
    specs = parse_specs_text(text + "\n---\n" + (ROOT / "examples" / "minimal.yaml").read_text())
    assert [s.name for s in specs] == ["resnet50", "my-model"]
    with pytest.raises(SpecError, match="no ServingAutoscaler document"):
        parse_specs_text("", "empty.yaml")
    with pytest.raises(SpecError, match="expected a mapping"):
        parse_specs_text("- a\n- b\n", "list.yaml")


def test_validate_cli_exit_codes_and_messages(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    doc = base_doc()
    doc["spec"]["slo"]["latencyMs"] = -1  # type: ignore[index]
    bad.write_text(yaml.safe_dump(doc))
    good = ROOT / "examples" / "minimal.yaml"
    ok = subprocess.run([sys.executable, "-m", "autoscaler", "validate", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "ok: my-model" in ok.stdout
    res = subprocess.run(
        [sys.executable, "-m", "autoscaler", "validate", str(good), str(bad)], capture_output=True, text=True
    )
    assert res.returncode == 1
    assert f"{bad}: spec.slo.latencyMs" in res.stderr and "1 of 2 file(s) invalid" in res.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "autoscaler", "validate", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "cannot read file" in missing.stderr


def test_spec_forecaster_names_equal_the_registry() -> None:
    from autoscaler.forecast import registry
    from autoscaler.spec.parse import FORECASTERS

    assert set(FORECASTERS) == {"auto", *registry.names()}
    doc = base_doc()
    doc["spec"]["forecaster"]["model"] = "arima"  # type: ignore[index]
    (msg,) = problems_for(doc)
    assert "spec.forecaster.model" in msg and "arima" in msg and "holt-winters" in msg
