"""A fake NVIDIA DCGM exporter for emulated replicas: GPU utilization driven by batch busy time.

Owns the GPU metrics the autoscaler's sources read (NVIDIA/dcgm-exporter `etc/default-counters.csv`):
`DCGM_FI_DEV_GPU_UTIL` (gauge, percent 0–100) and `DCGM_FI_PROF_GR_ENGINE_ACTIVE` (gauge, ratio 0–1)
with the real exporter's label set (`gpu`, `UUID`, `pci_bus_id`, `device`, `modelName`, `Hostname` or
`hostname`, `DCGM_FI_DRIVER_VERSION`, `container`, `namespace`, `pod`), one GPU per pod as with
whole-GPU allocation. Values are each replica's busy fraction over the last sample period, like DCGM's
sampled utilization; the sampling clock can be injected (`now_s`) and background sampling turned off
(`sample_period_s=None`), so tests compute utilization from known instants instead of the machine's
scheduling. Served by prometheus_client's `CollectorRegistry` on its own port; Prometheus must scrape it
with `honor_labels: true`, as with the real exporter.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
GR_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"


class GpuPod(Protocol):
    """What the exporter needs from an emulated replica."""

    @property
    def pod(self) -> str: ...

    @property
    def namespace(self) -> str: ...

    def busy_seconds(self) -> float: ...


class _Collector(Collector):
    def __init__(self, exporter: FakeDcgmExporter) -> None:
        self._exp = exporter

    def collect(self) -> Iterable[Metric]:
        e = self._exp
        names = ["gpu", "UUID", "pci_bus_id", "device", "modelName", e.hostname_label]
        names += ["DCGM_FI_DRIVER_VERSION", "container", "namespace", "pod"]
        util = GaugeMetricFamily(GPU_UTIL, "GPU utilization (in %).", labels=names)
        active = GaugeMetricFamily(GR_ENGINE_ACTIVE, "Ratio of time the graphics engine is active.", labels=names)
        for p in e.pods:
            frac = e.utilization.get(p.pod, 0.0)
            digest = hashlib.sha1(f"{p.namespace}/{p.pod}".encode()).hexdigest()
            uuid = f"GPU-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
            labels = ["0", uuid, f"00000000:{int(digest[:2], 16):02X}:00.0", "nvidia0", e.gpu_model, e.node]
            labels += [e.driver_version, e.container, p.namespace, p.pod]
            util.add_metric(labels, float(round(frac * 100.0)))  # DCGM reports whole percent
            if e.profiling:
                active.add_metric(labels, frac)
        yield util
        if e.profiling:
            yield active


class FakeDcgmExporter:
    """Serves `/metrics` with one GPU per emulated pod; `pods` may be replaced at runtime."""

    def __init__(
        self,
        pods: Sequence[GpuPod] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sample_period_s: float | None = 1.0,  # None: sample only when `sample()` is called
        profiling: bool = True,  # export DCGM_FI_PROF_GR_ENGINE_ACTIVE (DCP, datacenter GPUs)
        hostname_label: str = "Hostname",  # older images; newer ones use "hostname"
        gpu_model: str = "Tesla T4",
        node: str = "emulated-node-0",
        container: str = "tfserving",
        driver_version: str = "550.54.15",
        now_s: Callable[[], float] | None = None,  # default: the event loop's monotonic clock
    ) -> None:
        self.pods: list[GpuPod] = list(pods)
        self.host, self._want_port = host, port
        self.sample_period_s = sample_period_s
        self.profiling = profiling
        self.hostname_label = hostname_label
        self.gpu_model, self.node, self.container = gpu_model, node, container
        self.driver_version = driver_version
        self._now_s = now_s
        self.utilization: dict[str, float] = {}  # pod -> busy fraction over the last period
        self._last: dict[str, tuple[float, float]] = {}  # pod -> (time_s, busy_s)
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))
        self._runner: web.AppRunner | None = None
        self._sampler: asyncio.Task[None] | None = None
        self.port = 0

    def set_pods(self, pods: Sequence[GpuPod]) -> None:
        self.pods = list(pods)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def sample(self) -> None:
        """Update each pod's utilization from its busy time since the previous sample."""
        now = self._now_s() if self._now_s is not None else asyncio.get_running_loop().time()
        live = {p.pod for p in self.pods}
        for p in self.pods:
            busy = p.busy_seconds()
            prev = self._last.get(p.pod)
            if prev is not None and now > prev[0]:
                self.utilization[p.pod] = min(1.0, max(0.0, (busy - prev[1]) / (now - prev[0])))
            self._last[p.pod] = (now, busy)
        for gone in set(self._last) - live:
            self._last.pop(gone, None)
            self.utilization.pop(gone, None)

    async def _sample_loop(self) -> None:
        assert self.sample_period_s is not None
        while True:
            self.sample()
            await asyncio.sleep(self.sample_period_s)

    async def _handle(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> FakeDcgmExporter:
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self._want_port).start()
        self.port = int(self._runner.addresses[0][1])
        if self.sample_period_s is not None:
            self._sampler = asyncio.create_task(self._sample_loop())
        return self

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
