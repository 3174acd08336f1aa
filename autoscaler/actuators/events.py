"""Kubernetes Events (core/v1) for every actuation and refusal, so `kubectl describe` explains us.

`involvedObject` is the target Deployment, `reason` a CamelCase verb (ScaledUp, ScaledDown,
DesiredReplicasChanged, BatchingRollout, RefusedHPAOwned, RefusedBatchingRollout, SpecInvalid,
ActuationFailed) and `message` the decision's reason. Timestamps come from the caller's `now_s`
(the injected clock). Identical (object, reason, message) Events are suppressed for
`dedupe_window_s`, as kubectl users expect one Event per situation rather than one per tick.
Emitting never raises: a failed Event is logged and counted, it must not break a scale-up.

In `hpa` mode the daemon never scales, so no ScaledUp/ScaledDown explains what the HPA does next:
`DecisionEvents` writes a `DesiredReplicasChanged` Event when the published decision changes, at
most one per target per `min_interval_s` (a decision that flips every tick gives one Event a
minute, and the last change is always reported once the interval has passed).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client as k8s

from autoscaler.actuators.retry import Backoff, Sleep, call_with_backoff
from autoscaler.core.types import Decision, TargetKey

log = logging.getLogger(__name__)

COMPONENT = "tfserving-autoscaler"

# reasons (CamelCase, like the Kubernetes controllers)
SCALED_UP = "ScaledUp"
SCALED_DOWN = "ScaledDown"
DESIRED_CHANGED = "DesiredReplicasChanged"  # hpa mode: the number published for the HPA changed
BATCHING_ROLLOUT = "BatchingRollout"
REFUSED_HPA_OWNED = "RefusedHPAOwned"
REFUSED_BATCHING = "RefusedBatchingRollout"
SPEC_INVALID = "SpecInvalid"
ACTUATION_FAILED = "ActuationFailed"


@dataclass(frozen=True)
class InvolvedObject:
    namespace: str
    name: str
    kind: str = "Deployment"
    api_version: str = "apps/v1"
    uid: str | None = None


class EventRecorder:
    """Creates core/v1 Events; thread-safe; never raises."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        instance: str = "",
        dedupe_window_s: float = 300.0,
        sleep: Sleep | None = None,
    ) -> None:
        self._core = k8s.CoreV1Api(api_client)
        self._instance = instance
        self._dedupe_window_s = dedupe_window_s
        self._sleep = sleep
        self._lock = threading.Lock()
        self._seq = 0
        self._last: dict[tuple[str, str, str, str, str], float] = {}
        self.failures = 0

    def emit(
        self,
        obj: InvolvedObject,
        reason: str,
        message: str,
        *,
        now_s: float,
        warning: bool = False,
    ) -> bool:
        """Create the Event; returns True if one was written (False if suppressed or failed)."""
        key = (obj.kind, obj.namespace, obj.name, reason, message)
        with self._lock:
            last_s = self._last.get(key)
            if last_s is not None and now_s - last_s < self._dedupe_window_s:
                return False
            self._last[key] = now_s
            self._seq += 1
            seq = self._seq
        ts = datetime.fromtimestamp(now_s, tz=UTC)
        name = f"{obj.name}.{int(now_s * 1000):x}{seq:04x}"
        body = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(name=name, namespace=obj.namespace),
            involved_object=k8s.V1ObjectReference(
                api_version=obj.api_version, kind=obj.kind, name=obj.name, namespace=obj.namespace, uid=obj.uid
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            source=k8s.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=self._instance or COMPONENT,
            first_timestamp=ts,
            last_timestamp=ts,
            count=1,
        )
        try:
            call_with_backoff(
                lambda to: self._core.create_namespaced_event(obj.namespace, body, _request_timeout=to),
                backoff=Backoff(attempts=3, request_timeout_s=2.0, budget_s=4.0),
                sleep=self._sleep,
            )
        except Exception as exc:  # never raise: an Event must not break actuation
            self.failures += 1
            log.warning(
                "could not create Event",
                extra={"target": f"{obj.namespace}/{obj.name}", "reason": reason, "error": str(exc)[:200]},
            )
            return False
        return True


class DecisionEvents:
    """`hpa` mode: one `DesiredReplicasChanged` Event per change of the published decision, rate-limited.

    The state is the last desired count reported per target and when: a tick whose desired count
    equals the last reported one writes nothing; a change within `min_interval_s` of the last Event
    is held back and reported by the first tick after the interval whose count still differs, so
    flapping costs at most one Event per interval and the settled value is never lost. A new leader
    starts empty and reports its first decision.
    """

    def __init__(self, events: EventRecorder, *, min_interval_s: float = 60.0) -> None:
        if not min_interval_s >= 0:
            raise ValueError(f"min_interval_s: expected seconds >= 0 (got {min_interval_s!r})")
        self._events = events
        self._min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._last: dict[TargetKey, tuple[int, float]] = {}  # target -> (desired reported, when, s)

    def observe(self, obj: InvolvedObject, decision: Decision) -> bool:
        """Report `decision` if its desired count changed; True if an Event was written."""
        desired, now_s = decision.desired_replicas, decision.time_s
        with self._lock:
            last = self._last.get(decision.target)
            if last is not None and (last[0] == desired or now_s - last[1] < self._min_interval_s):
                return False
            self._last[decision.target] = (desired, now_s)
        before = f"{last[0]} -> " if last is not None else ""
        msg = (
            f"desired {before}{desired} replicas, published for the HPA "
            f"(Deployment has {decision.current_replicas}): {decision.reason}"
        )
        # A failed Event is not retried before the interval passes (the recorder already retried it),
        # so an unreachable API server costs one attempt per interval, not one per tick.
        return self._events.emit(obj, DESIRED_CHANGED, msg, now_s=now_s)
