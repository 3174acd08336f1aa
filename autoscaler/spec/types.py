"""Frozen, validated spec types: what the core, simulator and daemon read.

This module owns the *shape* of a ServingAutoscaler spec once it has been validated.
It is stdlib-only on purpose: the pure decision core imports it, and pydantic stays at the
edge (`autoscaler.spec.parse`), which builds these dataclasses from YAML. Every name carries
its unit (`_s`, `_ms`, `_us`, `_rps`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

API_VERSION = "autoscaling.tfserving.dev/v1alpha1"
KIND = "ServingAutoscaler"


class Mode(str, Enum):
    """How decisions leave the daemon."""

    HPA = "hpa"  # publish for the HPA (metrics API, KEDA, gauges); never patch replicas
    DIRECT = "direct"  # patch the Deployment's scale subresource
    PREVIEW = "preview"  # compute and record only


class PolicyType(str, Enum):
    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(str, Enum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


@dataclass(frozen=True)
class TargetRef:
    namespace: str
    deployment: str
    model_name: str
    rest_port: int = 8501
    grpc_port: int = 8500
    container: str = "tfserving"
    # ConfigMap mounted as --batching_parameters_file (None: batching is not actuated).
    batching_configmap: str | None = None
    # Every model the server's model_config_list serves, when there are several (() = only
    # `model_name`); `model_name` is then the first of them. See `ServedModel`.
    models: tuple[ServedModel, ...] = ()

    @property
    def model_names(self) -> tuple[str, ...]:
        """The TF Serving model names whose requests load this Deployment."""
        return tuple(m.name for m in self.models) if self.models else (self.model_name,)


@dataclass(frozen=True)
class ServedModel:
    """One model of a multi-model TF Serving server (one entry of its `model_config_list`).

    `share` is the expected fraction of the Deployment's requests this model receives, used only
    while no per-model request rates are observed (None: equal shares of what is left). `profile`
    is its own batch service time on the pod's device (None: the spec's `profile`).
    """

    name: str
    share: float | None = None
    profile: ServiceProfile | None = None


@dataclass(frozen=True)
class SLO:
    latency_quantile: float = 0.99  # e.g. 0.99 for p99
    latency_ms: float = 100.0
    attainment: float = 0.999  # fraction of requests that must meet latency_ms


@dataclass(frozen=True)
class Provisioning:
    forecast_quantile: float = 0.95  # quantile of the forecast distribution to provision for
    headroom: float = 0.10  # extra fraction of capacity kept free (0.1 = 10 %)
    lead_time_s: float | None = None  # None = "auto": cold start + decision period + metrics lag
    decision_period_s: float = 15.0
    metrics_lag_s: float = 30.0
    burst_window_s: float = 10.0  # short window of the reactive burst guard (KPA-style panic)
    panic_threshold: float = 2.0  # burst rate / capacity of ready pods that triggers panic
    stale_after_s: float = 120.0  # observations older than this are stale


@dataclass(frozen=True)
class ForecasterSpec:
    model: str = "auto"  # "auto" or a registry name (seasonal-naive, holt-winters, ets, ...)
    season_length_s: int = 86_400
    step_s: int = 60
    history_s: int = 14 * 86_400  # history kept and fetched for warm-up
    refit_interval_s: int = 3_600
    level: float = 0.95  # central interval level the forecaster reports


@dataclass(frozen=True)
class BatchingParams:
    """TF Serving BatchingParameters (session_bundle_config.proto) that we tune."""

    max_batch_size: int = 32
    batch_timeout_us: int = 2_000
    num_batch_threads: int = 4
    max_enqueued_batches: int = 100

    def to_pbtxt(self, thread_pool_name: str = "batch_threads") -> str:
        """TF Serving's text format; the wrapper types need braces."""
        return (
            f"max_batch_size {{ value: {self.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {self.batch_timeout_us} }}\n"
            f"max_enqueued_batches {{ value: {self.max_enqueued_batches} }}\n"
            f"num_batch_threads {{ value: {self.num_batch_threads} }}\n"
            f'thread_pool_name {{ value: "{thread_pool_name}" }}\n'
        )


@dataclass(frozen=True)
class IntRange:
    min: int
    max: int


@dataclass(frozen=True)
class BatchingSpec:
    tune: bool = False
    initial: BatchingParams = field(default_factory=BatchingParams)
    max_batch_size: IntRange = field(default_factory=lambda: IntRange(1, 128))
    batch_timeout_us: IntRange = field(default_factory=lambda: IntRange(0, 20_000))
    num_batch_threads: IntRange = field(default_factory=lambda: IntRange(1, 8))
    max_enqueued_batches: IntRange = field(default_factory=lambda: IntRange(10, 1_000))
    min_rollout_interval_s: float = 3_600.0
    min_gain: float = 0.10  # relative capacity gain needed to justify a restart wave


@dataclass(frozen=True)
class ScalingPolicy:
    type: PolicyType
    value: int
    period_s: int


@dataclass(frozen=True)
class ScalingRules:
    """HPA `HPAScalingRules` after API defaulting (`pkg/apis/autoscaling/v2/defaults.go`)."""

    stabilization_window_s: int
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicy, ...]
    tolerance: float = 0.1


def default_scale_up() -> ScalingRules:
    return ScalingRules(
        stabilization_window_s=0,
        select_policy=SelectPolicy.MAX,
        policies=(
            ScalingPolicy(PolicyType.PODS, 4, 15),
            ScalingPolicy(PolicyType.PERCENT, 100, 15),
        ),
    )


def default_scale_down() -> ScalingRules:
    return ScalingRules(
        stabilization_window_s=300,
        select_policy=SelectPolicy.MAX,
        policies=(ScalingPolicy(PolicyType.PERCENT, 100, 15),),
    )


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules = field(default_factory=default_scale_up)
    scale_down: ScalingRules = field(default_factory=default_scale_down)


@dataclass(frozen=True)
class ServiceProfile:
    """Measured service time of one batch on one replica, and CPU cost per request."""

    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    # mean latency of one batch of that size, milliseconds (T4 FP32 ResNet-50, DLE table)
    batch_latency_ms: tuple[float, ...] = (7.34, 9.29, 13.83, 23.41, 40.58, 77.18, 150.82, 297.82)
    cpu_ms_per_request: float = 2.0  # host CPU time per request (pre/post-processing, RPC)
    cpu_request_millicores: int = 2_000  # the pod's CPU request (for CPU utilization %)
    # Batches the device executes concurrently at the measured speed. The profile times one batch
    # alone, so on one GPU this is 1: extra `num_batch_threads` overlap host work but cannot add
    # device throughput. For CPU serving it is roughly cores / intra-op threads per batch.
    device_parallelism: int = 1
    source: str = "DLE-TF-RN50v1.5 T4 FP32"


@dataclass(frozen=True)
class StartupSpec:
    """Pod startup delay: scheduling + image pull + model load + warmup, seconds."""

    scheduling_s: float = 2.0
    image_pull_s: float = 20.0
    model_load_s: float = 25.0
    warmup_s: float = 13.0
    jitter_cv: float = 0.2  # coefficient of variation of the total (lognormal)

    @property
    def mean_s(self) -> float:
        return self.scheduling_s + self.image_pull_s + self.model_load_s + self.warmup_s


@dataclass(frozen=True)
class Outputs:
    decisions_path: str | None = None  # JSONL decision records
    metrics_prefix: str = "tfserving_autoscaler"


@dataclass(frozen=True)
class ServingAutoscalerSpec:
    name: str
    target: TargetRef
    min_replicas: int = 1
    max_replicas: int = 10
    slo: SLO = field(default_factory=SLO)
    provisioning: Provisioning = field(default_factory=Provisioning)
    forecaster: ForecasterSpec = field(default_factory=ForecasterSpec)
    batching: BatchingSpec = field(default_factory=BatchingSpec)
    behavior: Behavior = field(default_factory=Behavior)
    mode: Mode = Mode.HPA
    profile: ServiceProfile = field(default_factory=ServiceProfile)
    startup: StartupSpec = field(default_factory=StartupSpec)
    outputs: Outputs = field(default_factory=Outputs)

    @property
    def lead_time_s(self) -> float:
        """Provisioning lead time: set explicitly, or cold start + decision period + metrics lag."""
        p = self.provisioning
        if p.lead_time_s is not None:
            return p.lead_time_s
        return self.startup.mean_s + p.decision_period_s + p.metrics_lag_s
