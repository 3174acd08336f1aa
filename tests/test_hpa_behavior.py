"""Kubernetes' own normalization unit tests (horizontal_test.go), ported to `autoscaler.core.hpa`.

Test ids are the Go test name plus the table entry's name. `generateScalingRules` and
`generateEventsUniformDistribution` are re-implemented below exactly as the Go helpers are, and
`GenerateHPAScaleUpRules` / `GenerateHPAScaleDownRules` (API defaulting) fill unset fields.
Plus hypothesis properties: the result stays within [min, max]; with behaviors the change within
any policy period never exceeds what the policy allows.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.hpa import (
    HpaHistory,
    Recommendation,
    ScaleEvent,
    calculate_scale_down_limit_with_behaviors,
    calculate_scale_up_limit,
    calculate_scale_up_limit_with_behaviors,
    convert_desired_replicas_with_behavior_rate,
    convert_desired_replicas_with_rules,
    get_replicas_change_per_period,
    reconcile,
    stabilize_recommendation,
    stabilize_recommendation_with_behaviors,
    store_scale_event,
)
from autoscaler.spec.types import (
    Behavior,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    default_scale_down,
    default_scale_up,
)

NOW_S = 10_000.0


def gen_rules(pods: int, pods_period: int, percent: int, percent_period: int, window: int, *, up: bool) -> ScalingRules:
    """generateScalingRules + GenerateHPAScale{Up,Down}Rules: no policies given -> the default ones."""
    policies = []
    if pods:
        policies.append(ScalingPolicy(PolicyType.PODS, pods, pods_period))
    if percent:
        policies.append(ScalingPolicy(PolicyType.PERCENT, percent, percent_period))
    default = default_scale_up() if up else default_scale_down()
    return ScalingRules(window, SelectPolicy.MAX, tuple(policies) or default.policies)


def events_uniform(raw: list[int], period_s: int) -> tuple[ScaleEvent, ...]:
    """generateEventsUniformDistribution: event i in the middle of segment i of [now-period, now]."""
    seg = period_s / len(raw)
    out = []
    for idx, change in enumerate(raw):
        boundary = int(period_s - seg * (idx + 1) + seg / 2)  # time.Duration(float) truncates
        out.append(ScaleEvent(change, NOW_S - boundary))
    return tuple(out)


# --------------------------------------------------------------------------- TestNormalizeDesiredReplicas


@pytest.mark.parametrize(
    ("recs", "desired", "expected", "log_len"),
    [
        pytest.param([], 5, 5, 1, id="TestNormalizeDesiredReplicas/empty log"),
        pytest.param([(4, -120), (5, -60)], 3, 5, 3, id="TestNormalizeDesiredReplicas/stabilize"),
        pytest.param([(1, -120), (2, -60)], 3, 3, 3, id="TestNormalizeDesiredReplicas/no stabilize"),
        pytest.param(
            [(10, -600), (9, -540)], 3, 3, 2, id="TestNormalizeDesiredReplicas/no stabilize - old recommendations"
        ),
        pytest.param(
            [(10, -600), (4, -60), (5, -120), (9, -540)],
            3,
            5,
            4,
            id="TestNormalizeDesiredReplicas/stabilize - old recommendations",
        ),
    ],
)
def test_stabilize_recommendation(recs: list[tuple[int, int]], desired: int, expected: int, log_len: int) -> None:
    history = HpaHistory(recommendations=tuple(Recommendation(r, NOW_S + dt) for r, dt in recs))
    got, new_history = stabilize_recommendation(history, desired, now_s=NOW_S, window_s=300.0)
    assert got == expected
    assert len(new_history.recommendations) == log_len
    assert Recommendation(desired, NOW_S) in new_history.recommendations
    assert history.recommendations == tuple(Recommendation(r, NOW_S + dt) for r, dt in recs)  # immutable


def test_stabilize_recommendation_counts_age_equal_to_window() -> None:
    """Go's `Before(cutoff)`: a recommendation exactly 300 s old still holds the scale."""
    history = HpaHistory(recommendations=(Recommendation(8, NOW_S - 300.0),))
    assert stabilize_recommendation(history, 2, now_s=NOW_S, window_s=300.0)[0] == 8
    assert stabilize_recommendation(history, 2, now_s=NOW_S + 0.001, window_s=300.0)[0] == 2


# --------------------------------------------------------------------------- TestNormalizeDesiredReplicasWithBehavior

NB = "TestNormalizeDesiredReplicasWithBehavior/"


@pytest.mark.parametrize(
    ("recs", "current", "desired", "expected", "expected_recs", "up_window", "down_window"),
    [
        pytest.param([], 100, 5, 5, [5], 0, 0, id=NB + "empty recommendations for scaling down"),
        pytest.param([(4, -120), (5, -60)], 100, 3, 5, [4, 5, 3], 0, 180, id=NB + "simple scale down stabilization"),
        pytest.param([(4, -120), (5, -60)], 1, 7, 4, [4, 5, 7], 300, 0, id=NB + "simple scale up stabilization"),
        pytest.param([(1, -120), (2, -60)], 100, 3, 3, [1, 2, 3], 300, 0, id=NB + "no scale down stabilization"),
        pytest.param([(4, -120), (5, -60)], 1, 3, 3, [4, 5, 3], 0, 300, id=NB + "no scale up stabilization"),
        pytest.param(
            [(10, -600), (9, -540)],
            100,
            3,
            3,
            [10, 3],
            0,
            0,
            id=NB + "no scale down stabilization, reuse recommendation element",
        ),
        pytest.param(
            [(10, -600), (9, -540)],
            1,
            100,
            100,
            [10, 100],
            0,
            0,
            id=NB + "no scale up stabilization, reuse recommendation element",
        ),
        pytest.param(
            [(10, -600), (4, -60), (5, -120), (9, -540)],
            100,
            3,
            5,
            [10, 4, 5, 3],
            0,
            180,
            id=NB + "scale down stabilization, reuse one of obsolete recommendation element",
        ),
        pytest.param(
            [(10, -6000), (6, -60), (5, -120), (9, -180)],
            1,
            100,
            5,
            [100, 6, 5, 9],
            300,
            0,
            id=NB + "scale up stabilization, reuse one of obsolete recommendation element",
        ),
        pytest.param(
            [(2, -6000), (3, -180)],
            2,
            1,
            2,
            None,
            300,
            300,
            id=NB + "scale up and down stabilization, do not scale up when prenormalized rec goes down",
        ),
        pytest.param(
            [(2, -6000), (1, -180)],
            2,
            3,
            2,
            None,
            300,
            300,
            id=NB + "scale up and down stabilization, do not scale down when prenormalized rec goes up",
        ),
    ],
)
def test_stabilize_recommendation_with_behaviors(
    recs: list[tuple[int, int]],
    current: int,
    desired: int,
    expected: int,
    expected_recs: list[int] | None,
    up_window: int,
    down_window: int,
) -> None:
    behavior = Behavior(
        scale_up=ScalingRules(up_window, SelectPolicy.MAX, default_scale_up().policies),
        scale_down=ScalingRules(down_window, SelectPolicy.MAX, default_scale_down().policies),
    )
    history = HpaHistory(recommendations=tuple(Recommendation(r, NOW_S + dt) for r, dt in recs))
    got, _, new_history = stabilize_recommendation_with_behaviors(
        history, behavior, current_replicas=current, desired_replicas=desired, now_s=NOW_S
    )
    assert got == expected
    if expected_recs is not None:
        assert [r.replicas for r in new_history.recommendations] == expected_recs


# --------------------------------------------------------------------------- TestScalingWithRules

SR = "TestScalingWithRules/"
Rules = tuple[int, int, int, int, int]  # generateScalingRules(pods, podsPeriod, percent, percentPeriod, window)
Events = tuple[list[int], int]  # generateEventsUniformDistribution(rawEvents, periodSeconds)


def sc(
    name: str,
    current: int,
    desired: int,
    expected: int,
    condition: str,
    *,
    lo: int = 1,
    hi: int = 1000,
    up: Rules | None = None,
    down: Rules | None = None,
    up_ev: Events | None = None,
    down_ev: Events | None = None,
) -> object:
    return pytest.param(current, desired, expected, condition, lo, hi, up, down, up_ev, down_ev, id=SR + name)


SCALING_CASES = [
    sc("prenormalized desired replicas within range", 5, 7, 7, "DesiredWithinRange", lo=3, hi=8),
    sc("prenormalized desired replicas < minReplicas", 3, 1, 2, "TooFewReplicas", lo=2, hi=8),
    sc("prenormalized desired replicas within range when minReplicas is 0", 1, 0, 0, "DesiredWithinRange", lo=0, hi=10),
    sc("maxReplicas is the limit because maxReplicas < scaleUpLimit", 20, 1000, 10, "TooManyReplicas", hi=10),
    sc(
        "desired replica count is more than the maximum replica count",
        100, 1000, 150, "TooManyReplicas", lo=100, hi=150,
    ),
    sc(
        "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies",
        3, 1000, 4, "ScaleUpLimit", hi=2000, up=(0, 0, 1, 60, 0),
    ),
    sc("scaleUp with default behavior", 10, 50, 20, "ScaleUpLimit"),
    sc("scaleUp with pods policy larger than percent policy", 10, 500, 110, "ScaleUpLimit", up=(100, 60, 100, 60, 0)),
    sc("scaleUp with percent policy larger than pods policy", 10, 500, 20, "ScaleUpLimit", up=(2, 60, 100, 60, 0)),
    sc(
        "scaleUp with spec MaxReplicas limitation with large pod policy",
        10, 50, 50, "DesiredWithinRange", up=(100, 60, 0, 0, 0),
    ),
    sc("scaleUp with pod policy limitation", 10, 50, 40, "ScaleUpLimit", up=(30, 60, 0, 0, 0)),
    sc("scaleUp with percent policy limitation", 10, 50, 30, "ScaleUpLimit", up=(0, 0, 200, 60, 0)),
    sc(
        "scaleDown with percent policy larger than pod policy",
        100, 2, 80, "ScaleDownLimit", down=(20, 60, 1, 60, 300),
    ),
    sc("scaleDown with pod policy larger than percent policy", 100, 2, 98, "ScaleDownLimit", down=(2, 60, 1, 60, 300)),
    sc(
        "scaleDown with spec MinReplicas limitation with large percent policy",
        10, 2, 5, "TooFewReplicas", lo=5, down=(0, 0, 100, 60, 300),
    ),
    sc("scaleDown with pod policy limitation", 10, 2, 5, "ScaleDownLimit", down=(5, 60, 0, 0, 300)),
    sc("scaleDown with percent policy limitation", 10, 5, 5, "DesiredWithinRange", down=(0, 0, 50, 60, 300)),
    sc(
        "scaleUp with spec MaxReplicas limitation with large pod policy and events",
        100, 500, 200, "TooManyReplicas", hi=200, up=(300, 60, 0, 0, 0), up_ev=([1, 5, 9], 120),
    ),
    sc(
        "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
        100, 500, 100, "ScaleUpLimit", up=(5, 120, 0, 0, 0), up_ev=([1, 5, 9], 120),
    ),
    sc(
        "scaleUp with pod policy and previous scale up events",
        100, 500, 235, "ScaleUpLimit", up=(150, 120, 0, 0, 0), up_ev=([1, 5, 9], 120),
    ),
    sc(
        "scaleUp with percent policy and previous scale up events",
        100, 500, 255, "ScaleUpLimit", up=(0, 0, 200, 120, 0), up_ev=([1, 5, 9], 120),
    ),
    sc(
        "scaleUp with percent policy and previous scale up and down events",
        6, 24, 16, "ScaleUpLimit", up=(0, 0, 300, 300, 0), up_ev=([4], 120), down_ev=([2], 120),
    ),
    sc("scaleDown with default policy and previous events", 10, 5, 5, "DesiredWithinRange", down_ev=([1, 5, 9], 120)),
    sc(
        "scaleDown with spec MinReplicas limitation with large pod policy and previous events",
        100, 0, 5, "TooFewReplicas", lo=5, down=(130, 120, 0, 0, 300), down_ev=([1, 5, 9], 120),
    ),
    sc(
        "scaleDown with pod policy limitation and previous events",
        100, 2, 100, "ScaleDownLimit", down=(5, 120, 0, 0, 300), down_ev=([1, 5, 9], 120),
    ),
    sc(
        "scaleDown with percent policy limitation and previous events",
        100, 0, 56, "ScaleDownLimit", down=(0, 0, 50, 120, 300), down_ev=([2, 4, 6], 120),
    ),
    sc(
        "scaleDown with percent policy and previous scale up and down events",
        10, 1, 6, "ScaleDownLimit", down=(0, 0, 50, 180, 0), up_ev=([2], 120), down_ev=([4], 120),
    ),
    sc(
        "scaleDown with previous events preventing further scale down",
        100, 0, 100, "ScaleDownLimit", down=(0, 0, 10, 120, 300), down_ev=([10, 10, 10], 120),
    ),
    sc(
        "scaleDown with with previous events still allowing more scale down",
        10, 5, 5, "DesiredWithinRange", down=(0, 0, 1000, 120, 300), down_ev=([10, 10, 10], 120),
    ),
    sc(
        "check that events were marked 'outdated' for two different policies in the behavior for up",
        100, 200, 200, "DesiredWithinRange", up=(1000, 30, 100, 60, 0), up_ev=([8, 12, 9, 11], 120),
    ),
    sc(
        "check that events were marked 'outdated' for two different policies in the behavior for down",
        100, 5, 5, "DesiredWithinRange", down=(1000, 30, 100, 60, 300), down_ev=([8, 12, 9, 11], 120),
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("current", "desired", "expected", "condition", "lo", "hi", "up", "down", "up_ev", "down_ev"), SCALING_CASES
)
def test_scaling_with_rules(
    current: int,
    desired: int,
    expected: int,
    condition: str,
    lo: int,
    hi: int,
    up: Rules | None,
    down: Rules | None,
    up_ev: Events | None,
    down_ev: Events | None,
) -> None:
    behavior = Behavior(
        scale_up=gen_rules(*up, up=True) if up else default_scale_up(),
        scale_down=gen_rules(*down, up=False) if down else default_scale_down(),
    )
    history = HpaHistory(
        scale_up_events=events_uniform(*up_ev) if up_ev else (),
        scale_down_events=events_uniform(*down_ev) if down_ev else (),
    )
    got = convert_desired_replicas_with_behavior_rate(
        history,
        behavior,
        current_replicas=current,
        desired_replicas=desired,
        min_replicas=lo,
        max_replicas=hi,
        now_s=NOW_S,
    )
    assert got == (expected, condition)


@pytest.mark.parametrize(
    ("current", "desired", "min_r", "max_r", "expected", "condition"),
    [
        pytest.param(5, 7, 3, 8, 7, "DesiredWithinRange", id="TestConvertDesiredReplicasWithRules/within range"),
        pytest.param(3, 1, 2, 8, 2, "TooFewReplicas", id="TestConvertDesiredReplicasWithRules/< minReplicas"),
        pytest.param(1, 0, 0, 10, 0, "DesiredWithinRange", id="TestConvertDesiredReplicasWithRules/zeroed"),
        pytest.param(20, 1000, 1, 10, 10, "TooManyReplicas", id="TestConvertDesiredReplicasWithRules/maxReplicas"),
        pytest.param(3, 1000, 1, 2000, 6, "ScaleUpLimit", id="TestConvertDesiredReplicasWithRules/scaleUpLimit"),
    ],
)
def test_convert_desired_replicas_with_rules(
    current: int, desired: int, min_r: int, max_r: int, expected: int, condition: str
) -> None:
    assert convert_desired_replicas_with_rules(current, desired, min_r, max_r) == (expected, condition)
    assert calculate_scale_up_limit(3) == 6 and calculate_scale_up_limit(1) == 4


def test_calculate_limits_with_min_select_policy() -> None:
    """TestCalculateScaleUpLimitWithScalingRules / TestCalculateScaleDownLimitWithBehaviors."""
    rules = ScalingRules(
        300,
        SelectPolicy.MIN,
        (ScalingPolicy(PolicyType.PODS, 2, 60), ScalingPolicy(PolicyType.PERCENT, 50, 60)),
    )
    assert calculate_scale_up_limit_with_behaviors(1, (), (), rules, now_s=NOW_S) == 2
    assert calculate_scale_down_limit_with_behaviors(5, (), (), rules, now_s=NOW_S) == 3
    disabled = ScalingRules(0, SelectPolicy.DISABLED, rules.policies)
    assert calculate_scale_up_limit_with_behaviors(7, (), (), disabled, now_s=NOW_S) == 7


# --------------------------------------------------------------------------- TestStoreScaleEvents

ST = "TestStoreScaleEvents/"
RULES_10_60_100_60 = (10, 60, 100, 60, 0)


@pytest.mark.parametrize(
    ("prev", "rules", "expected_new", "expected_change"),
    [
        pytest.param([], None, [], 0, id=ST + "empty entries with default behavior"),
        pytest.param([], RULES_10_60_100_60, [(5, False)], 0, id=ST + "empty entries with two-policy-behavior"),
        pytest.param(
            [(7, -61)], None, [(7, False)], 0, id=ST + "one outdated entry to be kept untouched without behavior"
        ),
        pytest.param(
            [(7, -61)], RULES_10_60_100_60, [(5, False)], 0, id=ST + "one outdated entry to be replaced with behavior"
        ),
        pytest.param(
            [(7, -58)],
            RULES_10_60_100_60,
            [(7, False), (5, False)],
            7,
            id=ST + "one actual entry to be not touched with behavior",
        ),
        pytest.param(
            [(7, -61), (6, -59)],
            (10, 60, 0, 0, 0),
            [(5, False), (6, False)],
            6,
            id=ST + "two entries, one of them to be replaced",
        ),
        pytest.param(
            [(8, -29), (6, -59), (7, -61), (9, -61)],
            (10, 60, 100, 30, 0),
            [(8, False), (6, False), (7, True), (5, False)],
            14,
            id=ST + "replace one entry, use policies with different periods",
        ),
        pytest.param(
            [(7, -58), (6, -59)],
            (10, 120, 100, 30, 0),
            [(7, False), (6, False), (5, False)],
            13,
            id=ST + "two entries, both actual",
        ),
    ],
)
def test_store_scale_events(
    prev: list[tuple[int, int]],
    rules: tuple[int, int, int, int, int] | None,
    expected_new: list[tuple[int, bool]],
    expected_change: int,
) -> None:
    events = tuple(ScaleEvent(c, NOW_S + dt) for c, dt in prev)
    behavior = None if rules is None else Behavior(gen_rules(*rules, up=True), gen_rules(*rules, up=False))
    # scale up
    assert get_replicas_change_per_period(60, events, NOW_S) == expected_change
    up = store_scale_event(HpaHistory(scale_up_events=events), behavior, prev_replicas=10, new_replicas=15, now_s=NOW_S)
    got = [(e.replica_change, e.outdated) for e in up.scale_up_events] if behavior else []
    assert got == (expected_new if behavior else [])
    if behavior is None:
        assert up.scale_up_events == events
    # scale down
    down = store_scale_event(
        HpaHistory(scale_down_events=events), behavior, prev_replicas=10, new_replicas=5, now_s=NOW_S
    )
    if behavior is not None:
        assert [(e.replica_change, e.outdated) for e in down.scale_down_events] == expected_new
        assert down.scale_up_events == ()
    else:
        assert down.scale_down_events == events


# --------------------------------------------------------------------------- reconcile (horizontal.go)


def test_reconcile_blocks_scale_down_when_a_metric_failed() -> None:
    """TestNoScaleDownOneMetricInvalid / ...OneMetricEmpty: a failed metric blocks scale-down."""
    r = reconcile(HpaHistory(), None, current_replicas=5, proposals=[3, None], min_replicas=2, max_replicas=6, now_s=0)
    assert (r.desired_replicas, r.rescale) == (5, False)
    # TestScaleUpOneMetricEmpty: scale up on the valid metric
    r = reconcile(HpaHistory(), None, current_replicas=3, proposals=[4, None], min_replicas=2, max_replicas=6, now_s=0)
    assert (r.desired_replicas, r.rescale) == (4, True)


def test_reconcile_initial_recommendation_blocks_early_scale_down() -> None:
    h = HpaHistory()
    r = reconcile(h, None, current_replicas=6, proposals=[2], min_replicas=1, max_replicas=10, now_s=0.0)
    assert r.desired_replicas == 6  # the first sight stored 6 at t=0
    r = reconcile(r.history, None, current_replicas=6, proposals=[2], min_replicas=1, max_replicas=10, now_s=301.0)
    assert r.desired_replicas == 2


def test_reconcile_shortcuts() -> None:
    """TestScaleDownRCImmediately (current above max goes straight to max), zero replicas disables scaling."""
    r = reconcile(HpaHistory(), None, current_replicas=6, proposals=[9], min_replicas=2, max_replicas=5, now_s=0)
    assert (r.desired_replicas, r.rescale) == (5, True)
    r = reconcile(HpaHistory(), None, current_replicas=0, proposals=[9], min_replicas=1, max_replicas=5, now_s=0)
    assert (r.desired_replicas, r.rescale, r.reason) == (0, False, "ScalingDisabled")


# --------------------------------------------------------------------------- properties

policy_st = st.builds(
    ScalingPolicy,
    st.sampled_from([PolicyType.PODS, PolicyType.PERCENT]),
    st.integers(1, 200),
    st.integers(1, 120),
)
rules_st = st.builds(
    ScalingRules,
    st.integers(0, 300),
    st.sampled_from([SelectPolicy.MAX, SelectPolicy.MIN]),
    st.lists(policy_st, min_size=1, max_size=3).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(
    current=st.integers(1, 60),
    desired=st.lists(st.integers(0, 200), min_size=1, max_size=25),
    min_r=st.integers(1, 5),
    span=st.integers(0, 60),
    up=rules_st,
    down=rules_st,
    behaviored=st.booleans(),
)
def test_replicas_stay_within_bounds_and_policies(
    current: int, desired: list[int], min_r: int, span: int, up: ScalingRules, down: ScalingRules, behaviored: bool
) -> None:
    max_r = min_r + span
    current = min(max(current, min_r), max_r)
    behavior = Behavior(up, down) if behaviored else None
    history = HpaHistory()
    changes: list[tuple[float, int]] = []  # (time, signed change)
    for step, d in enumerate(desired):
        now = step * 15.0
        r = reconcile(
            history,
            behavior,
            current_replicas=current,
            proposals=[d],
            min_replicas=min_r,
            max_replicas=max_r,
            now_s=now,
        )
        history = r.history
        assert min_r <= r.desired_replicas <= max_r
        if behavior is None:
            assert r.desired_replicas <= max(calculate_scale_up_limit(current), min_r)
        else:
            _assert_within_policies(behavior, changes, current, r.desired_replicas, now)
        if r.rescale:
            changes.append((now, r.desired_replicas - current))
        current = r.desired_replicas


def _assert_within_policies(
    behavior: Behavior, changes: list[tuple[float, int]], current: int, new: int, now: float
) -> None:
    """No step may move past the limit the selected policy computes from the period's start."""
    for rules, sign in ((behavior.scale_up, 1), (behavior.scale_down, -1)):
        if sign * (new - current) <= 0:
            continue
        bounds = []
        for p in rules.policies:
            recent = [c for t, c in changes if t > now - p.period_s]
            start = current - sum(c for c in recent if c > 0) + sum(-c for c in recent if c < 0)
            if p.type is PolicyType.PODS:
                bounds.append(start + sign * p.value)
            elif sign > 0:
                bounds.append(math.ceil(start * (1 + p.value / 100)))
            else:
                bounds.append(int(start * (1 - p.value / 100)))
        loosest = max(bounds) if (sign > 0) == (rules.select_policy is SelectPolicy.MAX) else min(bounds)
        assert sign * new <= sign * loosest or new == current
