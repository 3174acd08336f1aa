"""The Actuator protocol and its result types, shared by the Kubernetes and the demo actuators.

An actuator takes a spec and a Decision and makes the world agree with it (or refuses, or only
records it). It reports what it did as an `ActuationResult` so the control loop can log it, count
it in /metrics and write it in the decision record. Actuators are synchronous (they call blocking
clients); the runtime calls them through `asyncio.to_thread`. Kubernetes-free on purpose: the
demo's local-cluster actuator implements the same protocol without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from autoscaler.core.types import Decision, TargetKey
from autoscaler.spec.types import BatchingParams, Mode, ServingAutoscalerSpec


class ScaleOutcome(str, Enum):
    SCALED = "scaled"
    UNCHANGED = "unchanged"  # already at the desired replica count
    PUBLISHED = "published"  # hpa mode: the decision goes to the store, replicas untouched
    PREVIEW = "preview"  # preview mode: computed and recorded only
    SKIPPED_INVALID = "skipped-invalid"  # invalid decisions never actuate
    REFUSED_HPA_OWNED = "refused-hpa-owned"  # an HPA already targets the Deployment
    STANDBY = "standby"  # not the leader: shadow decision only
    FAILED = "failed"


class BatchingOutcome(str, Enum):
    NOT_CONFIGURED = "not-configured"  # no target.batching_configmap, or tuning off
    UNCHANGED = "unchanged"  # the decision keeps the current parameters
    ROLLED_OUT = "rolled-out"
    ALREADY_APPLIED = "already-applied"  # the Deployment already runs these parameters
    DEFERRED_SCALE_UP = "deferred-scale-up"  # never during a scale-up (docs/design.md rule 7)
    DEFERRED_INTERVAL = "deferred-interval"  # min_rollout_interval_s not elapsed
    DEFERRED_IN_PROGRESS = "deferred-rollout-in-progress"
    REFUSED_MAX_UNAVAILABLE = "refused-max-unavailable"  # strategy would drop serving capacity
    REFUSED_MALFORMED_FILE = "refused-malformed-file"  # the ConfigMap's batching file does not parse
    SKIPPED = "skipped"  # invalid decision, preview mode, standby
    FAILED = "failed"


@dataclass(frozen=True)
class ActuationResult:
    """What one `apply()` did for one target."""

    target: TargetKey
    mode: Mode
    scale: ScaleOutcome
    batching: BatchingOutcome = BatchingOutcome.NOT_CONFIGURED
    replicas_before: int | None = None
    replicas_after: int | None = None
    message: str = ""

    @property
    def changed_replicas(self) -> bool:
        return self.scale is ScaleOutcome.SCALED

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode.value,
            "scale": self.scale.value,
            "batching": self.batching.value,
            "replicas_before": self.replicas_before,
            "replicas_after": self.replicas_after,
            "message": self.message,
        }


@dataclass(frozen=True)
class ReplicaStatus:
    """The workload's replica counts as the actuator sees them (Deployment spec/status)."""

    current_replicas: int  # spec.replicas
    ready_replicas: int
    pending_replicas: int  # created but not ready
    # the pod template's labels: the adapter matches the HPA's Pods-metric labelSelector against them
    pod_labels: dict[str, str] = field(default_factory=dict)
    # The batching the cluster runs: the parameters whose hash the pod template carries (read from
    # the batching ConfigMap) and when they were rolled out. None = unknown / not configured. Every
    # replica, leader or standby, decides from these, so all of them serve the same numbers.
    batching: BatchingParams | None = None
    batching_rollout_s: float | None = None


class Actuator(Protocol):
    """Makes one target agree with a decision; never actuates an invalid decision."""

    def apply(self, spec: ServingAutoscalerSpec, decision: Decision) -> ActuationResult: ...

    def read_replicas(self, spec: ServingAutoscalerSpec) -> ReplicaStatus | None: ...


def standby_result(spec: ServingAutoscalerSpec, decision: Decision) -> ActuationResult:
    return ActuationResult(decision.target, spec.mode, ScaleOutcome.STANDBY, BatchingOutcome.SKIPPED, message="standby")


def passive_result(spec: ServingAutoscalerSpec, decision: Decision, *, leader: bool = True) -> ActuationResult | None:
    """The result for decisions that must not touch the workload, or None if actuation may proceed.

    Shared by every actuator so the rules are identical: standby → shadow only; invalid → never;
    preview → record only; hpa → publish only (replicas untouched; batching may still roll out).
    """
    target = decision.target
    if not leader:
        return standby_result(spec, decision)
    if not decision.valid:
        return ActuationResult(
            target,
            spec.mode,
            ScaleOutcome.SKIPPED_INVALID,
            BatchingOutcome.SKIPPED,
            replicas_before=decision.current_replicas,
            message=f"invalid decision not actuated: {decision.reason}",
        )
    if spec.mode is Mode.PREVIEW:
        return ActuationResult(
            target,
            spec.mode,
            ScaleOutcome.PREVIEW,
            BatchingOutcome.SKIPPED,
            replicas_before=decision.current_replicas,
            message="preview mode: nothing changed and nothing published to the HPA or KEDA",
        )
    return None
