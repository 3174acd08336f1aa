"""TF Serving emulator: replicas with real REST paths, metric names and batching, plus helpers.

Re-exports the pieces tests and the demo compose: `EmulatorReplica`/`ReplicaConfig`, the fake
DCGM and kube-state-metrics exporters, and the open-loop load generator. gRPC support lives in
`grpc_service` and is imported only on demand (it loads TensorFlow).
"""

from __future__ import annotations

from autoscaler.emulator.dcgm import FakeDcgmExporter
from autoscaler.emulator.kube_state import FakeKubeStateMetrics
from autoscaler.emulator.loadgen import LoadResult, poisson_arrivals, replay
from autoscaler.emulator.replica import METRICS_PATH, EmulatorReplica, ReplicaConfig

__all__ = [
    "METRICS_PATH",
    "EmulatorReplica",
    "FakeDcgmExporter",
    "FakeKubeStateMetrics",
    "LoadResult",
    "ReplicaConfig",
    "poisson_arrivals",
    "replay",
]
