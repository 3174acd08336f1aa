"""The daemon's only source of time: a `Clock` protocol, the wall clock and a manual clock for tests.

docs/design.md ("Layout and layering"): nothing outside this module reads wall time. The control loop,
leader election, the spec watcher and the demo take a `Clock`, so tests drive them deterministically
with `ManualClock` and the daemon runs on `WallClock`. Times are seconds since the Unix epoch (`now_s`).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Protocol


class Clock(Protocol):
    """Seconds-based time source with an awaitable sleep."""

    def now_s(self) -> float: ...

    def monotonic_s(self) -> float: ...

    async def sleep(self, duration_s: float) -> None: ...


class WallClock:
    """Real time: `time.time()` for timestamps, `time.monotonic()` for durations."""

    def now_s(self) -> float:
        return time.time()

    def monotonic_s(self) -> float:
        return time.monotonic()

    async def sleep(self, duration_s: float) -> None:
        await asyncio.sleep(max(0.0, duration_s))


class ManualClock:
    """Test clock: time moves only by `advance()`; `sleep()` waits until time has been advanced.

    Sleepers wake in deadline order when `advance()` passes their deadline. Each wake-up yields to
    the event loop so woken tasks can run before the test continues.
    """

    def __init__(self, start_s: float = 1_700_000_000.0) -> None:
        self._now_s = start_s
        self._start_s = start_s
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now_s(self) -> float:
        return self._now_s

    def monotonic_s(self) -> float:
        return self._now_s - self._start_s

    async def sleep(self, duration_s: float) -> None:
        if duration_s <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now_s + duration_s, fut))
        try:
            await fut
        finally:
            self._sleepers = [(d, f) for d, f in self._sleepers if f is not fut]

    @property
    def sleepers(self) -> int:
        """How many tasks are currently sleeping on this clock."""
        return sum(1 for _, f in self._sleepers if not f.done())

    async def advance(self, duration_s: float, *, step_s: float | None = None) -> None:
        """Move time forward, waking sleepers whose deadline passed (in steps of `step_s` if given)."""
        target_s = self._now_s + duration_s
        step = step_s if step_s and step_s > 0 else duration_s
        while True:
            self._now_s = min(target_s, self._now_s + step) if step > 0 else target_s
            for deadline_s, fut in sorted(self._sleepers, key=lambda p: p[0]):
                if deadline_s <= self._now_s and not fut.done():
                    fut.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
            if self._now_s >= target_s:
                return


async def sleep_or_stop(clock: Clock, delay_s: float, stop: asyncio.Event) -> None:
    """Sleep on `clock` for `delay_s`, returning early as soon as `stop` is set."""
    if stop.is_set() or not math.isfinite(delay_s):
        return
    sleeper = asyncio.ensure_future(clock.sleep(delay_s))
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in (sleeper, waiter):
            f.cancel()
