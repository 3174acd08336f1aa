"""`keda`: a KEDA ScaledObject with one Prometheus trigger, and the HPA KEDA creates for it.

What KEDA does (kedacore/keda v2, read for this copy):

* The trigger (`pkg/scalers/prometheus_scaler.go`) runs `sum(rate(request_count[1m]))`
  (`view.total_rps`) and returns one value. An empty result is 0 when `ignoreNullValues` is true
  (the default) and an error otherwise; ±Inf likewise. A failed query is an error. (A NaN sample
  would reach `int64(NaN*1000)`, platform-defined in Go; it is treated as a failed query here.)
* KEDA registers the trigger with its HPA as an **External** metric with an **AverageValue**
  target = `threshold` (knob `threshold_rps`, default 100), in milli-units `int64(threshold*1000)`,
  and serves the value as `int64(value*1000)` (`GenerateMetricInMili`, truncating). The HPA then
  computes `GetExternalPerPodMetricReplicas`: ceil(total/threshold), with the tolerance test on
  `status.replicas`, and normalizes as any HPA (no `behavior` unless
  `advanced.horizontalPodAutoscalerConfig.behavior` is set: knob `behavior`).
* The metrics server queries the scaler on every HPA request (every 15 s sync) unless the trigger
  sets `useCachedMetrics`, in which case the HPA reads the value cached by the `pollingInterval`
  loop (30 s). Knob `use_cached_metrics` (default False, KEDA's default).
* `fallback` (`pkg/fallback/fallback.go`): every failed metric request increments the trigger's
  `numberOfFailures`; a success resets it. Once it exceeds `failureThreshold` (default here 3) the
  metric served is `int64(threshold) * 1000 * fallback.replicas` milli, i.e. the HPA is steered to
  `fallback.replicas` (behavior `static`). Without a fallback the error reaches the HPA, which then
  does nothing.
* `minReplicaCount` / `maxReplicaCount` become the HPA's bounds (spec min/max). Scale to zero,
  with `activationThreshold` and `cooldownPeriod` (300 s), only happens when minReplicaCount is 0;
  this product's specs keep min >= 1, so they are modelled but normally inert.
"""

from __future__ import annotations

import math
from typing import ClassVar

from autoscaler.core.hpa import HpaMetricError, Tolerances, get_external_per_pod_metric_replicas
from autoscaler.core.types import SignalStatus
from autoscaler.sim.policies.hpa import HPA_SYNC_PERIOD_S, HpaController, tolerances_for
from autoscaler.sim.view import ClusterView, PolicyContext, PolicyOutput
from autoscaler.spec.types import Behavior, ServingAutoscalerSpec


class ScalerError(Exception):
    """The Prometheus trigger failed (query error, empty result without ignoreNullValues, ±Inf)."""


def prometheus_trigger_value(view: ClusterView, *, ignore_null_values: bool = True) -> float:
    """The Prometheus scaler's `ExecutePromQuery` over the simulated view."""
    signal = view.observation.request_rate_rps
    if signal.status is SignalStatus.ERROR:
        raise ScalerError(f"prometheus query failed: {signal.detail or 'error'}")
    value = view.total_rps
    if value is None:
        if ignore_null_values:
            return 0.0
        raise ScalerError("prometheus metrics 'prometheus' target may be lost, the result is empty")
    if math.isinf(value):
        if ignore_null_values:
            return 0.0
        raise ScalerError(f"prometheus query returns {value}")
    if math.isnan(value):
        raise ScalerError("prometheus query returns NaN")
    return value


class KedaPrometheusPolicy:
    """KEDA's Prometheus scaler feeding its HPA an External AverageValue metric."""

    name: ClassVar[str] = "keda"
    knob: ClassVar[str] = "threshold_rps"
    clairvoyant: ClassVar[bool] = False

    def __init__(
        self,
        spec: ServingAutoscalerSpec,
        *,
        threshold_rps: float = 100.0,
        activation_threshold_rps: float = 0.0,
        polling_interval_s: float = 30.0,
        cooldown_period_s: float = 300.0,
        min_replica_count: int | None = None,
        max_replica_count: int | None = None,
        ignore_null_values: bool = True,
        use_cached_metrics: bool = False,
        fallback_failure_threshold: int | None = 3,
        fallback_replicas: int | None = None,
        behavior: Behavior | None = None,
        tolerance: float = 0.1,
        period_s: float = HPA_SYNC_PERIOD_S,
    ) -> None:
        if not threshold_rps > 0:
            raise ValueError(f"keda.threshold_rps: expected > 0 (got {threshold_rps})")
        self.spec = spec
        self.threshold_rps = float(threshold_rps)
        self.target_milli = int(threshold_rps * 1000)  # GetMetricTargetMili
        self.activation_threshold_rps = activation_threshold_rps
        self.polling_interval_s = polling_interval_s
        self.cooldown_period_s = cooldown_period_s
        self.min_replica_count = spec.min_replicas if min_replica_count is None else min_replica_count
        self.max_replica_count = spec.max_replicas if max_replica_count is None else max_replica_count
        self.ignore_null_values = ignore_null_values
        self.use_cached_metrics = use_cached_metrics
        self.fallback_failure_threshold = fallback_failure_threshold
        # fallback.replicas: default to the spec's max (the conservative choice operators make for a
        # latency SLO); None threshold disables the fallback section entirely
        self.fallback_replicas = spec.max_replicas if fallback_replicas is None else fallback_replicas
        self.behavior = behavior
        self.tolerances: Tolerances = tolerances_for(behavior, tolerance)
        self.period_s = period_s
        self._reset()

    def _reset(self) -> None:
        # KEDA sets the HPA's minReplicas to minReplicaCount, or 1 when it is 0
        self.hpa = HpaController(
            min_replicas=max(1, self.min_replica_count),
            max_replicas=self.max_replica_count,
            behavior=self.behavior,
        )
        self.failures = 0
        self.cache: tuple[float, float | None, str] | None = None  # (time, value, error)
        self.last_active_s: float | None = None

    def start(self, ctx: PolicyContext) -> None:
        self._reset()
        self.last_active_s = ctx.start_s

    def _query(self, view: ClusterView) -> tuple[float | None, str]:
        """One scaler query, or the polling loop's cached record with useCachedMetrics."""
        if self.use_cached_metrics and self.cache is not None and view.now_s - self.cache[0] < self.polling_interval_s:
            return self.cache[1], self.cache[2]
        try:
            value: float | None = prometheus_trigger_value(view, ignore_null_values=self.ignore_null_values)
            err = ""
        except ScalerError as e:
            value, err = None, str(e)
        self.cache = (view.now_s, value, err)
        return value, err

    def metric_milli(self, view: ClusterView) -> tuple[int | None, str]:
        """What KEDA's metrics server answers the HPA: the value, the fallback value, or an error."""
        value, err = self._query(view)
        if value is not None:
            self.failures = 0
            if value > self.activation_threshold_rps:
                self.last_active_s = view.now_s
            return int(value * 1000), f"trigger {value:.3f} rps"
        self.failures += 1
        if self.fallback_failure_threshold is not None and self.failures > self.fallback_failure_threshold:
            milli = int(self.threshold_rps) * 1000 * self.fallback_replicas
            return milli, f"fallback to {self.fallback_replicas} replicas after {self.failures} failures ({err})"
        return None, f"scaler error {self.failures}: {err}"

    def decide(self, view: ClusterView) -> PolicyOutput:
        current = view.spec_replicas
        milli, detail = self.metric_milli(view)
        if self.min_replica_count == 0:
            inactive_s = view.now_s - (self.last_active_s if self.last_active_s is not None else view.now_s)
            if current > 0 and inactive_s >= self.cooldown_period_s:
                return PolicyOutput(desired_replicas=0, reason=f"{detail}; inactive for cooldownPeriod, scale to 0")
            if current == 0:
                active = milli is not None and inactive_s == 0
                return PolicyOutput(desired_replicas=1 if active else 0, reason=f"{detail}; activation from zero")
        proposal: int | None = None
        if milli is not None:
            try:
                proposal = get_external_per_pod_metric_replicas(
                    view.status_replicas, self.target_milli, [milli], tolerances=self.tolerances
                ).replicas
            except HpaMetricError as e:
                detail = f"{detail}; {e}"
        result = self.hpa.sync(current, [proposal], view.now_s)
        desired = result.desired_replicas if result.rescale else current
        return PolicyOutput(desired_replicas=desired, reason=f"{detail}; {result.reason}")
