"""The pure core's memory: bounded least-recently-used memos, and the one rounding that makes them hit.

Owns every cache of `autoscaler/core/`. The decision core and the capacity model are pure functions,
but a cold capacity search costs ~25 ms and the simulator decides ~40 k times a week, so their
answers are memoized. Each memo is an `LRU`: a dictionary with a maximum size, hit and miss
counters, and one eviction policy (the least recently used entries go first when it is full).
Every `LRU` registers itself here, so `clear_all()` forgets everything (benchmarks measure cold
runs) and `stats()` shows what each holds. A memo never changes a value: each key is the whole
input of a pure function, so an eviction costs time only, never a different answer.

Two kinds of memo stay outside on purpose. `Forecast.peak_step` keeps its answers on the forecast
itself: its input is the forecast's arrays (not hashable; an identity key in a global memo could
hit a later forecast that reuses a freed id), and the memo dies with the forecast, so it holds
one forecast's few (steps, quantile) pairs. The decision texts of `decide_rules` stay
`functools.lru_cache`s (bounded, least recently used out, keyed by floats and strings): measured,
they save ~8 µs a tick, ~0.35 s of CPU in a 7-day replay, and the C implementation is the cheapest.

Keys carry quantized inputs, and this module is the one place that rounds them: calibration's
service scale moves on a 1 % log grid (`scale_step`, the tuner's 10 % grid `coarse_scale_step`),
per-replica rates on the same grid (`quantized_rate`), and `capacity.cached_model` rounds the
scale to 0.1 % (`milli_scale`). 1 % of capacity is well inside any
headroom, and a scale or rate that repeats across ticks hits the memo instead of solving again.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

SCALE_STEP = 1.01  # the quantization grid of scales and rates: 1 % steps on a log scale
_LN_SCALE_STEP = math.log(SCALE_STEP)
TUNER_SCALE_STEPS = 10  # the batching tuner's scale grid: every 10th step (~10 %)

_REGISTRY: list[LRU[object, object]] = []


@dataclass(frozen=True)
class CacheStats:
    """One memo's size and use since it was created or cleared."""

    name: str
    size: int
    maxsize: int
    hits: int
    misses: int


class LRU(Generic[K, V]):
    """A memo of at most `maxsize` entries; when full, the least recently used entries are evicted.

    Each entry carries the tick of its last use, so a hit hashes its key once (as a plain dict
    lookup does) instead of moving the entry; when the memo is full, the least recently used
    eighth goes at once (one partial sort per maxsize/8 insertions). `get` returns None on a
    miss, so values are never None. Registered for `clear_all`/`stats`: create them at import.
    """

    __slots__ = ("_clock", "_data", "hits", "maxsize", "misses", "name")

    def __init__(self, name: str, maxsize: int) -> None:
        if not (isinstance(maxsize, int) and maxsize >= 1):
            raise ValueError(f"maxsize: expected an integer >= 1 (got {maxsize!r})")
        self.name = name
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._clock = 0
        self._data: dict[K, list[Any]] = {}  # key -> [value, tick of its last use]
        _REGISTRY.append(self)  # type: ignore[arg-type]

    def get(self, key: K) -> V | None:
        """The value stored under `key` (now the most recently used), or None."""
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._clock += 1
        entry[1] = self._clock
        self.hits += 1
        value: V = entry[0]
        return value

    def put(self, key: K, value: V) -> V:
        """Store `value` under `key`, evicting the least recently used entries if full; returns `value`."""
        data = self._data
        if len(data) >= self.maxsize and key not in data:
            for old, _ in heapq.nsmallest(max(1, self.maxsize // 8), data.items(), key=_last_use):
                del data[old]
        self._clock += 1
        data[key] = [value, self._clock]
        return value

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> V:
        """The value under `key`, computed and stored on a miss."""
        hit = self.get(key)
        return hit if hit is not None else self.put(key, compute())

    def __contains__(self, key: object) -> bool:
        """Whether `key` is stored (no recency update, no counting)."""
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        """Forget every entry and reset the counters."""
        self._data.clear()
        self.hits = self.misses = self._clock = 0

    def stats(self) -> CacheStats:
        return CacheStats(self.name, len(self._data), self.maxsize, self.hits, self.misses)


def _last_use(item: tuple[object, list[Any]]) -> int:
    tick: int = item[1][1]
    return tick


def clear_all() -> None:
    """Forget every memo of the core (benchmarks and determinism tests start cold)."""
    for cache in _REGISTRY:
        cache.clear()


def stats() -> list[CacheStats]:
    """Size and hit/miss counts of every memo of the core, in creation order."""
    return [cache.stats() for cache in _REGISTRY]


def scale_step(service_scale: float) -> int:
    """The service scale's index on the 1 % log grid (0, scale 1.0, for a scale that is not finite and > 0)."""
    scale = service_scale if math.isfinite(service_scale) and service_scale > 0 else 1.0
    return round(math.log(scale) / _LN_SCALE_STEP)


def coarse_scale_step(step: int) -> int:
    """A 1 % step rounded to the tuner's ~10 % grid (still an index on the 1 % grid)."""
    return TUNER_SCALE_STEPS * round(step / TUNER_SCALE_STEPS)


def step_scale(step: int) -> float:
    """The service scale at a step of the 1 % grid."""
    return SCALE_STEP**step


def milli_scale(service_scale: float) -> float:
    """A service scale rounded to 0.1 % (`capacity.cached_model`'s grid, finer than calibration's)."""
    return round(service_scale, 3)


def quantized_rate(rate_rps: float) -> float:
    """`rate_rps` rounded to the nearest 1 % step (log grid); a rate that is not finite and > 0 unchanged."""
    if not (math.isfinite(rate_rps) and rate_rps > 0.0):
        return rate_rps
    return float(SCALE_STEP ** round(math.log(rate_rps) / _LN_SCALE_STEP))
