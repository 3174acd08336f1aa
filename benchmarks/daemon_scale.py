"""Benchmark: the daemon's control loop for N targets (default 1,000): CPU, RSS and refit stalls.

Runs the real `ControlLoop` in-process with the daemon's parts: the forecast worker process
(`ForecastPool`, auto forecaster, 14-day warm start at 60 s per target), `Telemetry` with its
DecisionStore, JSON decision logging, and the `KubernetesActuator` talking HTTP to kmock (the
`VersionedEmulator` of the tests) serving N Deployments from a separate process, so the cluster's
own CPU is not counted. What is NOT real here (say so when quoting the numbers): the metric source
and the warm-start history are synthetic stand-ins computed in-process (a daily profile per target
with its own level, phase and noise), not Prometheus backfilled by promtool, and time is a
`ManualClock` advanced by one decision period (15 s) per tick, with a short real pause between
ticks (`--gap-s`) in which the worker runs the queued refits, as it would in the 15 s of a real
period. Specs vary: 3 service profiles (capacity models shared between identical profiles), SLOs
from 50 to 300 ms, max replicas 4 to 40, batching tuning on for half.

Per tick it records CPU ms of the daemon process (from /proc) plus the forecast worker's CPU for
answering that tick (measured in the worker; refits running meanwhile are reported apart), wall ms
and the RSS of both; writes benchmarks/results/daemon_scale.json with targets, tick_cpu_ms_p50,
tick_cpu_ms_p99 (steady ticks: all but the first), first_tick_s, rss_mb_max (both summed),
refit_stall_ms_max (the longest a tick's forecasts queued behind a refit) and prints a table.

    .venv/bin/python benchmarks/daemon_scale.py [--targets 1000] [--ticks 240] [--gap-s 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from autoscaler.core.types import FloatArray, Observation, Signal, TargetKey  # noqa: E402
from autoscaler.spec.types import (  # noqa: E402
    SLO,
    BatchingSpec,
    Mode,
    ServiceProfile,
    ServingAutoscalerSpec,
    TargetRef,
)

NS = "bench"
DAY_S = 86_400.0
START_S = 1_700_006_400.0  # a midnight UTC
CLK_TCK = os.sysconf("SC_CLK_TCK")


def model(i: int) -> str:
    return f"m{i:04d}"


def level_rps(i: int) -> float:
    return 20.0 + 15.0 * (i % 37)


def load_rps(i: int, t_s: Any) -> FloatArray:
    phase = 2 * math.pi * ((i * 0.137) % 1.0)
    out: FloatArray = level_rps(i) * (1.0 + 0.6 * np.sin(2 * np.pi * np.asarray(t_s, dtype=np.float64) / DAY_S + phase))
    return out


def specs(n: int) -> list[ServingAutoscalerSpec]:
    base = ServiceProfile()
    profiles = [replace(base, batch_latency_ms=tuple(f * x for x in base.batch_latency_ms)) for f in (0.5, 1.0, 2.0)]
    out = []
    for i in range(n):
        out.append(
            ServingAutoscalerSpec(
                name=model(i),
                target=TargetRef(NS, model(i), model(i)),
                min_replicas=1,
                max_replicas=4 + (i % 10) * 4,
                slo=SLO(latency_ms=(50.0, 100.0, 200.0, 300.0)[i % 4]),
                batching=BatchingSpec(tune=i % 2 == 0),
                mode=Mode.DIRECT if i % 10 == 0 else Mode.HPA,
                profile=profiles[i % 3],
            )
        )
    return out


class SyntheticSource:
    """Stand-in metric source: each target's daily profile plus seeded noise, all targets at once."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.rng = np.random.default_rng(0)

    def observe(self, targets: Sequence[ServingAutoscalerSpec], now_s: float) -> dict[TargetKey, Observation]:
        out = {}
        noise = self.rng.normal(1.0, 0.05, len(targets))
        for k, s in enumerate(targets):
            i = int(s.target.deployment[1:])
            sig = Signal.of(float(load_rps(i, now_s)) * float(noise[k]))
            out[TargetKey(s.target.namespace, s.target.deployment)] = Observation(
                time_s=now_s, request_rate_rps=sig, burst_rate_rps=sig, rejected_rps=Signal.of(0.0)
            )
        return out


def history(spec: ServingAutoscalerSpec, now_s: float) -> FloatArray:
    """14 days at the forecaster's step ending at now_s (the stand-in for the Prometheus fetch)."""
    f = spec.forecaster
    i = int(spec.target.deployment[1:])
    n = int(f.history_s // f.step_s)
    t = now_s - f.step_s * np.arange(n, 0, -1) + f.step_s / 2
    rng = np.random.default_rng(i)
    out: FloatArray = load_rps(i, t) * rng.normal(1.0, 0.05, n)
    return out


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return math.nan


async def serve_kmock(n: int) -> None:
    from kmock._internal import apps
    from test_runtime_kubeemu import (  # type: ignore[import-not-found]
        DEPLOYMENTS,
        EVENTS,
        HPAS,
        VersionedEmulator,
        deployment,
    )

    async with VersionedEmulator() as k, apps.Server(k):
        k.declare(HPAS, EVENTS)
        for i in range(n):
            k.seed(DEPLOYMENTS, NS, model(i), deployment(name=model(i), namespace=NS, replicas=2))
        print(str(k.url), flush=True)
        await asyncio.Event().wait()


async def bench(args: argparse.Namespace, url: str) -> dict[str, object]:
    from test_runtime_kubeemu import api_client_for

    from autoscaler.actuators.kube import KubernetesActuator
    from autoscaler.core.store import DecisionStore
    from autoscaler.runtime.clock import ManualClock
    from autoscaler.runtime.forecast_pool import ForecastPool
    from autoscaler.runtime.loop import ControlLoop
    from autoscaler.runtime.telemetry import Telemetry

    class Url:
        def __init__(self, u: str) -> None:
            self.url = u

    pool = ForecastPool()
    await asyncio.to_thread(pool.start)
    workers = pool.worker_pids()
    clock = ManualClock(start_s=START_S + 11 * 3600)
    loop = ControlLoop(
        clock=clock,
        source=SyntheticSource(args.targets),
        actuator=KubernetesActuator(api_client_for(Url(url))),
        telemetry=Telemetry(DecisionStore()),
        forecaster_factory=pool.driver,
        history=history,
    )
    loop.set_specs(specs(args.targets))
    me = os.getpid()
    ticks = []
    try:
        for n in range(args.ticks):
            m0, k0 = cpu_s(me), sum(cpu_s(p) for p in workers)
            w0 = time.perf_counter()
            results = await loop.tick()
            wall_s = time.perf_counter() - w0
            m1, k1 = cpu_s(me), sum(cpu_s(p) for p in workers)
            ticks.append(
                {
                    "tick": n,
                    "cpu_ms": (m1 - m0 + pool.last_step_cpu_s) * 1000.0,  # the daemon + the worker answering
                    "daemon_cpu_ms": (m1 - m0) * 1000.0,
                    "worker_step_cpu_ms": pool.last_step_cpu_s * 1000.0,
                    "worker_cpu_ms": (k1 - k0) * 1000.0,  # incl. refits running meanwhile (off the tick)
                    "wall_ms": wall_s * 1000.0,
                    "rss_mb": rss_mb(me) + sum(rss_mb(p) for p in workers),
                    "daemon_rss_mb": rss_mb(me),
                    "refit_stall_ms": pool.last_refit_stall_s * 1000.0,
                    "decisions": len(results),
                    "with_forecast": sum(1 for r in results if r.decision.forecast_rps is not None),
                }
            )
            if n % args.print_every == 0:
                print(f"tick {n}: {ticks[-1]}", flush=True)
            await asyncio.sleep(args.gap_s)  # the rest of the period: the worker refits meanwhile
            await clock.advance(15.0)
        fits = pool.fit_counts()
    finally:
        pool.close()
    steady = [t["cpu_ms"] for t in ticks[1:]]
    models: dict[str, int] = {}
    for _, _, name in fits.values():
        models[str(name)] = models.get(str(name), 0) + 1
    return {
        "targets": args.targets,
        "ticks": len(ticks),
        "simulated_s": len(ticks) * 15.0,
        "tick_cpu_ms_p50": round(statistics.median(steady), 1),
        "tick_cpu_ms_p99": round(float(np.percentile(steady, 99)), 1),
        "tick_wall_ms_p50": round(statistics.median(t["wall_ms"] for t in ticks[1:]), 1),
        "first_tick_s": round(ticks[0]["wall_ms"] / 1000.0, 2),
        "first_tick_cpu_s": round(ticks[0]["cpu_ms"] / 1000.0, 2),
        "rss_mb_max": round(max(t["rss_mb"] for t in ticks), 1),
        "rss_mb_last": round(ticks[-1]["rss_mb"], 1),
        "refit_stall_ms_max": round(max(t["refit_stall_ms"] for t in ticks), 1),
        "refits_done": pool.refits_done,
        "models_at_end": models,
        "forecasting_targets_last_tick": ticks[-1]["with_forecast"],
        "gap_s": args.gap_s,
        "clock": "ManualClock, +15 s per tick; real pause of gap_s between ticks",
        "stand_ins": "synthetic metric source and warm-start history (not Prometheus); kmock cluster",
        "host_load_avg_1m": round(os.getloadavg()[0], 2),
        "per_tick": ticks,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--ticks", type=int, default=240, help="15 s ticks (240 = one simulated hour)")
    ap.add_argument("--gap-s", type=float, default=0.5)
    ap.add_argument("--print-every", type=int, default=20)
    ap.add_argument("--serve-kmock", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/daemon_scale.json"))
    args = ap.parse_args()
    if args.serve_kmock is not None:
        asyncio.run(serve_kmock(args.serve_kmock))
        return 0
    logging.basicConfig(level=logging.ERROR)
    kmock_proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-kmock", str(args.targets)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert kmock_proc.stdout is not None
        url = kmock_proc.stdout.readline().strip()
        result = asyncio.run(bench(args, url))
    finally:
        kmock_proc.terminate()
        kmock_proc.wait(10)
    table = Table(title=f"daemon loop, {args.targets} targets, {result['ticks']} ticks of 15 s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.items():
        if k != "per_tick":
            table.add_row(k, json.dumps(v) if isinstance(v, dict) else str(v))
    Console(width=120).print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
