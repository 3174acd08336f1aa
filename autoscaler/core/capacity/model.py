"""`CapacityModel`: the per-replica query API of the capacity model, memoized in bounded caches.

Owns the answer to "how much load can one replica take under the latency SLO with these
batching parameters?" — the number every replica decision divides by — and the per-replica
latency distribution, rejection fraction, mean batch size and busy fraction that the fluid
simulator and the decision core read every tick, all from the steady states of `steady.py`.

`fraction_within` is made non-increasing in rate (running minimum over a cached rate table),
and `capacity_at_slo_rps` is the largest r such that *every* rate in (0, r] meets the SLO
(a rate meets it when P(latency ≤ SLO) ≥ q among arrivals: one CDF evaluation, no quantile
search; on one server a rate where the fixed point leaves a 10x margin skips the exact queue):
with a long timeout real batching can get faster with load, but an autoscaler must never conclude
that fewer replicas serve better.

Every answer (steady states, quantiles exact and bucketed, rate tables, capacities) is memoized
in the core's bounded LRU caches (`core/cache.py`) under the model's content id, so models built
separately for equal profiles share their solves, and memory stays bounded however many targets
and scales the daemon meets.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np

from autoscaler.core.cache import LRU, milli_scale
from autoscaler.core.capacity.histogram import bucketed_quantile_ms
from autoscaler.core.capacity.service_time import ServiceTime, validate_params
from autoscaler.core.capacity.steady import SolverConstants, Steady, overload_latency_s, solve, solver_constants
from autoscaler.core.types import FloatArray
from autoscaler.spec.types import SLO, BatchingParams, ServiceProfile

_TABLE_POINTS = 161  # rates per params in the fraction_within table, 0 .. 1.2 x max throughput
_CAPACITY_SCAN = 12  # coarse rate scan before bisection (finds the first rate that misses)
_CAPACITY_BISECT = 6  # halvings of the scan's step after it: to ~0.1 % of the max throughput
_PRECHECK_MARGIN = 0.1  # one server: rates the fixed point gives 10x fewer misses than allowed pass

# The memos, shared by all models; each key starts with the model's `cache_id`. Sizes: a 7-day
# replay of one target solves ~3,500 steady states; a rate grid holds 161 of them.
_STEADY: LRU[tuple[int, BatchingParams, float], Steady] = LRU("capacity: steady states", 20_000)
_QUANTILES: LRU[tuple[int, BatchingParams, float, float], float] = LRU("capacity: latency quantiles", 20_000)
_REPORTED: LRU[tuple[int, BatchingParams, float, float], float] = LRU("capacity: bucketed quantiles", 20_000)
_GRIDS: LRU[tuple[int, BatchingParams], list[Steady]] = LRU("capacity: fraction_within rate grids", 128)
_TABLES: LRU[tuple[int, BatchingParams, float], tuple[float, list[float]]] = LRU(
    "capacity: fraction_within tables", 4096
)
_CAPACITY: LRU[tuple[int, BatchingParams, float, float], float] = LRU("capacity: capacity at the SLO", 4096)
_CONSTANTS: LRU[tuple[int, int], SolverConstants] = LRU("capacity: solver constants", 256)
_EFFECTIVE: LRU[tuple[int, BatchingParams], BatchingParams] = LRU("capacity: effective batching params", 1024)
_MODELS: LRU[tuple[ServiceProfile, float, bool], CapacityModel] = LRU("capacity: shared models", 512)
# content -> id; an evicted content gets a fresh id next time (ids are never reused, so no stale hit)
_IDS: LRU[tuple[object, ...], int] = LRU("capacity: model content ids", 4096)
_NEXT_ID = itertools.count()


def _content_id(content: tuple[object, ...]) -> int:
    hit = _IDS.get(content)
    return hit if hit is not None else _IDS.put(content, next(_NEXT_ID))


class CapacityModel:
    """Per-replica capacity, latency and utilization under given batching parameters (memoized).

    A view of the shared memos: every answer is stored under the model's `cache_id`, which is
    the same for every model of the same service content (profile interpolation, device
    parallelism, scale, `exact_tail`), so equal models share their solves whoever built them.
    """

    def __init__(self, profile: ServiceProfile, *, service_scale: float = 1.0, exact_tail: bool = True) -> None:
        self.profile = profile
        self.service_scale = float(service_scale)
        # one server: solve the request queue exactly (`core/bulkqueue.py`, ~5 ms a rate); off, the
        # one-batch fixed point alone (~0.3 ms, about half the misses near capacity) -- for ranking
        self.exact_tail = exact_tail
        self.service = ServiceTime(profile, service_scale)
        self.cache_id = _content_id(
            (profile.batch_sizes, profile.batch_latency_ms, profile.device_parallelism, self.service_scale, exact_tail)
        )

    def effective(self, params: BatchingParams) -> BatchingParams:
        """`params` with `num_batch_threads` cut to the batches that really run in parallel.

        The model depends on the thread count only through `ServiceTime.servers`, so thread
        counts above the device's parallelism share one cache entry (and one solve).
        """
        servers = self.service.servers(params)
        # (counts <= servers, invalid ones included, are left for validate_params)
        if params.num_batch_threads <= servers:
            return params
        key = (servers, params)
        hit = _EFFECTIVE.get(key)
        return hit if hit is not None else _EFFECTIVE.put(key, replace(params, num_batch_threads=servers))

    # ---- the steady state ----------------------------------------------------------------
    def steady(self, rate_rps: float, params: BatchingParams) -> Steady:
        """Solve (and memoize) the steady state at `rate_rps` for `params`."""
        if not (isinstance(rate_rps, int | float) and math.isfinite(rate_rps) and rate_rps >= 0.0):
            raise ValueError(f"rate_rps: expected a finite rate >= 0 (got {rate_rps!r})")
        params = self.effective(params)
        key = (self.cache_id, params, float(rate_rps))
        hit = _STEADY.get(key)
        if hit is not None:
            return hit
        validate_params(params)
        # Always from the same start: a warm start (the last solution, or the caller's) moves the
        # fixed point's answer by ~1e-5, so a memoized steady state would depend on which rates were
        # solved before it in this process, and a replay on what ran before it (measured: 98.69 %
        # vs 98.08 % attainment for the same 12 h replay).
        servers, constants = self.service.servers(params), self._constants(params)
        return _STEADY.put(key, solve(float(rate_rps), params, servers, constants, None, self.exact_tail))

    def _constants(self, params: BatchingParams) -> SolverConstants:
        """The solver's rate-independent arrays for `params.max_batch_size` (memoized)."""
        key = (self.cache_id, params.max_batch_size)
        hit = _CONSTANTS.get(key)
        if hit is None:
            svc = np.asarray(self.service.table_s(params.max_batch_size), dtype=np.float64)
            hit = _CONSTANTS.put(key, solver_constants(svc))
        return hit

    # ---- public per-replica API ----------------------------------------------------------
    def max_throughput_rps(self, params: BatchingParams) -> float:
        """Throughput with every parallel server busy on full batches: c·B / S(B)."""
        validate_params(params)
        return self.service.servers(params) * params.max_batch_size / self.service.s(params.max_batch_size)

    def mean_batch_size(self, rate_rps: float, params: BatchingParams) -> float:
        return self.steady(rate_rps, params).batch_size

    def busy_fraction(self, rate_rps: float, params: BatchingParams) -> float:
        return self.steady(rate_rps, params).utilization

    def rejected_fraction(self, rate_rps: float, params: BatchingParams) -> float:
        return self.steady(rate_rps, params).rejected

    def mean_latency_ms(self, rate_rps: float, params: BatchingParams) -> float:
        """Mean latency of served requests, milliseconds."""
        return self.steady(rate_rps, params).mean_latency_s() * 1000.0

    def latency_quantile_ms(self, rate_rps: float, params: BatchingParams, q: float) -> float:
        """q-quantile of the latency of arriving requests (rejected = infinitely late), ms."""
        if not (isinstance(q, float | int) and 0.0 < q < 1.0):
            raise ValueError(f"q: expected a quantile in (0, 1) (got {q!r})")
        key = (self.cache_id, self.effective(params), float(rate_rps), float(q))
        hit = _QUANTILES.get(key)
        if hit is None:
            hit = _QUANTILES.put(key, self._latency_quantile_ms(rate_rps, params, q))
        return hit

    def reported_quantile_ms(self, rate_rps: float, params: BatchingParams, q: float) -> float:
        """`histogram_quantile_ms` of this model, memoized per (params, rate, q) like the exact quantile."""
        key = (self.cache_id, self.effective(params), float(rate_rps), float(q))
        hit = _REPORTED.get(key)
        if hit is None:
            hit = _REPORTED.put(key, bucketed_quantile_ms(self.steady(rate_rps, params), q))
        return hit

    def _latency_quantile_ms(self, rate_rps: float, params: BatchingParams, q: float) -> float:
        p = self.steady(rate_rps, params)
        if p.overloaded or (1.0 - p.rejected) < q:
            return math.inf
        target = q / (1.0 - p.rejected)
        lo = float(p.service_s[1])
        hi = float(p.service_s[-1] + p.full_wait_s.max() + p.wait_s.max()) + 1e-3
        while p.cdf(hi) < target:
            hi *= 2.0
            if hi > 1e5:
                return math.inf
        # three rounds of a vectorized 24-interval search narrow the bracket 13 824-fold
        c_lo, c_hi = 0.0, 1.0
        for _ in range(3):
            xs = np.linspace(lo, hi, 25)
            cs = p.cdf_many(xs)
            i = int(np.argmax(cs >= target))
            if i == 0:
                return float(xs[0]) * 1000.0
            lo, hi, c_lo, c_hi = float(xs[i - 1]), float(xs[i]), float(cs[i - 1]), float(cs[i])
        frac = (target - c_lo) / (c_hi - c_lo) if c_hi > c_lo else 1.0
        return (lo + frac * (hi - lo)) * 1000.0

    def _rate_grid(self, params: BatchingParams) -> list[Steady]:
        key = (self.cache_id, params)
        hit = _GRIDS.get(key)
        if hit is None:
            top = 1.2 * self.max_throughput_rps(params)
            hit = _GRIDS.put(key, [self.steady(top * i / (_TABLE_POINTS - 1), params) for i in range(_TABLE_POINTS)])
        return hit

    def _build_tables(self, params: BatchingParams, latencies_ms: list[float]) -> None:
        """Tabulate fraction_within over the rate grid for these latencies (running minimum)."""
        grid = self._rate_grid(params)
        seconds = np.asarray(latencies_ms, dtype=np.float64) / 1000.0
        rows = np.array([(1.0 - p.rejected) * p.cdf_many(seconds) for p in grid])  # (rates, latencies)
        rows = np.minimum.accumulate(np.minimum(rows, 1.0), axis=0)
        for j, latency in enumerate(latencies_ms):
            _TABLES.put((self.cache_id, params, latency), (grid[-1].rate_rps, rows[:, j].tolist()))

    def _table(self, params: BatchingParams, latency_ms: float) -> tuple[float, list[float]]:
        key = (self.cache_id, params, latency_ms)
        hit = _TABLES.get(key)
        if hit is None:
            self._build_tables(params, [latency_ms])
            hit = _TABLES.get(key)
            assert hit is not None  # just stored (the table memo holds far more than one entry)
        return hit

    def fraction_within_grid(
        self, rates_rps: FloatArray, params: BatchingParams, latencies_ms: FloatArray
    ) -> FloatArray:
        """`fraction_within` for every (rate, latency) pair: shape (len(rates), len(latencies)).

        Same values as calling `fraction_within` in a loop, built in one vectorized pass.
        """
        rates = np.asarray(rates_rps, dtype=np.float64).reshape(-1)
        lats = [float(x) for x in np.asarray(latencies_ms, dtype=np.float64).reshape(-1)]
        if rates.size and not (np.all(np.isfinite(rates)) and rates.min() >= 0.0):
            raise ValueError("rates_rps: expected finite rates >= 0")
        missing = [x for x in dict.fromkeys(lats) if (self.cache_id, params, x) not in _TABLES]
        if missing:
            self._build_tables(params, missing)
        out = np.empty((rates.size, len(lats)))
        for j, latency in enumerate(lats):
            out[:, j] = [self.fraction_within(float(r), params, latency) for r in rates]
        return out

    def fraction_within(self, rate_rps: float, params: BatchingParams, latency_ms: float) -> float:
        """Fraction of arriving requests served within `latency_ms` (rejected count as misses)."""
        if not (math.isfinite(rate_rps) and rate_rps >= 0.0):
            raise ValueError(f"rate_rps: expected a finite rate >= 0 (got {rate_rps!r})")
        top, values = self._table(params, float(latency_ms))
        if rate_rps >= top:  # overloaded (top = 1.2 x max throughput): closed form, not cached
            s_full = self.service.s(params.max_batch_size)
            served = self.max_throughput_rps(params) / rate_rps
            latency_s = overload_latency_s(s_full, params.max_enqueued_batches, self.service.servers(params))
            return min(values[-1], served if latency_s <= latency_ms / 1000.0 else 0.0)
        x = rate_rps / top * (_TABLE_POINTS - 1)
        i = int(x)
        return values[i] + (values[i + 1] - values[i]) * (x - i)

    def capacity_at_slo_rps(self, params: BatchingParams, slo: SLO) -> float:
        """Largest per-replica rate r such that every rate in (0, r] meets the SLO quantile."""
        params = self.effective(params)
        key = (self.cache_id, params, slo.latency_quantile, slo.latency_ms)
        hit = _CAPACITY.get(key)
        if hit is not None:
            return hit
        q, limit_ms = slo.latency_quantile, slo.latency_ms
        top = self.max_throughput_rps(params)
        warm: FloatArray | None = None

        one_server = self.exact_tail and self.service.servers(params) == 1

        def ok(rate: float) -> bool:
            """The q-quantile at `rate` is within the limit: P(latency ≤ limit) ≥ q among arrivals
            (one CDF evaluation; the quantile itself would take a search)."""
            nonlocal warm
            if one_server and rate < top:
                # the exact queue (`core/bulkqueue.py`) costs ~5 ms a rate: skip it where the
                # one-batch fixed point, which sees at most ~3x fewer misses, has a 10x margin
                light = solve(rate, params, self.service.servers(params), self._constants(params), warm, False)
                warm = light.pi
                if (1.0 - light.rejected) * float(light.cdf(limit_ms / 1000.0)) >= 1.0 - _PRECHECK_MARGIN * (1.0 - q):
                    return True
            point = self.steady(rate, params)
            warm = point.pi
            served = 1.0 - point.rejected
            if point.overloaded or served < q:
                return False
            return point.cdf(limit_ms / 1000.0) >= q / served

        if not ok(top * 1e-4):
            result = 0.0
        else:
            lo, hi = top * 1e-4, top
            for i in range(1, _CAPACITY_SCAN):
                rate = top * i / _CAPACITY_SCAN
                if not ok(rate):
                    hi = rate
                    break
                lo = rate
            for _ in range(_CAPACITY_BISECT):
                mid = 0.5 * (lo + hi)
                if ok(mid):
                    lo = mid
                else:
                    hi = mid
            result = lo
        return _CAPACITY.put(key, result)


def shared_model(profile: ServiceProfile, service_scale: float = 1.0, exact_tail: bool = True) -> CapacityModel:
    """The one `CapacityModel` per (profile, scale, exact_tail): keyed by content, so 1,000 targets on
    5 equal profiles hold 5 models (per scale); each model's answers live in the shared memos anyway."""
    key = (profile, service_scale, exact_tail)
    hit = _MODELS.get(key)
    if hit is None:
        hit = _MODELS.put(key, CapacityModel(profile, service_scale=service_scale, exact_tail=exact_tail))
    return hit


def cached_model(profile: ServiceProfile, service_scale: float = 1.0) -> CapacityModel:
    """The shared `CapacityModel` of `profile` at `service_scale` rounded to 0.1 % (`cache.milli_scale`)."""
    return shared_model(profile, milli_scale(service_scale))
