"""Batching between the inputs (MQTT, files) and the database.

Producers ``submit`` an Item and wait until the batch holding it is committed; only then may
they acknowledge it (PUBACK, or moving a file to done/). One writer task commits batches strictly
in order, flushing by size or by time. When PostgreSQL is down the writer keeps retrying the same
batch; producers then wait for room (``max_pending``), which stops the acknowledgements and so
makes the broker stop sending: memory stays bounded and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg

from ingest.contract import Problem, Reason
from ingest.metrics import IngestMetrics
from ingest.stream import CommittedBatch
from ingest.writer import BatchResult, BatchWriter, Item

log = logging.getLogger(__name__)

WriterFactory = Callable[[], Awaitable[BatchWriter]]
# Told about every committed batch, in commit order, right after the commit. Must not block:
# a consumer queues the batch and works on it in its own task.
Subscriber = Callable[[CommittedBatch], None]

_CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError)


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    batch_size: int = 5000
    max_latency_s: float = 0.2
    max_pending: int = 200_000
    retry_initial_s: float = 0.5
    retry_max_s: float = 15.0


class PipelineStopped(RuntimeError):
    pass


class Pipeline:
    def __init__(
        self, writer_factory: WriterFactory, metrics: IngestMetrics, options: PipelineOptions
    ):
        self._writer_factory = writer_factory
        self._writer: BatchWriter | None = None
        self.metrics = metrics
        self.options = options
        self._batch: list[tuple[Item, asyncio.Future[Item]]] = []
        self._batch_readings = 0
        self._pending = 0  # readings submitted and not yet committed (all batches)
        self._first_at = 0.0
        self._wake = asyncio.Event()
        self._room = asyncio.Condition()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.database_ok = True  # false from a failed write until the next successful one
        self.subscribers: list[Subscriber] = []

    @property
    def pending(self) -> int:
        return self._pending

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="quantrac-writer")

    async def submit(self, item: Item) -> Item:
        """Queue the item; return it once committed, with stored/duplicates/conflicts set."""
        if self._closing:
            raise PipelineStopped("ingest is shutting down")
        weight = max(1, len(item.readings))
        async with self._room:
            # One oversized item may always enter an empty pipeline, or it would wait forever.
            await self._room.wait_for(
                lambda: (
                    self._pending == 0
                    or self._pending + weight <= self.options.max_pending
                    or self._closing
                )
            )
        if self._closing:
            raise PipelineStopped("ingest is shutting down")
        future: asyncio.Future[Item] = asyncio.get_running_loop().create_future()
        if not self._batch:
            self._first_at = time.monotonic()
        self._batch.append((item, future))
        self._batch_readings += len(item.readings)
        self._pending += weight
        self.metrics.pending.set(self._pending)
        self._wake.set()
        return await future

    async def close(self, timeout: float = 30.0) -> None:
        """Flush what was submitted, then stop. Items not committed by the timeout stay
        unacknowledged, so the broker redelivers them later."""
        self._closing = True
        async with self._room:
            self._room.notify_all()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                log.error(
                    "database unavailable at shutdown: %d readings left unacknowledged "
                    "for redelivery",
                    self._pending,
                    extra={"event": "shutdown_unflushed", "pending": self._pending},
                )
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        for _, future in self._batch:
            if not future.done():
                future.set_exception(PipelineStopped("not committed before shutdown"))
        self._batch = []
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer.conn.close()

    async def _run(self) -> None:
        opts = self.options
        while True:
            if not self._batch:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            remaining = self._first_at + opts.max_latency_s - time.monotonic()
            if self._batch_readings < opts.batch_size and remaining > 0 and not self._closing:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)
                continue
            batch, self._batch, self._batch_readings = self._batch, [], 0
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Item]]]) -> None:
        items = [item for item, _ in batch]
        weight = sum(max(1, len(it.readings)) for it in items)
        await self._write_with_retry(items)
        self._pending -= weight
        self.metrics.pending.set(self._pending)
        for item, future in batch:
            if not future.done():
                future.set_result(item)
        async with self._room:
            self._room.notify_all()

    async def _write_with_retry(self, items: list[Item]) -> None:
        delay = self.options.retry_initial_s
        while True:
            try:
                if self._writer is None or self._writer.conn.closed:
                    self._writer = await self._writer_factory()
                started = time.monotonic()
                result = await self._writer.write(items)
            except _CONNECTION_ERRORS as exc:
                self.database_ok = False
                self.metrics.database_up.set(0)
                self.metrics.write_failures.inc()
                log.warning(
                    "database unavailable, retrying in %.1f s: %s",
                    delay,
                    exc,
                    extra={"event": "database_retry", "pending": self._pending},
                )
                if self._writer is not None:
                    with contextlib.suppress(Exception):
                        await self._writer.conn.close()
                self._writer = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.options.retry_max_s)
                continue
            except psycopg.Error as exc:
                # Not the connection: something in the data. Find the item and reject it alone.
                self.metrics.write_failures.inc()
                await self._isolate(items, exc)
                return
            self.database_ok = True
            self.metrics.database_up.set(1)
            self._record(items, result, time.monotonic() - started)
            if result.committed is not None:
                self._emit(result.committed)
            return

    async def _isolate(self, items: list[Item], exc: psycopg.Error) -> None:
        if len(items) > 1:
            middle = len(items) // 2
            await self._write_with_retry(items[:middle])
            await self._write_with_retry(items[middle:])
            return
        item = items[0]
        log.error(
            "the database refused a payload's readings: %s",
            exc,
            extra={"event": "storage_refused", "station": item.station_id},
        )
        item.problems = [
            *item.problems,
            *(
                Problem(
                    Reason.STORAGE_REFUSED,
                    f"{r.param}@{r.measured_at.isoformat()}",
                    repr(r.value),
                    f"the database refused this reading: {exc}",
                )
                for r in item.readings
            ),
        ]
        item.readings = []
        await self._write_with_retry(items)

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def _emit(self, batch: CommittedBatch) -> None:
        for subscriber in self.subscribers:
            try:
                subscriber(batch)
            except Exception:
                # A consumer's bug never stops storage; it reads what it missed from its cursor.
                log.exception(
                    "committed-batch subscriber failed", extra={"event": "subscriber_error"}
                )

    def _record(self, items: list[Item], result: BatchResult, seconds: float) -> None:
        m = self.metrics
        m.commit_seconds.observe(seconds)
        m.batch_readings.observe(result.stored + result.duplicates + result.conflicts)
        m.readings_stored.inc(result.stored)
        if result.duplicates:
            m.duplicates.inc(result.duplicates)
        for it in items:
            for problem in it.problems:
                m.rejected(problem.reason, station=it.station_id or "")
            if it.conflicts:
                m.rejected(
                    Reason.CONFLICTING_DUPLICATE, len(it.conflicts), station=it.station_id or ""
                )
            if it.readings:
                newest = max(r.measured_at for r in it.readings)
                m.lag_seconds.observe(max(0.0, (it.received_at - newest).total_seconds()))
                if it.station_id:
                    m.station_reading(it.station_id, newest)
