"""Choice of TF Serving batching parameters: the settings that maximise capacity at the SLO.

Owns the batching tuner used by `decide()`. It searches a small grid inside the spec's
bounds — powers of two for max_batch_size, a few timeouts, powers of two for the thread
count, the current max_enqueued_batches (clamped) — scores each candidate with
`CapacityModel.capacity_at_slo_rps`, and recommends a change only when the best candidate
beats the current parameters by at least `spec.batching.min_gain` (a batching change costs a
rolling restart, so small gains are not worth it). Pure and deterministic: near-ties (within
`TIE_TOLERANCE`) go to the smaller batch, then the shorter timeout, then fewer threads. The
ranking is memoized per (model content, SLO, bounds) in the core's bounded caches (`core/cache.py`).

Caveat carried from the model: the service profile measures one batch at a time, so the model
treats `num_batch_threads` concurrent batches as running at full speed each. On a single GPU
that overstates the value of more threads; keep the thread bound at what the device sustains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoscaler.core.cache import LRU
from autoscaler.core.capacity import CapacityModel, validate_params
from autoscaler.spec.types import SLO, BatchingParams, BatchingSpec, IntRange, ServingAutoscalerSpec

TIE_TOLERANCE = 0.01  # candidates within 1 % of the best capacity count as ties
TIMEOUTS_US = (0, 1_000, 2_000, 5_000, 10_000, 20_000)


@dataclass(frozen=True)
class BatchingChoice:
    """The recommended parameters and why. `gain` is capacity_rps / current_capacity_rps - 1."""

    params: BatchingParams
    capacity_rps: float  # per-replica capacity at the SLO with `params`
    current_capacity_rps: float
    gain: float
    changed: bool
    reason: str


def _powers_of_two(bounds: IntRange) -> list[int]:
    values = {bounds.min, bounds.max}
    p = 1
    while p <= bounds.max:
        if p >= bounds.min:
            values.add(p)
        p *= 2
    return sorted(values)


def candidate_grid(
    spec: BatchingSpec, current: BatchingParams, useful_batch_limit: float = math.inf
) -> list[BatchingParams]:
    """The grid searched, in tie-break order (smaller batch, shorter timeout, fewer threads).

    Batch sizes stop at the first power of two ≥ `useful_batch_limit`: a batch whose service
    time alone exceeds the SLO latency only adds misses, so larger limits cannot add capacity.
    """
    for name, rng in (
        ("max_batch_size", spec.max_batch_size),
        ("batch_timeout_us", spec.batch_timeout_us),
        ("num_batch_threads", spec.num_batch_threads),
        ("max_enqueued_batches", spec.max_enqueued_batches),
    ):
        if rng.min > rng.max:
            raise ValueError(f"batching.{name}: expected min <= max (got {rng.min} > {rng.max})")
    all_sizes = [b for b in _powers_of_two(spec.max_batch_size) if b >= 1]
    sizes = [b for b in all_sizes if b < useful_batch_limit]
    sizes += [b for b in all_sizes if b >= useful_batch_limit][:1]
    lo_t, hi_t = spec.batch_timeout_us.min, spec.batch_timeout_us.max
    timeouts = sorted({min(max(t, lo_t), hi_t) for t in TIMEOUTS_US})
    threads = [c for c in _powers_of_two(spec.num_batch_threads) if c >= 1]
    enqueued = min(max(current.max_enqueued_batches, spec.max_enqueued_batches.min), spec.max_enqueued_batches.max)
    return [BatchingParams(b, t, c, max(enqueued, 1)) for b in sizes for t in timeouts for c in threads]


# Keyed by the model's content id (`CapacityModel.cache_id`: profile, scale, exact tail), never by
# the model object itself.
_RANKING_CACHE: LRU[tuple[object, ...], tuple[BatchingParams, float]] = LRU("batching: best params", 256)
_GRIDS: LRU[tuple[object, ...], list[BatchingParams]] = LRU("batching: candidate grids", 256)


def _grid(model: CapacityModel, spec: BatchingSpec, slo: SLO, current: BatchingParams) -> list[BatchingParams]:
    """The candidate grid for `model` (its useful batch limit: service time within the SLO)."""
    key = (model.cache_id, spec, slo, current)
    hit = _GRIDS.get(key)
    if hit is not None:
        return hit
    svc = model.service
    useful = 1.0
    while svc.ms(useful + 1.0) <= slo.latency_ms and useful < spec.max_batch_size.max:
        useful += 1.0
    return _GRIDS.put(key, candidate_grid(spec, current, useful))


def best_params(
    model: CapacityModel, spec: BatchingSpec, slo: SLO, current: BatchingParams
) -> tuple[BatchingParams, float]:
    """Best grid candidate and its capacity (cached per profile, scale, SLO and bounds)."""
    grid = _grid(model, spec, slo, current)
    key = (model.cache_id, slo, spec.max_batch_size, spec.batch_timeout_us, spec.num_batch_threads,
           grid[0].max_enqueued_batches)  # fmt: skip
    hit = _RANKING_CACHE.get(key)
    if hit is not None:
        return hit
    # Visit in order of decreasing maximum throughput: a candidate whose throughput ceiling is
    # below the best capacity found (minus the tie band) cannot win and is skipped.
    order = sorted(range(len(grid)), key=lambda i: (-model.max_throughput_rps(grid[i]), i))
    scores: dict[int, float] = {}
    best = 0.0
    for i in order:
        if model.max_throughput_rps(grid[i]) < best * (1.0 - TIE_TOLERANCE):
            break
        scores[i] = model.capacity_at_slo_rps(grid[i], slo)
        best = max(best, scores[i])
    winner = min(i for i, cap in scores.items() if cap >= best * (1.0 - TIE_TOLERANCE))
    return _RANKING_CACHE.put(key, (grid[winner], scores[winner]))


def choose_batching(
    model: CapacityModel,
    spec: ServingAutoscalerSpec,
    rate_per_replica_rps: float,
    current: BatchingParams,
) -> BatchingChoice:
    """Recommend batching parameters for `spec`; `changed` only when the gain is worth a restart."""
    if not (math.isfinite(rate_per_replica_rps) and rate_per_replica_rps >= 0.0):
        raise ValueError(f"rate_per_replica_rps: expected a finite rate >= 0 (got {rate_per_replica_rps!r})")
    validate_params(current)
    current_cap = model.capacity_at_slo_rps(current, spec.slo)
    if not spec.batching.tune:
        return BatchingChoice(current, current_cap, current_cap, 0.0, False, "batching tuning disabled")
    params, cap = best_params(model, spec.batching, spec.slo, current)
    if params == current or cap <= current_cap:
        return BatchingChoice(current, current_cap, current_cap, 0.0, False, "current batching is the best in bounds")
    gain = math.inf if current_cap <= 0.0 else cap / current_cap - 1.0
    summary = (
        f"max_batch_size={params.max_batch_size} batch_timeout_us={params.batch_timeout_us} "
        f"num_batch_threads={params.num_batch_threads}: {cap:.1f} rps/replica vs {current_cap:.1f} "
        f"(+{gain:.1%}) at p{spec.slo.latency_quantile * 100:g} <= {spec.slo.latency_ms:g} ms; "
        f"forecast {rate_per_replica_rps:.1f} rps/replica"
    )
    if gain < spec.batching.min_gain:
        return BatchingChoice(
            current, current_cap, current_cap, gain, False,
            f"gain below min_gain {spec.batching.min_gain:.0%}: {summary}",
        )  # fmt: skip
    return BatchingChoice(params, cap, current_cap, gain, True, summary)
