"""Keeping every replica's controller state consistent with the cluster, leader or standby.

Replicas behind one Service must serve the same number for a target, whichever pod answers. Each
replica runs its own copy of the controller, so any state that only the leader's actions change
drifts on the standbys. The batching parameters are such state: the leader rolls them out; a
standby's own outcome is always "skipped", so on its own it would keep the parameters it started
with and, with them, a different per-replica capacity and desired count than the leader. So that
state is taken from the cluster, where both can read it, before every decision: the parameters the
pod template's hash names, and the rollout time the leader wrote.
"""

from __future__ import annotations

from dataclasses import replace

from autoscaler.actuators.base import ReplicaStatus
from autoscaler.core.decide import State
from autoscaler.spec.types import Mode, ServingAutoscalerSpec


def adopt_cluster_batching(state: State, spec: ServingAutoscalerSpec, status: ReplicaStatus | None) -> State:
    """`state` with the batching the cluster runs (unchanged when unknown, or in preview mode,
    whose state follows its own shadow decisions)."""
    if status is None or status.batching is None or spec.mode is Mode.PREVIEW:
        return state
    rollout_s = status.batching_rollout_s if status.batching_rollout_s is not None else state.last_rollout_s
    if state.batching == status.batching and state.last_rollout_s == rollout_s:
        return state
    return replace(state, batching=status.batching, last_rollout_s=rollout_s)
