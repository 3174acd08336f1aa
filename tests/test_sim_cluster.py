"""The simulated Deployment: startup delays, ReplicaSet deletion order, rolling batching updates."""

from __future__ import annotations

import math

import numpy as np

from autoscaler.sim.cluster import Cluster, startup_quantile_s
from autoscaler.spec.types import BatchingParams, StartupSpec

P0 = BatchingParams(max_batch_size=16)
P1 = BatchingParams(max_batch_size=32)


def test_startup_delays_are_lognormal_around_the_spec_mean() -> None:
    spec = StartupSpec(jitter_cv=0.2)
    c = Cluster(spec, P0, initial_replicas=0, seed=3)
    draws = np.array([c.draw_startup_s()[0] for _ in range(4000)])
    assert abs(draws.mean() / spec.mean_s - 1.0) < 0.02
    assert abs(draws.std() / draws.mean() - 0.2) < 0.02
    # the quantile helper agrees with the draws
    q999 = startup_quantile_s(spec, 0.999)
    assert 0.997 < float(np.mean(draws <= q999)) <= 1.0


def test_new_pods_are_pending_until_their_startup_delay_passed() -> None:
    c = Cluster(StartupSpec(jitter_cv=0.0), P0, initial_replicas=2, seed=0)
    c.patch_replicas(5, now_s=100)
    assert c.ready_count(100) == 2 and len(c.pods) == 5
    delay = math.ceil(StartupSpec().mean_s)
    assert c.ready_count(100 + delay - 1) == 2
    assert c.ready_count(100 + delay) == 5
    assert c.scale_events == 1


def test_scale_down_removes_unready_pods_first_then_the_newest_ready() -> None:
    c = Cluster(StartupSpec(jitter_cv=0.0), P0, initial_replicas=3, seed=0)
    c.patch_replicas(4, now_s=0)  # one more, ready at 60
    c.patch_replicas(5, now_s=100)  # one more, ready at 160
    newest_ready = max((p for p in c.pods if p.ready_s <= 120), key=lambda p: p.ready_s)
    c.patch_replicas(3, now_s=120)
    ids = {p.pod_id for p in c.pods}
    assert all(p.ready_s <= 120 for p in c.pods), "the pending pod must go first"
    assert newest_ready.pod_id not in ids, "then the most recently ready one"
    assert len(c.pods) == 3


def test_rolling_batching_update_keeps_ready_count_and_bounds_surge() -> None:
    c = Cluster(StartupSpec(jitter_cv=0.3), P0, initial_replicas=8, seed=1)
    assert c.patch_batching(P1, now_s=0)
    assert not c.patch_batching(P1, now_s=0)
    surge = math.ceil(0.25 * 8)
    t = 0
    while any(p.params != P1 for p in c.pods) and t < 2000:
        t += 1
        c.on_second(t)
        assert c.ready_count(t) >= 8, f"maxUnavailable 0 violated at t={t}"
        assert len(c.pods) <= 8 + surge, f"surge exceeded at t={t}"
    assert t < 2000, "rollout never finished"
    assert len(c.pods) == 8 and all(p.params == P1 for p in c.pods)
    assert c.running_batching(t) == P1


def test_rewinding_forgets_the_cold_starts_recorded_after_the_rewind_point() -> None:
    """The engine serves ahead and takes seconds back: the cluster must then look as if it had
    only advanced to the rewind point (readiness is by time; cold starts are recorded)."""
    a = Cluster(StartupSpec(jitter_cv=0.3), P0, initial_replicas=2, seed=4)
    b = Cluster(StartupSpec(jitter_cv=0.3), P0, initial_replicas=2, seed=4)
    for c in (a, b):
        c.patch_replicas(8, now_s=0)
    ready_times = sorted({p.ready_s for p in a.pods if p.ready_s > 0})
    cut = ready_times[len(ready_times) // 2]
    for s in ready_times:  # a ran ahead past `cut` ...
        a.on_second(s)
    for s in ready_times:
        if s <= cut:
            b.on_second(s)
    assert a.cold_starts_s != b.cold_starts_s
    assert a.recent_cold_starts_s(cut, 10) == b.recent_cold_starts_s(cut, 10)
    a.rewind_to(cut)  # ... and was taken back
    assert a.cold_starts_s == b.cold_starts_s and a.cold_start_at_s == b.cold_start_at_s
    a.patch_replicas(3, now_s=cut)
    b.patch_replicas(3, now_s=cut)
    for c in (a, b):
        for s in range(cut + 1, cut + 200):
            c.on_second(s)
    assert a.cold_starts_s == b.cold_starts_s
    assert [p.pod_id for p in a.pods] == [p.pod_id for p in b.pods]


def test_creating_pods_in_one_batch_draws_the_same_delays_as_one_at_a_time() -> None:
    spec = StartupSpec(jitter_cv=0.3)
    a = Cluster(spec, P0, initial_replicas=0, seed=9)
    b = Cluster(spec, P0, initial_replicas=0, seed=9)
    for n in (1, 4, 2, 13):
        a.patch_replicas(a.spec_replicas + n, now_s=10)  # one batch of n
    one_by_one = [b.draw_startup_s()[0] for _ in range(20)]
    assert [p.ready_s for p in a.pods] == [10 + max(1, math.ceil(d)) for d in one_by_one]
