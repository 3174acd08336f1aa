"""The daemon's loop on a multi-model server: emulated two-model pods, the direct scrape, kmock.

One control loop tick over real parts: two emulated replicas each serving two models (one device),
the ScrapeSource reading their pages, the controller mixing the capacity at the observed shares,
and the Kubernetes actuator patching the Deployment in kmock's API server.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest
from test_runtime_kubeemu import DEPLOYMENTS, EVENTS, HPAS, VersionedEmulator, api_client_for, deployment

from autoscaler.actuators.kube import KubernetesActuator
from autoscaler.core.store import DecisionStore
from autoscaler.core.types import TargetKey
from autoscaler.emulator import EmulatorReplica, ReplicaConfig, poisson_arrivals, replay
from autoscaler.runtime.clock import ManualClock
from autoscaler.runtime.loop import ControlLoop
from autoscaler.runtime.telemetry import Telemetry
from autoscaler.sources.scrape import ScrapeSource
from autoscaler.spec import load_spec
from autoscaler.spec.types import Mode, Outputs, ServedModel

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "multimodel-t4.yaml"
KEY = TargetKey("ml", "resnet")


async def test_one_tick_scales_a_two_model_deployment_for_its_observed_mix(
    kmock: VersionedEmulator, tmp_path: Path
) -> None:
    base = load_spec(EXAMPLE)
    spec = replace(
        base,
        target=replace(base.target, namespace="ml", deployment="resnet"),
        mode=Mode.DIRECT,
        outputs=Outputs(decisions_path=str(tmp_path / "decisions.jsonl")),
    )
    amp = spec.target.models[1].profile
    cfg = ReplicaConfig(
        model_name="resnet-fp32",
        profile=spec.profile,
        other_models=(ServedModel("resnet-amp", profile=amp),),
        batching=spec.batching.initial,
        namespace="ml",
        time_scale=20.0,  # 20x faster than a T4: the test's load stands for 20x more
    )
    reps = [await EmulatorReplica(cfg).start() for _ in range(2)]
    src = ScrapeSource({KEY: {f"resnet-{i}": r.url for i, r in enumerate(reps)}}, rate_window_s=60.0)
    kmock.declare(HPAS, EVENTS)
    kmock.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=1))
    clock = ManualClock()
    actuator = KubernetesActuator(api_client_for(kmock))
    loop = ControlLoop(clock=clock, source=src, actuator=actuator, telemetry=Telemetry(DecisionStore()))
    loop.set_specs([spec])
    try:
        await asyncio.gather(*(r.wait_ready(2) for r in reps))
        await loop.tick()  # the first scrape: no rates yet
        ev = asyncio.get_running_loop()
        t0 = ev.time()
        urls = [r.url for r in reps]
        await asyncio.gather(
            replay(poisson_arrivals(50.0, 2.0, seed=1), urls, model="resnet-fp32"),
            replay(poisson_arrivals(150.0, 2.0, seed=2), urls, model="resnet-amp"),
        )
        await clock.advance(ev.time() - t0)  # the scrape clock is the loop's: rates per elapsed second
        (r,) = await loop.tick()
    finally:
        for rep in reps:
            await rep.stop()
        src.close()
    d = r.decision
    assert d.valid and d.observed_rps is not None and d.observed_rps > 100.0
    # the mix is the observed one (25 % FP32 / 75 % AMP, to the 2 % step), not the spec's 60 / 40
    (note,) = [n for n in d.notes if n.startswith("capacity per pod of the model mix:")]
    fp32 = int(note.split(": ")[1].split("%")[0])
    assert 17 <= fp32 <= 33, note
    doc = json.loads((tmp_path / "decisions.jsonl").read_text().splitlines()[-1])
    assert doc["target"] == "ml/resnet" and doc["desired_replicas"] == d.desired_replicas
    dep = kmock.read_obj(DEPLOYMENTS, "ml", "resnet")
    assert dep is not None and dep["spec"]["replicas"] == d.desired_replicas
