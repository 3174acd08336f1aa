"""Kubernetes actuation against kmock's emulator over real HTTP with the official client.

Covers: direct-mode scale patch (conditional merge patch) + Event; refusal when an autoscaling/v2
HPA targets the Deployment (+ Warning Event); 409 re-read and retry; 429/5xx bounded backoff;
invalid / preview / hpa / standby never patch replicas; batching ConfigMap + pod-template hash
rollout and each of its guards (scale-up, interval, maxUnavailable, rollout in progress, same hash).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace

import kmock
import pytest
from test_runtime_kubeemu import (
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    HPAS,
    VersionedEmulator,
    api_client_for,
    deployment,
    hpa,
)

from autoscaler.actuators.base import BatchingOutcome, ScaleOutcome
from autoscaler.actuators.batching import HASH_ANNOTATION, PBTXT_KEY
from autoscaler.actuators.kube import KubernetesActuator
from autoscaler.actuators.retry import Backoff
from autoscaler.core.types import Binding, Decision, TargetKey
from autoscaler.spec.types import BatchingParams, BatchingSpec, Mode, ServingAutoscalerSpec, TargetRef

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)

NOW_S = 1_750_000_000.0
KEY = TargetKey("ml", "resnet")


def make_spec(mode: Mode = Mode.DIRECT, *, batching_cm: str | None = "resnet-batching") -> ServingAutoscalerSpec:
    return ServingAutoscalerSpec(
        name="resnet",
        target=TargetRef("ml", "resnet", "resnet", batching_configmap=batching_cm),
        mode=mode,
        batching=BatchingSpec(tune=True, min_rollout_interval_s=600.0),
    )


def make_decision(desired: int, current: int = 2, **kw: object) -> Decision:
    base = Decision(
        target=KEY,
        time_s=NOW_S,
        desired_replicas=desired,
        current_replicas=current,
        valid=True,
        reason="forecast p95 180 rps over 75 s lead time needs 4 replicas at 52 rps each",
        binding=Binding.NONE,
        batching=BatchingParams(),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def setup(emu: VersionedEmulator, **dep_kw: object) -> tuple[KubernetesActuator, list[float]]:
    emu.declare(HPAS, EVENTS, CONFIGMAPS)
    emu.seed(DEPLOYMENTS, "ml", "resnet", deployment(**dep_kw))  # type: ignore[arg-type]
    sleeps: list[float] = []
    act = KubernetesActuator(api_client_for(emu), sleep=sleeps.append, backoff=Backoff(attempts=4, base_s=0.2))
    return act, sleeps


def replicas(emu: VersionedEmulator) -> int:
    dep = emu.read_obj(DEPLOYMENTS, "ml", "resnet")
    assert dep is not None
    return int(dep["spec"]["replicas"])


def writes(emu: VersionedEmulator) -> list[kmock.Request]:
    return [r for r in emu.seen if r.method in ("PATCH", "PUT", "POST") and r.resource != EVENTS]


async def test_direct_mode_patches_scale_conditionally_and_records_an_event(kmock: VersionedEmulator) -> None:
    kmock.seed(HPAS, "ml", "other-hpa", hpa("other-hpa", "ml", "some-other-deployment"))
    act, _ = setup(kmock, replicas=2)
    result = await asyncio.to_thread(act.apply, make_spec(), make_decision(4))
    assert result.scale is ScaleOutcome.SCALED
    assert (result.replicas_before, result.replicas_after) == (2, 4)
    assert replicas(kmock) == 4
    patch = next(r for r in kmock.seen if r.method == "PATCH" and r.subresource == "scale")
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert patch.data["metadata"]["resourceVersion"]  # conditional on what we read
    (event,) = kmock.all(EVENTS, "ml")
    assert event["reason"] == "ScaledUp" and event["type"] == "Normal"
    assert event["involvedObject"]["kind"] == "Deployment" and event["involvedObject"]["name"] == "resnet"
    assert "2 -> 4" in event["message"] and "forecast p95" in event["message"]

    down = await asyncio.to_thread(act.apply, make_spec(), make_decision(1, current=4, time_s=NOW_S + 60))
    assert down.scale is ScaleOutcome.SCALED and replicas(kmock) == 1
    assert [e["reason"] for e in kmock.all(EVENTS, "ml")] == ["ScaledUp", "ScaledDown"]
    same = await asyncio.to_thread(act.apply, make_spec(), make_decision(1, current=1, time_s=NOW_S + 90))
    assert same.scale is ScaleOutcome.UNCHANGED


async def test_refuses_direct_mode_when_an_hpa_targets_the_deployment(kmock: VersionedEmulator) -> None:
    kmock.seed(HPAS, "ml", "resnet-hpa", hpa("resnet-hpa", "ml", "resnet"))
    act, _ = setup(kmock, replicas=2)
    result = await asyncio.to_thread(act.apply, make_spec(), make_decision(6))
    assert result.scale is ScaleOutcome.REFUSED_HPA_OWNED
    assert replicas(kmock) == 2
    assert not [r for r in kmock.seen if r.method == "PATCH"]
    (event,) = kmock.all(EVENTS, "ml")
    assert event["reason"] == "RefusedHPAOwned" and event["type"] == "Warning"
    assert "resnet-hpa" in event["message"]
    # the same refusal on the next tick does not spam a second Event
    await asyncio.to_thread(act.apply, make_spec(), make_decision(6, time_s=NOW_S + 15))
    assert len(kmock.all(EVENTS, "ml")) == 1


async def test_conflict_rereads_and_retries(kmock: VersionedEmulator) -> None:
    act, _ = setup(kmock, replicas=2)
    raced = False

    async def other_writer(req: kmock.Request) -> None:
        nonlocal raced
        if req.method == "PATCH" and req.subresource == "scale" and not raced:
            raced = True  # someone else scales to 3 between our read and our patch
            dep = kmock.read_obj(DEPLOYMENTS, "ml", "resnet")
            assert dep is not None
            dep["spec"]["replicas"] = 3
            kmock.seed(DEPLOYMENTS, "ml", "resnet", dep)

    kmock.before = other_writer
    result = await asyncio.to_thread(act.apply, make_spec(), make_decision(5))
    assert result.scale is ScaleOutcome.SCALED
    assert act.scaler.conflicts == 1
    assert result.replicas_before == 3  # re-read after the conflict
    assert replicas(kmock) == 5
    assert len([r for r in kmock.seen if r.method == "PATCH"]) == 2


async def test_429_and_5xx_are_retried_with_bounded_backoff(kmock: VersionedEmulator) -> None:
    act, sleeps = setup(kmock, replicas=2)
    failures = [429, 503]

    async def flaky(req: kmock.Request) -> None:
        if req.subresource == "scale" and req.method == "GET" and failures:
            raise kmock_error(failures.pop(0))

    kmock.before = flaky
    result = await asyncio.to_thread(act.apply, make_spec(), make_decision(3))
    assert result.scale is ScaleOutcome.SCALED and replicas(kmock) == 3
    assert sleeps == [0.2, 0.4]

    failures.extend([500] * 10)  # persistent failure: give up after 4 attempts, report FAILED
    result = await asyncio.to_thread(act.apply, make_spec(), make_decision(5, current=3, time_s=NOW_S + 30))
    assert result.scale is ScaleOutcome.FAILED
    assert replicas(kmock) == 3
    assert sleeps[2:] == [0.2, 0.4, 0.8]


def kmock_error(status: int) -> Exception:
    return kmock.KubernetesError(status=status, reason="Injected", message=f"injected {status}", details={})


@pytest.mark.parametrize(
    ("mode", "valid", "leader", "outcome"),
    [
        (Mode.DIRECT, False, True, ScaleOutcome.SKIPPED_INVALID),
        (Mode.PREVIEW, True, True, ScaleOutcome.PREVIEW),
        (Mode.HPA, True, True, ScaleOutcome.PUBLISHED),
        (Mode.DIRECT, True, False, ScaleOutcome.STANDBY),
    ],
)
async def test_modes_that_never_patch_replicas(
    kmock: VersionedEmulator, mode: Mode, valid: bool, leader: bool, outcome: ScaleOutcome
) -> None:
    kmock.declare(HPAS, EVENTS, CONFIGMAPS)
    kmock.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=2))
    act = KubernetesActuator(api_client_for(kmock), may_write=lambda: leader)
    result = await asyncio.to_thread(act.apply, make_spec(mode), make_decision(7, valid=valid))
    assert result.scale is outcome
    assert replicas(kmock) == 2
    assert writes(kmock) == []


NEW_PARAMS = BatchingParams(max_batch_size=16, batch_timeout_us=1_000, num_batch_threads=4, max_enqueued_batches=50)


async def test_batching_rollout_writes_configmap_and_template_hash(kmock: VersionedEmulator) -> None:
    act, _ = setup(kmock, replicas=3)
    d = make_decision(3, current=3, batching=NEW_PARAMS, batching_changed=True)
    result = await asyncio.to_thread(act.apply, make_spec(), d)
    assert result.batching is BatchingOutcome.ROLLED_OUT
    text = NEW_PARAMS.to_pbtxt()
    cm = kmock.read_obj(CONFIGMAPS, "ml", "resnet-batching")
    assert cm is not None and cm["data"][PBTXT_KEY] == text
    assert "max_batch_size { value: 16 }" in cm["data"][PBTXT_KEY]
    dep = kmock.read_obj(DEPLOYMENTS, "ml", "resnet")
    assert dep is not None
    want_hash = hashlib.sha256(text.encode()).hexdigest()[:16]
    assert dep["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION] == want_hash
    assert dep["metadata"]["generation"] == 2  # a template change: the Deployment controller rolls pods
    reasons = [e["reason"] for e in kmock.all(EVENTS, "ml")]
    assert reasons == ["BatchingRollout"]

    # same parameters again: already applied, no write
    n_writes = len(writes(kmock))
    again = await asyncio.to_thread(act.apply, make_spec(), replace(d, time_s=NOW_S + 5))
    assert again.batching is BatchingOutcome.ALREADY_APPLIED and len(writes(kmock)) == n_writes

    # different parameters within min_rollout_interval_s (600 s): deferred, even from a fresh actuator
    other = replace(NEW_PARAMS, max_batch_size=32)
    fresh = KubernetesActuator(api_client_for(kmock))
    later = await asyncio.to_thread(fresh.apply, make_spec(), replace(d, batching=other, time_s=NOW_S + 300))
    assert later.batching is BatchingOutcome.DEFERRED_INTERVAL and len(writes(kmock)) == n_writes


async def test_batching_guards(kmock: VersionedEmulator) -> None:
    act, _ = setup(kmock, replicas=3, max_unavailable=None)  # unset = 25 %: would drop capacity
    d = make_decision(3, current=3, batching=NEW_PARAMS, batching_changed=True)
    up = await asyncio.to_thread(act.apply, make_spec(), replace(d, desired_replicas=5))
    assert up.batching is BatchingOutcome.DEFERRED_SCALE_UP
    assert up.scale is ScaleOutcome.SCALED and kmock.read_obj(CONFIGMAPS, "ml", "resnet-batching") is None
    kmock.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=3, max_unavailable=None))
    refused = await asyncio.to_thread(act.apply, make_spec(), d)
    assert refused.batching is BatchingOutcome.REFUSED_MAX_UNAVAILABLE
    (event,) = [e for e in kmock.all(EVENTS, "ml") if e["reason"] != "ScaledUp"]
    assert event["reason"] == "RefusedBatchingRollout" and event["type"] == "Warning"
    assert kmock.read_obj(CONFIGMAPS, "ml", "resnet-batching") is None

    rolling = deployment(replicas=3, max_unavailable=0)
    rolling["metadata"]["generation"] = 4  # spec changed, controller has not observed it yet
    rolling["status"]["observedGeneration"] = 3
    kmock.seed(DEPLOYMENTS, "ml", "resnet", rolling)
    busy = await asyncio.to_thread(act.apply, make_spec(), d)
    assert busy.batching is BatchingOutcome.DEFERRED_IN_PROGRESS
    assert "observedGeneration" in busy.message
    assert kmock.read_obj(CONFIGMAPS, "ml", "resnet-batching") is None

    settled = deployment(replicas=3, max_unavailable="0%")
    kmock.seed(DEPLOYMENTS, "ml", "resnet", settled)
    ok = await asyncio.to_thread(act.apply, make_spec(), d)
    assert ok.batching is BatchingOutcome.ROLLED_OUT
    assert kmock.read_obj(CONFIGMAPS, "ml", "resnet-batching") is not None
