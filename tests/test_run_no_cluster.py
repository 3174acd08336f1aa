"""`run` on a machine with no cluster configured says so in one line, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = """\
apiVersion: autoscaling.tfserving.dev/v1alpha1
kind: ServingAutoscaler
metadata: {name: resnet, namespace: ml}
spec:
  target: {deployment: resnet, modelName: resnet}
  slo: {latencyMs: 100}
  maxReplicas: 10
"""


def test_run_without_a_kubeconfig_prints_one_line(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "autoscaler", "run", "--spec", str(tmp_path / "spec.yaml"), "--no-crd"]
    res = subprocess.run(
        [*cmd, "--prometheus-url", "http://127.0.0.1:9", "--metrics-port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = (res.stdout + res.stderr).strip()
    assert res.returncode == 2, out
    assert "Traceback" not in out
    assert len(out.splitlines()) == 1, out
    assert "--kubeconfig" in out and "no Kubernetes cluster configured" in out
