"""Two daemon instances (control loop + Lease elector + Kubernetes actuator each) on one cluster.

kmock's emulator plays the API server over real HTTP; the official client talks to it; time is a
shared ManualClock. Instance A leads and actuates, B computes the same decisions in shadow. Then
A's elector dies (it stops renewing) while its control loop keeps ticking — the worst case, a
zombie leader. A must stop actuating at its renew deadline, B must take over within the lease
duration, and no scale write from A may land after B's first one (no double actuation).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from test_runtime_kubeemu import DEPLOYMENTS, EVENTS, HPAS, LEASES, VersionedEmulator, api_client_for, deployment

from autoscaler.actuators.base import ScaleOutcome
from autoscaler.actuators.kube import KubernetesActuator
from autoscaler.core.store import DecisionStore
from autoscaler.core.types import Observation, Signal, TargetKey
from autoscaler.runtime.clock import ManualClock
from autoscaler.runtime.leader import LeaderConfig, LeaseElector
from autoscaler.runtime.loop import ControlLoop
from autoscaler.runtime.telemetry import Telemetry
from autoscaler.spec.types import SLO, Mode, Provisioning, ServingAutoscalerSpec, TargetRef

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)
KEY = TargetKey("ml", "resnet")


class SteadyLoad:
    """A MetricSource for the test: the load the 'Prometheus' would report, set by the test."""

    def __init__(self) -> None:
        self.rate_rps = 0.0

    def observe(self, targets: Sequence[ServingAutoscalerSpec], now_s: float) -> dict[TargetKey, Observation]:
        sig = Signal.of(self.rate_rps)
        return {
            TargetKey(s.target.namespace, s.target.deployment): Observation(
                time_s=now_s, request_rate_rps=sig, burst_rate_rps=sig, rejected_rps=Signal.of(0.0)
            )
            for s in targets
        }


def spec() -> ServingAutoscalerSpec:
    return ServingAutoscalerSpec(
        name="resnet",
        target=TargetRef("ml", "resnet", "resnet"),
        mode=Mode.DIRECT,
        min_replicas=1,
        max_replicas=20,
        slo=SLO(latency_ms=100),
        provisioning=Provisioning(decision_period_s=5.0),
    )


class Instance:
    def __init__(self, emu: VersionedEmulator, clock: ManualClock, who: str, source: SteadyLoad) -> None:
        api = api_client_for(emu)
        api.user_agent = f"daemon-{who}"
        self.elector = LeaseElector(
            api,
            LeaderConfig(identity=who, namespace="ops", lease_duration_s=15, renew_deadline_s=10, retry_period_s=2),
            clock,
        )
        self.actuator = KubernetesActuator(api, may_write=self.elector.is_leader)
        self.store = DecisionStore()
        self.loop = ControlLoop(
            clock=clock,
            source=source,
            actuator=self.actuator,
            telemetry=Telemetry(self.store),
            is_leader=self.elector.is_leader,
        )
        self.loop.set_specs([spec()])
        self.scaled: list[float] = []  # times this instance's actuator scaled


def scale_patches(emu: VersionedEmulator) -> list[str]:
    return [r.headers.get("User-Agent", "") for r in emu.seen if r.method == "PATCH" and r.subresource == "scale"]


async def test_leader_dies_standby_takes_over_without_double_actuation(kmock: VersionedEmulator) -> None:
    kmock.declare(HPAS, EVENTS)
    kmock.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=1))
    clock = ManualClock()
    load = SteadyLoad()
    a = Instance(kmock, clock, "a", load)
    b = Instance(kmock, clock, "b", load)
    assert await a.elector.step() and not await b.elector.step()

    a_alive = True
    lost_at = took_at = None
    overlap = False
    load.rate_rps = 9000.0
    for step in range(40):  # 80 s, electors every 2 s, loops every 4 s
        if a_alive:
            await a.elector.step()
        await b.elector.step()
        if step == 10:  # t=20 s: A's elector dies; its loop keeps ticking (zombie)
            a_alive = False
            load.rate_rps = 18000.0
        if step % 2 == 0:
            for inst in (a, b):
                for r in await inst.loop.tick():
                    if r.actuation.scale is ScaleOutcome.SCALED:
                        inst.scaled.append(clock.now_s())
        overlap |= a.elector.is_leader() and b.elector.is_leader()
        if lost_at is None and not a.elector.is_leader():
            lost_at = clock.now_s()
        if took_at is None and b.elector.is_leader():
            took_at = clock.now_s()
        await clock.advance(2)

    assert not overlap
    assert lost_at is not None and took_at is not None
    assert lost_at < took_at
    died_at = clock.now_s() - 80 + 20
    assert took_at - died_at <= 15 + 2  # within the lease duration (+ one retry period)
    who = scale_patches(kmock)
    assert who, "somebody must have scaled"
    assert "daemon-a" in who and "daemon-b" in who
    first_b = who.index("daemon-b")
    assert "daemon-a" not in who[first_b:]  # nothing from the old leader after the takeover
    assert all(t < lost_at for t in a.scaled)  # the zombie stopped actuating at its renew deadline
    assert all(t >= took_at for t in b.scaled)
    # the standby computed the same decisions in shadow and published them to its own store
    rec = b.store.get(KEY)
    assert rec is not None and rec.decision is not None
    dep = kmock.read_obj(DEPLOYMENTS, "ml", "resnet")
    assert dep is not None and dep["spec"]["replicas"] == rec.decision.desired_replicas > 1
    lease = kmock.read_obj(LEASES, "ops", "tfserving-autoscaler")
    assert lease is not None and lease["spec"]["holderIdentity"] == "b"
