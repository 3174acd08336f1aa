"""The demo's local half: a local stand-in cluster, its actuator, the live view and the summary.

`tfserving-autoscaler demo` runs the *real* control loop (`ControlLoop`, `decide`, the forecast
driver, the direct-scrape source, the DecisionStore, /metrics and the metrics adapter) against
TF Serving emulator replicas on 127.0.0.1 instead of a Kubernetes cluster. `LocalCluster` plays
the Deployment controller: it starts replicas (which stay LOADING for the startup delay, like a
pod pulling its image and loading the model) and stops them (endpoints removed first, then a
short drain), and `LocalClusterActuator` implements the same `Actuator` protocol as the
Kubernetes one. Emulator replicas and the load generator are siblings of the runtime, so
`commands/demo.py` passes them in as factories.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from autoscaler.actuators.base import ActuationResult, BatchingOutcome, ReplicaStatus, ScaleOutcome, passive_result
from autoscaler.core.types import Decision, TargetKey
from autoscaler.runtime.app import Closer
from autoscaler.runtime.clock import Clock, sleep_or_stop
from autoscaler.runtime.loop import ControlLoop, TickResult
from autoscaler.spec.types import ServingAutoscalerSpec

log = logging.getLogger(__name__)


class ReplicaHandle(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def ready(self) -> bool: ...

    async def stop(self) -> None: ...


ReplicaFactory = Callable[[str, float], Awaitable[ReplicaHandle]]  # (pod name, startup delay s)
EndpointsSink = Callable[[TargetKey, dict[str, str]], None]  # pods with a listening server


@dataclass
class _Pod:
    name: str
    handle: ReplicaHandle | None = None  # None while being created


class LocalCluster:
    """A one-Deployment 'cluster': reconciles running emulator replicas to the desired count."""

    def __init__(
        self,
        key: TargetKey,
        factory: ReplicaFactory,
        *,
        startup_delay_s: float,
        drain_s: float = 0.5,
        on_endpoints: EndpointsSink | None = None,
    ) -> None:
        self.key = key
        self._factory = factory
        self.startup_delay_s = startup_delay_s
        self._drain_s = drain_s
        self._on_endpoints = on_endpoints
        self._lock = threading.Lock()
        self._desired = 0
        self._pods: list[_Pod] = []
        self._seq = 0
        self._bg: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()

    # thread-safe (the actuator runs in worker threads)
    def set_desired(self, n: int) -> None:
        with self._lock:
            self._desired = n

    @property
    def desired(self) -> int:
        with self._lock:
            return self._desired

    def status(self) -> ReplicaStatus:
        with self._lock:
            ready = sum(1 for p in self._pods if p.handle is not None and p.handle.ready)
            return ReplicaStatus(self._desired, ready, max(0, self._desired - ready))

    def ready_urls(self) -> list[str]:
        with self._lock:
            return [p.handle.url for p in self._pods if p.handle is not None and p.handle.ready]

    async def start(self, initial: int) -> None:
        """Start `initial` replicas that are already warm (the Deployment existed before us)."""
        self.set_desired(initial)
        await asyncio.gather(*(self._create(0.0) for _ in range(initial)))

    async def _create(self, delay_s: float) -> None:
        with self._lock:
            self._seq += 1
            pod = _Pod(f"{self.key.deployment}-{self._seq:03d}")
            self._pods.append(pod)
        handle = await self._factory(pod.name, delay_s)
        with self._lock:
            alive = pod in self._pods
            if alive:
                pod.handle = handle
        if not alive:  # scaled down while being created
            await handle.stop()
        self._publish()

    def _publish(self) -> None:
        if self._on_endpoints is not None:
            with self._lock:
                eps = {p.name: p.handle.url for p in self._pods if p.handle is not None}
            self._on_endpoints(self.key, eps)

    async def _remove(self, pod: _Pod) -> None:
        self._publish()  # endpoints first (like a terminating pod leaving its Service)
        await asyncio.sleep(self._drain_s)
        if pod.handle is not None:
            await pod.handle.stop()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def reconcile(self) -> None:
        with self._lock:
            missing = self._desired - len(self._pods)
            victims: list[_Pod] = []
            if missing < 0:
                # like the ReplicaSet controller: not-ready pods first, then the newest
                order = sorted(self._pods, key=lambda p: (p.handle is not None and p.handle.ready, p.name))
                victims = order[:-missing]
                self._pods = [p for p in self._pods if p not in victims]
        for _ in range(max(0, missing)):
            self._spawn(self._create(self.startup_delay_s))
        for pod in victims:
            self._spawn(self._remove(pod))

    async def run(self, clock: Clock, stop: asyncio.Event, interval_s: float = 0.2) -> None:
        while not stop.is_set():
            self.reconcile()
            await sleep_or_stop(clock, interval_s, stop)

    async def shutdown(self) -> None:
        with self._lock:
            pods, self._pods = self._pods, []
        for t in list(self._bg):
            with contextlib.suppress(BaseException):
                await t
        await asyncio.gather(*(p.handle.stop() for p in pods if p.handle is not None), return_exceptions=True)


class LocalClusterActuator:
    """`Actuator` for the LocalCluster: direct mode sets its desired count, like a scale patch."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.scale_events: list[tuple[float, int, int]] = []  # (time_s, from, to)

    def read_replicas(self, spec: ServingAutoscalerSpec) -> ReplicaStatus | None:
        return self.cluster.status()

    def apply(self, spec: ServingAutoscalerSpec, decision: Decision) -> ActuationResult:
        passive = passive_result(spec, decision)
        if passive is not None:
            return passive
        before = self.cluster.desired
        if spec.mode.value != "direct":
            return ActuationResult(decision.target, spec.mode, ScaleOutcome.PUBLISHED, replicas_before=before)
        if decision.desired_replicas == before:
            return ActuationResult(
                decision.target, spec.mode, ScaleOutcome.UNCHANGED, BatchingOutcome.NOT_CONFIGURED, before, before
            )
        self.cluster.set_desired(decision.desired_replicas)
        self.scale_events.append((decision.time_s, before, decision.desired_replicas))
        msg = f"{before} -> {decision.desired_replicas} replicas: {decision.reason}"
        log.info("local cluster scaled", extra={"target": str(decision.target), "detail": msg})
        return ActuationResult(
            decision.target,
            spec.mode,
            ScaleOutcome.SCALED,
            BatchingOutcome.NOT_CONFIGURED,
            before,
            decision.desired_replicas,
            msg,
        )


# ---------------------------------------------------------------------------- view + summary
LoadRunner = Callable[[Callable[[], list[str]]], Awaitable[dict[str, Any]]]


@dataclass
class DemoSetup:
    spec: ServingAutoscalerSpec
    offered_rps: list[float]  # the load the trace will offer, per demo second
    duration_s: float
    description: str
    extra: dict[str, Any] = field(default_factory=dict)


def _row(t_s: float, offered: float | None, r: TickResult, ready: int) -> dict[str, Any]:
    d, o = r.decision, r.observation
    return {
        "t_s": round(t_s, 1),
        "offered_rps": None if offered is None else round(offered, 1),
        "observed_rps": None if d.observed_rps is None else round(d.observed_rps, 1),
        "forecast_rps": None if d.forecast_rps is None else round(d.forecast_rps, 1),
        "desired": d.desired_replicas if d.valid else None,
        "current": o.current_replicas,
        "ready": ready,
        "latency_ms": None if o.latency_ms.value is None else round(o.latency_ms.value, 1),
        "binding": d.binding.value,
        "reason": d.reason,
        "valid": d.valid,
    }


class LiveView:
    """A rich live table on a TTY, plain lines otherwise."""

    def __init__(self, setup: DemoSetup, *, tty: bool | None = None, out: Any = None) -> None:
        self.setup = setup
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.rows: list[dict[str, Any]] = []
        self._live: Any = None

    def start(self) -> None:
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._table(), console=Console(file=self.out), refresh_per_second=4)
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self._live is not None:
            self._live.update(self._table())
        else:
            print(self._line(row), file=self.out, flush=True)

    def _line(self, r: dict[str, Any]) -> str:
        slo = self.setup.spec.slo
        fc = "-" if r["forecast_rps"] is None else f"{r['forecast_rps']:.0f}"
        obs = "-" if r["observed_rps"] is None else f"{r['observed_rps']:.0f}"
        lat = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.0f}"
        return (
            f"t={r['t_s']:4.0f}s load={r['offered_rps'] or 0:5.1f} obs={obs:>4} fc={fc:>4} rps | "
            f"replicas desired={r['desired']} ready={r['ready']} | p{slo.latency_quantile * 100:g}={lat:>5} ms "
            f"(SLO {slo.latency_ms:g}) | {textwrap.shorten(r['reason'], 150, placeholder=' …')}"
        )

    def _table(self) -> Any:
        from rich.table import Table

        slo = self.setup.spec.slo
        table = Table(title=f"tfserving-autoscaler demo — {self.setup.description}", expand=True)
        for col in (
            "t (s)",
            "load rps",
            "observed",
            "forecast",
            "desired",
            "ready",
            f"p{slo.latency_quantile * 100:g} ms",
        ):
            table.add_column(col, justify="right")
        table.add_column("binding / reason", no_wrap=True, overflow="ellipsis", ratio=1)
        for r in self.rows[-18:]:
            lat = r["latency_ms"]
            late = lat is not None and lat > slo.latency_ms
            table.add_row(
                f"{r['t_s']:.0f}",
                f"{r['offered_rps'] or 0:.0f}",
                "-" if r["observed_rps"] is None else f"{r['observed_rps']:.0f}",
                "-" if r["forecast_rps"] is None else f"{r['forecast_rps']:.0f}",
                str(r["desired"]),
                str(r["ready"]),
                "-" if lat is None else (f"[red]{lat:.0f}[/red]" if late else f"{lat:.0f}"),
                f"{r['binding']}: {r['reason'][:80]}",
            )
        return table


async def run_demo(
    setup: DemoSetup,
    *,
    clock: Clock,
    loop: ControlLoop,
    cluster: LocalCluster,
    actuator: LocalClusterActuator,
    load: LoadRunner,
    view: LiveView,
    servers: list[tuple[str, Closer]],
    summary_json: str | None = None,
) -> dict[str, Any]:
    """Run the loop, the cluster and the load for `setup.duration_s`; return (and write) the summary."""
    stop = asyncio.Event()
    spec = setup.spec
    loop.set_specs([spec])
    initial = spec.min_replicas
    await cluster.start(initial)
    # One tick before the load starts: the forecaster's warm start (statsmodels import and first fit
    # in the worker process, seconds on a small machine) and the first scrape happen now, not while
    # the first requests arrive. Its decision (hold: no rates yet) is not part of the run.
    await loop.tick()
    t0 = clock.now_s()
    view.start()

    async def ticker() -> None:
        while not stop.is_set():
            started = clock.monotonic_s()
            for r in await loop.tick():
                t = clock.now_s() - t0
                i = int(t)
                offered = setup.offered_rps[i] if 0 <= i < len(setup.offered_rps) else None
                view.add(_row(t, offered, r, cluster.status().ready_replicas))
            await sleep_or_stop(clock, max(0.0, loop.period_s() - (clock.monotonic_s() - started)), stop)

    tasks = [asyncio.create_task(ticker()), asyncio.create_task(cluster.run(clock, stop))]
    load_task: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(load(cluster.ready_urls))
    try:
        await sleep_or_stop(clock, setup.duration_s, stop)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        view.stop()
        load_summary = await load_task if load_task.done() else await _finish(load_task)
        await cluster.shutdown()
        for _, close in servers:
            with contextlib.suppress(Exception):
                await close()
    summary = summarize(setup, view.rows, actuator, load_summary, initial, [u for u, _ in servers], t0_s=t0)
    if summary_json:
        Path(summary_json).parent.mkdir(parents=True, exist_ok=True)
        Path(summary_json).write_text(json.dumps(summary, indent=2))
    return summary


async def _finish(task: asyncio.Future[dict[str, Any]], grace_s: float = 15.0) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(task, grace_s)
    except TimeoutError:
        return {}


def summarize(
    setup: DemoSetup,
    rows: list[dict[str, Any]],
    actuator: LocalClusterActuator,
    load: dict[str, Any],
    initial: int,
    urls: list[str],
    *,
    t0_s: float,
) -> dict[str, Any]:
    desired = [(r["t_s"], r["desired"]) for r in rows if r["desired"] is not None]
    counts = [d for _, d in desired]
    top = max(counts, default=initial)
    peak_s = next((t for t, d in desired if d == top), None)
    after_peak = [d for t, d in desired if peak_s is not None and t >= peak_s]
    ups = [e for e in actuator.scale_events if e[2] > e[1]]
    downs = [e for e in actuator.scale_events if e[2] < e[1]]
    offered = np.asarray(setup.offered_rps[: int(setup.duration_s)] or [0.0], dtype=np.float64)
    replicas = {
        "initial": initial,
        "min": min(counts, default=initial),
        "max": top,
        "peak_s": peak_s,
        "min_after_peak": min(after_peak, default=top),
        "final": counts[-1] if counts else initial,
    }
    out = {
        "description": setup.description,
        "duration_s": setup.duration_s,
        "slo_ms": setup.spec.slo.latency_ms,
        "slo_quantile": setup.spec.slo.latency_quantile,
        "slo_attainment_target": setup.spec.slo.attainment,
        **load,
        "replicas": replicas,
        "scale_events": {"up": len(ups), "down": len(downs), "total": len(ups) + len(downs)},
        "first_scale_up_s": round(ups[0][0] - t0_s, 1) if ups else None,
        "first_scale_down_s": round(downs[0][0] - t0_s, 1) if downs else None,
        "offered_rps": {
            "mean": round(float(offered.mean()), 2),
            "peak": round(float(offered.max()), 2),
            "peak_s": int(np.argmax(offered)),
        },
        "urls": urls,
        "setup": setup.extra,
        "timeline": rows,
    }
    out["verdict"] = verdict(out, setup.spec)
    return out


def verdict(s: dict[str, Any], spec: ServingAutoscalerSpec) -> str:
    """One line: did the replicas follow the load up and down, and did the SLO hold."""
    r = s["replicas"]
    att = s.get("slo_attainment")
    # two decimals, so 99.86 % never reads as the 99.9 % a goal may be (nor 99.97 % as 100 %)
    att_text = "no requests answered" if att is None else f"SLO attainment {att * 100:.2f}%"
    target = spec.slo.attainment
    slo_ok = att is not None and att >= target
    slo_text = f"{att_text} ({'meets' if slo_ok else 'below'} the {target:.1%} target)"
    rose = r["max"] > r["initial"]
    fell = r["min_after_peak"] < r["max"]
    if rose and fell:
        path = f"{r['initial']}→{r['max']}→{r['min_after_peak']}"
        return f"replicas followed the load: {path}; {slo_text}"
    if rose:
        window = spec.behavior.scale_down.stabilization_window_s
        return (
            f"replicas rose with the load ({r['initial']}→{r['max']}) but the run ended before a scale-down "
            f"(stabilization {window} s; try a longer --duration-s); {slo_text}"
        )
    return f"replicas stayed at {r['initial']} (the load never needed more); {slo_text}"
