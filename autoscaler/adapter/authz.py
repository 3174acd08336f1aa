"""Authorization for the aggregated metrics API: who may read which namespace's metrics.

Authentication (`auth.py`) says who the aggregator is asking for; it does not say that user may
read the metric. Like every aggregated API server built on k8s.io/apiserver (and so
kubernetes-sigs/custom-metrics-apiserver), we delegate the decision to kube-apiserver with a
SubjectAccessReview per (user, groups, extra, verb, resource, namespace). The attributes come from
the request path exactly as k8s.io/apiserver's `RequestInfoFactory.NewRequestInfo` derives them
(staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go):

  /apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/*/tfserving_request_rate
      -> get, resource "pods", name "*", subresource "tfserving_request_rate", namespace "ml"
  /apis/external.metrics.k8s.io/v1beta1/namespaces/ml/tfserving_autoscaler_desired_replicas
      -> list, resource "tfserving_autoscaler_desired_replicas", namespace "ml"
  /apis, /apis/<group>, /apis/<group>/<version>  -> non-resource path, verb get (discovery)

Decisions are cached briefly, like the apiserver's delegating authorizer (`--authorization-
webhook-cache-authorized-ttl`/`-unauthorized-ttl`, 10 s each). The adapter must not import the
Kubernetes client, so the review itself is an injected `Reviewer` (runtime/kube.py implements it
with a real SubjectAccessReview); it is blocking and called from a worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from autoscaler.adapter.auth import RemoteUser


@dataclass(frozen=True)
class Attributes:
    """authorization.k8s.io ResourceAttributes, or NonResourceAttributes when `resource` is empty."""

    verb: str
    path: str = ""
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)

    def describe(self) -> str:
        """The phrase kube-apiserver uses in its Forbidden message."""
        if not self.is_resource:
            return f'cannot {self.verb} path "{self.path}"'
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        return f'cannot {self.verb} resource "{res}" in API group "{self.group}"{where}'


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""


class Reviewer(Protocol):
    """Asks kube-apiserver; returns (allowed, reason). Blocking; may raise (the caller fails closed)."""

    def review(self, user: RemoteUser, attrs: Attributes) -> tuple[bool, str]: ...


def request_attributes(method: str, segments: list[str]) -> Attributes:
    """The attributes of a request whose path is `/` + "/".join(segments) (segments start at "apis")."""
    path = "/" + "/".join(segments)
    verb = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )
    if len(segments) < 4 or segments[0] != "apis":
        return Attributes(verb=verb, path=path)  # discovery: a non-resource URL
    group, version, rest = segments[1], segments[2], segments[3:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 2:
        namespace = rest[1]
        rest = rest[2:] if len(rest) > 2 else ["namespaces", rest[1]]
        if rest == ["namespaces", namespace]:  # GET .../namespaces/<ns> is the namespace object itself
            namespace = ""
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if verb == "get" and not name:
        verb = "list"
    return Attributes(
        verb=verb,
        path=path,
        group=group,
        version=version,
        resource=resource,
        subresource=subresource,
        name=name,
        namespace=namespace,
    )


class CachingAuthorizer:
    """Reviews through `reviewer`, remembering each verdict for a few seconds (thread-safe)."""

    def __init__(
        self,
        reviewer: Reviewer,
        *,
        allowed_ttl_s: float = 10.0,
        denied_ttl_s: float = 10.0,
        monotonic_s: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self._reviewer = reviewer
        self._allowed_ttl_s = allowed_ttl_s
        self._denied_ttl_s = denied_ttl_s
        self._now = monotonic_s
        self._max = max_entries
        self._lock = threading.Lock()
        self._cache: dict[tuple[object, ...], tuple[float, Verdict]] = {}
        self.reviews = 0  # reviews actually sent (for tests and telemetry)

    def authorize(self, user: RemoteUser, attrs: Attributes) -> Verdict:
        key = (user.name, user.groups, tuple(sorted(user.extra.items())), attrs)
        now = self._now()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        try:
            allowed, reason = self._reviewer.review(user, attrs)
            verdict = Verdict(bool(allowed), reason)
        except Exception as exc:  # fail closed, do not cache: the next request asks again
            return Verdict(False, f"authorization check failed: {type(exc).__name__}: {str(exc)[:200]}")
        with self._lock:
            self.reviews += 1
            if len(self._cache) >= self._max:
                self._cache.clear()
            ttl_s = self._allowed_ttl_s if verdict.allowed else self._denied_ttl_s
            self._cache[key] = (now + ttl_s, verdict)
        return verdict
