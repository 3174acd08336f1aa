"""Tests of the analytic replica capacity model (autoscaler/core/capacity.py).

The model is checked against the exact discrete-event simulator (core/batchqueue.py) on the
shipped ResNet-50 profile — capacity at the SLO within 10 %, fraction within the SLO close —
and for the properties the autoscaler relies on (hypothesis). Calibration is checked by feeding
it what a replica 1.5x slower than its profile reports.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.batchqueue import simulate_replica
from autoscaler.core.capacity import (
    CALIBRATION_BOUNDS,
    Calibration,
    CapacityModel,
    ServiceTime,
    cached_model,
    calibrate,
)
from autoscaler.spec.types import SLO, BatchingParams, ServiceProfile

# The model's suite runs on a device that executes `num_batch_threads` batches in parallel, so the
# multi-server path is exercised; ONE_GPU (the product default, parallelism 1) is checked too.
PROFILE = ServiceProfile(device_parallelism=8)
MODEL = CapacityModel(PROFILE)
ONE_GPU = CapacityModel(ServiceProfile())
SLO_P99_100 = SLO(latency_quantile=0.99, latency_ms=100.0)
UNIT_GAPS = np.cumsum(np.random.default_rng(11).exponential(1.0, 60_000))  # common random numbers


def des_p99_ms(rate_rps: float, params: BatchingParams, service: ServiceTime) -> float:
    return simulate_replica(UNIT_GAPS / rate_rps, params, service).latency_quantile_ms(0.99)


def des_capacity_rps(params: BatchingParams, service: ServiceTime, guess_rps: float, slo_ms: float) -> float:
    """Rate at which the DES p99 crosses slo_ms, by bisection around a guess."""
    top = params.num_batch_threads * params.max_batch_size / service.s(params.max_batch_size)
    lo, hi = 0.5 * guess_rps, min(1.4 * guess_rps, top)
    assert des_p99_ms(lo, params, service) <= slo_ms
    if des_p99_ms(hi, params, service) <= slo_ms:
        return hi
    for _ in range(9):
        mid = 0.5 * (lo + hi)
        if des_p99_ms(mid, params, service) <= slo_ms:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# --- ServiceTime ---------------------------------------------------------------------------


def test_service_time_interpolates_and_extrapolates_linearly() -> None:
    svc = ServiceTime(PROFILE)
    for size, ms in zip(PROFILE.batch_sizes, PROFILE.batch_latency_ms, strict=True):
        assert svc.ms(size) == pytest.approx(ms)
    assert svc.ms(24) == pytest.approx((40.58 + 77.18) / 2)
    assert svc.ms(256) == pytest.approx(297.82 + (297.82 - 150.82) * 2)
    assert svc.ms(0.5) == pytest.approx(7.34 - (9.29 - 7.34) / 2)
    assert ServiceTime(PROFILE, 1.5).ms(24) == pytest.approx(1.5 * svc.ms(24))
    assert svc.knee_batch_size() == 16  # 16 -> 32 improves per-request time by < 5 %


@pytest.mark.parametrize(
    ("profile", "field"),
    [
        (ServiceProfile(batch_sizes=(1, 2), batch_latency_ms=(1.0,)), "batch_latency_ms"),
        (ServiceProfile(batch_sizes=(2, 1), batch_latency_ms=(1.0, 2.0)), "batch_sizes"),
        (ServiceProfile(batch_sizes=(1, 2), batch_latency_ms=(1.0, -2.0)), "batch_latency_ms"),
    ],
)
def test_bad_profile_is_named(profile: ServiceProfile, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ServiceTime(profile)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="rate_rps"):
        MODEL.fraction_within(-1.0, BatchingParams(), 100.0)
    with pytest.raises(ValueError, match="num_batch_threads"):
        MODEL.mean_batch_size(10.0, BatchingParams(num_batch_threads=0))
    with pytest.raises(ValueError, match="q"):
        MODEL.latency_quantile_ms(10.0, BatchingParams(), 1.5)
    with pytest.raises(ValueError, match="service_scale"):
        CapacityModel(PROFILE, service_scale=0.0)


# --- agreement with the discrete-event simulator --------------------------------------------

VALIDATION_PARAMS = [
    BatchingParams(32, 2_000, 4, 100),
    BatchingParams(8, 1_000, 2, 100),
    BatchingParams(64, 5_000, 1, 100),
    BatchingParams(16, 0, 8, 100),
]


@pytest.mark.parametrize("params", VALIDATION_PARAMS, ids=str)
def test_capacity_at_slo_matches_the_simulator(params: BatchingParams) -> None:
    analytic = MODEL.capacity_at_slo_rps(params, SLO_P99_100)
    simulated = des_capacity_rps(params, MODEL.service, analytic, 100.0)
    assert analytic == pytest.approx(simulated, rel=0.10)


@pytest.mark.parametrize(
    ("params", "model", "mean_rel"),
    [
        (VALIDATION_PARAMS[0], MODEL, 0.12),
        (VALIDATION_PARAMS[1], MODEL, 0.12),
        (VALIDATION_PARAMS[0], ONE_GPU, 0.12),
        # one GPU, batch 8: the mean is the model's weakest statistic near capacity (~18 % low)
        (VALIDATION_PARAMS[1], ONE_GPU, 0.25),
    ],
    ids=["B32-c4-parallel", "B8-c2-parallel", "B32-one-gpu", "B8-one-gpu"],
)
def test_fraction_within_and_utilization_match_the_simulator(
    params: BatchingParams, model: CapacityModel, mean_rel: float
) -> None:
    capacity = model.capacity_at_slo_rps(params, SLO_P99_100)
    for load in (0.5, 0.9, 1.0):
        rate = load * capacity
        run = simulate_replica(UNIT_GAPS / rate, params, model.service)
        assert model.fraction_within(rate, params, 100.0) == pytest.approx(run.fraction_within(100.0), abs=0.015)
        assert model.busy_fraction(rate, params) == pytest.approx(run.busy_fraction, abs=0.07)
        assert model.mean_batch_size(rate, params) == pytest.approx(float(run.batch_sizes.mean()), rel=0.2)
        served = run.latency_ms[~run.rejected]
        assert model.mean_latency_ms(rate, params) == pytest.approx(float(served.mean()), rel=mean_rel)


def test_one_gpu_throughput_is_bounded_by_the_profile() -> None:
    """Extra batch threads cannot add device throughput on one GPU (the profile times one batch)."""
    for threads in (1, 2, 8):
        params = BatchingParams(32, 2_000, threads, 100)
        assert ONE_GPU.max_throughput_rps(params) == pytest.approx(32 / PROFILE.batch_latency_ms[5] * 1000)
    assert MODEL.max_throughput_rps(BatchingParams(32, 2_000, 4, 100)) == pytest.approx(
        4 * ONE_GPU.max_throughput_rps(BatchingParams(32, 2_000, 1, 100))
    )


@pytest.mark.parametrize("params", VALIDATION_PARAMS, ids=str)
def test_one_gpu_capacity_at_slo_matches_the_simulator(params: BatchingParams) -> None:
    analytic = ONE_GPU.capacity_at_slo_rps(params, SLO_P99_100)
    simulated = des_capacity_rps(params, ONE_GPU.service, analytic, 100.0)
    assert analytic == pytest.approx(simulated, rel=0.10)


def test_overload_rejects_the_excess_and_misses_everything() -> None:
    params = BatchingParams()
    top = MODEL.max_throughput_rps(params)
    assert top == pytest.approx(4 * 32 / 0.07718)
    assert MODEL.latency_quantile_ms(1.2 * top, params, 0.5) == math.inf
    assert MODEL.rejected_fraction(1.2 * top, params) == pytest.approx(1 - 1 / 1.2)
    assert MODEL.fraction_within(1.2 * top, params, 100.0) < 0.01
    assert MODEL.busy_fraction(1.2 * top, params) == 1.0


def test_capacity_is_zero_when_even_a_lone_request_misses() -> None:
    assert MODEL.capacity_at_slo_rps(BatchingParams(), SLO(0.99, 5.0)) == 0.0


def test_light_load_waits_the_timeout() -> None:
    params = BatchingParams(32, 2_000, 4, 100)
    assert MODEL.latency_quantile_ms(0.01, params, 0.99) == pytest.approx(2.0 + 7.34, abs=0.05)
    assert MODEL.mean_batch_size(0.01, params) == pytest.approx(1.0, abs=1e-3)


# --- properties ----------------------------------------------------------------------------

PARAMS = st.builds(
    BatchingParams,
    max_batch_size=st.sampled_from([1, 2, 4, 8, 16, 32, 64]),
    batch_timeout_us=st.sampled_from([0, 500, 2_000, 10_000]),
    num_batch_threads=st.sampled_from([1, 2, 4, 8]),
    max_enqueued_batches=st.sampled_from([1, 10, 100]),
)


@settings(max_examples=15, deadline=None)
@given(params=PARAMS, loads=st.lists(st.floats(0.0, 1.3), min_size=2, max_size=5), latency_ms=st.floats(5.0, 400.0))
def test_fraction_within_is_a_probability_non_increasing_in_rate(
    params: BatchingParams, loads: list[float], latency_ms: float
) -> None:
    top = MODEL.max_throughput_rps(params)
    values = [MODEL.fraction_within(load * top, params, latency_ms) for load in sorted(loads)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(later <= earlier + 1e-12 for earlier, later in zip(values, values[1:], strict=False))


@settings(max_examples=8, deadline=None)
@given(
    sizes=st.lists(st.sampled_from([1, 2, 4, 8, 16]), min_size=2, max_size=2, unique=True),
    timeout_us=st.sampled_from([0, 1_000, 5_000]),
    threads=st.integers(1, 8),
    slo_ms=st.sampled_from([60.0, 100.0, 250.0]),
)
def test_capacity_grows_with_batch_size_up_to_the_knee(
    sizes: list[int], timeout_us: int, threads: int, slo_ms: float
) -> None:
    small, large = sorted(sizes)
    assert large <= MODEL.service.knee_batch_size()
    slo = SLO(0.99, slo_ms)
    cap_small = MODEL.capacity_at_slo_rps(BatchingParams(small, timeout_us, threads, 100), slo)
    cap_large = MODEL.capacity_at_slo_rps(BatchingParams(large, timeout_us, threads, 100), slo)
    assert cap_large >= cap_small * 0.999


@settings(max_examples=20, deadline=None)
@given(rate=st.floats(0.1, 2_000.0), seed=st.integers(0, 10_000))
def test_infinite_capacity_never_queues(rate: float, seed: int) -> None:
    INFINITE = CapacityModel(ServiceProfile(device_parallelism=10_000))  # a device that never saturates
    params = BatchingParams(max_batch_size=1, batch_timeout_us=0, num_batch_threads=10_000, max_enqueued_batches=10)
    s1_ms = PROFILE.batch_latency_ms[0]
    assert INFINITE.fraction_within(rate, params, 1e9) == 1.0
    assert INFINITE.rejected_fraction(rate, params) == 0.0
    assert INFINITE.mean_latency_ms(rate, params) == pytest.approx(s1_ms)
    assert INFINITE.latency_quantile_ms(rate, params, 0.999) == pytest.approx(s1_ms, abs=1e-3)
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, 2_000))
    run = simulate_replica(arrivals, params, INFINITE.service)
    np.testing.assert_allclose(run.latency_ms, s1_ms)
    assert not run.rejected.any()


# --- calibration ---------------------------------------------------------------------------


def test_calibration_tracks_a_replica_slower_than_its_profile() -> None:
    params = BatchingParams(16, 1_000, 2, 100)
    slow = ServiceTime(PROFILE, 1.5)
    truth_capacity = des_capacity_rps(params, slow, MODEL.capacity_at_slo_rps(params, SLO_P99_100) / 1.5, 100.0)
    observations = []
    for load in (0.2, 0.5, 0.8):
        rate = load * truth_capacity
        run = simulate_replica(UNIT_GAPS[:30_000] / rate, params, slow)
        observations.append((rate, run.latency_quantile_ms(0.99), float(run.batch_sizes.mean())))
    cal = Calibration()
    for step in range(24):
        rate, p99, batch = observations[step % len(observations)]
        cal = calibrate(
            cal, PROFILE, params, rate_per_replica_rps=rate, observed_latency_ms=p99, quantile=0.99,
            observed_batch_size=batch,
        )  # fmt: skip
    assert cal.samples == 24
    assert cal.service_scale == pytest.approx(1.5, rel=0.12)
    estimate = cached_model(PROFILE, cal.service_scale).capacity_at_slo_rps(params, SLO_P99_100)
    uncalibrated = MODEL.capacity_at_slo_rps(params, SLO_P99_100)
    assert estimate == pytest.approx(truth_capacity, rel=0.10)
    assert abs(estimate - truth_capacity) < 0.5 * abs(uncalibrated - truth_capacity)


def test_calibration_holds_on_a_faithful_replica_and_is_bounded() -> None:
    params = BatchingParams()
    rate = 600.0
    predicted = MODEL.latency_quantile_ms(rate, params, 0.99)
    cal = Calibration()
    for _ in range(5):
        cal = calibrate(cal, PROFILE, params, rate_per_replica_rps=rate, observed_latency_ms=predicted, quantile=0.99)
    assert cal.service_scale == pytest.approx(1.0, abs=1e-3)
    for _ in range(40):
        cal = calibrate(cal, PROFILE, params, rate_per_replica_rps=rate, observed_latency_ms=1e6, quantile=0.99)
    assert cal.service_scale == CALIBRATION_BOUNDS[1]
    with pytest.raises(ValueError, match="observed_latency_ms"):
        calibrate(cal, PROFILE, params, rate_per_replica_rps=rate, observed_latency_ms=math.nan, quantile=0.99)
