"""Every Grafana panel's PromQL runs against a real Prometheus fed by the emulator and the daemon.

Two TF Serving emulator replicas serve traffic, a fake DCGM exporter and kube-state-metrics
describe them, and the real control loop (PrometheusSource → decide → DecisionStore) serves its
/metrics; one real Prometheus scrapes all of it. Then each dashboard query (and variable) is
executed with the dashboard's variables filled in: none may error, and every key panel must
return series, so a renamed metric or label breaks this test instead of a user's dashboard.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from autoscaler.actuators.base import ActuationResult, ReplicaStatus, ScaleOutcome
from autoscaler.core.store import DecisionStore
from autoscaler.core.types import Decision
from autoscaler.emulator import (
    EmulatorReplica,
    FakeDcgmExporter,
    FakeKubeStateMetrics,
    ReplicaConfig,
    poisson_arrivals,
    replay,
)
from autoscaler.generate.grafana import dashboard, panels
from autoscaler.runtime.clock import WallClock
from autoscaler.runtime.loop import ControlLoop
from autoscaler.runtime.telemetry import Telemetry, serve
from autoscaler.sources.prometheus import PrometheusSource
from autoscaler.spec.types import SLO, BatchingParams, Mode, Provisioning, ServingAutoscalerSpec, TargetRef

if TYPE_CHECKING:
    from tests.fixtures.prometheus import PrometheusServer

pytestmark = [pytest.mark.prometheus]

NS, DEPLOY, MODEL = "t-dash", "resnet50", "resnet"
PODS = ["resnet50-7c9d8f6b5-aaaaa", "resnet50-7c9d8f6b5-bbbbb"]
SPEC = ServingAutoscalerSpec(
    name=DEPLOY,
    target=TargetRef(NS, DEPLOY, MODEL),
    slo=SLO(latency_quantile=0.99, latency_ms=200.0),
    max_replicas=10,
    mode=Mode.HPA,
    provisioning=Provisioning(decision_period_s=2.0, burst_window_s=4.0),
)


class FixedCluster:
    """The cluster side of the Actuator protocol for a test: two ready pods, hpa mode publishes only."""

    def read_replicas(self, spec: ServingAutoscalerSpec) -> ReplicaStatus:
        return ReplicaStatus(current_replicas=2, ready_replicas=2, pending_replicas=0, pod_labels={"app": DEPLOY})

    def apply(self, spec: ServingAutoscalerSpec, decision: Decision) -> ActuationResult:
        return ActuationResult(decision.target, spec.mode, ScaleOutcome.PUBLISHED, message="published")


@dataclass
class Fed:
    prom: PrometheusServer
    store: DecisionStore


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fed(prometheus: PrometheusServer) -> AsyncIterator[Fed]:
    prom = prometheus
    params = BatchingParams(max_batch_size=8, batch_timeout_us=2_000, num_batch_threads=2)
    reps = [
        await EmulatorReplica(
            ReplicaConfig(namespace=NS, pod=p, model_name=MODEL, batching=params, time_scale=4.0)
        ).start()
        for p in PODS
    ]
    dcgm = await FakeDcgmExporter(reps, sample_period_s=1.0).start()
    ksm = await FakeKubeStateMetrics().start()
    ksm.set_deployment(NS, DEPLOY, spec=2, status=2, ready=2)
    now = time.time()
    for p in PODS:
        ksm.set_pod(NS, p, created_s=now - 120, ready_time_s=now - 60)
    store = DecisionStore()
    telemetry = Telemetry(store)
    telemetry.leader.set(1)
    runner, port = await serve(telemetry, "127.0.0.1", 0)
    src = PrometheusSource(prom.url, timeout_s=5.0, rate_window_s=6.0, scrape_interval_s=1.0)
    loop = ControlLoop(clock=WallClock(), source=src, actuator=FixedCluster(), telemetry=telemetry, period_s=2.0)
    loop.set_specs([SPEC])
    prom.set_targets("tfserving", [(f"127.0.0.1:{r.port}", {"namespace": NS, "pod": r.pod}) for r in reps])
    prom.set_targets("dcgm", [(f"127.0.0.1:{dcgm.port}", {})])
    prom.set_targets("ksm", [(f"127.0.0.1:{ksm.port}", {})])
    prom.set_targets("tfs-autoscaler", [(f"127.0.0.1:{port}", {"namespace": "tfs-autoscaler", "pod": "tfs-0"})])
    try:
        await asyncio.gather(*(r.wait_ready(2) for r in reps))
        hostports = [f"127.0.0.1:{p}" for p in (*(r.port for r in reps), dcgm.port, ksm.port, port)]
        await asyncio.to_thread(prom.wait_up, hostports)
        load = asyncio.create_task(replay(poisson_arrivals(60.0, 20.0, seed=5), [r.url for r in reps], model=MODEL))
        for _ in range(7):  # ~14 s of ticks while the load runs
            await asyncio.sleep(2.0)
            await loop.tick()
        await asyncio.sleep(2.5)  # one more scrape of the daemon's /metrics
        load.cancel()
        yield Fed(prom, store)
    finally:
        src.close()
        await runner.cleanup()
        for r in reps:
            await r.stop()
        await dcgm.stop()
        await ksm.stop()
        for job in ("tfserving", "dcgm", "ksm", "tfs-autoscaler"):
            prom.set_targets(job, [])


VARS = {"$namespace": NS, "$target": DEPLOY, "$model": MODEL, "${datasource}": "prometheus"}


def fill(expr: str) -> str:
    for k, v in VARS.items():
        expr = expr.replace(k, v)
    return expr


def run_query(prom: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    """Instant query; raise with Prometheus' own error message on a bad query."""
    url = f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"query failed: {expr}\n{exc.read().decode()}") from None
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_the_daemon_decided(fed: Fed) -> None:
    (rec,) = fed.store.snapshot()
    assert rec.decision is not None and rec.decision.valid, rec.last_attempt


@pytest.mark.parametrize("panel", panels(), ids=lambda p: p.title)
def test_panel_queries_run_and_key_panels_return_series(fed: Fed, panel: Any) -> None:
    returned = {q.ref: len(run_query(fed.prom, fill(q.expr))) for q in panel.queries}
    if panel.key:
        assert any(returned.values()), f"key panel {panel.title!r} returned no series: {returned}"


def test_annotation_and_variable_queries_run(fed: Fed) -> None:
    d = dashboard()
    for a in d["annotations"]["list"]:
        run_query(fed.prom, fill(a["expr"]))
    label_values = re.compile(r"^label_values\((?P<sel>.+),\s*(?P<label>\w+)\)$")
    for var in d["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = label_values.match(var["query"]["query"])
        assert m, var
        series = run_query(fed.prom, f"group by ({m['label']}) ({fill(m['sel'])})")
        values = {s["metric"].get(m["label"]) for s in series}
        assert VARS[f"${var['name']}"] in values, (var["name"], values)
