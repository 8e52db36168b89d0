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

from quantrac.core.contract import Problem, Reason
from quantrac.ingest.metrics import IngestMetrics
from quantrac.ingest.storable import plain_ascii, storable_key
from quantrac.ingest.stream import CommittedBatch
from quantrac.ingest.writer import BatchResult, BatchWriter, Item

log = logging.getLogger(__name__)

WriterFactory = Callable[[], Awaitable[BatchWriter]]
# Told about every committed batch, in commit order, right after the commit. Must not block:
# a consumer queues the batch and works on it in its own task.
Subscriber = Callable[[CommittedBatch], None]

# Failures of the database itself, retried as long as they last; any other error is something
# in the batch, isolated. SQLSTATE classes: 08 connection, 40 rollback (deadlock, serialization),
# 53 insufficient resources (disk full), 55 lock not available, 57 operator intervention
# (shutdown, cancel), 58 system error (I/O). Not 54 (program limit: a value too large for an
# index), which a payload can cause.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})


def _is_transient(exc: Exception, writer: BatchWriter | None) -> bool:
    if isinstance(exc, psycopg.InterfaceError | OSError):
        return True
    if writer is None or writer.conn.closed or writer.conn.broken:
        return True  # no working connection (the factory failed, or the server went away)
    if isinstance(exc, psycopg.OperationalError):
        return exc.sqlstate is None or exc.sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
    return False


def _plain(problem: Problem) -> Problem:
    return Problem(
        problem.reason,
        plain_ascii(problem.field, 100),
        plain_ascii(problem.value, 100),
        plain_ascii(problem.detail, 300),
    )


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    batch_size: int = 5000
    max_latency_s: float = 0.2
    max_pending: int = 200_000
    retry_initial_s: float = 0.5
    retry_max_s: float = 15.0


class PipelineStopped(RuntimeError):
    pass


class WriteFailed(RuntimeError):
    """An unexpected error while committing: the item is not acknowledged (redelivered later)."""


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
        self.stuck_since: float | None = None  # epoch seconds of the first failed write, if any
        self.writer_failed: BaseException | None = None  # the writer task ended by an error

    @property
    def pending(self) -> int:
        return self._pending

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="quantrac-writer")
        self._task.add_done_callback(self._writer_ended)

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # Never expected (every write error is handled); if it happens, say so loudly and
        # make /healthz fail so the process gets restarted.
        self.writer_failed = task.exception()
        self._storage_failing()
        log.critical(
            "the writer task died; nothing more will be stored",
            exc_info=self.writer_failed,
            extra={"event": "writer_died"},
        )

    @property
    def healthy(self) -> bool:
        return self.database_ok and self.writer_failed is None

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
            try:
                await self._commit(batch)
            except Exception as exc:  # a bug; the writer must live on and the producers know
                log.exception("batch commit failed unexpectedly", extra={"event": "bug"})
                for _, future in batch:
                    if not future.done():
                        future.set_exception(WriteFailed(f"{type(exc).__name__}: {exc}"))

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Item]]]) -> None:
        items = [item for item, _ in batch]
        weight = sum(max(1, len(it.readings)) for it in items)
        try:
            await self._write_with_retry(items)
        finally:
            self._pending -= weight
            self.metrics.pending.set(self._pending)
            async with self._room:
                self._room.notify_all()
        for item, future in batch:
            if not future.done():
                future.set_result(item)

    async def _write_with_retry(self, items: list[Item]) -> None:
        """Commit the items; never raises, never gives up on a working database, and never
        retries forever what the database refuses (see ``_isolate``)."""
        error = await self._attempt(items)
        if error is not None:
            await self._isolate(items, error)

    async def _attempt(self, items: list[Item]) -> Exception | None:
        """Write until committed (None) or refused for its content (the error). Only a
        failure of the database itself is retried, with backoff, as long as it lasts."""
        delay = self.options.retry_initial_s
        while True:
            try:
                if self._writer is None or self._writer.conn.closed:
                    self._writer = await self._writer_factory()
                started = time.monotonic()
                result = await self._writer.write(items)
            except Exception as exc:
                if not _is_transient(exc, self._writer):
                    self.metrics.write_failures.inc()
                    return exc
                self._storage_failing()
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
            self._storage_working()
            try:
                self._record(items, result, time.monotonic() - started)
            except Exception:  # counting must never undo a commit
                log.exception("metrics of a committed batch failed", extra={"event": "bug"})
            if result.committed is not None:
                self._emit(result.committed)
            return None

    async def _isolate(self, items: list[Item], error: Exception) -> None:
        """The database refused the batch for something in it: bisect down to the item that
        causes it, so everything else commits, then store that item in ever plainer forms."""
        if len(items) > 1:
            middle = len(items) // 2
            await self._write_with_retry(items[:middle])
            await self._write_with_retry(items[middle:])
            return
        item = items[0]
        log.error(
            "the database refused a payload's data: %s",
            error,
            extra={
                "event": "storage_refused",
                "station": storable_key(item.station_id),
                "topic": storable_key(item.topic),
                "error": type(error).__name__,
            },
        )
        detail = plain_ascii(f"{type(error).__name__}: {error}", 300)
        # 1. Its readings as they are, its rejections in plain ASCII.
        item.problems = [_plain(p) for p in item.problems]
        item.payload_excerpt = plain_ascii(item.payload_excerpt, 200)
        if item.readings:
            error2 = await self._attempt(items)
            if error2 is None:
                return
            detail = plain_ascii(f"{type(error2).__name__}: {error2}", 300)
        # 2. Its readings refused too, each with the database's reason.
        item.problems = [
            *item.problems,
            *(
                Problem(
                    Reason.STORAGE_REFUSED,
                    f"{r.param}@{r.measured_at.isoformat()}",
                    repr(r.value),
                    f"the database refused this reading: {detail}",
                )
                for r in item.readings
            ),
        ]
        if not item.readings:
            item.problems.append(
                Problem(
                    Reason.STORAGE_REFUSED,
                    "payload",
                    "",
                    f"the database refused what was stored about this payload: {detail}",
                )
            )
        item.readings = []
        error3 = await self._attempt(items)
        if error3 is None:
            return
        # 3. Nothing of it can be stored. Acknowledge it anyway (with its problems in the
        # feedback): redelivering it would fail the same way forever.
        self.metrics.unstorable.inc()
        log.error(
            "a payload's rejection could not be stored either; acknowledged without a record: %s",
            error3,
            extra={
                "event": "storage_refused_unrecorded",
                "station": storable_key(item.station_id),
                "topic": storable_key(item.topic),
                "problems": [p.to_json() for p in item.problems[:20]],
            },
        )
        for problem in item.problems:
            self.metrics.rejected(problem.reason)

    def _storage_failing(self) -> None:
        self.database_ok = False
        self.metrics.database_up.set(0)
        if self.stuck_since is None:
            self.stuck_since = time.time()
            self.metrics.stuck_since.set(self.stuck_since)

    def _storage_working(self) -> None:
        self.database_ok = True
        self.metrics.database_up.set(1)
        if self.stuck_since is not None:
            self.stuck_since = None
            self.metrics.stuck_since.set(0)

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
