"""`mode: preview` computes and records decisions but publishes nothing an HPA consumes.

A preview target's decision is in the decision log and the loop's results, but the metrics adapter
answers 404, the KEDA scaler NOT_FOUND, and /metrics carries no desired-replicas sample for it:
an HPA (or a Prometheus adapter) already pointed at those must not act on a preview. The loop runs
on kmock's emulator, exactly as in the daemon; the readers are the real adapter pieces.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from test_runtime_kubeemu import VersionedEmulator
from test_runtime_loop import Load, setup

from autoscaler.adapter.keda_scaler import ExternalScalerService, ScalerError
from autoscaler.adapter.provider import DESIRED_REPLICAS, DecisionStoreProvider, MetricNotFoundError
from autoscaler.adapter.selectors import parse_selector
from autoscaler.core.types import TargetKey
from autoscaler.spec.types import Mode

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)
KEY = TargetKey("ml", "resnet")


@pytest.mark.parametrize("mode", [Mode.PREVIEW, Mode.HPA])
async def test_preview_decisions_reach_no_hpa_facing_reader(
    kmock: VersionedEmulator, tmp_path: Path, mode: Mode
) -> None:
    loop = setup(kmock, Load(9000.0), tmp_path, mode)
    (r,) = await loop.tick()
    assert r.decision.valid and r.decision.desired_replicas > 1  # computed either way
    now_s = loop.clock.now_s
    provider = DecisionStoreProvider(loop.store, now_s=now_s)
    keda = ExternalScalerService(loop.store, now_s=now_s)
    gauge = 'tfserving_autoscaler_desired_replicas{deployment="resnet",model="resnet",namespace="ml"}'
    if mode is Mode.HPA:
        (value,) = provider.get_external_metric("ml", parse_selector(None), DESIRED_REPLICAS)
        assert value.value == r.decision.desired_replicas
        assert keda.decision(KEY).desired_replicas == r.decision.desired_replicas
        assert gauge in loop.telemetry.render().decode()
        return
    with pytest.raises(MetricNotFoundError):
        provider.get_external_metric("ml", parse_selector(None), DESIRED_REPLICAS)
    with pytest.raises(ScalerError) as info:
        keda.decision(KEY)
    assert info.value.code is grpc.StatusCode.NOT_FOUND and "preview" in info.value.message
    assert gauge not in loop.telemetry.render().decode()
    assert (tmp_path / "decisions.jsonl").read_text().count("\n") == 1  # still recorded
    assert "nothing published" in r.actuation.message  # and it says so
