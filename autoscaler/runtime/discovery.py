"""Direct-scrape fallback for clusters without Prometheus: find each target's TF Serving pods.

`PodDiscoveringSource` wraps the `ScrapeSource`: before every observation (already in a worker
thread) it reads the Deployment's `spec.selector.matchLabels`, lists the pods with that selector
and points the scraper at `http://<podIP>:<restPort>` of every Running pod that has an IP. Pods
that are gone are forgotten by the scraper. `PodLister` is that listing alone (with each pod's
creation time and gRPC address), shared with the model-status poller (`runtime/model_status.py`).
Lives in the runtime because it needs the Kubernetes client; the scraper itself (sources/) stays
client-free.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from kubernetes import client as k8s

from autoscaler.core.store import PodSignals
from autoscaler.core.types import Observation, TargetKey
from autoscaler.sources.scrape import ScrapeSource
from autoscaler.spec.types import ServingAutoscalerSpec

log = logging.getLogger(__name__)


def _selector(match_labels: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((match_labels or {}).items()))


@dataclass(frozen=True)
class PodRef:
    """One Running TF Serving pod of a target."""

    url: str  # REST base URL, http://<podIP>:<restPort>
    grpc_address: str  # <podIP>:<grpcPort>
    created_s: float | None  # metadata.creationTimestamp, Unix seconds


class PodLister:
    """The Running pods (with an IP, not terminating) of a target's Deployment, via its matchLabels."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self._apps = k8s.AppsV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)

    def pods(self, spec: ServingAutoscalerSpec) -> dict[str, PodRef]:
        """One target: read its Deployment, list the pods of its selector (two API calls)."""
        t = spec.target
        dep = self._apps.read_namespaced_deployment(t.deployment, t.namespace, _request_timeout=10.0)
        labels = dep.spec.selector.match_labels if dep.spec is not None and dep.spec.selector else None
        selector = _selector(labels)
        if not selector:
            raise ValueError(f"{t.namespace}/{t.deployment}: Deployment has no matchLabels selector")
        pods = self._core.list_namespaced_pod(t.namespace, label_selector=selector, _request_timeout=10.0)
        return _running(pods.items or (), spec, labels or {})

    def pods_for(self, specs: Sequence[ServingAutoscalerSpec]) -> dict[TargetKey, dict[str, PodRef] | str]:
        """Many targets with two API calls per namespace (list Deployments, list pods), matched
        locally; a target whose Deployment is missing or has no matchLabels gets the reason."""
        out: dict[TargetKey, dict[str, PodRef] | str] = {}
        by_ns: dict[str, list[ServingAutoscalerSpec]] = {}
        for spec in specs:
            by_ns.setdefault(spec.target.namespace, []).append(spec)
        for ns, group in sorted(by_ns.items()):
            try:
                deps = self._apps.list_namespaced_deployment(ns, _request_timeout=10.0)
                pods = self._core.list_namespaced_pod(ns, _request_timeout=10.0).items or ()
            except Exception as exc:
                for spec in group:
                    out[TargetKey(ns, spec.target.deployment)] = f"listing namespace {ns} failed: {str(exc)[:200]}"
                continue
            selectors = {
                str(d.metadata.name): d.spec.selector.match_labels
                for d in deps.items or ()
                if d.metadata is not None and d.spec is not None and d.spec.selector is not None
            }
            for spec in group:
                key = TargetKey(ns, spec.target.deployment)
                labels = selectors.get(spec.target.deployment)
                out[key] = (
                    _running(pods, spec, labels)
                    if labels
                    else f"{key}: Deployment missing or without a matchLabels selector"
                )
        return out


def _running(pods: Sequence[k8s.V1Pod], spec: ServingAutoscalerSpec, match: dict[str, str]) -> dict[str, PodRef]:
    """The Running, addressed, not terminating pods whose labels include `match`."""
    t = spec.target
    out: dict[str, PodRef] = {}
    for pod in pods:
        st, meta = pod.status, pod.metadata
        if st is None or meta is None or st.phase != "Running" or not st.pod_ip or meta.deletion_timestamp:
            continue
        labels = meta.labels or {}
        if any(labels.get(k) != v for k, v in match.items()):
            continue
        created = meta.creation_timestamp.timestamp() if meta.creation_timestamp is not None else None
        out[str(meta.name)] = PodRef(f"http://{st.pod_ip}:{t.rest_port}", f"{st.pod_ip}:{t.grpc_port}", created)
    return out


class PodDiscoveringSource:
    """MetricSource + PodMetricSource: pod discovery via the API server, then a direct scrape."""

    def __init__(self, api_client: k8s.ApiClient, scrape: ScrapeSource) -> None:
        self.lister = PodLister(api_client)
        self.scrape = scrape
        self.last_pods: dict[TargetKey, dict[str, PodRef]] = {}  # the last successful listing per target

    def endpoints(self, spec: ServingAutoscalerSpec) -> dict[str, str]:
        return {name: ref.url for name, ref in self.lister.pods(spec).items()}

    def observe(self, targets: Sequence[ServingAutoscalerSpec], now_s: float) -> dict[TargetKey, Observation]:
        for spec in targets:
            key = TargetKey(spec.target.namespace, spec.target.deployment)
            try:
                pods = self.lister.pods(spec)
                self.last_pods[key] = pods
                self.scrape.set_endpoints(key, {name: ref.url for name, ref in pods.items()})
            except Exception as exc:  # keep the last known pods; the scrape reports what fails
                log.warning("pod discovery failed", extra={"target": str(key), "error": str(exc)[:200]})
        return self.scrape.observe(targets, now_s)

    def observe_pods(
        self, targets: Sequence[ServingAutoscalerSpec], now_s: float
    ) -> dict[TargetKey, tuple[PodSignals, ...]]:
        return self.scrape.observe_pods(targets, now_s)

    def close(self) -> None:
        self.scrape.close()
