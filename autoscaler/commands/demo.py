"""`tfserving-autoscaler demo`: the real daemon loop against a local emulated TF Serving cluster.

Owns the demo's composition (it sits above the runtime, the emulator, the simulator's trace
reader and the adapter, which must not import each other) and its story: the packaged demo spec
(`autoscaler/data/demo-spec.yaml`, ResNet-50 on a T4 with a time-dilated service profile so a
laptop can drive several replicas), a packaged window of the Azure LLM 2023 trace compressed to fit
the run, emulator replicas as the local cluster's pods, the load generator, and the metrics adapter
+ /metrics on 127.0.0.1. Both data files are package data (`importlib.resources`), so a plain
`pip install` runs the demo; if they are missing it fails with a clear message, never a made-up load.
Stops by itself after `--duration-s`, prints a summary and a one-line verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import sys
from collections.abc import Iterator
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.spec.types import Mode, ServingAutoscalerSpec

log = logging.getLogger(__name__)

DEMO_SPEC = "demo-spec.yaml"  # in autoscaler/data/
DEMO_TRACE = "azure_llm2023_code_req_300-1300s.csv"  # in autoscaler/data/ (see its README.md)
# The story, in trace seconds: quiet, the burst that starts at 845 s, its tail, quiet again.
WINDOW_S = (790.0, 1030.0)
SMOOTH_TRACE_S = 90  # moving average over the trace's 1 s counts: waves, not single-second spikes
BASELINE = 0.1  # the quiet load, as a fraction of the peak
# The forecaster is warm-started with the trace before the window, as the daemon warm-starts from
# Prometheus history; this many trace seconds (compressed like the window).
HISTORY_TRACE_S = 360.0
# The spec's scale-down stabilization is meant for the default run; a shorter run compresses the
# trace more, so the window shrinks with it (it is a policy timescale matched to the load's).
DEFAULT_DURATION_S = 90.0
MIN_STABILIZATION_S = 5
SCRAPE_WINDOW_S = 4.0  # the direct scrape's rate window (the spec's metricsLagSeconds says how old that is)


class DemoDataError(RuntimeError):
    """The packaged demo data (or a file given instead) cannot be read."""


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


@contextlib.contextmanager
def _data_file(name: str) -> Iterator[Path]:
    ref = resources.files("autoscaler").joinpath("data", name)
    if not ref.is_file():
        raise DemoDataError(
            f"packaged demo data autoscaler/data/{name} is missing from this installation "
            "(reinstall tfserving-autoscaler, or pass --spec/--trace)"
        )
    with resources.as_file(ref) as path:
        yield path


def load_demo_spec(path: str | None) -> ServingAutoscalerSpec:
    """The packaged demo spec, or the first document of `path`."""
    from autoscaler.spec import SpecError, load_spec
    from autoscaler.spec.parse import parse_specs_text

    try:
        if path is not None:
            return load_spec(Path(path))
        with _data_file(DEMO_SPEC) as p:
            return parse_specs_text(p.read_text(encoding="utf-8"), f"autoscaler/data/{DEMO_SPEC}")[0]
    except (OSError, SpecError) as exc:
        raise DemoDataError(f"demo spec: {exc}") from exc


def demo_spec(base: ServingAutoscalerSpec, args: argparse.Namespace) -> ServingAutoscalerSpec:
    """Dilate service time, batch timeout and SLO by `--dilation`; apply the command-line overrides."""
    k = float(args.dilation)
    profile = replace(base.profile, batch_latency_ms=tuple(x * k for x in base.profile.batch_latency_ms))
    initial = replace(base.batching.initial, batch_timeout_us=int(base.batching.initial.batch_timeout_us * k))
    prov = base.provisioning
    if args.period_s is not None:
        prov = replace(prov, decision_period_s=float(args.period_s))
    startup = base.startup
    if args.startup_s is not None:
        s = float(args.startup_s)
        startup = replace(startup, scheduling_s=0.1 * s, image_pull_s=0.3 * s, model_load_s=0.4 * s, warmup_s=0.2 * s)
    behavior = base.behavior
    if args.duration_s < DEFAULT_DURATION_S:
        down = behavior.scale_down
        window_s = max(MIN_STABILIZATION_S, round(down.stabilization_window_s * args.duration_s / DEFAULT_DURATION_S))
        behavior = replace(
            behavior, scale_down=replace(down, stabilization_window_s=min(window_s, down.stabilization_window_s))
        )
    return replace(
        base,
        mode=Mode.DIRECT,  # the local cluster is the Deployment; nothing else scales it
        behavior=behavior,
        max_replicas=int(args.max_replicas) if args.max_replicas is not None else base.max_replicas,
        slo=replace(base.slo, latency_ms=base.slo.latency_ms * k),
        profile=profile,
        batching=replace(base.batching, tune=False, initial=initial),
        provisioning=prov,
        startup=replace(startup, jitter_cv=0.0),
        outputs=replace(base.outputs, decisions_path=args.decisions),
    )


def offered_load(
    args: argparse.Namespace, peak_rps: float, duration_s: int
) -> tuple[list[float], list[float], str, float]:
    """Per-second offered load: the trace window, smoothed, compressed to fit the run, scaled to `peak_rps`.

    Returns (rates for the run, the same shaping applied to the `HISTORY_TRACE_S` before the window
    for the forecaster's warm start, where it comes from, compression in trace seconds per demo second).
    """
    from autoscaler.sim.traces import resolve_trace
    from autoscaler.sim.workload import load_trace

    w0, w1 = float(args.trace_start_s), float(args.trace_end_s)
    if not (0.0 <= w0 < w1):
        raise DemoDataError(f"trace window: expected 0 <= --trace-start-s < --trace-end-s (got {w0:g}, {w1:g})")
    pad = float(SMOOTH_TRACE_S)
    h0 = max(0.0, w0 - HISTORY_TRACE_S)
    start = max(0.0, h0 - pad)
    with contextlib.ExitStack() as stack:
        path = resolve_trace(args.trace) if args.trace else stack.enter_context(_data_file(DEMO_TRACE))
        try:
            whole = load_trace(path).timestamps_s  # a per-request file must span the window
            trace = load_trace(path, start_s=start, duration_s=w1 + pad - start)
        except (OSError, ValueError) as exc:
            raise DemoDataError(f"demo trace: {exc}") from exc
        if whole is not None and (len(whole) == 0 or whole[0] > h0 or whole[-1] < w1):
            span = f"{whole[0]:.0f}-{whole[-1]:.0f} s" if len(whole) else "no requests"
            raise DemoDataError(
                f"demo trace {path.name} covers {span}, not the window {w0:g}-{w1:g} s "
                f"and the {w0 - h0:g} s of history before it"
            )
    per_s = np.nan_to_num(trace.rate_per_second())
    smooth = np.convolve(per_s, np.ones(SMOOTH_TRACE_S) / SMOOTH_TRACE_S, mode="same")
    compression = float(args.compression) if args.compression else (w1 - w0) / duration_s
    n_hist = int((w0 - h0) / compression)
    edges = (w0 - start) + np.arange(-n_hist, duration_s + 1) * compression
    idx = np.clip(edges.astype(np.int64), 0, len(smooth) - 1)
    shape = np.array([smooth[a : max(b, a + 1)].mean() for a, b in zip(idx[:-1], idx[1:], strict=True)])
    top = float(shape[n_hist:].max()) or 1.0
    rate = peak_rps * (BASELINE + (1.0 - BASELINE) * shape / top)
    where = (
        f"{trace.name} (Azure LLM inference 2023, CC-BY-4.0) seconds {w0:g}-{w1:g}, "
        f"{SMOOTH_TRACE_S} s moving average, compressed {compression:.2g}x"
    )
    return [float(x) for x in rate[n_hist:]], [float(x) for x in rate[:n_hist]], where, compression


def history_fetcher(history_rps: list[float]) -> Any:
    """The loop's warm-start hook: the pre-window load, averaged to the forecaster's step."""

    def fetch(spec: ServingAutoscalerSpec, now_s: float) -> Any:
        step = max(1, int(spec.forecaster.step_s))
        h = np.asarray(history_rps, dtype=np.float64)
        h = h[len(h) % step :]
        return h.reshape(-1, step).mean(axis=1) if len(h) else h

    return fetch


def arrivals(rate_rps: list[float], seed: int) -> Any:
    rng = np.random.default_rng(seed)
    out = []
    for i, lam in enumerate(rate_rps):
        n = rng.poisson(lam)
        out.append(np.sort(i + rng.uniform(0.0, 1.0, n)))
    return np.concatenate(out) if out else np.zeros(0)


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
    from autoscaler.emulator import EmulatorReplica, ReplicaConfig, replay
    from autoscaler.runtime.app import Closer
    from autoscaler.runtime.clock import WallClock
    from autoscaler.runtime.demo import DemoSetup, LiveView, LocalCluster, LocalClusterActuator, run_demo
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
