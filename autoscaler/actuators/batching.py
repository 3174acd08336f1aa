"""Batching rollout: write TF Serving's batching file into its ConfigMap, then roll the pods.

TF Serving reads `--batching_parameters_file` once at startup
(`tensorflow_serving/model_servers/server.cc` `Server::BuildAndStart`; nothing re-reads it), so new
parameters need new pods. We write `BatchingParams.to_pbtxt()` under the key `batching_parameters.pbtxt`
of `spec.target.batching_configmap` (merge patch; created if missing) and trigger a rolling restart by
patching the pod-template annotation `autoscaling.tfserving.dev/batching-hash` = sha256[:16] of the
text. docs/design.md rule 7 guards it, checked in this order: the decision must say `batching_changed`;
never during a scale-up; the Deployment must not already run this hash; not more often than
`spec.batching.min_rollout_interval_s` (the last rollout time is kept on the Deployment's own annotation
too, so a new leader respects it); the strategy must be RollingUpdate with maxUnavailable 0 (otherwise
we refuse with a Warning Event: a restart wave would drop serving capacity); and no rollout may be in
progress (generation/observedGeneration, updated/ready replicas).

The file is edited, not regenerated (`batching_file.py`): the ConfigMap's current text is parsed
as TF Serving's `BatchingParameters` text format and only the tuned fields change, so
`allowed_batch_sizes`, `pad_variable_length_inputs`, `thread_pool_name` and fields newer than ours
survive; a file that does not parse is refused with a Warning Event naming the ConfigMap key and
nothing is rolled out. Only a ConfigMap without the key gets a fresh file (`to_pbtxt()`).

`in_effect()` reads it back for every replica (leader or standby), on start and on every tick, so a
new leader starts from what the cluster runs rather than `batching.initial`: the pod template's
hash names the parameters the pods run, the ConfigMap holds their text (parsed, and checked against
the hash, cached per hash so a steady Deployment costs no extra read). A Deployment we never rolled
out (no hash annotation) runs the file the operator mounted: it is read too, re-read every
`UNMANAGED_REREAD_CALLS` calls; fields the file omits keep their `batching.initial` values.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from autoscaler.actuators.base import BatchingOutcome
from autoscaler.actuators.batching_file import BatchingFile, BatchingFileError
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
UNMANAGED_REREAD_CALLS = 20  # ~5 min at a 15 s decision period


def batching_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_pbtxt(text: str, defaults: BatchingParams | None = None) -> BatchingParams:
    """The tuned parameters a batching file sets (omitted fields keep `defaults`); BatchingFileError if malformed."""
    return BatchingFile.parse(text).params(defaults or BatchingParams())


def _where(namespace: str, configmap: str) -> str:
    return f"ConfigMap {namespace}/{configmap} key {PBTXT_KEY}"


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
        self._unmanaged_calls: dict[tuple[str, str, str], int] = {}

    def _call(self, fn: Callable[[float], T]) -> T:
        """Every rollout call is fenced on the lease and time-bounded (see retry.py)."""
        return call_with_backoff(fn, backoff=self._backoff, sleep=self._sleep, fence=self._fence)

    def in_effect(self, spec: ServingAutoscalerSpec, digest: str | None) -> BatchingParams | None:
        """The parameters the pods run, or None if unknown (not fenced).

        With a hash (`digest`, from the pod template) the ConfigMap text must match it; without one
        (never rolled out by us) the operator's file is what the pods mounted. Raises
        BatchingFileError, naming the ConfigMap key, when the file does not parse.
        """
        cm = spec.target.batching_configmap
        if cm is None:
            return None
        key = (spec.target.namespace, cm, digest or "")
        if digest is None:
            self._unmanaged_calls[key] = self._unmanaged_calls.get(key, 0) + 1
            if self._unmanaged_calls[key] > UNMANAGED_REREAD_CALLS:
                self._unmanaged_calls[key] = 1
                self._by_hash.pop(key, None)
        if key not in self._by_hash:
            text = self._read_file(spec.target.namespace, cm)
            if text is None or (digest is not None and batching_hash(text) != digest):
                return None  # no file, or the ConfigMap moved on (a rollout in progress): unknown this tick
            try:
                params = parse_pbtxt(text, spec.batching.initial)
            except BatchingFileError as exc:
                raise BatchingFileError(f"{_where(spec.target.namespace, cm)}: {exc}") from None
            self._by_hash[key] = params
        return self._by_hash[key]

    def _read_file(self, namespace: str, name: str) -> str | None:
        """The ConfigMap's batching file, or None if the ConfigMap or its key is missing."""
        try:
            obj = call_with_backoff(
                lambda to: self._core.read_namespaced_config_map(name, namespace, _request_timeout=to),
                backoff=self._backoff,
                sleep=self._sleep,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        text = (obj.data or {}).get(PBTXT_KEY)
        return str(text) if text is not None else None

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
        obj = InvolvedObject(t.namespace, t.deployment, uid=meta.uid)
        current = self._call(lambda to: self._read_configmap(t.namespace, cm, to))
        notes: tuple[str, ...] = ()
        if current is None or PBTXT_KEY not in (current.data or {}):
            text = decision.batching.to_pbtxt()  # no file yet: write a fresh one
        else:
            try:
                text, notes = BatchingFile.parse(str(current.data[PBTXT_KEY])).with_params(decision.batching)
            except BatchingFileError as exc:
                msg = f"refusing batching rollout: {_where(t.namespace, cm)} is not a valid batching file: {exc}"
                log.warning(msg, extra={"target": str(decision.target)})
                self._events.emit(obj, REFUSED_BATCHING, msg, now_s=now_s, warning=True)
                return BatchingOutcome.REFUSED_MALFORMED_FILE, msg
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
        version = current.metadata.resource_version if current is not None and current.metadata else None
        try:
            self._write_configmap(t.namespace, cm, text, version)
        except ApiException as exc:
            if exc.status == 409:
                return BatchingOutcome.DEFERRED_IN_PROGRESS, f"{_where(t.namespace, cm)} changed while editing; retry"
            raise
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
        ) + "".join(f"; {n}" for n in notes)
        log.info("batching rollout", extra={"target": str(decision.target), "hash": digest})
        self._events.emit(obj, BATCHING_ROLLOUT, msg, now_s=now_s)
        return BatchingOutcome.ROLLED_OUT, msg

    def _read_configmap(self, namespace: str, name: str, timeout_s: float) -> Any:
        try:
            return self._core.read_namespaced_config_map(name, namespace, _request_timeout=timeout_s)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _write_configmap(self, namespace: str, name: str, text: str, resource_version: str | None) -> None:
        """Merge-patch the file (conditional on the version we edited: a concurrent edit is a 409)."""
        patch: dict[str, Any] = {"data": {PBTXT_KEY: text}}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        try:
            self._call(
                lambda to: self._core.patch_namespaced_config_map(
                    name, namespace, patch, _content_type=MERGE_PATCH, _request_timeout=to
                )
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name, namespace=namespace), data={PBTXT_KEY: text})
            self._call(lambda to: self._core.create_namespaced_config_map(namespace, body, _request_timeout=to))
