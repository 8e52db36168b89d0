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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from quantrac.core.contract import Reading

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


async def migrate_workers(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("""
        -- Workers of a consumer that splits its cursors: present while seen_until is ahead.
        CREATE TABLE stream_workers (
            consumer   text NOT NULL,
            owner      text NOT NULL,
            seen_until timestamptz NOT NULL,
            PRIMARY KEY (consumer, owner)
        );
        -- Cursors follow committed_batches or another ordered table (alert_events for the
        -- notification outbox); only the former hold back pruning.
        ALTER TABLE stream_cursors ADD COLUMN stream text NOT NULL DEFAULT 'committed_batches';
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


async def cursors_exist(conn: psycopg.AsyncConnection, names: Sequence[str]) -> bool:
    """Whether every one of the cursors ``names`` has been created."""
    cur = await conn.execute(
        "SELECT count(*) FROM stream_cursors WHERE name = ANY(%s)", [list(names)]
    )
    row = await cur.fetchone()
    return row is not None and row[0] == len(names)


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
        "DELETE FROM committed_batches WHERE id <= coalesce((SELECT min(position) FROM"
        " stream_cursors WHERE stream = 'committed_batches'), (SELECT max(id) FROM"
        " committed_batches))"
    )
    return cur.rowcount


async def lag(conn: psycopg.AsyncConnection) -> dict[str, tuple[int, float]]:
    """Per cursor: batches behind the head, and seconds since the oldest unread batch."""
    cur = await conn.execute("""
        SELECT c.name, count(b.id),
               coalesce(extract(epoch FROM now() - min(b.committed_at)), 0)
        FROM stream_cursors c LEFT JOIN committed_batches b ON b.id > c.position
        WHERE c.stream = 'committed_batches' GROUP BY c.name""")
    return {r[0]: (int(r[1]), float(r[2])) for r in await cur.fetchall()}


def worst_lag(behind: Mapping[str, tuple[int, float]], names: Iterable[str]) -> tuple[int, float]:
    """Of the cursors ``names`` in :func:`lag`'s answer: the most batches behind, and the age
    of the oldest batch one of them has not read."""
    mine = [behind[n] for n in names if n in behind]
    return max((b for b, _ in mine), default=0), max((a for _, a in mine), default=0.0)


class Wakeup:
    """LISTEN on its own connection and wake every waiter on a NOTIFY.

    Losing the connection only costs latency: readers also poll at their timeout.
    """

    def __init__(self, url: str, channel: str = CHANNEL):
        self.url = url
        self.channel = channel
        self._waiters: list[asyncio.Event] = []
        self._task: asyncio.Task[None] | None = None

    def waiter(self) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.append(event)
        return event

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name=f"quantrac-listen-{self.channel}")

    def poke(self) -> None:
        for event in self._waiters:
            event.set()

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, application_name="quantrac-listen"
                ) as conn:
                    await conn.execute(f"LISTEN {self.channel}")
                    delay = 0.5
                    self.poke()  # whatever came while we were not listening
                    async for _ in conn.notifies():
                        self.poke()
            except (psycopg.Error, OSError) as exc:
                log.debug("listener on %s reconnecting: %s", self.channel, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)


async def stop_task(task: asyncio.Task[Any], timeout: float = 5.0) -> None:
    """Cancel a background task and wait for it, but never forever: a task stuck in a
    library's clean-up must not hold a shutdown."""
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=timeout)
    if not done:
        log.warning("task %s did not stop within %.0f s", task.get_name(), timeout)
        return
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


async def wait(event: asyncio.Event, timeout: float) -> None:
    """Until ``event`` is set or ``timeout`` passed; then it is cleared for the next wait."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    event.clear()


# --- cursors and leases ----------------------------------------------------------------------


class LeaseLost(RuntimeError):
    """Another worker holds a cursor this one was about to move: its work is not committed."""


_LEASE_LOCK = 0x716C7365  # "qlse": one lease decision at a time, per database


def fair_share(owners: Sequence[str], me: str, total: int) -> int:
    """How many of ``total`` cursors ``me`` should hold among the live ``owners`` (sorted, so
    every worker computes the same split)."""
    ranked = sorted({*owners, me})
    base, extra = divmod(total, len(ranked))
    return base + (1 if ranked.index(me) < extra else 0)


async def register(
    conn: psycopg.AsyncConnection,
    names: Sequence[str],
    position: int,
    stream: str = CHANNEL,
) -> list[str]:
    """Create the cursors that do not exist yet, at ``position``; returns the names created."""
    cur = await conn.execute(
        "INSERT INTO stream_cursors (name, position, stream) SELECT unnest(%s::text[]), %s, %s"
        " ON CONFLICT (name) DO NOTHING RETURNING name",
        [list(names), position, stream],
    )
    return [r[0] for r in await cur.fetchall()]


async def lease(
    conn: psycopg.AsyncConnection,
    consumer: str,
    names: Sequence[str],
    owner: str,
    lease_s: float,
) -> dict[str, int]:
    """Renew what ``owner`` holds and take or give back cursors towards its fair share among the
    consumer's live workers. Returns the cursors held afterwards, with their positions.

    A worker that stops renewing loses its cursors after ``lease_s``; the others then take
    them and resume from their positions. One transaction, serialised by an advisory lock.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LEASE_LOCK])
        await conn.execute(
            "INSERT INTO stream_workers (consumer, owner, seen_until)"
            " VALUES (%s, %s, now() + %s * interval '1 second')"
            " ON CONFLICT (consumer, owner) DO UPDATE SET seen_until = excluded.seen_until",
            [consumer, owner, lease_s],
        )
        await conn.execute("DELETE FROM stream_workers WHERE seen_until < now() - interval '1 h'")
        cur = await conn.execute(
            "SELECT owner FROM stream_workers WHERE consumer = %s AND seen_until > now()",
            [consumer],
        )
        live = [r[0] for r in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT name, position, owner, coalesce(lease_until > now(), false)"
            " FROM stream_cursors WHERE name = ANY(%s) ORDER BY name FOR UPDATE",
            [list(names)],
        )
        rows = await cur.fetchall()
        share = fair_share(live, owner, len(rows))
        mine = [r for r in rows if r[2] == owner]
        free = [r for r in rows if r[2] != owner and (r[2] is None or not r[3])]
        keep = mine[:share] + free[: max(0, share - len(mine))]
        give_back = [r[0] for r in mine[share:]]
        if give_back:
            await conn.execute(
                "UPDATE stream_cursors SET owner = NULL, lease_until = NULL WHERE name = ANY(%s)",
                [give_back],
            )
        held = {str(r[0]): int(r[1]) for r in keep}
        await conn.execute(
            "UPDATE stream_cursors SET owner = %s, lease_until = now() + %s * interval '1 second'"
            " WHERE name = ANY(%s)",
            [owner, lease_s, list(held)],
        )
    return held


async def release(conn: psycopg.AsyncConnection, consumer: str, owner: str) -> None:
    """A clean stop: give everything back at once instead of waiting for the lease to run out."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE stream_cursors SET owner = NULL, lease_until = NULL WHERE owner = %s", [owner]
        )
        await conn.execute(
            "DELETE FROM stream_workers WHERE consumer = %s AND owner = %s", [consumer, owner]
        )


async def advance(
    conn: psycopg.AsyncConnection, moves: dict[str, int], owner: str | None = None
) -> None:
    """Move cursors, inside the transaction that commits the work done up to there. With an
    ``owner``, every cursor must still be leased to it, or LeaseLost rolls the work back."""
    if not moves:
        return
    names, targets = list(moves), list(moves.values())
    cur = await conn.execute(
        "UPDATE stream_cursors c SET position = greatest(c.position, m.position),"
        " updated_at = now() FROM unnest(%s::text[], %s::bigint[]) AS m(name, position)"
        " WHERE c.name = m.name AND (%s::text IS NULL OR c.owner = %s)",
        [names, targets, owner, owner],
    )
    if cur.rowcount != len(names):
        raise LeaseLost(f"cursors {names} are no longer all leased to {owner}")
