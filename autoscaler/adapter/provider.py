"""The metrics provider: answers custom/external metric queries from the DecisionStore only.

Owned here, separate from the HTTP layer, so the serving logic can be tested without sockets and so
its method set mirrors kubernetes-sigs/custom-metrics-apiserver's `CustomMetricsProvider` /
`ExternalMetricsProvider` (docs/design.md "Contracts"). The adapter serves decisions, it never makes them.

Freshness: the HPA never rejects old values (kubernetes `pkg/controller/podautoscaler/metrics/client.go`
`GetRawMetric`/`GetExternalMetric` keep the timestamp for status only), so the provider does. A target
whose last *valid* decision is older than `max_age_s` (by the injected clock) is left out -> 404;
a pod whose signals are older than `max_age_s` is left out -> a "missing" pod for the HPA. Both are
the conservative choice (the HPA never scales down on a failed metric).

Pod labels: `TargetRecord.pods` carries no labels, so a pod's labels for `labelSelector` matching
come from `pod_labels(record, pod)`; the default is the record's `labels`, which the runtime sets to
the Deployment's pod-template labels (plus e.g. `model`). The HPA's `labelSelector` is the scale
target's selector, which those labels satisfy by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from autoscaler.adapter.selectors import Op, Selector
from autoscaler.core.store import DecisionStore, PodSignals, TargetRecord
from autoscaler.core.types import Decision

# External metrics (one series per target).
DESIRED_REPLICAS = "tfserving_autoscaler_desired_replicas"
FORECAST_RPS = "tfserving_autoscaler_forecast_rps"
CAPACITY_RPS = "tfserving_autoscaler_capacity_rps"
# Custom Pods metrics (one value per pod, from TargetRecord.pods).
POD_REQUEST_RATE = "tfserving_request_rate"
POD_LATENCY_MS = "tfserving_latency_ms"
POD_BATCH_FILL = "tfserving_batch_fill"

PODS = "pods"
DEPLOYMENTS = "deployments.apps"
NAMESPACES = "namespaces"

_DECISION_METRICS: dict[str, Callable[[Decision], float | None]] = {
    DESIRED_REPLICAS: lambda d: float(d.desired_replicas),
    FORECAST_RPS: lambda d: d.forecast_rps,
    CAPACITY_RPS: lambda d: d.capacity_rps,
}
_POD_METRICS: dict[str, Callable[[PodSignals], float | None]] = {
    POD_REQUEST_RATE: lambda p: p.request_rate_rps,
    POD_LATENCY_MS: lambda p: p.latency_ms,
    POD_BATCH_FILL: lambda p: p.batch_fill,
}
# Namespace metrics: the sum over the namespace's fresh targets that match metricLabelSelector.
_NAMESPACE_METRICS = (DESIRED_REPLICAS,)

PodLabels = Callable[[TargetRecord, PodSignals], Mapping[str, str]]


def record_labels(record: TargetRecord, pod: PodSignals) -> Mapping[str, str]:
    """Default pod labels: the target's (pod-template) labels."""
    return record.labels


@dataclass(frozen=True)
class CustomMetricInfo:
    """One (group-resource, metric) pair, as listed in discovery."""

    group_resource: str
    metric: str
    namespaced: bool


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    api_version: str
    name: str
    namespace: str = ""


@dataclass(frozen=True)
class CustomMetricValue:
    described_object: ObjectRef
    metric: str
    time_s: float
    window_s: int
    value: float


@dataclass(frozen=True)
class ExternalMetricValue:
    metric: str
    labels: dict[str, str]
    time_s: float
    window_s: int
    value: float


@dataclass
class MetricNotFoundError(Exception):
    """Becomes a 404 Status; `message` uses custom-metrics-apiserver's exact wording."""

    message: str = field(default="")

    def __str__(self) -> str:
        return self.message

    @staticmethod
    def for_resource(group_resource: str, metric: str) -> MetricNotFoundError:
        return MetricNotFoundError(f"the server could not find the metric {metric} for {group_resource}")

    @staticmethod
    def for_object(group_resource: str, metric: str, name: str) -> MetricNotFoundError:
        return MetricNotFoundError(f"the server could not find the metric {metric} for {group_resource} {name}")

    @staticmethod
    def for_selector(group_resource: str, metric: str, name: str, selector: Selector) -> MetricNotFoundError:
        return MetricNotFoundError(
            f"the server could not find the metric {metric} for {group_resource} {name} with selector {selector}"
        )

    @staticmethod
    def external(metric: str) -> MetricNotFoundError:
        return MetricNotFoundError(f"the server could not find the metric {metric} for provided labels")


def series_labels(record: TargetRecord) -> dict[str, str]:
    """Labels of a target's series: the record's labels, then the canonical identity (which wins)."""
    out = dict(record.labels)
    out.update(
        namespace=record.target.namespace,
        deployment=record.target.deployment,
        model=record.model_name,
    )
    return out


@dataclass(frozen=True)
class _TargetRow:
    record: TargetRecord
    decision: Decision
    labels: dict[str, str]  # series labels (read-only by convention)


@dataclass(frozen=True)
class _PodRow:
    record: TargetRecord
    pod: PodSignals
    pod_labels: Mapping[str, str]

    def series_labels(self) -> dict[str, str]:
        return {**series_labels(self.record), "pod": self.pod.pod}


@dataclass(frozen=True)
class _PodGroup:
    """The pods of one target; `shared_labels` is set when all its pods share the target's labels."""

    shared_labels: Mapping[str, str] | None
    rows: list[_PodRow]


_T = TypeVar("_T")


def _narrow(by_label: Mapping[tuple[str, str], list[_T]], everything: list[_T], selector: Selector) -> list[_T]:
    """The items that can match `selector`, found via its first equality/`in` requirement (order kept)."""
    for req in selector.requirements:
        if req.op in (Op.EQUALS, Op.DOUBLE_EQUALS, Op.IN):
            if len(req.values) == 1:
                return by_label.get((req.key, req.values[0]), [])
            chosen = {id(x) for v in req.values for x in by_label.get((req.key, v), ())}
            return [x for x in everything if id(x) in chosen]
    return everything


@dataclass(frozen=True)
class _Index:
    """Store contents grouped by namespace, with labels precomputed and inverted (one build per version)."""

    version: int
    targets: dict[str, list[_TargetRow]]  # only records with a valid decision
    target_by_label: dict[str, dict[tuple[str, str], list[_TargetRow]]]  # ns -> (key, value) -> rows
    pods: dict[str, list[_PodGroup]]
    pods_by_label: dict[str, dict[tuple[str, str], list[_PodGroup]]] | None  # None: per-pod labels

    def target_candidates(self, namespace: str, selector: Selector | None) -> list[_TargetRow]:
        everything = self.targets.get(namespace, [])
        if selector is None:
            return everything
        return _narrow(self.target_by_label.get(namespace, {}), everything, selector)

    def pod_candidates(self, namespace: str, selector: Selector | None) -> list[_PodGroup]:
        everything = self.pods.get(namespace, [])
        if selector is None or self.pods_by_label is None:
            return everything
        return _narrow(self.pods_by_label.get(namespace, {}), everything, selector)

    @staticmethod
    def build(version: int, records: Iterable[TargetRecord], pod_labels: PodLabels) -> _Index:
        shared = pod_labels is record_labels
        targets: dict[str, list[_TargetRow]] = {}
        target_by_label: dict[str, dict[tuple[str, str], list[_TargetRow]]] = {}
        pods: dict[str, list[_PodGroup]] = {}
        pods_by_label: dict[str, dict[tuple[str, str], list[_PodGroup]]] = {}
        for rec in records:
            ns = rec.target.namespace
            if rec.decision is not None and rec.published:  # preview decisions are never served
                row = _TargetRow(rec, rec.decision, series_labels(rec))
                targets.setdefault(ns, []).append(row)
                for item in row.labels.items():
                    target_by_label.setdefault(ns, {}).setdefault(item, []).append(row)
            if rec.pods:
                group = _PodGroup(
                    rec.labels if shared else None, [_PodRow(rec, pod, pod_labels(rec, pod)) for pod in rec.pods]
                )
                pods.setdefault(ns, []).append(group)
                for item in rec.labels.items():
                    pods_by_label.setdefault(ns, {}).setdefault(item, []).append(group)
        return _Index(version, targets, target_by_label, pods, pods_by_label if shared else None)


class DecisionStoreProvider:
    """custom-metrics-apiserver-style provider over a DecisionStore."""

    def __init__(
        self,
        store: DecisionStore,
        *,
        now_s: Callable[[], float],
        max_age_s: float = 120.0,
        window_s: int = 60,
        pod_labels: PodLabels = record_labels,
    ) -> None:
        self.store = store
        self.now_s = now_s
        self.max_age_s = max_age_s
        self.window_s = window_s
        self.pod_labels = pod_labels
        self._cached: _Index | None = None

    # ----------------------------------------------------------------- freshness
    def _index(self) -> _Index:
        """The per-namespace view of the store, rebuilt only when the store's version changes."""
        version = self.store.version
        idx = self._cached
        if idx is None or idx.version != version:
            idx = _Index.build(version, self.store.snapshot(), self.pod_labels)
            self._cached = idx
        return idx

    def _fresh_decisions(self, namespace: str, narrow_by: Selector | None = None) -> Iterable[_TargetRow]:
        """Fresh targets in `namespace`; `narrow_by` may skip rows that cannot match that selector."""
        oldest_s = self.now_s() - self.max_age_s
        for row in self._index().target_candidates(namespace, narrow_by):
            if row.decision.time_s >= oldest_s:
                yield row

    def _fresh_pods(self, namespace: str, selector: Selector | None) -> Iterable[_PodRow]:
        """Fresh pods in `namespace` whose labels match `selector` (None: all)."""
        oldest_s = self.now_s() - self.max_age_s
        for group in self._index().pod_candidates(namespace, selector):
            shared = group.shared_labels
            if selector is not None and shared is not None and not selector.matches(shared):
                continue  # one check for all pods of a target when labels are per target
            for row in group.rows:
                if row.pod.time_s < oldest_s:
                    continue
                if selector is not None and shared is None and not selector.matches(row.pod_labels):
                    continue
                yield row

    # ------------------------------------------------------------ custom metrics
    def list_all_metrics(self) -> list[CustomMetricInfo]:
        out = [CustomMetricInfo(PODS, m, True) for m in _POD_METRICS]
        out += [CustomMetricInfo(DEPLOYMENTS, m, True) for m in _DECISION_METRICS]
        out += [CustomMetricInfo(NAMESPACES, m, False) for m in _NAMESPACE_METRICS]
        return out

    def _check_known(self, group_resource: str, metric: str) -> None:
        known: dict[str, frozenset[str]] = {
            PODS: frozenset(_POD_METRICS),
            DEPLOYMENTS: frozenset(_DECISION_METRICS),
            NAMESPACES: frozenset(_NAMESPACE_METRICS),
        }
        if metric not in known.get(group_resource, frozenset()):
            raise MetricNotFoundError.for_resource(group_resource, metric)

    def get_metric_by_name(
        self, namespace: str, group_resource: str, name: str, metric: str, metric_selector: Selector
    ) -> CustomMetricValue:
        """The metric for one named object (`namespace` is "" for the namespace pseudo-object)."""
        self._check_known(group_resource, metric)
        if group_resource == NAMESPACES:
            return self._namespace_value(name, metric, metric_selector)
        found = [
            v
            for v in self._values(namespace, group_resource, metric, metric_selector, None)
            if v.described_object.name == name
        ]
        if not found:
            if metric_selector.empty:
                raise MetricNotFoundError.for_object(group_resource, metric, name)
            raise MetricNotFoundError.for_selector(group_resource, metric, name, metric_selector)
        return found[0]

    def get_metric_by_selector(
        self,
        namespace: str,
        group_resource: str,
        selector: Selector,
        metric: str,
        metric_selector: Selector,
    ) -> list[CustomMetricValue]:
        """All objects of `group_resource` in `namespace` matching `selector` (404 when none)."""
        self._check_known(group_resource, metric)
        if group_resource == NAMESPACES:
            raise MetricNotFoundError.for_resource(group_resource, metric)  # cluster-scoped only by name
        found = list(self._values(namespace, group_resource, metric, metric_selector, selector))
        if not found:
            raise MetricNotFoundError.for_selector(group_resource, metric, "*", selector)
        return found

    def _values(
        self,
        namespace: str,
        group_resource: str,
        metric: str,
        metric_selector: Selector,
        selector: Selector | None,
    ) -> Iterable[CustomMetricValue]:
        if group_resource == PODS:
            read_pod = _POD_METRICS[metric]
            for prow in self._fresh_pods(namespace, selector):
                value = read_pod(prow.pod)
                if value is None:
                    continue
                if not metric_selector.empty and not metric_selector.matches(prow.series_labels()):
                    continue
                ref = ObjectRef("Pod", "v1", prow.pod.pod, namespace)
                yield CustomMetricValue(ref, metric, prow.pod.time_s, self.window_s, value)
        else:  # deployments.apps
            read_decision = _DECISION_METRICS[metric]
            for row in self._fresh_decisions(namespace):
                value = read_decision(row.decision)
                if value is None:
                    continue
                if selector is not None and not selector.matches(row.record.labels):
                    continue
                if not metric_selector.matches(row.labels):
                    continue
                ref = ObjectRef("Deployment", "apps/v1", row.record.target.deployment, namespace)
                yield CustomMetricValue(ref, metric, row.decision.time_s, self.window_s, value)

    def _namespace_value(self, namespace: str, metric: str, metric_selector: Selector) -> CustomMetricValue:
        read = _DECISION_METRICS[metric]
        total = 0.0
        newest_s: float | None = None
        for row in self._fresh_decisions(namespace, narrow_by=metric_selector):
            value = read(row.decision)
            if value is None or not metric_selector.matches(row.labels):
                continue
            total += value
            t_s = row.decision.time_s
            newest_s = t_s if newest_s is None else max(newest_s, t_s)
        if newest_s is None:
            if metric_selector.empty:
                raise MetricNotFoundError.for_object(NAMESPACES, metric, namespace)
            raise MetricNotFoundError.for_selector(NAMESPACES, metric, namespace, metric_selector)
        ref = ObjectRef("Namespace", "v1", namespace)
        return CustomMetricValue(ref, metric, newest_s, self.window_s, total)

    # ---------------------------------------------------------- external metrics
    def list_all_external_metrics(self) -> list[str]:
        return list(_DECISION_METRICS)

    def get_external_metric(self, namespace: str, metric_selector: Selector, metric: str) -> list[ExternalMetricValue]:
        """One series per fresh target in `namespace` whose labels match (404 when none)."""
        read = _DECISION_METRICS.get(metric)
        if read is None:
            raise MetricNotFoundError.external(metric)
        out: list[ExternalMetricValue] = []
        for row in self._fresh_decisions(namespace, narrow_by=metric_selector):
            value = read(row.decision)
            if value is None or not metric_selector.matches(row.labels):
                continue
            out.append(ExternalMetricValue(metric, dict(row.labels), row.decision.time_s, self.window_s, value))
        if not out:
            raise MetricNotFoundError.external(metric)
        return out
