"""Tests of the batching tuner (autoscaler/core/batching.py): search, hysteresis, tie-breaks."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from autoscaler.core.batching import TIE_TOLERANCE, candidate_grid, choose_batching
from autoscaler.core.capacity import CapacityModel
from autoscaler.spec.types import (
    SLO,
    BatchingParams,
    BatchingSpec,
    IntRange,
    ServiceProfile,
    ServingAutoscalerSpec,
    TargetRef,
)

MODEL = CapacityModel(ServiceProfile())
SMALL_BOUNDS = BatchingSpec(
    tune=True,
    max_batch_size=IntRange(4, 16),
    batch_timeout_us=IntRange(0, 2_000),
    num_batch_threads=IntRange(1, 2),
    max_enqueued_batches=IntRange(10, 100),
    min_gain=0.10,
)


def make_spec(batching: BatchingSpec, slo: SLO | None = None) -> ServingAutoscalerSpec:
    return ServingAutoscalerSpec(
        name="resnet", target=TargetRef("ml", "resnet", "resnet"), batching=batching, slo=slo or SLO(0.99, 100.0)
    )


def test_grid_respects_bounds_and_is_in_tie_break_order() -> None:
    grid = candidate_grid(SMALL_BOUNDS, BatchingParams(max_enqueued_batches=5))
    assert {p.max_batch_size for p in grid} == {4, 8, 16}
    assert {p.batch_timeout_us for p in grid} == {0, 1_000, 2_000}
    assert {p.num_batch_threads for p in grid} == {1, 2}
    assert {p.max_enqueued_batches for p in grid} == {10}  # current 5 clamped into bounds
    keys = [(p.max_batch_size, p.batch_timeout_us, p.num_batch_threads) for p in grid]
    assert keys == sorted(keys)


def test_choice_is_the_best_candidate_with_smallest_tie() -> None:
    spec = make_spec(SMALL_BOUNDS)
    current = BatchingParams(4, 2_000, 1, 100)
    choice = choose_batching(MODEL, spec, 300.0, current)
    grid = candidate_grid(SMALL_BOUNDS, current)
    caps = {p: MODEL.capacity_at_slo_rps(p, spec.slo) for p in grid}
    best = max(caps.values())
    ties = [p for p in grid if caps[p] >= best * (1 - TIE_TOLERANCE)]
    assert choice.params == ties[0]
    assert choice.capacity_rps == pytest.approx(caps[ties[0]])
    assert choice.current_capacity_rps == pytest.approx(MODEL.capacity_at_slo_rps(current, spec.slo))
    assert choice.changed
    assert choice.gain == pytest.approx(choice.capacity_rps / choice.current_capacity_rps - 1)
    assert choice.gain >= SMALL_BOUNDS.min_gain
    assert "max_batch_size=" in choice.reason
    # deterministic, and cached
    assert choose_batching(MODEL, spec, 300.0, current) == choice


def test_no_change_below_min_gain() -> None:
    current = BatchingParams(4, 2_000, 1, 100)
    spec = make_spec(replace(SMALL_BOUNDS, min_gain=100.0))
    choice = choose_batching(MODEL, spec, 300.0, current)
    assert not choice.changed
    assert choice.params == current
    assert 0.0 < choice.gain < 100.0
    assert "min_gain" in choice.reason


def test_best_current_params_stay() -> None:
    spec = make_spec(SMALL_BOUNDS)
    best = choose_batching(MODEL, spec, 300.0, BatchingParams(4, 2_000, 1, 100)).params
    again = choose_batching(MODEL, spec, 300.0, best)
    assert not again.changed and again.params == best and again.gain == 0.0


def test_tuning_disabled_returns_current() -> None:
    current = BatchingParams(1, 0, 1, 10)
    spec = make_spec(replace(SMALL_BOUNDS, tune=False))
    choice = choose_batching(MODEL, spec, 300.0, current)
    assert choice.params == current and not choice.changed
    assert choice.capacity_rps == choice.current_capacity_rps == MODEL.capacity_at_slo_rps(current, spec.slo)


def test_current_that_misses_the_slo_is_replaced() -> None:
    # A 20 ms timeout on top of 16-request batches cannot meet p99 <= 50 ms at any load.
    current = BatchingParams(16, 20_000, 1, 100)
    spec = make_spec(replace(SMALL_BOUNDS, batch_timeout_us=IntRange(0, 20_000)), SLO(0.99, 50.0))
    choice = choose_batching(MODEL, spec, 50.0, current)
    assert choice.current_capacity_rps < choice.capacity_rps
    assert choice.changed and choice.params.batch_timeout_us < 20_000


def test_bad_input_is_named() -> None:
    spec = make_spec(SMALL_BOUNDS)
    with pytest.raises(ValueError, match="rate_per_replica_rps"):
        choose_batching(MODEL, spec, math.nan, BatchingParams())
    with pytest.raises(ValueError, match="max_batch_size"):
        candidate_grid(replace(SMALL_BOUNDS, max_batch_size=IntRange(8, 4)), BatchingParams())
