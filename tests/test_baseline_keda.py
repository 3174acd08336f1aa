"""The simulated KEDA Prometheus scaler + its HPA over hand-built views and a hand-walked clock."""

from __future__ import annotations

from autoscaler.core.types import Observation, Signal, SignalStatus
from autoscaler.sim.policies.keda import KedaPrometheusPolicy
from autoscaler.sim.policies.registry import create
from autoscaler.sim.view import ClusterView, PodView, PolicyContext, empty_history
from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec, TargetRef

SPEC = ServingAutoscalerSpec(name="m", target=TargetRef("ns", "dep", "m"), min_replicas=1, max_replicas=20)


def view(now_s: float, replicas: int, total_rps: float | None, *, error: bool = False) -> ClusterView:
    pods = tuple(PodView(f"p{i}", "Running", True, -100.0, -50.0, None, 1000, None, None) for i in range(replicas))
    if error:
        signal = Signal.missing(SignalStatus.ERROR, "connection refused")
    elif total_rps is None:
        signal = Signal.missing(SignalStatus.MISSING, "empty result")
    else:
        signal = Signal.of(total_rps)
    return ClusterView(
        now_s=now_s,
        spec_replicas=replicas,
        status_replicas=replicas,
        ready_replicas=replicas,
        pending_replicas=0,
        pods=pods,
        total_rps=None if error else total_rps,
        observation=Observation(time_s=now_s, request_rate_rps=signal),
        batching=BatchingParams(),
    )


def started(**knobs: object) -> KedaPrometheusPolicy:
    policy = KedaPrometheusPolicy(SPEC, **knobs)  # type: ignore[arg-type]
    policy.start(PolicyContext(SPEC, 0.0, 2, 1.0, empty_history(), 60.0))
    return policy


def test_registry_builds_keda() -> None:
    policy = create("keda", SPEC, threshold_rps=50)
    assert isinstance(policy, KedaPrometheusPolicy) and policy.target_milli == 50_000


def test_external_average_value_is_ceil_total_over_threshold_with_scale_up_limit() -> None:
    policy = started(threshold_rps=100)
    assert policy.decide(view(0.0, 2, 1000.0)).desired_replicas == 4  # ceil(10) capped at max(2*2, 4)
    assert policy.decide(view(15.0, 4, 1000.0)).desired_replicas == 8
    assert policy.decide(view(30.0, 8, 1000.0)).desired_replicas == 10
    # tolerance is tested against status replicas: 1050/(100*10) = 1.05 -> no change
    assert policy.decide(view(45.0, 10, 1050.0)).desired_replicas == 10


def test_query_errors_fall_back_after_failure_threshold() -> None:
    policy = started(threshold_rps=100, fallback_failure_threshold=3, fallback_replicas=6)
    assert policy.decide(view(0.0, 2, 150.0)).desired_replicas == 2
    outs = [policy.decide(view(15.0 * k, 2, None, error=True)) for k in range(1, 6)]
    # failures 1..3: the HPA sees a failed metric and holds; the 4th exceeds the threshold
    assert [o.desired_replicas for o in outs[:3]] == [2, 2, 2]
    assert "scaler error" in outs[0].reason
    assert outs[3].desired_replicas == 4  # fallback asks for 6; the HPA's scale-up limit gives 4 first
    assert "fallback to 6" in outs[3].reason
    # a successful query resets the failure count
    policy.decide(view(90.0, 4, 150.0))
    assert policy.failures == 0


def test_query_errors_without_fallback_never_scale() -> None:
    policy = started(threshold_rps=100, fallback_failure_threshold=None)
    for k in range(10):
        assert policy.decide(view(15.0 * k, 5, None, error=True)).desired_replicas == 5


def test_empty_result_reads_as_zero_with_ignore_null_values() -> None:
    policy = started(threshold_rps=100)
    policy.decide(view(0.0, 5, 500.0))
    outs = [policy.decide(view(15.0 * k, 5, None)).desired_replicas for k in range(1, 30)]
    # 0 rps -> 1 replica proposed, held by the 300 s stabilization of the recommendation at t=0 (5)
    assert outs[:20] == [5] * 20  # t = 15..300
    assert outs[20] == 1  # t = 315: the t=0 recommendation is older than 300 s
    strict = started(threshold_rps=100, ignore_null_values=False, fallback_failure_threshold=None)
    assert strict.decide(view(0.0, 5, None)).desired_replicas == 5
    assert "target may be lost" in strict.decide(view(15.0, 5, None)).reason


def test_cached_metrics_refresh_only_every_polling_interval() -> None:
    policy = started(threshold_rps=100, use_cached_metrics=True, polling_interval_s=30.0)
    policy.decide(view(0.0, 2, 150.0))
    out = policy.decide(view(15.0, 2, 900.0))  # still the cached 150 rps
    assert out.desired_replicas == 2
    out = policy.decide(view(30.0, 2, 900.0))  # refreshed
    assert out.desired_replicas == 4
