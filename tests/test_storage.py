"""Both storage backends: plain PostgreSQL (partitions, own rollup) and TimescaleDB."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from quantrac.core.contract import Reading, Status
from quantrac.evidence import schema as evidence_schema
from quantrac.evidence.locks import Correction, correct_reading, lock_period, unlock_period
from quantrac.ingest.rollup import consecutive_runs, daily_series, refresh_timescale_hourly
from quantrac.ingest.schema import (
    POSTGRES,
    TIMESCALE,
    StorageOptions,
    apply_retention,
    apply_timescale_policies,
    drop_expired_chunks,
    drop_expired_partitions,
    partition_name,
    upgrade,
)
from quantrac.ingest.service import IngestService
from quantrac.ingest.writer import BatchWriter, Item
from quantrac.localservers import PostgresServer, find_postgres_bindir
from tests.conftest import fetch, wait_until

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
    assert (backend, applied) == (POSTGRES, [1, 2, 3, 4, 5, 6])
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


async def test_the_ingest_upkeep_drops_the_months_retention_has_passed(
    make_settings, database_url
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=400)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        # Stored while retention was two years; then the operator shortens it to 90 days.
        await upgrade(conn, StorageOptions(backend=POSTGRES, retention_days=730), now=now)
        writer = BatchWriter(conn, POSTGRES)
        await writer.prepare()
        await writer.write([item(("COD", old, 40.0, 0), ("COD", now, 50.0, 0))])
        await conn.commit()
    service = IngestService(make_settings(retention_days=90, rollup_interval_s=0.2))
    await service.start()
    try:

        async def expired_month_gone() -> bool:
            rows = await fetch(
                database_url,
                "SELECT count(*) FROM pg_class WHERE relname = %s",
                [partition_name(old)],
            )
            return rows[0][0] == 0

        await wait_until(expired_month_gone, timeout=20)
    finally:
        await service.stop()
    assert await fetch(database_url, "SELECT value FROM readings") == [(50.0,)]


async def test_plain_retention_keeps_a_month_a_locked_period_overlaps(db_conn, caplog):
    opts = StorageOptions(backend=POSTGRES, retention_days=90, partitions_ahead_months=2)
    await upgrade(db_conn, opts, now=NOW)
    # Before evidence's tables exist, retention has no lock to look at (and does not fail).
    assert await drop_expired_partitions(db_conn, opts, NOW) == []
    await evidence_schema.upgrade(db_conn)
    writer = BatchWriter(db_conn, POSTGRES)
    await writer.prepare()
    aug, sep = datetime(2026, 8, 15, tzinfo=UTC), datetime(2026, 9, 10, tzinfo=UTC)
    await writer.write([item(("COD", aug, 40.0, 0), ("COD", sep, 50.0, 0))])
    await db_conn.commit()
    # September is sealed; a lock over August was lifted and protects nothing.
    kept = await lock_period(db_conn, "WW1", sep, sep + timedelta(days=1), "audit", "admin")
    lifted = await lock_period(db_conn, None, aug, aug + timedelta(days=1), "audit", "admin")
    await unlock_period(db_conn, lifted.id, "admin")
    await db_conn.commit()
    # Sixty days on, the horizon is 22 October: August and September are both expired.
    with caplog.at_level("WARNING", logger="quantrac.ingest.schema"):
        dropped = await apply_retention(db_conn, POSTGRES, opts, NOW + timedelta(days=60))
    assert dropped == ["readings_y2026m08"]
    cur = await db_conn.execute("SELECT measured_at, value FROM readings ORDER BY 1")
    assert await cur.fetchall() == [(sep, 50.0)]
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "retention_kept_locked"]
    assert (record.partition, record.locks) == ("readings_y2026m09", [kept.id])
    # Once the lock is lifted, the next run drops the month.
    await unlock_period(db_conn, kept.id, "admin")
    await db_conn.commit()
    assert await drop_expired_partitions(db_conn, opts, NOW + timedelta(days=60)) == [
        "readings_y2026m09"
    ]


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


async def test_daily_series_follows_the_vietnam_calendar_day(db_conn):
    """16:00 and 17:00 UTC of one UTC day are 23:00 on the 20th and 00:00 on the 21st in
    Vietnam: two days, each with its own hours, the mean weighted by the counts."""
    await upgrade(db_conn, StorageOptions(backend=POSTGRES), now=NOW)
    hours = [
        (datetime(2026, 11, 20, 15, tzinfo=UTC), 12, 10.0),
        (datetime(2026, 11, 20, 16, tzinfo=UTC), 6, 40.0),
        (datetime(2026, 11, 20, 17, tzinfo=UTC), 12, 5.0),
    ]
    for hour, n, mean in hours:
        await db_conn.execute(
            "INSERT INTO readings_hourly (station_id, param, hour, n, min, max, mean) "
            "VALUES ('WW1', 'COD', %s, %s, %s, %s, %s)",
            [hour, n, mean - 1, mean + 1, mean],
        )
    start, end = datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)
    days = await daily_series(db_conn, "WW1", "COD", start, end)
    assert days == [
        (datetime(2026, 11, 20), 20.0, 9.0, 41.0, 18),
        (datetime(2026, 11, 21), 5.0, 4.0, 6.0, 12),
    ]


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
        assert await upgrade(conn, opts) == (TIMESCALE, [1, 2, 3, 4, 5, 6])
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
        # No built-in retention policy: quantrac's own job keeps locked periods.
        assert [r[0] for r in await cur.fetchall()] == [
            "policy_compression",
            "policy_refresh_continuous_aggregate",
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


@pytest.fixture
async def timescale_db(timescale_url: str) -> AsyncIterator[str]:
    """A fresh database on the TimescaleDB server."""
    name = f"ts_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(timescale_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{timescale_url.rsplit('/', 1)[0]}/{name}"
    async with await psycopg.AsyncConnection.connect(timescale_url, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def hourly(conn: psycopg.AsyncConnection, hour: datetime) -> list[tuple[int, float]]:
    cur = await conn.execute(
        "SELECT n, mean FROM readings_hourly WHERE station_id = 'WW1' AND param = 'COD'"
        " AND hour = %s",
        [hour],
    )
    return [(n, mean) for n, mean in await cur.fetchall()]


async def watermark(conn: psycopg.AsyncConnection) -> datetime | None:
    """Below it readings_hourly reads the materialized hours, above it the readings; None while
    nothing is materialized (-infinity: every hour is read from the readings)."""
    cur = await conn.execute(
        "SELECT _timescaledb_functions.cagg_watermark(mat_hypertable_id)"
        " FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = 'readings_hourly'"
    )
    [(micros,)] = await cur.fetchall()
    try:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    except OverflowError:
        return None


async def test_timescale_backfill_and_corrections_reach_the_hourly_aggregate(timescale_db):
    now = datetime.now(UTC)
    live = now.replace(minute=0, second=0, microsecond=0)
    recent, backfill, corrected = (
        live - timedelta(hours=3),
        live - timedelta(days=30),
        live - timedelta(days=40),
    )
    async with await psycopg.AsyncConnection.connect(timescale_db) as conn:
        async with conn.transaction():
            assert (await upgrade(conn, StorageOptions()))[0] == TIMESCALE
            cur = await conn.execute(
                "SELECT job_id FROM timescaledb_information.jobs"
                " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
            )
            [(job,)] = await cur.fetchall()
            # The scheduler starts a new policy's first run as soon as it is committed, racing the
            # write below: a run landing while that write commits (its invalidation-threshold
            # check done before any refresh set one, so it logs no invalidation; its rows not yet
            # visible) moves the threshold past them and materializes nothing. Those hours are
            # then never materialized, the watermark stays at -infinity and the backfill shows
            # through real-time aggregation. Unscheduled in the transaction that creates it, the
            # policy runs only when the test runs it.
            await conn.execute("SELECT alter_job(%s, scheduled => false)", [job])
        await evidence_schema.upgrade(conn)
        await conn.commit()
        writer = BatchWriter(conn, TIMESCALE)
        await writer.prepare()
        await writer.write([item(("COD", live, 10.0, 0), ("COD", recent, 20.0, 0))])
        # What the refresh policy does on its schedule: materialize its window (a few days back).
        await conn.set_autocommit(True)
        await conn.execute("CALL run_job(%s)", [job])
        await conn.set_autocommit(False)
        # The watermark is now the end of the newest complete hour stored (the live hour is
        # left out by the policy's end offset), far above the backfill to come.
        assert await watermark(conn) == recent + timedelta(hours=1)
        # A month-old file arrives (ingest-files --historical) and an old reading is corrected.
        await writer.write(
            [
                item(
                    ("COD", backfill, 30.0, 0),
                    ("COD", backfill + timedelta(minutes=5), 50.0, 0),
                    ("COD", corrected, 70.0, 0),
                )
            ]
        )
        # Below the watermark only materialized hours show: the backfill is not there yet.
        assert await hourly(conn, backfill) == []
        await conn.commit()

    async with await psycopg.AsyncConnection.connect(timescale_db, autocommit=True) as conn:
        # The live hour is still filling: left to real-time aggregation, and kept for later.
        assert await refresh_timescale_hourly(conn) == 3
        assert await hourly(conn, backfill) == [(2, 40.0)]
        assert await hourly(conn, corrected) == [(1, 70.0)]
        assert await hourly(conn, live) == [(1, 10.0)]
        cur = await conn.execute("SELECT hour FROM rollup_dirty")
        assert [r[0] for r in await cur.fetchall()] == [live]
        assert await refresh_timescale_hourly(conn) == 0

        # Late data into a compressed chunk, and a correction there, reach the aggregate too.
        await conn.execute(
            "SELECT compress_chunk(c) FROM show_chunks('readings', older_than => %s) c",
            [now - timedelta(days=7)],
        )
        cur = await conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE is_compressed"
        )
        assert (await cur.fetchone())[0] == 2
        await conn.set_autocommit(False)
        writer = BatchWriter(conn, TIMESCALE)
        await writer.prepare()
        await writer.write([item(("COD", backfill + timedelta(minutes=10), 80.0, 0))])
        action = await correct_reading(
            conn, Correction("WW1", "COD", corrected, 35.0, Status.MEASURING, "calibration"), "qa"
        )
        assert action == "update"
        await conn.commit()
        await conn.set_autocommit(True)
        assert await refresh_timescale_hourly(conn) == 2
        assert await hourly(conn, backfill) == [(3, 160.0 / 3)]
        assert await hourly(conn, corrected) == [(1, 35.0)]


async def test_an_hour_timescaledb_did_not_invalidate_is_refreshed_all_the_same(timescale_db):
    """The hourly aggregate rests on quantrac's own record of the hours its batches touched
    (rollup_dirty, written with the readings), not on TimescaleDB's invalidation log alone:
    a batch committing while the policy moves its threshold can leave no invalidation (see
    docs/benchmarks.md), and the hour must still be right once it is complete. The race's
    effect is made here by deleting the invalidation the batch's commit logged."""
    late = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    refresh = (
        "CALL refresh_continuous_aggregate('readings_hourly', %s::timestamptz, %s::timestamptz)"
    )
    window = [late - timedelta(days=1), late + timedelta(hours=2)]
    async with await psycopg.AsyncConnection.connect(timescale_db, autocommit=True) as conn:
        async with conn.transaction():
            await upgrade(conn, StorageOptions())
        await conn.execute(
            "SELECT delete_job(job_id) FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
        )
        # The policy has run: the aggregate is materialized up to two hours after the late one.
        earlier = late - timedelta(hours=1)
        await conn.execute("INSERT INTO readings VALUES ('WW1', 'TSS', %s, 1, 0, now())", [earlier])
        await conn.execute(refresh, window)
        async with conn.transaction():  # the batch, as the writer stores it
            await conn.execute(
                "INSERT INTO readings VALUES ('WW1', 'COD', %s, 40, 0, now()),"
                " ('WW1', 'COD', %s, 60, 0, now()), ('WW1', 'TSS', %s, 1, 0, now())",
                [late, late + timedelta(minutes=5), late + timedelta(hours=1)],
            )
            await conn.execute(
                "INSERT INTO rollup_dirty (hour) VALUES (%s), (%s)",
                [late, late + timedelta(hours=1)],
            )
        # TimescaleDB logs the batch's invalidation as it commits; the race leaves none.
        await conn.execute(
            "DELETE FROM _timescaledb_catalog.continuous_aggs_hypertable_invalidation_log"
        )
        # Later hours come and the policy materializes them: the late hour is now read from
        # what was materialized, where the batch is missing.
        later = late + timedelta(hours=3)
        await conn.execute("INSERT INTO readings VALUES ('WW1', 'TSS', %s, 1, 0, now())", [later])
        await conn.execute(refresh, [window[0], later + timedelta(hours=1)])
        assert (await watermark(conn) or late) > late
        assert await hourly(conn, late) == []  # what TimescaleDB alone shows
        assert await refresh_timescale_hourly(conn) == 2
        assert await hourly(conn, late) == [(2, 50.0)]


async def test_timescale_policies_follow_changed_settings(timescale_db):
    async def policies(conn: psycopg.AsyncConnection) -> dict[str, tuple[int, timedelta]]:
        cur = await conn.execute(
            "SELECT proc_name, job_id, (coalesce(config->>'compress_after',"
            " config->>'drop_after', config->>'start_offset'))::interval"
            " FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL"
        )
        rows = {name: (job, interval) for name, job, interval in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT time_interval FROM timescaledb_information.dimensions"
            " WHERE hypertable_name = 'readings'"
        )
        rows["chunks"] = (0, (await cur.fetchone())[0])
        return rows

    async with await psycopg.AsyncConnection.connect(timescale_db) as conn:
        await upgrade(conn, StorageOptions())
        before = await policies(conn)
        assert {k: v[1] for k, v in before.items()} == {
            "policy_compression": timedelta(days=7),
            "policy_refresh_continuous_aggregate": timedelta(days=8),
            "chunks": timedelta(days=1),
        }
        # The operator keeps five years, compresses after two weeks, uses two-day chunks.
        longer = StorageOptions(
            retention_days=1825, compression_after_days=14, chunk_interval_days=2
        )
        assert await upgrade(conn, longer) == (TIMESCALE, [])
        after = await policies(conn)
        assert {k: v[1] for k, v in after.items()} == {
            "policy_compression": timedelta(days=14),
            "policy_refresh_continuous_aggregate": timedelta(days=15),
            "chunks": timedelta(days=2),
        }
        # Settings unchanged: the policies stay as they are (same jobs).
        await upgrade(conn, longer)
        assert await policies(conn) == after


def test_consecutive_hours_make_one_refresh_window_each():
    h = datetime(2026, 3, 10, 5, tzinfo=UTC)
    hour = timedelta(hours=1)
    assert consecutive_runs([]) == []
    assert consecutive_runs([h + 2 * hour, h, h + hour, h]) == [(h, h + 3 * hour)]
    assert consecutive_runs([h, h + 5 * hour, h + 6 * hour]) == [
        (h, h + hour),
        (h + 5 * hour, h + 7 * hour),
    ]


async def test_timescale_retention_keeps_a_chunk_a_locked_period_overlaps(timescale_db):
    async with await psycopg.AsyncConnection.connect(timescale_db) as conn:
        opts = StorageOptions(retention_days=30)
        # A database made by an older version still has the built-in policy: it goes.
        await upgrade(conn, opts)
        await conn.execute("SELECT add_retention_policy('readings', interval '30 days')")
        assert "retention" in await apply_timescale_policies(conn, opts)
        cur = await conn.execute(
            "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'"
        )
        assert (await cur.fetchone())[0] == 0
        await evidence_schema.upgrade(conn)
        writer = BatchWriter(conn, TIMESCALE)
        await writer.prepare()
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        sealed, expired, recent = (now - timedelta(days=d) for d in (50, 40, 1))
        await writer.write(
            [item(("COD", sealed, 1.0, 0), ("COD", expired, 2.0, 0), ("COD", recent, 3.0, 0))]
        )
        await conn.commit()
        await lock_period(conn, "WW1", sealed, sealed + timedelta(minutes=1), "audit", "admin")
        await conn.commit()
        # The ingest upkeep's entry point, as it runs it on this backend.
        dropped = await apply_retention(conn, TIMESCALE, opts, now)
        assert len(dropped) == 1
        cur = await conn.execute("SELECT measured_at, value FROM readings ORDER BY 1")
        assert await cur.fetchall() == [(sealed, 1.0), (recent, 3.0)]
        cur = await conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
        )
        assert (await cur.fetchone())[0] == 2
        # Nothing left to drop: the next run changes nothing.
        assert await drop_expired_chunks(conn, opts, now) == []
