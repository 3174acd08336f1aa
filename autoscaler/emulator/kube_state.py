"""A tiny kube-state-metrics stand-in: Deployment replica counts and pod timestamps.

Owns the Kubernetes-side series the Prometheus source reads (names and labels as
kube-state-metrics v2 exports them): `kube_deployment_spec_replicas`,
`kube_deployment_status_replicas`, `kube_deployment_status_replicas_ready`,
`kube_deployment_status_replicas_available`, `kube_deployment_status_replicas_unavailable`
(labels `namespace`, `deployment`), and `kube_pod_created` / `kube_pod_status_ready_time`
(labels `namespace`, `pod`, `uid`; Unix seconds). Tests and the demo set the values; Prometheus
scrapes it with `honor_labels: true` like the real exporter behind a ServiceMonitor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass
class DeploymentState:
    spec_replicas: int
    status_replicas: int
    ready_replicas: int


@dataclass
class PodState:
    created_s: float
    ready_time_s: float | None = None


class _Collector(Collector):
    def __init__(self, ksm: FakeKubeStateMetrics) -> None:
        self._ksm = ksm

    def collect(self) -> Iterable[Metric]:
        dl = ["namespace", "deployment"]
        fams = {
            name: GaugeMetricFamily(name, name, labels=dl)
            for name in (
                "kube_deployment_spec_replicas",
                "kube_deployment_status_replicas",
                "kube_deployment_status_replicas_ready",
                "kube_deployment_status_replicas_available",
                "kube_deployment_status_replicas_unavailable",
            )
        }
        for (ns, dep), d in sorted(self._ksm.deployments.items()):
            fams["kube_deployment_spec_replicas"].add_metric([ns, dep], d.spec_replicas)
            fams["kube_deployment_status_replicas"].add_metric([ns, dep], d.status_replicas)
            fams["kube_deployment_status_replicas_ready"].add_metric([ns, dep], d.ready_replicas)
            fams["kube_deployment_status_replicas_available"].add_metric([ns, dep], d.ready_replicas)
            unavailable = max(0, d.spec_replicas - d.ready_replicas)
            fams["kube_deployment_status_replicas_unavailable"].add_metric([ns, dep], unavailable)
        yield from fams.values()
        pl = ["namespace", "pod", "uid"]
        created = GaugeMetricFamily("kube_pod_created", "Unix creation timestamp", labels=pl)
        ready = GaugeMetricFamily("kube_pod_status_ready_time", "Readiness achieved time", labels=pl)
        for (ns, pod), p in sorted(self._ksm.pods.items()):
            uid = hashlib.md5(f"{ns}/{pod}".encode()).hexdigest()
            created.add_metric([ns, pod, uid], p.created_s)
            if p.ready_time_s is not None:
                ready.add_metric([ns, pod, uid], p.ready_time_s)
        yield created
        yield ready


class FakeKubeStateMetrics:
    """Serves `/metrics`; mutate `deployments` and `pods` (or use the setters) at any time."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self._want_port = host, port
        self.deployments: dict[tuple[str, str], DeploymentState] = {}
        self.pods: dict[tuple[str, str], PodState] = {}
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))
        self._runner: web.AppRunner | None = None
        self.port = 0

    def set_deployment(self, namespace: str, deployment: str, *, spec: int, status: int, ready: int) -> None:
        self.deployments[(namespace, deployment)] = DeploymentState(spec, status, ready)

    def set_pod(self, namespace: str, pod: str, *, created_s: float, ready_time_s: float | None) -> None:
        self.pods[(namespace, pod)] = PodState(created_s, ready_time_s)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> FakeKubeStateMetrics:
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self._want_port).start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
