"""Lease leader election against kmock's emulator (real HTTP, official client, ManualClock).

Two candidates: the first acquires, the second stays standby while the leader renews; when the
leader dies (stops renewing) the standby takes over within the lease duration, and at no instant
do both consider themselves leader. A graceful release hands over immediately.
"""

from __future__ import annotations

import asyncio

import pytest
from test_runtime_kubeemu import LEASES, VersionedEmulator, api_client_for

from autoscaler.runtime.clock import ManualClock
from autoscaler.runtime.leader import LeaderConfig, LeaseElector

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)


def cfg(identity: str) -> LeaderConfig:
    return LeaderConfig(identity=identity, namespace="ops", lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)


async def test_acquire_renew_and_takeover_without_overlap(kmock: VersionedEmulator) -> None:
    clock = ManualClock()
    changes: list[tuple[str, bool, float]] = []

    def elector(who: str) -> LeaseElector:
        return LeaseElector(
            api_client_for(kmock), cfg(who), clock, on_change=lambda v: changes.append((who, v, clock.now_s()))
        )

    a, b = elector("a"), elector("b")
    t0 = clock.now_s()

    assert await a.step() is True
    assert await b.step() is False
    lease = kmock.read_obj(LEASES, "ops", "tfserving-autoscaler")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseDurationSeconds"] == 15
    assert lease["spec"]["leaseTransitions"] == 0
    acquired = lease["spec"]["acquireTime"]

    overlap = []
    # a renews every 2 s for 20 s; b keeps trying and keeps failing
    for _ in range(10):
        await clock.advance(2)
        assert await a.step() is True
        assert await b.step() is False
        overlap.append(a.is_leader() and b.is_leader())
    lease = kmock.read_obj(LEASES, "ops", "tfserving-autoscaler")
    assert lease is not None and lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["acquireTime"] == acquired and lease["spec"]["renewTime"] != acquired

    # a dies (no more renewals, no release). b polls every 2 s.
    died_s = clock.now_s()
    took_over_s = None
    for _ in range(20):
        await clock.advance(2)
        won = await b.step()
        overlap.append(a.is_leader() and b.is_leader())
        if won:
            took_over_s = clock.now_s()
            break
    assert took_over_s is not None
    assert took_over_s - died_s <= 15 + 2  # within the lease duration (+ one retry period)
    assert not any(overlap)
    a_lost = next(t for who, v, t in changes if who == "a" and v is False)
    assert a_lost <= died_s + 10  # the dead leader stopped actuating at its renew deadline ...
    assert a_lost < took_over_s  # ... before the standby took over
    lease = kmock.read_obj(LEASES, "ops", "tfserving-autoscaler")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    assert clock.now_s() > t0


async def test_release_hands_over_at_once_and_409_decides_races(kmock: VersionedEmulator) -> None:
    clock = ManualClock()
    a = LeaseElector(api_client_for(kmock), cfg("a"), clock)
    b = LeaseElector(api_client_for(kmock), cfg("b"), clock)
    assert await a.step()
    assert not await b.step()
    await asyncio.to_thread(a.release)
    assert not a.is_leader()
    await clock.advance(2)
    assert await b.step()  # no need to wait out the lease duration
    lease = kmock.read_obj(LEASES, "ops", "tfserving-autoscaler")
    assert lease is not None and lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1

    # a stale replace (a holds an old resourceVersion) must lose with 409, not overwrite b
    conflicts = []

    async def race(req: object) -> None:
        if getattr(req, "method", None) == "PUT" and not conflicts:
            conflicts.append(1)
            cur = kmock.read_obj(LEASES, "ops", "tfserving-autoscaler")
            assert cur is not None
            kmock.seed(LEASES, "ops", "tfserving-autoscaler", cur)  # bumps resourceVersion

    assert await a.step() is False  # a observes b's lease ...
    await clock.advance(20)  # ... which then expires from a's point of view (b stopped renewing)
    kmock.before = race  # type: ignore[assignment]
    assert await a.step() is False
    assert conflicts == [1]
    lease = kmock.read_obj(LEASES, "ops", "tfserving-autoscaler")
    assert lease is not None and lease["spec"]["holderIdentity"] == "b"
