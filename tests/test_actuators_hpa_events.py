"""`hpa` mode: a `DesiredReplicasChanged` Event when the published decision changes, rate-limited.

Against kmock's emulator over real HTTP with the official client (helpers from test_actuators_kube).
"""

from __future__ import annotations

import asyncio

import pytest
from test_actuators_kube import NOW_S, make_decision, make_spec, replicas, setup
from test_runtime_kubeemu import EVENTS, VersionedEmulator, api_client_for

from autoscaler.actuators.base import ScaleOutcome
from autoscaler.actuators.events import DecisionEvents, EventRecorder
from autoscaler.actuators.kube import KubernetesActuator
from autoscaler.spec.types import Mode

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)


def messages(emu: VersionedEmulator) -> list[str]:
    return [e["message"] for e in emu.all(EVENTS, "ml") if e["reason"] == "DesiredReplicasChanged"]


async def test_hpa_mode_reports_each_change_of_the_decision_at_most_once_a_minute(kmock: VersionedEmulator) -> None:
    act, _ = setup(kmock, replicas=2)
    spec = make_spec(Mode.HPA, batching_cm=None)
    # (seconds after start, desired): 4 first; 6 and 5 within the minute are held back; 5 settles
    ticks = [(0, 4), (15, 4), (30, 6), (45, 5), (75, 5), (90, 5), (105, 5)]
    for dt, desired in ticks:
        result = await asyncio.to_thread(act.apply, spec, make_decision(desired, time_s=NOW_S + dt))
        assert result.scale is ScaleOutcome.PUBLISHED
    assert replicas(kmock) == 2  # hpa mode never patches replicas
    first, second = messages(kmock)
    assert first.startswith("desired 4 replicas, published for the HPA (Deployment has 2): forecast p95 180 rps")
    assert second.startswith("desired 4 -> 5 replicas, published for the HPA")
    (event, _) = kmock.all(EVENTS, "ml")
    assert event["type"] == "Normal" and event["involvedObject"]["name"] == "resnet"
    assert event["involvedObject"]["kind"] == "Deployment"


async def test_standbys_and_invalid_decisions_write_no_decision_event(kmock: VersionedEmulator) -> None:
    setup(kmock, replicas=2)
    standby = KubernetesActuator(api_client_for(kmock), may_write=lambda: False)
    await asyncio.to_thread(standby.apply, make_spec(Mode.HPA, batching_cm=None), make_decision(7))
    act = KubernetesActuator(api_client_for(kmock))
    bad = make_decision(7, valid=False, time_s=NOW_S + 120)
    assert (await asyncio.to_thread(act.apply, make_spec(Mode.HPA), bad)).scale is ScaleOutcome.SKIPPED_INVALID
    assert messages(kmock) == []


def test_interval_must_be_seconds(kmock: VersionedEmulator) -> None:
    with pytest.raises(ValueError, match="min_interval_s: expected seconds >= 0"):
        DecisionEvents(EventRecorder(api_client_for(kmock)), min_interval_s=float("nan"))
