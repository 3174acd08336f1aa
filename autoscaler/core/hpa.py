"""A faithful copy of the Kubernetes HPA replica calculator, one Python function per Go function.

Mirrors `kubernetes/kubernetes` `pkg/controller/podautoscaler/replica_calculator.go` (1.33+ era, with
per-direction `Tolerances`) and `metrics/utilization.go`: `groupPods`, `GetResourceReplicas`,
`GetRawResourceReplicas`, `GetMetricReplicas` (= `calcPlainMetricReplicas`), `GetObjectMetricReplicas`,
`GetObjectPerPodMetricReplicas`, `GetExternalMetricReplicas`, `GetExternalPerPodMetricReplicas`,
`GetResourceUtilizationRatio`, `GetMetricUsageRatio`. The normalization half of the controller
(stabilization, rate limits, scale events) lives in `hpa_behavior.py` and is re-exported here, so
`autoscaler.core.hpa` is the single import for the whole HPA arithmetic.

Why in the core: the simulated HPA/KEDA/PHPA baselines must scale exactly like a real cluster would, and
our own decision core reuses the behavior rules. Pure stdlib. Values are *milli-units* as the controller
reads them (`Quantity.MilliValue()` = ceil(q*1000), see `milli_value`), integers everywhere Go uses
int64, with Go's truncating integer division. Where the controller returns an error we raise
`HpaMetricError` with the controller's message. `tests/test_hpa_replica_calculator.py`
ports `replica_calculator_test.go`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum

from autoscaler.core.hpa_behavior import (
    DEFAULT_DOWNSCALE_STABILIZATION_S,
    MAX_INT32,
    HpaHistory,
    Recommendation,
    ReconcileResult,
    ScaleEvent,
    calculate_scale_down_limit_with_behaviors,
    calculate_scale_up_limit,
    calculate_scale_up_limit_with_behaviors,
    calculate_scale_up_limit_with_scaling_rules,
    convert_desired_replicas_with_behavior_rate,
    convert_desired_replicas_with_rules,
    get_longest_policy_period,
    get_replicas_change_per_period,
    mark_scale_events_outdated,
    normalize_desired_replicas,
    normalize_desired_replicas_with_behaviors,
    reconcile,
    record_initial_recommendation,
    stabilize_recommendation,
    stabilize_recommendation_with_behaviors,
    store_scale_event,
)

__all__ = [
    "DEFAULT_CPU_INITIALIZATION_PERIOD_S",
    "DEFAULT_DOWNSCALE_STABILIZATION_S",
    "DEFAULT_INITIAL_READINESS_DELAY_S",
    "GO_ZERO_TIME_S",
    "MAX_INT64",
    "HpaHistory",
    "HpaMetricError",
    "HpaPod",
    "MetricReplicas",
    "PodGroups",
    "PodPhase",
    "PodSample",
    "Recommendation",
    "ReconcileResult",
    "ResourceReplicas",
    "ScaleEvent",
    "Tolerances",
    "calculate_scale_down_limit_with_behaviors",
    "calculate_scale_up_limit",
    "calculate_scale_up_limit_with_behaviors",
    "calculate_scale_up_limit_with_scaling_rules",
    "convert_desired_replicas_with_behavior_rate",
    "convert_desired_replicas_with_rules",
    "get_external_metric_replicas",
    "get_external_per_pod_metric_replicas",
    "get_longest_policy_period",
    "get_metric_replicas",
    "get_metric_usage_ratio",
    "get_object_metric_replicas",
    "get_object_per_pod_metric_replicas",
    "get_raw_resource_replicas",
    "get_replicas_change_per_period",
    "get_resource_replicas",
    "get_resource_utilization_ratio",
    "go_div",
    "group_pods",
    "mark_scale_events_outdated",
    "milli_value",
    "normalize_desired_replicas",
    "normalize_desired_replicas_with_behaviors",
    "reconcile",
    "record_initial_recommendation",
    "stabilize_recommendation",
    "stabilize_recommendation_with_behaviors",
    "store_scale_event",
]

MAX_INT64 = 2**63 - 1
DEFAULT_CPU_INITIALIZATION_PERIOD_S = 300.0  # --horizontal-pod-autoscaler-cpu-initialization-period=5m
DEFAULT_INITIAL_READINESS_DELAY_S = 30.0  # --horizontal-pod-autoscaler-initial-readiness-delay=30s
CPU = "cpu"
GO_ZERO_TIME_S = -62_135_596_800.0  # Go's zero time.Time (0001-01-01) in Unix seconds: unset timestamps


class HpaMetricError(ValueError):
    """The controller could not compute a proposal from this metric (ScalingActive=False)."""


def milli_value(quantity: float | int | str | Decimal) -> int:
    """`resource.Quantity.MilliValue()`: ceil(q * 1000), computed on the decimal value as written.

    Accepts quantity strings ("250m", "2Gi"). Floats are read through their shortest repr, so 0.1 is
    the decimal 0.1 (as the YAML "100m" would be), not 0.1000000000000000055…
    """
    if type(quantity) is float and math.isfinite(quantity):
        if quantity == 0.0:
            return 0
        # fast path: away from a whole number of milli-units the float product cannot round
        # across one, so its ceil equals the exact decimal one; near one, use the exact path
        m = quantity * 1000.0
        if abs(m - round(m)) > 1e-6 * max(1.0, abs(m)):
            return math.ceil(m)
    dec = quantity if isinstance(quantity, Decimal) else _parse_quantity(str(quantity))
    return int((dec * 1000).to_integral_value(rounding=ROUND_CEILING))


_SUFFIXES = {
    "m": Decimal("0.001"),
    "k": Decimal(1000),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
}


def _parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity string ("250m", "1.5", "2Gi") as an exact decimal."""
    text = text.strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            return Decimal(text[: -len(suffix)]) * _SUFFIXES[suffix]
    return Decimal(text)


def go_div(a: int, b: int) -> int:
    """Go's integer division: truncates toward zero (Python's // floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _int32_ceil(x: float) -> int:
    """int32(math.Ceil(x)) for the finite, non-negative values the controller produces."""
    if math.isnan(x):
        return 0
    if x > MAX_INT32:
        return MAX_INT32
    return math.ceil(x)


@dataclass(frozen=True)
class Tolerances:
    """`Tolerances{scaleDown, scaleUp}`: a ratio within [1-down, 1+up] (inclusive) leaves the scale alone."""

    scale_down: float = 0.1
    scale_up: float = 0.1

    def is_within(self, usage_ratio: float) -> bool:
        return (1.0 - self.scale_down) <= usage_ratio <= (1.0 + self.scale_up)


class PodPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class HpaPod:
    """The parts of a `v1.Pod` the replica calculator reads.

    `ready` is the Ready condition's status (None: the pod has no Ready condition);
    `ready_transition_s` its lastTransitionTime (None: Go's zero time, year 1);
    `start_time_s` is status.startTime (None: unset). `request_milli` is the summed request of the
    scaled resource in milli-units (None: a container has no request, an error for Resource metrics).
    """

    name: str
    phase: PodPhase = PodPhase.RUNNING
    ready: bool | None = True
    ready_transition_s: float | None = None
    start_time_s: float | None = None
    deleting: bool = False
    request_milli: int | None = None


@dataclass(frozen=True)
class PodSample:
    """`metricsclient.PodMetric`: a milli-value with the sample's timestamp and window."""

    value_milli: int
    timestamp_s: float = GO_ZERO_TIME_S
    window_s: float = 60.0


@dataclass(frozen=True)
class PodGroups:
    ready_pod_count: int
    unready: frozenset[str]
    missing: frozenset[str]
    ignored: frozenset[str]


def group_pods(
    pods: Sequence[HpaPod],
    metrics: Mapping[str, PodSample],
    resource: str,
    *,
    now_s: float,
    cpu_initialization_period_s: float = DEFAULT_CPU_INITIALIZATION_PERIOD_S,
    initial_readiness_delay_s: float = DEFAULT_INITIAL_READINESS_DELAY_S,
) -> PodGroups:
    """`groupPods`: split pods into ready (counted), unready, missing (no sample) and ignored."""
    ready_count = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        if pod.deleting or pod.phase is PodPhase.FAILED:
            ignored.add(pod.name)
            continue
        if pod.phase is PodPhase.PENDING:
            unready.add(pod.name)
            continue
        sample = metrics.get(pod.name)
        if sample is None:
            missing.add(pod.name)
            continue
        if resource == CPU:
            if pod.ready is None or pod.start_time_s is None:
                is_unready = True
            else:
                transition_s = pod.ready_transition_s if pod.ready_transition_s is not None else GO_ZERO_TIME_S
                if pod.start_time_s + cpu_initialization_period_s > now_s:
                    # within the initialization period: unready, or no full window since the transition
                    is_unready = (not pod.ready) or sample.timestamp_s < transition_s + sample.window_s
                else:
                    # unready and never been ready since start
                    is_unready = (not pod.ready) and pod.start_time_s + initial_readiness_delay_s > transition_s
            if is_unready:
                unready.add(pod.name)
                continue
        ready_count += 1
    return PodGroups(ready_count, frozenset(unready), frozenset(missing), frozenset(ignored))


def get_resource_utilization_ratio(
    metrics: Mapping[str, int], requests: Mapping[str, int], target_utilization_pct: int
) -> tuple[float, int, int]:
    """`GetResourceUtilizationRatio`: (ratio, utilization % truncated, raw average milli)."""
    metrics_total = 0
    requests_total = 0
    entries = 0
    for name, value in metrics.items():
        request = requests.get(name)
        if request is None:
            continue
        metrics_total += value
        requests_total += request
        entries += 1
    if requests_total == 0:
        raise HpaMetricError("no metrics returned matched known pods")
    utilization = go_div(metrics_total * 100, requests_total)
    return utilization / target_utilization_pct, utilization, go_div(metrics_total, entries)


def get_metric_usage_ratio(metrics: Mapping[str, int], target_usage_milli: int) -> tuple[float, int]:
    """`GetMetricUsageRatio`: (ratio, average milli truncated)."""
    usage = go_div(sum(metrics.values()), len(metrics))
    return usage / target_usage_milli, usage


@dataclass(frozen=True)
class ResourceReplicas:
    replicas: int
    utilization_pct: int
    raw_utilization_milli: int


@dataclass(frozen=True)
class MetricReplicas:
    replicas: int
    usage_milli: int


def _calculate_requests(pods: Sequence[HpaPod], resource: str) -> dict[str, int]:
    requests: dict[str, int] = {}
    for pod in pods:
        if pod.request_milli is None:
            raise HpaMetricError(f"missing request for {resource} in Pod {pod.name}")
        requests[pod.name] = pod.request_milli
    return requests


def _direction_changed(usage_ratio: float, new_usage_ratio: float) -> bool:
    return (usage_ratio < 1.0 and new_usage_ratio > 1.0) or (usage_ratio > 1.0 and new_usage_ratio < 1.0)


def get_resource_replicas(
    current_replicas: int,
    target_utilization_pct: int,
    pods: Sequence[HpaPod],
    samples: Mapping[str, PodSample],
    *,
    now_s: float,
    tolerances: Tolerances = Tolerances(),
    resource: str = CPU,
    cpu_initialization_period_s: float = DEFAULT_CPU_INITIALIZATION_PERIOD_S,
    initial_readiness_delay_s: float = DEFAULT_INITIAL_READINESS_DELAY_S,
) -> ResourceReplicas:
    """`GetResourceReplicas`: Resource metric with an averageUtilization (percent of request) target."""
    if not samples:
        raise HpaMetricError(
            f"unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        )
    if not pods:
        raise HpaMetricError("no pods returned by selector while calculating replica count")
    groups = group_pods(
        pods,
        samples,
        resource,
        now_s=now_s,
        cpu_initialization_period_s=cpu_initialization_period_s,
        initial_readiness_delay_s=initial_readiness_delay_s,
    )
    metrics = {
        name: s.value_milli for name, s in samples.items() if name not in groups.ignored and name not in groups.unready
    }
    if not metrics:
        raise HpaMetricError("did not receive metrics for targeted pods (pods might be unready)")
    requests = _calculate_requests(pods, resource)
    usage_ratio, utilization, raw = get_resource_utilization_ratio(metrics, requests, target_utilization_pct)

    scale_up_with_unready = len(groups.unready) > 0 and usage_ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if tolerances.is_within(usage_ratio):
            return ResourceReplicas(current_replicas, utilization, raw)
        return ResourceReplicas(_int32_ceil(usage_ratio * groups.ready_pod_count), utilization, raw)

    if groups.missing:
        if usage_ratio < 1.0:
            # scale-down: missing pods use 100 % of their request (or the target if it is above 100 %)
            fallback_pct = max(100, target_utilization_pct)
            for name in groups.missing:
                metrics[name] = go_div(requests[name] * fallback_pct, 100)
        elif usage_ratio > 1.0:
            for name in groups.missing:
                metrics[name] = 0
    if scale_up_with_unready:
        for name in groups.unready:
            metrics[name] = 0

    new_usage_ratio, _, _ = get_resource_utilization_ratio(metrics, requests, target_utilization_pct)
    if tolerances.is_within(new_usage_ratio) or _direction_changed(usage_ratio, new_usage_ratio):
        return ResourceReplicas(current_replicas, utilization, raw)
    new_replicas = _int32_ceil(new_usage_ratio * len(metrics))
    if (new_usage_ratio < 1.0 and new_replicas > current_replicas) or (
        new_usage_ratio > 1.0 and new_replicas < current_replicas
    ):
        return ResourceReplicas(current_replicas, utilization, raw)
    return ResourceReplicas(new_replicas, utilization, raw)


def _calc_plain_metric_replicas(
    samples: Mapping[str, PodSample],
    current_replicas: int,
    target_usage_milli: int,
    tolerances: Tolerances,
    pods: Sequence[HpaPod],
    resource: str,
    *,
    now_s: float,
    cpu_initialization_period_s: float,
    initial_readiness_delay_s: float,
) -> MetricReplicas:
    """`calcPlainMetricReplicas`: per-pod average against an averageValue target."""
    if not pods:
        raise HpaMetricError("no pods returned by selector while calculating replica count")
    groups = group_pods(
        pods,
        samples,
        resource,
        now_s=now_s,
        cpu_initialization_period_s=cpu_initialization_period_s,
        initial_readiness_delay_s=initial_readiness_delay_s,
    )
    # samples for pods outside the pod list stay in (the HPA averages over everything returned)
    metrics = {
        name: s.value_milli for name, s in samples.items() if name not in groups.ignored and name not in groups.unready
    }
    if not metrics:
        raise HpaMetricError("did not receive metrics for targeted pods (pods might be unready)")
    usage_ratio, usage = get_metric_usage_ratio(metrics, target_usage_milli)

    scale_up_with_unready = len(groups.unready) > 0 and usage_ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if tolerances.is_within(usage_ratio):
            return MetricReplicas(current_replicas, usage)
        return MetricReplicas(_int32_ceil(usage_ratio * groups.ready_pod_count), usage)

    if groups.missing:
        if usage_ratio < 1.0:
            for name in groups.missing:
                metrics[name] = target_usage_milli  # scale-down: missing pods sit exactly at target
        elif usage_ratio > 1.0:
            for name in groups.missing:
                metrics[name] = 0
    if scale_up_with_unready:
        for name in groups.unready:
            metrics[name] = 0

    new_usage_ratio, _ = get_metric_usage_ratio(metrics, target_usage_milli)
    if tolerances.is_within(new_usage_ratio) or _direction_changed(usage_ratio, new_usage_ratio):
        return MetricReplicas(current_replicas, usage)
    new_replicas = _int32_ceil(new_usage_ratio * len(metrics))
    if (new_usage_ratio < 1.0 and new_replicas > current_replicas) or (
        new_usage_ratio > 1.0 and new_replicas < current_replicas
    ):
        return MetricReplicas(current_replicas, usage)
    return MetricReplicas(new_replicas, usage)


def get_raw_resource_replicas(
    current_replicas: int,
    target_average_milli: int,
    pods: Sequence[HpaPod],
    samples: Mapping[str, PodSample],
    *,
    now_s: float,
    tolerances: Tolerances = Tolerances(),
    resource: str = CPU,
    cpu_initialization_period_s: float = DEFAULT_CPU_INITIALIZATION_PERIOD_S,
    initial_readiness_delay_s: float = DEFAULT_INITIAL_READINESS_DELAY_S,
) -> MetricReplicas:
    """`GetRawResourceReplicas`: Resource metric with an averageValue target (cpu readiness rules apply)."""
    return _calc_plain_metric_replicas(
        samples,
        current_replicas,
        target_average_milli,
        tolerances,
        pods,
        resource,
        now_s=now_s,
        cpu_initialization_period_s=cpu_initialization_period_s,
        initial_readiness_delay_s=initial_readiness_delay_s,
    )


def get_metric_replicas(
    current_replicas: int,
    target_average_milli: int,
    pods: Sequence[HpaPod],
    samples: Mapping[str, PodSample],
    *,
    tolerances: Tolerances = Tolerances(),
) -> MetricReplicas:
    """`GetMetricReplicas`: a Pods metric with an averageValue target (readiness is not checked)."""
    if not samples:
        raise HpaMetricError("no metrics returned from custom metrics API")
    return _calc_plain_metric_replicas(
        samples,
        current_replicas,
        target_average_milli,
        tolerances,
        pods,
        "",
        now_s=0.0,
        cpu_initialization_period_s=DEFAULT_CPU_INITIALIZATION_PERIOD_S,
        initial_readiness_delay_s=DEFAULT_INITIAL_READINESS_DELAY_S,
    )


def _get_ready_pods_count(pods: Sequence[HpaPod]) -> int:
    """`getReadyPodsCount`: pods that are Running with Ready=True."""
    if not pods:
        raise HpaMetricError("no pods returned by selector while calculating replica count")
    return sum(1 for p in pods if p.phase is PodPhase.RUNNING and p.ready is True)


def _get_usage_ratio_replica_count(
    current_replicas: int, usage_ratio: float, tolerances: Tolerances, pods: Sequence[HpaPod]
) -> int:
    """`getUsageRatioReplicaCount`: ceil(ratio * ready pods), or ceil(ratio) from zero replicas."""
    if current_replicas != 0:
        if tolerances.is_within(usage_ratio):
            return current_replicas
        return _int32_ceil(usage_ratio * _get_ready_pods_count(pods))
    return _int32_ceil(usage_ratio)


def get_object_metric_replicas(
    current_replicas: int,
    target_value_milli: int,
    usage_milli: int,
    pods: Sequence[HpaPod],
    *,
    tolerances: Tolerances = Tolerances(),
) -> MetricReplicas:
    """`GetObjectMetricReplicas`: an Object metric with a Value target (ratio times ready pods)."""
    usage_ratio = usage_milli / target_value_milli
    replicas = _get_usage_ratio_replica_count(current_replicas, usage_ratio, tolerances, pods)
    return MetricReplicas(replicas, usage_milli)


def _go_float_div(a: float, b: float) -> float:
    """Go float64 division: x/0 is +Inf (or NaN for 0/0), never a panic; neither is within tolerance."""
    if b == 0.0:
        return math.nan if a == 0.0 else math.copysign(math.inf, a)
    return a / b


def _per_pod_replicas(
    status_replicas: int, target_average_milli: int, usage_milli: int, tolerances: Tolerances
) -> MetricReplicas:
    replicas = status_replicas
    usage_ratio = _go_float_div(float(usage_milli), float(target_average_milli) * float(status_replicas))
    if not tolerances.is_within(usage_ratio):
        replicas = _int32_ceil(usage_milli / target_average_milli)
    if usage_milli >= MAX_INT64 or status_replicas == 0:
        per_pod = usage_milli
    else:
        per_pod = math.ceil(usage_milli / status_replicas)
    return MetricReplicas(replicas, per_pod)


def get_object_per_pod_metric_replicas(
    status_replicas: int,
    target_average_milli: int,
    usage_milli: int,
    *,
    tolerances: Tolerances = Tolerances(),
) -> MetricReplicas:
    """`GetObjectPerPodMetricReplicas`: Object metric, AverageValue target: ceil(total/target).

    The replica count only enters through the tolerance test on `status.replicas`.
    """
    return _per_pod_replicas(status_replicas, target_average_milli, usage_milli, tolerances)


def _sum_capped(values_milli: Sequence[int]) -> int:
    usage = 0
    for value in values_milli:
        if value > 0 and usage > MAX_INT64 - value:
            return MAX_INT64
        usage += value
    return usage


def get_external_metric_replicas(
    current_replicas: int,
    target_value_milli: int,
    values_milli: Sequence[int],
    pods: Sequence[HpaPod],
    *,
    tolerances: Tolerances = Tolerances(),
) -> MetricReplicas:
    """`GetExternalMetricReplicas`: External metric, Value target, over the sum of all returned series."""
    if not values_milli:
        raise HpaMetricError("no metrics returned from external metrics API")
    usage = _sum_capped(values_milli)
    replicas = _get_usage_ratio_replica_count(current_replicas, usage / target_value_milli, tolerances, pods)
    return MetricReplicas(replicas, usage)


def get_external_per_pod_metric_replicas(
    status_replicas: int,
    target_average_milli: int,
    values_milli: Sequence[int],
    *,
    tolerances: Tolerances = Tolerances(),
) -> MetricReplicas:
    """`GetExternalPerPodMetricReplicas`: External metric, AverageValue target: ceil(sum/target)."""
    if not values_milli:
        raise HpaMetricError("no metrics returned from external metrics API")
    return _per_pod_replicas(status_replicas, target_average_milli, _sum_capped(values_milli), tolerances)
