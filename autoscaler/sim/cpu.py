"""CPU usage of a simulated TF Serving pod: the number metrics-server reports and `hpa-cpu` scales on.

Owned apart from the metrics pipeline so the one signal the tutorial HPA divides by the pod's CPU
request has one definition, calibrated from the spec's profile:

    usage_m = idle_m + cpu_ms_per_request × served_rps + batch_m × busy

* `idle_m`: the model server's idle threads (gRPC/REST pollers, the batch scheduler's timers);
* `cpu_ms_per_request`: the profile's host CPU per request (decode, pre/post-processing, the RPC);
* `batch_m × busy`: host CPU held while the device runs batches, in proportion to the replica's busy
  fraction (`CapacityModel.busy_fraction`, the simulator's GPU utilization). A batch thread does not
  sleep while its batch runs: it assembles the batch tensors, copies them to the device and waits on
  the stream, and the CUDA runtime's default schedule (`cudaDeviceScheduleAuto`, CUDA Runtime API
  `cudaSetDeviceFlags`) spin-waits while a process has fewer active contexts than logical cores.

The profile measures the per-batch latency but not that host share, so `batch_m` is calibrated: a
saturated replica (busy 1 at the maximum throughput of the spec's initial batching) reads
`SATURATED_REQUEST_FRACTION` (97 %) of its CPU request, the request being sized to the pod's peak
usage as operators size it. Without this term the busiest pod of examples/resnet50-t4.yaml read 61.6 %
of its request (50 m + 3 ms × 394 requests/s of 2,000 m), under the 70 % target of the tutorial HPA,
which could therefore never scale up. If the per-request CPU alone already exceeds that share at
saturation, `batch_m` is 0 (the profile's own numbers win).
"""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.core.capacity import cached_model
from autoscaler.spec.types import ServingAutoscalerSpec

SATURATED_REQUEST_FRACTION = 0.97  # a saturated pod's CPU usage as a fraction of its CPU request
DEFAULT_IDLE_MILLICORES = 50.0


@dataclass(frozen=True)
class CpuModel:
    """Per-pod CPU usage (millicores) from its served request rate and busy fraction."""

    idle_m: float
    per_request_ms: float
    batch_m: float
    request_m: int

    @classmethod
    def for_spec(cls, spec: ServingAutoscalerSpec, *, idle_m: float = DEFAULT_IDLE_MILLICORES) -> CpuModel:
        """Calibrated so a saturated pod on the spec's initial batching reads 97 % of its request."""
        profile = spec.profile
        mu_rps = cached_model(profile).max_throughput_rps(spec.batching.initial)
        saturated_m = SATURATED_REQUEST_FRACTION * profile.cpu_request_millicores
        batch_m = max(0.0, saturated_m - idle_m - profile.cpu_ms_per_request * mu_rps)
        return cls(idle_m, profile.cpu_ms_per_request, batch_m, profile.cpu_request_millicores)

    def millicores(self, served_rps: float, busy: float) -> float:
        """Usage of one pod serving `served_rps` requests/s with the device busy `busy` of the time."""
        return self.idle_m + self.per_request_ms * served_rps + self.batch_m * min(max(busy, 0.0), 1.0)
