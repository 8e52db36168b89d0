"""The committed stream against real PostgreSQL: what leaves the writer is exactly what it
stored, in the same transaction as the readings, readable by cursor and pruned behind cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from quantrac.core.contract import Problem, Reading, Reason, Status
from quantrac.ingest import stream
from quantrac.ingest.schema import POSTGRES, StorageOptions, upgrade
from quantrac.ingest.writer import BatchWriter, Item

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def item(station: str, *readings: tuple[str, int, float, int], problems: int = 0) -> Item:
    return Item(
        received_at=datetime.now(UTC),
        station_id=station,
        topic=f"stations/{station}/data",
        source="mqtt",
        seq=None,
        payload_excerpt="{}",
        readings=[
            Reading(station, p, T0 + timedelta(minutes=m), v, Status(s)) for p, m, v, s in readings
        ],
        problems=[Problem(Reason.UNIT_MISMATCH, "x", "y", "z") for _ in range(problems)],
    )


def keys(batch: stream.CommittedBatch) -> list[tuple[str, str, int, float, int]]:
    return [
        (i.station_id, r.param, int((r.measured_at - T0).total_seconds() // 60), r.value, r.status)
        for i in batch.items
        for r in i.readings
    ]


async def test_the_batch_holds_what_was_stored_and_no_duplicate_conflict_or_rejection(db_conn):
    await upgrade(db_conn, StorageOptions(backend=POSTGRES))
    writer = BatchWriter(db_conn, POSTGRES)
    await writer.prepare()
    first = await writer.write(
        [item("WW1", ("COD", 0, 50.0, 0), ("pH", 0, 7.0, 2)), item("AIR1", ("PM10", 5, 9.0, 0))]
    )
    assert first.committed is not None
    assert keys(first.committed) == [
        ("WW1", "COD", 0, 50.0, 0),
        ("WW1", "pH", 0, 7.0, 2),
        ("AIR1", "PM10", 5, 9.0, 0),
    ]
    # Again: one duplicate, one conflict (another value), one new reading and a rejection.
    second = await writer.write(
        [
            item("WW1", ("COD", 0, 50.0, 0), ("pH", 0, 7.5, 2), ("COD", 5, 51.0, 0), problems=1),
        ]
    )
    assert (second.stored, second.duplicates, second.conflicts) == (1, 1, 1)
    assert second.committed is not None and second.committed.id > first.committed.id
    assert keys(second.committed) == [("WW1", "COD", 5, 51.0, 0)]
    only_duplicates = await writer.write([item("WW1", ("COD", 0, 50.0, 0))])
    assert only_duplicates.committed is None  # nothing stored: nothing to tell consumers

    # The same batches, from the table, in commit order.
    rows = await stream.read_after(db_conn, 0)
    assert [r[0] for r in rows] == [first.committed.id, second.committed.id]
    decoded = [stream.decode(i, p) for i, p in rows if p is not None]
    assert [keys(b) for b in decoded] == [keys(first.committed), keys(second.committed)]
    assert decoded[0].items[0].received_at == first.committed.items[0].received_at
    # Payloads already in memory are not sent again.
    skipped = await stream.read_after(db_conn, 0, skip=[first.committed.id])
    assert skipped[0] == (first.committed.id, None) and skipped[1][1] is not None
    await db_conn.commit()


async def test_batches_are_pruned_once_every_cursor_passed_them(db_conn):
    await upgrade(db_conn, StorageOptions(backend=POSTGRES))
    writer = BatchWriter(db_conn, POSTGRES)
    await writer.prepare()
    ids = []
    for minute in range(3):
        result = await writer.write([item("WW1", ("COD", minute, 50.0, 0))])
        assert result.committed is not None
        ids.append(result.committed.id)
    await db_conn.execute(
        "INSERT INTO stream_cursors (name, position) VALUES ('a', %s), ('b', %s)", [ids[1], ids[0]]
    )
    assert await stream.prune(db_conn) == 1  # only what both cursors passed
    lag = await stream.lag(db_conn)
    assert lag["a"][0] == 1 and lag["b"][0] == 2
    await db_conn.execute("UPDATE stream_cursors SET position = %s", [ids[2]])
    assert await stream.prune(db_conn) == 2
    assert await stream.head(db_conn) == ids[2]  # the head survives pruning
    await db_conn.commit()
