"""Capacity model of one TF Serving replica with session batching (analytic, pure, memoized).

How much load one replica takes under the latency SLO with given batching parameters, and its
latency distribution, rejections, mean batch and busy fraction at any rate. One job a module:

* `service_time`: the measured profile interpolated (`ServiceTime`), batching parameter checks.
* `steady`: the steady state at one rate, the batch-size fixed point and its latency CDF (`Steady`).
* `model`: the query API (`CapacityModel`) over the core's bounded memos (`core/cache.py`).
* `calibration`: the online service-scale correction and the gate that decides when it learns.
* `histogram`: quantiles as TF Serving's request_latency buckets and Prometheus report them.

The public names are re-exported here, so `from autoscaler.core.capacity import X` keeps working
(and two private ones that tests/test_capacity_fast_paths.py checks against their references).
"""

from autoscaler.core.capacity.calibration import (
    CALIBRATION_BOUNDS,
    CALIBRATION_MAX_STEP,
    Calibration,
    calibrate,
    calibrated,
    calibration_regime,
)
from autoscaler.core.capacity.histogram import TF_LATENCY_BUCKETS_MS, bucketed_quantile_ms, histogram_quantile_ms
from autoscaler.core.capacity.model import (
    _CAPACITY_BISECT,
    CapacityModel,
    cached_model,
    shared_model,
)
from autoscaler.core.capacity.service_time import ServiceTime, validate_params
from autoscaler.core.capacity.steady import Steady, _solve_small, overload_latency_s

__all__ = [
    "CALIBRATION_BOUNDS",
    "CALIBRATION_MAX_STEP",
    "TF_LATENCY_BUCKETS_MS",
    "_CAPACITY_BISECT",
    "Calibration",
    "CapacityModel",
    "ServiceTime",
    "Steady",
    "_solve_small",
    "bucketed_quantile_ms",
    "cached_model",
    "calibrate",
    "calibrated",
    "calibration_regime",
    "histogram_quantile_ms",
    "overload_latency_s",
    "shared_model",
    "validate_params",
]
