"""The daemon installed and running in the e2e cluster in `mode: hpa`, with pods and load (a fixture's body).

`HpaStack.start()` applies the shipped manifests (daemonproc.install_daemon), the example's
actuator Role for the workload namespace, a TF Serving Deployment and its ServingAutoscaler
object; plays the kubelet with emulator replicas; sends load; starts one daemon process; and
waits until the real aggregator serves the daemon's decision. Tests then attach HPAs to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controlplane import ControlPlane, free_port
from daemonproc import DaemonProc, Installed, apiservice_available, install_daemon, workload_access
from e2eworkload import autoscaler_object, capacity_rps, deployment, replica_config
from kubeapi import Kube, wait_for
from standins import EmulatorKubelet, LoopThread, SteppedLoad

NS, NAME = "serving", "resnet50"  # the example's names, so its HPA and Role apply as shipped
EXTERNAL_METRIC = "tfserving_autoscaler_desired_replicas"
LOW_LOAD, HIGH_LOAD = 0.4, 3.0  # × one replica's capacity at the SLO


def quantity(q: str) -> float:
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


class HpaStack:
    def __init__(
        self, kube: Kube, cp: ControlPlane, workdir: Path, ns: str = NS, name: str = NAME, mode: str = "hpa"
    ) -> None:
        self.kube, self.cp, self.workdir = kube, cp, workdir
        self.ns, self.name = ns, name
        self.rest_port = free_port()
        self.cr: dict[str, Any] = autoscaler_object(ns, name, self.rest_port, mode=mode)
        self.cap_rps = capacity_rps(self.cr)
        self.loop: LoopThread | None = None
        self.daemon: DaemonProc | None = None
        self.installed: Installed | None = None

    def start(self, *, daemon: bool = True) -> HpaStack:
        kube, ns, name = self.kube, self.ns, self.name
        self.installed = install_daemon(kube, self.workdir / "install")
        kube.create_namespace(ns)
        kube.apply(workload_access(ns, name))
        kube.apply([deployment(ns, name), self.cr])
        self.loop = LoopThread()
        self.kubelet = EmulatorKubelet(kube.api_client, ns, f"app={name}", replica_config(self.cr), self.rest_port)
        self.load = SteppedLoad(self.kubelet, "resnet", rate_rps=LOW_LOAD * self.cap_rps, seed=15)
        self.loop.spawn(self.kubelet.run(self.loop.stop_event))
        self.loop.spawn(self.load.run(self.loop.stop_event))
        if not daemon:
            return self
        self.daemon = DaemonProc(self.installed, self.workdir, "daemon-a", "--period-s", "1")
        wait_for(
            "the external metrics APIService to become Available",
            lambda: apiservice_available(kube, "v1beta1.external.metrics.k8s.io"),
            timeout_s=120,
        )
        wait_for("a decision published through the aggregator", self.published, timeout_s=120)
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        if self.loop is not None:
            self.loop.close()

    def set_load(self, share_of_capacity: float) -> None:
        self.load.rate_rps = share_of_capacity * self.cap_rps

    def published(self) -> int | None:
        """The decision as the HPA reads it: the External metric through the aggregator (as admin)."""
        doc = self.cp.get_json(
            f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{self.ns}/{EXTERNAL_METRIC}"
            f"?labelSelector=namespace%3D{self.ns}%2Cdeployment%3D{self.name}"
        )
        items = (doc or {}).get("items") or []
        return round(quantity(items[0]["value"])) if items else None
