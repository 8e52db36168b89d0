"""Both storage backends: plain PostgreSQL (partitions, own rollup) and TimescaleDB."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from quantrac.core.contract import Reading, Status
from quantrac.ingest.schema import (
    POSTGRES,
    TIMESCALE,
    StorageOptions,
    drop_expired_partitions,
    partition_name,
    upgrade,
)
from quantrac.ingest.writer import BatchWriter, Item
from quantrac.localservers import PostgresServer, find_postgres_bindir

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def item(*readings: tuple[str, datetime, float, int], station: str = "WW1") -> Item:
    return Item(
        received_at=datetime.now(UTC),
        station_id=station,
        topic=f"stations/{station}/data",
        source="mqtt",
        seq=None,
        payload_excerpt="{}",
        readings=[Reading(station, p, t, v, Status(s)) for p, t, v, s in readings],
        problems=[],
    )


async def test_plain_backend_partitions_retention_and_idempotent_upgrade(db_conn):
    opts = StorageOptions(backend=POSTGRES, retention_days=90, partitions_ahead_months=2)
    backend, applied = await upgrade(db_conn, opts, now=NOW)
    assert (backend, applied) == (POSTGRES, [1, 2, 3, 4, 5])
    assert await upgrade(db_conn, opts, now=NOW) == (POSTGRES, [])
    cur = await db_conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'readings'::regclass ORDER BY 1"
    )
    names = [r[0] for r in await cur.fetchall()]
    # 90 days back from 21 November is August; two months ahead is January.
    assert names == [
        "readings_y2026m08",
        "readings_y2026m09",
        "readings_y2026m10",
        "readings_y2026m11",
        "readings_y2026m12",
        "readings_y2027m01",
    ]
    dropped = await drop_expired_partitions(db_conn, opts, NOW + timedelta(days=20))
    assert dropped == ["readings_y2026m08"]


async def test_writer_creates_a_missing_month_and_classifies_duplicates(db_conn):
    await upgrade(
        db_conn, StorageOptions(backend=POSTGRES, partitions_ahead_months=1), now=datetime.now(UTC)
    )
    writer = BatchWriter(db_conn, POSTGRES)
    await writer.prepare()
    far = datetime.now(UTC).replace(microsecond=0) + timedelta(days=70)
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    first = item(("COD", t, 50.0, 0), ("COD", far, 51.0, 0))
    result = await writer.write([first])
    assert (result.stored, first.stored) == (2, 2)
    cur = await db_conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", [partition_name(far.replace(day=1))]
    )
    assert (await cur.fetchone())[0]

    same, different, inside = (
        item(("COD", t, 50.0, 0)),
        item(("COD", t, 52.0, 0)),
        item(("TSS", t, 9.0, 0), ("TSS", t, 9.5, 0)),
    )
    result = await writer.write([same, different, inside])
    assert (same.stored, same.duplicates, same.conflicts) == (0, 1, [])
    assert different.stored == 0 and different.conflicts[0].reason.value == "conflicting_duplicate"
    assert inside.stored == 1 and len(inside.conflicts) == 1
    assert (result.stored, result.duplicates, result.conflicts, result.rejections) == (1, 1, 2, 2)
    cur = await db_conn.execute("SELECT param, value FROM readings ORDER BY param, measured_at")
    assert await cur.fetchall() == [("COD", 50.0), ("COD", 51.0), ("TSS", 9.0)]


# --- TimescaleDB ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def timescale_url() -> Iterator[str]:
    bindir = find_postgres_bindir()
    server = PostgresServer(
        Path(tempfile.mkdtemp(prefix="quantrac-ts-")), timescale=True, durable=False, bindir=bindir
    )
    if bindir is None or not server.timescale_available():
        pytest.skip("TimescaleDB extension not installed on this machine")
    server.start()
    yield server.url
    server.stop("immediate")


async def test_timescale_backend_end_to_end(timescale_url):
    async with await psycopg.AsyncConnection.connect(timescale_url, autocommit=False) as conn:
        opts = StorageOptions(backend="auto", compression_after_days=7, retention_days=365)
        assert await upgrade(conn, opts) == (TIMESCALE, [1, 2, 3, 4, 5])
        assert await upgrade(conn, opts) == (TIMESCALE, [])
        await conn.commit()
        cur = await conn.execute(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
        )
        assert await cur.fetchall() == [("readings", True)]
        cur = await conn.execute(
            "SELECT attname, segmentby_column_index FROM timescaledb_information."
            "compression_settings WHERE segmentby_column_index IS NOT NULL ORDER BY 2"
        )
        assert [r[0] for r in await cur.fetchall()] == ["station_id", "param"]
        cur = await conn.execute(
            "SELECT proc_name FROM timescaledb_information.jobs "
            "WHERE hypertable_name IS NOT NULL ORDER BY 1"
        )
        assert [r[0] for r in await cur.fetchall()] == [
            "policy_compression",
            "policy_refresh_continuous_aggregate",
            "policy_retention",
        ]

        writer = BatchWriter(conn, TIMESCALE)
        await writer.prepare()
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        old = hour - timedelta(days=10)
        await writer.write(
            [
                item(
                    ("COD", hour, 40.0, 0),
                    ("COD", hour + timedelta(minutes=5), 60.0, 0),
                    ("COD", hour + timedelta(minutes=10), 999.0, 2),
                    ("COD", old, 70.0, 0),
                )
            ]
        )
        # Real-time aggregation: the newest hour is visible before any refresh.
        cur = await conn.execute(
            "SELECT n, min, max, mean FROM readings_hourly WHERE hour = %s", [hour]
        )
        assert await cur.fetchall() == [(2, 40.0, 60.0, 50.0)]

        # Compress the old chunk, then deliver late data into it: a duplicate, a conflict,
        # and a new reading.
        await conn.execute(
            "SELECT compress_chunk(c) FROM show_chunks('readings', "
            "older_than => interval '7 days') c"
        )
        await conn.commit()
        cur = await conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE is_compressed"
        )
        assert (await cur.fetchone())[0] == 1
        late = item(
            ("COD", old, 70.0, 0),
            ("COD", old, 75.0, 0),
            ("COD", old + timedelta(minutes=5), 72.0, 0),
        )
        await writer.write([late])
        assert (late.stored, late.duplicates, len(late.conflicts)) == (1, 1, 1)
        cur = await conn.execute(
            "SELECT value FROM readings WHERE measured_at >= %s AND "
            "measured_at < %s ORDER BY measured_at",
            [old, old + timedelta(hours=1)],
        )
        assert [r[0] for r in await cur.fetchall()] == [70.0, 72.0]
