"""The core's memos (autoscaler/core/cache.py): bounded, least recently used out first, and shared by content.

* `LRU` never holds more than its maximum; a hit makes an entry the most recent; counters count.
* Capacity models are shared by profile content: 1,000 targets on 5 profiles hold 5 models, and two
  models built separately for equal profiles answer from one memo.
* `clear_model_caches` empties every memo of the core, and a cold run repeats a warm one exactly.
* The one quantization: scales and rates on the 1 % log grid.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from autoscaler.core import cache
from autoscaler.core import decide as decide_module
from autoscaler.core.cache import LRU, quantized_rate, scale_step, step_scale
from autoscaler.core.capacity import CapacityModel, shared_model
from autoscaler.core.decide import State, clear_model_caches, decide
from autoscaler.core.types import Observation, Signal, TargetKey
from autoscaler.spec.types import SLO, BatchingParams, Provisioning, ServiceProfile, ServingAutoscalerSpec, TargetRef


def test_lru_evicts_the_least_recently_used_and_counts() -> None:
    lru: LRU[int, str] = LRU("test", 3)
    for k in range(3):
        lru.put(k, str(k))
    assert lru.get(0) == "0"  # 0 is now the most recent: 1 goes first
    lru.put(3, "3")
    assert len(lru) == 3 and 1 not in lru and all(k in lru for k in (0, 2, 3))
    assert lru.get(1) is None
    assert (lru.hits, lru.misses) == (1, 1)
    assert lru.get_or_compute(4, lambda: "4") == "4" and len(lru) == 3 and 2 not in lru
    lru.clear()
    assert len(lru) == 0 and (lru.hits, lru.misses) == (0, 0)


def test_lru_rejects_a_size_below_one() -> None:
    with pytest.raises(ValueError, match="maxsize: expected an integer >= 1"):
        LRU("bad", 0)


def test_every_memo_is_registered_and_bounded() -> None:
    names = [s.name for s in cache.stats()]
    for name in ("capacity: steady states", "decide: capacity per replica", "batching: best params"):
        assert name in names
    assert all(s.size <= s.maxsize for s in cache.stats())


def test_1000_targets_on_5_profiles_hold_5_models() -> None:
    clear_model_caches()
    profiles = [ServiceProfile(batch_latency_ms=tuple(x * (1.0 + 0.1 * i) for x in ServiceProfile().batch_latency_ms))
                for i in range(5)]  # fmt: skip
    models = {id(decide_module._capacity_model(replace(profiles[t % 5]), 1.0)) for t in range(1000)}
    assert len(models) == 5


def test_equal_profiles_share_one_memo_whoever_builds_the_model() -> None:
    clear_model_caches()
    params = BatchingParams(16, 2_000, 1, 100)
    a = CapacityModel(ServiceProfile(source="a"))
    b = CapacityModel(ServiceProfile(source="b", cpu_ms_per_request=5.0))  # same service times
    assert a.cache_id == b.cache_id
    assert a.steady(100.0, params) is b.steady(100.0, params)
    slower = CapacityModel(ServiceProfile(), service_scale=1.5)
    assert slower.cache_id != a.cache_id
    assert slower.capacity_at_slo_rps(params, SLO()) < a.capacity_at_slo_rps(params, SLO())
    assert shared_model(ServiceProfile(), 1.0) is shared_model(ServiceProfile(), 1.0)


SPEC = ServingAutoscalerSpec(
    name="resnet",
    target=TargetRef("ml", "resnet", "resnet"),
    min_replicas=1,
    max_replicas=20,
    provisioning=Provisioning(lead_time_s=60.0, decision_period_s=15.0, metrics_lag_s=30.0),
)


def _replay() -> list[tuple[int, float | None, str]]:
    state = State.initial(SPEC, 0.0, 2)
    out = []
    for i in range(12):  # no latency signal: calibration holds, so one cold capacity search (~1 s)
        now = 15.0 * i
        served = 150.0 + 100.0 * math.sin(i / 3.0)
        obs = Observation(
            time_s=now, current_replicas=state.last_desired_replicas, ready_replicas=state.last_desired_replicas,
            request_rate_rps=Signal(served),
        )  # fmt: skip
        d, state = decide(SPEC, state, obs, None, now_s=now, target=TargetKey("ml", "resnet"))
        out.append((d.desired_replicas, d.capacity_rps, d.notes[-1] if d.notes else ""))
    return out


def test_clear_empties_every_memo_and_a_cold_run_repeats_a_warm_one() -> None:
    clear_model_caches()
    cold = _replay()
    assert any(s.size for s in cache.stats())
    warm = _replay()
    clear_model_caches()
    assert all(s.size == 0 for s in cache.stats())
    assert cold == warm == _replay()


def test_the_one_quantization_is_a_1_percent_log_grid() -> None:
    assert scale_step(1.0) == 0 and scale_step(math.nan) == 0 and scale_step(-2.0) == 0
    assert step_scale(scale_step(1.37)) == pytest.approx(1.37, rel=0.005)
    for rate in (0.3, 7.0, 123.4, 5_000.0):
        assert quantized_rate(rate) == pytest.approx(rate, rel=0.005)
        assert quantized_rate(quantized_rate(rate) * 1.001) == quantized_rate(rate)
    assert quantized_rate(0.0) == 0.0 and math.isnan(quantized_rate(math.nan))
