"""The committed stream: exactly what storage committed, batch by batch, for every consumer.

The writer appends one ``committed_batches`` row in the transaction that stores a batch's
readings, holding an advisory lock from that insert to the commit, so batch ids are taken in
commit order by every ingest worker: a reader that has seen batch n has seen every batch below n
that will ever exist. A row carries only what was stored (no duplicate of an earlier reading, no
conflict, no rejection), each reading with its station, status and received time.

In one process, consumers subscribe to the pipeline and get each batch right after the commit.
Across processes they follow the table by a durable cursor (``stream_cursors``), woken by
``NOTIFY committed_batches``. A cursor can be leased (owner, lease expiry) so that several workers
split a consumer's partitions. Rows are pruned once every registered cursor has passed them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec
import psycopg

from ingest.contract import Reading

log = logging.getLogger(__name__)

CHANNEL = "committed_batches"
# Taken from the outbox insert to the commit: batch ids are then handed out in commit order.
COMMIT_ORDER_LOCK = 0x71737472  # "qstr"


class CommittedItem(msgspec.Struct, array_like=True, frozen=True):
    """The stored readings of one message or file."""

    station_id: str
    received_at: datetime
    source: str  # "mqtt", "file"
    readings: list[Reading]


@dataclass(frozen=True, slots=True)
class CommittedBatch:
    id: int
    items: Sequence[CommittedItem]

    @property
    def readings(self) -> int:
        return sum(len(item.readings) for item in self.items)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[CommittedItem])


def encode(items: Sequence[CommittedItem]) -> bytes:
    return _encoder.encode(items)


def decode(batch_id: int, payload: bytes) -> CommittedBatch:
    return CommittedBatch(batch_id, _decoder.decode(payload))


async def migrate(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("""
        CREATE TABLE committed_batches (
            id           bigserial PRIMARY KEY,
            committed_at timestamptz NOT NULL DEFAULT now(),
            readings     integer NOT NULL,
            payload      bytea NOT NULL
        );
        -- Already compact msgpack, read once or twice: compressing it would only cost CPU.
        ALTER TABLE committed_batches ALTER COLUMN payload SET STORAGE EXTERNAL;
        CREATE TABLE stream_cursors (
            name        text PRIMARY KEY,
            position    bigint NOT NULL,
            owner       text,
            lease_until timestamptz,
            updated_at  timestamptz NOT NULL DEFAULT now()
        );
    """)


_APPEND = "INSERT INTO committed_batches (readings, payload) VALUES (%s, %s) RETURNING id"


async def append(cur: psycopg.AsyncCursor, items: Sequence[CommittedItem]) -> int:
    """Inside the writer's transaction, as its last statement before the commit."""
    await cur.execute("SELECT pg_advisory_xact_lock(%s)", [COMMIT_ORDER_LOCK])
    await cur.execute(_APPEND, [sum(len(i.readings) for i in items), encode(items)])
    row = await cur.fetchone()
    assert row is not None
    await cur.execute("SELECT pg_notify(%s, %s)", [CHANNEL, str(row[0])])
    return int(row[0])


async def head(conn: psycopg.AsyncConnection) -> int:
    """The newest batch id (0 when none was ever written)."""
    cur = await conn.execute(
        "SELECT coalesce(max(id), (SELECT last_value FROM committed_batches_id_seq"
        " WHERE is_called), 0) FROM committed_batches"
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def read_after(
    conn: psycopg.AsyncConnection, position: int, limit: int = 20, skip: Sequence[int] = ()
) -> list[tuple[int, bytes | None]]:
    """Batches after ``position`` in order; payloads of ids in ``skip`` (already in memory) are
    not sent again."""
    cur = await conn.execute(
        "SELECT id, CASE WHEN id = ANY(%s) THEN NULL ELSE payload END FROM committed_batches"
        " WHERE id > %s ORDER BY id LIMIT %s",
        [list(skip), position, limit],
    )
    return [(int(r[0]), r[1]) for r in await cur.fetchall()]


async def prune(conn: psycopg.AsyncConnection) -> int:
    """Delete the batches every registered cursor has passed (all of them when none is)."""
    cur = await conn.execute(
        "DELETE FROM committed_batches WHERE id <= coalesce("
        "(SELECT min(position) FROM stream_cursors), (SELECT max(id) FROM committed_batches))"
    )
    return cur.rowcount


async def lag(conn: psycopg.AsyncConnection) -> dict[str, tuple[int, float]]:
    """Per cursor: batches behind the head, and seconds since the oldest unread batch."""
    cur = await conn.execute("""
        SELECT c.name, count(b.id),
               coalesce(extract(epoch FROM now() - min(b.committed_at)), 0)
        FROM stream_cursors c LEFT JOIN committed_batches b ON b.id > c.position
        GROUP BY c.name""")
    return {r[0]: (int(r[1]), float(r[2])) for r in await cur.fetchall()}


class Wakeup:
    """LISTEN committed_batches on its own connection; ``wait`` returns on a NOTIFY or timeout.

    Losing the connection only costs latency: the reader also polls every ``timeout``.
    """

    def __init__(self, url: str):
        self.url = url
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="quantrac-stream-listen")

    def poke(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, application_name="quantrac-stream"
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    self._event.set()  # whatever came while we were not listening
                    async for _ in conn.notifies():
                        self._event.set()
            except (psycopg.Error, OSError) as exc:
                log.debug("stream listener reconnecting: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
