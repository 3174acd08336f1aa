"""Issue 15 (4): direct mode under the shipped RBAC, on a real API server.

The daemon runs with its own ServiceAccount's token, bound only by the shipped manifests
(manifests/base/rbac.yaml and the example's per-namespace actuator Role). It must scale the
Deployment through the scale subresource, write Events and the ServingAutoscaler status; the same
token is refused everything else the manifests do not grant; and once a real HPA targets the
Deployment the daemon refuses to write replicas (RefusedHPAOwned) instead of fighting it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from controlplane import ControlPlane
from daemonproc import DAEMON_NS, DAEMON_SA
from hpastack import HIGH_LOAD, LOW_LOAD, HpaStack
from kubeapi import Kube, wait_for
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.timeout(600)
NS, NAME = "direct", "resnet50"
SA_USER = f"system:serviceaccount:{DAEMON_NS}:{DAEMON_SA}"


@pytest.fixture(scope="module")
def stack(kube: Kube, control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HpaStack]:
    s = HpaStack(kube, control_plane, tmp_path_factory.mktemp("direct"), ns=NS, name=NAME, mode="direct")
    try:
        yield s.start()
    finally:
        s.stop()


def events(kube: Kube, reason: str) -> list[dict[str, Any]]:
    items = kube.core.list_namespaced_event(NS, field_selector=f"reason={reason}").items
    return [
        {
            "reason": e.reason,
            "type": e.type,
            "source": e.source.component if e.source else None,
            "object": e.involved_object.name,
        }
        for e in items
    ]


def test_direct_mode_scales_and_reports_with_only_the_shipped_rbac(
    stack: HpaStack, kube: Kube, control_plane: ControlPlane
) -> None:
    stack.set_load(HIGH_LOAD)
    try:
        replicas = wait_for(
            "the daemon to scale the Deployment up",
            lambda: (kube.apps.read_namespaced_deployment(NAME, NS).spec.replicas or 0) >= 3 or None,
            timeout_s=180,
        )
    finally:
        stack.set_load(LOW_LOAD)
    assert replicas
    writers = {user for _, user, _ in control_plane.scale_writes(NS, NAME)}
    assert writers == {SA_USER}  # the scale subresource, by the daemon's ServiceAccount only
    scaled = wait_for("a ScaledUp Event", lambda: events(kube, "ScaledUp"))
    assert scaled[0]["source"] == "tfserving-autoscaler" and scaled[0]["object"] == NAME
    cr = wait_for(
        "the ServingAutoscaler status",
        lambda: (kube.get("autoscaling.tfserving.dev/v1alpha1", "ServingAutoscaler", NAME, NS) or {}).get("status"),
    )
    assert cr["desiredReplicas"] >= 1 and cr["valid"] is True


def _refused(call: Callable[[], Any]) -> int:
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def test_the_daemon_token_is_refused_what_the_manifests_do_not_grant(stack: HpaStack, kube: Kube) -> None:
    assert stack.installed is not None
    api = kube.client_for(stack.installed.sa_kubeconfig)
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    kube.apply([{**_other_deployment(), "metadata": {"name": "other", "namespace": NS}}])
    scale = {"spec": {"replicas": 2}}
    refused = {
        "patch another Deployment's scale": _refused(
            lambda: apps.patch_namespaced_deployment_scale("other", NS, scale)
        ),
        "delete the Deployment": _refused(lambda: apps.delete_namespaced_deployment(NAME, NS)),
        "create a Deployment": _refused(lambda: apps.create_namespaced_deployment(NS, _other_deployment())),
        "create a pod": _refused(
            lambda: core.create_namespaced_pod(
                NS, {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
            )
        ),
        "read Secrets": _refused(lambda: core.list_namespaced_secret(NS)),
        "patch another ConfigMap": _refused(lambda: core.patch_namespaced_config_map("kube-root-ca.crt", NS, {})),
        "scale in another namespace": _refused(
            lambda: apps.patch_namespaced_deployment_scale("resnet50", "serving", scale)
        ),
        "write another Lease": _refused(
            lambda: k8s.CoordinationV1Api(api).patch_namespaced_lease("someone-else", DAEMON_NS, {})
        ),
    }
    assert refused == dict.fromkeys(refused, 403)
    # and granted: reading its own target's scale (the first step of every write)
    assert apps.read_namespaced_deployment_scale(NAME, NS).spec.replicas >= 1


def _other_deployment() -> dict[str, Any]:
    from e2eworkload import deployment

    return deployment(NS, "other")


def test_direct_mode_refuses_when_a_real_hpa_targets_the_deployment(
    stack: HpaStack, kube: Kube, control_plane: ControlPlane
) -> None:
    current = kube.apps.read_namespaced_deployment(NAME, NS).spec.replicas
    kube.apply(
        [
            {
                "apiVersion": "autoscaling/v2beta2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "someone-elses-hpa", "namespace": NS},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
                    "minReplicas": current,
                    "maxReplicas": current,  # the HPA holds the count; the daemon must not touch it
                    "metrics": [
                        {
                            "type": "External",
                            "external": {
                                "metric": {"name": "tfserving_autoscaler_desired_replicas"},
                                "target": {"type": "AverageValue", "averageValue": "1"},
                            },
                        }
                    ],
                },
            }
        ]
    )
    n_writes = len(control_plane.scale_writes(NS, NAME))
    stack.set_load(HIGH_LOAD * 2)  # the daemon now wants more replicas
    try:
        refusal = wait_for("a RefusedHPAOwned Event", lambda: events(kube, "RefusedHPAOwned"), timeout_s=120)
        daemon_writes = [w for w in control_plane.scale_writes(NS, NAME)[n_writes:] if w[1] == SA_USER]
    finally:
        stack.set_load(LOW_LOAD)
        kube.resource("autoscaling/v2beta2", "HorizontalPodAutoscaler").delete(name="someone-elses-hpa", namespace=NS)
    assert refusal[0]["type"] == "Warning" and refusal[0]["source"] == "tfserving-autoscaler"
    assert not daemon_writes
