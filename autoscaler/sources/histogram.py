"""Prometheus' `histogram_quantile` on classic buckets, for sources that compute it themselves.

Owns the interpolation the direct-scrape source needs so its quantiles equal what PromQL
would return from the same counters (promql/quantile.go `bucketQuantile`): buckets sorted by
upper bound, the +Inf bucket required, linear interpolation inside the bucket holding the
rank, the lower bound of the first bucket taken as 0 when its upper bound is positive, and the
rank falling in +Inf answered with the largest finite bound. Cumulative counts are made
monotonic first, as Prometheus does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """q-quantile from (upper_bound, cumulative_count) pairs; NaN when undefined."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    bs = sorted(buckets, key=lambda b: b[0])
    if len(bs) < 2 or not math.isinf(bs[-1][0]):
        return math.nan
    # ensure monotonic cumulative counts
    counts: list[float] = []
    top = 0.0
    for _, c in bs:
        top = max(top, c)
        counts.append(top)
    bounds = [b for b, _ in bs]
    observations = counts[-1]
    if observations == 0 or math.isnan(observations):
        return math.nan
    rank = q * observations
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(bs) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0
    end = bounds[b]
    count = counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count == 0:
        return start
    return start + (end - start) * (rank / count)


def fraction_at_or_below(x: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Fraction of observations ≤ x, interpolating linearly inside the bucket holding x (the
    inverse of `histogram_quantile`); NaN without observations."""
    bs = sorted(buckets, key=lambda b: b[0])
    if not bs or not math.isinf(bs[-1][0]):
        return math.nan
    total = bs[-1][1]
    if total <= 0 or math.isnan(total):
        return math.nan
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in bs:
        if math.isinf(bound):
            return min(1.0, prev_count / total)  # beyond the last finite bound: the +Inf bucket counts as a miss
        if x <= bound:
            width = bound - prev_bound
            frac = 1.0 if width <= 0 else (x - prev_bound) / width
            return min(1.0, max(0.0, prev_count + (count - prev_count) * max(0.0, frac)) / total)
        prev_bound, prev_count = bound, count
    return 1.0
