"""Builds the Grafana dashboard for tfserving-autoscaler from code.

Panels are generated from the metric names in `autoscaler.core.telemetry_names` and the
TF Serving names (`tensorflow_serving/util/prometheus_exporter.cc` rendering of the metrics in
`tensorflow_serving/servables/tensorflow/util.cc`) and DCGM names (NVIDIA/dcgm-exporter
`etc/default-counters.csv`), so a rename cannot silently break a panel; a test
executes every panel's PromQL against a real Prometheus. The committed JSON under
`manifests/monitoring/grafana/` is this module's output (`tfserving-autoscaler generate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autoscaler.core import telemetry_names as n

TARGET = 'namespace="$namespace", deployment="$target"'
MODEL = 'namespace="$namespace", model_name="$model"'
PODS = 'namespace="$namespace", pod=~"$target-.*"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    ref: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    overrides: tuple[dict[str, Any], ...] = field(default=())
    key: bool = False  # a key panel must return series in the CI check


def panels() -> list[Panel]:
    """Every panel of the dashboard, in display order."""
    band = (
        {
            "matcher": {"id": "byName", "options": "forecast upper"},
            "properties": [
                {"id": "custom.fillBelowTo", "value": "forecast lower"},
                {"id": "custom.lineWidth", "value": 0},
                {"id": "custom.fillOpacity", "value": 20},
            ],
        },
        {
            "matcher": {"id": "byName", "options": "forecast lower"},
            "properties": [{"id": "custom.lineWidth", "value": 0}],
        },
    )
    return [
        Panel(
            "Load: observed vs forecast",
            "Observed request rate (served + rejected) against the forecast the daemon provisioned for "
            "(its configured quantile over the lead time) and the forecast interval band.",
            "reqps",
            (
                Query(f"{n.OBSERVED_RPS}{{{TARGET}}}", "observed", "A"),
                Query(f"{n.FORECAST_RPS}{{{TARGET}}}", "forecast (provisioned)", "B"),
                Query(f"{n.FORECAST_LO_RPS}{{{TARGET}}}", "forecast lower", "C"),
                Query(f"{n.FORECAST_HI_RPS}{{{TARGET}}}", "forecast upper", "D"),
            ),
            overrides=band,
            key=True,
        ),
        Panel(
            "Replicas: desired vs current vs ready",
            "The daemon's decision, the Deployment's spec.replicas and its ready pods. Annotations mark "
            "every change of the decision.",
            "short",
            (
                Query(f"{n.DESIRED_REPLICAS}{{{TARGET}}}", "desired", "A"),
                Query(f"{n.CURRENT_REPLICAS}{{{TARGET}}}", "current", "B"),
                Query(f"{n.READY_REPLICAS}{{{TARGET}}}", "ready", "C"),
            ),
            key=True,
        ),
        Panel(
            "Latency at the SLO quantile vs SLO",
            "TF Serving's request latency at the spec's quantile (from its histogram) against the SLO.",
            "ms",
            (
                Query(f"{n.LATENCY_MS}{{{TARGET}}}", "observed", "A"),
                Query(f"{n.SLO_LATENCY_MS}{{{TARGET}}}", "SLO", "B"),
            ),
            key=True,
        ),
        Panel(
            "SLO attainment vs goal",
            "Fraction of requests within the SLO latency over the rate window, and the spec's goal.",
            "percentunit",
            (
                Query(f"{n.SLO_ATTAINMENT}{{{TARGET}}}", "attainment", "A"),
                Query(f"{n.SLO_ATTAINMENT_GOAL}{{{TARGET}}}", "goal", "B"),
            ),
        ),
        Panel(
            "Capacity per replica at the SLO",
            "Requests/s one replica serves within the SLO with the batching parameters in effect "
            "(capacity model, calibrated online).",
            "reqps",
            (Query(f"{n.CAPACITY_RPS}{{{TARGET}}}", "capacity / replica", "A"),),
            key=True,
        ),
        Panel(
            "Batch size and queueing latency",
            "Mean processed batch size (TF Serving batching_session), the configured max_batch_size, and "
            "the mean time requests wait in the batching queue. batching_session metrics carry no "
            "model label: they are selected by the target's pods.",
            "short",
            (
                Query(
                    f"sum(rate(:tensorflow:serving:batching_session:processed_batch_size_sum{{{PODS}}}[5m])) / "
                    f"sum(rate(:tensorflow:serving:batching_session:processed_batch_size_count{{{PODS}}}[5m]))",
                    "mean batch size",
                    "A",
                ),
                Query(f"{n.BATCH_MAX_SIZE}{{{TARGET}}}", "max_batch_size", "B"),
                Query(
                    f"sum(rate(:tensorflow:serving:batching_session:queuing_latency_sum{{{PODS}}}[5m])) / "
                    f"sum(rate(:tensorflow:serving:batching_session:queuing_latency_count{{{PODS}}}[5m])) / 1000",
                    "mean queueing latency (ms)",
                    "C",
                ),
            ),
            key=True,
        ),
        Panel(
            "GPU utilization",
            "DCGM GPU utilization of the target's pods (DCGM_FI_DEV_GPU_UTIL, percent; needs honorLabels "
            "so pod/namespace are the workload's), and what the calibrated capacity model predicts at the "
            "observed rate: a GPU far busier than predicted holds scale-downs (binding gpu-saturation).",
            "percent",
            (
                Query(f"avg(DCGM_FI_DEV_GPU_UTIL{{{PODS}}})", "mean", "A"),
                Query(f"max(DCGM_FI_DEV_GPU_UTIL{{{PODS}}})", "max", "B"),
                Query(f"100 * max({n.GPU_UTIL_MODEL}{{{TARGET}}})", "capacity model", "C"),
            ),
            key=True,
        ),
        Panel(
            "Binding constraint",
            "Which constraint decided the replica count at each tick (forecast, reactive floor, panic, "
            "stabilization, rate limit, min/max, pending pods, missing data).",
            "short",
            (Query(f"max by (binding) ({n.DECISION_INFO}{{{TARGET}}})", "{{binding}}", "A"),),
            kind="state-timeline",
            key=True,
        ),
        Panel(
            "Forecast error",
            "Absolute percentage error of the forecast made one lead time ago against the load observed now.",
            "percentunit",
            (Query(f"{n.FORECAST_ABS_ERROR}{{{TARGET}}}", "|error| / actual", "A"),),
        ),
        Panel(
            "Source errors and leader",
            "Metric-source failures per signal and status (missing, stale, NaN, query error) and which "
            "daemon instance holds the leader lease.",
            "short",
            (
                Query(f"sum by (signal, status) (rate({n.SOURCE_ERRORS}[5m]))", "{{signal}} {{status}}", "A"),
                Query(f"max by (pod) ({n.IS_LEADER})", "leader {{pod}}", "B"),
            ),
            key=True,
        ),
        Panel(
            "Decision validity and latency",
            "1 when the last decision was valid (invalid decisions never actuate), and the p99 time one "
            "control-loop tick spends deciding.",
            "short",
            (
                Query(f"{n.DECISION_VALID}{{{TARGET}}}", "valid", "A"),
                Query(
                    f"histogram_quantile(0.99, sum by (le) (rate({n.DECISION_LATENCY}_bucket[5m])))",
                    "decide p99 (s)",
                    "B",
                ),
            ),
            key=True,
        ),
        Panel(
            "TF Serving request outcomes",
            "Requests/s by status from TF Serving itself: OK, UNAVAILABLE (batch queue full) and other errors.",
            "reqps",
            (
                Query(
                    f"sum by (status) (rate(:tensorflow:serving:request_count{{{MODEL}}}[5m]))",
                    "{{status}}",
                    "A",
                ),
            ),
            key=True,
        ),
    ]


def _variables() -> list[dict[str, Any]]:
    def query_var(name: str, label: str, query: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": query, "refId": f"var-{name}"},
            "definition": query,
            "refresh": 2,
            "sort": 1,
            "includeAll": False,
            "multi": False,
        }

    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
        query_var("namespace", "Namespace", f"label_values({n.DESIRED_REPLICAS}, namespace)"),
        query_var("target", "Target", f'label_values({n.DESIRED_REPLICAS}{{namespace="$namespace"}}, deployment)'),
        query_var("model", "Model", f"label_values({n.DESIRED_REPLICAS}{{{TARGET}}}, model)"),
    ]


def _panel_json(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": list(p.overrides)},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": q.ref,
                "expr": q.expr,
                "legendFormat": q.legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for q in p.queries
        ],
    }


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana JSON model (schemaVersion 39)."""
    out = []
    x = y = 0
    for pid, p in enumerate(panels(), start=1):
        if x + p.width > 24:
            x, y = 0, y + p.height
        out.append(_panel_json(p, pid, x, y))
        x += p.width
    return {
        "uid": "tfserving-autoscaler",
        "title": "TF Serving autoscaler: decisions",
        "description": "Scaling decisions of tfserving-autoscaler per target: load vs forecast, replicas, "
        "latency vs SLO, batching, GPU, and why each decision was made.",
        "tags": ["tfserving", "autoscaling", "kubernetes"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": _variables()},
        "annotations": {
            "list": [
                {
                    "name": "Scaling decisions",
                    "enable": True,
                    "iconColor": "orange",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "expr": f"changes({n.DESIRED_REPLICAS}{{{TARGET}}}[1m]) > 0",
                    "step": "60s",
                    "titleFormat": "desired replicas changed",
                    "useValueForTime": False,
                }
            ]
        },
        "panels": out,
    }


def all_queries() -> list[str]:
    """Every PromQL expression the dashboard runs (panels, annotations, variables)."""
    d = dashboard()
    exprs = [t["expr"] for p in d["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in d["annotations"]["list"]]
    return exprs
