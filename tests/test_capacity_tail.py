"""The analytic model's SLO tail agrees with the exact batch-queue DES near capacity.

At a 99.9 % attainment goal the miss fraction near capacity is the whole game. The one-batch
fixed point counted about half the DES's misses there (T4, p99 <= 100 ms: 1.0 % vs 1.9 % at
359 rps/replica); on one server the model now solves the request queue (`core/bulkqueue.py`).
The DES reference pools independent seeds; its own spread near 0.8x capacity (misses ~1e-6 to
1e-5, from rare queue build-ups) is far wider than 10 %, so the bound is 10 % of the DES value
plus three standard errors of it (the seed-to-seed spread over sqrt(seeds)).
"""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.core.batchqueue import simulate_replica
from autoscaler.core.capacity import CapacityModel
from autoscaler.spec.types import SLO, BatchingParams, ServiceProfile

T4 = ServiceProfile()  # one GPU: batches run one at a time
CASES = {
    # the shipped default: B = 16, 2 ms timeout, p99 <= 100 ms
    "default": (BatchingParams(16, 2_000, 2, 100), SLO(0.99, 100.0, 0.999)),
    # smaller batches, a tighter SLO
    "b8-p99-50ms": (BatchingParams(8, 1_000, 1, 100), SLO(0.99, 50.0, 0.999)),
    # a timeout as long as the service: batches wait for it between busy periods
    "b16-t20ms": (BatchingParams(16, 20_000, 1, 100), SLO(0.99, 50.0, 0.999)),
}
SEEDS = 4
REQUESTS = 800_000


def des_miss(rate_rps: float, params: BatchingParams, slo: SLO, model: CapacityModel) -> tuple[float, float]:
    """Fraction of arrivals late or rejected, and its standard error, over SEEDS independent runs."""
    misses = []
    for seed in range(SEEDS):
        arrivals = np.cumsum(np.random.default_rng(1_000 + seed).exponential(1.0 / rate_rps, REQUESTS))
        run = simulate_replica(arrivals, params, model.service)
        k = REQUESTS // 20  # warm-up from an empty queue
        late = run.rejected[k:] | (np.nan_to_num(run.latency_ms[k:], nan=np.inf) > slo.latency_ms)
        misses.append(float(np.mean(late)))
    return float(np.mean(misses)), float(np.std(misses, ddof=1) / np.sqrt(SEEDS))


@pytest.mark.parametrize("case", list(CASES))
def test_model_miss_fraction_matches_the_des_near_capacity(case: str) -> None:
    params, slo = CASES[case]
    model = CapacityModel(T4)
    capacity = model.capacity_at_slo_rps(params, slo)
    for frac in (0.8, 0.9, 0.95, 1.0, 1.05):
        rate = frac * capacity
        point = model.steady(rate, params)
        miss = 1.0 - model.fraction_within(rate, params, slo.latency_ms)
        # the fraction_within table interpolates the steady states: the same value within 2 %
        assert miss == pytest.approx(1.0 - (1.0 - point.rejected) * point.cdf(slo.latency_ms / 1000.0), rel=0.02)
        des, se = des_miss(rate, params, slo, model)
        assert abs(miss - des) <= 0.10 * des + 3.0 * se, (frac, miss, des, se)
    # at capacity the SLO quantile sits at the limit: about 1 - q of the requests miss, in both
    des, se = des_miss(capacity, params, slo, model)
    assert des == pytest.approx(1.0 - slo.latency_quantile, rel=0.15)


def test_exact_tail_skips_only_where_the_fixed_point_has_a_wide_margin() -> None:
    """`capacity_at_slo_rps` trusts the one-batch fixed point where it gives 10x fewer misses than the
    SLO allows; there the exact queue must meet the SLO too (it sees at most ~2-3x more misses)."""
    light = CapacityModel(T4, exact_tail=False)
    exact = CapacityModel(T4)
    for params, slo in CASES.values():
        top = exact.max_throughput_rps(params)
        for frac in np.linspace(0.05, 0.99, 40):
            rate = float(frac * top)
            lp, ep = light.steady(rate, params), exact.steady(rate, params)
            limit_s = slo.latency_ms / 1000.0
            light_miss = 1.0 - (1.0 - lp.rejected) * lp.cdf(limit_s)
            exact_miss = 1.0 - (1.0 - ep.rejected) * ep.cdf(limit_s)
            if light_miss <= 0.1 * (1.0 - slo.latency_quantile):
                assert exact_miss <= 1.0 - slo.latency_quantile, (params, rate)
            assert exact_miss <= max(4.0 * light_miss, 1e-6) or light_miss > 0.5, (params, rate)
