"""`predictive` and `predictive-direct`: our own autoscaler, run in the simulator as the daemon runs it.

Owned here so the simulator measures the product, not a model of it. Each tick the policy hands the
`Observation` the metrics pipeline built (what our Prometheus sources would report) to the same
`control.PredictiveController` the daemon's loop calls: it feeds the forecaster, asks for a
forecast over the lead time `decide()` uses, runs the pure `core.decide.decide` and keeps its
`State`. The forecaster is warm-started from the trace's history before the window
(`PolicyContext.history_rps`), as the daemon warm-starts from Prometheus history.

How the decision reaches the Deployment depends on the mode, as in a cluster:

* `predictive` runs the spec's mode, `hpa` unless the spec says `direct` (`hpa` is the default and
  the recommended mode). The daemon publishes its desired count D; a Kubernetes HPA reads it as the
  External metric `tfserving_autoscaler_desired_replicas` with an `AverageValue` target of 1
  (`manifests/examples/tfserving/hpa.yaml`) every sync period (15 s), through the faithful HPA copy
  in `core.hpa`: `GetExternalPerPodMetricReplicas` (ceil(D / 1) unless D / status.replicas is
  within the 10 % tolerance), then the HPA's own `behavior` (the shipped manifest's) and
  [minReplicas, maxReplicas]. The HPA syncs `hpa_lag_s` after our tick (its phase is independent of
  ours in a cluster; 5 s by default). Before our first valid decision the metric does not exist and
  the HPA does nothing.
* `predictive-direct` patches `scale.spec.replicas` itself (`mode: direct`).

Batching changes are rolled out by the daemon itself in both modes (the ConfigMap and pod template
are ours, not the HPA's), so they reach the simulated cluster directly.

Knobs (override the spec): `headroom` (main knob, swept), `forecast_quantile`, `tune_batching`
(spec.batching.tune), `hpa_lag_s`, `surge_share` (the share of the SLO's miss allowance the surge
reserve leaves above it, `core.surge.SURGE_BUDGET_SHARE` by default), `surge_pool` ('history', or the
quantile that pools the seasons' surge ratios, `core.surge.SURGE_POOL_QUANTILE` by default).
`min_refit_interval_s` is passed to the driver (0 by default: refit every `refitIntervalSeconds`, as the
daemon's forecast worker does; None: at most once a season).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar

from autoscaler.control import PredictiveController
from autoscaler.core.hpa import HpaMetricError, get_external_per_pod_metric_replicas
from autoscaler.core.state import State
from autoscaler.forecast.driver import driver_for
from autoscaler.sim.policies.hpa import DEFAULT_TOLERANCE, HPA_SYNC_PERIOD_S, HpaController, tolerances_for
from autoscaler.sim.view import ClusterView, PolicyContext, PolicyOutput
from autoscaler.spec.types import (
    Behavior,
    Mode,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    ServingAutoscalerSpec,
)

# The `behavior` of the HPA we ship for the hpa path (manifests/examples/tfserving/hpa.yaml; a test
# keeps the two equal): permissive, since the daemon already stabilizes and rate-limits.
PUBLISHED_HPA_BEHAVIOR = Behavior(
    scale_up=ScalingRules(
        stabilization_window_s=0,
        select_policy=SelectPolicy.MAX,
        policies=(ScalingPolicy(PolicyType.PERCENT, 100, 15), ScalingPolicy(PolicyType.PODS, 8, 15)),
    ),
    scale_down=ScalingRules(
        stabilization_window_s=60,
        select_policy=SelectPolicy.MAX,
        policies=(ScalingPolicy(PolicyType.PERCENT, 50, 60),),
    ),
)
# the published metric's AverageValue target ("1"), in the milli-units the HPA reads
PUBLISHED_TARGET_MILLI = 1000
DEFAULT_HPA_LAG_S = 5.0


class PredictivePolicy:
    name: ClassVar[str] = "predictive"
    knob: ClassVar[str] = "headroom"
    clairvoyant: ClassVar[bool] = False
    forced_mode: ClassVar[Mode | None] = None  # None: the spec's mode (hpa unless direct)

    def __init__(
        self,
        spec: ServingAutoscalerSpec,
        *,
        headroom: float | None = None,
        forecast_quantile: float | None = None,
        min_refit_interval_s: float | None = 0.0,
        tune_batching: bool | None = None,
        hpa_lag_s: float = DEFAULT_HPA_LAG_S,
        hpa_behavior: Behavior | None = PUBLISHED_HPA_BEHAVIOR,
        hpa_tolerance: float = DEFAULT_TOLERANCE,
        surge_share: float | None = None,
        surge_pool: float | str | None = None,
    ) -> None:
        prov = spec.provisioning
        if tune_batching is not None:
            spec = replace(spec, batching=replace(spec.batching, tune=bool(tune_batching)))
        if headroom is not None:
            if not (0.0 <= headroom < 1.0):
                raise ValueError(f"{self.name}.headroom: expected a fraction in [0, 1) (got {headroom})")
            prov = replace(prov, headroom=float(headroom))
        if forecast_quantile is not None:
            if not (0.0 < forecast_quantile < 1.0):
                raise ValueError(
                    f"{self.name}.forecast_quantile: expected a quantile in (0, 1) (got {forecast_quantile})"
                )
            prov = replace(prov, forecast_quantile=float(forecast_quantile))
        self.mode = self.forced_mode or (Mode.DIRECT if spec.mode is Mode.DIRECT else Mode.HPA)
        self.spec = replace(spec, provisioning=prov, mode=self.mode)
        self.decision_period_s = float(prov.decision_period_s)
        self.hpa_sync_period_s = HPA_SYNC_PERIOD_S
        self.hpa_lag_s = float(hpa_lag_s)
        if self.mode is Mode.HPA:
            for what, v in (("hpa_lag_s", self.hpa_lag_s), ("decision_period_s", self.decision_period_s)):
                if not (v >= 0 and float(v).is_integer()):
                    raise ValueError(f"{self.name}.{what}: expected whole seconds >= 0 in hpa mode (got {v:g})")
            if self.hpa_lag_s >= self.hpa_sync_period_s:
                raise ValueError(
                    f"{self.name}.hpa_lag_s: expected less than the HPA sync period "
                    f"{self.hpa_sync_period_s:g} s (got {self.hpa_lag_s:g})"
                )
            # one engine tick serves both loops: our decisions and the HPA's syncs
            self.period_s = float(
                math.gcd(int(self.decision_period_s), int(self.hpa_sync_period_s), int(self.hpa_lag_s))
            )
        else:
            self.period_s = self.decision_period_s
        self.hpa_behavior = hpa_behavior
        self.hpa_tolerance = hpa_tolerance
        self.min_refit_interval_s = min_refit_interval_s
        if surge_share is not None and not (0.0 < surge_share <= 10.0):
            raise ValueError(f"{self.name}.surge_share: expected a share in (0, 10] (got {surge_share})")
        self.surge_share = surge_share
        if surge_pool is not None and surge_pool != "history" and not (
            isinstance(surge_pool, float | int) and 0.0 < float(surge_pool) <= 1.0
        ):
            raise ValueError(f"{self.name}.surge_pool: expected 'history' or a quantile in (0, 1] (got {surge_pool!r})")
        self.surge_pool = surge_pool
        self.controller = self._controller()
        self.last_reason = ""
        self._reset_hop()

    def _controller(self) -> PredictiveController:
        driver = driver_for(
            self.spec,
            min_refit_interval_s=self.min_refit_interval_s,
            surge_share=self.surge_share,
            surge_pool=self.surge_pool,
        )
        return PredictiveController(self.spec, driver)

    def _reset_hop(self) -> None:
        self.hpa = HpaController(
            min_replicas=self.spec.min_replicas, max_replicas=self.spec.max_replicas, behavior=self.hpa_behavior
        )
        self.tolerances = tolerances_for(self.hpa_behavior, self.hpa_tolerance)
        self.published: int | None = None  # the metric the adapter serves (None: not yet published)
        self._last: PolicyOutput | None = None
        self._t0_s = 0.0

    @property
    def state(self) -> State | None:
        """The controller's core `State` (None before the first decision)."""
        return self.controller.state

    def settings(self) -> dict[str, Any]:
        """The settings this replay runs with, resolved from the spec and the knobs (the report's column)."""
        prov = self.spec.provisioning
        used: dict[str, Any] = {
            "mode": self.mode.value,
            "headroom": prov.headroom,
            "forecast_quantile": prov.forecast_quantile,
            "tune_batching": self.spec.batching.tune,
        }
        if self.surge_share is not None:
            used["surge_share"] = self.surge_share
        return used

    def start(self, ctx: PolicyContext) -> None:
        self.controller = self._controller()
        self.controller.warm_start(ctx.history_rps, ctx.start_s, step_s=ctx.history_step_s)
        self.controller.start(ctx.start_s, ctx.initial_replicas)
        self._reset_hop()
        self._t0_s = ctx.start_s

    def _due(self, now_s: float, period_s: float, offset_s: float = 0.0) -> bool:
        k = (now_s - self._t0_s - offset_s) / period_s
        return k >= 0 and abs(k - round(k)) < 1e-9

    def decide(self, view: ClusterView) -> PolicyOutput:
        if self.controller.state is None:
            raise RuntimeError(f"{self.name}: start() must be called before decide()")
        if self.mode is Mode.DIRECT:
            return self._ours(view)
        batching = None
        if self._due(view.now_s, self.decision_period_s):
            batching = self._ours(view).batching  # the daemon rolls batching out itself
            decision = self.controller.last_decision
            if decision is not None and decision.valid:
                self.published = decision.desired_replicas
        ours = self._last
        # the HPA syncs hpa_lag_s after our ticks, and once at the start of the replay (the engine
        # starts every policy from its own first choice)
        if view.now_s == self._t0_s or self._due(view.now_s, self.hpa_sync_period_s, self.hpa_lag_s):
            desired, reason = self._hpa_sync(view)
        else:
            desired, reason = view.spec_replicas, "hpa: between syncs"
        if ours is not None:
            reason = f"{reason}; ours: {ours.reason}"
        return PolicyOutput(
            desired_replicas=desired,
            batching=batching,
            forecast_rps=ours.forecast_rps if ours is not None else None,
            forecast_lo_rps=ours.forecast_lo_rps if ours is not None else None,
            forecast_hi_rps=ours.forecast_hi_rps if ours is not None else None,
            reason=reason,
        )

    def _ours(self, view: ClusterView) -> PolicyOutput:
        """One controller tick; in direct mode its output is the patch."""
        decision = self.controller.step(view.observation, view.now_s)
        self.controller.on_actuated(True)  # the simulated rollout always reaches the pods
        self.last_reason = decision.reason
        replicas = PredictiveController.hold_replicas(decision, view.spec_replicas)
        out = PolicyOutput(
            desired_replicas=replicas,
            batching=decision.batching if decision.batching_changed else None,
            forecast_rps=decision.forecast_rps,
            forecast_lo_rps=decision.forecast_lo_rps,
            forecast_hi_rps=decision.forecast_hi_rps,
            reason=decision.reason if decision.valid else f"invalid: {decision.reason}",
        )
        self._last = out
        return out

    def _hpa_sync(self, view: ClusterView) -> tuple[int, str]:
        """The HPA's sync over the published External metric (AverageValue 1): (replicas, reason)."""
        current = view.spec_replicas
        proposal: int | None = None
        if self.published is None:
            detail = "hpa: no metric published yet (unable to fetch metrics from external metrics API)"
        else:
            try:
                proposal = get_external_per_pod_metric_replicas(
                    view.status_replicas,
                    PUBLISHED_TARGET_MILLI,
                    [self.published * PUBLISHED_TARGET_MILLI],
                    tolerances=self.tolerances,
                ).replicas
                detail = f"hpa: external metric {self.published} (status.replicas {view.status_replicas})"
            except HpaMetricError as err:
                detail = f"hpa: {err}"
        result = self.hpa.sync(current, [proposal], view.now_s)
        return (result.desired_replicas if result.rescale else current), f"{detail}; {result.reason}"


class PredictiveDirectPolicy(PredictivePolicy):
    """`mode: direct`: the daemon patches the scale subresource itself, no HPA in between."""

    name: ClassVar[str] = "predictive-direct"
    forced_mode: ClassVar[Mode | None] = Mode.DIRECT
