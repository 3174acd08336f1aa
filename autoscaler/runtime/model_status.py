"""The daemon asks TF Serving which model versions serve: a source wrapper over either metrics path.

`ModelStatusSource` wraps the tick's `MetricSource` (Prometheus or the direct scrape): after the
inner observation it asks every Running pod of each target for its model status
(`sources/model_status.py`, REST or gRPC, bounded by one timeout per tick) and adds it to the
Observation: `model_status` (pods AVAILABLE / unknown / versions), and `cold_start_s` measured from
pod creation to model AVAILABLE once a pod has been seen starting (otherwise the inner source's
value stands). Model status exists only on the pods, so the pods must be known: the direct-scrape
source already lists them every tick (`PodDiscoveringSource.last_pods`, reused); on the Prometheus
path a `PodLister` lists them (Deployments and pods once per namespace, selectors matched here).
A target whose pods cannot be listed gets no model status this tick (the Observation is the inner
one): missing status never lowers a count.

A version rollout (two versions live on the target's pods) is an Event on the Deployment when it
starts (`ModelVersionRollout`, with the versions and pod counts) and when it ends
(`ModelVersionRolloutDone`), written by the leader only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from autoscaler.actuators.events import InvolvedObject
from autoscaler.core.store import PodSignals
from autoscaler.core.types import Observation, TargetKey
from autoscaler.runtime.discovery import PodDiscoveringSource, PodLister, PodRef
from autoscaler.sources.base import MetricSource, PodMetricSource, target_key
from autoscaler.sources.model_status import ModelStatusPoller, ModelStatusTracker, StatusRequest
from autoscaler.spec.types import ServingAutoscalerSpec

log = logging.getLogger(__name__)

ROLLOUT_STARTED = "ModelVersionRollout"
ROLLOUT_DONE = "ModelVersionRolloutDone"


class EventSink(Protocol):
    """What the wrapper needs of `actuators.events.EventRecorder`."""

    def emit(self, obj: InvolvedObject, reason: str, message: str, *, now_s: float, warning: bool = False) -> bool: ...


class ModelStatusSource:
    """MetricSource (+ PodMetricSource when the inner one is): the inner observation + model status."""

    def __init__(
        self,
        inner: MetricSource,
        poller: ModelStatusPoller,
        *,
        lister: PodLister | None = None,
        events: EventSink | None = None,
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.inner = inner
        self.poller = poller
        self.tracker = ModelStatusTracker()
        self._lister = lister
        self._events = events
        self._is_leader = is_leader
        self._rollout: dict[TargetKey, bool] = {}

    def _listed(self, targets: Sequence[ServingAutoscalerSpec]) -> dict[TargetKey, Mapping[str, PodRef]]:
        """Each target's Running pods; targets whose pods are unknown this tick are left out."""
        if isinstance(self.inner, PodDiscoveringSource):  # it listed them for its scrape just now
            got = {target_key(s): self.inner.last_pods.get(target_key(s)) for s in targets}
            return {k: v for k, v in got.items() if v is not None}
        if self._lister is None:
            return {}
        try:
            found = self._lister.pods_for(targets)
        except Exception as exc:
            log.warning("pod listing for model status failed", extra={"error": str(exc)[:200]})
            return {}
        out: dict[TargetKey, Mapping[str, PodRef]] = {}
        for key, pods in found.items():
            if isinstance(pods, str):  # no pods known: no model status this tick
                log.warning("no pods for model status", extra={"target": str(key), "error": pods})
            else:
                out[key] = pods
        return out

    def observe(self, targets: Sequence[ServingAutoscalerSpec], now_s: float) -> dict[TargetKey, Observation]:
        out = dict(self.inner.observe(targets, now_s))
        found = self._listed(targets)
        listed: dict[TargetKey, tuple[ServingAutoscalerSpec, Mapping[str, PodRef]]] = {}
        requests: list[StatusRequest] = []
        for spec in targets:
            key = target_key(spec)
            pods = found.get(key)
            if pods is None:
                continue
            listed[key] = (spec, pods)
            grpc = self.poller.protocol == "grpc"
            for name, ref in pods.items():
                addr = ref.grpc_address if grpc else ref.url
                requests.append(StatusRequest(key, name, addr, spec.target.model_name))
        answers = self.poller.poll(requests)
        for key, (spec, pods) in listed.items():
            per_pod = {name: (ref.created_s, answers[(key, name)]) for name, ref in pods.items()}
            status, cold = self.tracker.update(key, per_pod, now_s)
            obs = out.get(key)
            if obs is None:
                continue
            out[key] = replace(obs, model_status=status, cold_start_s=cold if cold.ok else obs.cold_start_s)
            if status.unknown < status.pods:  # no answer at all says nothing about a rollout
                self._rollout_event(spec, key, status.rollout, status.text(), now_s)
        return out

    def _rollout_event(
        self, spec: ServingAutoscalerSpec, key: TargetKey, rolling: bool, text: str, now_s: float
    ) -> None:
        before = self._rollout.get(key, False)
        self._rollout[key] = rolling
        if rolling == before:
            return
        what = "started" if rolling else "done"
        log.info("model version rollout %s", what, extra={"target": str(key), "status": text})
        if self._events is None or not self._is_leader():
            return
        obj = InvolvedObject(spec.target.namespace, spec.target.deployment)
        if rolling:
            msg = f"model {spec.target.model_name}: two versions live ({text}); pods count as ready once AVAILABLE"
            self._events.emit(obj, ROLLOUT_STARTED, msg, now_s=now_s)
        else:
            self._events.emit(obj, ROLLOUT_DONE, f"model {spec.target.model_name}: {text}", now_s=now_s)

    def observe_pods(
        self, targets: Sequence[ServingAutoscalerSpec], now_s: float
    ) -> dict[TargetKey, tuple[PodSignals, ...]]:
        if isinstance(self.inner, PodMetricSource):
            return self.inner.observe_pods(targets, now_s)
        return {}

    def close(self) -> None:
        self.poller.close()
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()
