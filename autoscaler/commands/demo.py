"""`tfserving-autoscaler demo`: the real daemon loop against a local emulated TF Serving cluster.

Owns the demo's composition (it sits above the runtime, the emulator, the simulator's trace
reader and the adapter, which must not import each other): the demo spec (the shipped
`examples/resnet50-t4.yaml` with a short decision period, direct mode and a time-dilated service
profile so a laptop can saturate six replicas), the shipped trace window turned into Poisson
arrivals, emulator replicas as the local cluster's pods, the load generator, and the metrics
adapter + /metrics on 127.0.0.1. Stops by itself after `--duration-s` and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.spec.types import (
    Behavior,
    ForecasterSpec,
    Mode,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    ServingAutoscalerSpec,
    StartupSpec,
)

log = logging.getLogger(__name__)

DEFAULT_SPEC = "examples/resnet50-t4.yaml"
DEFAULT_TRACE = "azure_llm2023_code_req.csv"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration-s", type=float, default=90.0, help="stop after this many seconds (default 90)")
    parser.add_argument("--summary-json", default=None, help="also write the summary as JSON here")
    parser.add_argument("--spec", default=DEFAULT_SPEC, help=f"spec file (default {DEFAULT_SPEC})")
    parser.add_argument("--trace", default=DEFAULT_TRACE, help="trace (shipped name or path)")
    parser.add_argument("--trace-start-s", type=float, default=760.0, help="start of the busy window in the trace")
    parser.add_argument("--compression", type=float, default=5.0, help="trace seconds per demo second")
    parser.add_argument("--peak-replicas", type=float, default=5.0, help="peak load in replicas' SLO capacity")
    parser.add_argument("--dilation", type=float, default=20.0, help="service time and SLO multiplier")
    parser.add_argument("--period-s", type=float, default=1.0, help="decision period")
    parser.add_argument("--startup-s", type=float, default=3.0, help="replica startup delay (LOADING)")
    parser.add_argument("--max-replicas", type=int, default=8)
    parser.add_argument("--metrics-port", type=int, default=0, help="/metrics port on 127.0.0.1 (0: any free)")
    parser.add_argument("--adapter-port", type=int, default=0, help="metrics API port on 127.0.0.1 (0: any free)")
    parser.add_argument("--decisions", default=None, help="append decision records (JSONL) here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="plain lines even on a TTY")


def demo_spec(base: ServingAutoscalerSpec, args: argparse.Namespace) -> ServingAutoscalerSpec:
    k = float(args.dilation)
    profile = replace(base.profile, batch_latency_ms=tuple(x * k for x in base.profile.batch_latency_ms))
    # a short batch queue, as TF Serving operators configure it: overload shows up as UNAVAILABLE
    # (counted as demand) within about one SLO of waiting instead of an ever-growing backlog
    initial = replace(
        base.batching.initial,
        batch_timeout_us=int(base.batching.initial.batch_timeout_us * k),
        max_enqueued_batches=min(base.batching.initial.max_enqueued_batches, 4),
    )
    p = float(args.period_s)
    s = float(args.startup_s)
    return replace(
        base,
        mode=Mode.DIRECT,
        min_replicas=1,
        max_replicas=int(args.max_replicas),
        slo=replace(base.slo, latency_ms=base.slo.latency_ms * k),
        profile=profile,
        batching=replace(base.batching, tune=False, initial=initial),
        provisioning=replace(
            base.provisioning,
            decision_period_s=p,
            metrics_lag_s=3.0,
            burst_window_s=3.0,
            stale_after_s=10.0,
            lead_time_s=None,
        ),
        startup=StartupSpec(
            scheduling_s=0.1 * s, image_pull_s=0.3 * s, model_load_s=0.4 * s, warmup_s=0.2 * s, jitter_cv=0
        ),
        forecaster=ForecasterSpec(
            model="holt", season_length_s=60, step_s=2, history_s=600, refit_interval_s=10, level=0.95
        ),
        behavior=Behavior(
            scale_up=ScalingRules(
                0, SelectPolicy.MAX, (ScalingPolicy(PolicyType.PODS, 4, 2), ScalingPolicy(PolicyType.PERCENT, 100, 2))
            ),
            scale_down=ScalingRules(10, SelectPolicy.MAX, (ScalingPolicy(PolicyType.PERCENT, 50, 2),)),
        ),
        outputs=replace(base.outputs, decisions_path=args.decisions),
    )


def offered_load(args: argparse.Namespace, peak_rps: float, duration_s: int) -> tuple[list[float], str]:
    """Per-second offered load: a busy trace window, time-compressed and rate-scaled to `peak_rps`.

    The shape is computed over at least 90 s and then cut, so a shorter run sees the same start.
    """
    n_s = max(duration_s, 90)
    try:
        from autoscaler.sim.workload import load_trace, resolve_trace

        trace = load_trace(resolve_trace(args.trace))
        r = trace.rate_per_second()
        c = max(1, round(args.compression))
        start = int(args.trace_start_s)
        idx = (start + np.arange(n_s * c)) % len(r)
        raw = r[idx].reshape(n_s, c).mean(axis=1)
        name = trace.name
    except (FileNotFoundError, ValueError) as exc:  # no shipped traces: a synthetic rise and fall
        log.warning("trace unavailable (%s); using a synthetic load shape", exc)
        t = np.arange(n_s, dtype=np.float64)
        raw = 0.15 + np.clip(np.sin(np.pi * t / max(n_s, 1)) * 1.2, 0, 1)
        name, c = "synthetic", 1
    smooth = np.convolve(raw, np.ones(15) / 15.0, mode="same")  # ~75 trace-seconds: waves, not spikes
    top = float(smooth.max()) or 1.0
    rate = 0.1 * peak_rps + 0.9 * peak_rps * smooth / top
    return [float(x) for x in rate[:duration_s]], f"{name} from {args.trace_start_s:g} s, {c}x compressed"


def arrivals(rate_rps: list[float], seed: int) -> Any:
    rng = np.random.default_rng(seed)
    out = []
    for i, lam in enumerate(rate_rps):
        n = rng.poisson(lam)
        out.append(np.sort(i + rng.uniform(0.0, 1.0, n)))
    return np.concatenate(out) if out else np.zeros(0)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    summary = asyncio.run(_main(args))
    print(_summary_text(summary))
    return 0


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    from autoscaler.adapter.metrics_api import serve as serve_adapter
    from autoscaler.core.capacity import CapacityModel
    from autoscaler.core.store import DecisionStore
    from autoscaler.core.types import TargetKey
    from autoscaler.emulator import EmulatorReplica, ReplicaConfig, replay
    from autoscaler.runtime.app import Closer
    from autoscaler.runtime.clock import WallClock
    from autoscaler.runtime.demo import DemoSetup, LiveView, LocalCluster, LocalClusterActuator, run_demo
    from autoscaler.runtime.forecast_pool import ForecastPool
    from autoscaler.runtime.loop import ControlLoop
    from autoscaler.runtime.telemetry import Telemetry
    from autoscaler.runtime.telemetry import serve as serve_metrics
    from autoscaler.sources.scrape import ScrapeSource
    from autoscaler.spec import load_spec

    pool = ForecastPool()  # statsmodels in its own process: fits never stall the replicas' event loop
    await asyncio.to_thread(pool.start)
    spec_path = Path(args.spec)
    base = load_spec(spec_path) if spec_path.is_file() else _builtin_spec()
    spec = demo_spec(base, args)
    cap_rps = CapacityModel(spec.profile).capacity_at_slo_rps(spec.batching.initial, spec.slo)
    n_s = max(1, math.ceil(args.duration_s))
    rate, where = offered_load(args, args.peak_replicas * cap_rps, n_s)
    arr = arrivals(rate, args.seed)
    key = TargetKey(spec.target.namespace, spec.target.deployment)
    clock = WallClock()
    store = DecisionStore()
    telemetry = Telemetry(store)
    scrape = ScrapeSource(rate_window_s=6.0, timeout_s=1.0)
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

    cluster = LocalCluster(key, make_replica, startup_delay_s=args.startup_s, on_endpoints=pending.__setitem__)
    actuator = LocalClusterActuator(cluster)
    loop = ControlLoop(
        clock=clock,
        source=scrape,
        actuator=actuator,
        telemetry=telemetry,
        forecaster_factory=pool.driver,
        period_s=args.period_s,
        before_tick=apply_endpoints,
    )
    runner, mport = await serve_metrics(telemetry, "127.0.0.1", args.metrics_port)
    adapter = await serve_adapter(store, now_s=clock.now_s, host="127.0.0.1", port=args.adapter_port, tls=False)
    servers: list[tuple[str, Closer]] = [
        (f"http://127.0.0.1:{mport}/metrics", runner.cleanup),
        (f"{adapter.url}/apis/external.metrics.k8s.io/v1beta1", adapter.close),
    ]
    slo_ms = spec.slo.latency_ms
    description = (
        f"{spec.name}: {where}; peak {max(rate):.0f} rps; ~{cap_rps:.0f} rps/replica at "
        f"p{spec.slo.latency_quantile * 100:g} <= {slo_ms:g} ms (service x{args.dilation:g})"
    )
    print(f"tfserving-autoscaler demo: {description}")
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

    setup = DemoSetup(
        spec,
        rate,
        float(args.duration_s),
        description,
        {"capacity_per_replica_rps": round(cap_rps, 2), "dilation": args.dilation, "compression": args.compression},
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


def _builtin_spec() -> ServingAutoscalerSpec:
    """The example's defaults when the examples/ directory is not around (pip install)."""
    from autoscaler.spec.types import TargetRef

    return ServingAutoscalerSpec(name="resnet50", target=TargetRef("serving", "resnet50", "resnet"), max_replicas=40)


def _summary_text(s: dict[str, Any]) -> str:
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
        f"  replicas: initial {r['initial']}, min {r['min']}, max {r['max']}, final {r['final']}",
        f"  scale events: {ev['up']} up, {ev['down']} down; first scale-up at {s['first_scale_up_s']} s",
        f"  offered load: mean {s['offered_rps']['mean']} rps, peak {s['offered_rps']['peak']} rps",
    ]
    return "\n".join(lines)
