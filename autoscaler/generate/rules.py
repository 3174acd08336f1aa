"""Prometheus recording rules and alerts for TF Serving and the autoscaler, built from code.

Recording rules precompute the signals the daemon queries (per namespace/model request rate by
outcome, latency quantiles, GPU utilization per pod) so dashboards and ad-hoc queries share
one definition. Alerts cover the daemon itself (down, no leader, invalid decisions, rollout
stuck) and the outcome users care about (SLO attainment below goal, forecast error high).
The same groups are written as a plain rules file (for `promtool check/test rules`) and as a
prometheus-operator `PrometheusRule`; a test checks the two agree.
"""

from __future__ import annotations

from typing import Any

from autoscaler.core import telemetry_names as n

REQ = ":tensorflow:serving:request_count"
LAT = ":tensorflow:serving:request_latency_bucket"
JOB = "tfs-autoscaler"


def recording_rules() -> list[dict[str, Any]]:
    return [
        {
            "record": "namespace_model:tfserving_requests:rate1m",
            "expr": f'sum by (namespace, model_name) (rate({REQ}{{status="OK"}}[1m]))',
        },
        {
            "record": "namespace_model:tfserving_rejected_requests:rate1m",
            "expr": f'sum by (namespace, model_name) (rate({REQ}{{status="UNAVAILABLE"}}[1m]))',
        },
        {
            "record": "namespace_model:tfserving_error_requests:rate1m",
            "expr": f'sum by (namespace, model_name) (rate({REQ}{{status!~"OK|UNAVAILABLE"}}[1m]))',
        },
        {
            "record": "namespace_model:tfserving_request_latency_us:p99_rate1m",
            "expr": f"histogram_quantile(0.99, sum by (namespace, model_name, le) (rate({LAT}[1m])))",
        },
        {
            "record": "namespace_model:tfserving_request_latency_us:p90_rate1m",
            "expr": f"histogram_quantile(0.90, sum by (namespace, model_name, le) (rate({LAT}[1m])))",
        },
        {
            "record": "namespace_pod:dcgm_gpu_utilization:ratio",
            "expr": "avg by (namespace, pod) (DCGM_FI_DEV_GPU_UTIL) / 100",
        },
    ]


def alert_rules() -> list[dict[str, Any]]:
    target = "{{ $labels.namespace }}/{{ $labels.deployment }}"
    return [
        {
            "alert": "TFServingAutoscalerDown",
            "expr": f'up{{job="{JOB}"}} == 0 or absent(up{{job="{JOB}"}})',
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "tfserving-autoscaler is down",
                "description": "No tfserving-autoscaler instance has been scraped for 5 minutes. In hpa mode the "
                "HPA keeps its last replica count; in direct mode replicas are frozen.",
            },
        },
        {
            "alert": "TFServingAutoscalerNoLeader",
            "expr": f"sum({n.IS_LEADER}) < 1",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "No tfserving-autoscaler instance holds the leader lease",
                "description": "Standbys compute decisions but nobody actuates (direct mode, batching rollouts).",
            },
        },
        {
            "alert": "TFServingAutoscalerDecisionsInvalid",
            "expr": f"{n.DECISION_VALID} == 0",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"Decisions for {target} are invalid",
                "description": f"The autoscaler has produced no valid decision for {target} for 10 minutes "
                "(metrics missing or stale); it is holding the last published value.",
            },
        },
        {
            "alert": "TFServingSLOAttainmentBelowGoal",
            "expr": f"{n.SLO_ATTAINMENT} < on (namespace, deployment) {n.SLO_ATTAINMENT_GOAL}",
            "for": "15m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"SLO attainment of {target} below its goal",
                "description": f"Only {{{{ $value | humanizePercentage }}}} of requests to {target} met the SLO "
                "latency over the last window, below the spec's attainment goal.",
            },
        },
        {
            "alert": "TFServingForecastErrorHigh",
            "expr": f"{n.FORECAST_ABS_ERROR} > 0.5",
            "for": "30m",
            "labels": {"severity": "info"},
            "annotations": {
                "summary": f"Load forecast for {target} is off by more than 50 %",
                "description": "The forecaster is tracking the load poorly (a regime change?). The reactive floor "
                "still protects the SLO; consider a different forecaster or season length.",
            },
        },
        {
            "alert": "TFServingBatchingRolloutStuck",
            "expr": f"{n.BATCHING_ROLLOUT_PENDING} == 1",
            "for": "30m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"Batching rollout of {target} has not completed in 30 minutes",
                "description": "The Deployment's rolling restart for new batching parameters is not progressing "
                "(image pull, quota, or failing readiness). Check `kubectl rollout status`.",
            },
        },
    ]


def rule_groups() -> list[dict[str, Any]]:
    return [
        {"name": "tfserving.recording", "interval": "30s", "rules": recording_rules()},
        {"name": "tfserving-autoscaler.alerts", "rules": alert_rules()},
    ]


def prometheus_rule() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "tfserving-autoscaler",
            "namespace": "tfs-autoscaler",
            "labels": {"app.kubernetes.io/name": "tfserving-autoscaler", "release": "prometheus"},
        },
        "spec": {"groups": rule_groups()},
    }
