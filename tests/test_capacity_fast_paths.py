"""The capacity model's fast paths equal their slow references (autoscaler/core/capacity.py).

* `_solve` finds the batch-size fixed point with Anderson mixing; the reference here is the plain
  damped iteration π ← (π + G(π)) / 2 it replaced (30-140 steps): both stop at a residual of 1e-6,
  so they agree to ~1e-5.
* `_solve_small` (the mixing's tiny least-squares solve, in plain floats) equals numpy's solve.
* `reported_quantile_ms` / `histogram_quantile_ms` are memoized: equal to the bucketed quantile
  computed from scratch.
* `capacity_at_slo_rps` tests each rate with one CDF evaluation, P(latency ≤ SLO) ≥ q among
  arrivals, instead of searching the quantile: the same capacity as the quantile search.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.capacity import (
    _CAPACITY_BISECT,
    TF_LATENCY_BUCKETS_MS,
    CapacityModel,
    _solve_small,
    histogram_quantile_ms,
)
from autoscaler.spec.types import SLO, BatchingParams, ServiceProfile

PARAMS = [
    BatchingParams(16, 2_000, 2, 100),
    BatchingParams(16, 2_000, 1, 100),
    BatchingParams(32, 0, 4, 100),
    BatchingParams(8, 10_000, 2, 4),
    BatchingParams(64, 5_000, 8, 2),
    BatchingParams(1, 0, 1, 100),
]
PROFILES = [ServiceProfile(), ServiceProfile(device_parallelism=8)]


def damped_pi(model: CapacityModel, lam: float, params: BatchingParams) -> np.ndarray:
    """The batch-size distribution by the damped fixed-point iteration (the slow reference)."""
    big_b, c = params.max_batch_size, model.service.servers(params)
    timeout_s = params.batch_timeout_us * 1e-6
    svc = np.asarray(model.service.table_s(big_b))
    k = np.arange(big_b + 1, dtype=np.float64)
    lam = max(lam, 1e-9)
    grid = np.linspace(0.0, svc[big_b], 33)
    resid = np.clip(svc[None, :] - grid[:, None], 0.0, None)
    lam_resid = -np.expm1(-lam * resid)
    lgam = np.array([math.lgamma(j + 1.0) for j in range(big_b)])
    extra_b, lgam_b = np.arange(big_b, dtype=np.float64)[None, : big_b - 1], lgam[None, : big_b - 1]
    r0 = np.concatenate(([0.0], 0.5 * (grid[:-1] + grid[1:])))

    def batch_sizes(a: np.ndarray) -> np.ndarray:
        size_p = np.zeros((len(a), big_b + 1))
        if big_b == 1:
            size_p[:, 1] = 1.0
            return size_p
        m = lam * a[:, None]
        logp = -m + extra_b * np.log(np.maximum(m, 1e-300)) - lgam_b
        pmf = np.where(m > 0.0, np.exp(logp), (extra_b == 0).astype(np.float64))
        size_p[:, 1:big_b] = pmf
        size_p[:, big_b] = np.clip(1.0 - pmf.sum(axis=1), 0.0, None)
        return size_p

    pi = np.eye(big_b + 1)[1]
    size_p = batch_sizes(np.maximum(r0, timeout_s))
    for _ in range(20_000):
        mean_k, mean_s = float(pi @ k), float(pi @ svc)
        u = min(1.0 - 1e-12, lam * mean_s / (c * mean_k))
        surv = lam_resid @ pi
        if c >= 2:
            surv = surv * (u * (resid @ pi) / mean_s) ** (c - 1)
        wait_p = np.concatenate(([1.0 - surv[0]], surv[:-1] - surv[1:]))
        wait_p[-1] += surv[-1]
        if c >= 2:
            r = r0.copy()
            busy = float(wait_p[1:].sum())
            if busy > 0.0:
                mid = float(wait_p[1:] @ r[1:]) / busy
                r[1:] = np.maximum(mid + 0.7 * (r[1:] - mid), 0.0)
            size_p = batch_sizes(np.maximum(r, timeout_s))
        new = wait_p @ size_p
        if float(np.abs(new - pi).max()) < 1e-10:
            return new
        pi = 0.5 * (pi + new)
    raise AssertionError("the damped reference did not converge")


@pytest.mark.parametrize("profile", PROFILES, ids=["one-gpu", "eight-way"])
@pytest.mark.parametrize("params", PARAMS, ids=str)
def test_anderson_solve_equals_the_damped_iteration(profile: ServiceProfile, params: BatchingParams) -> None:
    for scale in (0.7, 1.0, 1.6):
        # the fixed point itself (one server: without the exact queue, which replaces its batch size)
        model = CapacityModel(profile, service_scale=scale, exact_tail=False)
        top = model.max_throughput_rps(params)
        for frac in (0.0, 0.02, 0.2, 0.45, 0.7, 0.9, 0.98):
            point = model.steady(frac * top, params)
            want = damped_pi(model, frac * top, params)
            assert np.abs(point.pi - want).max() < 2e-5, (scale, frac)
            assert point.pi.min() >= 0.0 and point.pi.sum() == pytest.approx(1.0, abs=1e-9)
            # (a 1e-6 residual: entries within ~1e-5, the mean over up to B sizes within ~B·1e-5)
            assert point.batch_size == pytest.approx(float(want @ np.arange(len(want))), rel=5e-4, abs=1e-6)


def test_warm_and_cold_starts_agree() -> None:
    """The solution does not depend on where the iteration starts (cache order is irrelevant)."""
    params = BatchingParams(16, 2_000, 2, 100)
    top = CapacityModel(ServiceProfile()).max_throughput_rps(params)
    rates = [top * f for f in (0.1, 0.5, 0.85)]
    up, down = CapacityModel(ServiceProfile()), CapacityModel(ServiceProfile())
    for r in rates:
        up.steady(r, params)
    for r in reversed(rates):
        down.steady(r, params)
    for r in rates:
        assert np.abs(up.steady(r, params).pi - down.steady(r, params).pi).max() < 2e-5


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda n: st.tuples(
            st.lists(st.lists(st.floats(-1.0, 1.0), min_size=6, max_size=6), min_size=n, max_size=n),
            st.lists(st.floats(-1.0, 1.0), min_size=n, max_size=n),
        )
    )
)
def test_small_solve_equals_numpy(case: tuple[list[list[float]], list[float]]) -> None:
    rows, b = case
    x = np.array(rows)
    gram = x @ x.T
    got = _solve_small(gram.tolist(), b)
    scale = float(gram.diagonal().max())
    if got is None:  # refused: zero or nearly singular
        assert not scale > 1e-280 or np.linalg.cond(gram) > 1e6
        return
    ridge = gram + 1e-12 * scale * np.eye(len(b))
    want = np.linalg.solve(ridge, b)
    if np.linalg.cond(ridge) < 1e8:
        assert np.allclose(got, want, rtol=1e-6, atol=1e-9 * float(np.abs(want).max()))
    residual = ridge @ np.array(got) - np.array(b)
    assert np.abs(residual).max() <= 1e-6 * max(float(np.abs(b).max()), scale * float(np.abs(want).max()), 1e-300)


def test_small_solve_refuses_a_zero_or_nan_matrix() -> None:
    assert _solve_small([[0.0]], [1.0]) is None
    assert _solve_small([[math.nan]], [1.0]) is None
    assert _solve_small([[2.0]], [1.0]) == pytest.approx([0.5])


def bucketed_quantile_from_scratch(model: CapacityModel, rate: float, params: BatchingParams, q: float) -> float:
    """Prometheus' histogram_quantile over TF Serving's buckets of the model's latency CDF."""
    point = model.steady(rate, params)
    if point.overloaded:
        return math.inf
    edges = list(TF_LATENCY_BUCKETS_MS)
    cdf = [point.cdf(e / 1000.0) for e in edges]
    for i, c in enumerate(cdf):
        if c >= q:
            lo, lo_cdf = (edges[i - 1], cdf[i - 1]) if i > 0 else (0.0, 0.0)
            width = c - lo_cdf
            return lo + (edges[i] - lo) * (q - lo_cdf) / width if width > 0.0 else lo
    return edges[-1]


@pytest.mark.parametrize("params", PARAMS[:4], ids=str)
def test_memoized_reported_quantile_equals_the_computation_from_scratch(params: BatchingParams) -> None:
    model = CapacityModel(ServiceProfile())
    top = model.max_throughput_rps(params)
    for frac in (0.01, 0.3, 0.6, 0.95, 1.1):
        rate = frac * top
        for q in (0.5, 0.99):
            want = bucketed_quantile_from_scratch(model, rate, params, q)
            first = histogram_quantile_ms(model, rate, params, q)
            again = model.reported_quantile_ms(rate, params, q)
            assert first == again
            assert first == pytest.approx(want, rel=1e-12) if math.isfinite(want) else math.isinf(first)


def capacity_by_quantile_search(model: CapacityModel, params: BatchingParams, slo: SLO) -> float:
    """`capacity_at_slo_rps` with each rate tested by the quantile search (the slow reference)."""
    params = model.effective(params)
    top = model.max_throughput_rps(params)

    def ok(rate: float) -> bool:
        return model.latency_quantile_ms(rate, params, slo.latency_quantile) <= slo.latency_ms

    if not ok(top * 1e-4):
        return 0.0
    lo, hi = top * 1e-4, top
    for i in range(1, 12):
        if not ok(top * i / 12):
            hi = top * i / 12
            break
        lo = top * i / 12
    for _ in range(_CAPACITY_BISECT):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


@pytest.mark.parametrize("params", PARAMS, ids=str)
def test_capacity_by_one_cdf_per_rate_equals_the_quantile_search(params: BatchingParams) -> None:
    for scale in (0.8, 1.5):  # (the quantile search over the exact one-server queue is slow)
        for slo in (SLO(0.99, 100.0), SLO(0.95, 40.0), SLO(0.999, 400.0)):
            fast = CapacityModel(ServiceProfile(), service_scale=scale).capacity_at_slo_rps(params, slo)
            slow = capacity_by_quantile_search(CapacityModel(ServiceProfile(), service_scale=scale), params, slo)
            # one server (ServiceProfile()): the exact queue's CDF is a sum of steps (midpoint nodes
            # in time), so the quantile's interpolation inside its last 1/13824 bracket can put a rate
            # next to the boundary on the other side: at most the last bisection step apart
            top = CapacityModel(ServiceProfile(), service_scale=scale).max_throughput_rps(params)
            step = top / (12 * 2**_CAPACITY_BISECT)
            assert fast == pytest.approx(slow, abs=1.01 * step), (scale, slo)
