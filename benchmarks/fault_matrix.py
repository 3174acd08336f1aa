"""Fault matrix: the real control loop, actuator, Lease elector, metrics adapter and KEDA scaler
driven through Prometheus and Kubernetes faults, with honest counts per fault.

Parts, all real and on 127.0.0.1: `ControlLoop` + `PrometheusSource` against a scripted Prometheus
(aiohttp) whose answers turn bad during the fault phase; `KubernetesActuator` + `LeaseElector`
against kmock's emulator (the strict one from tests/test_runtime_kubeemu.py, with resourceVersion,
409s and the scale subresource), whose requests a hook fails during the fault phase; the metrics
adapter (`adapter.metrics_api.serve`) and the KEDA scaler (`adapter.keda_scaler`) serving the
loop's DecisionStore, read once per tick. Time for decisions is a ManualClock (one decision
period per tick); the Kubernetes client's timeouts and backoff sleeps are real.

Per fault: `warmup` healthy ticks (the target scales up to carry the load), then `ticks` ticks
under the fault. Prometheus faults keep the true load unchanged (any scale-down is unsafe);
Kubernetes faults double it, so every fault tick tries to write through the failing API. Spec
faults replace the spec file the daemon's SpecWatcher polls (billion laughs, 5,000-deep nesting,
a 5,000-digit number, a binary file, duplicate keys, a 2 MiB file), or add a tenant's custom
resource in another namespace aimed at our target: the loop must keep serving the last good spec.
Hostile-client rows (benchmarks/fault_hostile.py) attack the adapter's TLS + requestheader edge and
the KEDA scaler's gRPC + client-cert edge with a bounded number of requests each (`ticks` counts
requests, `max_tick_s` the slowest answer); the leader race runs two daemons on one Lease (`ticks`
counts ticks, writes by the non-holder land in `writes_after_lease_loss`).
Columns, each counted, never inferred:
  ticks, crashes (exceptions out of tick()), tracebacks (log records carrying exc_info),
  unsafe_scale_downs (replica decreases under a Prometheus or spec fault, whose true load is unchanged),
  out_of_bounds (Deployment replicas outside [minReplicas, maxReplicas] after any tick),
  writes_after_lease_loss (scale/Deployment PATCHes sent by a replica after its lease ended),
  cross_namespace (writes to any namespace but the target's and the Lease's, plus fault ticks on
    which the loop ran any spec but the operator's own for the target),
  http_5xx (adapter answers >= 500 and KEDA INTERNAL/UNKNOWN), max_tick_s (wall time),
  bad_answers (a hostile request accepted, refused the wrong way, or answered after
    fault_hostile.ANSWER_BOUND_S; a leader-race tick on which both daemons held leadership).
Every "bad" column must read 0.

    PYTHONPATH=. .venv/bin/python benchmarks/fault_matrix.py [--ticks 4] [--only prom-nan,k8s-409]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import kmock
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import fault_hostile  # noqa: E402 (sibling modules; they import the test helpers above)
import fault_leaders  # noqa: E402
from test_runtime_kubeemu import (  # noqa: E402 (the emulator lives with the tests)
    DEPLOYMENTS,
    EVENTS,
    HPAS,
    VersionedEmulator,
    api_client_for,
    deployment,
    hpa,
)
from test_spec_hostile import HOSTILE  # noqa: E402 (the hostile spec files of the spec tests)

from autoscaler.actuators.kube import KubernetesActuator  # noqa: E402
from autoscaler.actuators.retry import Backoff  # noqa: E402
from autoscaler.adapter.keda_scaler import pb2, pb2_grpc, start_keda_scaler  # noqa: E402
from autoscaler.adapter.metrics_api import serve  # noqa: E402
from autoscaler.core.store import DecisionStore  # noqa: E402
from autoscaler.runtime.clock import ManualClock  # noqa: E402
from autoscaler.runtime.leader import LeaderConfig, LeaseElector  # noqa: E402
from autoscaler.runtime.loop import ControlLoop  # noqa: E402
from autoscaler.runtime.specwatch import SpecWatcher, crd_lister  # noqa: E402
from autoscaler.runtime.telemetry import Telemetry  # noqa: E402
from autoscaler.sources.prometheus import PrometheusSource  # noqa: E402
from autoscaler.spec.types import SLO, Mode, Provisioning, ServingAutoscalerSpec, TargetRef  # noqa: E402

NS, LEASE_NS = "ml", "ops"
MIN_R, MAX_R = 1, 20
LOAD_RPS = 1500.0
PERIOD_S = 15.0
LEASE = LeaderConfig(identity="a", namespace=LEASE_NS, lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)
SPEC = ServingAutoscalerSpec(
    name="resnet",
    target=TargetRef(NS, "resnet", "resnet"),
    mode=Mode.DIRECT,
    min_replicas=MIN_R,
    max_replicas=MAX_R,
    slo=SLO(latency_ms=100),
    provisioning=Provisioning(decision_period_s=PERIOD_S),
)
SPEC_YAML = f"""\
apiVersion: autoscaling.tfserving.dev/v1alpha1
kind: ServingAutoscaler
metadata: {{name: resnet, namespace: {NS}}}
spec:
  target: {{deployment: resnet, modelName: resnet}}
  slo: {{latencyMs: 100}}
  minReplicas: {MIN_R}
  maxReplicas: {MAX_R}
  mode: direct
  provisioning: {{decisionPeriodSeconds: {int(PERIOD_S)}}}
"""
CRS = kmock.resource(group="autoscaling.tfserving.dev", version="v1alpha1", plural="servingautoscalers")
EXTERNAL = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/tfserving_autoscaler_desired_replicas"


# ---------------------------------------------------------------------- scripted Prometheus
class ScriptedPrometheus:
    """Healthy TF Serving series at LOAD_RPS, or one kind of bad answer (`mode`)."""

    def __init__(self) -> None:
        self.mode = "healthy"
        self.load_rps = LOAD_RPS

    async def handle(self, request: web.Request) -> web.StreamResponse:
        mode = self.mode
        t = float(request.query.get("time", "0"))
        q = request.query.get("query", "")
        if mode == "slow":
            await asyncio.sleep(3.0)
        if mode == "500":
            return web.json_response({"status": "error", "errorType": "internal", "error": "boom"}, status=500)
        if mode == "garbage":
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        value = {"nan": "NaN", "inf": "+Inf", "negative": "-50", "absurd": "1e308"}.get(mode)
        m = {"namespace": NS, "model_name": "resnet"}

        def vec(metric: dict[str, str], v: float | str) -> dict[str, Any]:
            return {"metric": metric, "value": [t, str(value if value is not None else v)]}

        result: list[dict[str, Any]] = []
        if mode == "empty":
            result = []
        elif q.startswith("max by (namespace, model_name) (timestamp("):
            age_s = 1_000.0 if mode == "stale" else 5.0
            result = [{"metric": m, "value": [t, str(t - age_s)]}]
        elif q.startswith("sum by (namespace, model_name, status)"):
            result = [vec({**m, "status": "OK"}, self.load_rps)]
        elif q.startswith("sum by (namespace, model_name) (rate(:tensorflow:serving:request_count"):
            result = [vec(m, self.load_rps)]  # burst rate
        elif "histogram_quantile" in q and "pod" not in q:
            result = [vec(m, 40.0)]
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})


# ---------------------------------------------------------------------- counting
class TracebackCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.count += 1


@dataclass
class Row:
    fault: str
    group: str
    ticks: int = 0
    crashes: int = 0
    tracebacks: int = 0
    unsafe_scale_downs: int = 0
    out_of_bounds: int = 0
    writes_after_lease_loss: int = 0
    cross_namespace: int = 0
    http_5xx: int = 0
    bad_answers: int = 0
    max_tick_s: float = 0.0
    replicas: list[int] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)

    BAD = ("crashes", "tracebacks", "unsafe_scale_downs", "out_of_bounds", "writes_after_lease_loss",
           "cross_namespace", "http_5xx", "bad_answers")  # fmt: skip

    @property
    def ok(self) -> bool:
        return all(getattr(self, c) == 0 for c in self.BAD)


Hook = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True)
class Fault:
    name: str
    group: str  # "prometheus", "kubernetes", "spec", "hostile" (adapter), "keda" or "leaders"
    prom_mode: str = "healthy"
    hook: Callable[[VersionedEmulator, ManualClock, LeaseElector], Hook] | None = None
    mode: Mode = Mode.DIRECT
    setup: Callable[[VersionedEmulator], None] | None = None
    spec_file: bytes | None = None  # replaces the spec file the watcher reads at the fault


def _fail(status: int, headers: dict[str, str] | None = None) -> Hook:
    async def hook(req: Any) -> None:
        if req.resource is not None and req.resource.plural != "leases":
            raise kmock.KubernetesError(status=status, reason="Injected", message=f"injected {status}", details={})

    return hook


def _writes_only(status: int) -> Hook:
    async def hook(req: Any) -> None:
        if req.method in ("PATCH", "PUT", "POST") and req.resource is not None and req.resource.plural != "leases":
            raise kmock.KubernetesError(status=status, reason="Injected", message=f"injected {status}", details={})

    return hook


def _stall(req_timeout_s: float) -> Hook:
    async def hook(req: Any) -> None:
        if req.resource is not None and req.resource.plural != "leases":
            await asyncio.sleep(req_timeout_s + 0.5)  # past the client's timeout ...
            raise kmock.KubernetesError(status=504, reason="Timeout", message="stalled", details={})  # ... then gone

    return hook


def _lease_lost_in_retry(emu: VersionedEmulator, clock: ManualClock, elector: LeaseElector) -> Hook:
    async def hook(req: Any) -> None:
        if req.method == "PATCH" and req.subresource == "scale":
            await clock.advance(LEASE.renew_deadline_s)  # the lease runs out while this write is retried
            raise kmock.KubernetesError(status=429, reason="TooManyRequests", message="slow down", details={})

    return hook


def _conflict_storm(emu: VersionedEmulator, clock: ManualClock, elector: LeaseElector) -> Hook:
    async def hook(req: Any) -> None:
        if req.method == "PATCH" and req.subresource == "scale":
            dep = emu.read_obj(DEPLOYMENTS, NS, "resnet")
            if dep is not None:
                emu.seed(DEPLOYMENTS, NS, "resnet", dep)  # another writer: every patch is stale (409)

    return hook


def _delete_deployment(emu: VersionedEmulator) -> None:
    emu.objects[DEPLOYMENTS, NS, "resnet"].delete()  # server side, as `kubectl delete` would


def _tenant_takeover(emu: VersionedEmulator) -> None:
    """A tenant's ServingAutoscaler in another namespace aimed at our target, 10,000 replicas, direct."""
    cr = {
        "apiVersion": "autoscaling.tfserving.dev/v1alpha1",
        "kind": "ServingAutoscaler",
        "metadata": {},
        "spec": {
            "target": {"deployment": "resnet", "modelName": "resnet", "namespace": NS},
            "slo": {"latencyMs": 100},
            "maxReplicas": 10_000,
            "minReplicas": 10_000,
            "mode": "direct",
        },
    }
    emu.seed(CRS, "aaa-tenant", "evil", cr)


def _add_hpa(emu: VersionedEmulator) -> None:
    emu.seed(HPAS, NS, "resnet-hpa", hpa("resnet-hpa", NS, "resnet"))


FAULTS: list[Fault] = [
    *(
        Fault(f"prom-{m}", "prometheus", prom_mode=m)
        for m in ("down", "slow", "500", "garbage", "empty", "nan", "inf", "stale", "negative", "absurd")
    ),
    Fault("k8s-409", "kubernetes", hook=_conflict_storm),
    Fault("k8s-429", "kubernetes", hook=lambda e, c, el: _fail(429)),
    Fault("k8s-503", "kubernetes", hook=lambda e, c, el: _fail(503)),
    Fault("k8s-403-writes", "kubernetes", hook=lambda e, c, el: _writes_only(403)),
    Fault(
        "k8s-timeout",
        "kubernetes",
        hook=lambda e, c, el: _stall(Backoff.within_lease(LEASE.write_window_s).request_timeout_s),
    ),
    Fault("k8s-deployment-deleted", "kubernetes", setup=_delete_deployment),
    Fault("k8s-hpa-appears", "kubernetes", setup=_add_hpa),
    Fault("k8s-lease-lost-in-retry", "kubernetes", hook=_lease_lost_in_retry),
    *(
        Fault(f"spec-{name.removesuffix('.yaml')}", "spec", spec_file=data)
        for name, (data, _) in sorted(HOSTILE.items())
    ),
    Fault("spec-cr-other-namespace", "spec", setup=_tenant_takeover),
    *(Fault(name, name.split("-")[0]) for name in fault_hostile.HOSTILE_CASES),
    Fault("leader-race", "leaders"),
]
EDGE_GROUPS = ("hostile", "keda", "leaders")


async def run_edge_fault(fault: Fault, *, scale: float) -> Row:
    """A hostile-client or leader-race row: fault_hostile's tally, tracebacks counted here."""
    row = Row(fault.name, fault.group)
    n = round(fault_hostile.HOSTILE_N.get(fault.name, fault_hostile.DEFAULT_N) * scale)
    n = max(n, fault_hostile.MIN_N.get(fault.name, 1))
    counter = TracebackCounter()
    root = logging.getLogger()
    root.addHandler(counter)
    level, root.level = root.level, logging.DEBUG
    try:
        if fault.group == "leaders":
            tally = await fault_leaders.leader_race(n, SPEC)
        else:
            tally = await fault_hostile.HOSTILE_CASES[fault.name](n)
    except Exception:
        row.crashes += 1
        tally = fault_hostile.Tally()
    finally:
        root.removeHandler(counter)
        root.level = level
    row.ticks, row.http_5xx, row.bad_answers = tally.requests, tally.http_5xx, tally.bad_answers
    row.writes_after_lease_loss, row.notes = tally.writes_by_non_holder, tally.notes
    row.tracebacks, row.max_tick_s = counter.count, round(tally.max_answer_s, 3)
    return row


# ---------------------------------------------------------------------- one fault
async def _read_outputs(http: aiohttp.ClientSession, adapter_url: str, stub: Any) -> int:
    """Read the adapter and the KEDA scaler once; the number of 5xx / INTERNAL answers."""
    bad = 0
    async with http.get(adapter_url + EXTERNAL) as resp:
        bad += resp.status >= 500
        await resp.read()
    ref = pb2.ScaledObjectRef(name="so", namespace=NS, scalerMetadata={"deployment": "resnet"})
    try:
        await stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref), timeout=5)
    except grpc.aio.AioRpcError as e:
        bad += e.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    return bad


class WriteAudit:
    """Wraps the fault's hook: counts, as the API server receives them, Deployment writes sent
    while the sender's lease had ended, and writes to a namespace the target does not live in."""

    def __init__(self, elector: LeaseElector, row: Row) -> None:
        self.elector, self.row = elector, row
        self.fault: Hook | None = None

    async def __call__(self, req: Any) -> None:
        res = req.resource
        if req.method in ("PATCH", "PUT", "POST") and res is not None:
            if res.plural == "deployments" and not self.elector.is_leader():
                self.row.writes_after_lease_loss += 1
            if req.namespace not in (NS, LEASE_NS):
                self.row.cross_namespace += 1
        if self.fault is not None:
            await self.fault(req)


def _replicas(emu: VersionedEmulator) -> int | None:
    dep = emu.read_obj(DEPLOYMENTS, NS, "resnet")
    return None if dep is None else int(dep["spec"]["replicas"])


async def run_fault(fault: Fault, *, warmup: int, ticks: int) -> Row:
    row = Row(fault.name, fault.group)
    prom = ScriptedPrometheus()
    app = web.Application()
    app.router.add_route("*", "/api/v1/query", prom.handle)
    prom_runner = web.AppRunner(app, access_log=None)
    await prom_runner.setup()
    await web.TCPSite(prom_runner, "127.0.0.1", 0).start()
    prom_url = f"http://127.0.0.1:{prom_runner.addresses[0][1]}"
    counter = TracebackCounter()
    root = logging.getLogger()
    root.addHandler(counter)
    level, root.level = root.level, logging.DEBUG  # nothing filtered before the counter sees it
    async with VersionedEmulator() as emu, kmock.Server(emu):
        emu.declare(HPAS, EVENTS)
        emu.seed(DEPLOYMENTS, NS, "resnet", deployment(replicas=2))
        clock = ManualClock()
        api = api_client_for(emu)
        elector = LeaseElector(api, LEASE, clock)
        backoff = Backoff.within_lease(LEASE.write_window_s)
        actuator = KubernetesActuator(api, may_write=elector.is_leader, backoff=backoff)
        store = DecisionStore()
        source = PrometheusSource(prom_url, timeout_s=1.0, scrape_interval_s=5.0)
        loop = ControlLoop(
            clock=clock, source=source, actuator=actuator, telemetry=Telemetry(store), is_leader=elector.is_leader
        )
        spec_dir = Path(tempfile.mkdtemp(prefix="fault-matrix-specs-"))
        (spec_dir / "resnet.yaml").write_text(SPEC_YAML)
        watcher = SpecWatcher(clock=clock, on_change=loop.set_specs, directory=spec_dir, list_crs=crd_lister(api))
        await asyncio.to_thread(watcher.poll)  # the API server runs on this event loop
        assert loop.specs == [SPEC], "SPEC_YAML must describe SPEC"
        adapter = await serve(store, now_s=clock.now_s, host="127.0.0.1", port=0, tls=False)
        keda = await start_keda_scaler(store, 0, now_s=clock.now_s, host="127.0.0.1")
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{keda.port}")
        stub = pb2_grpc.ExternalScalerStub(channel)
        audit = WriteAudit(elector, row)
        emu.before = audit
        try:
            async with aiohttp.ClientSession() as http:
                for i in range(warmup + ticks):
                    faulty = i >= warmup
                    if i == warmup:
                        if fault.prom_mode == "down":
                            await prom_runner.cleanup()
                        prom.mode = fault.prom_mode
                        if fault.group == "kubernetes":  # the load doubles: the loop must write now
                            prom.load_rps = 2 * LOAD_RPS
                        if fault.setup is not None:
                            fault.setup(emu)
                        if fault.hook is not None:
                            audit.fault = fault.hook(emu, clock, elector)
                        if fault.spec_file is not None:
                            (spec_dir / "resnet.yaml").write_bytes(fault.spec_file)
                    await elector.step()
                    before = _replicas(emu)
                    t0 = time.perf_counter()
                    try:
                        await asyncio.to_thread(watcher.poll)
                        await loop.tick()
                    except Exception:
                        row.crashes += 1
                    took = time.perf_counter() - t0
                    after = _replicas(emu)
                    if faulty:
                        row.ticks += 1
                        row.max_tick_s = max(row.max_tick_s, took)
                        if fault.group != "kubernetes" and before is not None and after is not None:
                            row.unsafe_scale_downs += after < before
                        row.http_5xx += await _read_outputs(http, adapter.url, stub)
                        row.cross_namespace += loop.specs != [SPEC]  # someone else's spec took over
                    if after is not None:
                        row.replicas.append(after)
                        row.out_of_bounds += not MIN_R <= after <= MAX_R
                    await clock.advance(PERIOD_S)
        finally:
            emu.before = None
            await channel.close()
            await keda.stop(0)
            await adapter.close()
            source.close()
            shutil.rmtree(spec_dir, ignore_errors=True)
            if fault.prom_mode != "down":
                await prom_runner.cleanup()
            root.removeHandler(counter)
            root.level = level
    row.tracebacks = counter.count
    row.max_tick_s = round(row.max_tick_s, 3)
    return row


async def run_matrix(names: list[str] | None, *, warmup: int, ticks: int, edge_scale: float = 1.0) -> list[Row]:
    """`edge_scale` scales the request counts of the hostile-client and leader-race rows."""
    rows = []
    for fault in FAULTS:
        if names and fault.name not in names:
            continue
        if fault.group in EDGE_GROUPS:
            rows.append(await run_edge_fault(fault, scale=edge_scale))
        else:
            rows.append(await run_fault(fault, warmup=warmup, ticks=ticks))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ticks", type=int, default=4)
    ap.add_argument("--only", default="", help="comma-separated fault names")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fault_matrix.json")
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.DEBUG)  # every record reaches the traceback counter
    names = [n for n in args.only.split(",") if n]
    rows = asyncio.run(run_matrix(names or None, warmup=args.warmup, ticks=args.ticks))
    cols = ["fault", "ticks", *Row.BAD, "max_tick_s"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(getattr(r, c)) for c in cols))
    doc = {
        "machine": platform.platform(),
        "warmup_ticks": args.warmup,
        "fault_ticks": args.ticks,
        "answer_bound_s": fault_hostile.ANSWER_BOUND_S,
        "rows": [asdict(r) for r in rows],
        "all_bad_columns_zero": all(r.ok for r in rows),
    }
    if not names:
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if doc["all_bad_columns_zero"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
