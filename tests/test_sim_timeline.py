"""The timeline's cumulative counters: any split into spans, scalar or vectorized, gives the same bits."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

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
            # running sums from each span's start value: the engine may serve ahead in long
            # spans and must still reproduce a tick-by-tick replay exactly
            assert np.array_equal(x, y), name
        assert a.filled == b.filled == a.size


def test_running_sums_are_plain_left_to_right_additions() -> None:
    for span in (1, 2, 5, 8, 30):
        a = _filled(span)
        lo = 0
        while lo < a.size:
            hi = min(a.size, lo + span)
            a.close(lo, hi)  # scalar (<= 16 s) or vectorized
            lo = hi
        # the reference: one float accumulator per column, added second by second
        acc = {"cum_share": 0.0, "cum_served": 0.0, "cum_ready": 0.0, "cum_rejected": 0.0}
        for i in range(a.size):
            r = float(a.ready[i])
            acc["cum_share"] += float(a.served[i]) / r if r > 0 else 0.0
            acc["cum_served"] += float(a.served[i])
            acc["cum_ready"] += r
            acc["cum_rejected"] += float(a.rejected[i])
            for name, v in acc.items():
                assert getattr(a, name)[i + 1] == v, (span, name, i)


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


@settings(max_examples=300, deadline=None)
@given(
    grid=st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=2, max_size=12, unique=True),
    ys=st.lists(st.floats(min_value=-1e9, max_value=1e9), min_size=12, max_size=12),
    x=st.one_of(st.floats(min_value=-2e6, max_value=2e6), st.just(math.nan)),
    on_grid=st.booleans(),
)
def test_interp_one_is_np_interp_bit_for_bit(grid: list[float], ys: list[float], x: float, on_grid: bool) -> None:
    from autoscaler.sim.fluid import interp_one

    xs = sorted(grid)
    fs = ys[: len(xs)]
    if on_grid:
        x = xs[len(xs) // 2]
    want = float(np.interp(x, np.array(xs), np.array(fs)))
    got = interp_one(x, xs, fs)
    assert (math.isnan(want) and math.isnan(got)) or want == got
