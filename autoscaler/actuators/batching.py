"""Batching rollout: write TF Serving's batching file into its ConfigMap, then roll the pods.

TF Serving reads `--batching_parameters_file` once at startup (specs.md §5.2), so new parameters
need new pods. We write `BatchingParams.to_pbtxt()` under the key `batching_parameters.pbtxt` of
`spec.target.batching_configmap` (merge patch; created if missing) and trigger a rolling restart
by patching the pod-template annotation `autoscaling.tfserving.dev/batching-hash` = sha256[:16] of
the text. DESIGN rule 7 guards it, checked in this order: the decision must say
`batching_changed`; never during a scale-up; the Deployment must not already run this hash; not
more often than `spec.batching.min_rollout_interval_s` (the last rollout time is kept on the
Deployment's own annotation too, so a new leader respects it); the strategy must be
RollingUpdate with maxUnavailable 0 (otherwise we refuse with a Warning Event: a restart wave
would drop serving capacity); and no rollout may be in progress (generation/observedGeneration,
updated/ready replicas).

`in_effect()` reads it back for every replica (leader or standby): the pod template's hash names
the parameters the pods run, the ConfigMap holds their text (parsed, and checked against the hash,
cached per hash so a steady Deployment costs no extra read).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from autoscaler.actuators.base import BatchingOutcome
from autoscaler.actuators.events import BATCHING_ROLLOUT, REFUSED_BATCHING, EventRecorder, InvolvedObject
from autoscaler.actuators.retry import Backoff, Fence, Sleep, call_with_backoff
from autoscaler.core.types import Decision
from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

PBTXT_KEY = "batching_parameters.pbtxt"
HASH_ANNOTATION = "autoscaling.tfserving.dev/batching-hash"
ROLLOUT_TIME_ANNOTATION = "autoscaling.tfserving.dev/batching-rollout-time"
MERGE_PATCH = "application/merge-patch+json"


def batching_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_PBTXT_FIELD = re.compile(r"^\s*(\w+)\s*\{\s*value:\s*(\d+)\s*\}\s*$", re.MULTILINE)
_PBTXT_NAMES = {
    "max_batch_size": "max_batch_size",
    "batch_timeout_micros": "batch_timeout_us",
    "num_batch_threads": "num_batch_threads",
    "max_enqueued_batches": "max_enqueued_batches",
}


def parse_pbtxt(text: str) -> BatchingParams | None:
    """BatchingParams from the text `BatchingParams.to_pbtxt()` writes; None if a field is missing."""
    found = {_PBTXT_NAMES[k]: int(v) for k, v in _PBTXT_FIELD.findall(text) if k in _PBTXT_NAMES}
    if len(found) != len(_PBTXT_NAMES):
        return None
    return BatchingParams(**found)


def template_hash(dep: Any) -> str | None:
    tmpl = dep.spec.template if dep.spec is not None else None
    ann = (tmpl.metadata.annotations or {}) if tmpl is not None and tmpl.metadata is not None else {}
    value = ann.get(HASH_ANNOTATION)
    return str(value) if value else None


def rollout_time_s(dep: Any) -> float | None:
    ann = (dep.metadata.annotations or {}) if dep.metadata is not None else {}
    try:
        value = float(ann.get(ROLLOUT_TIME_ANNOTATION, "nan"))
    except (TypeError, ValueError):
        return None
    return value if value == value else None


def max_unavailable_is_zero(strategy: Any) -> bool:
    """True only for RollingUpdate with maxUnavailable 0 / "0%" (unset defaults to 25 %)."""
    if strategy is None or (strategy.type or "RollingUpdate") != "RollingUpdate":
        return False
    ru = strategy.rolling_update
    mu = ru.max_unavailable if ru is not None else None
    if mu is None:
        return False
    return str(mu).strip().rstrip("%") == "0"


def rollout_in_progress(dep: Any) -> str | None:
    """Why a rollout is in progress, or None if the Deployment is settled."""
    gen = dep.metadata.generation if dep.metadata is not None else None
    st = dep.status
    if st is None:
        return "no status yet"
    want = int(dep.spec.replicas if dep.spec and dep.spec.replicas is not None else 1)
    if gen is not None and (st.observed_generation or 0) < gen:
        return f"observedGeneration {st.observed_generation} < generation {gen}"
    if int(st.updated_replicas or 0) < want:
        return f"updatedReplicas {st.updated_replicas or 0} < replicas {want}"
    if int(st.replicas or 0) > int(st.updated_replicas or 0):
        return f"{int(st.replicas or 0) - int(st.updated_replicas or 0)} old pods still running"
    if int(st.unavailable_replicas or 0) > 0:
        return f"{st.unavailable_replicas} unavailable replicas"
    return None


class BatchingRollout:
    """Applies the decision's batching parameters to one Deployment when rule 7 allows."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        events: EventRecorder,
        *,
        backoff: Backoff | None = None,
        sleep: Sleep | None = None,
        fence: Fence | None = None,
    ) -> None:
        self._apps = k8s.AppsV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._fence = fence
        self._events = events
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._last_rollout_s: dict[tuple[str, str], float] = {}
        self._by_hash: dict[tuple[str, str, str], BatchingParams] = {}  # (ns, configmap, hash) -> params

    def _call(self, fn: Callable[[float], T]) -> T:
        """Every rollout call is fenced on the lease and time-bounded (see retry.py)."""
        return call_with_backoff(fn, backoff=self._backoff, sleep=self._sleep, fence=self._fence)

    def in_effect(self, spec: ServingAutoscalerSpec, digest: str | None) -> BatchingParams | None:
        """The parameters the pod template's hash `digest` names, or None if unknown (not fenced)."""
        cm = spec.target.batching_configmap
        if cm is None or digest is None:
            return None
        key = (spec.target.namespace, cm, digest)
        if key not in self._by_hash:
            obj = call_with_backoff(
                lambda to: self._core.read_namespaced_config_map(cm, spec.target.namespace, _request_timeout=to),
                backoff=self._backoff,
                sleep=self._sleep,
            )
            text = (obj.data or {}).get(PBTXT_KEY)
            params = parse_pbtxt(text) if text else None
            if params is None or batching_hash(text or "") != digest:
                return None  # the ConfigMap moved on (a rollout in progress): unknown this tick
            self._by_hash[key] = params
        return self._by_hash[key]

    def apply(self, spec: ServingAutoscalerSpec, decision: Decision) -> tuple[BatchingOutcome, str]:
        t = spec.target
        cm = t.batching_configmap
        if cm is None or not spec.batching.tune:
            return BatchingOutcome.NOT_CONFIGURED, ""
        if not decision.batching_changed:
            return BatchingOutcome.UNCHANGED, ""
        if decision.desired_replicas > decision.current_replicas:
            return BatchingOutcome.DEFERRED_SCALE_UP, "batching rollout deferred: scale-up in progress"
        now_s = decision.time_s
        dep = self._call(
            lambda to: self._apps.read_namespaced_deployment(t.deployment, t.namespace, _request_timeout=to)
        )
        meta = dep.metadata or k8s.V1ObjectMeta()
        text = decision.batching.to_pbtxt()
        digest = batching_hash(text)
        tmpl_ann = (dep.spec.template.metadata.annotations or {}) if dep.spec.template.metadata else {}
        if tmpl_ann.get(HASH_ANNOTATION) == digest:
            return BatchingOutcome.ALREADY_APPLIED, f"batching {digest} already rolled out"
        dep_ann = meta.annotations or {}
        last_s = self._last_rollout_s.get((t.namespace, t.deployment), float("-inf"))
        try:
            last_s = max(last_s, float(dep_ann.get(ROLLOUT_TIME_ANNOTATION, "-inf")))
        except ValueError:
            pass
        if now_s - last_s < spec.batching.min_rollout_interval_s:
            wait_s = spec.batching.min_rollout_interval_s - (now_s - last_s)
            return BatchingOutcome.DEFERRED_INTERVAL, f"batching rollout deferred {wait_s:.0f} s (min interval)"
        obj = InvolvedObject(t.namespace, t.deployment, uid=meta.uid)
        if not max_unavailable_is_zero(dep.spec.strategy):
            msg = (
                "refusing batching rollout: Deployment strategy must be RollingUpdate with maxUnavailable: 0 "
                "(and maxSurge >= 1) so the restart wave never drops serving capacity"
            )
            log.warning(msg, extra={"target": str(decision.target)})
            self._events.emit(obj, REFUSED_BATCHING, msg, now_s=now_s, warning=True)
            return BatchingOutcome.REFUSED_MAX_UNAVAILABLE, msg
        busy = rollout_in_progress(dep)
        if busy is not None:
            return BatchingOutcome.DEFERRED_IN_PROGRESS, f"batching rollout deferred: {busy}"
        self._write_configmap(t.namespace, cm, text)
        patch = {
            "metadata": {
                "resourceVersion": meta.resource_version,
                "annotations": {ROLLOUT_TIME_ANNOTATION: f"{now_s:.3f}"},
            },
            "spec": {"template": {"metadata": {"annotations": {HASH_ANNOTATION: digest}}}},
        }
        try:
            self._call(
                lambda to: self._apps.patch_namespaced_deployment(
                    t.deployment, t.namespace, patch, _content_type=MERGE_PATCH, _request_timeout=to
                )
            )
        except ApiException as exc:
            if exc.status == 409:
                return BatchingOutcome.DEFERRED_IN_PROGRESS, "Deployment changed while rolling out; retry next tick"
            raise
        self._last_rollout_s[(t.namespace, t.deployment)] = now_s
        p = decision.batching
        msg = (
            f"{decision.reason}; batching max_batch_size={p.max_batch_size} batch_timeout_us={p.batch_timeout_us} "
            f"num_batch_threads={p.num_batch_threads} max_enqueued_batches={p.max_enqueued_batches} (hash {digest})"
        )
        log.info("batching rollout", extra={"target": str(decision.target), "hash": digest})
        self._events.emit(obj, BATCHING_ROLLOUT, msg, now_s=now_s)
        return BatchingOutcome.ROLLED_OUT, msg

    def _write_configmap(self, namespace: str, name: str, text: str) -> None:
        try:
            self._call(
                lambda to: self._core.patch_namespaced_config_map(
                    name, namespace, {"data": {PBTXT_KEY: text}}, _content_type=MERGE_PATCH, _request_timeout=to
                )
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name, namespace=namespace), data={PBTXT_KEY: text})
            self._call(lambda to: self._core.create_namespaced_config_map(namespace, body, _request_timeout=to))
