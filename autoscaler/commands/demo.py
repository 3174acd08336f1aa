"""`tfserving-autoscaler demo`: the real daemon loop against a local emulated TF Serving cluster.

Owns the command line and the demo's composition (it sits above the runtime, the emulator, the
demo package and the adapter, which must not import each other): the dilated demo spec and the
shaped trace window (`autoscaler.demo.load`), emulator replicas as the local cluster's pods
(`autoscaler.demo.local`), the load generator, and the metrics adapter + /metrics on 127.0.0.1.
Stops by itself after `--duration-s`, prints a summary and a one-line verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from typing import Any

import numpy as np

from autoscaler.demo.load import (
    DEFAULT_DURATION_S,
    HISTORY_TRACE_S,
    WINDOW_S,
    DemoDataError,
    arrivals,
    demo_spec,
    history_fetcher,
    load_demo_spec,
    offered_load,
)
from autoscaler.spec.types import ServingAutoscalerSpec

log = logging.getLogger(__name__)

SCRAPE_WINDOW_S = 4.0  # the direct scrape's rate window (the spec's metricsLagSeconds says how old that is)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration-s", type=float, default=DEFAULT_DURATION_S, help="stop after this many seconds (default 90)"
    )
    parser.add_argument("--summary-json", default=None, help="also write the summary as JSON here")
    parser.add_argument("--spec", default=None, help="spec file (default: the packaged demo spec)")
    parser.add_argument("--trace", default=None, help="trace file or shipped name (default: the packaged window)")
    parser.add_argument("--trace-start-s", type=float, default=WINDOW_S[0], help="start of the trace window (s)")
    parser.add_argument("--trace-end-s", type=float, default=WINDOW_S[1], help="end of the trace window (s)")
    parser.add_argument(
        "--compression", type=float, default=None, help="trace seconds per demo second (default: window fits the run)"
    )
    parser.add_argument("--peak-replicas", type=float, default=4.0, help="peak load in replicas' SLO capacity")
    parser.add_argument("--dilation", type=float, default=20.0, help="service time, batch timeout and SLO multiplier")
    parser.add_argument("--period-s", type=float, default=None, help="decision period (default: the spec's)")
    parser.add_argument("--startup-s", type=float, default=None, help="replica startup delay (default: the spec's)")
    parser.add_argument("--max-replicas", type=int, default=None, help="default: the spec's")
    parser.add_argument("--metrics-port", type=int, default=0, help="/metrics port on 127.0.0.1 (0: any free)")
    parser.add_argument("--adapter-port", type=int, default=0, help="metrics API port on 127.0.0.1 (0: any free)")
    parser.add_argument("--decisions", default=None, help="append decision records (JSONL) here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="plain lines even on a TTY")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        summary = asyncio.run(_main(args))
    except DemoDataError as exc:
        print(f"tfserving-autoscaler demo: {exc}", file=sys.stderr)
        return 2
    print(summary_text(summary))
    return 0


def intro_text(spec: ServingAutoscalerSpec, args: argparse.Namespace, where: str, cap_rps: float, peak: float) -> str:
    k, slo = args.dilation, spec.slo
    q = f"p{slo.latency_quantile * 100:g}"
    usable = cap_rps * (1.0 - spec.provisioning.headroom)
    down = spec.behavior.scale_down.stabilization_window_s
    return "\n".join(
        [
            f"tfserving-autoscaler demo: {spec.name}, {args.duration_s:g} s, "
            "the real control loop against a local stand-in cluster",
            f"  replicas  TF Serving emulators on 127.0.0.1 standing in for ResNet-50 on an NVIDIA T4 (measured "
            f"batch latencies, {spec.profile.source.split(',')[0]}), slowed {k:g}x so one process can drive "
            f"{spec.max_replicas}: a batch of 16 takes {spec.profile.batch_latency_ms[4]:.0f} ms, SLO {q} <= "
            f"{slo.latency_ms / k:g} ms becomes {slo.latency_ms:g} ms",
            f"  capacity  {cap_rps:.1f} rps per replica at the SLO (batching queue model); the autoscaler "
            f"plans {usable:.1f} ({spec.provisioning.headroom:.0%} headroom)",
            f"  load      {where}; peak {peak:.0f} rps (about {peak / usable:.1f} replicas), Poisson arrivals",
            f"  forecast  {spec.forecaster.model}, {spec.forecaster.step_s} s steps, warm-started with the trace's "
            f"{HISTORY_TRACE_S:g} s before the window (as the daemon warm-starts from Prometheus); "
            f"provisions for its p{spec.provisioning.forecast_quantile * 100:g} over the lead time",
            f"  time      a new replica loads for {spec.startup.mean_s:g} s (a real pod: 30-120 s); one decision "
            f"every {spec.provisioning.decision_period_s:g} s; replicas {spec.min_replicas}-{spec.max_replicas}; "
            f"scale-down stabilization {down} s (Kubernetes default: 300 s"
            + (", shortened with this shorter run)" if args.duration_s < DEFAULT_DURATION_S else ")"),
        ]
    )


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    from autoscaler.adapter.metrics_api import serve as serve_adapter
    from autoscaler.core.capacity import CapacityModel
    from autoscaler.core.store import DecisionStore
    from autoscaler.core.types import TargetKey
    from autoscaler.demo.local import DemoSetup, LiveView, LocalCluster, LocalClusterActuator, run_demo
    from autoscaler.emulator import EmulatorReplica, ReplicaConfig, replay
    from autoscaler.runtime.app import Closer
    from autoscaler.runtime.clock import WallClock
    from autoscaler.runtime.forecast_pool import ForecastPool
    from autoscaler.runtime.loop import ControlLoop
    from autoscaler.runtime.telemetry import Telemetry
    from autoscaler.runtime.telemetry import serve as serve_metrics
    from autoscaler.sources.scrape import ScrapeSource

    spec = demo_spec(load_demo_spec(args.spec), args)
    cap_rps = CapacityModel(spec.profile).capacity_at_slo_rps(spec.batching.initial, spec.slo)
    n_s = max(1, math.ceil(args.duration_s))
    rate, history, where, compression = offered_load(args, args.peak_replicas * cap_rps, n_s)
    arr = arrivals(rate, args.seed)
    pool = ForecastPool()  # statsmodels in its own process: fits never stall the replicas' event loop
    await asyncio.to_thread(pool.start)
    key = TargetKey(spec.target.namespace, spec.target.deployment)
    clock = WallClock()
    store = DecisionStore()
    telemetry = Telemetry(store)
    scrape = ScrapeSource(rate_window_s=SCRAPE_WINDOW_S, timeout_s=1.0)
    pending: dict[TargetKey, dict[str, str]] = {}

    async def make_replica(pod: str, delay_s: float) -> EmulatorReplica:
        cfg = ReplicaConfig(
            model_name=spec.target.model_name,
            batching=spec.batching.initial,
            profile=spec.profile,
            startup_delay_s=delay_s,
            namespace=spec.target.namespace,
            pod=pod,
        )
        return await EmulatorReplica(cfg).start()

    def apply_endpoints() -> None:  # between ticks, so the scrape thread never sees a half update
        for k in list(pending):
            scrape.set_endpoints(k, pending.pop(k))

    cluster = LocalCluster(key, make_replica, startup_delay_s=spec.startup.mean_s, on_endpoints=pending.__setitem__)
    actuator = LocalClusterActuator(cluster)
    loop = ControlLoop(
        clock=clock,
        source=scrape,
        actuator=actuator,
        telemetry=telemetry,
        forecaster_factory=pool.driver,
        period_s=spec.provisioning.decision_period_s,
        before_tick=apply_endpoints,
        history=history_fetcher(history),
    )
    runner, mport = await serve_metrics(telemetry, "127.0.0.1", args.metrics_port)
    adapter = await serve_adapter(store, now_s=clock.now_s, host="127.0.0.1", port=args.adapter_port, tls=False)
    servers: list[tuple[str, Closer]] = [
        (f"http://127.0.0.1:{mport}/metrics", runner.cleanup),
        (f"{adapter.url}/apis/external.metrics.k8s.io/v1beta1", adapter.close),
    ]
    slo_ms = spec.slo.latency_ms
    print(intro_text(spec, args, where, cap_rps, max(rate)))
    print(f"  /metrics:        http://127.0.0.1:{mport}/metrics")
    print(
        f"  metrics adapter: {adapter.url}/apis/custom.metrics.k8s.io/v1beta2 and /apis/external.metrics.k8s.io/v1beta1"
    )
    print(f"  stops after {args.duration_s:g} s", flush=True)

    async def load(endpoints: Any) -> dict[str, Any]:
        res = await replay(arr, endpoints, model=spec.target.model_name, start_s=0.0, timeout_s=slo_ms * 3 / 1e3)
        n = len(res.status)
        within = int(np.count_nonzero((res.status == 200) & (res.latency_ms <= slo_ms)))
        return {
            "requests": n,
            "sent": res.sent,
            "ok": res.ok,
            "rejected": res.rejected,
            "errors": res.errors,
            "no_ready_replica": int(np.count_nonzero(res.status == -1)),
            "slo_attainment": round(within / n, 4) if n else None,
            "p50_ms": _f(res.latency_quantile_ms(0.5)),
            "p95_ms": _f(res.latency_quantile_ms(0.95)),
            "p99_ms": _f(res.latency_quantile_ms(0.99)),
        }

    description = f"{spec.name}: {where}; peak {max(rate):.0f} rps; {cap_rps:.1f} rps/replica at the SLO"
    setup = DemoSetup(
        spec,
        rate,
        float(args.duration_s),
        description,
        {
            "capacity_per_replica_rps": round(cap_rps, 2),
            "dilation": args.dilation,
            "compression": round(compression, 3),
            "trace_window_s": [args.trace_start_s, args.trace_end_s],
            "startup_s": spec.startup.mean_s,
            "scale_down_stabilization_s": spec.behavior.scale_down.stabilization_window_s,
        },
    )
    view = LiveView(setup, tty=False if args.plain else None)
    try:
        return await run_demo(
            setup,
            clock=clock,
            loop=loop,
            cluster=cluster,
            actuator=actuator,
            load=load,
            view=view,
            servers=servers,
            summary_json=args.summary_json,
        )
    finally:
        scrape.close()
        pool.close()


def _f(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 1)


def _at(t_s: float | None) -> str:
    return "none" if t_s is None else f"at {t_s} s"


def summary_text(s: dict[str, Any]) -> str:
    r, ev = s["replicas"], s["scale_events"]
    att = s.get("slo_attainment")
    lines = [
        "",
        "summary",
        f"  requests: {s.get('requests', 0)} (ok {s.get('ok', 0)}, rejected {s.get('rejected', 0)}, "
        f"errors {s.get('errors', 0)}, no ready replica {s.get('no_ready_replica', 0)})",
        f"  SLO attainment (p{s['slo_quantile'] * 100:g} <= {s['slo_ms']:g} ms): "
        + ("-" if att is None else f"{att:.2%}")
        + f"   latency p50/p95/p99: {s.get('p50_ms')}/{s.get('p95_ms')}/{s.get('p99_ms')} ms",
        f"  replicas: initial {r['initial']}, max {r['max']} (at {r['peak_s']} s), final {r['final']}, min {r['min']}",
        f"  scale events: {ev['up']} up, {ev['down']} down; first scale-up {_at(s['first_scale_up_s'])}, "
        f"first scale-down {_at(s['first_scale_down_s'])}",
        f"  offered load: mean {s['offered_rps']['mean']} rps, peak {s['offered_rps']['peak']} rps "
        f"at {s['offered_rps']['peak_s']} s",
        "",
        f"verdict: {s['verdict']}",
    ]
    return "\n".join(lines)
