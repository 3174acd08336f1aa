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
