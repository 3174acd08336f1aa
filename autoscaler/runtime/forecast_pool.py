"""Forecasting in a separate process, so statsmodels refits never stall the event loop.

The daemon's event loop also serves /metrics and the metrics adapter, and in the demo it runs
the emulator replicas too; a statsmodels fit holds the GIL for up to seconds (the first one also
imports statsmodels/scipy). `ForecastPool` keeps every target's `ForecastDriver` inside one
worker process of a `ProcessPoolExecutor(max_workers=1)`. The single worker lives as long as the
pool, so its drivers keep their state between calls. The amortisation is the driver's own:
`update()` on every completed step, and a refit only every `refitIntervalSeconds`.

`RemoteDriver` implements the loop's `ForecastLike`. `observe()` is buffered locally and sent
with the next `forecast()`. The loop asks for all targets at once (`forecast_many`): one round trip
per tick for 1,000 targets instead of 1,000, and each driver then answers `forecast()` from it. If
the worker process dies, the pool is rebuilt; the call in flight returns None (the loop decides
reactively for that tick) and each driver re-sends its warm-start history on its next call.

Refits never sit on a tick. The worker's drivers run with `defer_refits` and the spec's
`refitIntervalSeconds` as it is (`min_refit_interval_s=0`; docs/daemon.md): a tick's
`forecast_many` forecasts with every target's current model and returns the targets whose refit
is due, most overdue first; the pool then refits them one task at a time (`_refit_one`), submitting
the next only when the previous one finished and no tick is waiting, so a tick queues behind at most
one refit in progress (`refit_stall_s_max` records the longest such wait). Meanwhile a target keeps
forecasting with its last model. A warm-started target starts on the interim seasonal naive
(milliseconds), gets its real model from the refit queue within the first minutes, and its
per-target phase (`stagger`, from a hash of its key) then spreads the refits over the interval.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from autoscaler.core.surge import SURGE_POOL_QUANTILE, surge_settings
from autoscaler.core.types import FloatArray, Forecast
from autoscaler.spec.types import ForecasterSpec, ServingAutoscalerSpec

log = logging.getLogger(__name__)

# ---- worker-process side (module globals live in the single worker process) -----------------
_DRIVERS: dict[str, Any] = {}


def stagger_of(key: str) -> float:
    """A target's refit phase in [0, 1): stable across restarts, spread evenly over many keys."""
    return (zlib.crc32(key.encode()) % 10_000) / 10_000.0


def _ensure(key: str, spec: ForecasterSpec, surge: tuple[float, float]) -> Any:
    drv = _DRIVERS.get(key)
    if drv is None or drv.spec != spec or (drv.surge_budget, drv.surge_base_s) != surge:
        from autoscaler.forecast.driver import ForecastDriver

        drv = ForecastDriver(
            spec,
            min_refit_interval_s=0.0,  # honour refitIntervalSeconds: refits are off the tick's path here
            defer_refits=True,
            stagger=stagger_of(key),
            surge_budget=surge[0],
            surge_base_s=surge[1],
            surge_pool_quantile=SURGE_POOL_QUANTILE,
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


StepRequest = tuple[str, ForecasterSpec, tuple[float, float], list[tuple[float, float | None]], float, float]


def _step_many(requests: Sequence[StepRequest]) -> tuple[list[Forecast | None], list[str], float]:
    """Every target's `_step`; plus the keys whose refit is due, most overdue first, and the CPU
    seconds this took. A target whose step raises gets None (it decides reactively) and the error
    is logged in the worker."""
    started_s = time.process_time()
    out: list[Forecast | None] = []
    due: list[tuple[float, str]] = []
    for key, spec, surge, observed, now_s, horizon_s in requests:
        try:
            out.append(_step(key, spec, surge, observed, now_s, horizon_s))
            over_s = _DRIVERS[key].refit_due(now_s)
            if over_s is not None:
                due.append((-over_s, key))
        except Exception:
            log.exception("forecast failed in the worker", extra={"target": key})
            out.append(None)
    due.sort()
    return out, [k for _, k in due], time.process_time() - started_s


def _refit_one(key: str, now_s: float) -> bool:
    """Refit one target if it is still due; True when it was."""
    drv = _DRIVERS.get(key)
    if drv is None or drv.refit_due(now_s) is None:
        return False
    try:
        drv.refit(now_s)
    except Exception:  # the last model stays; the next tick reports it due again
        log.exception("refit failed in the worker", extra={"target": key})
        return False
    return True


def _fit_counts() -> dict[str, tuple[int, int, str | None]]:
    """key -> (fits, selections, model name): for tests and benchmarks."""
    return {k: (d.fit_count, d.select_count, d.model_name) for k, d in _DRIVERS.items()}


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
        self._due: list[str] = []  # refit queue, most overdue first
        self._due_now_s = 0.0
        self._refit_running: Any = None  # the refit future in flight
        self._refit_started_s = 0.0
        self._steps_waiting = 0
        self._idle = threading.Event()
        self._idle.set()
        self.refits_done = 0
        self.last_step_cpu_s = 0.0  # the worker's CPU for the last forecast_many (benchmarks)
        self.refit_stall_s_max = 0.0  # longest time a tick's forecasts queued behind a refit (stats)
        self.last_refit_stall_s = 0.0

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

    def forecast_many(self, requests: Sequence[tuple[RemoteDriver, float, float, float | None]]) -> None:
        """One round trip for many targets: each (driver, now_s, horizon_s, rate observed at now_s);
        every driver then answers `observe(now_s, rate)` + `forecast(now_s, horizon_s)` from it.
        Then the due refits are queued to run one at a time before the next tick."""
        reqs: list[StepRequest] = []
        for drv, now_s, horizon_s, rate in requests:
            try:
                drv.resend_if_restarted()
            except BrokenProcessPool:
                pass  # the step below fails too and every target decides reactively this tick
            reqs.append((drv.key, drv.spec, drv.surge, [*drv.take_pending(), (now_s, rate)], now_s, horizon_s))
        with self._lock:
            self._steps_waiting += 1
            running = self._refit_running
        asked_s = time.monotonic()
        try:
            if running is not None:
                try:
                    running.result()
                except Exception:
                    pass
                self.last_refit_stall_s = time.monotonic() - asked_s
                self.refit_stall_s_max = max(self.refit_stall_s_max, self.last_refit_stall_s)
            else:
                self.last_refit_stall_s = 0.0
            try:
                results, due, self.last_step_cpu_s = self.call(_step_many, reqs)
            except BrokenProcessPool:
                results, due = [None] * len(reqs), []
        finally:
            with self._lock:
                self._steps_waiting -= 1
        for (drv, now_s, horizon_s, rate), fc in zip(requests, results, strict=True):
            drv.prepared(now_s, horizon_s, rate, fc)
        if requests:
            self.queue_refits(due, requests[0][1])

    def queue_refits(self, keys: list[str], now_s: float) -> None:
        """Replace the refit queue (most overdue first) and start working through it."""
        with self._lock:
            self._due, self._due_now_s = list(keys), now_s
        self._next_refit()

    def _next_refit(self, _done: Any = None) -> None:
        with self._lock:
            if _done is not None:
                self._refit_running = None
                self.refits_done += 1
            if self._refit_running is not None:
                return
            if not self._due or self._steps_waiting:
                self._idle.set()
                return
            key = self._due.pop(0)
            pool = self._pool
            self._idle.clear()
            try:
                fut = pool.submit(_refit_one, key, self._due_now_s)
            except Exception:  # shut down or broken: the next tick reports it due again
                self._due.clear()
                self._idle.set()
                return
            self._refit_running = fut
        fut.add_done_callback(self._next_refit)

    def wait_refits(self, timeout_s: float | None = None) -> bool:
        """Block until the refit queue is empty (tests, benchmarks); False on timeout."""
        return self._idle.wait(timeout_s)

    def worker_pids(self) -> list[int]:
        """The worker process id(s), for CPU and memory accounting (benchmarks/daemon_scale.py)."""
        with self._lock:
            procs = getattr(self._pool, "_processes", None) or {}
            return list(procs)

    def fit_counts(self) -> dict[str, tuple[int, int, str | None]]:
        out: dict[str, tuple[int, int, str | None]] = self.call(_fit_counts)
        return out

    def driver(self, spec: ServingAutoscalerSpec) -> RemoteDriver:
        return RemoteDriver(
            self, f"{spec.target.namespace}/{spec.target.deployment}", spec.forecaster, surge_settings(spec)
        )

    def close(self) -> None:
        with self._lock:
            self._due.clear()
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
        # (now_s, horizon_s, rate, forecast) from ForecastPool.forecast_many; observed: its rate was seen
        self._prepared: tuple[float, float, float | None, Forecast | None] | None = None
        self._prepared_observed = False

    @property
    def pool(self) -> ForecastPool:
        return self._pool

    def warm_start(self, history_rps: FloatArray, end_s: float, *, step_s: float | None = None) -> None:
        self._warm_args = (history_rps, end_s, step_s)
        self._generation = self._pool.generation
        self._pool.call(_warm, self.key, self.spec, self.surge, history_rps, end_s, step_s)

    def observe(self, time_s: float, rate_rps: float | None) -> None:
        p = self._prepared
        if p is not None and not self._prepared_observed and p[0] == time_s and p[2] == rate_rps:
            self._prepared_observed = True  # forecast_many sent it already
            return
        self._pending.append((time_s, rate_rps))

    def forecast(self, now_s: float, horizon_s: float) -> Forecast | None:
        p, self._prepared = self._prepared, None
        if p is not None and self._prepared_observed and not self._pending and p[:2] == (now_s, horizon_s):
            return p[3]
        sent, self._pending = self._pending, []
        try:
            self.resend_if_restarted()
            fc: Forecast | None = self._pool.call(_step, self.key, self.spec, self.surge, sent, now_s, horizon_s)
        except BrokenProcessPool:
            return None
        return fc

    # ---- for ForecastPool.forecast_many ----
    def resend_if_restarted(self) -> None:
        if self._generation != self._pool.generation and self._warm_args is not None:
            hist, end_s, step_s = self._warm_args
            self.warm_start(hist, end_s, step_s=step_s)  # a new worker: re-send the history we had

    def take_pending(self) -> list[tuple[float, float | None]]:
        sent, self._pending = self._pending, []
        return sent

    def prepared(self, now_s: float, horizon_s: float, rate: float | None, fc: Forecast | None) -> None:
        self._prepared, self._prepared_observed = (now_s, horizon_s, rate, fc), False
