"""The daemon's composition: root tasks, servers, signals and graceful shutdown.

One root task per concern, all under one stop Event: the control loop (per tick), the spec
watcher, the leader elector (when enabled), the telemetry server (/metrics, /healthz, /readyz)
and any extra servers the command mounts (the metrics adapter, the KEDA scaler; the adapter is a
sibling package, so `commands/run.py` passes a factory in). SIGTERM/SIGINT set the stop Event:
the loop finishes its tick, the elector releases the Lease, servers close. Spec problems are
reported three ways: a log line, the spec-errors gauge and a SpecInvalid Event on every
Deployment whose last good spec is being kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from autoscaler.runtime.clock import Clock
from autoscaler.runtime.leader import LeaseElector
from autoscaler.runtime.loop import ControlLoop
from autoscaler.runtime.specwatch import SpecWatcher
from autoscaler.runtime.telemetry import serve

log = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]
ServerFactory = Callable[[], Awaitable[tuple[str, Closer]]]  # returns (url for the log line, close)


@dataclass
class Servers:
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9090
    extra: Sequence[ServerFactory] = field(default_factory=tuple)


class Daemon:
    """Runs the root tasks until `stop` is set (or a signal arrives)."""

    def __init__(
        self,
        *,
        clock: Clock,
        loop: ControlLoop,
        watcher: SpecWatcher | None,
        elector: LeaseElector | None = None,
        servers: Servers | None = None,
    ) -> None:
        self.clock = clock
        self.loop = loop
        self.watcher = watcher
        self.elector = elector
        self.servers = servers or Servers()
        self.stop = asyncio.Event()
        self.metrics_url: str | None = None
        self.urls: list[str] = []

    def install_signal_handlers(self) -> None:
        running = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                running.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("shutting down", extra={"signal": sig.name})
        self.stop.set()

    async def run(self) -> None:
        runner, port = await serve(self.loop.telemetry, self.servers.metrics_host, self.servers.metrics_port)
        self.metrics_url = f"http://{self.servers.metrics_host}:{port}/metrics"
        closers: list[Closer] = [runner.cleanup]
        try:
            for factory in self.servers.extra:
                url, close = await factory()
                self.urls.append(url)
                closers.append(close)
            log.info("daemon started", extra={"metrics": self.metrics_url, "servers": self.urls})
            if self.watcher is not None:
                await asyncio.to_thread(self.watcher.poll)  # specs before the first tick
            tasks = [asyncio.create_task(self.loop.run(self.stop), name="control-loop")]
            if self.watcher is not None:
                tasks.append(asyncio.create_task(self.watcher.run(self.stop), name="spec-watcher"))
            if self.elector is not None:
                tasks.append(asyncio.create_task(self.elector.run(self.stop), name="leader-election"))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if t.exception() is not None:
                    log.error("root task failed", extra={"task": t.get_name(), "error": repr(t.exception())})
            self.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for close in reversed(closers):
                with contextlib.suppress(Exception):
                    await close()
            log.info("daemon stopped")
