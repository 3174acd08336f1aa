"""`predictive`: our own autoscaler, run in the simulator exactly as the daemon runs it.

Owned here so the simulator measures the product, not a model of it: each tick it takes the
`Observation` the metrics pipeline built (what our Prometheus sources would report), feeds the
observed arrival rate to the shared `forecast.driver.ForecastDriver`, asks it for a forecast
over the lead time and calls the pure `core.decide.decide` with the frozen `State` it got back
last time — observe → driver.observe/forecast → decide → output, the daemon's loop body.
The forecaster is warm-started from the trace's history before the window
(`PolicyContext.history_rps`), as the daemon warm-starts from Prometheus history.

Knobs (override the spec): `headroom` (main knob, swept), `forecast_quantile`, `tune_batching`
(spec.batching.tune). `min_refit_interval_s` is passed to the driver (None: its default, one season).
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from autoscaler.core.decide import State, decide
from autoscaler.forecast.driver import ForecastDriver
from autoscaler.sim.view import ClusterView, PolicyContext, PolicyOutput
from autoscaler.spec.types import ServingAutoscalerSpec


class PredictivePolicy:
    name: ClassVar[str] = "predictive"
    knob: ClassVar[str] = "headroom"
    clairvoyant: ClassVar[bool] = False

    def __init__(
        self,
        spec: ServingAutoscalerSpec,
        *,
        headroom: float | None = None,
        forecast_quantile: float | None = None,
        min_refit_interval_s: float | None = None,
        tune_batching: bool | None = None,
    ) -> None:
        prov = spec.provisioning
        if tune_batching is not None:
            spec = replace(spec, batching=replace(spec.batching, tune=bool(tune_batching)))
        if headroom is not None:
            if not (0.0 <= headroom < 1.0):
                raise ValueError(f"predictive.headroom: expected a fraction in [0, 1) (got {headroom})")
            prov = replace(prov, headroom=float(headroom))
        if forecast_quantile is not None:
            if not (0.0 < forecast_quantile < 1.0):
                raise ValueError(
                    f"predictive.forecast_quantile: expected a quantile in (0, 1) (got {forecast_quantile})"
                )
            prov = replace(prov, forecast_quantile=float(forecast_quantile))
        self.spec = replace(spec, provisioning=prov)
        self.period_s = float(prov.decision_period_s)
        self.driver = ForecastDriver(self.spec.forecaster, min_refit_interval_s=min_refit_interval_s)
        self.state: State | None = None
        self.last_reason = ""

    def start(self, ctx: PolicyContext) -> None:
        if len(ctx.history_rps):
            self.driver.warm_start(ctx.history_rps, ctx.start_s, step_s=ctx.history_step_s)
        self.state = State.initial(self.spec, ctx.start_s, ctx.initial_replicas)

    def horizon_s(self) -> float:
        return 1.5 * self.spec.lead_time_s + self.period_s + 2.0 * self.spec.forecaster.step_s

    def decide(self, view: ClusterView) -> PolicyOutput:
        if self.state is None:
            raise RuntimeError("predictive: start() must be called before decide()")
        obs = view.observation
        arrival = obs.arrival_rps
        self.driver.observe(view.now_s, arrival.value if arrival.ok else None)
        fc = self.driver.forecast(view.now_s, self.horizon_s())
        decision, self.state = decide(self.spec, self.state, obs, fc, now_s=view.now_s)
        self.last_reason = decision.reason
        if not decision.valid:
            return PolicyOutput(desired_replicas=view.spec_replicas, reason=f"invalid: {decision.reason}")
        return PolicyOutput(
            desired_replicas=decision.desired_replicas,
            batching=decision.batching if decision.batching_changed else None,
            forecast_rps=decision.forecast_rps,
            forecast_lo_rps=decision.forecast_lo_rps,
            forecast_hi_rps=decision.forecast_hi_rps,
            reason=decision.reason,
        )
