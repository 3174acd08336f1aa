"""The fluid simulator's truth is the exact batch-queue DES, not the controller's analytic model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.core.batchqueue import simulate_replica
from autoscaler.core.capacity import CapacityModel, histogram_quantile_ms
from autoscaler.sim import truth
from autoscaler.sim.fluid import LATENCY_CAP_MS, LATENCY_GRID_MS, RateTable, rate_table
from autoscaler.spec.types import SLO, BatchingParams, ServiceProfile

PROFILE = ServiceProfile()  # T4 FP32 ResNet-50, one GPU
PARAMS = BatchingParams(16, 2000, 2, 100)
SLO_ = SLO(0.99, 100.0, 0.999)
MODEL = CapacityModel(PROFILE)


@pytest.fixture(scope="module")
def des() -> RateTable:
    return rate_table(MODEL, PARAMS, SLO_)


def _independent_run(rate_rps: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    arr = np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate_rps, n))
    run = simulate_replica(arr, PARAMS, MODEL.service)
    k = n // 20
    return run.latency_ms[k:], run.rejected[k:]


def test_the_tables_are_the_des_not_the_analytic_model(des: RateTable) -> None:
    """Near capacity the controller's one-batch fixed point sees about half the SLO misses of the exact
    DES; the table must carry the DES's misses (checked against independent DES runs, other seeds:
    the miss fraction this close to capacity comes from queue build-ups lasting seconds, so one
    300 k-request run varies by ~12 % between seeds; the mean of eight, by ~4 %)."""
    i = int(np.searchsorted(des.rates, 375.0))
    rate = float(des.rates[i])
    misses = []
    for seed in range(1, 9):
        lat, rej = _independent_run(rate, 300_000, seed)
        misses.append(float(np.mean(rej | (np.nan_to_num(lat, nan=np.inf) > SLO_.latency_ms))))
    des_miss = float(np.mean(misses))
    table_miss = 1.0 - float(des.within[i])
    assert table_miss == pytest.approx(des_miss, rel=0.25)
    assert des.truth == "des"
    # truth="analytic" tabulates the model it is given: the one-batch fixed point misses half of them
    fixed_point = CapacityModel(PROFILE, exact_tail=False)
    analytic = rate_table(fixed_point, PARAMS, SLO_, truth="analytic")
    assert analytic.truth == "analytic"
    analytic_miss = 1.0 - float(np.interp(rate, analytic.rates, analytic.within))
    assert abs(analytic_miss - des_miss) > 0.4 * des_miss
    assert analytic_miss == pytest.approx(1.0 - fixed_point.fraction_within(rate, PARAMS, SLO_.latency_ms), rel=0.02)


def test_light_load_columns_agree_with_the_analytic_model(des: RateTable) -> None:
    """Where the analytic model is exact enough (no queueing tail), both truths agree."""
    for rate in (60.0, 150.0, 250.0):
        busy = float(np.interp(rate, des.rates, des.busy))
        batch = float(np.interp(rate, des.rates, des.batch))
        mean = float(np.interp(rate, des.rates, des.mean_ms))
        assert busy == pytest.approx(MODEL.busy_fraction(rate, PARAMS), rel=0.03)
        assert batch == pytest.approx(MODEL.mean_batch_size(rate, PARAMS), rel=0.03)
        assert mean == pytest.approx(MODEL.mean_latency_ms(rate, PARAMS), rel=0.03)
    # the lone request at rate 0: timeout + S(1)
    assert des.mean_ms[0] == pytest.approx(2.0 + PROFILE.batch_latency_ms[0])


def test_overload_rejects_the_excess_and_serves_through_a_full_queue(des: RateTable) -> None:
    mu = des.mu_rps
    rate = float(des.rates[-1])
    assert rate == pytest.approx(1.25 * mu)
    assert des.rejected[-1] == pytest.approx(1.0 - mu / rate, abs=0.01)
    assert des.within[-1] == 0.0
    assert des.lat_q[-1] == LATENCY_CAP_MS  # over arrivals: rejected are infinitely late
    full_queue_ms = PARAMS.max_enqueued_batches * MODEL.service.ms(16) / 1 + MODEL.service.ms(16)
    assert des.lat_q_served[-1] == pytest.approx(full_queue_ms, rel=0.05)
    assert not np.any(des.rejected[des.rates < 0.95 * mu] > 0)


def test_build_is_deterministic_and_monotone_where_it_matters(des: RateTable) -> None:
    again = RateTable(MODEL, PARAMS, SLO_)
    for name in ("within", "rejected", "busy", "batch", "mean_ms", "lat_q", "lat_q_reported", "cdf"):
        assert np.array_equal(getattr(again, name), getattr(des, name)), name
    # common random numbers across rates: misses grow with the rate (no noise reversals)
    assert np.all(np.diff(des.within) <= 1e-12)
    assert np.all(np.diff(des.rejected) >= -1e-12)
    assert np.all(np.diff(des.cdf, axis=1) >= 0.0)


def test_a_slower_true_server_is_measured_at_its_own_speed() -> None:
    slow = CapacityModel(PROFILE, service_scale=1.15)
    table = rate_table(slow, PARAMS, SLO_)
    base = rate_table(MODEL, PARAMS, SLO_)
    assert table.mu_rps == pytest.approx(base.mu_rps / 1.15)
    # at light load the latency is timeout + service: the service part is 15 % longer
    assert table.mean_ms[0] == pytest.approx(2.0 + 1.15 * PROFILE.batch_latency_ms[0])
    assert table.within[np.searchsorted(table.rates, 340.0)] < base.within[np.searchsorted(base.rates, 340.0)]


def test_reported_quantile_is_prometheus_histogram_quantile() -> None:
    """The DES's served latencies through TF Serving's buckets, interpolated as histogram_quantile does:
    checked against the analytic model's bucketed quantile where the two distributions agree."""
    rate = 150.0
    lat, rej = _independent_run(rate, 200_000, 3)
    served = np.sort(lat[~rej])
    got = truth.histogram_quantile_from_ms(served, 0.99)
    assert got == pytest.approx(histogram_quantile_ms(MODEL, rate, PARAMS, 0.99), rel=0.05)
    # beyond the last finite bucket: its upper bound; empty: NaN
    assert truth.histogram_quantile_from_ms(np.array([1e9]), 0.5) == pytest.approx(10.0 * 1.8**32 / 1000.0)
    assert math.isnan(truth.histogram_quantile_from_ms(np.zeros(0), 0.5))


def test_bad_truth_is_named() -> None:
    with pytest.raises(ValueError, match="truth: expected one of des, analytic"):
        RateTable(MODEL, PARAMS, SLO_, truth="model")


def test_columns_match_a_direct_measurement(des: RateTable) -> None:
    """`des_columns` is `measure` on the shared arrival sequence, point by point."""
    cols = des
    i = 10
    r = float(cols.rates[i])
    row, cdf = truth.measure(
        truth._unit_arrivals(truth.BASE_REQUESTS) / r,
        PARAMS,
        MODEL.service,
        SLO_,
        LATENCY_GRID_MS,
        LATENCY_CAP_MS,
        truth._warmup_s(truth.BASE_REQUESTS, r),
    )
    assert row[0] == cols.within[i] and row[3] == cols.batch[i]
    assert np.array_equal(cdf, cols.cdf[i])
