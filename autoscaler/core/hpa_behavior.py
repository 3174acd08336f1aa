"""The HPA controller's normalization step: stabilization windows, scale-up limits, behavior rates.

A one-for-one copy of the functions of `kubernetes/kubernetes` `pkg/controller/podautoscaler/horizontal.go`
that turn the metrics' replica proposal into the replica count the controller writes:
`stabilizeRecommendation`, `convertDesiredReplicasWithRules`, `calculateScaleUpLimit` (no `spec.behavior`),
`stabilizeRecommendationWithBehaviors`, `convertDesiredReplicasWithBehaviorRate`,
`calculateScaleUpLimitWithScalingRules`, `calculateScaleDownLimitWithBehaviors`,
`getReplicasChangePerPeriod`, `markScaleEventsOutdated`, `storeScaleEvent`, `recordInitialRecommendation`
and the replica-count branch of `reconcileAutoscaler` / `computeReplicasForMetrics`.

Owned by the core (pure, stdlib only) because two callers need the exact same arithmetic: the simulated
Kubernetes HPA baselines and our own decision core, which reuses the behavior rules for its stabilization
and rate limits. The controller keeps the history in mutable maps; here every function takes an immutable
`HpaHistory` and returns a new one. Time is `now_s` (seconds); Go's strict `Before`/`After` comparisons are
kept exactly (a recommendation exactly `window` old still counts in the no-behavior path; a scale event
exactly `period` old no longer counts). API defaults: `pkg/apis/autoscaling/v2/defaults.go`;
`tests/test_hpa_behavior.py` ports `horizontal_test.go`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from autoscaler.spec.types import Behavior, PolicyType, ScalingRules, SelectPolicy

MAX_INT32 = 2**31 - 1
MIN_INT32 = -(2**31)
SCALE_UP_LIMIT_FACTOR = 2.0  # horizontal.go scaleUpLimitFactor
SCALE_UP_LIMIT_MINIMUM = 4.0  # horizontal.go scaleUpLimitMinimum
DEFAULT_DOWNSCALE_STABILIZATION_S = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization

# HPA condition reasons (ScalingLimited / AbleToScale / ScalingActive).
SCALE_UP_LIMIT = "ScaleUpLimit"
SCALE_DOWN_LIMIT = "ScaleDownLimit"
TOO_MANY_REPLICAS = "TooManyReplicas"
TOO_FEW_REPLICAS = "TooFewReplicas"
DESIRED_WITHIN_RANGE = "DesiredWithinRange"
SCALE_UP_STABILIZED = "ScaleUpStabilized"
SCALE_DOWN_STABILIZED = "ScaleDownStabilized"
READY_FOR_NEW_SCALE = "ReadyForNewScale"
SCALING_DISABLED = "ScalingDisabled"
FAILED_GET_METRICS = "FailedGetMetrics"


@dataclass(frozen=True)
class Recommendation:
    """`timestampedRecommendation`: one unstabilized proposal and when it was made."""

    replicas: int
    time_s: float


@dataclass(frozen=True)
class ScaleEvent:
    """`timestampedScaleEvent`: a rescale of `replica_change` pods (always >= 0) at `time_s`."""

    replica_change: int
    time_s: float
    outdated: bool = False


@dataclass(frozen=True)
class HpaHistory:
    """Per-HPA controller memory: `recommendations[key]`, `scaleUpEvents[key]`, `scaleDownEvents[key]`."""

    recommendations: tuple[Recommendation, ...] = ()
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()


# --------------------------------------------------------------------------- no spec.behavior


def record_initial_recommendation(history: HpaHistory, current_replicas: int, now_s: float) -> HpaHistory:
    """`recordInitialRecommendation`: the first sync remembers the current scale (blocks early scale-down)."""
    if history.recommendations:
        return history
    return replace(history, recommendations=(Recommendation(current_replicas, now_s),))


def _store_recommendation(
    recs: tuple[Recommendation, ...], old_index: int | None, rec: Recommendation
) -> tuple[Recommendation, ...]:
    if old_index is None:
        return (*recs, rec)
    return (*recs[:old_index], rec, *recs[old_index + 1 :])


def stabilize_recommendation(
    history: HpaHistory, prenormalized_desired: int, *, now_s: float, window_s: float
) -> tuple[int, HpaHistory]:
    """`stabilizeRecommendation`: max over recommendations not older than the window; stores the new one.

    A recommendation is expired when `timestamp < now - window` (Go `Before`), so age == window counts.
    The new recommendation replaces the *last* expired slot found, else is appended.
    """
    max_recommendation = prenormalized_desired
    old_index: int | None = None
    cutoff_s = now_s - window_s
    for i, rec in enumerate(history.recommendations):
        if rec.time_s < cutoff_s:
            old_index = i
        elif rec.replicas > max_recommendation:
            max_recommendation = rec.replicas
    recs = _store_recommendation(history.recommendations, old_index, Recommendation(prenormalized_desired, now_s))
    return max_recommendation, replace(history, recommendations=recs)


def calculate_scale_up_limit(current_replicas: int) -> int:
    """`calculateScaleUpLimit`: int32(max(2*current, 4))."""
    return int(max(SCALE_UP_LIMIT_FACTOR * float(current_replicas), SCALE_UP_LIMIT_MINIMUM))


def convert_desired_replicas_with_rules(
    current_replicas: int, desired_replicas: int, min_replicas: int, max_replicas: int
) -> tuple[int, str]:
    """`convertDesiredReplicasWithRules`: clamp to [min, min(max, scale-up limit)] -> (replicas, reason)."""
    scale_up_limit = calculate_scale_up_limit(current_replicas)
    if max_replicas > scale_up_limit:
        maximum_allowed, limiting = scale_up_limit, SCALE_UP_LIMIT
    else:
        maximum_allowed, limiting = max_replicas, TOO_MANY_REPLICAS
    if desired_replicas < min_replicas:
        return min_replicas, TOO_FEW_REPLICAS
    if desired_replicas > maximum_allowed:
        return maximum_allowed, limiting
    return desired_replicas, DESIRED_WITHIN_RANGE


def normalize_desired_replicas(
    history: HpaHistory,
    *,
    current_replicas: int,
    prenormalized_desired: int,
    min_replicas: int,
    max_replicas: int,
    now_s: float,
    downscale_window_s: float = DEFAULT_DOWNSCALE_STABILIZATION_S,
) -> tuple[int, str, HpaHistory]:
    """`normalizeDesiredReplicas` (no `spec.behavior`): 300 s max-stabilization, then the classic limits.

    Returns (replicas, ScalingLimited reason, new history).
    """
    stabilized, history = stabilize_recommendation(
        history, prenormalized_desired, now_s=now_s, window_s=downscale_window_s
    )
    desired, reason = convert_desired_replicas_with_rules(current_replicas, stabilized, min_replicas, max_replicas)
    return desired, reason, history


# --------------------------------------------------------------------------- with spec.behavior


def stabilize_recommendation_with_behaviors(
    history: HpaHistory,
    behavior: Behavior,
    *,
    current_replicas: int,
    desired_replicas: int,
    now_s: float,
) -> tuple[int, str, HpaHistory]:
    """`stabilizeRecommendationWithBehaviors`: up follows the min over the up window, down the max.

    Recommendations count when `timestamp > now - window` (Go `After`). The unstabilized
    recommendation is stored in the last slot older than both windows, else appended.
    Returns (stabilized, "ScaleUpStabilized" | "ScaleDownStabilized", new history).
    """
    up_recommendation = desired_replicas
    up_cutoff_s = now_s - behavior.scale_up.stabilization_window_s
    down_recommendation = desired_replicas
    down_cutoff_s = now_s - behavior.scale_down.stabilization_window_s
    old_index: int | None = None
    for i, rec in enumerate(history.recommendations):
        if rec.time_s > up_cutoff_s:
            up_recommendation = min(rec.replicas, up_recommendation)
        if rec.time_s > down_cutoff_s:
            down_recommendation = max(rec.replicas, down_recommendation)
        if rec.time_s < up_cutoff_s and rec.time_s < down_cutoff_s:
            old_index = i
    recommendation = current_replicas
    if recommendation < up_recommendation:
        recommendation = up_recommendation
    if recommendation > down_recommendation:
        recommendation = down_recommendation
    recs = _store_recommendation(history.recommendations, old_index, Recommendation(desired_replicas, now_s))
    reason = SCALE_UP_STABILIZED if desired_replicas >= current_replicas else SCALE_DOWN_STABILIZED
    return recommendation, reason, replace(history, recommendations=recs)


def get_replicas_change_per_period(period_s: float, events: Sequence[ScaleEvent], now_s: float) -> int:
    """`getReplicasChangePerPeriod`: sum of the changes with `timestamp > now - period` (Go `After`)."""
    cutoff_s = now_s - period_s
    return sum(e.replica_change for e in events if e.time_s > cutoff_s)


def _period_start_replicas(
    current_replicas: int,
    period_s: float,
    scale_up_events: Sequence[ScaleEvent],
    scale_down_events: Sequence[ScaleEvent],
    now_s: float,
) -> int:
    added = get_replicas_change_per_period(period_s, scale_up_events, now_s)
    deleted = get_replicas_change_per_period(period_s, scale_down_events, now_s)
    return current_replicas - added + deleted


def calculate_scale_up_limit_with_behaviors(
    current_replicas: int,
    scale_up_events: Sequence[ScaleEvent],
    scale_down_events: Sequence[ScaleEvent],
    rules: ScalingRules,
    *,
    now_s: float,
) -> int:
    """`calculateScaleUpLimitWithScalingRules`: the highest count the scale-up policies allow now."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current_replicas
    use_min = rules.select_policy is SelectPolicy.MIN
    result = MAX_INT32 if use_min else MIN_INT32
    for policy in rules.policies:
        start = _period_start_replicas(current_replicas, policy.period_s, scale_up_events, scale_down_events, now_s)
        if policy.type is PolicyType.PODS:
            proposed = start + policy.value
        else:  # Percent; rounded up so a small target can always grow
            proposed = math.ceil(float(start) * (1 + float(policy.value) / 100))
        result = min(result, proposed) if use_min else max(result, proposed)
    return result


calculate_scale_up_limit_with_scaling_rules = calculate_scale_up_limit_with_behaviors  # the Go name


def calculate_scale_down_limit_with_behaviors(
    current_replicas: int,
    scale_up_events: Sequence[ScaleEvent],
    scale_down_events: Sequence[ScaleEvent],
    rules: ScalingRules,
    *,
    now_s: float,
) -> int:
    """`calculateScaleDownLimitWithBehaviors`: the lowest count the scale-down policies allow now."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current_replicas
    use_min_change = rules.select_policy is SelectPolicy.MIN  # the smallest change = the largest count
    result = MIN_INT32 if use_min_change else MAX_INT32
    for policy in rules.policies:
        start = _period_start_replicas(current_replicas, policy.period_s, scale_up_events, scale_down_events, now_s)
        if policy.type is PolicyType.PODS:
            proposed = start - policy.value
        else:  # Percent; int32(float) truncates toward zero
            proposed = int(float(start) * (1 - float(policy.value) / 100))
        result = max(result, proposed) if use_min_change else min(result, proposed)
    return result


def convert_desired_replicas_with_behavior_rate(
    history: HpaHistory,
    behavior: Behavior,
    *,
    current_replicas: int,
    desired_replicas: int,
    min_replicas: int,
    max_replicas: int,
    now_s: float,
) -> tuple[int, str]:
    """`convertDesiredReplicasWithBehaviorRate`: apply the policies' rate limits and [min, max]."""
    up, down = history.scale_up_events, history.scale_down_events
    if desired_replicas > current_replicas:
        limit = calculate_scale_up_limit_with_behaviors(current_replicas, up, down, behavior.scale_up, now_s=now_s)
        limit = max(limit, current_replicas)  # no further scale-up until old events expire
        if max_replicas > limit:
            maximum_allowed, reason = limit, SCALE_UP_LIMIT
        else:
            maximum_allowed, reason = max_replicas, TOO_MANY_REPLICAS
        if desired_replicas > maximum_allowed:
            return maximum_allowed, reason
    elif desired_replicas < current_replicas:
        limit = calculate_scale_down_limit_with_behaviors(current_replicas, up, down, behavior.scale_down, now_s=now_s)
        limit = min(limit, current_replicas)
        if min_replicas < limit:
            minimum_allowed, reason = limit, SCALE_DOWN_LIMIT
        else:
            minimum_allowed, reason = min_replicas, TOO_FEW_REPLICAS
        if desired_replicas < minimum_allowed:
            return minimum_allowed, reason
    return desired_replicas, DESIRED_WITHIN_RANGE


def normalize_desired_replicas_with_behaviors(
    history: HpaHistory,
    behavior: Behavior,
    *,
    current_replicas: int,
    prenormalized_desired: int,
    min_replicas: int,
    max_replicas: int,
    now_s: float,
) -> tuple[int, str, HpaHistory]:
    """`normalizeDesiredReplicasWithBehaviors`: stabilization windows, then the policies' rate limits.

    `behavior` is after API defaulting (the scale-down window already filled in, as
    `maybeInitScaleDownStabilizationWindow` does). Returns (replicas, ScalingLimited reason, new history);
    the history has the unstabilized recommendation stored, not the scale event (see `store_scale_event`).
    """
    stabilized, _, history = stabilize_recommendation_with_behaviors(
        history,
        behavior,
        current_replicas=current_replicas,
        desired_replicas=prenormalized_desired,
        now_s=now_s,
    )
    desired, reason = convert_desired_replicas_with_behavior_rate(
        history,
        behavior,
        current_replicas=current_replicas,
        desired_replicas=stabilized,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        now_s=now_s,
    )
    return desired, reason, history


def get_longest_policy_period(rules: ScalingRules) -> int:
    """`getLongestPolicyPeriod`."""
    return max((p.period_s for p in rules.policies), default=0)


def mark_scale_events_outdated(
    events: Sequence[ScaleEvent], longest_policy_period_s: float, now_s: float
) -> tuple[ScaleEvent, ...]:
    """`markScaleEventsOutdated`: events with `timestamp < now - longest period` become reusable slots."""
    cutoff_s = now_s - longest_policy_period_s
    return tuple(replace(e, outdated=True) if e.time_s < cutoff_s else e for e in events)


def _store_event(events: Sequence[ScaleEvent], longest_s: float, change: int, now_s: float) -> tuple[ScaleEvent, ...]:
    marked = mark_scale_events_outdated(events, longest_s, now_s)
    old_index: int | None = None
    for i, event in enumerate(marked):
        if event.outdated:
            old_index = i
    new_event = ScaleEvent(change, now_s, False)
    if old_index is None:
        return (*marked, new_event)
    return (*marked[:old_index], new_event, *marked[old_index + 1 :])


def store_scale_event(
    history: HpaHistory, behavior: Behavior | None, *, prev_replicas: int, new_replicas: int, now_s: float
) -> HpaHistory:
    """`storeScaleEvent`: record a rescale (only with `spec.behavior`), reusing the last outdated slot."""
    if behavior is None:
        return history
    if new_replicas > prev_replicas:
        events = _store_event(
            history.scale_up_events,
            get_longest_policy_period(behavior.scale_up),
            new_replicas - prev_replicas,
            now_s,
        )
        return replace(history, scale_up_events=events)
    events = _store_event(
        history.scale_down_events,
        get_longest_policy_period(behavior.scale_down),
        prev_replicas - new_replicas,
        now_s,
    )
    return replace(history, scale_down_events=events)


# --------------------------------------------------------------------------- one reconcile


@dataclass(frozen=True)
class ReconcileResult:
    """Outcome of the replica-count part of one `reconcileAutoscaler` pass."""

    desired_replicas: int
    rescale: bool
    reason: str  # ScalingLimited reason, or ScalingDisabled / FailedGetMetrics / shortcut text
    metric_desired_replicas: int | None  # max over valid metric proposals (None: not computed)
    history: HpaHistory


def reconcile(
    history: HpaHistory,
    behavior: Behavior | None,
    *,
    current_replicas: int,
    proposals: Sequence[int | None],
    min_replicas: int,
    max_replicas: int,
    now_s: float,
    downscale_window_s: float = DEFAULT_DOWNSCALE_STABILIZATION_S,
) -> ReconcileResult:
    """The replica-count path of `reconcileAutoscaler` + `computeReplicasForMetrics`.

    `current_replicas` is `scale.spec.replicas`; `proposals` holds one entry per metric, None for a metric
    that failed. Records the initial recommendation, applies the zero/max/min shortcuts, takes the max over
    valid proposals (a failed metric blocks scale-down; all failed: do nothing), normalizes, and stores the
    scale event when the count changes.
    """
    history = record_initial_recommendation(history, current_replicas, now_s)
    if current_replicas == 0 and min_replicas != 0:
        return ReconcileResult(0, False, SCALING_DISABLED, None, history)
    if current_replicas > max_replicas:
        desired, reason, metric_desired = max_replicas, "Current number of replicas above max", None
    elif current_replicas < min_replicas:
        desired, reason, metric_desired = min_replicas, "Current number of replicas below min", None
    else:
        valid = [p for p in proposals if p is not None]
        invalid = len(proposals) - len(valid)
        replicas = 0
        for p in valid:
            if replicas == 0 or p > replicas:
                replicas = p
        if invalid >= len(proposals) or (invalid > 0 and replicas < current_replicas):
            return ReconcileResult(current_replicas, False, FAILED_GET_METRICS, None, history)
        metric_desired = replicas
        if behavior is None:
            desired, reason, history = normalize_desired_replicas(
                history,
                current_replicas=current_replicas,
                prenormalized_desired=replicas,
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                now_s=now_s,
                downscale_window_s=downscale_window_s,
            )
        else:
            desired, reason, history = normalize_desired_replicas_with_behaviors(
                history,
                behavior,
                current_replicas=current_replicas,
                prenormalized_desired=replicas,
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                now_s=now_s,
            )
    rescale = desired != current_replicas
    if rescale:
        history = store_scale_event(
            history, behavior, prev_replicas=current_replicas, new_replicas=desired, now_s=now_s
        )
    return ReconcileResult(desired, rescale, reason, metric_desired, history)
