"""ServingAutoscaler `.status` written through the status subresource (kmock emulator, real HTTP)."""

from __future__ import annotations

import asyncio

import kmock
import pytest
from test_runtime_kubeemu import VersionedEmulator, api_client_for

from autoscaler.actuators.status import CrStatusWriter
from autoscaler.core.types import Binding, Decision, TargetKey
from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec, TargetRef

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)
CRS = kmock.resource(group="autoscaling.tfserving.dev", version="v1alpha1", plural="servingautoscalers")
SPEC = ServingAutoscalerSpec(name="resnet50", target=TargetRef("serving", "resnet50", "resnet"))
FILE_SPEC = ServingAutoscalerSpec(name="from-file", target=TargetRef("serving", "bert", "bert"))


def decision(desired: int, binding: Binding = Binding.NONE, t: float = 1_800_000_000.0) -> Decision:
    return Decision(
        target=TargetKey("serving", "resnet50"),
        time_s=t,
        desired_replicas=desired,
        current_replicas=2,
        valid=True,
        reason=f"scale up 2→{desired}: forecast needs {desired} replicas",
        binding=binding,
        batching=BatchingParams(),
        observed_rps=120.0,
        capacity_rps=60.0,
    )


async def test_status_is_written_on_change_only_and_files_are_skipped(kmock: VersionedEmulator) -> None:
    kmock.seed(
        CRS,
        "serving",
        "resnet50",
        {"apiVersion": "autoscaling.tfserving.dev/v1alpha1", "kind": "ServingAutoscaler", "spec": {"target": {}}},
    )
    writer = CrStatusWriter(api_client_for(kmock))
    assert await asyncio.to_thread(writer.write, SPEC, decision(5)) is True
    cr = kmock.read_obj(CRS, "serving", "resnet50")
    assert cr is not None
    st = cr["status"]
    assert (st["desiredReplicas"], st["currentReplicas"], st["binding"]) == (5, 2, "none")
    assert st["reason"].startswith("scale up 2→5") and st["lastDecisionTime"] == "2027-01-15T08:00:00Z"
    assert cr["spec"] == {"target": {}}  # the status subresource does not touch the spec
    # same shown values: no second write; a change is written
    assert await asyncio.to_thread(writer.write, SPEC, decision(5, t=1_800_000_015.0)) is False
    assert await asyncio.to_thread(writer.write, SPEC, decision(7, Binding.SCALE_UP_LIMIT)) is True
    cr = kmock.read_obj(CRS, "serving", "resnet50")
    assert cr is not None and cr["status"]["desiredReplicas"] == 7 and cr["status"]["binding"] == "scale-up-limit"
    # a spec loaded from a file has no custom resource: 404 once, then no more requests
    before = len(kmock.seen)
    assert await asyncio.to_thread(writer.write, FILE_SPEC, decision(3)) is False
    assert await asyncio.to_thread(writer.write, FILE_SPEC, decision(4)) is False
    assert len(kmock.seen) == before + 1
