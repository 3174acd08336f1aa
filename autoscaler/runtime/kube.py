"""Building the daemon's Kubernetes pieces: API client, Events, actuator, Lease elector, CRD lister.

Lives in the runtime because only `actuators/` and `runtime/` may import the `kubernetes` client
(docs/design.md layering, enforced by import-linter); the `run` command calls `build_kube_parts()` and
never touches the client. Config: an explicit kubeconfig, else in-cluster (service account), else the
default kubeconfig.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from autoscaler.actuators.events import EventRecorder
from autoscaler.actuators.kube import KubernetesActuator
from autoscaler.actuators.retry import Backoff
from autoscaler.runtime.clock import Clock
from autoscaler.runtime.leader import LeaderConfig, LeaseElector
from autoscaler.runtime.specwatch import CrdLister, crd_lister

log = logging.getLogger(__name__)


class NoClusterConfig(Exception):
    """No way to reach a cluster: the message says what is missing and how to point at one."""


def load_api_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    api: k8s.ApiClient
    if kubeconfig:
        try:
            api = k8s_config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        except (k8s_config.ConfigException, OSError) as exc:
            raise NoClusterConfig(f"cannot use --kubeconfig {kubeconfig}: {exc}") from None
        return api
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        log.info("using in-cluster Kubernetes config")
        return k8s.ApiClient()
    except k8s_config.ConfigException:
        pass
    try:
        api = k8s_config.new_client_from_config()  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError) as exc:
        raise NoClusterConfig(
            "no Kubernetes cluster configured: not running in a pod (no service account) and no kubeconfig "
            f"({exc}); pass --kubeconfig FILE, set KUBECONFIG, or run inside the cluster"
        ) from None
    return api


@dataclass
class KubeParts:
    api_client: k8s.ApiClient
    events: EventRecorder
    actuator: KubernetesActuator
    elector: LeaseElector | None
    list_crs: CrdLister

    def is_leader(self) -> Callable[[], bool]:
        elector = self.elector
        return elector.is_leader if elector is not None else (lambda: True)


def build_kube_parts(
    clock: Clock,
    *,
    kubeconfig: str | None,
    identity: str,
    leader: LeaderConfig | None,
    api_client: k8s.ApiClient | None = None,
) -> KubeParts:
    """The actuator writes only while `is_leader()` holds (always, without leader election)."""
    api = api_client if api_client is not None else load_api_client(kubeconfig)
    events = EventRecorder(api, instance=identity)
    elector = LeaseElector(api, leader, clock) if leader is not None else None
    may_write: Callable[[], bool] = elector.is_leader if elector is not None else (lambda: True)
    # every write attempt is fenced on the lease and lands before a standby may take over
    backoff = Backoff.within_lease(leader.write_window_s) if leader is not None else Backoff()
    actuator = KubernetesActuator(api, events=events, may_write=may_write, backoff=backoff)
    return KubeParts(api, events, actuator, elector, crd_lister(api))


def read_configmap_data(api_client: k8s.ApiClient, namespace: str, name: str) -> dict[str, str]:
    """A ConfigMap's `data` (e.g. kube-system/extension-apiserver-authentication for the adapter)."""
    cm = k8s.CoreV1Api(api_client).read_namespaced_config_map(name, namespace, _request_timeout=10.0)
    return dict(cm.data or {})


class SubjectAccessReviewer:
    """The metrics adapter's authorizer backend: one `authorization.k8s.io/v1` SubjectAccessReview.

    Duck-typed against `adapter.authz.Reviewer` (the adapter may not import this module):
    `user` has name/groups/extra, `attrs` the ResourceAttributes fields or a non-resource path.
    Needs `create` on subjectaccessreviews (the `system:auth-delegator` ClusterRole).
    """

    def __init__(self, api_client: k8s.ApiClient, *, timeout_s: float = 5.0) -> None:
        self._api = k8s.AuthorizationV1Api(api_client)
        self._timeout_s = timeout_s

    def review(self, user: Any, attrs: Any) -> tuple[bool, str]:
        spec = k8s.V1SubjectAccessReviewSpec(
            user=user.name,
            groups=list(user.groups) or None,
            extra={k: list(v) for k, v in user.extra.items()} or None,
        )
        if attrs.is_resource:
            spec.resource_attributes = k8s.V1ResourceAttributes(
                verb=attrs.verb,
                group=attrs.group,
                version=attrs.version,
                resource=attrs.resource,
                subresource=attrs.subresource or None,
                name=attrs.name or None,
                namespace=attrs.namespace or None,
            )
        else:
            spec.non_resource_attributes = k8s.V1NonResourceAttributes(path=attrs.path, verb=attrs.verb)
        out = self._api.create_subject_access_review(
            k8s.V1SubjectAccessReview(spec=spec), _request_timeout=self._timeout_s
        )
        st = out.status
        if st is None:
            return False, "no status in the SubjectAccessReview response"
        return bool(st.allowed) and not bool(st.denied), str(st.reason or st.evaluation_error or "")
