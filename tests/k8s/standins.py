"""Stand-ins for what the e2e control plane lacks: a kubelet running TF Serving, and client load.

There is no kubelet or scheduler, so the real ReplicaSet controller's pods stay Pending.
`EmulatorKubelet` plays the kubelet for one namespace: for each new pod matching a selector it
starts an emulator replica (autoscaler/emulator) on its own loopback address 127.0.0.N and the
pod's REST port, then writes the pod's status through the pods/status subresource as a kubelet
does (phase Running, podIP, Ready condition). The real ReplicaSet/Deployment controllers then
count the pod ready, the daemon's direct scrape discovers and scrapes it, and when the
ReplicaSet deletes the pod (unbound pods are deleted at once) its replica is stopped.

`SteppedLoad` sends open-loop Poisson traffic at a rate the test changes, round robin over the
replicas that exist at that moment (the Service's job in a cluster).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from kubernetes import client as k8s

from autoscaler.emulator import EmulatorReplica, ReplicaConfig, poisson_arrivals, replay

log = logging.getLogger(__name__)
T = TypeVar("T")


class EmulatorKubelet:
    """Runs an emulator replica per pod of `selector` in `namespace` and reports the pod Running/Ready."""

    def __init__(
        self, api_client: k8s.ApiClient, namespace: str, selector: str, config: ReplicaConfig, rest_port: int
    ) -> None:
        self.core = k8s.CoreV1Api(api_client)
        self.namespace, self.selector = namespace, selector
        self.config, self.rest_port = config, rest_port
        self.replicas: dict[str, EmulatorReplica] = {}
        self._free_hosts = [f"127.0.0.{i}" for i in range(2, 250)]
        self._hosts: dict[str, str] = {}

    def urls(self) -> list[str]:
        return [r.url for _, r in sorted(self.replicas.items())]

    async def sync(self) -> None:
        pods = await asyncio.to_thread(
            self.core.list_namespaced_pod, self.namespace, label_selector=self.selector, _request_timeout=10
        )
        live = {p.metadata.name: p for p in pods.items if p.metadata.deletion_timestamp is None}
        for name in sorted(set(self.replicas) - set(live)):
            replica = self.replicas.pop(name)
            self._free_hosts.insert(0, self._hosts.pop(name))
            await replica.stop()
        for name, pod in sorted(live.items()):
            if name in self.replicas:
                continue
            host = self._free_hosts.pop(0)
            cfg = ReplicaConfig(
                model_name=self.config.model_name,
                batching=self.config.batching,
                profile=self.config.profile,
                host=host,
                port=self.rest_port,
                namespace=self.namespace,
                pod=name,
            )
            replica = await EmulatorReplica(cfg).start()
            self.replicas[name], self._hosts[name] = replica, host
            if pod.status is None or pod.status.phase != "Running":
                await asyncio.to_thread(self._report_running, name, host)

    def _report_running(self, name: str, ip: str) -> None:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conds = [
            {"type": t, "status": "True", "lastTransitionTime": now}
            for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ]
        body: dict[str, Any] = {
            "status": {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": now,
                "conditions": conds,
            }
        }
        self.core.patch_namespaced_pod_status(name, self.namespace, body, _request_timeout=10)

    async def run(self, stop: asyncio.Event, every_s: float = 0.5) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.sync()
                except Exception as exc:  # the API server is busy: try again next round
                    log.warning("emulator kubelet sync failed: %s", exc)
                try:
                    await asyncio.wait_for(stop.wait(), every_s)
                except TimeoutError:
                    pass
        finally:
            for replica in self.replicas.values():
                await replica.stop()
            self.replicas.clear()


class SteppedLoad:
    """Open-loop Poisson load at `rate_rps` (changeable at any time) over the kubelet's replicas."""

    def __init__(self, kubelet: EmulatorKubelet, model: str, rate_rps: float, seed: int = 0) -> None:
        self.kubelet, self.model = kubelet, model
        self.rate_rps = rate_rps
        self.seed = seed
        self.sent = self.ok = 0

    async def run(self, stop: asyncio.Event, chunk_s: float = 1.0) -> None:
        """One chunk of arrivals per `chunk_s`, each replayed in its own task (answers may be slow)."""
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        while not stop.is_set():
            if self.kubelet.urls() and self.rate_rps > 0:
                arrivals = poisson_arrivals(self.rate_rps, chunk_s, seed=self.seed + i)
                task = asyncio.create_task(self._chunk(arrivals))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            i += 1
            try:
                await asyncio.wait_for(stop.wait(), chunk_s)
            except TimeoutError:
                pass
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _chunk(self, arrivals: Any) -> None:
        res = await replay(arrivals, self.kubelet.urls, model=self.model, timeout_s=10.0)
        self.sent += res.sent
        self.ok += res.ok


class LoopThread:
    """An asyncio loop in a daemon thread: emulators and load keep running while a sync test polls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="e2e-loop", daemon=True)
        self.thread.start()
        self.stop_event: asyncio.Event = self.call(self._event())
        self._futures: list[concurrent.futures.Future[Any]] = []

    @staticmethod
    async def _event() -> asyncio.Event:
        return asyncio.Event()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._futures.append(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        for fut in self._futures:
            with contextlib.suppress(Exception):
                fut.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
