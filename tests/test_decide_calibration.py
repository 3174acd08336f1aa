"""Online calibration in `decide()`: it learns slow service, and only slow service.

Observed latencies are produced the way the daemon sees them: a "true" replica (the capacity model
at some service scale) is measured through TF Serving's request_latency buckets and Prometheus'
`histogram_quantile` (`sources.histogram`). Overload, its aftermath in the rate window, rejections
and starting pods must not move the service scale; a replica 1.5x slower than its profile must be
learned; one outlier must not swing capacity.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from autoscaler.core.capacity import CapacityModel
from autoscaler.core.decide import CALIBRATION_MAX_STEP, TF_LATENCY_BUCKETS_MS, State, decide
from autoscaler.core.types import Decision, Observation, Signal
from autoscaler.sources.histogram import histogram_quantile
from autoscaler.spec.types import Provisioning, ServingAutoscalerSpec, TargetRef

SPEC = ServingAutoscalerSpec(
    name="resnet",
    target=TargetRef("ml", "resnet", "resnet"),
    min_replicas=1,
    max_replicas=20,
    provisioning=Provisioning(lead_time_s=60.0, decision_period_s=15.0, metrics_lag_s=30.0),
)
PARAMS = SPEC.batching.initial
Q = SPEC.slo.latency_quantile
CAPACITY_RPS = CapacityModel(SPEC.profile).capacity_at_slo_rps(PARAMS, SPEC.slo)
TICK_S = 15.0


def measured_p_ms(service_scale: float, rate_rps: float) -> float:
    """The p-quantile a TF Serving replica `service_scale`x slower than its profile reports at `rate_rps`."""
    point = CapacityModel(SPEC.profile, service_scale=service_scale).steady(rate_rps, PARAMS)
    edges_us = np.asarray(TF_LATENCY_BUCKETS_MS) * 1000.0
    counts = point.cdf_many(edges_us / 1e6) * 10_000.0
    buckets = [*zip(edges_us.tolist(), counts.tolist(), strict=True), (math.inf, 10_000.0)]
    return histogram_quantile(Q, buckets) / 1000.0


def observation(
    t: float,
    per_replica_rps: float,
    latency_ms: float,
    *,
    replicas: int = 4,
    rejected_rps: float = 0.0,
    pending: int = 0,
) -> Observation:
    return Observation(
        time_s=t,
        request_rate_rps=Signal.of(per_replica_rps * (replicas - pending)),
        rejected_rps=Signal.of(rejected_rps),
        latency_ms=Signal.of(latency_ms),
        current_replicas=replicas,
        ready_replicas=replicas - pending,
        pending_replicas=pending,
    )


class Replay:
    """Feeds decide() one observation per tick; the target stays at 4 replicas (long stabilization)."""

    def __init__(self, spec: ServingAutoscalerSpec = SPEC, *, ours: int = 4) -> None:
        self.spec = spec
        self.ours = ours  # our desired count; != 4 is hpa mode, where the HPA keeps the Deployment at 4
        self.t = 0.0
        self.state = State.initial(spec, 0.0, 4)
        self.last: Decision | None = None

    def tick(self, o: Observation) -> Decision:
        self.t += TICK_S
        d, state = decide(self.spec, self.state, dataclasses.replace(o, time_s=self.t), None, now_s=self.t)
        self.state = dataclasses.replace(state, last_desired_replicas=self.ours)  # the Deployment stays at 4
        self.last = d
        return d

    @property
    def scale(self) -> float:
        return self.state.calibration.service_scale


def test_a_replica_that_serves_as_profiled_keeps_its_capacity_despite_histogram_buckets() -> None:
    """The raw bucketed p99 reads up to 1.8x high; compared like for like, the scale stays at 1."""
    r = Replay()
    for i in range(40):
        rate = CAPACITY_RPS * (0.3 + 0.5 * (i % 5) / 4)
        r.tick(observation(0.0, rate, measured_p_ms(1.0, rate)))
    assert r.state.calibration.samples >= 35
    assert abs(r.scale - 1.0) < 0.03
    assert r.last is not None and r.last.capacity_rps is not None
    assert abs(r.last.capacity_rps - CAPACITY_RPS) < 0.05 * CAPACITY_RPS


def test_overload_rejections_aftermath_and_pending_pods_do_not_poison_calibration() -> None:
    r = Replay()
    calm = 0.5 * CAPACITY_RPS
    for _ in range(6):
        r.tick(observation(0.0, calm, measured_p_ms(1.0, calm)))
    learned = r.state.calibration
    queue_ms = 40.0 * SPEC.slo.latency_ms  # a full batch queue
    bad = [
        observation(0.0, 2.0 * CAPACITY_RPS, queue_ms, rejected_rps=30.0),  # overloaded, rejecting
        observation(0.0, 1.3 * CAPACITY_RPS, 3.0 * SPEC.slo.latency_ms),  # overloaded, not (yet) rejecting
        observation(0.0, 0.9 * CAPACITY_RPS, 1.2 * SPEC.slo.latency_ms, rejected_rps=2.0),  # rejections
        observation(0.0, 0.4 * CAPACITY_RPS, queue_ms),  # load fell, window still holds the queue
        observation(0.0, 0.8 * CAPACITY_RPS, 1.4 * SPEC.slo.latency_ms, pending=2),  # pods starting
    ]
    for o in bad * 3:
        d = r.tick(o)
        assert r.state.calibration == learned
        assert any(n.startswith("calibration:") and "kept" in n for n in d.notes)
    # back in the regime: the first ticks fall in the settle time (metrics lag + one period), where
    # the rate window may still hold the overload, so a high reading there is not learned either
    d = r.tick(observation(0.0, calm, 1.4 * SPEC.slo.latency_ms))
    d = r.tick(observation(0.0, calm, 1.4 * SPEC.slo.latency_ms))
    assert r.state.calibration == learned
    assert any("settling" in n for n in d.notes)
    assert d.capacity_rps is not None and abs(d.capacity_rps - CAPACITY_RPS) < 0.03 * CAPACITY_RPS


def test_a_replica_one_and_a_half_times_slower_is_learned() -> None:
    true_scale = 1.5
    true_capacity = CapacityModel(SPEC.profile, service_scale=true_scale).capacity_at_slo_rps(PARAMS, SPEC.slo)
    r = Replay()
    for i in range(60):
        rate = true_capacity * (0.3 + 0.6 * (i % 4) / 3)  # 30-90 % of what the slow replica can take
        r.tick(observation(0.0, rate, measured_p_ms(true_scale, rate)))
    assert abs(r.scale - true_scale) < 0.1 * true_scale
    assert r.last is not None and r.last.capacity_rps is not None
    assert abs(r.last.capacity_rps - true_capacity) < 0.1 * true_capacity
    assert r.last.capacity_rps < 0.8 * CAPACITY_RPS


def test_one_outlier_moves_the_scale_at_most_one_small_step() -> None:
    r = Replay()
    calm = 0.5 * CAPACITY_RPS
    for _ in range(4):  # first tick (no previous count) + settle (metrics lag 30 s + 15 s): nothing learned
        r.tick(observation(0.0, calm, measured_p_ms(1.0, calm)))
    assert r.state.calibration.samples == 0
    d = r.tick(observation(0.0, calm, 1.45 * SPEC.slo.latency_ms))  # 3-4x what the model expects
    assert r.state.calibration.samples == 1
    assert 1.0 < r.scale <= 1.0 + CALIBRATION_MAX_STEP + 1e-9
    assert any("calibration: service scale x1.00 -> x1.05" in n for n in d.notes)
    peak = r.scale
    for _ in range(10):
        r.tick(observation(0.0, calm, measured_p_ms(1.0, calm)))
    assert r.scale < 1.0 + 0.5 * (peak - 1.0)  # and it fades once the replica reports normal latency again


def test_a_window_with_too_few_requests_for_the_quantile_is_not_learned() -> None:
    """A p99 of a few hundred requests is close to their maximum (biased low): 500 are needed."""
    spec = dataclasses.replace(SPEC, provisioning=dataclasses.replace(SPEC.provisioning, metrics_lag_s=1.0))
    r = Replay(spec)
    light = 0.2 * CAPACITY_RPS  # 4 replicas x ~70 rps x 1 s window ~ 280 requests
    for _ in range(10):
        d = r.tick(observation(0.0, light, 1.4 * SPEC.slo.latency_ms))
    assert r.state.calibration.samples == 0 and r.scale == 1.0
    assert any("a p99 needs 500" in n for n in d.notes)


def test_hpa_mode_learns_while_the_deployment_differs_from_our_count_and_resettles_after_a_change() -> None:
    """In hpa mode the HPA owns the count (here 4 while we ask for 5): calibration still learns at a
    steady count; when the count changes (a scale-down 6 -> 4), the window must settle again."""
    r = Replay(ours=5)
    calm = 0.5 * CAPACITY_RPS
    for _ in range(8):
        r.tick(observation(0.0, calm, measured_p_ms(1.2, calm)))
    assert r.state.calibration.samples >= 4 and r.scale > 1.0
    learned = r.state.calibration
    r.tick(observation(0.0, calm, measured_p_ms(1.2, calm), replicas=6))
    r.tick(observation(0.0, calm, measured_p_ms(1.2, calm), replicas=4))  # scaled down: window mixes 6 and 4
    d = r.tick(observation(0.0, 1.3 * calm, 1.4 * SPEC.slo.latency_ms))
    assert r.state.calibration == learned
    assert any("settling" in n for n in d.notes)
