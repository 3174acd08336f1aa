"""The control loop and the daemon shell: decisions published, recorded, served and shut down cleanly.

Real parts: kmock's Kubernetes emulator over HTTP with the official client behind the actuator,
the telemetry server on 127.0.0.1 read with aiohttp, decision records on disk, JSON log lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from test_runtime_kubeemu import DEPLOYMENTS, EVENTS, HPAS, LEASES, VersionedEmulator, api_client_for, deployment

from autoscaler.actuators.kube import KubernetesActuator
from autoscaler.core.store import DecisionStore
from autoscaler.core.types import FloatArray, Observation, Signal, SignalStatus, TargetKey
from autoscaler.runtime.app import Daemon, Servers
from autoscaler.runtime.clock import ManualClock
from autoscaler.runtime.factory import forecaster_factory
from autoscaler.runtime.leader import LeaderConfig, LeaseElector
from autoscaler.runtime.logs import JsonFormatter
from autoscaler.runtime.loop import ControlLoop
from autoscaler.runtime.telemetry import Telemetry, serve
from autoscaler.spec.types import SLO, ForecasterSpec, Mode, Outputs, Provisioning, ServingAutoscalerSpec, TargetRef

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)
KEY = TargetKey("ml", "resnet")


class Load:
    def __init__(self, rate_rps: float | None) -> None:
        self.rate_rps = rate_rps
        self.fail = False

    def observe(self, targets: Sequence[ServingAutoscalerSpec], now_s: float) -> dict[TargetKey, Observation]:
        if self.fail:
            raise ConnectionError("prometheus down")
        sig = Signal.of(self.rate_rps)
        return {
            TargetKey(s.target.namespace, s.target.deployment): Observation(
                time_s=now_s, request_rate_rps=sig, burst_rate_rps=sig, rejected_rps=Signal.of(0.0)
            )
            for s in targets
        }


def make_spec(tmp_path: Path, mode: Mode = Mode.DIRECT) -> ServingAutoscalerSpec:
    return ServingAutoscalerSpec(
        name="resnet",
        target=TargetRef("ml", "resnet", "resnet"),
        mode=mode,
        max_replicas=20,
        slo=SLO(latency_ms=100),
        provisioning=Provisioning(decision_period_s=5.0),
        outputs=Outputs(decisions_path=str(tmp_path / "decisions.jsonl")),
    )


def setup(kmock: VersionedEmulator, load: Load, tmp_path: Path, mode: Mode = Mode.DIRECT) -> ControlLoop:
    kmock.declare(HPAS, EVENTS)
    kmock.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=1))
    loop = ControlLoop(
        clock=ManualClock(),
        source=load,
        actuator=KubernetesActuator(api_client_for(kmock)),
        telemetry=Telemetry(DecisionStore()),
    )
    loop.set_specs([make_spec(tmp_path, mode)])
    return loop


async def test_tick_publishes_records_logs_and_serves_metrics(
    kmock: VersionedEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = setup(kmock, Load(9000.0), tmp_path)
    runner, port = await serve(loop.telemetry, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 503
            caplog.set_level(logging.INFO, logger="autoscaler.runtime.loop")
            (r,) = await loop.tick()
            assert r.decision.valid and r.decision.desired_replicas > 1
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
    finally:
        await runner.cleanup()
    want = r.decision.desired_replicas
    assert (
        f'tfserving_autoscaler_desired_replicas{{deployment="resnet",model="resnet",namespace="ml"}} {want:.1f}' in text
    )
    assert (
        'tfserving_autoscaler_observed_requests_per_second{deployment="resnet",model="resnet",namespace="ml"} 9000.0'
        in text
    )
    assert "tfserving_autoscaler_decision_info{" in text and f'binding="{r.decision.binding.value}"' in text
    # the Deployment's pod-template labels reach the store, so the adapter can match the HPA's
    # Pods-metric labelSelector (the scale target's selector) against this target's pods
    rec = loop.store.get(TargetKey("ml", "resnet"))
    assert rec is not None and rec.labels.get("app") == "resnet" and rec.labels["model"] == "resnet"
    labels = '{deployment="resnet",model="resnet",namespace="ml"}'
    assert f"tfserving_autoscaler_slo_latency_milliseconds{labels} {100.0:.1f}" in text
    assert f"tfserving_autoscaler_slo_attainment_goal_ratio{labels} {0.999}" in text
    # the info metric's reason label is a template: numbers replaced, so its cardinality is bounded
    (info,) = [ln for ln in text.splitlines() if ln.startswith("tfserving_autoscaler_decision_info{")]
    reason = info.split('reason="', 1)[1].split('"', 1)[0]
    assert reason and not any(ch.isdigit() for ch in reason)
    assert "tfserving_autoscaler_decision_duration_seconds_count 1.0" in text
    assert (
        'tfserving_autoscaler_actuations_total{deployment="resnet",kind="scale",namespace="ml",result="scaled"} 1.0'
        in text
    )
    dep = kmock.read_obj(DEPLOYMENTS, "ml", "resnet")
    assert dep is not None and dep["spec"]["replicas"] == want
    (line,) = (tmp_path / "decisions.jsonl").read_text().splitlines()
    doc = json.loads(line)
    assert doc["target"] == "ml/resnet" and doc["desired_replicas"] == want
    assert doc["actuation"]["scale"] == "scaled" and doc["leader"] is True
    (rec,) = [x for x in caplog.records if x.getMessage() == "decision"]
    logged = json.loads(JsonFormatter().format(rec))
    assert logged["target"] == "ml/resnet" and logged["decision"]["desired_replicas"] == want


async def test_source_failure_holds_and_never_scales_down(kmock: VersionedEmulator, tmp_path: Path) -> None:
    load = Load(9000.0)
    loop = setup(kmock, load, tmp_path)
    (first,) = await loop.tick()
    scaled_to = first.decision.desired_replicas
    load.fail = True
    clock = loop.clock
    assert isinstance(clock, ManualClock)
    for _ in range(5):
        await clock.advance(60)
        (r,) = await loop.tick()
        assert r.decision.desired_replicas >= scaled_to
    dep = kmock.read_obj(DEPLOYMENTS, "ml", "resnet")
    assert dep is not None and dep["spec"]["replicas"] == scaled_to
    rec = loop.store.get(KEY)
    assert rec is not None and rec.decision is not None and rec.decision.desired_replicas == scaled_to
    text = loop.telemetry.render().decode()
    status = SignalStatus.ERROR.value
    assert f'signal="request_rate_rps",status="{status}"}} 5.0' in text


async def test_hpa_mode_publishes_without_patching(kmock: VersionedEmulator, tmp_path: Path) -> None:
    loop = setup(kmock, Load(9000.0), tmp_path, Mode.HPA)
    (r,) = await loop.tick()
    assert r.decision.desired_replicas > 1
    rec = loop.store.get(KEY)
    assert rec is not None and rec.decision == r.decision
    assert not [q for q in kmock.seen if q.method == "PATCH"]


async def test_daemon_runs_root_tasks_and_releases_the_lease_on_stop(kmock: VersionedEmulator, tmp_path: Path) -> None:
    loop = setup(kmock, Load(3000.0), tmp_path)
    clock = loop.clock
    assert isinstance(clock, ManualClock)
    elector = LeaseElector(
        api_client_for(kmock),
        LeaderConfig(identity="me", namespace="ops", lease_duration_s=15, renew_deadline_s=10, retry_period_s=2),
        clock,
    )
    loop.is_leader = elector.is_leader
    daemon = Daemon(clock=clock, loop=loop, watcher=None, elector=elector, servers=Servers("127.0.0.1", 0))
    task = asyncio.create_task(daemon.run())
    for _ in range(200):
        if elector.is_leader() and loop.stats.ticks >= 1:
            break
        await asyncio.sleep(0.02)
    assert elector.is_leader() and loop.stats.ticks >= 1
    assert daemon.metrics_url is not None
    daemon.stop.set()  # what SIGTERM does
    await asyncio.wait_for(task, 10)
    lease = kmock.read_obj(LEASES, "ops", "tfserving-autoscaler")
    assert lease is not None and not lease["spec"].get("holderIdentity")


async def test_history_warm_start_gives_a_forecast_on_the_first_tick(kmock: VersionedEmulator, tmp_path: Path) -> None:
    kmock.declare(HPAS, EVENTS)
    kmock.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=1))
    asked: list[tuple[str, float]] = []

    def history(spec: ServingAutoscalerSpec, now_s: float) -> FloatArray:
        asked.append((spec.name, now_s))
        t = np.arange(240, dtype=np.float64)
        return 6000.0 + 3000.0 * np.sin(2 * np.pi * t / 60.0)

    clock = ManualClock()
    loop = ControlLoop(
        clock=clock,
        source=Load(6000.0),
        actuator=KubernetesActuator(api_client_for(kmock)),
        telemetry=Telemetry(DecisionStore()),
        forecaster_factory=forecaster_factory,
        history=history,
    )
    spec = make_spec(tmp_path)
    loop.set_specs([replace(spec, forecaster=ForecasterSpec(model="holt", season_length_s=3600, step_s=60))])
    (r,) = await loop.tick()
    assert asked == [("resnet", clock.now_s())]
    assert r.decision.forecast_model is not None and r.decision.forecast_rps is not None
    await clock.advance(60)  # one forecaster step later the first forecast step can be scored
    await loop.tick()
    assert len(asked) == 1  # once per target, not per tick
    text = loop.telemetry.render().decode()
    ape = [ln for ln in text.splitlines() if ln.startswith("tfserving_autoscaler_forecast_absolute_percentage_error{")]
    assert len(ape) == 1 and 0.0 <= float(ape[0].split()[-1]) < 1.0
    assert (
        'tfserving_autoscaler_forecast_upper_requests_per_second{deployment="resnet",model="resnet",namespace="ml"}'
        in text
    )
