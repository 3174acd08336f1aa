"""A stricter kmock Kubernetes emulator for the daemon's tests (and the tests of that emulator).

kmock's `KubernetesEmulator` stores objects and merges patches but has no resourceVersion, no
optimistic concurrency, no PUT (replace) and no `scale` subresource. The actuators and leader
election depend on exactly those semantics, so this subclass adds them the way kube-apiserver
behaves: every write bumps `metadata.resourceVersion`; a write whose body carries a stale
`metadata.resourceVersion` gets 409 Conflict; PUT replaces the object; `deployments/<n>/scale`
reads/patches an `autoscaling/v1` Scale view of the Deployment; spec changes bump
`metadata.generation`. A `before` hook lets a test inject faults (429/5xx) or race another writer.

Other test modules import `VersionedEmulator`, `api_client_for` and the object builders from here
(the tests directory is on sys.path under pytest's default import mode).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp.web
import attrs
import kmock
import pytest
from kubernetes import client as k8s

_RV = itertools.count(1000)

Hook = Callable[[kmock.Request], Awaitable[None]]

DEPLOYMENTS = kmock.resource(group="apps", version="v1", plural="deployments")
CONFIGMAPS = kmock.resource(group="", version="v1", plural="configmaps")
EVENTS = kmock.resource(group="", version="v1", plural="events")
LEASES = kmock.resource(group="coordination.k8s.io", version="v1", plural="leases")
PODS = kmock.resource(group="", version="v1", plural="pods")
HPAS = kmock.resource(group="autoscaling", version="v1", plural="horizontalpodautoscalers")


def conflict() -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=409,
        reason="Conflict",
        message="Operation cannot be fulfilled: the object has been modified; "
        "please apply your changes to the latest version and try again",
        details={},
    )


@attrs.define(kw_only=True)
class VersionedEmulator(kmock.KubernetesEmulator):
    """kmock's emulator + resourceVersion/409, PUT replace, generation and the scale subresource."""

    before: Hook | None = attrs.field(default=None)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if self.before is not None:
            await self.before(request)
        res = request.resource
        if res is not None and request.method == "GET" and request.name is None and "labelSelector" in request.params:
            return aiohttp.web.json_response(self._list_selected(res, request))
        if res is None or (request.method not in ("POST", "PUT", "PATCH") and request.subresource is None):
            return await super()._handle(request)
        if request.subresource not in (None, "scale", "status"):
            return await super()._handle(request)
        async with self._lock:
            body = self._write(request, res)
        return aiohttp.web.json_response(body, status=201 if request.method == "POST" else 200)

    def _list_selected(self, res: kmock.resource, request: kmock.Request) -> dict[str, Any]:
        """LIST with `labelSelector` (equality terms only, e.g. `app=resnet,tier=gpu`)."""
        terms = [t.split("=", 1) for t in request.params["labelSelector"].split(",") if t]
        items = [
            o
            for o in self.all(res, request.namespace)
            if all((o.get("metadata", {}).get("labels") or {}).get(k.rstrip("=!")) == v for k, v in terms)
        ]
        return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": str(next(_RV))}, "items": items}

    def _write(self, request: kmock.Request, res: kmock.resource) -> dict[str, Any]:
        data: dict[str, Any] = dict(request.data or {})
        if request.method == "POST":
            meta = data.setdefault("metadata", {})
            key = (res, request.namespace or meta.get("namespace"), meta.get("name"))
            meta.setdefault("namespace", key[1])
            if key in self._objects and not self._objects[key].deleted:
                raise kmock.KubernetesError(status=409, reason="AlreadyExists", message="already exists")
            meta["resourceVersion"] = str(next(_RV))
            meta.setdefault("generation", 1)
            if key in self._objects:
                self._objects[key].create(data)
            else:
                self._objects[key] = data
            return dict(self._objects[key].raw)
        key = (res, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        obj: kmock.Object = self._objects[key]
        current: dict[str, Any] = copy.deepcopy(dict(obj.raw))
        cur_meta = current.setdefault("metadata", {})
        if request.subresource == "scale" and request.method == "GET":
            return self._scale_view(current)
        want_rv = (data.get("metadata") or {}).get("resourceVersion")
        if want_rv is not None and want_rv != cur_meta.get("resourceVersion"):
            raise conflict()
        if request.subresource == "scale":
            replicas = (data.get("spec") or {}).get("replicas")
            new = copy.deepcopy(current)
            new.setdefault("spec", {})["replicas"] = replicas
        elif request.method == "PUT":
            new = copy.deepcopy(data)
            new.setdefault("metadata", {})
            for k in ("name", "namespace", "generation", "uid"):
                if k in cur_meta:
                    new["metadata"].setdefault(k, cur_meta[k])
        else:
            patch = copy.deepcopy(data)
            patch.get("metadata", {}).pop("resourceVersion", None)
            obj.patch(patch)
            new = copy.deepcopy(dict(obj.raw))
            obj.history.pop()  # re-appended below with the new resourceVersion
        meta = new["metadata"]
        meta["resourceVersion"] = str(next(_RV))
        if request.subresource in (None, "scale") and new.get("spec") != current.get("spec"):
            meta["generation"] = int(cur_meta.get("generation", 1)) + 1
        obj.create(new)
        return self._scale_view(new) if request.subresource == "scale" else new

    @staticmethod
    def _scale_view(dep: dict[str, Any]) -> dict[str, Any]:
        meta = dep.get("metadata", {})
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "spec": {"replicas": dep.get("spec", {}).get("replicas", 1)},
            "status": {"replicas": dep.get("status", {}).get("replicas", 0)},
        }

    def read_obj(self, res: kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (res, namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(dict(self._objects[key].raw))

    def seed(self, res: kmock.resource, namespace: str | None, name: str, obj: dict[str, Any]) -> None:
        """Seed or overwrite an object directly (server side, as a controller would)."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.update({"name": name, "namespace": namespace, "resourceVersion": str(next(_RV))})
        meta.setdefault("generation", 1)
        key = (res, namespace, name)
        if key in self._objects:
            self._objects[key].create(obj)
        else:
            self._objects[key] = obj

    def all(self, res: kmock.resource, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(dict(o.raw))
            for (r, ns, _), o in self._objects.items()
            if r == res and not o.deleted and (namespace is None or ns == namespace)
        ]

    @property
    def seen(self) -> list[kmock.Request]:
        """Every request served so far, in order."""
        return list(self._requests)

    def declare(self, *resources: kmock.resource) -> None:
        """Make empty resources listable (kmock 404s a LIST on a resource it has never seen)."""
        for res in resources:
            self.resources[res] = {}


def api_client_for(emu: kmock.RawHandler) -> k8s.ApiClient:
    cfg = k8s.Configuration(host=str(emu.url).rstrip("/"))
    cfg.retries = 0
    return k8s.ApiClient(cfg)


def deployment(
    name: str = "resnet",
    namespace: str = "ml",
    *,
    replicas: int = 2,
    max_unavailable: int | str | None = 0,
    max_surge: int | str = 1,
    ready: int | None = None,
) -> dict[str, Any]:
    strategy: dict[str, Any] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": max_surge}}
    if max_unavailable is not None:
        strategy["rollingUpdate"]["maxUnavailable"] = max_unavailable
    ready_n = replicas if ready is None else ready
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "generation": 1, "uid": f"uid-{name}"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "tfserving", "image": "tensorflow/serving:2.14.1-gpu"}]},
            },
        },
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready_n,
            "availableReplicas": ready_n,
        },
    }


def hpa(name: str, namespace: str, target: str, kind: str = "Deployment") -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
            "minReplicas": 1,
            "maxReplicas": 10,
        },
    }


# --- tests of the emulator itself: the semantics the daemon's tests rely on -------------------

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)


async def test_stale_resource_version_on_replace_is_a_409(kmock: VersionedEmulator) -> None:
    api = k8s.CoordinationV1Api(api_client_for(kmock))
    body = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name="l", namespace="ns"), spec=k8s.V1LeaseSpec(holder_identity="a"))
    created = await asyncio.to_thread(api.create_namespaced_lease, "ns", body)
    rv = created.metadata.resource_version
    body.metadata.resource_version = rv
    body.spec.holder_identity = "b"
    replaced = await asyncio.to_thread(api.replace_namespaced_lease, "l", "ns", body)
    assert replaced.spec.holder_identity == "b"
    assert replaced.metadata.resource_version != rv
    body.spec.holder_identity = "c"  # still carries the old resourceVersion
    with pytest.raises(k8s.ApiException) as exc:
        await asyncio.to_thread(api.replace_namespaced_lease, "l", "ns", body)
    assert exc.value.status == 409
    assert kmock.read_obj(LEASES, "ns", "l")["spec"]["holderIdentity"] == "b"  # type: ignore[index]


async def test_scale_subresource_reads_and_patches_the_deployment(kmock: VersionedEmulator) -> None:
    kmock.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=2))
    apps = k8s.AppsV1Api(api_client_for(kmock))
    scale = await asyncio.to_thread(apps.read_namespaced_deployment_scale, "resnet", "ml")
    assert scale.spec.replicas == 2
    await asyncio.to_thread(apps.patch_namespaced_deployment_scale, "resnet", "ml", {"spec": {"replicas": 5}})
    dep = kmock.read_obj(DEPLOYMENTS, "ml", "resnet")
    assert dep is not None and dep["spec"]["replicas"] == 5
    assert dep["metadata"]["generation"] == 2
