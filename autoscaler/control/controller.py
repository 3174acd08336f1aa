"""`PredictiveController`: observe → forecast → decide → update state, for one target.

Owned here, below both shells, because the daemon and the simulator must run the same steps: a
copy in each drifted (the forecast horizon, the rollback of a batching change, the hold on an
invalid decision). The controller keeps the target's frozen `core.state.State` and its forecaster;
it reads no clock (time is an argument) and does no I/O, so the daemon may run `forecast()` in a
worker thread and time `decide()` itself.

The order of one tick:
 1. `forecast(obs, now_s)`: the observed offered load (served + rejected; missing stays missing)
    goes to the forecaster, which is asked for a forecast over `horizon_s(obs, now_s)` = the lead
    time `decide()` will use (measured cold start included) + one decision period. A forecaster
    that raises gives no forecast (`decide()` then runs reactive only) and the error is kept.
 2. `decide(obs, forecast, now_s)`: the pure `core.decide.decide` on the kept `State`. An invalid
    decision is returned as it is; `hold_replicas(decision, current)` says what a shell actuates
    for it (nothing new: the current count).
 3. `on_actuated(batching_in_effect)`: when a batching change did not reach the pods (the rollout
    failed, was skipped or this replica is not the leader), the state goes back to the parameters
    the pods still run, so the next tick neither assumes the new capacity nor waits out a rollout
    interval for a rollout that never happened. Preview mode changes nothing and keeps the plan.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Protocol

from autoscaler.core.decide import decide as core_decide
from autoscaler.core.decide import lead_time
from autoscaler.core.multimodel import spec_for_mix
from autoscaler.core.state import State
from autoscaler.core.types import Decision, FloatArray, Forecast, Observation, TargetKey
from autoscaler.spec.types import BatchingParams, Mode, ServingAutoscalerSpec


class ForecastLike(Protocol):
    """What the controller needs of a forecaster (`forecast.driver.ForecastDriver`, the daemon's
    `runtime.forecast_pool` proxy)."""

    def warm_start(self, history_rps: FloatArray, end_s: float, *, step_s: float | None = None) -> None: ...

    def observe(self, time_s: float, rate_rps: float | None) -> None: ...

    def forecast(self, now_s: float, horizon_s: float) -> Forecast | None: ...


class PredictiveController:
    """One target's controller. `state` is None until the first decision (or `start`)."""

    def __init__(
        self,
        spec: ServingAutoscalerSpec,
        forecaster: ForecastLike | None,
        *,
        target: TargetKey | None = None,
    ) -> None:
        self.spec = spec
        self.forecaster = forecaster
        self.target = target if target is not None else TargetKey(spec.target.namespace, spec.target.deployment)
        self.state: State | None = None
        self.warmed = False  # the forecaster got its history (or the attempt failed)
        self.last_forecast: Forecast | None = None
        self.last_forecast_error: str | None = None
        self.last_decision: Decision | None = None
        self._before: State | None = None  # the state before the last decision (for rollback)

    # ------------------------------------------------------------------ set-up
    def start(
        self,
        now_s: float,
        current_replicas: int,
        *,
        batching: BatchingParams | None = None,
        last_rollout_s: float | None = None,
    ) -> State:
        """Fresh state for a target running `current_replicas` with `batching` (default: the spec's)."""
        self.state = State.initial(self.spec, now_s, current_replicas, batching=batching, last_rollout_s=last_rollout_s)
        return self.state

    def warm_start(self, history_rps: FloatArray, end_s: float, *, step_s: float | None = None) -> None:
        """Seed the forecaster with history ending at `end_s` (NaN = missing). Marks the target warmed."""
        self.warmed = True
        if self.forecaster is not None and len(history_rps):
            self.forecaster.warm_start(history_rps, end_s, step_s=step_s)

    def with_spec(self, spec: ServingAutoscalerSpec, forecaster: ForecastLike | None) -> PredictiveController:
        """The controller for an updated spec: same state; the forecaster given (a new one when the
        forecaster settings changed, which then needs its warm start again)."""
        nxt = PredictiveController(spec, forecaster, target=self.target)
        nxt.state = self.state
        nxt.warmed = self.warmed and forecaster is self.forecaster
        nxt.last_forecast = self.last_forecast if forecaster is self.forecaster else None
        return nxt

    # ------------------------------------------------------------------ one tick
    def horizon_s(self, observation: Observation | None, now_s: float) -> float:
        """How far ahead the forecast must reach: the lead time `decide()` uses + one decision period."""
        lead_s, _ = lead_time(self.spec, observation, now_s)
        return lead_s + self.spec.provisioning.decision_period_s

    def forecast(self, observation: Observation, now_s: float) -> Forecast | None:
        """Feed the observed offered load and forecast over `horizon_s` (may block: refits)."""
        self.last_forecast, self.last_forecast_error = None, None
        if self.forecaster is None:
            return None
        arrival = observation.arrival_rps
        rate = arrival.value if arrival.ok and arrival.value is not None and math.isfinite(arrival.value) else None
        try:
            self.forecaster.observe(now_s, rate)
            self.last_forecast = self.forecaster.forecast(now_s, self.horizon_s(observation, now_s))
        except Exception as exc:  # a broken model must not stop the decision: decide() runs reactive
            self.last_forecast_error = f"{type(exc).__name__}: {str(exc)[:200]}"
        return self.last_forecast

    def decide(self, observation: Observation, forecast: Forecast | None, now_s: float) -> Decision:
        """The pure decision on the kept state; the state advances (see `on_actuated`)."""
        if self.state is None:
            current = observation.current_replicas
            self.start(now_s, current if current is not None and current >= 0 else 1)
        assert self.state is not None
        self._before = self.state
        # a multi-model server: the pod's capacity is that of this tick's model mix (single model: self.spec)
        spec = spec_for_mix(self.spec, observation.model_rates_rps)
        decision, self.state = core_decide(spec, self.state, observation, forecast, now_s=now_s, target=self.target)
        if spec is not self.spec:  # say which mix the capacity is for ("mix: 60% a + 40% b")
            mix = f"capacity per pod of the model {spec.profile.source}"
            decision = replace(decision, notes=(*decision.notes, mix))
        self.last_decision = decision
        return decision

    def step(self, observation: Observation, now_s: float) -> Decision:
        """`forecast` then `decide`: one whole tick."""
        return self.decide(observation, self.forecast(observation, now_s), now_s)

    @staticmethod
    def hold_replicas(decision: Decision, current_replicas: int) -> int:
        """The replica count a shell actuates for `decision`: its desired count when valid, else the
        current count (an invalid decision never actuates)."""
        return decision.desired_replicas if decision.valid else current_replicas

    def on_actuated(self, batching_in_effect: bool) -> None:
        """Report whether the last decision's batching change reached the pods (ignored when there
        was none). A change that did not is rolled back in the state (preview keeps its plan)."""
        d, before = self.last_decision, self._before
        if d is None or before is None or self.state is None or not d.batching_changed:
            return
        if batching_in_effect or self.spec.mode is Mode.PREVIEW:
            return
        self.state = replace(self.state, batching=before.batching, last_rollout_s=before.last_rollout_s)
