"""Write one batch of readings and rejections in one transaction.

Readings go through binary COPY into a session-local staging table, then one
``INSERT … ON CONFLICT DO NOTHING``. Rows that were not inserted are compared with what was
already stored: the same value is a duplicate (counted, ignored); a different value is a
"conflicting duplicate" rejection, never an overwrite.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from quantrac.core.contract import Problem, Reading, Reason, Status
from quantrac.ingest import stream
from quantrac.ingest.schema import (
    POSTGRES,
    create_partition,
    existing_partitions,
    month_start,
    partition_name,
)
from quantrac.ingest.storable import fits_int8, storable_key, storable_text

_STAGING = """
    CREATE TEMP TABLE IF NOT EXISTS staging_readings (
        station_id text, param text, measured_at timestamptz, value double precision,
        status smallint, received_at timestamptz, item integer
    ) ON COMMIT DELETE ROWS
"""

_COPY_READINGS = (
    "COPY staging_readings (station_id, param, measured_at, value, status, received_at, item) "
    "FROM STDIN (FORMAT BINARY)"
)
_READING_TYPES = ["text", "text", "timestamptz", "float8", "int2", "timestamptz", "int4"]

# The usual case: no reading of the batch was stored before, and every row goes in.
_INSERT = """
    INSERT INTO readings (station_id, param, measured_at, value, status, received_at)
    SELECT station_id, param, measured_at, value, status, received_at FROM staging_readings
    ON CONFLICT DO NOTHING
"""

# When some rows did not go in, the batch is written again with this statement, which says which.
# Its SELECT runs on the snapshot taken before the INSERT, so `r` holds only rows that existed
# before this batch: exactly the duplicates and conflicts.
_INSERT_CLASSIFYING = """
    WITH inserted AS (
        INSERT INTO readings (station_id, param, measured_at, value, status, received_at)
        SELECT station_id, param, measured_at, value, status, received_at FROM staging_readings
        ON CONFLICT DO NOTHING
        RETURNING station_id, param, measured_at
    ),
    missing AS MATERIALIZED (
        SELECT s.* FROM staging_readings s
        WHERE NOT EXISTS (SELECT 1 FROM inserted i WHERE i.station_id = s.station_id
                          AND i.param = s.param AND i.measured_at = s.measured_at)
    )
    SELECT m.item, m.param, m.measured_at, m.value, m.status, r.value, r.status
    FROM missing m
    LEFT JOIN readings r ON r.station_id = m.station_id AND r.param = m.param
                        AND r.measured_at = m.measured_at
"""

_INSERT_STATUS = """
    INSERT INTO instrument_status (station_id, param, measured_at, status, received_at)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::smallint[],
                         %s::timestamptz[])
    ON CONFLICT DO NOTHING
    RETURNING station_id, param, measured_at
"""

# Hours whose status-00 readings changed, for the hourly rollup (rollup.py: recomputed on plain
# PostgreSQL, refreshed in TimescaleDB's continuous aggregate). Marking an hour that only
# received duplicates costs a recomputation, never a wrong figure.
_DIRTY_HOURS = "INSERT INTO rollup_dirty (hour) SELECT unnest(%s::timestamptz[])"

# Rows inserted by another worker after this statement's snapshot: look again, now committed.
_RECHECK = """
    SELECT s.item, s.param, s.measured_at, s.value, s.status, r.value, r.status
    FROM staging_readings s
    JOIN readings r ON r.station_id = s.station_id AND r.param = s.param
                   AND r.measured_at = s.measured_at
    WHERE (s.item, s.param, s.measured_at) IN (SELECT * FROM unnest(%s::int[], %s::text[],
                                                                     %s::timestamptz[]))
"""

_COPY_REJECTIONS = (
    "COPY rejections (received_at, station_id, topic, source, reason, field, value, detail, seq,"
    " payload_excerpt) FROM STDIN (FORMAT BINARY)"
)
_REJECTION_TYPES = [
    "timestamptz",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "int8",
    "text",
]


@dataclass(slots=True)
class Item:
    """One message or file in a batch: its readings and its problems found so far."""

    received_at: datetime
    station_id: str | None
    topic: str
    source: str
    seq: int | None
    payload_excerpt: str
    readings: list[Reading]
    problems: list[Problem]
    repeated: int = 0  # exact repeats inside the payload itself, dropped before the batch
    file_sha256: str | None = None  # set for the file drop: the file is logged with its counts
    # Filled in by the writer:
    stored: int = 0
    duplicates: int = 0
    conflicts: list[Problem] = field(default_factory=list)


@dataclass(slots=True)
class BatchResult:
    stored: int
    duplicates: int
    conflicts: int
    rejections: int
    # What was stored, as consumers see it; None when the batch stored no reading.
    committed: stream.CommittedBatch | None = None


def _conflict(
    param: str,
    measured_at: datetime,
    value: float | None,
    status: int,
    stored_value: float | None,
    stored_status: int,
) -> Problem:
    return Problem(
        Reason.CONFLICTING_DUPLICATE,
        f"{param}@{measured_at.isoformat()}",
        repr(value),
        f"a reading for {param} at {measured_at.isoformat()} is already stored with value "
        f"{stored_value!r} status {stored_status:02d}; received value {value!r} status "
        f"{status:02d} was not stored (stored data are never overwritten)",
    )


class BatchWriter:
    """Owns one connection; writes batches strictly one after another."""

    def __init__(self, conn: psycopg.AsyncConnection, backend: str):
        self.conn = conn
        self.backend = backend
        self._known_months: set[datetime] = set()

    async def prepare(self) -> None:
        await self.conn.execute(_STAGING)
        await self.conn.commit()

    async def _ensure_months(self, items: Sequence[Item]) -> None:
        if self.backend != POSTGRES:
            return
        # Readings of one message usually share a time: reduce to distinct times first.
        times = {r.measured_at for it in items for r in it.readings}
        months = {month_start(t) for t in times}
        missing = months - self._known_months
        if not missing:
            return
        existing = await existing_partitions(self.conn)
        for month in sorted(missing):
            if partition_name(month) not in existing:
                await create_partition(self.conn, month)
        await self.conn.commit()
        self._known_months |= missing

    async def write(self, items: Sequence[Item]) -> BatchResult:
        """All or nothing: on any exception the transaction is rolled back and nothing counts."""
        await self._ensure_months(items)
        try:
            result = await self._write(items, classify=False)
            if result is None:
                await self.conn.rollback()
                result = await self._write(items, classify=True)
                assert result is not None  # the classifying pass never gives up
        except BaseException:
            await self._rollback_quietly()
            raise
        return result

    async def _rollback_quietly(self) -> None:
        if self.conn.closed:
            return
        with contextlib.suppress(psycopg.Error):
            await self.conn.rollback()

    async def _write(self, items: Sequence[Item], *, classify: bool) -> BatchResult | None:
        """Write the batch. Without ``classify``, return None (transaction left open for the
        caller to roll back) as soon as some reading turns out to be stored already."""
        conn = self.conn
        for it in items:
            it.stored = 0
            it.duplicates = it.repeated
            it.conflicts = []
        kept = self._dedupe_across_items(items)
        # Status lines without a value (TT10 fault or calibration) go to instrument_status.
        status_only = [[r for r in k if r.value is None] for k in kept]
        if any(status_only):
            kept = [[r for r in k if r.value is not None] for k in kept]
        stored_per_item = [len(k) for k in kept]
        total = sum(stored_per_item)
        not_inserted: set[tuple[int, str, datetime]] = set()
        async with conn.cursor() as cur:
            if total:
                async with cur.copy(_COPY_READINGS) as copy:
                    copy.set_types(_READING_TYPES)
                    for index, it in enumerate(items):
                        for r in kept[index]:
                            await copy.write_row(
                                (
                                    r.station_id,
                                    r.param,
                                    r.measured_at,
                                    r.value,
                                    int(r.status),
                                    it.received_at,
                                    index,
                                )
                            )
                if not classify:
                    await cur.execute(_INSERT)
                    if cur.rowcount != total:
                        return None
                else:
                    await cur.execute(_INSERT_CLASSIFYING)
                    missing = await cur.fetchall()
                    not_inserted.update((row[0], row[1], row[2]) for row in missing)
                    racing = self._classify(items, missing, stored_per_item)
                    if racing:
                        await cur.execute(
                            _RECHECK,
                            [
                                [k[0] for k in racing],
                                [k[1] for k in racing],
                                [k[2] for k in racing],
                            ],
                        )
                        self._classify(items, await cur.fetchall(), stored_per_item)
                hours = self._hours_measuring(kept)
                if hours:
                    await cur.execute(_DIRTY_HOURS, [hours])
            if any(status_only):
                stored_status = await self._write_status_only(cur, items, status_only)
                for index, records in enumerate(stored_status):
                    stored_per_item[index] += len(records)
                    kept[index] = [*kept[index], *records]
            for it, stored in zip(items, stored_per_item, strict=True):
                it.stored = stored
            for it in items:
                if it.file_sha256 is not None:
                    await cur.execute(
                        "INSERT INTO ingested_files (name, sha256, station_id, received_at,"
                        " stored, duplicates, rejected) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [
                            storable_key(it.topic),
                            it.file_sha256,
                            storable_key(it.station_id),
                            it.received_at,
                            it.stored,
                            it.duplicates,
                            len(it.problems) + len(it.conflicts),
                        ],
                    )
            rejections = list(self._rejection_rows(items))
            if rejections:
                async with cur.copy(_COPY_REJECTIONS) as copy:
                    copy.set_types(_REJECTION_TYPES)
                    for row in rejections:
                        await copy.write_row(row)
            committed_items = self._committed_items(items, kept, not_inserted)
            batch_id = await stream.append(cur, committed_items) if committed_items else 0
        await conn.commit()
        return BatchResult(
            stored=sum(it.stored for it in items),
            duplicates=sum(it.duplicates for it in items),
            conflicts=sum(len(it.conflicts) for it in items),
            rejections=len(rejections),
            committed=stream.CommittedBatch(batch_id, committed_items) if batch_id else None,
        )

    @staticmethod
    async def _write_status_only(
        cur: psycopg.AsyncCursor, items: Sequence[Item], status_only: list[list[Reading]]
    ) -> list[list[Reading]]:
        """Store value-less status records; returns, per item, those stored now (the others
        were stored before: duplicates)."""
        rows = [(i, r) for i, records in enumerate(status_only) for r in records]
        await cur.execute(
            _INSERT_STATUS,
            [
                [r.station_id for _, r in rows],
                [r.param for _, r in rows],
                [r.measured_at for _, r in rows],
                [int(r.status) for _, r in rows],
                [items[i].received_at for i, _ in rows],
            ],
        )
        inserted = {(s, p, t) for s, p, t in await cur.fetchall()}
        stored: list[list[Reading]] = [[] for _ in items]
        for index, r in rows:
            if r.key in inserted:
                stored[index].append(r)
            else:
                items[index].duplicates += 1
        return stored

    @staticmethod
    def _committed_items(
        items: Sequence[Item],
        kept: list[list[Reading]],
        not_inserted: set[tuple[int, str, datetime]],
    ) -> list[stream.CommittedItem]:
        """Per item, the readings this transaction inserted: what consumers are told."""
        committed = []
        for index, it in enumerate(items):
            readings = kept[index]
            if not_inserted:
                readings = [
                    r for r in readings if (index, r.param, r.measured_at) not in not_inserted
                ]
            if readings:
                station = it.station_id or readings[0].station_id
                committed.append(stream.CommittedItem(station, it.received_at, it.source, readings))
        return committed

    @staticmethod
    def _hours_measuring(kept: list[list[Reading]]) -> list[datetime]:
        times = {
            r.measured_at for readings in kept for r in readings if r.status == Status.MEASURING
        }
        return sorted({t.astimezone(UTC).replace(minute=0, second=0, microsecond=0) for t in times})

    @staticmethod
    def _dedupe_across_items(items: Sequence[Item]) -> list[list[Reading]]:
        """Keep the first of two readings with one key in one batch; the database could not
        tell which of them it skipped. Returns, per item, the readings sent to the database."""
        first: dict[tuple[str, str, datetime], tuple[float | None, Status]] = {}
        result = []
        for it in items:
            kept = []
            for r in it.readings:
                entry = (r.value, r.status)
                seen = first.setdefault((r.station_id, r.param, r.measured_at), entry)
                if seen is entry:
                    kept.append(r)
                elif seen == entry:
                    it.duplicates += 1
                else:
                    it.conflicts.append(
                        _conflict(
                            r.param, r.measured_at, r.value, int(r.status), seen[0], int(seen[1])
                        )
                    )
            result.append(kept)
        return result

    @staticmethod
    def _classify(
        items: Sequence[Item], rows: Iterable[tuple], stored: list[int]
    ) -> list[tuple[int, str, datetime]]:
        racing = []
        for index, param, measured_at, value, status, stored_value, stored_status in rows:
            if stored_value is None:
                racing.append((index, param, measured_at))
                continue
            it = items[index]
            stored[index] -= 1
            if stored_value == value and stored_status == status:
                it.duplicates += 1
            else:
                it.conflicts.append(
                    _conflict(param, measured_at, value, status, stored_value, stored_status)
                )
        return racing

    @staticmethod
    def _rejection_rows(items: Sequence[Item]) -> Iterable[tuple]:
        # Everything here but the reason code came from a payload: make it storable
        # (quantrac.ingest.storable), or one NUL byte fails the whole batch.
        for it in items:
            station_id = storable_key(it.station_id)
            topic = storable_key(it.topic)
            seq = it.seq if it.seq is not None and fits_int8(it.seq) else None
            excerpt = storable_text(it.payload_excerpt)
            for p in (*it.problems, *it.conflicts):
                yield (
                    it.received_at,
                    station_id,
                    topic,
                    it.source,
                    p.reason.value,
                    storable_text(p.field),
                    storable_text(p.value),
                    storable_text(p.detail),
                    seq,
                    excerpt,
                )


# --- reads of the stored readings, for the API, the alert engine, forwarding and tools ---------

_NEWEST_PER_STATION = (
    "SELECT station_id, max(measured_at) FROM readings WHERE measured_at > %s GROUP BY station_id"
)


async def newest_per_station(conn: psycopg.AsyncConnection, since: datetime) -> dict[str, datetime]:
    """The newest reading time of each station that has one after ``since``."""
    cur = await conn.execute(_NEWEST_PER_STATION, [since])
    return {row[0]: row[1] for row in await cur.fetchall()}


_LATEST = """
    SELECT p.param, r.measured_at, r.value, r.status
    FROM unnest(%(params)s::text[]) AS p(param)
    CROSS JOIN LATERAL (
        SELECT measured_at, value, status FROM readings
        WHERE station_id = %(station)s AND param = p.param
          AND measured_at > %(since)s
        ORDER BY measured_at DESC LIMIT 1
    ) r
"""

# (measured_at, value, status) of one reading.
StoredValue = tuple[datetime, float | None, int]


async def latest_values(
    conn: psycopg.AsyncConnection, station_id: str, params: list[str], since: datetime
) -> dict[str, StoredValue]:
    """The newest reading after ``since`` of each of ``params`` of one station."""
    cur = await conn.execute(_LATEST, {"params": params, "station": station_id, "since": since})
    return {row[0]: (row[1], row[2], row[3]) for row in await cur.fetchall()}


async def raw_series(
    conn: psycopg.AsyncConnection, station_id: str, param: str, start: datetime, end: datetime
) -> list[StoredValue]:
    """Every reading of one parameter in [start, end), oldest first."""
    cur = await conn.execute(
        "SELECT measured_at, value, status FROM readings WHERE station_id = %s AND param = %s "
        "AND measured_at >= %s AND measured_at < %s ORDER BY measured_at",
        [station_id, param, start, end],
    )
    return [(r[0], r[1], r[2]) for r in await cur.fetchall()]


async def flagged_readings(
    conn: psycopg.AsyncConnection, station_id: str, param: str, start: datetime, end: datetime
) -> list[tuple[datetime, int]]:
    """(measured_at, status) of the readings with status other than 00 in [start, end), oldest
    first. Served by the partial index on status <> 0."""
    cur = await conn.execute(
        "SELECT measured_at, status FROM readings WHERE station_id = %s AND param = %s "
        "AND status <> 0 AND measured_at >= %s AND measured_at < %s ORDER BY measured_at",
        [station_id, param, start, end],
    )
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def count_between(
    conn: psycopg.AsyncConnection,
    station_id: str,
    param: str,
    after: datetime,
    before: datetime,
    not_before: datetime,
) -> int:
    """Readings of one parameter with after < measured_at < before and measured_at >=
    not_before."""
    cur = await conn.execute(
        "SELECT count(*) FROM readings WHERE station_id = %s AND param = %s "
        "AND measured_at > %s AND measured_at < %s AND measured_at >= %s",
        [station_id, param, after, before, not_before],
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


_NEWEST_WITHIN = """
    SELECT w.i, (SELECT max(r.measured_at) FROM readings r WHERE r.station_id = w.station_id
                 AND (w.param = '' OR r.param = w.param) AND r.measured_at <= w.last_at
                 AND r.measured_at > w.first_at - interval '2 days')
    FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[])
         WITH ORDINALITY AS w(station_id, param, first_at, last_at, i)
"""


async def newest_within(
    conn: psycopg.AsyncConnection, windows: list[tuple[str, str, datetime, datetime]]
) -> list[datetime | None]:
    """For each (station, param, first, last): the newest reading of that parameter (any
    parameter when param is '') at or before ``last`` and less than 2 days before ``first``;
    None when there is none. One answer per window, in the order given."""
    if not windows:
        return []
    cur = await conn.execute(
        _NEWEST_WITHIN,
        [
            [w[0] for w in windows],
            [w[1] for w in windows],
            [w[2] for w in windows],
            [w[3] for w in windows],
        ],
    )
    found = {int(i): at for i, at in await cur.fetchall()}
    return [found.get(i + 1) for i in range(len(windows))]


async def recent_readings(
    conn: psycopg.AsyncConnection, since: datetime, stations: list[str] | None = None
) -> psycopg.AsyncCursor[dict[str, Any]]:
    """Readings and instrument statuses since ``since`` (value None for a status), in
    measured-time order, as dict rows; only those of ``stations`` when given. The alert engine
    rebuilds its windows from them after a restart."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT station_id, param, measured_at, value, status, received_at FROM readings "
        "WHERE measured_at >= %s AND (%s::text[] IS NULL OR station_id = ANY(%s)) "
        "UNION ALL SELECT station_id, param, measured_at, NULL, status, received_at "
        "FROM instrument_status "
        "WHERE measured_at >= %s AND (%s::text[] IS NULL OR station_id = ANY(%s)) "
        "ORDER BY measured_at",
        [since, stations, stations, since, stations, stations],
    )
    return cur


async def all_readings(
    conn: psycopg.AsyncConnection,
) -> list[tuple[str, str, datetime, float, int]]:
    """(station_id, param, measured_at, value, status) of every stored reading, in no
    particular order (a test harness's check of a whole run)."""
    cur = await conn.execute("SELECT station_id, param, measured_at, value, status FROM readings")
    return [(r[0], r[1], r[2], r[3], r[4]) for r in await cur.fetchall()]


# The stored readings grouped by slot (station, measured time) for some stations in [start, end),
# as a subquery for a caller that joins it with its own table in one statement (forwarding
# joins its log, and its LIMIT applies after that join). Arguments, in order: station ids
# (text[]), start, end. Columns: station_id, measured_at, params, "values", statuses (each array
# in parameter order) and n, the slot's count of readings. Grouped in time order, so a caller
# ordering by (measured_at, station_id) with a LIMIT stops early instead of grouping the range.
READING_SLOTS = """
    SELECT station_id, measured_at, array_agg(param ORDER BY param) AS params,
           array_agg(value ORDER BY param) AS "values",
           array_agg(status ORDER BY param) AS statuses, count(*) AS n
    FROM readings
    WHERE station_id = ANY(%s) AND measured_at >= %s AND measured_at < %s
    GROUP BY measured_at, station_id
"""
