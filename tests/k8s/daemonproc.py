"""Installing the daemon into the e2e cluster the way manifests/ ships it, and running it as a process.

`install_daemon()` applies the shipped CRD, namespace, ServiceAccount and RBAC
(manifests/base), the metrics-API component (APIServices + hpa-reader) and the example's
per-namespace actuator Role (manifests/examples/tfserving/autoscaler-access.yaml). Two things
differ from a cluster and are the loopback stand-ins for kube-proxy: the `tfs-autoscaler`
Service is `type: ExternalName` → `localhost`, and the APIServices' `service.port` is the port
the daemon process listens on (the aggregator then dials localhost:<port>). The APIServices'
`caBundle` is the CA that signed the daemon's serving certificate for
`tfs-autoscaler.tfs-autoscaler.svc`, as the README's install guide generates it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from controlplane import Pem, free_port, issue_cert, make_ca
from kubeapi import MANIFESTS, ROOT, Kube, load_yaml, wait_for

DAEMON_NS = "tfs-autoscaler"
DAEMON_SA = "tfs-autoscaler"
LEASE_NAME = "tfs-autoscaler-leader"  # the name the shipped leader Role grants (manifests/base/rbac.yaml)
SERVICE_DNS = f"tfs-autoscaler.{DAEMON_NS}.svc"


@dataclass(frozen=True)
class Installed:
    adapter_port: int
    adapter_ca: Pem
    adapter_cert: Pem
    sa_kubeconfig: Path


def workload_access(namespace: str, deployment: str) -> list[dict[str, Any]]:
    """manifests/examples/tfserving/autoscaler-access.yaml for another namespace/Deployment name."""
    docs = load_yaml(MANIFESTS / "examples" / "tfserving" / "autoscaler-access.yaml")
    text = yaml.safe_dump_all(docs).replace("namespace: serving", f"namespace: {namespace}")
    out = list(yaml.safe_load_all(text.replace("resnet50", deployment)))
    return out


def install_daemon(kube: Kube, workdir: Path) -> Installed:
    """Apply the shipped manifests (once per cluster; a second call re-applies them)."""
    kube.apply(load_yaml(MANIFESTS / "base" / "crd.yaml"))
    kube.apply(load_yaml(MANIFESTS / "base" / "namespace.yaml"))
    kube.apply(load_yaml(MANIFESTS / "base" / "serviceaccount.yaml"))
    kube.apply(load_yaml(MANIFESTS / "base" / "rbac.yaml"))
    kube.apply(load_yaml(MANIFESTS / "components" / "metrics-api" / "hpa-reader.yaml"))
    workdir.mkdir(parents=True, exist_ok=True)
    ca = make_ca(workdir, "adapter-ca")
    cert = issue_cert(ca, workdir, "adapter", cn=SERVICE_DNS, hosts=(SERVICE_DNS, "localhost", "127.0.0.1"))
    port = free_port()
    kube.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "tfs-autoscaler", "namespace": DAEMON_NS},
                "spec": {
                    "type": "ExternalName",
                    "externalName": "localhost",
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                },
            }
        ]
    )
    apiservices = load_yaml(MANIFESTS / "components" / "metrics-api" / "apiservices.yaml")
    for doc in apiservices:
        doc["spec"]["caBundle"] = ca.b64_cert()
        doc["spec"]["service"]["port"] = port
    kube.apply(apiservices)
    wait_for(
        "the CRD to be established",
        lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (
                (
                    kube.get(
                        "apiextensions.k8s.io/v1",
                        "CustomResourceDefinition",
                        "servingautoscalers.autoscaling.tfserving.dev",
                    )
                    or {}
                )
                .get("status", {})
                .get("conditions", [])
            )
        ),
    )
    sa_kubeconfig = kube.sa_kubeconfig(DAEMON_NS, DAEMON_SA, workdir / "daemon.kubeconfig")
    return Installed(port, ca, cert, sa_kubeconfig)


def apiservice_available(kube: Kube, name: str) -> bool:
    obj = kube.get("apiregistration.k8s.io/v1", "APIService", name) or {}
    return any(c["type"] == "Available" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", []))


class DaemonProc:
    """`python -m autoscaler run` with the ServiceAccount's token (not admin), in its own process group."""

    def __init__(self, installed: Installed, workdir: Path, identity: str, *extra: str, adapter: bool = True) -> None:
        self.identity = identity
        self.metrics_port = free_port()
        args = [
            "run",
            "--kubeconfig", str(installed.sa_kubeconfig),
            "--direct-scrape",
            "--metrics-host", "127.0.0.1", "--metrics-port", str(self.metrics_port),
            "--leader-elect", "--lease-namespace", DAEMON_NS, "--lease-name", LEASE_NAME, "--identity", identity,
            "--spec-poll-s", "1",
        ]  # fmt: skip
        if adapter:
            args += [
                "--adapter-host", "127.0.0.1", "--adapter-port", str(installed.adapter_port),
                "--adapter-cert", str(installed.adapter_cert.cert), "--adapter-key", str(installed.adapter_cert.key),
            ]  # fmt: skip
        self.stderr_path = workdir / f"daemon-{identity}.log"
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autoscaler", *args, *extra],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self) -> int:
        """SIGTERM (the daemon releases its Lease and exits 0), SIGKILL after 20 s."""
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(10)
        return int(self.proc.returncode)

    def __enter__(self) -> DaemonProc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                return str(r.read().decode())
        except (urllib.error.URLError, OSError):
            return ""

    def is_leader(self) -> bool:
        return "tfserving_autoscaler_leader 1.0" in self.metrics()

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def tail(self, n: int = 3000) -> str:
        return self.stderr_path.read_text(errors="replace")[-n:]
