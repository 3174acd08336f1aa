"""The simulated Knative KPA over hand-built views and a hand-walked 1 s clock."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from autoscaler.core.types import Observation
from autoscaler.sim import engine
from autoscaler.sim.policies.kpa import KnativeKpaPolicy, TimedBuckets, default_target_concurrency
from autoscaler.sim.policies.registry import create
from autoscaler.sim.scenario import REPO_ROOT, load_inputs, load_scenario
from autoscaler.sim.view import ClusterView, PodView, PolicyContext, empty_history
from autoscaler.spec import load_spec
from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec, TargetRef

SPEC = ServingAutoscalerSpec(name="m", target=TargetRef("ns", "dep", "m"), min_replicas=1, max_replicas=50)


def view(now_s: float, spec_replicas: int, ready: int, total_in_flight: float | None) -> ClusterView:
    per_pod = None if total_in_flight is None else total_in_flight / max(ready, 1)
    pods = tuple(
        PodView(f"p{i}", "Running", True, -100.0, -50.0, None, 1000, None, per_pod)
        if i < ready
        else PodView(f"p{i}", "Pending", False, now_s, None, None, 1000, None, None)
        for i in range(spec_replicas)
    )
    return ClusterView(
        now_s=now_s,
        spec_replicas=spec_replicas,
        status_replicas=spec_replicas,
        ready_replicas=ready,
        pending_replicas=spec_replicas - ready,
        pods=pods,
        total_rps=None,
        observation=Observation(time_s=now_s),
        batching=BatchingParams(),
    )


def started(initial: int = 1, **knobs: object) -> KnativeKpaPolicy:
    policy = KnativeKpaPolicy(SPEC, **knobs)  # type: ignore[arg-type]
    policy.start(PolicyContext(SPEC, 0.0, initial, 1.0, empty_history(), 60.0))
    return policy


def test_defaults_follow_knative_with_a_gpu_target() -> None:
    policy = create("kpa", SPEC)
    assert isinstance(policy, KnativeKpaPolicy)
    assert policy.target == pytest.approx(0.7 * 32)  # 70 % of one max batch in flight
    assert (policy.stable_window_s, policy.panic_window_s, policy.panic_threshold) == (60, 6, 2.0)
    assert policy.period_s == 2.0 and policy.tick_interval_s == 2.0  # 1 s samples read back at each tick
    assert KnativeKpaPolicy(SPEC, collect_every_tick=True).period_s == 1.0


@pytest.mark.parametrize(("parallelism", "target"), [(1, 0.7 * 16), (2, 0.7 * 2 * 16), (4, 0.7 * 2 * 16)])
def test_default_target_is_70_percent_of_what_a_replica_processes_at_once(parallelism: int, target: float) -> None:
    """Knative: target = target utilization × containerConcurrency; a TF Serving replica processes
    min(num_batch_threads, device parallelism) batches of max_batch_size at once (the spec's 2 threads)."""
    spec = load_spec(REPO_ROOT / "examples" / "resnet50-t4.yaml")
    spec = replace(spec, profile=replace(spec.profile, device_parallelism=parallelism))
    assert spec.batching.initial.max_batch_size == 16 and spec.batching.initial.num_batch_threads == 2
    assert KnativeKpaPolicy(spec).target == pytest.approx(target)
    assert default_target_concurrency(spec) == pytest.approx(target)


def test_timed_buckets_average_over_the_written_part_of_the_window() -> None:
    b = TimedBuckets(60)
    for t in range(10):
        b.record(float(t), 10.0)
    assert b.window_average(9.0) == pytest.approx(10.0)  # partial window: 10 buckets
    b.record(10.0, 40.0)
    assert b.window_average(10.0) == pytest.approx(140.0 / 11)
    assert b.window_average(20.0) == pytest.approx(140.0 / 11)  # stale buckets ahead of last write
    assert b.is_empty(71.0) and b.window_average(71.0) == 0.0
    p = TimedBuckets(6)
    for t in range(20):
        p.record(float(t), float(t))
    assert p.window_average(19.0) == pytest.approx(sum(range(14, 20)) / 6)


def test_steady_load_scales_to_stable_target_without_panic() -> None:
    policy = started(1, target_concurrency=10.0)
    out = None
    for t in range(90):
        out = policy.decide(view(float(t), 3, 3, 25.0))
    assert out is not None and out.desired_replicas == 3  # ceil(25 / 10)
    assert not policy.in_panic


def test_burst_enters_panic_and_never_scales_down_while_panicking() -> None:
    policy = started(1, target_concurrency=10.0)
    for t in range(60):
        policy.decide(view(float(t), 1, 1, 8.0))
    assert not policy.in_panic
    # a 5x burst while new pods are still starting (1 ready)
    outs = {}
    for t in range(60, 70):
        outs[t] = policy.decide(view(float(t), 6, 1, 40.0)).desired_replicas
    assert policy.in_panic
    entered = min(t for t in range(60, 70) if outs[t] > 1)
    assert entered <= 62  # the 6 s panic window reacts within a tick; the stable window alone would not
    assert max(outs.values()) >= 4
    # load vanishes: desired never goes down while in panic mode ...
    peak = max(outs.values())
    last_over = 70
    for t in range(70, 140):
        out = policy.decide(view(float(t), peak, peak, 0.0))
        if policy.in_panic:
            assert out.desired_replicas == peak
        else:
            break
    # ... and panic ends a stable window after the last tick over the threshold
    assert last_over + 60 - 10 <= t <= last_over + 60 + 2
    assert out.desired_replicas < peak


def test_scale_down_is_limited_by_max_scale_down_rate() -> None:
    policy = started(1, target_concurrency=10.0)
    out = None
    for t in range(200):
        out = policy.decide(view(float(t), 10, 10, 1.0))
    # ceil(1/10) = 1, but at most halving per decision from 10 ready pods: floor(10 / 2) = 5
    assert out is not None and out.desired_replicas == 5


def test_no_data_keeps_the_current_scale() -> None:
    policy = started(1)
    out = policy.decide(view(0.0, 4, 0, None))
    assert out.desired_replicas == 4 and "no data" in out.reason


@pytest.mark.parametrize("target", [4.0, 22.4])
def test_two_second_ticks_decide_exactly_as_the_one_second_scrape_loop(target: float) -> None:
    """Reading the per-second samples back at each 2 s tick records what the 1 s loop recorded."""
    inp = load_inputs(load_scenario("nasa-1s-7d"), duration_s=3 * 3600)
    runs = {}
    for every in (True, False):
        policy = KnativeKpaPolicy(inp.spec, target_concurrency=target, collect_every_tick=every)
        runs[every] = engine.run(inp.trace, inp.spec, policy, history_rps=inp.history_rps)
    ref, fast = runs[True], runs[False]
    assert (ref.summary["scale_events"], fast.summary["scale_events"]) != (0, 0)
    for col in ("desired", "ready", "pods", "served", "rejected", "within_slo"):
        assert np.array_equal(getattr(ref.timeline, col), getattr(fast.timeline, col)), col
    drop = ("wall_s",)
    assert {k: v for k, v in ref.summary.items() if k not in drop} == {
        k: v for k, v in fast.summary.items() if k not in drop
    }
