"""The Kubernetes actuator: mode dispatch over scale, batching rollout and Events.

Implements the `Actuator` protocol for a real cluster. Rules, in order: only the leader writes
(`may_write()` fences every write attempt, retries and 409 re-reads included, and each API call
carries a client timeout, so a leader that lost its lease stops at once: see `retry.py`);
invalid decisions never actuate; `preview` changes nothing; `hpa` never touches replicas (the
decision is published through the DecisionStore by the runtime) but may roll out batching, and
writes a `DesiredReplicasChanged` Event when the published number changes (rate-limited, `events.py`);
`direct` patches the scale subresource unless an HPA owns the Deployment. API failures become a
FAILED result (logged, counted), never an exception into the control loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from kubernetes import client as k8s

from autoscaler.actuators.base import (
    ActuationResult,
    BatchingOutcome,
    ReplicaStatus,
    ScaleOutcome,
    passive_result,
    standby_result,
)
from autoscaler.actuators.batching import BatchingRollout
from autoscaler.actuators.events import ACTUATION_FAILED, DecisionEvents, EventRecorder, InvolvedObject
from autoscaler.actuators.retry import Backoff, LostLeadership, Sleep
from autoscaler.actuators.scale import ScaleWriter
from autoscaler.core.types import Decision
from autoscaler.spec.types import Mode, ServingAutoscalerSpec

log = logging.getLogger(__name__)


def _always() -> bool:
    return True


class KubernetesActuator:
    """Actuator over the official client (blocking: call it from a worker thread)."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        events: EventRecorder | None = None,
        may_write: Callable[[], bool] = _always,
        backoff: Backoff | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.events = events or EventRecorder(api_client, sleep=sleep)
        self.scaler = ScaleWriter(api_client, self.events, backoff=backoff, sleep=sleep, fence=may_write)
        self.batching = BatchingRollout(api_client, self.events, backoff=backoff, sleep=sleep, fence=may_write)
        self._may_write = may_write
        self.decision_events = DecisionEvents(self.events)

    def read_replicas(self, spec: ServingAutoscalerSpec) -> ReplicaStatus | None:
        try:
            status, digest = self.scaler.read_replicas(spec)
        except Exception as exc:
            log.warning(
                "cannot read Deployment",
                extra={"target": f"{spec.target.namespace}/{spec.target.deployment}", "error": str(exc)[:200]},
            )
            return None
        try:
            params = self.batching.in_effect(spec, digest)
        except Exception as exc:
            log.warning("cannot read the batching in effect", extra={"target": spec.name, "error": str(exc)[:200]})
            params = None
        return replace(status, batching=params) if params is not None else status

    def apply(self, spec: ServingAutoscalerSpec, decision: Decision) -> ActuationResult:
        passive = passive_result(spec, decision, leader=self._may_write())
        if passive is not None:
            return passive
        try:
            if spec.mode is Mode.DIRECT:
                result = self.scaler.refuse_if_hpa_owned(spec, decision)
                if result is None:
                    if not self._may_write():
                        return standby_result(spec, decision)
                    result = self.scaler.scale(spec, decision)
            else:
                result = ActuationResult(
                    decision.target,
                    spec.mode,
                    ScaleOutcome.PUBLISHED,
                    replicas_before=decision.current_replicas,
                    message="published for the HPA",
                )
                if self._may_write():
                    t = spec.target
                    self.decision_events.observe(InvolvedObject(t.namespace, t.deployment), decision)
            if not self._may_write():
                outcome, note = BatchingOutcome.SKIPPED, "lost leadership"
            else:
                outcome, note = self.batching.apply(spec, decision)
        except LostLeadership:
            log.warning("lost leadership during actuation; nothing more sent", extra={"target": str(decision.target)})
            return ActuationResult(
                decision.target,
                spec.mode,
                ScaleOutcome.STANDBY,
                BatchingOutcome.SKIPPED,
                replicas_before=decision.current_replicas,
                message="standby: lost leadership during actuation; nothing more was written",
            )
        except Exception as exc:
            msg = f"actuation failed: {type(exc).__name__}: {str(exc)[:300]}"
            log.error(msg, extra={"target": str(decision.target)})
            t = spec.target
            self.events.emit(
                InvolvedObject(t.namespace, t.deployment), ACTUATION_FAILED, msg, now_s=decision.time_s, warning=True
            )
            return ActuationResult(
                decision.target,
                spec.mode,
                ScaleOutcome.FAILED,
                BatchingOutcome.FAILED,
                replicas_before=decision.current_replicas,
                message=msg,
            )
        message = "; ".join(m for m in (result.message, note) if m)
        return ActuationResult(
            result.target,
            result.mode,
            result.scale,
            outcome,
            result.replicas_before,
            result.replicas_after,
            message,
        )
