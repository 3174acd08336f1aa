"""Authorization of the metrics API: a SubjectAccessReview per (user, groups, verb, resource, ns).

The adapter serves over real TLS with requestheader authentication (a front-proxy client cert,
as the kube-aggregator presents); kmock's emulator plays kube-apiserver and answers the
SubjectAccessReviews from a small RBAC table, so the real `SubjectAccessReviewer` (official client)
does the review. alice may read namespace `serving` only; bob nothing. Verdicts are cached.
The RBAC the manifests give the HPA controller must allow exactly the attributes our paths map to.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import pytest
import yaml
from test_adapter_api import NOW_S, Pki, client, fill_store, get, pki  # noqa: F401 (pki is a fixture)
from test_runtime_kubeemu import VersionedEmulator, api_client_for

from autoscaler.adapter.auth import RequestHeaderAuth
from autoscaler.adapter.authz import CachingAuthorizer, request_attributes
from autoscaler.adapter.metrics_api import serve
from autoscaler.core.store import DecisionStore
from autoscaler.runtime.kube import SubjectAccessReviewer

GRANTS = {("alice", "serving")}  # (user, namespace) pairs allowed to read our metrics
EXTERNAL = "/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/tfserving_autoscaler_desired_replicas"
PODS = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/*/tfserving_request_rate"


@attrs.define(kw_only=True)
class RbacEmulator(VersionedEmulator):
    """kmock + SubjectAccessReview answered from GRANTS (discovery paths open to everyone)."""

    reviews: list[dict[str, Any]] = attrs.field(factory=list)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is not None and res.plural == "subjectaccessreviews" and request.method == "POST":
            spec = dict((request.data or {}).get("spec") or {})
            self.reviews.append(spec)
            ra = spec.get("resourceAttributes")
            ok = ra is None or (spec.get("user"), ra.get("namespace")) in GRANTS
            body = {**(request.data or {}), "status": {"allowed": ok, "reason": "" if ok else "no RBAC rule"}}
            return aiohttp.web.json_response(body, status=201)
        return await super()._handle(request)


pytestmark = pytest.mark.kmock(cls=RbacEmulator)


async def test_users_read_only_the_namespaces_rbac_grants(kmock: RbacEmulator, pki: Pki) -> None:  # noqa: F811
    store = DecisionStore()
    fill_store(store)
    authz = CachingAuthorizer(SubjectAccessReviewer(api_client_for(kmock)))
    server = await serve(
        store,
        now_s=lambda: NOW_S,
        host="127.0.0.1",
        port=0,
        cert_file=str(pki.serving.cert_file),
        key_file=str(pki.serving.key_file),
        auth=RequestHeaderAuth(client_ca_pem=pki.proxy_ca.cert_pem(), allowed_names=("front-proxy-client",)),
        authz=authz,
    )
    try:
        api = client(type("R", (), {"server": server, "clients": {}})(), pki)  # type: ignore[arg-type]

        async def as_user(user: str, path: str) -> tuple[int, dict[str, Any]]:
            return await asyncio.to_thread(get, api, path, None, {"X-Remote-User": user, "X-Remote-Group": "devs"})

        code, body = await as_user("alice", EXTERNAL.format(ns="serving"))
        assert code == 200 and body["items"], body
        code, body = await as_user("alice", EXTERNAL.format(ns="other"))
        assert code == 403 and body["kind"] == "Status" and body["reason"] == "Forbidden"
        assert "User 'alice' cannot list resource \"tfserving_autoscaler_desired_replicas\"" in body["message"]
        assert 'namespace "other"' in body["message"]
        code, _ = await as_user("bob", PODS.format(ns="serving"))
        assert code == 403
        code, _ = await as_user("alice", PODS.format(ns="serving"))
        assert code == 200
        code, _ = await as_user("bob", "/apis/custom.metrics.k8s.io/v1beta2")  # discovery: non-resource
        assert code == 200
        sent = len(kmock.reviews)
        for _ in range(3):  # cached: no new reviews
            assert (await as_user("alice", EXTERNAL.format(ns="serving")))[0] == 200
            assert (await as_user("alice", EXTERNAL.format(ns="other")))[0] == 403
        assert len(kmock.reviews) == sent
        pods_review = next(
            r
            for r in kmock.reviews
            if r["user"] == "alice" and (r.get("resourceAttributes") or {}).get("resource") == "pods"
        )
        assert pods_review["user"] == "alice" and pods_review["groups"] == ["devs"]
        assert pods_review["resourceAttributes"] == {
            "group": "custom.metrics.k8s.io",
            "version": "v1beta2",
            "resource": "pods",
            "subresource": "tfserving_request_rate",
            "name": "*",
            "namespace": "serving",
            "verb": "get",
        }
    finally:
        await server.close()


def test_the_hpa_controllers_rbac_covers_the_attributes_our_paths_map_to() -> None:
    path = Path(__file__).parent.parent / "manifests/components/metrics-api/hpa-reader.yaml"
    role = next(d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "ClusterRole")
    grants = {
        (g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }
    for p in (
        PODS.format(ns="serving"),
        EXTERNAL.format(ns="serving"),
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/serving/deployments.apps/resnet/tfserving_autoscaler_desired_replicas",
    ):
        a = request_attributes("GET", p.strip("/").split("/"))
        res = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        assert (a.group, res, a.verb) in grants, (p, a)
    rbac = Path(__file__).parent.parent / "manifests/base/rbac.yaml"
    docs = [d for d in yaml.safe_load_all(rbac.read_text()) if d]
    assert any(d["kind"] == "ClusterRoleBinding" and d["roleRef"]["name"] == "system:auth-delegator" for d in docs), (
        "the daemon needs system:auth-delegator to create SubjectAccessReviews"
    )
