"""Hourly rollup on plain PostgreSQL (TimescaleDB keeps its own continuous aggregate).

Each batch that stores status-00 readings records the hours it touched in ``rollup_dirty`` in
the same transaction. A refresh claims those rows and recomputes the hours from ``readings``,
the source of truth, so a lost or repeated refresh never counts a reading twice.
"""

from __future__ import annotations

import psycopg

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
