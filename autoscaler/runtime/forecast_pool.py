"""Forecasting in a separate process, so statsmodels refits never stall the event loop.

The daemon's event loop also serves /metrics and the metrics adapter, and in the demo it runs
the emulator replicas too; a statsmodels fit holds the GIL for up to seconds (the first one also
imports statsmodels/scipy). `ForecastPool` keeps every target's `ForecastDriver` inside one
worker process of a `ProcessPoolExecutor(max_workers=1)`. The single worker lives as long as the
pool, so its drivers keep their state between calls. The amortisation is the driver's own:
`update()` on every completed step, and a refit only every `refitIntervalSeconds`.

`RemoteDriver` implements the loop's `ForecastLike`. `observe()` is buffered locally and sent
with the next `forecast()`, so one tick costs one round trip, made from a worker thread. If the
worker process dies, the pool is rebuilt; the call in flight returns None (the loop decides
reactively for that tick) and each driver re-sends its warm-start history on its next call.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from autoscaler.core.surge import SURGE_POOL_QUANTILE, surge_settings
from autoscaler.core.types import FloatArray, Forecast
from autoscaler.spec.types import ForecasterSpec, ServingAutoscalerSpec

log = logging.getLogger(__name__)

# ---- worker-process side (module globals live in the single worker process) -----------------
_DRIVERS: dict[str, Any] = {}


def _ensure(key: str, spec: ForecasterSpec, surge: tuple[float, float]) -> Any:
    drv = _DRIVERS.get(key)
    if drv is None or drv.spec != spec or (drv.surge_budget, drv.surge_base_s) != surge:
        from autoscaler.forecast.driver import ForecastDriver

        drv = ForecastDriver(
            spec, surge_budget=surge[0], surge_base_s=surge[1], surge_pool_quantile=SURGE_POOL_QUANTILE
        )
        _DRIVERS[key] = drv
    return drv


def _warm(
    key: str,
    spec: ForecasterSpec,
    surge: tuple[float, float],
    history_rps: FloatArray,
    end_s: float,
    step_s: float | None,
) -> None:
    _ensure(key, spec, surge).warm_start(history_rps, end_s, step_s=step_s)


def _step(
    key: str,
    spec: ForecasterSpec,
    surge: tuple[float, float],
    observed: list[tuple[float, float | None]],
    now_s: float,
    horizon_s: float,
) -> Forecast | None:
    drv = _ensure(key, spec, surge)
    for t, v in observed:
        drv.observe(t, v)
    fc: Forecast | None = drv.forecast(now_s, horizon_s)
    return fc


def _drop(key: str) -> None:
    _DRIVERS.pop(key, None)


def _ping() -> bool:
    from autoscaler.forecast import driver  # noqa: F401  (import statsmodels' callers up front)

    return True


# ---- daemon side -------------------------------------------------------------------------------
class ForecastPool:
    """One worker process holding every target's ForecastDriver."""

    def __init__(self, start_method: str = "spawn") -> None:
        self._ctx = multiprocessing.get_context(start_method)
        self._lock = threading.Lock()
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=self._ctx)
        self.generation = 0  # bumps when the worker is replaced (drivers start cold)

    def call(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            pool, gen = self._pool, self.generation
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool:
            with self._lock:
                if self.generation == gen:
                    log.error("forecast worker died; restarting it (forecasters start cold)")
                    self._pool = ProcessPoolExecutor(max_workers=1, mp_context=self._ctx)
                    self.generation += 1
            raise

    def start(self) -> None:
        """Spawn the worker and import the forecasting stack there (blocking; call it in a thread)."""
        self.call(_ping)

    def driver(self, spec: ServingAutoscalerSpec) -> RemoteDriver:
        return RemoteDriver(
            self, f"{spec.target.namespace}/{spec.target.deployment}", spec.forecaster, surge_settings(spec)
        )

    def close(self) -> None:
        with self._lock:
            self._pool.shutdown(wait=False, cancel_futures=True)


class RemoteDriver:
    """`ForecastLike` proxy for one target's driver in the worker process (blocking calls)."""

    def __init__(self, pool: ForecastPool, key: str, spec: ForecasterSpec, surge: tuple[float, float]) -> None:
        self._pool = pool
        self.key = key
        self.spec = spec
        self.surge = surge
        self._pending: list[tuple[float, float | None]] = []
        self._warm_args: tuple[FloatArray, float, float | None] | None = None
        self._generation = pool.generation

    def warm_start(self, history_rps: FloatArray, end_s: float, *, step_s: float | None = None) -> None:
        self._warm_args = (history_rps, end_s, step_s)
        self._generation = self._pool.generation
        self._pool.call(_warm, self.key, self.spec, self.surge, history_rps, end_s, step_s)

    def observe(self, time_s: float, rate_rps: float | None) -> None:
        self._pending.append((time_s, rate_rps))

    def forecast(self, now_s: float, horizon_s: float) -> Forecast | None:
        sent, self._pending = self._pending, []
        try:
            if self._generation != self._pool.generation and self._warm_args is not None:
                hist, end_s, step_s = self._warm_args
                self.warm_start(hist, end_s, step_s=step_s)  # a new worker: re-send the history we had
            fc: Forecast | None = self._pool.call(_step, self.key, self.spec, self.surge, sent, now_s, horizon_s)
        except BrokenProcessPool:
            return None
        return fc
