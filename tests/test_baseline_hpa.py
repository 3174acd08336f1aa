"""The simulated Kubernetes HPA baselines (`hpa-rps`, `hpa-cpu`) over hand-built views and a hand-walked clock."""

from __future__ import annotations

from collections.abc import Sequence

from autoscaler.core.types import Observation
from autoscaler.sim.policies.hpa import HpaCpuPolicy, HpaRpsPolicy
from autoscaler.sim.policies.registry import create
from autoscaler.sim.view import ClusterView, PodView, PolicyContext, empty_history
from autoscaler.spec.types import (
    BatchingParams,
    Behavior,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    ServingAutoscalerSpec,
    TargetRef,
    default_scale_down,
)

SPEC = ServingAutoscalerSpec(name="m", target=TargetRef("ns", "dep", "m"), min_replicas=1, max_replicas=20)


def pod(
    i: int, *, ready: bool = True, rps: float | None = None, cpu: float | None = None, ready_s: float = -900.0
) -> PodView:
    return PodView(
        name=f"p{i}",
        phase="Running" if ready else "Pending",
        ready=ready,
        created_s=ready_s - 60.0,
        ready_since_s=ready_s if ready else None,
        cpu_millicores=cpu,
        cpu_request_millicores=1000,
        rps=rps,
        concurrency=None,
    )


def view(now_s: float, spec_replicas: int, pods: Sequence[PodView], total_rps: float | None = None) -> ClusterView:
    ready = sum(p.ready for p in pods)
    return ClusterView(
        now_s=now_s,
        spec_replicas=spec_replicas,
        status_replicas=len(pods),
        ready_replicas=ready,
        pending_replicas=len(pods) - ready,
        pods=tuple(pods),
        total_rps=total_rps,
        observation=Observation(time_s=now_s),
        batching=BatchingParams(),
    )


def ctx(initial: int = 2) -> PolicyContext:
    return PolicyContext(SPEC, 0.0, initial, 1.0, empty_history(), 60.0)


def cluster_pods(spec_replicas: int, ready: int, per_pod_rps: float) -> list[PodView]:
    return [pod(i, rps=per_pod_rps) if i < ready else pod(i, ready=False) for i in range(spec_replicas)]


def test_registry_builds_the_hpa_baselines() -> None:
    assert isinstance(create("hpa-rps", SPEC), HpaRpsPolicy)
    cpu = create("hpa-cpu", SPEC)
    assert isinstance(cpu, HpaCpuPolicy) and cpu.target_utilization_pct == 70 and cpu.period_s == 15.0


def test_hpa_rps_burst_respects_scale_up_limit_and_300s_stabilization() -> None:
    """A 5x burst: first step capped at max(2*2, 4); new pods count as 0 while pending; the scale-down
    waits until the last high recommendation is more than 300 s old."""
    policy = HpaRpsPolicy(SPEC, target_rps_per_pod=100)
    policy.start(ctx(2))
    spec_replicas, ready = 2, 2
    history: list[tuple[float, int]] = []
    total_load = 180.0
    for step in range(60):
        t = step * 15.0
        if 60 <= t <= 105:
            total_load = 1000.0
        elif t > 105:
            total_load = 150.0
        per_pod = total_load / ready
        out = policy.decide(view(t, spec_replicas, cluster_pods(spec_replicas, ready, per_pod)))
        assert out.desired_replicas <= max(2 * spec_replicas, 4)
        history.append((t, out.desired_replicas))
        # pods become ready one sync after they were asked for
        ready = spec_replicas
        spec_replicas = out.desired_replicas
    by_t = dict(history)
    assert by_t[0.0] == 2 and by_t[45.0] == 2  # 90 rps/pod is within the 10 % tolerance
    assert by_t[60.0] == 4  # ceil(1000/100) = 10, capped by the scale-up limit
    assert by_t[75.0] == 8  # 2 ready at 500 rps + 2 pending at 0 -> ratio 2.5 on 4 pods -> 10, capped at 8
    assert by_t[90.0] == 10
    peak = max(r for _, r in history)
    assert peak == 10
    # the last recommendation of 10 was made at t=105; it still counts at 105+300 and expires after
    assert by_t[405.0] == 10
    assert by_t[420.0] == 2  # ceil(150/100) once the window has passed


def test_hpa_rps_failed_metric_holds_the_scale() -> None:
    policy = HpaRpsPolicy(SPEC)
    policy.start(ctx(3))
    out = policy.decide(view(0.0, 3, [pod(i) for i in range(3)]))  # no pod has a series
    assert out.desired_replicas == 3
    assert "no metrics returned" in out.reason


def test_hpa_rps_with_behavior_limits_pods_per_period() -> None:
    behavior = Behavior(
        scale_up=ScalingRules(0, SelectPolicy.MAX, (ScalingPolicy(PolicyType.PODS, 1, 60),)),
        scale_down=default_scale_down(),
    )
    policy = HpaRpsPolicy(SPEC, target_rps_per_pod=100, behavior=behavior)
    policy.start(ctx(2))
    spec_replicas = 2
    seen = []
    for step in range(9):
        t = step * 15.0
        out = policy.decide(view(t, spec_replicas, cluster_pods(spec_replicas, spec_replicas, 2000.0 / spec_replicas)))
        seen.append(out.desired_replicas)
        spec_replicas = out.desired_replicas
    # one pod per 60 s: 3 at t=0, held while that event is inside the period; an event exactly
    # 60 s old no longer counts (Go's `After(now - period)`), so the next pod comes at t=60
    assert seen == [3, 3, 3, 3, 4, 4, 4, 4, 5]


def test_hpa_cpu_scales_on_utilization_and_waits_for_pending_pods() -> None:
    policy = HpaCpuPolicy(SPEC, target_utilization_pct=70)
    policy.start(ctx(3))
    # 3 pods at 900m of a 1000m request: 90 % / 70 % -> ceil(1.2857 * 3) = 4
    pods = [pod(i, cpu=900.0) for i in range(3)]
    out = policy.decide(view(0.0, 3, pods))
    assert out.desired_replicas == 4
    # 3 ready pods at 1400m and 3 pending: the pending ones count as 0 cpu on a scale-up,
    # (3 * 1400) / 6000 = 70 % -> within tolerance, so no cascade while they start
    pods = [pod(i, cpu=1400.0) for i in range(3)] + [pod(i, ready=False) for i in range(3, 6)]
    out = policy.decide(view(15.0, 6, pods))
    assert out.desired_replicas == 6


def test_hpa_cpu_ignores_fresh_pods_without_a_full_window() -> None:
    """A pod ready for 10 s inside the cpu initialization period has no usable sample yet."""
    policy = HpaCpuPolicy(SPEC, target_utilization_pct=50)
    policy.start(ctx(2))
    now = 1000.0
    old = pod(0, cpu=1000.0, ready_s=0.0)
    fresh = PodView("p1", "Running", True, now - 40.0, now - 10.0, 0.0, 1000, None, None)
    out = policy.decide(view(now, 2, [old, fresh]))
    # with the fresh pod counted at 0 the ratio would be 1.0; ignored, it is 2.0 on one pod,
    # and as an unready pod it is filled with 0 on the scale-up: (1000 + 0) / 2000 = 50 % -> hold
    assert out.desired_replicas == 2
    later = PodView("p1", "Running", True, now - 40.0, now - 10.0, 1000.0, 1000, None, None)
    out = policy.decide(view(now + 400.0, 2, [old, later]))
    assert out.desired_replicas == 4  # both at 100 % of request vs 50 % target
