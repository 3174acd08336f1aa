"""TF Serving's monitoring metrics and their exact Prometheus rendering, for the emulator.

Owns the metric *wire format* an emulated replica exposes on `/monitoring/prometheus/metrics`,
copied from `tensorflow_serving/util/prometheus_exporter.cc` (`PrometheusExporter`): names with a
leading colon, latencies in microseconds, counters without `_total`, no `# HELP`, one `# TYPE`
line per metric, histogram buckets printed with absl `StrCat(double)` (6 significant digits),
`_sum{}`/`_count{}` with empty braces when a metric has no labels, and a series only after its
first observation. TF `Sampler` buckets hold values `< limit`. Kept separate from the HTTP server
so the renderer can be unit-tested line by line against TF Serving's layout.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
QUEUING_LATENCY = ":tensorflow:serving:batching_session:queuing_latency"
WRAPPED_RUN_COUNT = ":tensorflow:serving:batching_session:wrapped_run_count"
INPUT_BATCH_SIZE = ":tensorflow:serving:batching_session:input_batch_size"
PROCESSED_BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"
LOAD_ATTEMPT_COUNT = ":tensorflow:cc:saved_model:load_attempt_count"
LOAD_LATENCY = ":tensorflow:cc:saved_model:load_latency"
WARMUP_LATENCY = ":tensorflow:serving:model_warmup_latency"

# TF names (the exporter iterates a std::map keyed by these, so pages are ordered by them).
_TF_NAME = {
    REQUEST_COUNT: "/tensorflow/serving/request_count",
    REQUEST_LATENCY: "/tensorflow/serving/request_latency",
    RUNTIME_LATENCY: "/tensorflow/serving/runtime_latency",
    QUEUING_LATENCY: "/tensorflow/serving/batching_session/queuing_latency",
    WRAPPED_RUN_COUNT: "/tensorflow/serving/batching_session/wrapped_run_count",
    INPUT_BATCH_SIZE: "/tensorflow/serving/batching_session/input_batch_size",
    PROCESSED_BATCH_SIZE: "/tensorflow/serving/batching_session/processed_batch_size",
    LOAD_ATTEMPT_COUNT: "/tensorflow/cc/saved_model/load_attempt_count",
    LOAD_LATENCY: "/tensorflow/cc/saved_model/load_latency",
    WARMUP_LATENCY: "/tensorflow/serving/model_warmup_latency",
}


def exponential_buckets(scale: float, growth: float, count: int) -> tuple[float, ...]:
    """TF `monitoring::Buckets::Exponential`: repeated multiplication, exactly as the C++ does it."""
    limits: list[float] = []
    bound = scale
    for _ in range(count):
        limits.append(bound)
        bound *= growth
    return tuple(limits)


LATENCY_BUCKETS_US = exponential_buckets(10.0, 1.8, 33)  # request_latency, runtime_latency
QUEUING_BUCKETS_US = exponential_buckets(100.0, 1.2, 52)  # batching_session queuing_latency
BATCH_SIZE_BUCKETS = exponential_buckets(1.0, 2.0, 14)  # 1, 2, 4, ..., 8192
WARMUP_BUCKETS_US = exponential_buckets(10.0, 1.8, 33)


def strcat_double(x: float) -> str:
    """absl::StrCat(double): 6 significant digits, %g style (10, 32.4, 104.976, 1.27482e+06)."""
    return f"{x:.6g}"


def _labels(names: Sequence[str], values: Sequence[str]) -> list[str]:
    out = []
    for n, v in zip(names, values, strict=True):
        esc = v.replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'{n}="{esc}"')
    return out


@dataclass
class _Hist:
    counts: list[int]
    sum: float = 0.0


@dataclass
class Counter:
    """TF `Counter` (int64), rendered as a Prometheus counter without `_total`."""

    name: str
    label_names: tuple[str, ...]
    cells: dict[tuple[str, ...], int] = field(default_factory=dict)

    def inc(self, *label_values: str, by: int = 1) -> None:
        self.cells[label_values] = self.cells.get(label_values, 0) + by

    def render(self) -> list[str]:
        lines = [f"# TYPE {self.name} counter"]
        for lv in sorted(self.cells):
            lines.append(f"{self.name}{{{','.join(_labels(self.label_names, lv))}}} {self.cells[lv]}")
        return lines


@dataclass
class Sampler:
    """TF `Sampler` (histogram) with fixed bucket limits; the last bucket is the overflow (+Inf)."""

    name: str
    label_names: tuple[str, ...]
    limits: tuple[float, ...]
    cells: dict[tuple[str, ...], _Hist] = field(default_factory=dict)

    def observe(self, value: float, *label_values: str) -> None:
        h = self.cells.get(label_values)
        if h is None:
            h = _Hist(counts=[0] * (len(self.limits) + 1))
            self.cells[label_values] = h
        # TF Histogram::Add: bucket = first limit strictly greater than value.
        h.counts[bisect.bisect_right(self.limits, value)] += 1
        h.sum += value

    def count(self, *label_values: str) -> int:
        h = self.cells.get(label_values)
        return 0 if h is None else sum(h.counts)

    def render(self) -> list[str]:
        lines = [f"# TYPE {self.name} histogram"]
        for lv in sorted(self.cells):
            h = self.cells[lv]
            labels = _labels(self.label_names, lv)
            prefix = f"{self.name}_bucket{{{','.join(labels)}" + ("," if labels else "")
            cum = 0
            for i, c in enumerate(h.counts):
                cum += c
                le = strcat_double(self.limits[i]) if i < len(self.limits) else "+Inf"
                lines.append(f'{prefix}le="{le}"}} {cum}')
            joined = ",".join(labels)
            lines.append(f"{self.name}_sum{{{joined}}} {strcat_double(h.sum)}")
            lines.append(f"{self.name}_count{{{joined}}} {cum}")
        return lines


class TfServingMetrics:
    """The metric set one TF Serving process exports (request path + session batching + loading)."""

    def __init__(self) -> None:
        self.request_count = Counter(REQUEST_COUNT, ("model_name", "status"))
        self.request_latency = Sampler(REQUEST_LATENCY, ("model_name", "API", "entrypoint"), LATENCY_BUCKETS_US)
        self.runtime_latency = Sampler(RUNTIME_LATENCY, ("model_name", "API", "runtime"), LATENCY_BUCKETS_US)
        self.queuing_latency = Sampler(QUEUING_LATENCY, ("thread_pool_name",), QUEUING_BUCKETS_US)
        self.wrapped_run_count = Counter(WRAPPED_RUN_COUNT, ())
        self.input_batch_size = Sampler(INPUT_BATCH_SIZE, (), BATCH_SIZE_BUCKETS)
        self.processed_batch_size = Sampler(PROCESSED_BATCH_SIZE, (), BATCH_SIZE_BUCKETS)
        self.load_attempt_count = Counter(LOAD_ATTEMPT_COUNT, ("model_path", "status"))
        self.load_latency = Counter(LOAD_LATENCY, ("model_path",))
        self.warmup_latency = Sampler(WARMUP_LATENCY, ("model_path", "status"), WARMUP_BUCKETS_US)

    def render(self) -> str:
        """The whole page: metrics ordered by TF name, metrics without points omitted."""
        metrics: list[Counter | Sampler] = [
            self.request_count,
            self.request_latency,
            self.runtime_latency,
            self.queuing_latency,
            self.wrapped_run_count,
            self.input_batch_size,
            self.processed_batch_size,
            self.load_attempt_count,
            self.load_latency,
            self.warmup_latency,
        ]
        lines: list[str] = []
        for m in sorted(metrics, key=lambda m: _TF_NAME[m.name]):
            if m.cells:
                lines.extend(m.render())
        return "\n".join(lines) + "\n"
