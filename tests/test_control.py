"""The shared controller: what the simulator scores is what the daemon runs.

The headline test replays a real trace window through the simulator's `predictive-direct`
policy, records every observation it was given and every decision it made, then feeds the same
observation stream through the daemon's `ControlLoop` (kmock's emulator behind the real
Kubernetes actuator, a manual clock, the same warm-start history) and asserts the decisions are
identical, field by field. The other tests pin the controller's own duties: the forecast horizon
follows the lead time `decide()` uses (a measured cold start longer than the spec's estimate), a
batching change that did not reach the pods is rolled back, an invalid decision holds.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from test_runtime_kubeemu import DEPLOYMENTS, EVENTS, HPAS, VersionedEmulator, api_client_for, deployment

from autoscaler.actuators.kube import KubernetesActuator
from autoscaler.control import PredictiveController
from autoscaler.core.decide import lead_time
from autoscaler.core.store import DecisionStore
from autoscaler.core.types import Decision, FloatArray, Forecast, Observation, Signal, TargetKey
from autoscaler.runtime.clock import ManualClock
from autoscaler.runtime.factory import forecaster_factory
from autoscaler.runtime.loop import ControlLoop
from autoscaler.runtime.telemetry import Telemetry
from autoscaler.sim import engine
from autoscaler.sim.policies.predictive import PUBLISHED_HPA_BEHAVIOR, PredictiveDirectPolicy, PredictivePolicy
from autoscaler.sim.scenario import load_inputs, load_scenario
from autoscaler.sim.view import ClusterView, PolicyOutput
from autoscaler.spec.parse import parse_spec
from autoscaler.spec.types import BatchingParams, Mode, ServingAutoscalerSpec, StartupSpec, TargetRef

ROOT = Path(__file__).resolve().parents[1]


def _spec(**kw: Any) -> ServingAutoscalerSpec:
    return ServingAutoscalerSpec(name="resnet", target=TargetRef("ml", "resnet", "resnet"), **kw)


@dataclass(frozen=True)
class Tick:
    observation: Observation
    decision: Decision


class Recording(PredictiveDirectPolicy):
    """The simulator's policy, unchanged, with every tick's input and output kept."""

    def __init__(self, spec: ServingAutoscalerSpec, **knobs: Any) -> None:
        super().__init__(spec, **knobs)
        self.ticks: list[Tick] = []

    def decide(self, view: ClusterView) -> PolicyOutput:
        out = super().decide(view)
        assert self.controller.last_decision is not None
        self.ticks.append(Tick(view.observation, self.controller.last_decision))
        return out


class Replayed:
    """A metric source that returns the recorded observation for the tick's time."""

    def __init__(self, ticks: Sequence[Tick], key: TargetKey) -> None:
        self.by_time = {t.observation.time_s: t.observation for t in ticks}
        self.key = key

    def observe(self, targets: Sequence[ServingAutoscalerSpec], now_s: float) -> dict[TargetKey, Observation]:
        obs = self.by_time[now_s]
        return {self.key: replace(obs, current_replicas=None, ready_replicas=None, pending_replicas=None)}


def _history_at_forecast_step(history_1s: FloatArray, step_s: int) -> FloatArray:
    """What the daemon's Prometheus history fetch returns: one mean per forecaster step (the same
    arithmetic `ForecastDriver.warm_start` applies to a finer history)."""
    usable = (len(history_1s) // step_s) * step_s
    blocks = history_1s[len(history_1s) - usable :].reshape(-1, step_s)
    with np.errstate(invalid="ignore"):
        counts = np.sum(~np.isnan(blocks), axis=1)
        out: FloatArray = np.where(counts > 0, np.nansum(blocks, axis=1) / np.maximum(counts, 1), np.nan)
    return out


@pytest.mark.kmock(cls=VersionedEmulator)
async def test_daemon_loop_and_simulator_make_identical_decisions(kmock: VersionedEmulator) -> None:
    sc = load_scenario(ROOT / "simulations" / "nasa-60s-7d.yaml")
    # 1 h around noon, with the scenario's 14 days of history for the warm start
    inp = load_inputs(sc, start_s=sc.start_s + 86_400 + 12 * 3600, duration_s=3600)
    spec = replace(inp.spec, target=replace(inp.spec.target, namespace="ml", deployment="resnet"))
    policy = Recording(spec)
    await asyncio.to_thread(engine.run, inp.trace, spec, policy, history_rps=inp.history_rps)
    ticks = policy.ticks
    assert len(ticks) == 3600 // 15
    desired = {t.decision.desired_replicas for t in ticks}
    assert len(desired) > 3, "the window must make the controller move"
    assert any(t.decision.forecast_rps is not None for t in ticks)

    key = TargetKey("ml", "resnet")
    clock = ManualClock(start_s=ticks[0].observation.time_s)
    history = _history_at_forecast_step(inp.history_rps, spec.forecaster.step_s)
    kmock.declare(HPAS, EVENTS)
    loop = ControlLoop(
        clock=clock,
        source=Replayed(ticks, key),
        actuator=KubernetesActuator(api_client_for(kmock)),
        telemetry=Telemetry(DecisionStore()),
        forecaster_factory=forecaster_factory,
        history=lambda s, now_s: history,
    )
    loop.set_specs([policy.spec])  # the spec the policy ran (its mode: direct)
    mismatches: list[str] = []
    for i, tick in enumerate(ticks):
        o = tick.observation
        assert o.current_replicas is not None and o.ready_replicas is not None
        dep = deployment(replicas=o.current_replicas, ready=o.ready_replicas)
        dep["status"]["replicas"] = o.ready_replicas + (o.pending_replicas or 0)
        kmock.seed(DEPLOYMENTS, "ml", "resnet", dep)
        if i:
            await clock.advance(o.time_s - clock.now_s())
        (result,) = await loop.tick()
        if result.decision != tick.decision:
            mismatches.append(f"tick {i} at {o.time_s:.0f}: {result.decision} != {tick.decision}")
    assert not mismatches, mismatches[:2]


class _Flat:
    """A forecaster stand-in with a flat forecast that covers exactly the horizon asked for."""

    def __init__(self, rate_rps: float, step_s: float = 60.0) -> None:
        self.rate_rps, self.step_s = rate_rps, step_s
        self.horizons: list[float] = []

    def warm_start(self, history_rps: FloatArray, end_s: float, *, step_s: float | None = None) -> None:
        pass

    def observe(self, time_s: float, rate_rps: float | None) -> None:
        pass

    def forecast(self, now_s: float, horizon_s: float) -> Forecast | None:
        self.horizons.append(horizon_s)
        h = math.ceil(horizon_s / self.step_s)
        flat = np.full(h, self.rate_rps)
        return Forecast(
            origin_s=now_s, step_s=self.step_s, mean=flat, lo=flat * 0.9, hi=flat * 1.1, level=0.95, model="flat"
        )


def _obs(now_s: float, rate_rps: float, replicas: int, cold_start_s: float | None = None) -> Observation:
    return Observation(
        time_s=now_s,
        request_rate_rps=Signal.of(rate_rps),
        burst_rate_rps=Signal.of(rate_rps),
        rejected_rps=Signal.of(0.0),
        cold_start_s=Signal.of(cold_start_s) if cold_start_s is not None else Signal.of(None),
        current_replicas=replicas,
        ready_replicas=replicas,
        pending_replicas=0,
    )


def test_forecast_horizon_covers_a_measured_cold_start_longer_than_the_spec_estimate() -> None:
    spec = _spec(startup=StartupSpec(scheduling_s=2, image_pull_s=20, model_load_s=15, warmup_s=8))
    assert spec.lead_time_s < 100
    fc = _Flat(800.0)
    ctl = PredictiveController(spec, fc)
    obs = _obs(1000.0, 800.0, 4, cold_start_s=600.0)
    d = ctl.step(obs, 1000.0)
    lead_s, note = lead_time(spec, obs, 1000.0)
    assert lead_s == d.lead_time_s == 600.0 + spec.provisioning.decision_period_s + spec.provisioning.metrics_lag_s
    assert "measured cold start 600 s" in note
    # the forecast asked for reaches past the lead time decide() provisions for (the daemon used to
    # ask for the spec's estimate: 3 steps while the reason said "over the next 645 s")
    assert fc.horizons[-1] >= lead_s
    assert ctl.last_forecast is not None and ctl.last_forecast.horizon * ctl.last_forecast.step_s >= lead_s
    assert "forecast" in " ".join(p.signal for p in d.proposals)
    # without a measured cold start the horizon follows the spec's estimate
    ctl.step(_obs(1015.0, 800.0, 4), 1015.0)
    assert fc.horizons[-1] == spec.lead_time_s + spec.provisioning.decision_period_s


def test_a_forecaster_that_raises_gives_a_reactive_decision() -> None:
    class Broken(_Flat):
        def forecast(self, now_s: float, horizon_s: float) -> Forecast | None:
            raise RuntimeError("statsmodels exploded")

    ctl = PredictiveController(_spec(), Broken(1.0))
    d = ctl.step(_obs(0.0, 500.0, 2), 0.0)
    assert d.valid and d.forecast_rps is None
    assert ctl.last_forecast_error is not None and "statsmodels exploded" in ctl.last_forecast_error


def _tuning_spec(mode: Mode) -> ServingAutoscalerSpec:
    spec = _spec(mode=mode, max_replicas=40)
    start = BatchingParams(max_batch_size=1, batch_timeout_us=0, num_batch_threads=1)
    return replace(spec, batching=replace(spec.batching, tune=True, initial=start))


def _batching_change(ctl: PredictiveController) -> Decision:
    """Ticks at a steady load until the tuner rolls out new parameters."""
    ctl.start(0.0, 10)
    for k in range(200):
        now_s = 15.0 * k
        d = ctl.step(_obs(now_s, 600.0, ctl.state.last_desired_replicas if ctl.state else 10), now_s)
        if d.batching_changed:
            return d
    raise AssertionError("the tuner never changed batching")


def test_batching_change_that_did_not_reach_the_pods_is_rolled_back() -> None:
    ctl = PredictiveController(_tuning_spec(Mode.DIRECT), None)
    before = ctl.start(0.0, 10).batching
    d = _batching_change(ctl)
    assert ctl.state is not None and ctl.state.batching == d.batching != before
    ctl.on_actuated(False)  # the rollout failed (or this replica is a standby)
    assert ctl.state.batching == before and ctl.state.last_rollout_s is None
    # a change that did reach the pods stays
    ctl2 = PredictiveController(_tuning_spec(Mode.DIRECT), None)
    d2 = _batching_change(ctl2)
    ctl2.on_actuated(True)
    assert ctl2.state is not None and ctl2.state.batching == d2.batching


def test_preview_keeps_its_batching_plan() -> None:
    ctl = PredictiveController(_tuning_spec(Mode.PREVIEW), None)
    d = _batching_change(ctl)
    ctl.on_actuated(False)
    assert ctl.state is not None and ctl.state.batching == d.batching


def test_invalid_decision_holds_the_current_count() -> None:
    ctl = PredictiveController(_spec(), None)
    ctl.step(_obs(0.0, 5000.0, 3), 0.0)
    bad = replace(_obs(15.0, 5000.0, 3), current_replicas=None)
    d = ctl.step(bad, 15.0)
    assert not d.valid
    assert PredictiveController.hold_replicas(d, 3) == 3


# --------------------------------------------------------------------------- hpa mode in the simulator


def test_published_hpa_behavior_is_the_shipped_manifests() -> None:
    doc = yaml.safe_load((ROOT / "manifests" / "examples" / "tfserving" / "hpa.yaml").read_text())
    assert doc["spec"]["metrics"][0]["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    # the manifest's behavior block, read by our own spec parser (the same HPA field names)
    spec = parse_spec(
        {
            "apiVersion": "autoscaling.tfserving.dev/v1alpha1",
            "kind": "ServingAutoscaler",
            "metadata": {"name": "x", "namespace": "serving"},
            "spec": {
                "target": {"deployment": "resnet50", "modelName": "resnet50"},
                "slo": {"latencyMs": 100},
                "maxReplicas": 40,
                "behavior": doc["spec"]["behavior"],
            },
        },
        "hpa.yaml",
    )
    assert spec.behavior == PUBLISHED_HPA_BEHAVIOR


def _window(hours: float = 3.0) -> tuple[Any, ServingAutoscalerSpec, FloatArray]:
    sc = load_scenario(ROOT / "simulations" / "nasa-60s-7d.yaml")
    inp = load_inputs(sc, start_s=sc.start_s + 86_400 + 10 * 3600, duration_s=int(hours * 3600))
    return inp.trace, inp.spec, inp.history_rps


def test_hpa_mode_reaches_the_deployment_through_the_hpa_copy() -> None:
    trace, spec, history = _window()
    hpa = engine.run(trace, spec, "predictive", history_rps=history)
    direct = engine.run(trace, spec, "predictive-direct", history_rps=history)
    assert hpa.summary["mode"] == "hpa" and direct.summary["mode"] == "direct"
    assert engine.run(trace, spec, "hpa-rps").summary["mode"] is None
    # the same controller, different paths: the HPA's tolerance and sync make the counts differ
    d_h, d_d = np.asarray(hpa.timeline.desired), np.asarray(direct.timeline.desired)
    assert not np.array_equal(d_h, d_d)
    # the HPA moves the Deployment only on its 15 s syncs, 5 s after our ticks
    changes = np.flatnonzero(np.diff(d_h)) + 1 - hpa.timeline.preroll_s
    assert len(changes) > 0 and all((c - 5) % 15 == 0 for c in changes if c > 0)


def test_hpa_tolerance_holds_a_change_within_ten_percent() -> None:
    """Our desired count 21 against 20 running pods: within the HPA's 10 % tolerance, so nothing moves."""
    spec = _spec(max_replicas=40)
    pol = PredictivePolicy(spec)
    pol.published = 21
    view = ClusterView(
        now_s=20.0,
        spec_replicas=20,
        status_replicas=20,
        ready_replicas=20,
        pending_replicas=0,
        pods=(),
        total_rps=None,
        observation=_obs(20.0, 0.0, 20),
        batching=spec.batching.initial,
    )
    pol._t0_s = 0.0
    desired, reason = pol._hpa_sync(view)
    assert desired == 20 and "external metric 21" in reason
    pol.published = 23  # 15 % above: outside the tolerance, the HPA scales to ceil(23 / 1)
    desired, _ = pol._hpa_sync(view)
    assert desired == 23


def test_hpa_mode_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="hpa_lag_s"):
        PredictivePolicy(_spec(), hpa_lag_s=15)
    with pytest.raises(ValueError, match=r"predictive-direct.surge_share: expected a share in \(0, 10\] \(got 0\)"):
        PredictiveDirectPolicy(_spec(), surge_share=0)
    assert PredictiveDirectPolicy(_spec()).mode is Mode.DIRECT
    assert PredictivePolicy(_spec(mode=Mode.DIRECT)).mode is Mode.DIRECT
    assert PredictivePolicy(_spec()).mode is Mode.HPA
