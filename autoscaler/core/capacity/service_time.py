"""Service time of one batch on one replica, interpolated from a measured `ServiceProfile`.

Owns the profile interpolation every other part of the capacity model (and the simulator's DES,
the emulator, the KPA baseline) reads, and the validation of batching parameters. The profile
measures one batch at a time at a few sizes (TF Serving's batching guide recommends measuring
exactly this: https://github.com/tensorflow/serving/blob/master/tensorflow_serving/batching/README.md).
"""

from __future__ import annotations

import bisect
import math

from autoscaler.spec.types import BatchingParams, ServiceProfile

_MIN_SERVICE_MS = 1e-6


class ServiceTime:
    """Deterministic service time of one batch, from a measured `ServiceProfile`.

    Piecewise-linear interpolation between measured batch sizes, linear extrapolation beyond
    both ends (never below a tiny positive floor), multiplied by `scale` (calibration).
    """

    def __init__(self, profile: ServiceProfile, scale: float = 1.0) -> None:
        sizes = tuple(float(b) for b in profile.batch_sizes)
        lat = tuple(float(x) for x in profile.batch_latency_ms)
        if not sizes:
            raise ValueError("profile.batch_sizes: must not be empty (got ())")
        if len(sizes) != len(lat):
            raise ValueError(
                f"profile.batch_latency_ms: expected one latency per batch size "
                f"(got {len(lat)} latencies for {len(sizes)} sizes)"
            )
        if any(b < 1 for b in sizes) or any(b2 <= b1 for b1, b2 in zip(sizes, sizes[1:], strict=False)):
            raise ValueError(f"profile.batch_sizes: expected strictly increasing sizes >= 1 (got {sizes})")
        if any(not (math.isfinite(x) and x > 0) for x in lat):
            raise ValueError(f"profile.batch_latency_ms: expected finite values > 0 (got {lat})")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"service_scale: expected a finite value > 0 (got {scale!r})")
        self.profile = profile
        self.scale = float(scale)
        self._sizes = sizes
        self._lat = lat

    def ms(self, batch: float) -> float:
        """Service time in milliseconds of one batch of `batch` requests."""
        sizes, lat = self._sizes, self._lat
        if len(sizes) == 1:
            return lat[0] * self.scale
        i = min(max(bisect.bisect_right(sizes, batch) - 1, 0), len(sizes) - 2)
        b0, b1 = sizes[i], sizes[i + 1]
        value = lat[i] + (lat[i + 1] - lat[i]) * (batch - b0) / (b1 - b0)
        return max(value, _MIN_SERVICE_MS) * self.scale

    def servers(self, params: BatchingParams) -> int:
        """Batches that really run in parallel: min(num_batch_threads, device parallelism)."""
        return max(1, min(params.num_batch_threads, self.profile.device_parallelism))

    def s(self, batch: float) -> float:
        """Service time in seconds of one batch of `batch` requests."""
        return self.ms(batch) / 1000.0

    def table_s(self, max_batch_size: int) -> list[float]:
        """Service seconds for batch sizes 0..max_batch_size (index = size; [0] is 0.0)."""
        return [0.0] + [self.s(b) for b in range(1, max_batch_size + 1)]

    def knee_batch_size(self, min_gain: float = 0.05) -> int:
        """Largest measured size up to which each step still cuts per-request time by ≥ min_gain."""
        per_req = [x / b for b, x in zip(self._sizes, self._lat, strict=True)]
        for i in range(len(per_req) - 1):
            if per_req[i + 1] > per_req[i] * (1.0 - min_gain):
                return int(self._sizes[i])
        return int(self._sizes[-1])


def validate_params(params: BatchingParams) -> None:
    """Raise ValueError naming the field if `params` is not a usable batching configuration."""
    checks = (
        ("max_batch_size", params.max_batch_size, 1),
        ("batch_timeout_us", params.batch_timeout_us, 0),
        ("num_batch_threads", params.num_batch_threads, 1),
        ("max_enqueued_batches", params.max_enqueued_batches, 1),
    )
    for name, value, low in checks:
        if not isinstance(value, int) or value < low:
            raise ValueError(f"batching.{name}: expected an integer >= {low} (got {value!r})")
