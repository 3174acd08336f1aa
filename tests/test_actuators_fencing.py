"""Fencing: no replica write after the Lease is lost, and every API call is bounded in time.

kmock's emulator plays the API server; a real `LeaseElector` on a ManualClock decides leadership.
The actuator's backoff sleeps advance that clock (as the wall clock would advance while waiting),
so a lease that expires *during* a 429/5xx backoff or a 409 re-read loop is seen exactly as in
production. The rule: every attempt is fenced on the current lease, and a write that started while
we led finishes (or times out) before any standby may take over (`leaseDuration - renewDeadline`).
"""

from __future__ import annotations

import asyncio

import kmock
import pytest
from test_actuators_kube import kmock_error, make_decision, make_spec, replicas
from test_runtime_kubeemu import CONFIGMAPS, DEPLOYMENTS, EVENTS, HPAS, VersionedEmulator, api_client_for, deployment

from autoscaler.actuators.base import ScaleOutcome
from autoscaler.actuators.kube import KubernetesActuator
from autoscaler.actuators.retry import Backoff
from autoscaler.runtime.clock import ManualClock
from autoscaler.runtime.leader import LeaderConfig, LeaseElector

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)
CFG = LeaderConfig(identity="a", namespace="ops", lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)


def scale_patches(emu: VersionedEmulator) -> list[kmock.Request]:
    return [r for r in emu.seen if r.method == "PATCH" and r.subresource == "scale"]


async def leader_near_deadline(emu: VersionedEmulator) -> tuple[ManualClock, LeaseElector]:
    emu.declare(HPAS, EVENTS, CONFIGMAPS)
    emu.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=2))
    clock = ManualClock()
    elector = LeaseElector(api_client_for(emu), CFG, clock)
    assert await elector.step()
    await clock.advance(9.0)  # 1 s before the renew deadline; the elector cannot renew any more
    assert elector.is_leader()
    return clock, elector


async def test_lease_lost_during_429_backoff_stops_writing(kmock: VersionedEmulator) -> None:
    clock, elector = await leader_near_deadline(kmock)
    loop = asyncio.get_running_loop()

    def sleep_on_clock(delay_s: float) -> None:  # the backoff's wait, on the test's clock
        asyncio.run_coroutine_threadsafe(clock.advance(delay_s), loop).result()

    throttled = [1]

    async def throttle(req: kmock.Request) -> None:
        if req.method == "PATCH" and req.subresource == "scale" and throttled:
            throttled.pop()
            raise kmock_error(429)

    kmock.before = throttle
    act = KubernetesActuator(
        api_client_for(kmock), may_write=elector.is_leader, sleep=sleep_on_clock, backoff=Backoff(base_s=2.0)
    )
    result = await asyncio.to_thread(act.apply, make_spec(), make_decision(6))
    assert not elector.is_leader()
    assert len(scale_patches(kmock)) == 1  # the throttled one; nothing after the lease was gone
    assert replicas(kmock) == 2
    assert result.scale is ScaleOutcome.STANDBY and "lost leadership" in result.message


async def test_lease_lost_during_conflict_rereads_stops_writing(kmock: VersionedEmulator) -> None:
    clock, elector = await leader_near_deadline(kmock)

    async def slow_conflict(req: kmock.Request) -> None:
        if req.method == "PATCH" and req.subresource == "scale":
            await clock.advance(2.0)  # the write took long enough for the lease to run out ...
            dep = kmock.read_obj(DEPLOYMENTS, "ml", "resnet")
            assert dep is not None
            kmock.seed(DEPLOYMENTS, "ml", "resnet", dep)  # ... and someone else changed the Deployment: 409

    kmock.before = slow_conflict
    act = KubernetesActuator(api_client_for(kmock), may_write=elector.is_leader, sleep=lambda _s: None)
    result = await asyncio.to_thread(act.apply, make_spec(), make_decision(6))
    assert len(scale_patches(kmock)) == 1  # no re-read-and-patch after the lease was gone
    assert replicas(kmock) == 2
    assert result.scale is ScaleOutcome.STANDBY


async def test_every_api_call_has_a_client_timeout(kmock: VersionedEmulator) -> None:
    kmock.declare(HPAS, EVENTS, CONFIGMAPS)
    kmock.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=2))
    release = asyncio.Event()

    async def stall(req: kmock.Request) -> None:
        if req.method == "PATCH" and req.subresource == "scale":
            await release.wait()  # an API server that accepted the connection and never answers

    kmock.before = stall
    act = KubernetesActuator(api_client_for(kmock), backoff=Backoff(request_timeout_s=0.3, budget_s=1.0))
    try:
        result = await asyncio.wait_for(asyncio.to_thread(act.apply, make_spec(), make_decision(6)), 20.0)
    finally:
        release.set()
    assert result.scale is ScaleOutcome.FAILED
    assert "timeout" in result.message.lower() or "timed out" in result.message.lower()


def test_backoff_budget_fits_between_renew_deadline_and_lease_expiry() -> None:
    b = Backoff.within_lease(CFG.lease_duration_s - CFG.renew_deadline_s)
    assert b.request_timeout_s <= b.budget_s < 5.0
    # the worst case of one call (every attempt times out, every backoff sleeps its maximum) fits the budget
    assert b.worst_case_s() <= b.budget_s
    with pytest.raises(ValueError, match="budget"):
        Backoff(request_timeout_s=3.0, budget_s=2.0)


async def test_the_daemon_sizes_its_retries_from_the_lease(kmock: VersionedEmulator) -> None:
    from autoscaler.runtime.kube import build_kube_parts

    parts = build_kube_parts(ManualClock(), kubeconfig=None, identity="a", leader=CFG, api_client=api_client_for(kmock))
    for backoff in (parts.actuator.scaler._backoff, parts.actuator.batching._backoff):
        assert backoff.worst_case_s() < CFG.lease_duration_s - CFG.renew_deadline_s
