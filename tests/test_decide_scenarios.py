"""Scenario tests for core.decide: a hand-walked clock, Observations and Forecasts built directly.

Each scenario is one of docs/design.md's "Decision rules that make it safe" told as a short story
(burst, metrics outage, pending pods, forecast-only drop, panic, stale data, unknown replicas),
asserting the replica count, the binding constraint and the reason a user would read in
`kubectl describe`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from autoscaler.core.capacity import CapacityModel
from autoscaler.core.decide import PANIC_STABLE_WINDOW_S, State, decide, panic_stable_window_s
from autoscaler.core.store import DecisionStore
from autoscaler.core.types import (
    Binding,
    Decision,
    Forecast,
    Observation,
    Signal,
    SignalStatus,
    TargetKey,
)
from autoscaler.spec.types import Provisioning, ServingAutoscalerSpec, TargetRef

SPEC = ServingAutoscalerSpec(
    name="resnet",
    target=TargetRef("ml", "resnet", "resnet"),
    min_replicas=1,
    max_replicas=20,
    provisioning=Provisioning(lead_time_s=90.0),
)
CAPACITY_RPS = CapacityModel(SPEC.profile).capacity_at_slo_rps(SPEC.batching.initial, SPEC.slo)
USABLE_RPS = CAPACITY_RPS * (1.0 - SPEC.provisioning.headroom)
TICK_S = 15.0


def need(replicas: float) -> float:
    """A load (rps) that needs exactly `replicas` replicas (for integer replicas)."""
    return (replicas - 0.5) * USABLE_RPS


def obs(
    t: float,
    rps: float | None,
    *,
    current: int | None,
    ready: int | None = None,
    pending: int = 0,
    burst: float | None = None,
    status: SignalStatus = SignalStatus.MISSING,
) -> Observation:
    rate = Signal.of(rps) if rps is not None else Signal.missing(status, "no series")
    return Observation(
        time_s=t,
        request_rate_rps=rate,
        burst_rate_rps=Signal.of(burst) if burst is not None else Signal.missing(SignalStatus.MISSING, "-"),
        current_replicas=current,
        ready_replicas=ready if ready is not None else current,
        pending_replicas=pending,
    )


def flat_forecast(t: float, rps: float, *, steps: int = 20, step_s: float = 60.0) -> Forecast:
    mean = np.full(steps, rps)
    return Forecast(t, step_s, mean, mean.copy(), mean.copy(), 0.95, "test-model")


class Walker:
    """Walks the clock: feeds decide() and applies each decision like `direct` mode would."""

    def __init__(self, replicas: int, spec: ServingAutoscalerSpec = SPEC) -> None:
        self.spec = spec
        self.t = 0.0
        self.state = State.initial(spec, 0.0, replicas)
        self.replicas = replicas
        self.log: list[Decision] = []

    def step(
        self,
        rps: float | None,
        *,
        forecast_rps: float | None = None,
        pending: int = 0,
        burst: float | None = None,
        status: SignalStatus = SignalStatus.MISSING,
        dt: float = TICK_S,
    ) -> Decision:
        self.t += dt
        fc = flat_forecast(self.t, forecast_rps) if forecast_rps is not None else None
        o = obs(self.t, rps, current=self.replicas, pending=pending, burst=burst, status=status)
        o = dataclasses.replace(o, ready_replicas=self.replicas - pending)
        d, self.state = decide(self.spec, self.state, o, fc, now_s=self.t)
        assert d.valid
        self.replicas = d.desired_replicas
        self.log.append(d)
        return d


def test_load_burst_scales_up_holds_then_scales_down_only_after_stabilization() -> None:
    w = Walker(2)
    d = w.step(need(2))
    assert (d.desired_replicas, d.binding) == (2, Binding.NONE)
    assert d.reason.startswith("hold at 2: observed load")
    d = w.step(need(5))
    assert d.desired_replicas == 5
    assert d.reason.startswith("scale up 2→5: observed load")
    assert "no forecast: reactive only" in d.reason
    last_high_t = w.t
    for _ in range(4):
        assert w.step(need(5)).desired_replicas == 5
        last_high_t = w.t
    # Load drops: the 300 s scale-down stabilization window keeps 5 until the last 5 ages out.
    held = []
    while w.t + TICK_S < last_high_t + 300.0:  # a recommendation exactly 300 s old has expired
        d = w.step(need(2))
        held.append(d)
    assert held and all(h.desired_replicas == 5 for h in held)
    assert all(h.binding is Binding.STABILIZATION for h in held)
    assert "300 s scale-down stabilization window" in held[-1].reason
    d = w.step(need(2))
    assert d.desired_replicas == 2
    assert d.reason.startswith("scale down 5→2")


def test_metrics_vanish_mid_burst_hold_never_down() -> None:
    w = Walker(2)
    w.step(need(2))
    assert w.step(need(6)).desired_replicas == 6
    for status in [SignalStatus.ERROR, SignalStatus.MISSING, SignalStatus.NAN] * 15:
        d = w.step(None, status=status)
        assert d.valid and d.desired_replicas == 6
        assert d.binding is Binding.HOLD_MISSING_DATA
        assert "observed load unavailable" in d.reason and status.value in d.reason
    # Data comes back low: the holds count as recommendations, so no scale-down for 300 s.
    d = w.step(need(1))
    assert d.desired_replicas == 6 and d.binding is Binding.STABILIZATION


def test_missing_data_forecast_may_raise_but_never_lower() -> None:
    w = Walker(4)
    w.step(need(4))
    d = w.step(None, forecast_rps=need(1))
    assert d.desired_replicas == 4 and d.binding is Binding.HOLD_MISSING_DATA
    d = w.step(None, forecast_rps=need(7))
    assert d.desired_replicas == 7 and d.binding is Binding.HOLD_MISSING_DATA
    assert "raises it" in d.reason and d.forecast_rps is not None


def test_pending_pods_no_cascade_unless_observed_load_exceeds_last_desired() -> None:
    w = Walker(2)
    d = w.step(need(2), forecast_rps=need(6))
    assert d.desired_replicas == 6
    # The forecast rises again while the 4 new pods are still starting: no cascade.
    d = w.step(need(3), forecast_rps=need(9), pending=4)
    assert (d.desired_replicas, d.binding) == (6, Binding.PENDING_PODS)
    assert "still pending" in d.reason and "no cascade" in d.reason
    # The observed load itself now exceeds what 6 replicas cover: scale up despite pending pods.
    d = w.step(need(7), forecast_rps=need(9), pending=4)
    assert d.desired_replicas == 9
    # Pods ready: the forecast alone may raise again.
    d = w.step(need(3), forecast_rps=need(11), pending=0)
    assert d.desired_replicas == 11


def test_forecast_only_drop_never_scales_in_until_observed_agrees() -> None:
    w = Walker(5)
    w.step(need(5), forecast_rps=need(5))
    for _ in range(40):  # 600 s: far beyond the stabilization window
        d = w.step(need(5), forecast_rps=need(1))
        assert d.desired_replicas == 5
        assert d.binding is Binding.SCALE_IN_GUARD
        assert "forecast alone would scale in to 1" in d.reason
    # Observed agrees: scale-in after the stabilization window, down to what the observed load needs.
    downs = [w.step(need(2), forecast_rps=need(1)) for _ in range(22)]
    assert downs[0].desired_replicas == 5
    assert downs[-1].desired_replicas == 2


def test_scale_in_tolerance_hysteresis() -> None:
    """Observed load just under 4 replicas' capacity does not scale 5 -> 4 (10 % tolerance)."""
    w = Walker(5)
    for _ in range(25):
        d = w.step(3.95 * USABLE_RPS)
    assert d.desired_replicas == 5 and d.binding is Binding.SCALE_IN_GUARD
    for _ in range(25):
        d = w.step(3.5 * USABLE_RPS)
    assert d.desired_replicas == 4


def test_panic_entry_hold_and_exit() -> None:
    w = Walker(2)
    w.step(need(2), burst=need(2))
    burst = 3.0 * 2 * USABLE_RPS  # 3x the ready pods' capacity > panic_threshold 2
    d = w.step(need(2), burst=burst)
    assert d.panic and d.binding is Binding.PANIC
    assert d.desired_replicas == 6
    assert any(n.startswith("panic: entered") for n in d.notes)
    assert [p.signal for p in d.proposals] == ["observed", "burst"]
    entered_t = w.t
    # Burst over: still panicking for the stable window, never scaling down.
    while w.t + TICK_S < entered_t + PANIC_STABLE_WINDOW_S:
        d = w.step(need(1), burst=need(1))
        assert d.panic and d.desired_replicas == 6
    d = w.step(need(1), burst=need(1))
    assert not d.panic
    assert any(n.startswith("panic: exited") for n in d.notes)
    # After panic, scale-down still waits for the stabilization window.
    assert d.desired_replicas == 6 and d.binding is Binding.STABILIZATION


def test_panic_rising_burst_keeps_max() -> None:
    w = Walker(2)
    d = w.step(need(2), burst=5 * USABLE_RPS)
    assert d.panic and d.desired_replicas == 5
    d = w.step(need(2), burst=8 * USABLE_RPS)  # under the threshold for 5 ready pods, still in panic
    assert d.panic and d.desired_replicas >= 8
    d = w.step(need(2), burst=3 * USABLE_RPS)
    assert d.panic and d.desired_replicas >= 8


def test_stale_observation_holds() -> None:
    state = State.initial(SPEC, 0.0, 4)
    stale = obs(0.0, need(1), current=4)
    d, _ = decide(SPEC, state, stale, None, now_s=SPEC.provisioning.stale_after_s + 1.0)
    assert d.valid and d.desired_replicas == 4
    assert d.binding is Binding.HOLD_MISSING_DATA
    assert "stale" in d.reason


def test_unknown_current_replicas_is_invalid_and_store_keeps_last_valid() -> None:
    store = DecisionStore()
    key = TargetKey("ml", "resnet")
    state = State.initial(SPEC, 0.0, 3)
    d1, state = decide(SPEC, state, obs(15.0, need(3), current=3), None, now_s=15.0)
    store.put_decision(key, "resnet", d1)
    d2, state2 = decide(SPEC, state, obs(30.0, need(9), current=None), None, now_s=30.0)
    assert not d2.valid
    assert d2.desired_replicas == d1.desired_replicas == 3
    assert "current replica count unknown" in d2.reason
    assert state2.last_valid == d1 and state2.hpa == state.hpa and state2.invalid_streak == 1
    rec = store.put_decision(key, "resnet", d2)
    assert rec.decision == d1 and rec.last_attempt == d2
    d3, _ = decide(SPEC, state2, None, None, now_s=45.0)
    assert not d3.valid and d3.desired_replicas == 3


def test_forecast_provenance_and_reason_text() -> None:
    spec = dataclasses.replace(SPEC, provisioning=Provisioning(lead_time_s=95.0))
    state = State.initial(spec, 0.0, 3)
    mean = np.array([need(2), need(5), need(4), need(9)])
    fc = Forecast(0.0, 60.0, mean, mean * 0.9, mean * 1.1, 0.9, "holt-winters")
    d, _ = decide(spec, state, obs(0.0, need(3), current=3), fc, now_s=0.0)
    # Peak over [0, 95 s] covers steps 0 and 1 only; step 3 (need 9) is beyond the lead time.
    # level 0.9 -> the p95 quantile is exactly `hi`: 1.1 × need(5) = 4.95 replicas' worth -> 5.
    assert d.desired_replicas == 5
    assert d.forecast_rps is not None and abs(d.forecast_rps - need(5) * 1.1) < 1e-6
    assert d.forecast_model == "holt-winters" and d.lead_time_s == 95.0
    assert d.forecast_lo_rps is not None and d.forecast_hi_rps is not None
    assert abs(d.forecast_lo_rps - need(5) * 0.9) < 1e-6  # lo/hi at the peak's step
    assert abs(d.forecast_hi_rps - need(5) * 1.1) < 1e-6
    assert d.reason.startswith("scale up 3→5: forecast p95 ")
    assert "over next 95 s" in d.reason and "p99 ≤ 100 ms" in d.reason
    assert [p.signal for p in d.proposals] == ["forecast", "observed"]


def test_auto_lead_time_uses_measured_cold_start() -> None:
    spec = dataclasses.replace(SPEC, provisioning=Provisioning(lead_time_s=None))
    o = dataclasses.replace(obs(0.0, need(2), current=2), cold_start_s=Signal.of(100.0))
    d, _ = decide(spec, State.initial(spec, 0.0, 2), o, None, now_s=0.0)
    p = spec.provisioning
    assert d.lead_time_s == 100.0 + p.decision_period_s + p.metrics_lag_s
    d, _ = decide(spec, State.initial(spec, 0.0, 2), obs(0.0, need(2), current=2), None, now_s=0.0)
    assert d.lead_time_s == spec.lead_time_s


def test_max_and_min_bindings() -> None:
    d, _ = decide(SPEC, State.initial(SPEC, 0.0, 20), obs(0.0, need(50), current=20), None, now_s=0.0)
    assert (d.desired_replicas, d.binding) == (20, Binding.MAX)
    spec = dataclasses.replace(SPEC, min_replicas=3)
    d, _ = decide(spec, State.initial(spec, 0.0, 3), obs(0.0, 0.0, current=3), None, now_s=0.0)
    assert (d.desired_replicas, d.binding) == (3, Binding.MIN)


def test_scale_up_rate_limit_binds() -> None:
    d, _ = decide(SPEC, State.initial(SPEC, 0.0, 2), obs(0.0, need(15), current=2), None, now_s=0.0)
    assert (d.desired_replicas, d.binding) == (6, Binding.SCALE_UP_LIMIT)  # max(+4 pods, +100 %)


def test_restart_does_not_skip_the_scale_down_window() -> None:
    """A fresh State remembers the current count (HPA recordInitialRecommendation)."""
    w = Walker(6)
    early = [w.step(need(1)) for _ in range(19)]  # 285 s
    assert all(d.desired_replicas == 6 for d in early)
    assert early[0].binding is Binding.STABILIZATION
    assert w.step(need(1)).desired_replicas == 1  # 300 s after the initial recommendation


def test_calibration_from_observed_latency_lowers_capacity_and_raises_replicas() -> None:
    """TF Serving reports p99 near the SLO at a load the model finds easy: capacity per replica
    shrinks below the uncalibrated model's, and replicas grow beyond what the model alone needs."""
    state = State.initial(SPEC, 0.0, 4)
    for i in range(12):
        t = 15.0 * i
        o = dataclasses.replace(obs(t, need(3), current=4), latency_ms=Signal.of(95.0))
        d, state = decide(SPEC, state, o, None, now_s=t, target=TargetKey("other", "name"))
    assert d.target == TargetKey("other", "name")
    # the first tick has no previous count; the next 3 (metrics lag 30 s + one 15 s period) let the window settle
    assert state.calibration.samples == 8 and state.calibration.service_scale > 1.0
    assert d.capacity_rps is not None and d.capacity_rps < 0.9 * CAPACITY_RPS
    assert d.desired_replicas > 3


def test_panic_hold_is_six_burst_windows() -> None:
    """The panic (never scale down) hold is derived from the burst window: 6 × 2 s = 12 s here,
    60 s for the default 10 s window."""
    assert panic_stable_window_s(SPEC) == PANIC_STABLE_WINDOW_S == 60.0
    spec = dataclasses.replace(
        SPEC, provisioning=dataclasses.replace(SPEC.provisioning, burst_window_s=2.0, decision_period_s=1.0)
    )
    assert panic_stable_window_s(spec) == 12.0
    w = Walker(2, spec)
    w.step(need(2), burst=need(2), dt=1.0)
    d = w.step(need(2), burst=3.0 * 2 * USABLE_RPS, dt=1.0)
    assert d.panic
    entered_t = w.t
    while w.t + 1.0 < entered_t + 12.0:
        assert w.step(need(1), burst=need(1), dt=1.0).panic
    d = w.step(need(1), burst=need(1), dt=1.0)
    assert not d.panic and any("panic: exited (12 s" in n for n in d.notes)
