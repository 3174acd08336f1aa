"""Latency quantiles as TF Serving's request_latency histogram and Prometheus report them.

Owns TF Serving's bucket boundaries and the bucketed quantile of one steady state. TF Serving
records `/tensorflow/serving/request_latency` in exponential buckets (10 µs, ×1.8, 33 buckets:
`request_latency` in tensorflow_serving/servables/tensorflow/util.cc), and `histogram_quantile`
interpolates linearly inside the bucket that holds the quantile
(https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile). A raw p99
read that way is biased by up to 80 %, so calibration compares the observed value with the model's
quantile through the same buckets.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from autoscaler.spec.types import BatchingParams

if TYPE_CHECKING:
    from autoscaler.core.capacity.model import CapacityModel
    from autoscaler.core.capacity.steady import Steady

# TF Serving's request_latency histogram buckets: Exponential(10 µs, 1.8, 33), in ms.
TF_LATENCY_BUCKETS_MS = tuple(10.0 * 1.8**i / 1000.0 for i in range(33))


def histogram_quantile_ms(model: CapacityModel, rate_rps: float, params: BatchingParams, q: float) -> float:
    """The model's q-quantile as TF Serving's histogram + Prometheus' histogram_quantile report it.

    Linear interpolation inside the bucket holding the quantile (as `histogram_quantile` does);
    inf when the model calls the replica overloaded. Memoized in the model
    (`CapacityModel.reported_quantile_ms`).
    """
    return model.reported_quantile_ms(rate_rps, params, q)


_BUCKET_EDGES_MS = np.asarray(TF_LATENCY_BUCKETS_MS)
_BUCKET_EDGES_S = _BUCKET_EDGES_MS / 1000.0


def bucketed_quantile_ms(point: Steady, q: float) -> float:
    """`histogram_quantile_ms` of one steady state (not cached)."""
    if point.overloaded:
        return math.inf
    edges = _BUCKET_EDGES_MS
    if point.bulk is not None:  # a CDF evaluation costs ~1 ms: bisect the (monotone) CDF over the edges
        return _bisected_bucket_quantile_ms(point, q)
    cdf = point.cdf_many(_BUCKET_EDGES_S)
    above = np.nonzero(cdf >= q)[0]
    if not above.size:
        return float(edges[-1])
    i = int(above[0])
    lo, lo_cdf = (float(edges[i - 1]), float(cdf[i - 1])) if i > 0 else (0.0, 0.0)
    width = float(cdf[i]) - lo_cdf
    return lo + (float(edges[i]) - lo) * (q - lo_cdf) / width if width > 0.0 else lo


def _bisected_bucket_quantile_ms(point: Steady, q: float) -> float:
    """`bucketed_quantile_ms` from ~7 CDF evaluations: the first edge whose CDF reaches q, by bisection."""
    edges = _BUCKET_EDGES_MS
    n = len(edges)
    memo: dict[int, float] = {}

    def cdf(i: int) -> float:
        hit = memo.get(i)
        if hit is None:
            hit = memo[i] = float(point.cdf_many(_BUCKET_EDGES_S[i : i + 1])[0])
        return hit

    if cdf(n - 1) < q:
        return float(edges[-1])
    lo, hi = -1, n - 1  # cdf(hi) >= q; cdf(lo) < q (lo = -1: below every edge)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cdf(mid) >= q:
            hi = mid
        else:
            lo = mid
    i = hi
    lo_ms, lo_cdf = (float(edges[i - 1]), cdf(i - 1)) if i > 0 else (0.0, 0.0)
    width = cdf(i) - lo_cdf
    return lo_ms + (float(edges[i]) - lo_ms) * (q - lo_cdf) / width if width > 0.0 else lo_ms
