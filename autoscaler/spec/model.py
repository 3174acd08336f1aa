"""The ServingAutoscaler document schema (pydantic), exactly as users write it in YAML.

This is the validation edge: field names are the Kubernetes-style camelCase names users see
(`minReplicas`, `latencyMs`, `batchTimeoutMicros`), bounds live next to each field so error
messages and the CRD's OpenAPI schema (`autoscaler.spec.schema`) come from one source.
`autoscaler.spec.parse` turns a validated document into the frozen dataclasses of
`autoscaler.spec.types`; nothing past that edge sees pydantic.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from autoscaler.spec.types import API_VERSION, KIND

# Kubernetes DNS-1123 label / subdomain names.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
Port = Annotated[int, Field(ge=1, le=65535)]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class TargetModel(_Model):
    deployment: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
    model_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    namespace: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)] | None = None
    rest_port: Port = 8501
    grpc_port: Port = 8500
    container: Annotated[str, Field(min_length=1, max_length=63)] = "tfserving"
    batching_config_map: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)] | None = None
    # A multi-model server (one model_config_list): every model it serves, see ServedModelModel.
    models: Annotated[list[ServedModelModel], Field(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _models(self) -> TargetModel:
        if self.model_name is None and self.models is None:
            raise ValueError("@modelName: required field is missing")  # or `models`, for a multi-model server
        if self.models is None:
            return self
        names = [m.name for m in self.models]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ValueError(f"@models[{i}].name: duplicate model name {n!r} (expected each model once)")
        if self.model_name is not None and self.model_name not in names:
            raise ValueError(
                f"@modelName: {self.model_name!r} is not among models (got {names}; expected it listed, or unset)"
            )
        shares = [m.share for m in self.models if m.share is not None]
        if sum(shares) > 1.0 + 1e-9:
            raise ValueError(f"@models: the shares add up to {sum(shares):g} (expected at most 1)")
        return self


class SLOModel(_Model):
    latency_quantile: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.99
    latency_ms: Annotated[float, Field(gt=0.0, le=600_000.0)]
    attainment: Annotated[float, Field(gt=0.5, le=1.0)] = 0.999


class ProvisioningModel(_Model):
    forecast_quantile: Annotated[float, Field(ge=0.5, lt=1.0)] = 0.95
    headroom: Annotated[float, Field(ge=0.0, lt=0.9)] = 0.10
    lead_time_seconds: Annotated[int, Field(ge=0, le=3_600)] | Literal["auto"] = "auto"
    decision_period_seconds: Annotated[int, Field(ge=1, le=600)] = 15
    metrics_lag_seconds: Annotated[int, Field(ge=0, le=600)] = 30
    burst_window_seconds: Annotated[int, Field(ge=1, le=300)] = 10
    panic_threshold: Annotated[float, Field(gt=1.0, le=10.0)] = 2.0
    stale_after_seconds: Annotated[int, Field(ge=5, le=3_600)] = 120


class ForecasterModel(_Model):
    model: Annotated[str, Field(min_length=1, max_length=64)] = "auto"
    season_length_seconds: Annotated[int, Field(ge=60, le=31 * 86_400)] = 86_400
    step_seconds: Annotated[int, Field(ge=1, le=3_600)] = 60
    history_seconds: Annotated[int, Field(ge=3_600, le=90 * 86_400)] = 14 * 86_400
    refit_interval_seconds: Annotated[int, Field(ge=60, le=7 * 86_400)] = 3_600
    level: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95

    @model_validator(mode="after")
    def _steps_divide(self) -> ForecasterModel:
        if self.season_length_seconds % self.step_seconds != 0:
            raise ValueError(
                f"seasonLengthSeconds ({self.season_length_seconds}) must be a multiple of "
                f"stepSeconds ({self.step_seconds})"
            )
        return self


# The largest value each TF Serving batching parameter may take (initial values and bounds alike).
BATCHING_MAX = {
    "max_batch_size": 65_536,
    "batch_timeout_micros": 10_000_000,
    "num_batch_threads": 1_024,
    "max_enqueued_batches": 10_000_000,
}


class BatchingParamsModel(_Model):
    max_batch_size: Annotated[int, Field(ge=1, le=BATCHING_MAX["max_batch_size"])] = 32
    batch_timeout_micros: Annotated[int, Field(ge=0, le=BATCHING_MAX["batch_timeout_micros"])] = 2_000
    num_batch_threads: Annotated[int, Field(ge=1, le=BATCHING_MAX["num_batch_threads"])] = 4
    max_enqueued_batches: Annotated[int, Field(ge=1, le=BATCHING_MAX["max_enqueued_batches"])] = 100


class IntRangeModel(_Model):
    min: Annotated[int, Field(ge=0)]
    max: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _ordered(self) -> IntRangeModel:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


class BatchingBoundsModel(_Model):
    max_batch_size: IntRangeModel = IntRangeModel(min=1, max=128)
    batch_timeout_micros: IntRangeModel = IntRangeModel(min=0, max=20_000)
    num_batch_threads: IntRangeModel = IntRangeModel(min=1, max=8)
    max_enqueued_batches: IntRangeModel = IntRangeModel(min=10, max=1_000)

    @model_validator(mode="after")
    def _within_tf_serving_limits(self) -> BatchingBoundsModel:
        for name, limit in BATCHING_MAX.items():
            rng: IntRangeModel = getattr(self, name)
            if rng.max > limit:
                raise ValueError(f"{to_camel(name)}.max ({rng.max}) must be <= {limit}")
        return self


class BatchingModel(_Model):
    tune: bool = False
    initial: BatchingParamsModel = BatchingParamsModel()
    bounds: BatchingBoundsModel = BatchingBoundsModel()
    min_rollout_interval_seconds: Annotated[int, Field(ge=60, le=7 * 86_400)] = 3_600
    min_gain: Annotated[float, Field(ge=0.0, le=10.0)] = 0.10


class ScalingPolicyModel(_Model):
    type: Literal["Pods", "Percent"]
    value: Annotated[int, Field(gt=0, le=1_000_000)]
    period_seconds: Annotated[int, Field(gt=0, le=1_800)]


class ScalingRulesModel(_Model):
    stabilization_window_seconds: Annotated[int, Field(ge=0, le=3_600)] | None = None
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: Annotated[list[ScalingPolicyModel], Field(min_length=1)] | None = None
    tolerance: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


class BehaviorModel(_Model):
    scale_up: ScalingRulesModel | None = None
    scale_down: ScalingRulesModel | None = None


class ProfilePointModel(_Model):
    batch_size: Annotated[int, Field(ge=1, le=65_536)]
    latency_ms: Annotated[float, Field(gt=0.0, le=600_000.0)]  # finite: at most the SLO's own limit


class ProfileModel(_Model):
    batch_latency: Annotated[list[ProfilePointModel], Field(min_length=1)]
    cpu_ms_per_request: Annotated[float, Field(ge=0.0, le=600_000.0)] = 2.0
    cpu_request_millicores: Annotated[int, Field(gt=0, le=1_000_000)] = 2_000
    device_parallelism: Annotated[int, Field(ge=1, le=1_024)] = 1
    source: str = ""

    @model_validator(mode="after")
    def _monotone(self) -> ProfileModel:
        sizes = [p.batch_size for p in self.batch_latency]
        if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
            raise ValueError(f"batchLatency batch sizes must be strictly increasing, got {sizes}")
        lat = [p.latency_ms for p in self.batch_latency]
        if any(b < a for a, b in zip(lat, lat[1:], strict=False)):
            raise ValueError(f"batchLatency latencies must not decrease with batch size, got {lat}")
        return self


class ServedModelModel(_Model):
    """One model of a multi-model TF Serving server: its name, expected share of the requests
    (used until per-model rates are observed) and its own service profile on the pod's device."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    share: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    profile: ProfileModel | None = None


TargetModel.model_rebuild()


class StartupModel(_Model):
    scheduling_seconds: Annotated[float, Field(ge=0.0, le=3_600.0)] = 2.0
    image_pull_seconds: Annotated[float, Field(ge=0.0, le=3_600.0)] = 20.0
    model_load_seconds: Annotated[float, Field(ge=0.0, le=3_600.0)] = 25.0
    warmup_seconds: Annotated[float, Field(ge=0.0, le=3_600.0)] = 13.0
    jitter_cv: Annotated[float, Field(ge=0.0, le=2.0)] = 0.2


class OutputsModel(_Model):
    decisions_path: str | None = None
    metrics_prefix: Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")] = "tfserving_autoscaler"


class SpecModel(_Model):
    target: TargetModel
    slo: SLOModel
    min_replicas: Annotated[int, Field(ge=1, le=10_000)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=10_000)]
    mode: Literal["hpa", "direct", "preview"] = "hpa"
    provisioning: ProvisioningModel = ProvisioningModel()
    forecaster: ForecasterModel = ForecasterModel()
    batching: BatchingModel = BatchingModel()
    behavior: BehaviorModel = BehaviorModel()
    profile: ProfileModel | None = None
    startup: StartupModel = StartupModel()
    outputs: OutputsModel = OutputsModel()

    @model_validator(mode="after")
    def _cross_field(self) -> SpecModel:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) must be <= maxReplicas ({self.max_replicas})")
        b = self.batching
        for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
            rng: IntRangeModel = getattr(b.bounds, name)
            value: int = getattr(b.initial, name)
            if b.tune and not rng.min <= value <= rng.max:
                raise ValueError(
                    f"batching.initial.{to_camel(name)} ({value}) must lie within "
                    f"batching.bounds.{to_camel(name)} [{rng.min}, {rng.max}] when tune is true"
                )
        return self


class MetadataModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
    namespace: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)] = "default"


class DocumentModel(BaseModel):
    """A whole `ServingAutoscaler` document (apiVersion, kind, metadata, spec)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)
    api_version: Annotated[Literal["autoscaling.tfserving.dev/v1alpha1"], Field(alias="apiVersion")]
    kind: Literal["ServingAutoscaler"]
    metadata: MetadataModel
    spec: SpecModel
    status: dict[str, object] | None = None


assert API_VERSION == "autoscaling.tfserving.dev/v1alpha1" and KIND == "ServingAutoscaler"
