"""Database schema: versioned migrations, storage backend choice, partitions and retention.

Two backends share one logical schema. With the TimescaleDB extension, ``readings`` is a
hypertable with compression and an hourly continuous aggregate (real-time). On plain PostgreSQL
it is a table partitioned by month, and quantrac keeps ``readings_hourly`` itself (see
``rollup.py``). Retention is quantrac's own job on both (``drop_expired_partitions``,
``drop_expired_chunks``): it keeps a month or chunk that a locked (sealed) period overlaps.
The backend is chosen once, at the first migration, and recorded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from quantrac.core.migrations import MIGRATION_LOCK, one_version_table
from quantrac.core.registry import Registry
from quantrac.ingest import stream

log = logging.getLogger(__name__)

TIMESCALE = "timescaledb"
POSTGRES = "postgresql"

# Two workers starting together must not both migrate.
CORE = "ingest"  # the core's component name in schema_migrations


@dataclass(frozen=True, slots=True)
class StorageOptions:
    backend: str = "auto"
    retention_days: int = 730
    compression_after_days: int = 7
    chunk_interval_days: int = 1
    partitions_ahead_months: int = 3


Migration = Callable[[psycopg.AsyncConnection, str, StorageOptions], Awaitable[None]]


async def _base(conn: psycopg.AsyncConnection, backend: str, opts: StorageOptions) -> None:
    await conn.execute("""
        CREATE TABLE stations (
            id          text PRIMARY KEY,
            name        text NOT NULL,
            kind        text NOT NULL CHECK (kind IN ('air', 'wastewater', 'emission')),
            facility    text NOT NULL,
            province    text NOT NULL,
            lat         double precision NOT NULL,
            lon         double precision NOT NULL,
            cadence_s   integer NOT NULL CHECK (cadence_s > 0),
            parameters  jsonb NOT NULL,
            regulation  jsonb,
            ftp_name    text,
            active      boolean NOT NULL DEFAULT true,
            updated_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE rejections (
            id              bigserial PRIMARY KEY,
            received_at     timestamptz NOT NULL,
            station_id      text,
            topic           text NOT NULL,
            source          text NOT NULL,
            reason          text NOT NULL,
            field           text NOT NULL,
            value           text NOT NULL,
            detail          text NOT NULL,
            seq             bigint,
            payload_excerpt text NOT NULL
        );
        CREATE INDEX rejections_station_time ON rejections (station_id, received_at DESC);
        CREATE INDEX rejections_reason_time ON rejections (reason, received_at DESC);
        CREATE TABLE ingested_files (
            id          bigserial PRIMARY KEY,
            name        text NOT NULL,
            sha256      text NOT NULL,
            station_id  text,
            received_at timestamptz NOT NULL,
            stored      integer NOT NULL,
            duplicates  integer NOT NULL,
            rejected    integer NOT NULL
        );
        CREATE INDEX ingested_files_name ON ingested_files (name);
    """)


_READINGS_COLUMNS = """
    station_id  text NOT NULL,
    param       text NOT NULL,
    measured_at timestamptz NOT NULL,
    value       double precision NOT NULL,
    status      smallint NOT NULL CHECK (status BETWEEN 0 AND 2),
    received_at timestamptz NOT NULL,
    PRIMARY KEY (station_id, param, measured_at)
"""


async def _readings(conn: psycopg.AsyncConnection, backend: str, opts: StorageOptions) -> None:
    if backend == TIMESCALE:
        await conn.execute(f"CREATE TABLE readings ({_READINGS_COLUMNS})")
        await conn.execute(
            "SELECT create_hypertable('readings', by_range('measured_at', %s::interval))",
            [timedelta(days=opts.chunk_interval_days)],
        )
        await conn.execute("""
            ALTER TABLE readings SET (
                timescaledb.compress,
                timescaledb.compress_segmentby = 'station_id, param',
                timescaledb.compress_orderby = 'measured_at DESC')""")
        await conn.execute("""
            CREATE MATERIALIZED VIEW readings_hourly
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT station_id, param, time_bucket('1 hour', measured_at) AS hour,
                   count(*)::integer AS n, min(value) AS min, max(value) AS max,
                   avg(value) AS mean
            FROM readings WHERE status = 0
            GROUP BY station_id, param, time_bucket('1 hour', measured_at)
            WITH NO DATA""")
        # Chunk interval, compression and refresh policies: apply_timescale_policies
        # (run by every upgrade, so that changed settings reach an existing database).
        return
    await conn.execute(
        f"CREATE TABLE readings ({_READINGS_COLUMNS}) PARTITION BY RANGE (measured_at)"
    )
    # Time-range scans across stations (rollup refresh, reports): BRIN stays tiny because
    # readings arrive close to time order.
    await conn.execute(
        "CREATE INDEX readings_measured_at_brin ON readings USING brin (measured_at)"
    )
    await conn.execute("""
        CREATE TABLE readings_hourly (
            station_id text NOT NULL,
            param      text NOT NULL,
            hour       timestamptz NOT NULL,
            n          integer NOT NULL,
            min        double precision NOT NULL,
            max        double precision NOT NULL,
            mean       double precision NOT NULL,
            PRIMARY KEY (station_id, param, hour)
        );
        CREATE TABLE rollup_dirty (hour timestamptz NOT NULL);
    """)


async def _committed_stream(
    conn: psycopg.AsyncConnection, backend: str, opts: StorageOptions
) -> None:
    await stream.migrate(conn)


async def _stream_workers(
    conn: psycopg.AsyncConnection, backend: str, opts: StorageOptions
) -> None:
    await stream.migrate_workers(conn)


async def _instrument_status(
    conn: psycopg.AsyncConnection, backend: str, opts: StorageOptions
) -> None:
    # A line with status 01/02 and no value (how many dataloggers write an analyser fault) is
    # the instrument's status alone: kept here rather than as a reading without value, which
    # would need readings.value nullable (not alterable on a compressed hypertable).
    await conn.execute("""
        CREATE TABLE instrument_status (
            station_id  text NOT NULL,
            param       text NOT NULL,
            measured_at timestamptz NOT NULL,
            status      smallint NOT NULL CHECK (status IN (1, 2)),
            received_at timestamptz NOT NULL,
            PRIMARY KEY (station_id, param, measured_at)
        )""")


async def _hours_to_refresh(
    conn: psycopg.AsyncConnection, backend: str, opts: StorageOptions
) -> None:
    # TimescaleDB's refresh policy only looks back a few days (its window must stay inside the
    # retention, or dropped chunks would empty the aggregate): hours stored or corrected later
    # than that are recorded here, as on plain PostgreSQL, and refreshed by rollup.py.
    await conn.execute("CREATE TABLE IF NOT EXISTS rollup_dirty (hour timestamptz NOT NULL)")


MIGRATIONS: list[tuple[int, str, Migration]] = [
    (1, "stations, rejections, ingested files", _base),
    (2, "readings and hourly rollup", _readings),
    (3, "committed stream and its cursors", _committed_stream),
    (4, "workers sharing a stream's cursors", _stream_workers),
    (5, "instrument status records without a value", _instrument_status),
    (6, "hours to refresh in the hourly aggregate, on TimescaleDB too", _hours_to_refresh),
]


async def detect_backend(conn: psycopg.AsyncConnection, requested: str) -> str:
    """TimescaleDB when asked for or when installed and preloaded; plain PostgreSQL otherwise."""
    if requested == POSTGRES:
        return POSTGRES
    cur = await conn.execute(
        "SELECT installed_version IS NOT NULL, "
        "       current_setting('shared_preload_libraries') LIKE '%%timescaledb%%' "
        "FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    row = await cur.fetchone()
    available = row is not None
    preloaded = bool(row and row[1])
    if available and preloaded:
        return TIMESCALE
    if requested == TIMESCALE:
        why = "not installed on the server" if not available else "not in shared_preload_libraries"
        raise RuntimeError(f"storage backend timescaledb requested, but the extension is {why}")
    if available:
        log.warning(
            "timescaledb is installed but not preloaded; using plain PostgreSQL",
            extra={"event": "timescale_not_preloaded"},
        )
    return POSTGRES


async def current_backend(conn: psycopg.AsyncConnection) -> str | None:
    cur = await conn.execute("SELECT to_regclass('quantrac_meta') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return None
    cur = await conn.execute("SELECT value FROM quantrac_meta WHERE key = 'backend'")
    found = await cur.fetchone()
    return str(found[0]) if found else None


async def upgrade(
    conn: psycopg.AsyncConnection, opts: StorageOptions, now: datetime | None = None
) -> tuple[str, list[int]]:
    """Apply pending migrations (idempotent). Returns the backend and the versions applied."""
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS quantrac_meta (key text PRIMARY KEY, value text NOT NULL)"
        )
        await one_version_table(conn)
        backend = await current_backend(conn)
        if backend is None:
            backend = await detect_backend(conn, opts.backend)
            if backend == TIMESCALE:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            await conn.execute("INSERT INTO quantrac_meta VALUES ('backend', %s)", [backend])
        elif opts.backend not in ("auto", backend):
            raise RuntimeError(
                f"this database was created with the {backend} backend; "
                f"it cannot switch to {opts.backend}"
            )
        cur = await conn.execute(
            "SELECT version FROM schema_migrations WHERE component = %s", [CORE]
        )
        done = {row[0] for row in await cur.fetchall()}
        for version, name, migrate in MIGRATIONS:
            if version in done:
                continue
            log.info(
                "applying migration",
                extra={
                    "event": "migration",
                    "version": version,
                    "migration": name,
                    "backend": backend,
                },
            )
            await migrate(conn, backend, opts)
            await conn.execute(
                "INSERT INTO schema_migrations (component, version, name) VALUES (%s, %s, %s)",
                [CORE, version, name],
            )
            applied.append(version)
        if backend == TIMESCALE:
            await apply_timescale_policies(conn, opts)
    if backend == POSTGRES:
        await ensure_partitions(conn, opts, now or datetime.now(UTC))
    return backend, applied


# --- TimescaleDB: chunks and policies ----------------------------------------------------------

# The refresh policy leaves the newest hour to real-time aggregation (it is still filling).
HOURLY_END_OFFSET = timedelta(hours=1)


def refresh_start_offset(opts: StorageOptions) -> timedelta:
    """How far back the refresh policy looks: late readings up to the compression age. It stays
    inside the retention: refreshing a window whose chunks were dropped empties the aggregate."""
    return timedelta(days=min(opts.compression_after_days + 1, opts.retention_days - 1))


async def _job_setting(
    conn: psycopg.AsyncConnection, proc: str, relation: str, key: str
) -> timedelta | None:
    cur = await conn.execute(
        "SELECT (config->>%s)::interval FROM timescaledb_information.jobs"
        " WHERE proc_name = %s AND hypertable_schema = current_schema()"
        " AND hypertable_name = %s",
        [key, proc, relation],
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def apply_timescale_policies(
    conn: psycopg.AsyncConnection, opts: StorageOptions
) -> list[str]:
    """Make the chunk interval and the compression and refresh policies of ``readings``
    match the options (as plain PostgreSQL follows them at each upkeep), and remove a
    built-in retention policy left by an older version.
    Returns the names of what changed; nothing when they already match."""
    changed: list[str] = []
    chunk = timedelta(days=opts.chunk_interval_days)
    cur = await conn.execute(
        "SELECT time_interval FROM timescaledb_information.dimensions"
        " WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings'"
    )
    row = await cur.fetchone()
    if row is not None and row[0] != chunk:
        # Applies to chunks created from now on; existing chunks keep their range.
        await conn.execute("SELECT set_chunk_time_interval('readings', %s::interval)", [chunk])
        changed.append("chunk_interval")
    compress_after = timedelta(days=opts.compression_after_days)
    found = await _job_setting(conn, "policy_compression", "readings", "compress_after")
    if found != compress_after:
        await conn.execute("SELECT remove_compression_policy('readings', if_exists => true)")
        await conn.execute(
            "SELECT add_compression_policy('readings', %s::interval)", [compress_after]
        )
        changed.append("compression")
    start = refresh_start_offset(opts)
    found = await _job_setting(
        conn, "policy_refresh_continuous_aggregate", "readings_hourly", "start_offset"
    )
    if found != start:
        await conn.execute(
            "SELECT remove_continuous_aggregate_policy('readings_hourly', if_exists => true)"
        )
        await conn.execute(
            "SELECT add_continuous_aggregate_policy('readings_hourly', start_offset => %s,"
            " end_offset => %s, schedule_interval => interval '5 minutes')",
            [start, HOURLY_END_OFFSET],
        )
        changed.append("refresh")
    # No built-in retention policy: it cannot skip the chunks of a locked (sealed) period.
    # Retention is quantrac's own job (drop_expired_chunks, run by the ingest upkeep); a policy
    # left by an older version is removed.
    if await _job_setting(conn, "policy_retention", "readings", "drop_after") is not None:
        await conn.execute("SELECT remove_retention_policy('readings', if_exists => true)")
        changed.append("retention")
    if changed:
        log.info(
            "timescaledb policies follow the settings",
            extra={
                "event": "timescale_policies",
                "changed": changed,
                "chunk_interval_days": opts.chunk_interval_days,
                "compression_after_days": opts.compression_after_days,
                "retention_days": opts.retention_days,
            },
        )
    return changed


# --- Plain PostgreSQL: monthly partitions ------------------------------------------------------


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month(start: datetime) -> datetime:
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def partition_name(start: datetime) -> str:
    return f"readings_y{start.year:04d}m{start.month:02d}"


async def existing_partitions(conn: psycopg.AsyncConnection) -> set[str]:
    cur = await conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'readings'::regclass"
    )
    return {row[0] for row in await cur.fetchall()}


async def create_partition(conn: psycopg.AsyncConnection, start: datetime) -> None:
    # Two processes starting together would both see the month missing; IF NOT EXISTS alone
    # still races in the catalog. The lock lasts until the caller's commit.
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
    await conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF readings FOR VALUES FROM ({}) TO ({})"
        ).format(
            sql.Identifier(partition_name(start)),
            sql.Literal(start),
            sql.Literal(next_month(start)),
        )
    )


async def ensure_partitions(
    conn: psycopg.AsyncConnection, opts: StorageOptions, now: datetime
) -> list[str]:
    """Partitions for every month a valid reading can fall in: retention back, months ahead."""
    first = month_start(now - timedelta(days=opts.retention_days))
    last = month_start(now)
    for _ in range(opts.partitions_ahead_months):
        last = next_month(last)
    created = []
    existing = await existing_partitions(conn)
    month = first
    while month <= last:
        name = partition_name(month)
        if name not in existing:
            async with conn.transaction():
                await create_partition(conn, month)
            created.append(name)
        month = next_month(month)
    return created


async def locks_overlapping(
    conn: psycopg.AsyncConnection, start: datetime, end: datetime
) -> list[int]:
    """Ids of the active locked (sealed) periods that overlap [start, end), of any station.

    The table belongs to quantrac.evidence (a higher layer); retention only reads it, by this
    query, and finds nothing while evidence's migrations have not created it.
    """
    cur = await conn.execute("SELECT to_regclass('locked_periods') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return []
    cur = await conn.execute(
        "SELECT id FROM locked_periods WHERE unlocked_at IS NULL"
        " AND start_at < %s AND end_at > %s ORDER BY id",
        [end, start],
    )
    return [r[0] for r in await cur.fetchall()]


def _kept_for_locks(name: str, start: datetime, end: datetime, locks: list[int]) -> None:
    log.warning(
        "retention keeps %s: locked period(s) %s overlap it",
        name,
        ", ".join(map(str, locks)),
        extra={
            "event": "retention_kept_locked",
            "partition": name,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "locks": locks,
        },
    )


async def drop_expired_partitions(
    conn: psycopg.AsyncConnection, opts: StorageOptions, now: datetime
) -> list[str]:
    """Retention on plain PostgreSQL: drop whole months older than the retention period,
    except a month that an active locked period overlaps (kept, and logged why)."""
    horizon = now - timedelta(days=opts.retention_days)
    dropped = []
    for name in sorted(await existing_partitions(conn)):
        try:
            start = datetime(int(name[10:14]), int(name[15:17]), 1, tzinfo=UTC)
        except ValueError:
            continue
        end = next_month(start)
        if end <= horizon:
            async with conn.transaction():
                locks = await locks_overlapping(conn, start, end)
                if locks:
                    _kept_for_locks(name, start, end, locks)
                    continue
                await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
            dropped.append(name)
    return dropped


async def drop_expired_chunks(
    conn: psycopg.AsyncConnection, opts: StorageOptions, now: datetime
) -> list[str]:
    """Retention on TimescaleDB: drop the chunks wholly older than the retention period,
    one by one (``drop_chunks`` bounded to the chunk's own range), except a chunk that an
    active locked period overlaps (kept, and logged why). Returns the dropped chunks' names."""
    horizon = now - timedelta(days=opts.retention_days)
    cur = await conn.execute(
        "SELECT chunk_name, range_start, range_end FROM timescaledb_information.chunks"
        " WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings'"
        " AND range_end <= %s ORDER BY range_start",
        [horizon],
    )
    dropped = []
    for name, start, end in await cur.fetchall():
        async with conn.transaction():
            locks = await locks_overlapping(conn, start, end)
            if locks:
                _kept_for_locks(name, start, end, locks)
                continue
            await conn.execute(
                "SELECT drop_chunks('readings', older_than => %s::timestamptz,"
                " newer_than => %s::timestamptz)",
                [end, start],
            )
        dropped.append(name)
    return dropped


async def apply_retention(
    conn: psycopg.AsyncConnection, backend: str, opts: StorageOptions, now: datetime
) -> list[str]:
    """quantrac's retention job on either backend (the ingest upkeep runs it): partitions
    ahead and expired months on plain PostgreSQL, expired chunks on TimescaleDB; what a locked
    period overlaps is kept. Returns what was dropped, committed."""
    if backend == POSTGRES:
        await ensure_partitions(conn, opts, now)
        dropped = await drop_expired_partitions(conn, opts, now)
    else:
        dropped = await drop_expired_chunks(conn, opts, now)
    await conn.commit()
    return dropped


# --- reads of stations and rejections, for the demo and tools ----------------------------------


@dataclass(frozen=True, slots=True)
class StationSummary:
    """What is stored of one active station."""

    station_id: str
    kind: str
    readings: int
    newest: datetime | None
    rejected: int


_SUMMARY = """
SELECT s.id, s.kind, count(r.*) AS readings, max(r.measured_at) AS newest,
       (SELECT count(*) FROM rejections j WHERE j.station_id = s.id) AS rejected
FROM stations s LEFT JOIN readings r ON r.station_id = s.id
WHERE s.active GROUP BY s.id, s.kind ORDER BY s.kind, s.id
"""


async def station_summaries(conn: psycopg.AsyncConnection) -> list[StationSummary]:
    """Each active station with its count of readings, newest reading and count of
    rejections, by kind then id."""
    cur = await conn.execute(_SUMMARY)
    return [StationSummary(r[0], r[1], int(r[2]), r[3], int(r[4])) for r in await cur.fetchall()]


async def stored_counts(conn: psycopg.AsyncConnection) -> tuple[int, int]:
    """How many readings and how many rejections are stored."""
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM rejections)"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def all_rejections(conn: psycopg.AsyncConnection) -> list[tuple[str | None, str, str]]:
    """(station_id, reason, detail) of every stored rejection, in no particular order."""
    cur = await conn.execute("SELECT station_id, reason, detail FROM rejections")
    return [(r[0], r[1], r[2]) for r in await cur.fetchall()]


async def sync_stations(conn: psycopg.AsyncConnection, registry: Registry) -> None:
    """Make the stations table match the registry; stations that left it become inactive."""
    async with conn.transaction():
        for station in registry.stations.values():
            row = station.to_row()
            await conn.execute(
                """INSERT INTO stations (id, name, kind, facility, province, lat, lon, cadence_s,
                                         parameters, regulation, ftp_name, active, updated_at)
                   VALUES (%(id)s, %(name)s, %(kind)s, %(facility)s, %(province)s, %(lat)s,
                           %(lon)s, %(cadence_s)s, %(parameters)s, %(regulation)s, %(ftp_name)s,
                           true, now())
                   ON CONFLICT (id) DO UPDATE SET
                     name = excluded.name, kind = excluded.kind, facility = excluded.facility,
                     province = excluded.province, lat = excluded.lat, lon = excluded.lon,
                     cadence_s = excluded.cadence_s, parameters = excluded.parameters,
                     regulation = excluded.regulation, ftp_name = excluded.ftp_name,
                     active = true, updated_at = now()""",
                {
                    **row,
                    "parameters": json.dumps(row["parameters"], ensure_ascii=False),
                    "regulation": json.dumps(row["regulation"], ensure_ascii=False)
                    if row["regulation"]
                    else None,
                },
            )
        await conn.execute(
            "UPDATE stations SET active = false, updated_at = now() "
            "WHERE active AND NOT (id = ANY(%s))",
            [list(registry.stations)],
        )
