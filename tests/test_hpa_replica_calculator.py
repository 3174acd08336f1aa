"""Kubernetes' own replica-calculator unit tests, ported to `autoscaler.core.hpa`.

Each case is a table entry of `pkg/controller/podautoscaler/replica_calculator_test.go`
(kubernetes/kubernetes); the test id is the Go test name. The Go harness gives every pod two
containers with the listed request each and reports the listed usage per container, so a pod's
request and usage are twice the table values (`numContainersPerPod = 2`). Pods without an explicit
start time have Go's zero `StartTime`, samples the zero timestamp, and the Go tests run with a
2 min cpu initialization period and a 10 s initial readiness delay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.hpa import (
    GO_ZERO_TIME_S,
    HpaMetricError,
    HpaPod,
    PodPhase,
    PodSample,
    Tolerances,
    get_external_metric_replicas,
    get_external_per_pod_metric_replicas,
    get_metric_replicas,
    get_object_metric_replicas,
    get_object_per_pod_metric_replicas,
    get_raw_resource_replicas,
    get_resource_replicas,
    go_div,
    group_pods,
    milli_value,
)

NOW_S = 1_000_000.0
HOT_S = NOW_S  # hotCPUCreationTime(): time.Now()
COOL_S = NOW_S - 180.0  # coolCPUCreationTime(): time.Now() - 3 min
CPU_INIT_S = 120.0  # defaultTestingCPUInitializationPeriod
READINESS_DELAY_S = 10.0  # defaultTestingDelayOfInitialReadinessStatus
CONTAINERS = 2  # numContainersPerPod


@dataclass
class ResourceCase:
    current: int
    requests: list[str]
    levels: list[int]
    target_pct: int
    expected: int = 0
    expected_util: int = 0
    expected_raw: int = 0
    readiness: list[bool] = field(default_factory=list)
    start_times: list[float] = field(default_factory=list)
    phases: list[PodPhase] = field(default_factory=list)
    deleting: list[bool] = field(default_factory=list)
    pod_names: list[str] = field(default_factory=list)
    error: str | None = None


def _pods(tc: ResourceCase) -> list[HpaPod]:
    count = max(tc.current, len(tc.phases))
    pods = []
    for i in range(count):
        pods.append(
            HpaPod(
                name=f"test-pod-{i}",
                phase=tc.phases[i] if tc.phases else PodPhase.RUNNING,
                ready=tc.readiness[i] if i < len(tc.readiness) else True,
                start_time_s=tc.start_times[i] if tc.start_times else GO_ZERO_TIME_S,
                deleting=tc.deleting[i] if tc.deleting else False,
                request_milli=CONTAINERS * milli_value(tc.requests[i]) if i < len(tc.requests) else None,
            )
        )
    return pods


def _samples(levels: list[int], names: list[str] | None = None) -> dict[str, PodSample]:
    out = {}
    for i, level in enumerate(levels):
        name = names[i] if names and i < len(names) else f"test-pod-{i}"
        out[name] = PodSample(CONTAINERS * level, timestamp_s=GO_ZERO_TIME_S, window_s=60.0)
    return out


def _run_resource(tc: ResourceCase) -> None:
    def call() -> object:
        return get_resource_replicas(
            tc.current,
            tc.target_pct,
            _pods(tc),
            _samples(tc.levels, tc.pod_names),
            now_s=NOW_S,
            cpu_initialization_period_s=CPU_INIT_S,
            initial_readiness_delay_s=READINESS_DELAY_S,
        )

    if tc.error is not None:
        with pytest.raises(HpaMetricError, match=tc.error):
            call()
        return
    out = get_resource_replicas(
        tc.current,
        tc.target_pct,
        _pods(tc),
        _samples(tc.levels, tc.pod_names),
        now_s=NOW_S,
        cpu_initialization_period_s=CPU_INIT_S,
        initial_readiness_delay_s=READINESS_DELAY_S,
    )
    assert (out.replicas, out.utilization_pct, out.raw_utilization_milli) == (
        tc.expected,
        tc.expected_util,
        tc.expected_raw,
    )


ONE = "1.0"
F, T = False, True
RUN, PEND, FAIL = PodPhase.RUNNING, PodPhase.PENDING, PodPhase.FAILED

RESOURCE_CASES = {
    "TestReplicaCalcDisjointResourcesMetrics": ResourceCase(
        1, [ONE], [100], 100, pod_names=["an-older-pod-name"], error="no metrics returned matched known pods"
    ),
    "TestReplicaCalcScaleUp": ResourceCase(3, [ONE] * 3, [300, 500, 700], 30, 5, 50, 2 * 500),
    "TestReplicaCalcScaleUpUnreadyLessScale": ResourceCase(
        3, [ONE] * 3, [300, 500, 700], 30, 4, 60, 2 * 600, readiness=[F, T, T]
    ),
    "TestReplicaCalcScaleUpHotCpuLessScale": ResourceCase(
        3, [ONE] * 3, [300, 500, 700], 30, 4, 60, 2 * 600, start_times=[HOT_S, COOL_S, COOL_S]
    ),
    "TestReplicaCalcScaleUpUnreadyNoScale": ResourceCase(
        3, [ONE] * 3, [400, 500, 700], 30, 3, 40, 2 * 400, readiness=[T, F, F]
    ),
    "TestReplicaCalcScaleHotCpuNoScale": ResourceCase(
        3, [ONE] * 3, [400, 500, 700], 30, 3, 40, 2 * 400, readiness=[T, F, F], start_times=[COOL_S, HOT_S, HOT_S]
    ),
    "TestReplicaCalcScaleUpIgnoresFailedPods": ResourceCase(
        2, [ONE] * 4, [500, 700], 30, 4, 60, 2 * 600, readiness=[T, T, F, F], phases=[RUN, RUN, FAIL, FAIL]
    ),
    "TestReplicaCalcScaleUpIgnoresDeletionPods": ResourceCase(
        2,
        [ONE] * 4,
        [500, 700],
        30,
        4,
        60,
        2 * 600,
        readiness=[T, T, F, F],
        phases=[RUN] * 4,
        deleting=[F, F, T, T],
    ),
    "TestReplicaCalcScaleDown": ResourceCase(5, [ONE] * 5, [100, 300, 500, 250, 250], 50, 3, 28, 2 * 280),
    "TestReplicaCalcScaleDownIncludeUnreadyPods": ResourceCase(
        5, [ONE] * 5, [100, 300, 500, 250, 250], 50, 2, 30, 2 * 300, readiness=[T, T, T, F, F]
    ),
    "TestReplicaCalcScaleDownExcludeUnscheduledPods": ResourceCase(
        5, [ONE] * 5, [100], 50, 1, 10, 2 * 100, readiness=[T, F, F, F, F], phases=[RUN, PEND, PEND, PEND, PEND]
    ),
    "TestReplicaCalcScaleDownIgnoreHotCpuPods": ResourceCase(
        5, [ONE] * 5, [100, 300, 500, 250, 250], 50, 2, 30, 2 * 300, start_times=[COOL_S] * 3 + [HOT_S] * 2
    ),
    "TestReplicaCalcScaleDownIgnoresFailedPods": ResourceCase(
        5,
        [ONE] * 7,
        [100, 300, 500, 250, 250],
        50,
        3,
        28,
        2 * 280,
        readiness=[T] * 5 + [F] * 2,
        phases=[RUN] * 5 + [FAIL] * 2,
    ),
    "TestReplicaCalcScaleDownIgnoresDeletionPods": ResourceCase(
        5,
        [ONE] * 7,
        [100, 300, 500, 250, 250],
        50,
        3,
        28,
        2 * 280,
        readiness=[T] * 5 + [F] * 2,
        phases=[RUN] * 7,
        deleting=[F] * 5 + [T] * 2,
    ),
    "TestReplicaCalcTolerance": ResourceCase(3, ["0.9", "1.0", "1.1"], [1010, 1030, 1020], 100, 3, 102, 2 * 1020),
    "TestReplicaCalcSuperfluousMetrics": ResourceCase(
        4, [ONE] * 4, [4000, 9500, 3000, 7000, 3200, 2000], 100, 24, 587, 2 * 5875
    ),
    "TestReplicaCalcMissingMetrics": ResourceCase(4, [ONE] * 4, [400, 95], 100, 3, 24, 495),
    "TestReplicaCalcEmptyMetrics": ResourceCase(
        4, [ONE] * 3, [], 100, error="no metrics returned from resource metrics API"
    ),
    "TestReplicaCalcEmptyCPURequest": ResourceCase(1, [], [200], 100, error="missing request for"),
    "TestReplicaCalcMissingMetricsNoChangeEq": ResourceCase(2, [ONE] * 2, [1000], 100, 2, 100, 2 * 1000),
    "TestReplicaCalcMissingMetricsNoChangeGt": ResourceCase(2, [ONE] * 2, [1900], 100, 2, 190, 2 * 1900),
    "TestReplicaCalcMissingMetricsNoChangeLt": ResourceCase(2, [ONE] * 2, [600], 100, 2, 60, 2 * 600),
    "TestReplicaCalcMissingMetricsUnreadyChange": ResourceCase(
        3, [ONE] * 3, [100, 450], 50, 3, 45, 2 * 450, readiness=[F, T, T]
    ),
    "TestReplicaCalcMissingMetricsHotCpuNoChange": ResourceCase(
        3, [ONE] * 3, [100, 450], 50, 3, 45, 2 * 450, start_times=[HOT_S, COOL_S, COOL_S]
    ),
    "TestReplicaCalcMissingMetricsUnreadyScaleUp": ResourceCase(
        3, [ONE] * 3, [100, 2000], 50, 4, 200, 2 * 2000, readiness=[F, T, T]
    ),
    "TestReplicaCalcMissingMetricsHotCpuScaleUp": ResourceCase(
        3, [ONE] * 3, [100, 2000], 50, 4, 200, 2 * 2000, readiness=[F, T, T], start_times=[HOT_S, COOL_S, COOL_S]
    ),
    "TestReplicaCalcMissingMetricsUnreadyScaleDown": ResourceCase(
        4, [ONE] * 4, [100, 100, 100], 50, 3, 10, 2 * 100, readiness=[F, T, T, T]
    ),
    "TestReplicaCalcMissingMetricsScaleDownTargetOver100": ResourceCase(
        4, [ONE, ONE, "2.0", "2.0"], [200, 100, 100], 300, 2, 6, 2 * 100, readiness=[F, T, T, T]
    ),
    "TestReplicaCalcDuringRollingUpdateWithMaxSurge": ResourceCase(
        2, [ONE] * 3, [100, 100], 50, 2, 10, 2 * 100, phases=[RUN] * 3
    ),
}


@pytest.mark.parametrize("case", list(RESOURCE_CASES.values()), ids=list(RESOURCE_CASES))
def test_resource_replicas_match_kubernetes(case: ResourceCase) -> None:
    _run_resource(case)


def test_computed_tolerance_alg_implementation() -> None:
    """TestReplicaCalcComputedToleranceAlgImplementation, computed the way the Go test computes it."""
    start_pods = 10
    total_used = start_pods * 150
    total_requested = 2 * total_used
    requested_to_used = float(total_requested // total_used)
    per_pod_requested = total_requested // start_pods
    target = abs(1 / (requested_to_used * (1 - 0.1))) + 0.01
    final_target_pct = int(target * 100)
    used_ratio = total_used / (total_requested * target)
    final_pods = math.ceil(used_ratio * start_pods)
    offsets = [100, -100, 10, -10, 2, -2, 1, -1, 0, 0]
    requests = [f"{per_pod_requested + o}m" for o in offsets]
    levels = [total_used // 10] * 10
    util = go_div(total_used * 100, total_requested)
    _run_resource(ResourceCase(start_pods, requests, levels, final_target_pct, final_pods, util, 2 * total_used // 10))
    assert final_pods < start_pods  # the case really scales down
    # a target just inside the tolerance band: no change
    target = abs(1 / (requested_to_used * (1 - 0.1))) + 0.004
    _run_resource(ResourceCase(start_pods, requests, levels, int(target * 100), start_pods, util, 300))


# --------------------------------------------------------------------------- custom / object / external


def _plain_pods(n: int, readiness: list[bool] | None = None) -> list[HpaPod]:
    return [
        HpaPod(f"test-pod-{i}", ready=readiness[i] if readiness else True, start_time_s=GO_ZERO_TIME_S)
        for i in range(n)
    ]


def _cm(levels: list[int]) -> dict[str, PodSample]:
    return {f"test-pod-{i}": PodSample(v) for i, v in enumerate(levels)}


@pytest.mark.parametrize(
    ("current", "levels", "target", "expected", "usage", "readiness"),
    [
        pytest.param(3, [20000, 10000, 30000], 15000, 4, 20000, None, id="TestReplicaCalcScaleUpCM"),
        pytest.param(
            3, [50000, 10000, 30000], 15000, 6, 30000, [T, T, F], id="TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale"
        ),
        pytest.param(
            3,
            [50000, 15000, 30000],
            15000,
            7,
            31666,
            [F, T, F],
            id="TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown",
        ),
        pytest.param(1, [8600], 4400, 2, 8600, None, id="TestReplicaCalcScaleUpCMExternalNoLabels"),
        pytest.param(5, [12000] * 5, 20000, 3, 12000, None, id="TestReplicaCalcScaleDownCM"),
        pytest.param(3, [20000, 21000, 21000], 20000, 3, 20666, None, id="TestReplicaCalcToleranceCM"),
        # three pods during a rolling update with maxSurge, the new one without a sample yet
        pytest.param(
            2, [10000, 10000], 17000, 2, 10000, [T, T, T], id="TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM"
        ),
    ],
)
def test_pods_metric_replicas_match_kubernetes(
    current: int, levels: list[int], target: int, expected: int, usage: int, readiness: list[bool] | None
) -> None:
    n_pods = len(readiness) if readiness else current
    out = get_metric_replicas(current, target, _plain_pods(n_pods, readiness), _cm(levels))
    assert (out.replicas, out.usage_milli) == (expected, usage)


@pytest.mark.parametrize(
    ("current", "usage", "target", "expected", "readiness"),
    [
        pytest.param(3, 20000, 15000, 4, None, id="TestReplicaCalcScaleUpCMObject"),
        pytest.param(3, 50000, 10000, 5, [F, T, F], id="TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods"),
        pytest.param(5, 12000, 20000, 3, None, id="TestReplicaCalcScaleDownCMObject"),
        pytest.param(3, 20666, 20000, 3, None, id="TestReplicaCalcToleranceCMObject"),
    ],
)
def test_object_value_replicas_match_kubernetes(
    current: int, usage: int, target: int, expected: int, readiness: list[bool] | None
) -> None:
    out = get_object_metric_replicas(current, target, usage, _plain_pods(current, readiness))
    assert (out.replicas, out.usage_milli) == (expected, usage)


@pytest.mark.parametrize(
    ("status", "usage", "target", "expected", "per_pod"),
    [
        pytest.param(3, 20000, 5000, 4, 6667, id="TestReplicaCalcScaleUpCMPerPodObject"),
        pytest.param(5, 6000, 2000, 3, 1200, id="TestReplicaCalcScaleDownPerPodCMObject"),
        pytest.param(4, 20166, 5000, 4, 5042, id="TestReplicaCalcTolerancePerPodCMObject"),
    ],
)
def test_object_average_value_replicas_match_kubernetes(
    status: int, usage: int, target: int, expected: int, per_pod: int
) -> None:
    out = get_object_per_pod_metric_replicas(status, target, usage)
    assert (out.replicas, out.usage_milli) == (expected, per_pod)


@pytest.mark.parametrize(
    ("current", "levels", "target", "expected", "readiness"),
    [
        pytest.param(3, [8600], 4400, 2, [F, T, F], id="TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods"),
        pytest.param(5, [8600], 14334, 3, None, id="TestReplicaCalcScaleDownCMExternal"),
        pytest.param(3, [8600], 8888, 3, None, id="TestReplicaCalcToleranceCMExternal"),
    ],
)
def test_external_value_replicas_match_kubernetes(
    current: int, levels: list[int], target: int, expected: int, readiness: list[bool] | None
) -> None:
    out = get_external_metric_replicas(current, target, levels, _plain_pods(current, readiness))
    assert (out.replicas, out.usage_milli) == (expected, sum(levels))


@pytest.mark.parametrize(
    ("status", "levels", "target", "expected", "per_pod"),
    [
        pytest.param(3, [8600], 2150, 4, 2867, id="TestReplicaCalcScaleUpPerPodCMExternal"),
        pytest.param(5, [8600], 2867, 3, 1720, id="TestReplicaCalcScaleDownPerPodCMExternal"),
        pytest.param(3, [8600], 2900, 3, 2867, id="TestReplicaCalcTolerancePerPodCMExternal"),
    ],
)
def test_external_average_value_replicas_match_kubernetes(
    status: int, levels: list[int], target: int, expected: int, per_pod: int
) -> None:
    out = get_external_per_pod_metric_replicas(status, target, levels)
    assert (out.replicas, out.usage_milli) == (expected, per_pod)


def test_external_value_scales_from_zero_without_tolerance() -> None:
    """getUsageRatioReplicaCount: from 0 replicas it is ceil(ratio), tolerance not applied."""
    assert get_external_metric_replicas(0, 1000, [1050], []).replicas == 2
    assert get_external_metric_replicas(0, 1000, [0], []).replicas == 0


def test_empty_external_result_is_an_error() -> None:
    with pytest.raises(HpaMetricError, match="no metrics returned from external metrics API"):
        get_external_per_pod_metric_replicas(3, 1000, [])


# --------------------------------------------------------------------------- groupPods (TestGroupPods)


def _group(pod: HpaPod, sample: PodSample | None, resource: str = "cpu") -> tuple[int, set[str], set[str], set[str]]:
    samples = {pod.name: sample} if sample is not None else {}
    g = group_pods(
        [pod],
        samples,
        resource,
        now_s=NOW_S,
        cpu_initialization_period_s=CPU_INIT_S,
        initial_readiness_delay_s=READINESS_DELAY_S,
    )
    return g.ready_pod_count, set(g.unready), set(g.missing), set(g.ignored)


SUCC = PodPhase.SUCCEEDED


@pytest.mark.parametrize(
    ("pod", "sample", "resource", "expected"),
    [
        pytest.param(
            HpaPod("bentham", SUCC, ready=None), PodSample(1, NOW_S), "memory", (1, set(), set(), set()), id="memory"
        ),
        pytest.param(
            HpaPod("lucretius", SUCC, ready=None, start_time_s=NOW_S),
            PodSample(1),
            "cpu",
            (0, {"lucretius"}, set(), set()),
            id="ignore a pod without ready condition - CPU",
        ),
        pytest.param(
            HpaPod("bentham", SUCC, True, ready_transition_s=NOW_S - 30, start_time_s=NOW_S - 60),
            PodSample(1, NOW_S, 30.0),
            "cpu",
            (1, set(), set(), set()),
            id="count in a ready pod with fresh metrics during initialization period - CPU",
        ),
        pytest.param(
            HpaPod("bentham", SUCC, True, ready_transition_s=NOW_S - 30, start_time_s=NOW_S - 60),
            PodSample(1, NOW_S, 60.0),
            "cpu",
            (0, {"bentham"}, set(), set()),
            id="ignore a ready pod without fresh metrics during initialization period - CPU",
        ),
        pytest.param(
            HpaPod("lucretius", SUCC, False, ready_transition_s=NOW_S - 594, start_time_s=NOW_S - 600),
            PodSample(1),
            "cpu",
            (0, {"lucretius"}, set(), set()),
            id="ignore an unready pod during initialization period - CPU",
        ),
        pytest.param(
            HpaPod("bentham", SUCC, True, ready_transition_s=NOW_S - 180, start_time_s=NOW_S - 180),
            PodSample(1, NOW_S - 120, 60.0),
            "cpu",
            (1, set(), set(), set()),
            id="count in a ready pod without fresh metrics after initialization period - CPU",
        ),
        pytest.param(
            HpaPod("lucretius", SUCC, False, ready_transition_s=NOW_S - 540, start_time_s=NOW_S - 600),
            PodSample(1),
            "cpu",
            (1, set(), set(), set()),
            id="count in an unready pod that was ready after initialization period - CPU",
        ),
        pytest.param(
            HpaPod("lucretius", SUCC, False, ready_transition_s=NOW_S - 590, start_time_s=NOW_S - 600),
            PodSample(1),
            "cpu",
            (1, set(), set(), set()),
            id="ignore pod that has never been ready after initialization period - CPU",
        ),
        pytest.param(
            HpaPod("epicurus", SUCC, ready=None, start_time_s=NOW_S - 180),
            None,
            "cpu",
            (0, set(), {"epicurus"}, set()),
            id="a missing pod",
        ),
        pytest.param(
            HpaPod("deleted", PodPhase.PENDING, ready=None, deleting=True),
            PodSample(1),
            "cpu",
            (0, set(), set(), {"deleted"}),
            id="ignore pods with deletion timestamps",
        ),
        pytest.param(
            HpaPod("failed", PodPhase.FAILED, ready=None),
            PodSample(1),
            "cpu",
            (0, set(), set(), {"failed"}),
            id="ignore pods in a failed state",
        ),
        pytest.param(
            HpaPod("unscheduled", PodPhase.PENDING, ready=None),
            None,
            "cpu",
            (0, {"unscheduled"}, set(), set()),
            id="pending pods are ignored",
        ),
    ],
)
def test_group_pods_match_kubernetes(
    pod: HpaPod, sample: PodSample | None, resource: str, expected: tuple[int, set[str], set[str], set[str]]
) -> None:
    """TestGroupPods cases (the Go test's time.Now() is NOW_S)."""
    assert _group(pod, sample, resource) == expected


def test_group_pods_several_pods() -> None:
    """TestGroupPods/several pods: one unready (no Ready condition), one ready, one missing."""
    pods = [
        HpaPod("lucretius", PodPhase.SUCCEEDED, ready=None, start_time_s=NOW_S),
        HpaPod("niccolo", PodPhase.SUCCEEDED, True, ready_transition_s=NOW_S - 180, start_time_s=NOW_S - 180),
        HpaPod("epicurus", PodPhase.SUCCEEDED, ready=None, start_time_s=NOW_S - 180),
    ]
    g = group_pods(
        pods,
        {"lucretius": PodSample(1), "niccolo": PodSample(1)},
        "cpu",
        now_s=NOW_S,
        cpu_initialization_period_s=CPU_INIT_S,
        initial_readiness_delay_s=READINESS_DELAY_S,
    )
    assert (g.ready_pod_count, set(g.unready), set(g.missing), set(g.ignored)) == (
        1,
        {"lucretius"},
        {"epicurus"},
        set(),
    )


def test_tolerance_is_inclusive_and_per_direction() -> None:
    tol = Tolerances(scale_down=0.05, scale_up=0.2)
    assert tol.is_within(0.95) and tol.is_within(1.2)
    assert not tol.is_within(0.9499) and not tol.is_within(1.2001)
    # with a 0 scale-up tolerance any increase scales: ceil(1.01 * 4) = 5
    pods = _plain_pods(4)
    out = get_metric_replicas(4, 1000, pods, _cm([1010] * 4), tolerances=Tolerances(0.1, 0.0))
    assert out.replicas == 5


def test_milli_value_is_ceil_of_decimal() -> None:
    assert milli_value("1.0") == 1000
    assert milli_value(0.1) == 100  # decimal 0.1, not the binary float above it
    assert milli_value("0.0001") == 1  # rounds up
    assert milli_value("-0.0015") == -1  # ceil toward +inf
    assert go_div(-7, 2) == -3 and go_div(7, 2) == 3


def test_external_average_value_from_zero_status_replicas() -> None:
    """statusReplicas 0: Go's float ratio is +Inf, never within tolerance -> ceil(total/target)."""
    out = get_external_per_pod_metric_replicas(0, 1000, [2500])
    assert out.replicas == 3


def test_raw_resource_replicas_apply_cpu_readiness_but_pods_metrics_do_not() -> None:
    """GetRawResourceReplicas passes the resource name to groupPods; GetMetricReplicas passes ""."""
    hot = HpaPod("test-pod-1", ready=True, ready_transition_s=NOW_S - 5, start_time_s=NOW_S - 10)
    cool = HpaPod("test-pod-0", ready=True, ready_transition_s=NOW_S - 900, start_time_s=NOW_S - 1000)
    samples = {
        "test-pod-0": PodSample(3000, NOW_S, 60.0),
        "test-pod-1": PodSample(1000, NOW_S, 60.0),
    }
    raw = get_raw_resource_replicas(2, 1000, [cool, hot], samples, now_s=NOW_S)
    # the hot pod is unready for cpu: ratio 3.0 on one pod, rebalanced with the hot pod at 0 -> 1.5 * 2
    assert raw.replicas == 3 and raw.usage_milli == 3000
    pods_metric = get_metric_replicas(2, 1000, [cool, hot], samples)
    assert pods_metric.replicas == 4 and pods_metric.usage_milli == 2000  # both samples count


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
        st.integers(min_value=-(10**9), max_value=10**9).map(lambda n: n / 1000.0),  # whole milli-units
        st.decimals(min_value=0, max_value=10**6, places=6).map(float),
    )
)
def test_milli_value_float_fast_path_equals_the_exact_decimal_ceil(x: float) -> None:
    exact = int((Decimal(repr(x)) * 1000).to_integral_value(rounding=ROUND_CEILING))
    assert milli_value(x) == exact
