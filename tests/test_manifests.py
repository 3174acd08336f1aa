"""Machine checks of everything under manifests/, the Dockerfile and the generated artifacts.

No cluster runs here, so: every kustomization is resolved by reading its plain `resources:`
list, built-in objects are validated with kubernetes-validate (strict) against several
Kubernetes versions, CRD-backed objects with check-jsonschema against their CRD schemas,
Prometheus rules with promtool, the Dockerfile with hadolint, and RBAC is audited.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from autoscaler.generate.render import render_all
from autoscaler.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
SCHEMAS = ROOT / "tests" / "data" / "crds"  # copies of ../shared/schemas/crds (see its README)
K8S_VERSIONS = ("1.29.0", "1.33.0", kubernetes_validate.utils.latest_version() + ".0")
KUSTOMIZATIONS = sorted(MANIFESTS.rglob("kustomization.yaml"))
CRD_FILES = {
    ("monitoring.coreos.com", "ServiceMonitor"): SCHEMAS / "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com", "PodMonitor"): SCHEMAS / "monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com", "PrometheusRule"): SCHEMAS / "monitoring.coreos.com_prometheusrules.yaml",
    ("keda.sh", "ScaledObject"): SCHEMAS / "keda.sh_scaledobjects.yaml",
    ("keda.sh", "TriggerAuthentication"): SCHEMAS / "keda.sh_triggerauthentications.yaml",
    ("autoscaling.tfserving.dev", "ServingAutoscaler"): MANIFESTS / "base" / "crd.yaml",
}


def resolve(kustomization: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Objects of a kustomization with only plain `resources:` (files or directories)."""
    k = yaml.safe_load(kustomization.read_text())
    allowed = {"apiVersion", "kind", "resources"}
    assert set(k) <= allowed, f"{kustomization}: only plain resources lists are allowed (got {sorted(k)})"
    out: list[tuple[Path, dict[str, Any]]] = []
    for entry in k["resources"]:
        path = (kustomization.parent / entry).resolve()
        if path.is_dir():
            out += resolve(path / "kustomization.yaml")
        else:
            assert path.exists(), f"{kustomization}: missing resource {entry}"
            out += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return out


ALL_OBJECTS = [(p, d) for k in KUSTOMIZATIONS for p, d in resolve(k)]


def obj_id(item: tuple[Path, dict[str, Any]]) -> str:
    p, d = item
    return f"{p.relative_to(MANIFESTS)}:{d['kind']}/{d['metadata']['name']}"


def crd_key(d: dict[str, Any]) -> tuple[str, str]:
    return (d["apiVersion"].split("/")[0], d["kind"])


def test_every_yaml_file_under_manifests_is_in_a_kustomization() -> None:
    listed = {p for p, _ in ALL_OBJECTS} | set(KUSTOMIZATIONS)
    skip = {MANIFESTS / "monitoring" / "rules", MANIFESTS / "monitoring" / "tests"}
    files = {p.resolve() for p in MANIFESTS.rglob("*.yaml") if not any(s in p.parents for s in skip)}
    assert files - listed == set()


@pytest.mark.parametrize("item", [i for i in ALL_OBJECTS if crd_key(i[1]) not in CRD_FILES], ids=obj_id)
def test_builtin_objects_validate_strictly_on_several_kubernetes_versions(item: tuple[Path, dict[str, Any]]) -> None:
    _, doc = item
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def openapi_to_jsonschema(node: Any) -> Any:
    """Kubernetes' OpenAPI v3.0 dialect -> JSON Schema 2020-12 (what check-jsonschema speaks)."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_to_jsonschema(v) for k, v in node.items()}
    for excl, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if out.get(excl) is True:
            out[excl] = out.pop(bound)
        elif out.get(excl) is False:
            del out[excl]
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    pattern = out.get("pattern")
    if isinstance(pattern, str) and "(?i)" in pattern and not pattern.startswith("(?i)"):
        out["pattern"] = "(?i)" + pattern.replace("(?i)", "")  # RE2 allows inline flags anywhere
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _crd_schema(crd_path: Path, kind: str, version: str) -> dict[str, Any]:
    for crd in yaml.safe_load_all(crd_path.read_text()):
        if crd and crd["spec"]["names"]["kind"] == kind:
            for v in crd["spec"]["versions"]:
                if v["name"] == version:
                    schema: dict[str, Any] = openapi_to_jsonschema(v["schema"]["openAPIV3Schema"])
                    return schema
    raise AssertionError(f"schema not found: {kind} {version} in {crd_path}")


@pytest.mark.parametrize("item", [i for i in ALL_OBJECTS if crd_key(i[1]) in CRD_FILES], ids=obj_id)
def test_crd_backed_objects_validate_with_check_jsonschema(item: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    _, doc = item
    crd_path = CRD_FILES[crd_key(doc)]
    schema = _crd_schema(crd_path, doc["kind"], doc["apiVersion"].split("/")[1])
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(schema))
    instance = tmp_path / "instance.json"
    instance.write_text(json.dumps(doc))
    exe = Path(sys.executable).parent / "check-jsonschema"
    res = subprocess.run(
        [str(exe), "--regex-variant", "python", "--schemafile", str(schema_file), str(instance)],
        capture_output=True,
        text=True,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "warning" not in out.lower(), out


def test_check_jsonschema_rejects_a_broken_servicemonitor(tmp_path: Path) -> None:
    """The CRD check above can fail: a wrong field type is caught."""
    crd_path = CRD_FILES[("monitoring.coreos.com", "ServiceMonitor")]
    (tmp_path / "s.json").write_text(json.dumps(_crd_schema(crd_path, "ServiceMonitor", "v1")))
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "endpoints": [{"port": "http", "honorLabels": "yes"}]},
    }
    (tmp_path / "i.json").write_text(json.dumps(bad))
    exe = Path(sys.executable).parent / "check-jsonschema"
    res = subprocess.run(
        [str(exe), "--regex-variant", "python", "--schemafile", str(tmp_path / "s.json"), str(tmp_path / "i.json")],
        capture_output=True,
        text=True,
    )
    assert res.returncode != 0 and "honorLabels" in res.stdout + res.stderr, res.stdout + res.stderr


def test_sample_servingautoscalers_pass_our_own_validation() -> None:
    samples = [(p, d) for p, d in ALL_OBJECTS if d["kind"] == "ServingAutoscaler"]
    assert samples
    for p, d in samples:
        parse_spec(d, str(p))


def test_generated_manifests_are_up_to_date() -> None:
    for rel, text in render_all().items():
        committed = (ROOT / rel).read_text()
        assert committed == text, f"{rel} is out of date: run `tfserving-autoscaler generate`"


def test_prometheusrule_matches_plain_rules_file() -> None:
    pr = yaml.safe_load((MANIFESTS / "monitoring" / "prometheusrule.yaml").read_text())
    plain = yaml.safe_load((MANIFESTS / "monitoring" / "rules" / "tfserving-autoscaler.rules.yaml").read_text())
    assert pr["spec"]["groups"] == plain["groups"]


def _promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found: .ci/run installs Debian's prometheus package")
    return exe


def test_promtool_check_rules() -> None:
    res = subprocess.run(
        [_promtool(), "check", "rules", "rules/tfserving-autoscaler.rules.yaml"],
        cwd=MANIFESTS / "monitoring",
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_unit_tests_cover_every_alert() -> None:
    tests = yaml.safe_load((MANIFESTS / "monitoring" / "tests" / "alerts.test.yaml").read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", [])}
    plain = yaml.safe_load((MANIFESTS / "monitoring" / "rules" / "tfserving-autoscaler.rules.yaml").read_text())
    alerts = {r["alert"] for g in plain["groups"] for r in g["rules"] if "alert" in r}
    assert alerts <= tested, f"alerts without a promtool unit test: {alerts - tested}"
    res = subprocess.run(
        [_promtool(), "test", "rules", "tests/alerts.test.yaml"],
        cwd=MANIFESTS / "monitoring",
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_passes_hadolint() -> None:
    exe = Path(sys.executable).parent / "hadolint"
    res = subprocess.run([str(exe), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["tfserving-autoscaler"]' in text and "USER 10001" in text


# ---------------------------------------------------------------- RBAC audit
RBAC_KINDS = {"Role", "ClusterRole"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}
# The one cluster-wide binding that grants "create": Kubernetes' own delegated-auth role.
ALLOWED_CLUSTER_ROLE_REFS = {"system:auth-delegator"}


def test_rbac_has_no_wildcards() -> None:
    for p, d in ALL_OBJECTS:
        if d["kind"] in RBAC_KINDS:
            for rule in d.get("rules", []):
                for field in ("verbs", "resources", "apiGroups"):
                    assert "*" not in rule.get(field, []), f"{p}: wildcard {field} in {d['metadata']['name']}"


def test_rbac_has_no_cluster_wide_write() -> None:
    roles = {d["metadata"]["name"]: d for _, d in ALL_OBJECTS if d["kind"] == "ClusterRole"}
    for p, d in ALL_OBJECTS:
        if d["kind"] != "ClusterRoleBinding":
            continue
        ref = d["roleRef"]["name"]
        if ref in ALLOWED_CLUSTER_ROLE_REFS:
            continue
        assert ref in roles, f"{p}: ClusterRoleBinding to unknown ClusterRole {ref}"
        for rule in roles[ref]["rules"]:
            assert not set(rule["verbs"]) & WRITE_VERBS, f"{p}: cluster-wide write via {ref}: {rule}"


def test_namespaced_writes_are_pinned_to_resource_names() -> None:
    """Deployments, their scale and ConfigMaps may only be written by name."""
    for p, d in ALL_OBJECTS:
        if d["kind"] != "Role":
            continue
        for rule in d["rules"]:
            writes = set(rule["verbs"]) & WRITE_VERBS
            if writes and set(rule["resources"]) & {"deployments", "deployments/scale", "configmaps", "leases"}:
                if writes == {"create"} and rule["resources"] == ["leases"]:
                    continue  # create cannot be restricted by name; get/update of the Lease is
                assert rule.get("resourceNames"), f"{p}: {d['metadata']['name']} writes {rule} without resourceNames"


def test_daemon_pod_hardening() -> None:
    dep = next(d for _, d in ALL_OBJECTS if d["kind"] == "Deployment" and d["metadata"]["name"] == "tfs-autoscaler")
    spec = dep["spec"]
    assert spec["replicas"] == 2 and "--leader-elect" in spec["template"]["spec"]["containers"][0]["args"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "podAntiAffinity" in pod["affinity"] and c["resources"]["requests"]


def test_apiservices_use_cabundle_and_prefer_v1beta2() -> None:
    svcs = {d["metadata"]["name"]: d["spec"] for _, d in ALL_OBJECTS if d["kind"] == "APIService"}
    assert set(svcs) == {
        "v1beta2.custom.metrics.k8s.io",
        "v1beta1.custom.metrics.k8s.io",
        "v1beta1.external.metrics.k8s.io",
    }
    for name, s in svcs.items():
        assert name == f"{s['version']}.{s['group']}"
        assert s.get("caBundle") and not s.get("insecureSkipTLSVerify")
    assert (
        svcs["v1beta2.custom.metrics.k8s.io"]["versionPriority"]
        > svcs["v1beta1.custom.metrics.k8s.io"]["versionPriority"]
    )


def test_example_hpa_reads_our_decision_with_average_value_one() -> None:
    hpa = next(
        d for p, d in ALL_OBJECTS if d["kind"] == "HorizontalPodAutoscaler" and p.parent.name == "tfserving"
    )  # (the seed-hpa-* alternatives read other metrics: test_seed_hpas.py)
    (m,) = hpa["spec"]["metrics"]
    assert m["type"] == "External" and m["external"]["metric"]["name"] == "tfserving_autoscaler_desired_replicas"
    assert m["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}


def test_daemon_args_are_accepted_by_the_run_command() -> None:
    """The Deployment's args parse with the real `run` parser (no drift between flags and manifests)."""
    import argparse

    from autoscaler.commands import run as run_cmd

    dep = next(d for _, d in ALL_OBJECTS if d["kind"] == "Deployment" and d["metadata"]["name"] == "tfs-autoscaler")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "run"
    parser = argparse.ArgumentParser(exit_on_error=False)
    run_cmd.register(parser)
    ns = parser.parse_args(args[1:])
    ports = {p["name"]: p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ns.metrics_port == ports["metrics"] and ns.adapter_port == ports["adapter"]
    assert ns.keda_port == ports["keda-grpc"] and ns.leader_elect is True
    assert not ns.keda_insecure and ns.keda_cert and ns.keda_key and ns.keda_client_ca  # TLS + client certs
