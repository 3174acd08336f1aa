"""Benchmark: one PrometheusSource observation round for 1,000 targets against a real Prometheus.

Backfills (promtool, OpenMetrics) the last minutes of TF Serving, DCGM and kube-state-metrics
series for 1,000 models (one pod each: request_count by status, the 34-bucket request_latency
histogram, batching-session sums/counts, GPU gauges, replica counts, pod timestamps), starts
`/usr/bin/prometheus` on 127.0.0.1 over those blocks, then times `observe()` and `observe_pods()`
for all 1,000 targets and counts the queries sent. Prints a rich table and writes
benchmarks/results/observe_1000_targets.json.

Run: `.venv/bin/python benchmarks/observe_1000_targets.py [--targets 1000] [--rounds 5]`
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autoscaler.core.types import SignalStatus  # noqa: E402
from autoscaler.emulator.tfmetrics import LATENCY_BUCKETS_US, strcat_double  # noqa: E402
from autoscaler.sources.prometheus import PrometheusSource  # noqa: E402
from autoscaler.spec.types import SLO, ServingAutoscalerSpec, TargetRef  # noqa: E402
from tests.fixtures.prometheus import PrometheusServer, backfill_openmetrics  # noqa: E402

NS = "bench"
SCRAPE_S = 15.0


def model(i: int) -> str:
    return f"m{i:04d}"


def pod(i: int) -> str:
    return f"{model(i)}-6b7f9c8d4-{i:05d}"


def openmetrics(n_models: int, end_s: float, minutes: float) -> tuple[str, dict[str, float]]:
    times = end_s - SCRAPE_S * np.arange(int(minutes * 60 / SCRAPE_S), -1, -1)
    t_rel = times - times[0]
    fam: dict[str, list[str]] = {}
    truth: dict[str, float] = {}
    mean_us = 20_000.0
    frac = [1 - math.exp(-le / mean_us) for le in LATENCY_BUCKETS_US]
    for i in range(n_models):
        m, p = model(i), pod(i)
        rate = 5.0 + (i % 50)
        truth[m] = rate
        base = f'namespace="{NS}",pod="{p}"'
        ok = np.floor(rate * t_rel)
        fam.setdefault(":tensorflow:serving:request_count", [])
        for status, vals in (("OK", ok), ("UNAVAILABLE", np.floor(0.01 * rate * t_rel))):
            lab = f'{base},model_name="{m}",status="{status}"'
            fam[":tensorflow:serving:request_count"] += [
                f":tensorflow:serving:request_count{{{lab}}} {v:.0f} {t:.0f}" for v, t in zip(vals, times, strict=True)
            ]
        lat = fam.setdefault(":tensorflow:serving:request_latency", [])
        lab = f'{base},model_name="{m}",API="predict",entrypoint="REST"'
        for k, t in enumerate(times):
            n = ok[k]
            for le, f in zip(LATENCY_BUCKETS_US, frac, strict=True):
                bucket = f'{{{lab},le="{strcat_double(le)}"}}'
                lat.append(f":tensorflow:serving:request_latency_bucket{bucket} {math.floor(n * f)} {t:.0f}")
            lat.append(f':tensorflow:serving:request_latency_bucket{{{lab},le="+Inf"}} {n:.0f} {t:.0f}')
            lat.append(f":tensorflow:serving:request_latency_sum{{{lab}}} {n * mean_us:.0f} {t:.0f}")
            lat.append(f":tensorflow:serving:request_latency_count{{{lab}}} {n:.0f} {t:.0f}")
        for name, per_req in (
            (":tensorflow:serving:batching_session:queuing_latency", 1500.0),
            (":tensorflow:serving:batching_session:processed_batch_size", 4.0),
        ):
            lines = fam.setdefault(name, [])
            lab = f'{base},thread_pool_name="batch_threads"' if "queuing" in name else base
            batches = np.floor(ok / 4.0)
            for k, t in enumerate(times):
                s = ok[k] * 1500.0 if "queuing" in name else ok[k]
                c = ok[k] if "queuing" in name else batches[k]
                lines.append(f"{name}_sum{{{lab}}} {s:.0f} {t:.0f}")
                lines.append(f"{name}_count{{{lab}}} {c:.0f} {t:.0f}")
            del per_req
        gl = f'gpu="0",UUID="GPU-{i:08d}",device="nvidia0",modelName="Tesla T4",namespace="{NS}",pod="{p}"'
        util = min(0.95, rate / 60.0)
        for name, v in (("DCGM_FI_DEV_GPU_UTIL", round(util * 100)), ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", util)):
            fam.setdefault(name, []).extend(f"{name}{{{gl}}} {v} {t:.0f}" for t in times)
        dl = f'namespace="{NS}",deployment="{m}"'
        for name, v in (
            ("kube_deployment_spec_replicas", 2),
            ("kube_deployment_status_replicas", 2),
            ("kube_deployment_status_replicas_ready", 1),
        ):
            fam.setdefault(name, []).extend(f"{name}{{{dl}}} {v} {t:.0f}" for t in times)
        pl = f'namespace="{NS}",pod="{p}",uid="u{i}"'
        fam.setdefault("kube_pod_created", []).extend(
            f"kube_pod_created{{{pl}}} {end_s - 3600:.0f} {t:.0f}" for t in times
        )
        fam.setdefault("kube_pod_status_ready_time", []).extend(
            f"kube_pod_status_ready_time{{{pl}}} {end_s - 3600 + 40 + i % 20:.0f} {t:.0f}" for t in times
        )
    out = []
    for name, lines in fam.items():
        out.append(f"# TYPE {name} unknown")
        out.extend(lines)
    out.append("# EOF")
    return "\n".join(out) + "\n", truth


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=6.0, help="backfilled minutes of data")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/observe_1000_targets.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    console = Console()
    end_s = math.floor(time.time() / SCRAPE_S) * SCRAPE_S - 30.0
    specs = [
        ServingAutoscalerSpec(name=model(i), target=TargetRef(NS, model(i), model(i)), slo=SLO(0.99, 100.0))
        for i in range(args.targets)
    ]
    with tempfile.TemporaryDirectory(prefix="bench-prom-") as d:
        work = Path(d)
        t0 = time.perf_counter()
        text, truth = openmetrics(args.targets, end_s, args.minutes)
        t_gen = time.perf_counter() - t0
        t0 = time.perf_counter()
        backfill_openmetrics(text, work / "data", work)
        t_fill = time.perf_counter() - t0
        n_lines = text.count("\n")
        del text
        with PrometheusServer(work, data_dir=work / "data") as server:
            src = PrometheusSource(server.url, timeout_s=30.0)
            now_s = end_s + 5.0
            walls, pod_walls = [], []
            obs = {}
            for _ in range(args.rounds):
                q0 = src.queries_sent
                t0 = time.perf_counter()
                obs = src.observe(specs, now_s)
                walls.append(time.perf_counter() - t0)
                queries = src.queries_sent - q0
            q0 = src.queries_sent
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                pods = src.observe_pods(specs, now_s)
                pod_walls.append(time.perf_counter() - t0)
            pod_queries = (src.queries_sent - q0) // args.rounds
            slowest = sorted(src.query_seconds.items(), key=lambda kv: -kv[1])[:5]
            src.close()
    ok = [o for o in obs.values() if o.request_rate_rps.status is SignalStatus.OK]
    err = [
        abs((o.request_rate_rps.value or 0) - truth[k.deployment]) / truth[k.deployment]
        for k, o in obs.items()
        if o.request_rate_rps.ok
    ]
    statuses = {
        name: sum(1 for o in obs.values() if getattr(o, name).ok)
        for name in (
            "request_rate_rps",
            "burst_rate_rps",
            "latency_ms",
            "slo_attainment",
            "queue_latency_ms",
            "mean_batch_size",
            "gpu_util",
            "cold_start_s",
        )
    }
    result = {
        "targets": args.targets,
        "rounds": args.rounds,
        "series_backfilled_lines": n_lines,
        "generate_s": round(t_gen, 2),
        "backfill_s": round(t_fill, 2),
        "observe_queries_per_round": queries,
        "observe_wall_s_median": round(statistics.median(walls), 4),
        "observe_wall_s_max": round(max(walls), 4),
        "observe_pods_queries_per_round": pod_queries,
        "observe_pods_wall_s_median": round(statistics.median(pod_walls), 4),
        "targets_with_ok_request_rate": len(ok),
        "request_rate_max_rel_error": round(max(err), 4) if err else None,
        "signals_ok": statuses,
        "pods_returned": sum(len(v) for v in pods.values()),
        "slowest_queries_s": {q[:60] + "...": round(t, 3) for q, t in slowest},
        "prometheus": "2.42 (Debian), 127.0.0.1, 2 cores",
        "host_load_avg_1m": round(os.getloadavg()[0], 2),  # other work on the host inflates wall times
    }
    table = Table(title=f"PrometheusSource.observe() for {args.targets} targets")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.items():
        table.add_row(k, json.dumps(v) if isinstance(v, dict) else str(v))
    console.print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
