"""Leader and standby serve the same numbers for a target, whichever pod the HPA's query reaches.

Two daemon instances on one kmock cluster (real HTTP, official client, one ManualClock): A leads
and rolls out new batching parameters (1/0/1 -> larger batches), B stands by. Both publish the
desired replica count to their own DecisionStore, which the adapter behind one Service serves.
B's own actuation outcome is always "skipped", so B must learn the batching in effect from the
cluster (the pod template's hash and the ConfigMap), or its capacity model and hence its desired
count drift away from the leader's.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_leader_daemons import SteadyLoad
from test_runtime_kubeemu import CONFIGMAPS, DEPLOYMENTS, EVENTS, HPAS, VersionedEmulator, api_client_for, deployment

from autoscaler.actuators.base import BatchingOutcome
from autoscaler.actuators.kube import KubernetesActuator
from autoscaler.core.store import DecisionStore
from autoscaler.core.types import TargetKey
from autoscaler.runtime.clock import ManualClock
from autoscaler.runtime.leader import LeaderConfig, LeaseElector
from autoscaler.runtime.loop import ControlLoop
from autoscaler.runtime.telemetry import Telemetry
from autoscaler.spec.types import (
    SLO,
    BatchingParams,
    BatchingSpec,
    Behavior,
    IntRange,
    Mode,
    Provisioning,
    ServingAutoscalerSpec,
    TargetRef,
    default_scale_down,
)

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)
KEY = TargetKey("ml", "resnet")


def spec() -> ServingAutoscalerSpec:
    return ServingAutoscalerSpec(
        name="resnet",
        target=TargetRef("ml", "resnet", "resnet", batching_configmap="resnet-batching"),
        mode=Mode.HPA,
        min_replicas=1,
        max_replicas=40,
        slo=SLO(latency_ms=100),
        provisioning=Provisioning(decision_period_s=5.0),
        batching=BatchingSpec(
            tune=True,
            initial=BatchingParams(max_batch_size=1, batch_timeout_us=0, num_batch_threads=1, max_enqueued_batches=100),
            max_batch_size=IntRange(1, 16),
            batch_timeout_us=IntRange(0, 0),
            num_batch_threads=IntRange(1, 1),
            max_enqueued_batches=IntRange(100, 100),
            min_rollout_interval_s=60.0,
        ),
        behavior=Behavior(scale_down=replace(default_scale_down(), stabilization_window_s=0)),
    )


class Instance:
    def __init__(self, emu: VersionedEmulator, clock: ManualClock, who: str, source: SteadyLoad) -> None:
        api = api_client_for(emu)
        self.elector = LeaseElector(
            api,
            LeaderConfig(identity=who, namespace="ops", lease_duration_s=15, renew_deadline_s=10, retry_period_s=2),
            clock,
        )
        self.store = DecisionStore()
        self.loop = ControlLoop(
            clock=clock,
            source=source,
            actuator=KubernetesActuator(api, may_write=self.elector.is_leader),
            telemetry=Telemetry(self.store),
            is_leader=self.elector.is_leader,
        )
        self.loop.set_specs([spec()])

    def desired(self) -> int:
        rec = self.store.get(KEY)
        assert rec is not None and rec.decision is not None
        return rec.decision.desired_replicas


async def test_standby_publishes_what_the_leader_publishes_after_a_batching_rollout(kmock: VersionedEmulator) -> None:
    kmock.declare(HPAS, EVENTS, CONFIGMAPS)
    kmock.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=20))
    clock = ManualClock()
    load = SteadyLoad()
    load.rate_rps = 2000.0
    a, b = Instance(kmock, clock, "a", load), Instance(kmock, clock, "b", load)
    assert await a.elector.step() and not await b.elector.step()
    rolled_out_at = None
    pairs: list[tuple[int, int]] = []
    for step in range(12):
        await a.elector.step()
        await b.elector.step()
        (ra,) = await a.loop.tick()
        await b.loop.tick()
        if ra.actuation.batching is BatchingOutcome.ROLLED_OUT and rolled_out_at is None:
            rolled_out_at = step
            dep = kmock.read_obj(DEPLOYMENTS, "ml", "resnet")
            assert dep is not None
            dep["status"]["observedGeneration"] = dep["metadata"]["generation"]  # the rollout completes
            kmock.seed(DEPLOYMENTS, "ml", "resnet", dep)
        pairs.append((a.desired(), b.desired()))
        await clock.advance(5)
    assert rolled_out_at is not None, pairs
    after = pairs[rolled_out_at + 1 :]
    assert after and all(da == db for da, db in after), pairs  # before the fix: leader 7, standby 20
    assert after[-1][0] < 20  # the larger batches do cut the replica count
