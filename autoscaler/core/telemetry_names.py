"""Names of the metrics the daemon exports on /metrics.

Shared by the /metrics collector (runtime/telemetry.py), the Grafana dashboard builder, the
Prometheus rules and the docs, so a rename cannot silently break a panel. All gauges carry the
labels `namespace` and `deployment` (plus `model` where noted).
"""

from __future__ import annotations

PREFIX = "tfserving_autoscaler"

DESIRED_REPLICAS = f"{PREFIX}_desired_replicas"  # the decision (HPA reads it through an adapter)
CURRENT_REPLICAS = f"{PREFIX}_current_replicas"  # Deployment spec.replicas as observed
READY_REPLICAS = f"{PREFIX}_ready_replicas"
OBSERVED_RPS = f"{PREFIX}_observed_requests_per_second"
FORECAST_RPS = f"{PREFIX}_forecast_requests_per_second"  # provisioned-for forecast (quantile, lead time)
FORECAST_LO_RPS = f"{PREFIX}_forecast_lower_requests_per_second"
FORECAST_HI_RPS = f"{PREFIX}_forecast_upper_requests_per_second"
CAPACITY_RPS = f"{PREFIX}_capacity_per_replica_requests_per_second"  # per replica at the SLO
LATENCY_MS = f"{PREFIX}_observed_latency_milliseconds"  # at the SLO quantile
SLO_LATENCY_MS = f"{PREFIX}_slo_latency_milliseconds"
SLO_ATTAINMENT = f"{PREFIX}_slo_attainment_ratio"  # observed fraction of requests within the SLO latency
SLO_ATTAINMENT_GOAL = f"{PREFIX}_slo_attainment_goal_ratio"  # spec.slo.attainment
GPU_UTIL = f"{PREFIX}_gpu_utilization_ratio"  # observed GPU busy fraction (DCGM), mean over ready pods
GPU_UTIL_MODEL = f"{PREFIX}_gpu_utilization_model_ratio"  # the capacity model's prediction at the same rate
MODEL_READY_REPLICAS = f"{PREFIX}_model_ready_replicas"  # replicas whose model is AVAILABLE (TF Serving status)
MODEL_ROLLOUT = f"{PREFIX}_model_version_rollout"  # 1 while two model versions are live on the pods
BATCH_MAX_SIZE = f"{PREFIX}_batching_max_batch_size"
BATCH_TIMEOUT_US = f"{PREFIX}_batching_batch_timeout_microseconds"
BATCH_THREADS = f"{PREFIX}_batching_num_batch_threads"
BATCH_MAX_ENQUEUED = f"{PREFIX}_batching_max_enqueued_batches"
DECISION_INFO = f"{PREFIX}_decision_info"  # labels: binding, reason, forecast_model; value 1
DECISION_VALID = f"{PREFIX}_decision_valid"  # 1 if the last decision was valid, else 0
DECISION_TIMESTAMP = f"{PREFIX}_decision_timestamp_seconds"
DECISION_LATENCY = f"{PREFIX}_decision_duration_seconds"  # histogram of one tick's decide()
SOURCE_ERRORS = f"{PREFIX}_source_errors_total"  # counter; labels: signal, status
FORECAST_ABS_ERROR = f"{PREFIX}_forecast_absolute_percentage_error"  # |forecast - actual| / actual
IS_LEADER = f"{PREFIX}_leader"  # 1 on the leader, 0 on standbys
ACTUATIONS = f"{PREFIX}_actuations_total"  # counter; labels: kind (scale|batching), result
BATCHING_ROLLOUT_PENDING = f"{PREFIX}_batching_rollout_pending"  # 1 while a rollout is in progress
SPEC_ERRORS = f"{PREFIX}_spec_errors"  # 1 while a spec source (file or custom resource) is invalid
TICKS = f"{PREFIX}_ticks_total"  # counter of control-loop ticks; label: result
