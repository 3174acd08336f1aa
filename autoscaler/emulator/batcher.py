"""An asyncio copy of TF Serving's session batch scheduler for one emulated replica.

Owns the queueing behaviour that decides latency and rejections, with TF Serving's semantics (tensorflow
`tensorflow/core/kernels/batching_util/shared_batch_scheduler.h`, configured by `BatchingParameters` in
`tensorflow_serving/servables/tensorflow/session_bundle_config.proto`): tasks join the open batch while
it has room (`max_batch_size` counts rows, not requests); a batch is processed when full or when
`batch_timeout_us` has passed since it opened (at once with timeout 0); `num_batch_threads` batches run
concurrently; when `max_enqueued_batches` batches are already waiting and a new batch is needed, the
task fails with UNAVAILABLE. Processing a batch is `await asyncio.sleep()` of the service time from the
replica's profile, divided by `time_scale` so tests can run faster.

Busy time (at least one batch in flight) is accumulated for the fake DCGM exporter's GPU
utilization. A multi-model server has one queue per model sharing one `device` semaphore: a batch
waits for the device before it starts, as batches of all models run on the one GPU. Time comes
from the event loop's monotonic clock: this is a live server stand-in.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from autoscaler.spec.types import BatchingParams


class QueueFullError(Exception):
    """The batch queue already holds `max_enqueued_batches` batches (TF: UNAVAILABLE)."""


class TaskTooLargeError(Exception):
    """A request has more rows than `max_batch_size` (TF: INVALID_ARGUMENT)."""


@dataclass
class BatchStats:
    """Called once per executed batch: rows, and each task's queue wait in seconds."""

    size: int
    queue_waits_s: list[float]
    service_s: float
    started_s: float = 0.0  # event-loop time the batch began executing (on the device)


@dataclass
class _Task:
    rows: int
    enqueued_s: float
    future: asyncio.Future[float]


@dataclass
class _Batch:
    opened_s: float
    tasks: list[_Task] = field(default_factory=list)
    rows: int = 0
    closed: bool = False


class BatchQueue:
    """One model's batch queue with `num_batch_threads` worker tasks."""

    def __init__(
        self,
        params: BatchingParams,
        service_ms: Callable[[int], float],
        *,
        time_scale: float = 1.0,
        on_batch: Callable[[BatchStats], None] | None = None,
        device_parallelism: int = 1,
        device: asyncio.Semaphore | None = None,
    ) -> None:
        """`device`: shared by the queues of every model of one server (one queue per model, one
        GPU): a batch holds it while it executes, so the models' service times add up on the device."""
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.params = params
        # Workers that actually execute: the device runs min(threads, parallelism) batches at once
        # (the profile times one batch alone), exactly as core/batchqueue.py models it.
        self._servers = max(1, min(params.num_batch_threads, device_parallelism))
        self._service_ms = service_ms
        self._time_scale = time_scale
        self._on_batch = on_batch
        self._device = device
        self._batches: deque[_Batch] = deque()
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self._busy_s = 0.0
        self._busy_since_s: float | None = None
        self._loop = asyncio.get_running_loop()

    @property
    def timeout_s(self) -> float:
        return self.params.batch_timeout_us / 1e6 / self._time_scale

    def now_s(self) -> float:
        return self._loop.time()

    def start(self) -> None:
        for i in range(self._servers):
            self._workers.append(asyncio.create_task(self._worker(), name=f"batch-thread-{i}"))

    async def stop(self) -> None:
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        for b in self._batches:
            for t in b.tasks:
                if not t.future.done():
                    t.future.set_exception(QueueFullError("server shutting down"))
        self._batches.clear()

    def busy_seconds(self) -> float:
        """Cumulative time with at least one batch executing (the 'GPU busy' time)."""
        if self._busy_since_s is not None:
            return self._busy_s + (self.now_s() - self._busy_since_s)
        return self._busy_s

    @property
    def enqueued_batches(self) -> int:
        return len(self._batches)

    async def submit(self, rows: int = 1) -> float:
        """Enqueue a task of `rows` rows; returns its queue wait (s) once its batch has run."""
        if rows > self.params.max_batch_size:
            raise TaskTooLargeError(
                f"Task size {rows} is larger than maximum input batch size {self.params.max_batch_size}"
            )
        now = self.now_s()
        open_batch = self._batches[-1] if self._batches and not self._batches[-1].closed else None
        if open_batch is None or open_batch.rows + rows > self.params.max_batch_size:
            if open_batch is not None:
                open_batch.closed = True
            if len(self._batches) >= self.params.max_enqueued_batches:
                raise QueueFullError("The batch scheduling queue to which this session belongs is full")
            open_batch = _Batch(opened_s=now)
            self._batches.append(open_batch)
        fut: asyncio.Future[float] = self._loop.create_future()
        open_batch.tasks.append(_Task(rows, now, fut))
        open_batch.rows += rows
        if open_batch.rows >= self.params.max_batch_size:
            open_batch.closed = True
        self._wake.set()
        return await fut

    def _take_ready(self) -> tuple[_Batch | None, float | None]:
        """Pop the head batch if it may run now; else return how long until it may."""
        if not self._batches:
            return None, None
        head = self._batches[0]
        wait_s = head.opened_s + self.timeout_s - self.now_s()
        if head.closed or wait_s <= 0:
            return self._batches.popleft(), None
        return None, wait_s

    async def _worker(self) -> None:
        while True:
            batch, wait_s = self._take_ready()
            if batch is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), wait_s)
                except TimeoutError:
                    pass
                continue
            await self._run(batch)

    async def _run(self, batch: _Batch) -> None:
        if self._device is None:
            await self._execute(batch)
            return
        async with self._device:  # wait for the device the server's other models share
            await self._execute(batch)

    async def _execute(self, batch: _Batch) -> None:
        start = self.now_s()
        if self._in_flight == 0:
            self._busy_since_s = start
        self._in_flight += 1
        service_s = self._service_ms(batch.rows) / 1e3 / self._time_scale
        try:
            await asyncio.sleep(service_s)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._busy_since_s is not None:
                self._busy_s += self.now_s() - self._busy_since_s
                self._busy_since_s = None
        waits = [start - t.enqueued_s for t in batch.tasks]
        if self._on_batch is not None:
            self._on_batch(BatchStats(batch.rows, waits, service_s, start))
        for t, w in zip(batch.tasks, waits, strict=True):
            if not t.future.done():
                t.future.set_result(w)
