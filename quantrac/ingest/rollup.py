"""The hourly rollup ``readings_hourly``, kept up to date on both backends.

Each batch that stores status-00 readings records the hours it touched in ``rollup_dirty`` in
the same transaction (so do corrections). On plain PostgreSQL a refresh claims those rows and
recomputes the hours from ``readings``, the source of truth, so a lost or repeated refresh never
counts a reading twice.

On TimescaleDB ``readings_hourly`` is a real-time continuous aggregate. Its refresh policy only
looks back a few days, and below the aggregate's watermark only materialized hours are shown:
an hour backfilled or corrected later than that would stay missing or stale. Once an hour is
complete (older than the policy's end offset) it is refreshed here, with
``refresh_continuous_aggregate`` over the runs of consecutive dirty hours, forced, so that an
hour TimescaleDB missed (a batch committing while its policy moved the threshold) is right too.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timedelta

import psycopg

from quantrac.core.time import VIETNAM_ZONE_NAME
from quantrac.ingest.schema import HOURLY_END_OFFSET

_REFRESH_LOCK = 0x71726F6C  # "qrol": one refresher at a time across workers

_CLAIM = "DELETE FROM rollup_dirty RETURNING hour"

# READ COMMITTED: this statement's snapshot is newer than the claim's, so it sees every batch
# whose dirty row was claimed. Batches committed after the claim left their own dirty rows.
_RECOMPUTE = """
    INSERT INTO readings_hourly AS h (station_id, param, hour, n, min, max, mean)
    SELECT r.station_id, r.param, d.hour, count(*), min(r.value), max(r.value), avg(r.value)
    FROM unnest(%(hours)s::timestamptz[]) AS d(hour)
    JOIN readings r ON r.measured_at >= d.hour AND r.measured_at < d.hour + interval '1 hour'
    WHERE r.status = 0
    GROUP BY r.station_id, r.param, d.hour
    ON CONFLICT (station_id, param, hour) DO UPDATE
    SET n = excluded.n, min = excluded.min, max = excluded.max, mean = excluded.mean
"""


async def refresh_hourly(conn: psycopg.AsyncConnection) -> int:
    """Recompute the hours that received readings since the last refresh. Returns their count."""
    async with conn.transaction():
        cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", [_REFRESH_LOCK])
        row = await cur.fetchone()
        if not row or not row[0]:
            return 0
        cur = await conn.execute(_CLAIM)
        hours = sorted({r[0] for r in await cur.fetchall()})
        if not hours:
            return 0
        await conn.execute(_RECOMPUTE, {"hours": hours})
        return len(hours)


# Hours still filling stay in rollup_dirty: real-time aggregation shows them, and refreshing
# them now would raise the watermark above readings still to come. The rows are deleted only
# after their refresh (by row, so that hours marked again meanwhile stay): a crash in between
# costs a second refresh, never a stale hour.
_COMPLETE = (
    "SELECT ctid::text, hour FROM rollup_dirty"
    " WHERE hour <= now() - %s::interval - interval '1 hour'"
)
_DONE = "DELETE FROM rollup_dirty WHERE ctid = ANY(%s::tid[])"
_REFRESH = "CALL refresh_continuous_aggregate('readings_hourly', %s::timestamptz, %s::timestamptz)"
# Forced (TimescaleDB 2.18 and later): the hours are recomputed from the readings whatever
# TimescaleDB's invalidation log says. A batch that commits while the refresh policy moves its
# threshold can leave no invalidation for its hours (TimescaleDB 2.28 takes no lock against
# it); rollup_dirty, written in the batch's own transaction, still names them.
_REFRESH_FORCED = (
    "CALL refresh_continuous_aggregate('readings_hourly', %s::timestamptz, %s::timestamptz,"
    " force => true)"
)
_FORCE_FROM = (2, 18)


async def _refresh_statement(conn: psycopg.AsyncConnection) -> str:
    cur = await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    row = await cur.fetchone()
    version = tuple(int(p) for p in re.findall(r"\d+", row[0])[:2]) if row else ()
    return _REFRESH_FORCED if version >= _FORCE_FROM else _REFRESH


def consecutive_runs(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Hours (on the hour) → [start, end) windows, one per run of consecutive hours."""
    runs: list[tuple[datetime, datetime]] = []
    for hour in sorted(set(hours)):
        if runs and runs[-1][1] == hour:
            runs[-1] = (runs[-1][0], hour + timedelta(hours=1))
        else:
            runs.append((hour, hour + timedelta(hours=1)))
    return runs


async def refresh_timescale_hourly(conn: psycopg.AsyncConnection) -> int:
    """Refresh the continuous aggregate over the complete hours that received readings or
    corrections. ``conn`` must be in autocommit (a refresh cannot run inside a transaction).
    Returns the number of hours refreshed."""
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", [_REFRESH_LOCK])
    row = await cur.fetchone()
    if not row or not row[0]:
        return 0
    try:
        cur = await conn.execute(_COMPLETE, [HOURLY_END_OFFSET])
        rows = await cur.fetchall()
        hours = {hour for _, hour in rows}
        statement = await _refresh_statement(conn) if hours else _REFRESH
        for start, end in consecutive_runs(list(hours)):
            await conn.execute(statement, [start, end])
        if rows:
            await conn.execute(_DONE, [[ctid for ctid, _ in rows]])
        return len(hours)
    finally:
        with contextlib.suppress(psycopg.Error):
            await conn.execute("SELECT pg_advisory_unlock(%s)", [_REFRESH_LOCK])


# (hour or day, mean, min, max, count) of one aggregated period.
Aggregate = tuple[datetime, float | None, float | None, float | None, int]


async def hourly_series(
    conn: psycopg.AsyncConnection, station_id: str, param: str, start: datetime, end: datetime
) -> list[Aggregate]:
    """The hourly aggregate of one parameter for the hours in [start, end), oldest first."""
    cur = await conn.execute(
        "SELECT hour, mean, min, max, n FROM readings_hourly WHERE station_id = %s "
        "AND param = %s AND hour >= %s AND hour < %s ORDER BY hour",
        [station_id, param, start, end],
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in await cur.fetchall()]


async def daily_series(
    conn: psycopg.AsyncConnection, station_id: str, param: str, start: datetime, end: datetime
) -> list[Aggregate]:
    """Days (Vietnam time, as naive midnights) built from the hours in [start, end): the mean
    weighted by each hour's count, the extremes and the count."""
    cur = await conn.execute(
        "SELECT date_trunc('day', hour AT TIME ZONE %s) AS day, "
        "sum(mean * n) / sum(n), min(min), max(max), sum(n) FROM readings_hourly "
        "WHERE station_id = %s AND param = %s AND hour >= %s AND hour < %s "
        "GROUP BY 1 ORDER BY 1",
        [VIETNAM_ZONE_NAME, station_id, param, start, end],
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in await cur.fetchall()]
