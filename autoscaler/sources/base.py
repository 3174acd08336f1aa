"""The contracts of metric sources: what the daemon's loop calls once per tick.

Owns the `MetricSource` Protocol (docs/design.md "Contracts"): `observe(targets, now_s)` returns one
`Observation` per target, built from one batched query per signal for all targets, never one
query per target. A source never turns a failure into a zero: every signal it cannot read is a
`Signal` with status MISSING / STALE / NAN / ERROR and a detail. `PodMetricSource` adds the
per-pod signals the custom metrics adapter serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from autoscaler.core.store import PodSignals
from autoscaler.core.types import Observation, TargetKey
from autoscaler.spec.types import ServingAutoscalerSpec


def target_key(spec: ServingAutoscalerSpec) -> TargetKey:
    return TargetKey(spec.target.namespace, spec.target.deployment)


@runtime_checkable
class MetricSource(Protocol):
    def observe(self, targets: Sequence[ServingAutoscalerSpec], now_s: float) -> dict[TargetKey, Observation]:
        """One observation per target at `now_s` (blocking; call it from a worker thread in asyncio)."""
        ...


@runtime_checkable
class PodMetricSource(Protocol):
    def observe_pods(
        self, targets: Sequence[ServingAutoscalerSpec], now_s: float
    ) -> dict[TargetKey, tuple[PodSignals, ...]]:
        """Per-pod request rate, latency at the SLO quantile and batch fill, per target."""
        ...
