"""PromQL builders: one query per signal for *all* targets, grouped so results map back by labels.

Owns the exact PromQL the daemon sends (and the dashboards/rules can reuse). Facts from TF Serving's
`tensorflow_serving/util/prometheus_exporter.cc`, `servables/tensorflow/util.cc` and
`batching/batching_session.cc`, and NVIDIA/dcgm-exporter `etc/default-counters.csv`: TF Serving names
start with `:` (legal bare in PromQL), counters have no
`_total`, latencies are microseconds, the `batching_session` histograms carry no `model_name`
(joined to the pod's model through the request_count series on `(namespace, pod)`), DCGM
utilization is percent while `DCGM_FI_PROF_GR_ENGINE_ACTIVE` is a 0–1 ratio (preferred when
present), and kube-state-metrics gives replica counts and pod timestamps. Every builder returns
series labelled by `(namespace, model_name)`, `(namespace, deployment)` or `(namespace, pod)`.
The only per-target filter is a `namespace=~` regex (a few namespaces, not 1,000 models).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
QUEUING_LATENCY = ":tensorflow:serving:batching_session:queuing_latency"
PROCESSED_BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
GR_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
KSM_SPEC = "kube_deployment_spec_replicas"
KSM_STATUS = "kube_deployment_status_replicas"
KSM_READY = "kube_deployment_status_replicas_ready"


def _exponential(scale: float, growth: float, count: int) -> tuple[float, ...]:
    out, bound = [], scale
    for _ in range(count):
        out.append(bound)
        bound *= growth
    return tuple(out)


# TF Serving's request_latency bucket limits, Exponential(10, 1.8, 33) µs, and their `le` strings
# as prometheus_exporter.cc prints them (absl StrCat(double): 6 significant digits).
LATENCY_BUCKETS_US = _exponential(10.0, 1.8, 33)


def le_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else f"{bound:.6g}"


def slo_buckets_us(slo_ms: float) -> tuple[float, float]:
    """The TF Serving latency bucket bounds (µs) around an SLO latency: (lower, upper); lower 0 below
    the first bucket, upper +Inf beyond the last."""
    x = slo_ms * 1000.0
    lo = 0.0
    for b in LATENCY_BUCKETS_US:
        if x <= b:
            return lo, b
        lo = b
    return lo, float("inf")


def duration(seconds: float) -> str:
    """A PromQL duration in whole milliseconds (`60s`, `10s`, `1500ms`)."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def namespace_matcher(namespaces: Iterable[str]) -> str:
    """`namespace=~"a|b"` (anchored by PromQL), or an empty string for no filter."""
    ns = sorted(set(namespaces))
    if not ns:
        return ""
    return f'namespace=~"{"|".join(re.escape(n).replace(chr(92), chr(92) * 2) for n in ns)}"'


def _sel(name: str, matcher: str, *extra: str) -> str:
    parts = [p for p in (matcher, *extra) if p]
    return f"{name}{{{','.join(parts)}}}" if parts else name


def pod_model(matcher: str) -> str:
    """1 per (namespace, pod, model_name): the pod→model map from TF Serving's own request_count.

    Pods serving several models are left out: their batch-queue and GPU series cannot be split by
    model, and keeping them would make every `group_left` join fail as many-to-many for all targets.
    A multi-model target reads those signals per pod instead (`pod_rate_sum`, `pod_gpu_util`).
    """
    pm = f"group by (namespace, pod, model_name) ({_sel(REQUEST_COUNT, matcher)})"
    return f"({pm} unless on (namespace, pod) (count by (namespace, pod) ({pm}) > 1))"


def request_rates(matcher: str, window_s: float) -> str:
    """Responses/s per (namespace, model_name, status): OK, UNAVAILABLE (rejected), the rest errors."""
    return f"sum by (namespace, model_name, status) (rate({_sel(REQUEST_COUNT, matcher)}[{duration(window_s)}]))"


def arrival_rate(matcher: str, window_s: float) -> str:
    """All responses/s (any status) per (namespace, model_name) over a short burst window."""
    return f"sum by (namespace, model_name) (rate({_sel(REQUEST_COUNT, matcher)}[{duration(window_s)}]))"


def latency_ms(matcher: str, quantile: float, window_s: float) -> str:
    """Latency (ms) at `quantile` per (namespace, model_name), REST and gRPC, all APIs together."""
    inner = f"rate({_sel(REQUEST_LATENCY + '_bucket', matcher)}[{duration(window_s)}])"
    return f"histogram_quantile({quantile:g}, sum by (namespace, model_name, le) ({inner})) / 1000"


def slo_attainment_buckets(matcher: str, slo_ms: float, window_s: float) -> str:
    """Bucket rates per (namespace, model_name, le) for the two buckets around `slo_ms` and +Inf;
    the fraction within the SLO is interpolated from them (`histogram.fraction_at_or_below`)."""
    lo, hi = slo_buckets_us(slo_ms)
    les = sorted({le_label(b) for b in (lo, hi, float("inf")) if b > 0})
    le_re = "|".join(re.escape(le).replace(chr(92), chr(92) * 2) for le in les)
    sel = _sel(REQUEST_LATENCY + "_bucket", matcher, f'le=~"{le_re}"')
    return f"sum by (namespace, model_name, le) (rate({sel}[{duration(window_s)}]))"


def _pod_joined_mean(metric: str, matcher: str, window_s: float) -> str:
    w = duration(window_s)
    join = f"on (namespace, pod) group_left (model_name) {pod_model(matcher)}"
    num = f"sum by (namespace, model_name) (rate({_sel(metric + '_sum', matcher)}[{w}]) * {join})"
    den = f"sum by (namespace, model_name) (rate({_sel(metric + '_count', matcher)}[{w}]) * {join})"
    return f"({num}) / ({den})"


def queue_latency_ms(matcher: str, window_s: float) -> str:
    """Mean batch-queue wait (ms) per (namespace, model_name), joined to the model by pod."""
    return f"{_pod_joined_mean(QUEUING_LATENCY, matcher, window_s)} / 1000"


def mean_batch_size(matcher: str, window_s: float) -> str:
    """Mean processed batch size per (namespace, model_name), joined to the model by pod."""
    return _pod_joined_mean(PROCESSED_BATCH_SIZE, matcher, window_s)


def gpu_util(matcher: str) -> str:
    """GPU busy fraction 0..1 per (namespace, model_name): GR_ENGINE_ACTIVE, else GPU_UTIL/100."""
    join = f"on (namespace, pod) group_left (model_name) {pod_model(matcher)}"
    prof = f"avg by (namespace, model_name) ({_sel(GR_ENGINE_ACTIVE, matcher)} * {join})"
    util = f"avg by (namespace, model_name) ({_sel(GPU_UTIL, matcher)} / 100 * {join})"
    return f"{prof} or {util}"


def cold_start_s(matcher: str) -> str:
    """Pod start → Ready (s) per (namespace, pod), from kube-state-metrics timestamps."""
    return f"{_sel('kube_pod_status_ready_time', matcher)} - on (namespace, pod) {_sel('kube_pod_created', matcher)}"


def replicas(matcher: str) -> str:
    """spec / status / ready replicas per (namespace, deployment), told apart by `__name__`."""
    names = "|".join((KSM_SPEC, KSM_STATUS, KSM_READY))
    return _sel("", matcher, f'__name__=~"{names}"')


def freshness(matcher: str) -> str:
    """Newest raw sample time (Unix s) per (namespace, model_name) and per (namespace, deployment)."""
    tf = f"max by (namespace, model_name) (timestamp({_sel(REQUEST_COUNT, matcher)}))"
    ksm = f"max by (namespace, deployment) (timestamp({_sel(KSM_SPEC, matcher)}))"
    return f"{tf} or {ksm}"


def pod_request_rate(matcher: str, window_s: float) -> str:
    """OK responses/s per (namespace, pod, model_name)."""
    sel = _sel(REQUEST_COUNT, matcher, 'status="OK"')
    return f"sum by (namespace, pod, model_name) (rate({sel}[{duration(window_s)}]))"


def pod_latency_ms(matcher: str, quantile: float, window_s: float) -> str:
    inner = f"rate({_sel(REQUEST_LATENCY + '_bucket', matcher)}[{duration(window_s)}])"
    return f"histogram_quantile({quantile:g}, sum by (namespace, pod, model_name, le) ({inner})) / 1000"


def pod_batch_size(matcher: str, window_s: float) -> str:
    w = duration(window_s)
    num = f"sum by (namespace, pod) (rate({_sel(PROCESSED_BATCH_SIZE + '_sum', matcher)}[{w}]))"
    den = f"sum by (namespace, pod) (rate({_sel(PROCESSED_BATCH_SIZE + '_count', matcher)}[{w}]))"
    return f"{num} / {den}"


def pod_rate_sum(series: str, matcher: str, window_s: float) -> str:
    """Per-second increase of one series summed per (namespace, pod): a histogram's `_sum` or
    `_count` for the per-pod means of a multi-model server (sources/multimodel.py)."""
    return f"sum by (namespace, pod) (rate({_sel(series, matcher)}[{duration(window_s)}]))"


def pod_gpu_util(matcher: str) -> str:
    """GPU busy fraction 0..1 per (namespace, pod): GR_ENGINE_ACTIVE, else GPU_UTIL/100."""
    prof = f"avg by (namespace, pod) ({_sel(GR_ENGINE_ACTIVE, matcher)})"
    util = f"avg by (namespace, pod) ({_sel(GPU_UTIL, matcher)} / 100)"
    return f"{prof} or {util}"


def rate_history(namespace: str, model_name: str | Sequence[str], window_s: float) -> str:
    """Offered load of one target for range queries: served (OK) + rejected (UNAVAILABLE) per second,
    the same quantity as `Observation.arrival_rps`; summed over the models of a multi-model server."""
    names = [model_name] if isinstance(model_name, str) else list(model_name)
    if len(names) == 1:
        model = f'model_name="{names[0]}"'
    else:
        model = f'model_name=~"{"|".join(re.escape(n).replace(chr(92), chr(92) * 2) for n in names)}"'
    sel = _sel(REQUEST_COUNT, f'namespace="{namespace}"', model, 'status=~"OK|UNAVAILABLE"')
    return f"sum(rate({sel}[{duration(window_s)}]))"
