"""Forecasting in a worker process: same forecasts as in-process, and survives the worker dying."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from autoscaler.forecast.driver import ForecastDriver
from autoscaler.runtime import forecast_pool
from autoscaler.runtime.forecast_pool import ForecastPool
from autoscaler.spec.types import ForecasterSpec, ServingAutoscalerSpec, TargetRef

FSPEC = ForecasterSpec(model="holt", season_length_s=600, step_s=10, history_s=3600, refit_interval_s=60)


def _pid() -> int:
    return os.getpid()


@pytest.mark.timeout(60)
def test_remote_driver_matches_local_and_recovers_from_a_dead_worker() -> None:
    spec = ServingAutoscalerSpec(name="m", target=TargetRef("ml", "m", "m"), forecaster=FSPEC)
    pool = ForecastPool()
    try:
        pool.start()
        remote = pool.driver(spec)
        local = ForecastDriver(FSPEC)
        rng = np.random.default_rng(3)
        history = 100 + 20 * np.sin(np.arange(60) / 5.0) + rng.normal(0, 2, 60)
        remote.warm_start(history, 6000.0)
        local.warm_start(history, 6000.0)
        for i in range(1, 40):
            t, v = 6000.0 + 5.0 * i, float(100 + rng.normal(0, 3))
            remote.observe(t, v)
            local.observe(t, v)
            got, want = remote.forecast(t, 60.0), local.forecast(t, 60.0)
            assert (got is None) == (want is None)
            if got is not None and want is not None:
                np.testing.assert_allclose(got.mean, want.mean)
                np.testing.assert_allclose(got.hi, want.hi)
        assert got is not None  # warm-started: forecasts all along

        worker = pool.call(_pid)
        assert worker != os.getpid()
        os.kill(worker, signal.SIGKILL)
        assert remote.forecast(6300.0, 60.0) is None  # that call is lost, the pool is rebuilt
        assert pool.generation == 1
        assert pool.call(_pid) != worker
        assert remote.forecast(6300.0, 60.0) is not None  # the history was re-sent to the new worker
    finally:
        pool.close()
    assert forecast_pool._DRIVERS == {}  # the daemon process itself never holds a driver


def test_worker_driver_learns_the_surge_reserve_as_the_in_process_one() -> None:
    """The daemon's worker builds its drivers with the simulator's surge settings (driver_for)."""
    from autoscaler.core.surge import surge_settings
    from autoscaler.forecast.driver import driver_for

    spec = ServingAutoscalerSpec(name="m", target=TargetRef("ml", "m", "m"), forecaster=FSPEC)
    worker = forecast_pool._ensure("ml/m", spec.forecaster, surge_settings(spec))
    local = driver_for(spec)
    for attr in ("surge_budget", "surge_base_s", "surge_max_steps", "surge_pool_quantile"):
        assert getattr(worker, attr) == getattr(local, attr), attr


HOURLY = ForecasterSpec(
    model="holt-winters", season_length_s=3600, step_s=60, history_s=10 * 3600, refit_interval_s=600
)


def _hourly_history(n_steps: int, seed: int) -> np.ndarray:
    t = np.arange(n_steps) * 60.0
    return 100 + 50 * np.sin(2 * np.pi * t / 3600) + np.random.default_rng(seed).normal(0, 2, n_steps)


def test_deferred_driver_keeps_its_model_until_refit_and_staggers_the_next() -> None:
    d = ForecastDriver(HOURLY, min_refit_interval_s=0.0, defer_refits=True, stagger=0.5)
    d.warm_start(_hourly_history(240, 0), 0.0)
    first = d.forecast(0.0, 300.0)
    assert first is not None and first.model == "seasonal-naive" and d.fit_count == 1
    assert d.refit_due(0.0) == 0.0  # the interim model asks for its real one at once
    assert d.forecast(900.0, 300.0) is not None and d.fit_count == 1  # no refit inside forecast()
    assert d.refit_due(900.0) == 900.0
    d.refit(900.0)
    assert d.model_name == "holt-winters" and d.fit_count == 2
    # the next refit comes at half an interval (stagger 0.5), then every refitIntervalSeconds (600 s, not a season)
    assert d.refit_due(1199.0) is None and d.refit_due(1200.0) == 0.0
    d.refit(1200.0)
    assert d.refit_due(1799.0) is None and d.refit_due(1800.0) == 0.0


@pytest.mark.timeout(120)
def test_pool_refits_every_refit_interval_staggered_and_never_inside_a_tick() -> None:
    keys = [k for k in (f"m{i}" for i in range(40)) if 0.1 < forecast_pool.stagger_of(f"ml/{k}") < 0.9]
    keys = sorted(keys, key=lambda k: forecast_pool.stagger_of(f"ml/{k}"))
    keys = [keys[0], keys[-1]]  # two phases at least 0.2 of the interval apart...
    gap = forecast_pool.stagger_of(f"ml/{keys[1]}") - forecast_pool.stagger_of(f"ml/{keys[0]}")
    assert gap > 0.2  # ...so their refits fall on different 60 s ticks
    specs = [ServingAutoscalerSpec(name=k, target=TargetRef("ml", k, k), forecaster=HOURLY) for k in keys]
    pool = ForecastPool()
    try:
        pool.start()
        drivers = [pool.driver(s) for s in specs]
        local = ForecastDriver(HOURLY, min_refit_interval_s=0.0, defer_refits=True)
        for i, drv in enumerate(drivers):
            drv.warm_start(_hourly_history(240, i), 0.0)
        local.warm_start(_hourly_history(240, 0), 0.0)
        refit_ticks: dict[str, list[int]] = {k: [] for k in keys}
        counts = {k: 0 for k in keys}
        for tick in range(61):  # one hour of 60 s ticks
            now_s = 60.0 * tick
            rate = 100.0 + tick
            pool.forecast_many([(drv, now_s, 300.0, rate) for drv in drivers])
            # the loop's controller then asks each driver as usual; it answers from the batch
            drivers[0].observe(now_s, rate)
            got = drivers[0].forecast(now_s, 300.0)
            assert got is not None  # every tick forecasts, refit due or not
            if tick == 0:  # same interim model, same data: the batch answers what the driver says
                local.observe(now_s, rate)
                want = local.forecast(now_s, 300.0)
                assert want is not None and got.model == want.model == "seasonal-naive"
                np.testing.assert_array_equal(got.mean, want.mean)
            assert pool.wait_refits(60.0)
            after = pool.fit_counts()
            for k in keys:
                fits = after[f"ml/{k}"][0]
                if fits > counts[k]:
                    refit_ticks[k].append(tick)
                counts[k] = fits
        for k in keys:
            ticks = refit_ticks[k]
            assert ticks[0] == 0  # the interim model and its first real refit, right after the first tick
            spacing = np.diff(ticks[1:])
            assert len(ticks) >= 6 and set(spacing.tolist()) == {10}, ticks  # every 600 s, as the spec says
        assert refit_ticks[keys[0]][1] != refit_ticks[keys[1]][1]  # staggered over the interval
        assert pool.refits_done >= 12
    finally:
        pool.close()
