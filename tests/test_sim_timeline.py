"""The timeline's cumulative counters: the scalar fast path equals the vectorized one bit for bit."""

from __future__ import annotations

import numpy as np

from autoscaler.sim.timeline import Timeline


def _filled(seed: int) -> Timeline:
    rng = np.random.default_rng(seed)
    tl = Timeline(preroll_s=5, n_s=200, start_s=0.0)
    n = tl.size
    tl.arrivals[:] = rng.gamma(2.0, 50.0, n)
    tl.rejected[:] = np.where(rng.random(n) < 0.2, tl.arrivals * rng.random(n), 0.0)
    tl.served[:] = tl.arrivals - tl.rejected
    tl.ready[:] = rng.integers(0, 6, n)  # includes seconds with no ready pod
    return tl


def test_closing_second_by_second_equals_closing_in_one_span() -> None:
    for seed in range(5):
        a, b = _filled(seed), _filled(seed)
        a.close(0, a.size)  # vectorized
        i = 0
        rng = np.random.default_rng(seed + 100)
        while i < b.size:  # scalar spans of 1..8 seconds, mixed with a long one
            j = min(b.size, i + int(rng.choice([1, 2, 3, 8, 40])))
            b.close(i, j)
            i = j
        for name in ("cum_share", "cum_arrivals", "cum_served", "cum_rejected", "cum_ready"):
            x, y = getattr(a, name), getattr(b, name)
            # sums restart from the value at each span's start, so spans differ from one long
            # cumsum in rounding only; second-by-second spans are what the engine must reproduce
            assert np.allclose(x, y, rtol=1e-12, atol=0.0), name
        assert a.filled == b.filled == a.size


def test_scalar_path_is_bit_identical_to_numpy_on_the_same_span() -> None:
    for span in (1, 2, 5, 8):
        a, b = _filled(span), _filled(span)
        a.close(0, 10)
        b.close(0, 10)
        for lo in range(10, a.size - span, span):
            a.close(lo, lo + span)  # scalar (span <= 8)
            # the numpy formula for the same span, written out
            hi = lo + span
            ready = b.ready[lo:hi]
            share = np.divide(b.served[lo:hi], ready, out=np.zeros(span), where=ready > 0)
            b.cum_share[lo + 1 : hi + 1] = b.cum_share[lo] + np.cumsum(share)
            b.cum_ready[lo + 1 : hi + 1] = b.cum_ready[lo] + np.cumsum(ready)
            b.cum_served[lo + 1 : hi + 1] = b.cum_served[lo] + np.cumsum(b.served[lo:hi])
        n = a.size - span
        assert np.array_equal(a.cum_share[:n], b.cum_share[:n])
        assert np.array_equal(a.cum_ready[:n], b.cum_ready[:n])
        assert np.array_equal(a.cum_served[:n], b.cum_served[:n])


def test_one_second_rejections_equal_the_vectorized_table_bit_for_bit() -> None:
    from autoscaler.core.capacity import CapacityModel
    from autoscaler.sim.fluid import rate_table
    from autoscaler.spec.types import SLO, BatchingParams, ServiceProfile

    profile = ServiceProfile(batch_sizes=(1, 8, 32), batch_latency_ms=(5.0, 12.0, 40.0))
    table = rate_table(CapacityModel(profile), BatchingParams(16, 2000, 1, 20), SLO(0.99, 100.0, 0.999))
    rng = np.random.default_rng(7)
    top = table.top_rps
    ready = rng.integers(0, 8, 3000).astype(np.float64)
    arrivals = rng.uniform(0.0, 1.6 * top, 3000) * np.maximum(ready, 1.0)
    arrivals[:20] = table.rates[:20] * np.maximum(ready[:20], 1.0)  # exactly on grid points
    arrivals[20:25] = 0.0
    vec = table.rejected_count(arrivals, ready)
    one = np.array([table.rejected_one(float(a), float(r)) for a, r in zip(arrivals, ready, strict=True)])
    assert np.array_equal(vec, one)
    assert (one[ready <= 0] == arrivals[ready <= 0]).all()
    assert (one[(ready > 0) & (arrivals / np.maximum(ready, 1.0) > table.mu_rps)] > 0).all()
