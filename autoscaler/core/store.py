"""DecisionStore: the latest decision and live signals per target, shared by the shells.

The daemon's control loop writes it; the metrics adapter, the KEDA scaler and the /metrics
collector only read it (docs/design.md "Contracts": "DecisionStore is the only state the adapter reads").
It lives in the core layer, stdlib-only, so readers and writers in sibling packages can
share it without importing each other. Thread-safe: the loop writes from the event loop while
gRPC handlers read from worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from autoscaler.core.types import Decision, Observation, TargetKey
from autoscaler.spec.types import SLO


@dataclass(frozen=True)
class PodSignals:
    """Per-pod TF Serving signals (for the custom.metrics.k8s.io Pods metrics)."""

    pod: str
    request_rate_rps: float | None = None
    latency_ms: float | None = None  # at the target's SLO quantile
    batch_fill: float | None = None  # mean processed batch size / max_batch_size, 0..1
    time_s: float = 0.0


@dataclass(frozen=True)
class TargetRecord:
    """Everything published about one target. `decision` is the last *valid* decision."""

    target: TargetKey
    model_name: str
    decision: Decision | None = None  # last valid decision (never overwritten by an invalid one)
    last_attempt: Decision | None = None  # the most recent decision, valid or not
    observation: Observation | None = None
    pods: tuple[PodSignals, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)  # pod-template labels + {"model": ...} for selectors
    slo: SLO | None = None  # the target's SLO (for the SLO gauges on /metrics)
    # False for `mode: preview`: the decision is recorded (logs, status, dashboards) but nothing an
    # HPA consumes carries it: the adapter answers 404, KEDA NOT_FOUND, no desired-replicas gauge.
    published: bool = True


class DecisionStore:
    """In-memory map TargetKey -> TargetRecord with atomic replace-on-write."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[TargetKey, TargetRecord] = {}
        self._version = 0

    def put_decision(
        self,
        target: TargetKey,
        model_name: str,
        decision: Decision,
        observation: Observation | None = None,
        labels: dict[str, str] | None = None,
        slo: SLO | None = None,
        *,
        published: bool = True,
    ) -> TargetRecord:
        """Record a decision. An invalid decision never replaces the last valid one.
        `published=False` (preview mode) keeps it away from every HPA-facing reader."""
        with self._lock:
            old = self._records.get(target) or TargetRecord(target=target, model_name=model_name)
            rec = TargetRecord(
                target=target,
                model_name=model_name,
                decision=decision if decision.valid else old.decision,
                last_attempt=decision,
                observation=observation if observation is not None else old.observation,
                pods=old.pods,
                labels=dict(labels) if labels is not None else old.labels,
                slo=slo if slo is not None else old.slo,
                published=published,
            )
            self._records[target] = rec
            self._version += 1
            return rec

    def put_pods(self, target: TargetKey, model_name: str, pods: tuple[PodSignals, ...]) -> None:
        with self._lock:
            old = self._records.get(target) or TargetRecord(target=target, model_name=model_name)
            self._records[target] = TargetRecord(
                target=old.target,
                model_name=old.model_name,
                decision=old.decision,
                last_attempt=old.last_attempt,
                observation=old.observation,
                pods=pods,
                labels=old.labels,
                slo=old.slo,
                published=old.published,
            )
            self._version += 1

    def remove(self, target: TargetKey) -> None:
        with self._lock:
            self._records.pop(target, None)
            self._version += 1

    def get(self, target: TargetKey) -> TargetRecord | None:
        with self._lock:
            return self._records.get(target)

    def snapshot(self) -> tuple[TargetRecord, ...]:
        """A consistent copy of all records, sorted by target."""
        with self._lock:
            return tuple(self._records[k] for k in sorted(self._records))

    def __iter__(self) -> Iterator[TargetRecord]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    @property
    def version(self) -> int:
        """Increments on every write (cheap change detection for readers)."""
        with self._lock:
            return self._version
