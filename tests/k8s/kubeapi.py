"""Talking to the e2e control plane: clients, applying the shipped manifests, polling for conditions.

The `kubernetes` Python client no longer ships typed classes for autoscaling/v2beta2 (the newest
HPA version 1.20 serves), so HPAs and every manifest go through `kubernetes.dynamic.DynamicClient`;
typed clients are used where 1.20 serves the version they speak (core/v1, apps/v1).
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from controlplane import ControlPlane, Pem, issue_cert, kubeconfig
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
T = TypeVar("T")


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def wait_for(what: str, fn: Callable[[], T | None], *, timeout_s: float = 60.0, every_s: float = 0.5) -> T:
    """Poll `fn` until it returns a truthy value; fail with `what` and the last value after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}; last value: {last!r}")
        time.sleep(every_s)


class Kube:
    """Admin access to the control plane plus helpers to make other users' credentials."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.api_client = k8s_config.new_client_from_config(str(cp.admin_kubeconfig))
        self.dyn = DynamicClient(self.api_client)
        self.core = k8s.CoreV1Api(self.api_client)
        self.apps = k8s.AppsV1Api(self.api_client)

    def resource(self, api_version: str, kind: str) -> Any:
        return self.dyn.resources.get(api_version=api_version, kind=kind)

    def apply(self, docs: Iterable[dict[str, Any]]) -> None:
        """Create each object, or replace it (keeping its resourceVersion) when it exists."""
        for doc in docs:
            res = self.resource(doc["apiVersion"], doc["kind"])
            ns = doc["metadata"].get("namespace") if res.namespaced else None
            try:
                res.create(body=doc, namespace=ns)
            except ConflictError:
                cur = res.get(name=doc["metadata"]["name"], namespace=ns)
                doc = {**doc, "metadata": {**doc["metadata"], "resourceVersion": cur.metadata.resourceVersion}}
                res.replace(body=doc, namespace=ns)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None
        return obj

    def create_namespace(self, name: str) -> None:
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
        # the ServiceAccount admission plugin rejects pods until the namespace's default SA exists
        wait_for(f"{name}/default ServiceAccount", lambda: self.get("v1", "ServiceAccount", "default", name))

    def sa_token(self, namespace: str, name: str) -> str:
        """The token the 1.20 token controller put into the ServiceAccount's Secret."""

        def token() -> str | None:
            sa = self.get("v1", "ServiceAccount", name, namespace)
            for ref in (sa or {}).get("secrets") or ():
                secret = self.get("v1", "Secret", ref["name"], namespace)
                if secret and (secret.get("data") or {}).get("token"):
                    return base64.b64decode(secret["data"]["token"]).decode()
            return None

        return wait_for(f"token of ServiceAccount {namespace}/{name}", token)

    def sa_kubeconfig(self, namespace: str, name: str, path: Path) -> Path:
        return kubeconfig(path, self.cp.url, self.cp.ca.cert, token=self.sa_token(namespace, name))

    def user_cert(self, directory: Path, user: str, *groups: str) -> Pem:
        """A client certificate for `user` in `groups`, signed by the cluster CA."""
        return issue_cert(self.cp.ca, directory, f"user-{user}", cn=user, orgs=groups)

    def client_for(self, kubeconfig_path: Path) -> k8s.ApiClient:
        return k8s_config.new_client_from_config(str(kubeconfig_path))


async def until(what: str, fn: Callable[[], T | None], *, timeout_s: float = 60.0, every_s: float = 0.5) -> T:
    """`wait_for` for async tests: `fn` runs in a thread, so the event loop (emulators, load) keeps going."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = await asyncio.to_thread(fn)
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}; last value: {last!r}")
        await asyncio.sleep(every_s)


class ReplicaWatch:
    """Records every change of a Deployment's `spec.replicas` (wall time s, value) from a watch, in a thread.

    The audit log cannot give the value for the controller manager's writes (their bodies are
    protobuf, which the audit log omits); a watch sees every change, in order.
    """

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.changes: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-watch", daemon=True)

    def __enter__(self) -> ReplicaWatch:
        self._thread.start()
        wait_for("the watch's first event", lambda: self.changes, timeout_s=30, every_s=0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        rv = None
        while not self._stop.is_set():
            w = k8s_watch.Watch()
            try:
                for ev in w.stream(
                    self.kube.apps.list_namespaced_deployment,
                    self.namespace,
                    field_selector=f"metadata.name={self.name}",
                    resource_version=rv,
                    timeout_seconds=2,
                ):
                    obj = ev["object"]
                    rv = obj.metadata.resource_version
                    replicas = obj.spec.replicas
                    if not self.changes or self.changes[-1][1] != replicas:
                        self.changes.append((time.time(), int(replicas)))
                    if self._stop.is_set():
                        w.stop()
            except Exception:  # a watch that expired or broke: start a new one from the last version
                rv = None
