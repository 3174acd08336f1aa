"""`tfserving-autoscaler run` as a process: kubeconfig → kmock's emulator, specs from a directory.

Prometheus is down (nothing listens on its port), which the daemon must treat as an error, never
as zero load: it holds and never patches replicas, yet leads, serves /metrics and logs JSON. On
SIGTERM it finishes the tick, releases the Lease and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from test_runtime_kubeemu import DEPLOYMENTS, EVENTS, HPAS, LEASES, VersionedEmulator, deployment

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.kmock(cls=VersionedEmulator)

SPEC = """\
apiVersion: autoscaling.tfserving.dev/v1alpha1
kind: ServingAutoscaler
metadata: {name: resnet, namespace: ml}
spec:
  target: {deployment: resnet, modelName: resnet}
  slo: {latencyMs: 100}
  maxReplicas: 10
  mode: direct
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(60)
async def test_run_command_leads_holds_on_missing_metrics_and_stops_cleanly(
    kmock: VersionedEmulator, tmp_path: Path
) -> None:
    kmock.declare(HPAS, EVENTS)
    kmock.seed(DEPLOYMENTS, "ml", "resnet", deployment(replicas=2))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "kmock", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "resnet.yaml").write_text(SPEC)
    port, adapter_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "autoscaler",
        "run",
        "--spec-dir",
        str(specs),
        "--prometheus-url",
        f"http://127.0.0.1:{free_port()}",
        "--kubeconfig",
        str(kubeconfig),
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(port),
        "--leader-elect",
        "--lease-namespace",
        "ops",
        "--identity",
        "daemon-1",
        "--period-s",
        "0.5",
        "--adapter-port",
        str(adapter_port),
        "--adapter-insecure",
        "--adapter-host",
        "127.0.0.1",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    text = ""
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(150):
                await asyncio.sleep(0.2)
                if proc.returncode is not None:  # exited early: show why
                    _, err = await proc.communicate()
                    pytest.fail(err.decode()[-2000:])
                try:
                    async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                        text = await resp.text()
                except aiohttp.ClientError:
                    continue
                if "tfserving_autoscaler_leader 1.0" in text and "tfserving_autoscaler_decision_valid{" in text:
                    break
            async with http.get(f"http://127.0.0.1:{adapter_port}/apis/external.metrics.k8s.io/v1beta1") as resp:
                assert resp.status == 200  # the metrics adapter is mounted by the run command
        assert "tfserving_autoscaler_leader 1.0" in text
        assert 'status="error"' in text  # the source failure is counted, per signal
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0
    logs = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    decisions = [x for x in logs if x.get("msg") == "decision"]
    assert decisions and all(d["target"] == "ml/resnet" for d in decisions)
    assert all(d["decision"]["desired_replicas"] >= 2 for d in decisions if d["decision"]["valid"])
    assert any("CRD not installed" in x["msg"] for x in logs)
    dep = kmock.read_obj(DEPLOYMENTS, "ml", "resnet")
    assert dep is not None and dep["spec"]["replicas"] == 2  # no data: never scaled down
    assert not [r for r in kmock.seen if r.method == "PATCH" and r.subresource == "scale"]
    lease = kmock.read_obj(LEASES, "ops", "tfserving-autoscaler")
    assert lease is not None and not lease["spec"].get("holderIdentity")  # released on SIGTERM
