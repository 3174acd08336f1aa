"""Direct-mode replica actuation: the Deployment's `scale` subresource, guarded against HPAs.

Reads `apps/v1 deployments/<name>/scale`, then patches `spec.replicas` with an
`application/merge-patch+json` body that carries the `metadata.resourceVersion` just read, so the
patch is conditional: if anyone changed the Scale in between, the API server answers 409 and we
re-read and retry (bounded). 429/5xx get bounded exponential backoff (`retry.py`). Every call in
`scale()` (the re-reads too) is fenced on the current lease and carries a client timeout, so a
leader that loses its Lease mid-loop sends nothing more (`LostLeadership`). We set the
content type explicitly because the client would otherwise send strategic-merge-patch for a dict
body. Before patching, the namespace's HPAs are listed: if one targets this Deployment
(scaleTargetRef), we refuse (docs/design.md rule 8) with a Warning Event and a log line. They are listed
as `autoscaling/v1`, which every Kubernetes version serves and which shows every HPA whatever
version created it; `autoscaling/v2` exists only from 1.23, and a 1.20 API server answers 404.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from autoscaler.actuators.base import ActuationResult, ReplicaStatus, ScaleOutcome
from autoscaler.actuators.batching import rollout_time_s, template_hash
from autoscaler.actuators.events import (
    REFUSED_HPA_OWNED,
    SCALED_DOWN,
    SCALED_UP,
    EventRecorder,
    InvolvedObject,
)
from autoscaler.actuators.retry import Backoff, Fence, Sleep, call_with_backoff
from autoscaler.core.types import Decision
from autoscaler.spec.types import ServingAutoscalerSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

MERGE_PATCH = "application/merge-patch+json"


class ScaleWriter:
    """Reads and conditionally patches one Deployment's replica count."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        events: EventRecorder,
        *,
        backoff: Backoff | None = None,
        sleep: Sleep | None = None,
        max_conflict_retries: int = 5,
        fence: Fence | None = None,
    ) -> None:
        self._apps = k8s.AppsV1Api(api_client)
        self._hpas = k8s.AutoscalingV1Api(api_client)
        self._events = events
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._max_conflicts = max_conflict_retries
        self._fence = fence
        self.conflicts = 0  # 409s seen (for tests and telemetry)

    def _call(self, fn: Callable[[float], T], *, fenced: bool = False) -> T:
        fence = self._fence if fenced else None
        return call_with_backoff(fn, backoff=self._backoff, sleep=self._sleep, fence=fence)

    def _patch_scale(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        self._call(
            lambda t: self._apps.patch_namespaced_deployment_scale(
                name, namespace, body, _content_type=MERGE_PATCH, _request_timeout=t
            ),
            fenced=True,
        )

    def hpa_owner(self, namespace: str, deployment: str) -> str | None:
        """Name of an HPA (of any version, listed as autoscaling/v1) whose scaleTargetRef is this Deployment."""
        hpas = self._call(lambda t: self._hpas.list_namespaced_horizontal_pod_autoscaler(namespace, _request_timeout=t))
        for h in hpas.items or ():
            ref = h.spec.scale_target_ref if h.spec is not None else None
            if ref is None or ref.kind != "Deployment" or ref.name != deployment:
                continue
            group = (ref.api_version or "apps/v1").split("/")[0]
            if group in ("apps", "extensions"):
                return str(h.metadata.name) if h.metadata is not None else "<unnamed>"
        return None

    def read_replicas(self, spec: ServingAutoscalerSpec) -> tuple[ReplicaStatus, str | None]:
        """The replica counts, plus the pod template's batching hash (resolved by the caller)."""
        t = spec.target
        dep = self._call(
            lambda to: self._apps.read_namespaced_deployment(t.deployment, t.namespace, _request_timeout=to)
        )
        current = int(dep.spec.replicas if dep.spec and dep.spec.replicas is not None else 1)
        st = dep.status
        ready = int(st.ready_replicas or 0) if st is not None else 0
        total = int(st.replicas or 0) if st is not None else 0
        tmpl = dep.spec.template if dep.spec is not None else None
        labels = dict(tmpl.metadata.labels or {}) if tmpl is not None and tmpl.metadata is not None else {}
        status = ReplicaStatus(
            current_replicas=current,
            ready_replicas=ready,
            pending_replicas=max(0, total - ready),
            pod_labels=labels,
            batching_rollout_s=rollout_time_s(dep),
        )
        return status, template_hash(dep)

    def refuse_if_hpa_owned(self, spec: ServingAutoscalerSpec, decision: Decision) -> ActuationResult | None:
        t = spec.target
        owner = self.hpa_owner(t.namespace, t.deployment)
        if owner is None:
            return None
        msg = (
            f"refusing to patch replicas: HorizontalPodAutoscaler {owner} targets this Deployment "
            f"(use mode: hpa to publish to it); decision was {decision.desired_replicas}: {decision.reason}"
        )
        log.warning(msg, extra={"target": str(decision.target), "hpa": owner})
        self._events.emit(
            InvolvedObject(t.namespace, t.deployment), REFUSED_HPA_OWNED, msg, now_s=decision.time_s, warning=True
        )
        return ActuationResult(
            decision.target,
            spec.mode,
            ScaleOutcome.REFUSED_HPA_OWNED,
            replicas_before=decision.current_replicas,
            message=msg,
        )

    def scale(self, spec: ServingAutoscalerSpec, decision: Decision) -> ActuationResult:
        """Set spec.replicas to the decision's desired count (conditional on resourceVersion)."""
        t = spec.target
        desired = int(decision.desired_replicas)
        for _ in range(self._max_conflicts):
            scale = self._call(
                lambda to: self._apps.read_namespaced_deployment_scale(t.deployment, t.namespace, _request_timeout=to),
                fenced=True,
            )
            before = int(scale.spec.replicas if scale.spec and scale.spec.replicas is not None else 0)
            if before == desired:
                return ActuationResult(
                    decision.target, spec.mode, ScaleOutcome.UNCHANGED, replicas_before=before, replicas_after=before
                )
            rv = scale.metadata.resource_version if scale.metadata is not None else None
            body = {"metadata": {"resourceVersion": rv}, "spec": {"replicas": desired}}
            try:
                self._patch_scale(t.namespace, t.deployment, body)
            except ApiException as exc:
                if exc.status == 409:
                    self.conflicts += 1
                    log.info("scale conflict, re-reading", extra={"target": str(decision.target)})
                    continue
                raise
            reason = SCALED_UP if desired > before else SCALED_DOWN
            msg = f"{before} -> {desired} replicas: {decision.reason}"
            self._events.emit(InvolvedObject(t.namespace, t.deployment), reason, msg, now_s=decision.time_s)
            return ActuationResult(
                decision.target,
                spec.mode,
                ScaleOutcome.SCALED,
                replicas_before=before,
                replicas_after=desired,
                message=msg,
            )
        return ActuationResult(
            decision.target,
            spec.mode,
            ScaleOutcome.FAILED,
            replicas_before=decision.current_replicas,
            message=f"gave up after {self._max_conflicts} conflicting writes",
        )
