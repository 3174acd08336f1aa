"""Issue 15 (1, 2): the real HPA controller scales on what the daemon serves through the real aggregator.

The daemon runs as a process (`python -m autoscaler run`, direct scrape, its ServiceAccount's
token under the shipped RBAC), reads its ServingAutoscaler object through the shipped CRD and
serves the metrics API behind the real kube-aggregator (APIServices with our CA in `caBundle`,
front-proxy client certificates). Emulator replicas play the pods (hpastack.py).

(1) The example HPA (manifests/examples/tfserving/hpa.yaml, converted to autoscaling/v2beta2 for
1.20) targets the Deployment. For a scripted load rise and fall, the HPA's
`status.desiredReplicas` and the Deployment's `spec.replicas` must equal the value the aggregator
serves within two HPA sync periods. One change to the example: its scale-down behaviour (60 s
stabilization, 50 % per 60 s) is made as permissive as its scale-up, because the daemon already
stabilizes; with the shipped values the HPA follows a fall only after 60 s or more.

(3) The adapter accepts only the aggregator's front-proxy client certificate, and asks the real
RBAC authorizer (SubjectAccessReview) whether the X-Remote-User may read: a user bound to the
shipped metrics-reader ClusterRole may, another may not.

(2) An HPA on the per-pod custom metric `tfserving_request_rate` (custom.metrics.k8s.io Pods
metric) reads the daemon's per-pod rates through the aggregator.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from controlplane import ControlPlane, Pem, issue_cert, make_ca
from hpastack import EXTERNAL_METRIC, HIGH_LOAD, LOW_LOAD, NAME, NS, HpaStack, quantity
from kubeapi import MANIFESTS, Kube, load_yaml, wait_for

from autoscaler.generate.hpa_compat import hpa_to_v2beta2

pytestmark = pytest.mark.timeout(900)
POLL_S = 0.5
Sample = tuple[float, int | None, int | None, int | None]  # (t, published, hpa desired, deployment replicas)


@pytest.fixture(scope="module")
def stack(kube: Kube, control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HpaStack]:
    s = HpaStack(kube, control_plane, tmp_path_factory.mktemp("hpa-stack"))
    try:
        yield s.start()
    finally:
        s.stop()


def example_hpa() -> dict[str, Any]:
    (doc,) = load_yaml(MANIFESTS / "examples" / "tfserving" / "hpa.yaml")
    hpa = hpa_to_v2beta2(doc)
    hpa["spec"]["behavior"]["scaleDown"] = {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    }
    return hpa


def follow_lags_s(samples: list[Sample]) -> list[tuple[int, float, float]]:
    """Per run of one published value: (value, how long it was published, when HPA and Deployment showed it).

    The last entry is inf when they never showed it during the run.
    """
    out: list[tuple[int, float, float]] = []
    i = 0
    while i < len(samples):
        t0, value = samples[i][0], samples[i][1]
        j = i
        while j + 1 < len(samples) and samples[j + 1][1] == value:
            j += 1
        end = samples[j + 1][0] if j + 1 < len(samples) else samples[j][0]
        if value is not None:
            hit = next((t for t, _, h, d in samples[i : j + 1] if h == value and d == value), None)
            out.append((value, end - t0, (hit - t0) if hit is not None else float("inf")))
        i = j + 1
    return out


def test_real_hpa_and_deployment_follow_the_published_decision(stack: HpaStack, kube: Kube) -> None:
    kube.apply([example_hpa()])
    samples: list[Sample] = []
    t_start = time.monotonic()

    def sample() -> Sample:
        hpa = kube.get("autoscaling/v2beta2", "HorizontalPodAutoscaler", NAME, NS) or {}
        dep = kube.get("apps/v1", "Deployment", NAME, NS) or {}
        s = (
            time.monotonic() - t_start,
            stack.published(),
            (hpa.get("status") or {}).get("desiredReplicas"),
            (dep.get("spec") or {}).get("replicas"),
        )
        samples.append(s)
        return s

    def agreed(pred: Callable[[int], bool]) -> Callable[[], Sample | None]:
        def check() -> Sample | None:
            s = sample()
            return s if s[1] is not None and s[1] == s[2] == s[3] and pred(s[1]) else None

        return check

    try:
        low = wait_for("HPA at the low-load decision", agreed(lambda v: v >= 1), timeout_s=120, every_s=POLL_S)[1]
        stack.set_load(HIGH_LOAD)
        high = wait_for("HPA at a high-load decision", agreed(lambda v: v >= low + 2), timeout_s=180, every_s=POLL_S)[1]
        t_fall = samples[-1][0]
        stack.set_load(LOW_LOAD)
        after = wait_for("HPA back at a low decision", agreed(lambda v: v < high - 1), timeout_s=240, every_s=POLL_S)[1]
    finally:
        kube.resource("autoscaling/v2beta2", "HorizontalPodAutoscaler").delete(name=NAME, namespace=NS)
        stack.set_load(LOW_LOAD)
    assert stack.daemon is not None and stack.daemon.alive(), stack.daemon.tail() if stack.daemon else ""
    assert low is not None and high is not None and after is not None
    lags = follow_lags_s(samples)
    print(
        f"\ncapacity {stack.cap_rps:.1f} rps/replica; decisions {low} → {high} → {after}; "
        f"requests ok {stack.load.ok}/{stack.load.sent}\n(published value, for s, followed after s): "
        f"{[(v, round(p, 1), round(g, 1)) for v, p, g in lags]}"
    )
    bound_s = 2 * stack.cp.hpa_sync_period_s + POLL_S
    # every value published for longer than two sync periods reached the HPA and the Deployment in time
    late = [(v, p, g) for v, p, g in lags if p > bound_s and g > bound_s]
    assert not late, f"HPA/Deployment followed later than {bound_s:g}s: {late}"
    assert any(v == high and g <= bound_s for v, _, g in lags)
    assert any(v == after and t > t_fall for t, v, _, _ in samples)


def test_real_hpa_reads_per_pod_request_rates(stack: HpaStack, kube: Kube) -> None:
    """Seed walkthrough: scale on requests per second per pod (custom.metrics.k8s.io Pods metric)."""
    target_rps = stack.cap_rps * 0.75
    hpa = {
        "apiVersion": "autoscaling/v2beta2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "tfserving_request_rate"},
                        "target": {"type": "AverageValue", "averageValue": f"{round(target_rps * 1000)}m"},
                    },
                }
            ],
        },
    }
    offered_rps = 1.0 * stack.cap_rps  # steady: the sum over pods stays put while the HPA scales
    stack.set_load(1.0)
    kube.apply([hpa])
    path = (
        f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NS}/pods/*/tfserving_request_rate?labelSelector=app%3D{NAME}"
    )
    try:

        def read() -> tuple[float, int, dict[str, Any], dict[str, float]] | None:
            obj = kube.get("autoscaling/v2beta2", "HorizontalPodAutoscaler", NAME, NS) or {}
            st = obj.get("status") or {}
            conds = {c["type"]: c for c in st.get("conditions") or ()}
            cur = (st.get("currentMetrics") or [{}])[0].get("pods", {}).get("current", {}).get("averageValue")
            active = conds.get("ScalingActive", {})
            if cur is None or active.get("status") != "True":
                return None
            # the same per-pod values, as the aggregator serves them to anyone allowed to read them
            doc = stack.cp.get_json(path) or {}
            pods = {i["describedObject"]["name"]: quantity(i["value"]) for i in doc.get("items") or ()}
            if not pods or quantity(cur) * len(pods) < 0.3 * offered_rps:  # rate window still filling
                return None
            return quantity(cur), int(st.get("desiredReplicas") or 0), active, pods

        avg_rps, desired, active, pods = wait_for("the HPA to read per-pod request rates", read, timeout_s=120)
    finally:
        kube.resource("autoscaling/v2beta2", "HorizontalPodAutoscaler").delete(name=NAME, namespace=NS)
        stack.set_load(LOW_LOAD)
    print(f"\nHPA read {avg_rps:.2f} rps/pod (target {target_rps:.2f}), desired {desired}; adapter per pod {pods}")
    assert active["reason"] == "ValidMetricFound"
    assert set(pods) <= set(stack.kubelet.replicas)  # real pod names, found by the daemon's discovery
    assert avg_rps * len(pods) < 2.0 * offered_rps  # the per-pod rates add up to the offered load, not more
    assert desired >= 1


def _direct(stack: HpaStack, client: Pem | None, user: str | None, group: str | None = None) -> tuple[int, str]:
    """GET the External metric from the adapter itself, bypassing the aggregator."""
    assert stack.installed is not None
    ctx = ssl.create_default_context(cafile=str(stack.installed.adapter_ca.cert))
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    req = urllib.request.Request(
        f"https://127.0.0.1:{stack.installed.adapter_port}/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/"
        f"{EXTERNAL_METRIC}?labelSelector=namespace%3D{NS}%2Cdeployment%3D{NAME}"
    )
    if user is not None:
        req.add_header("X-Remote-User", user)
    if group is not None:
        req.add_header("X-Remote-Group", group)
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ssl.SSLError, ConnectionError) as exc:  # refused during the handshake
        return 0, str(exc)


def test_adapter_trusts_only_the_front_proxy_and_asks_the_real_rbac(
    stack: HpaStack, kube: Kube, control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    # a user bound to the shipped hpa-reader ClusterRole, and one bound to nothing
    kube.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "e2e-alice-metrics-reader"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "tfs-autoscaler-metrics-reader",
                },
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
            }
        ]
    )
    # through the aggregator, with the user's own client certificate: the apiserver authenticates,
    # authorizes, then proxies with the front-proxy certificate and X-Remote-User
    path = (
        f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/{EXTERNAL_METRIC}"
        f"?labelSelector=namespace%3D{NS}%2Cdeployment%3D{NAME}"
    )
    code, body = cp.request(path, kube.user_cert(tmp_path, "alice"))
    assert code == 200 and quantity(json.loads(body)["items"][0]["value"]) >= 1, body
    code, body = cp.request(path, kube.user_cert(tmp_path, "mallory"))
    assert code == 403, body  # the apiserver's own RBAC check, before it proxies

    front_proxy = cp.front_proxy_client
    rogue_ca = make_ca(tmp_path, "rogue-ca")
    rogue = issue_cert(rogue_ca, tmp_path, "rogue", cn="front-proxy-client")
    cluster_user = kube.user_cert(tmp_path, "e2e-admin-direct", "system:masters")
    other_front = issue_cert(cp.front_proxy_ca, tmp_path, "other-front", cn="not-the-front-proxy")

    # direct calls: without a client certificate, with certificates the aggregator does not use
    # (0: the TLS handshake itself failed, the certificate is not from the front-proxy CA)
    assert _direct(stack, None, "alice")[0] == 401
    assert _direct(stack, rogue, "alice")[0] in (0, 401)  # right name, wrong CA
    assert _direct(stack, cluster_user, "alice")[0] in (0, 401)  # a cluster client cert is not the front proxy
    assert _direct(stack, other_front, "alice")[0] == 403  # front-proxy CA, but not an allowed name

    # the front-proxy certificate with X-Remote-User: the adapter's SubjectAccessReview, answered by RBAC
    code, body = _direct(stack, front_proxy, "alice")
    assert code == 200, body
    code, body = _direct(stack, front_proxy, "mallory")
    assert code == 403 and "mallory" in body, body
    code, body = _direct(stack, front_proxy, "system:serviceaccount:kube-system:horizontal-pod-autoscaler")
    assert code == 200, body  # the HPA controller's identity: the shipped hpa-reader binding
