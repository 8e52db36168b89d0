"""The station log (owner module): maintenance windows and every maintenance, repair,
replacement or calibration, as rows of ``station_log``. A cancelled entry is kept, marked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from quantrac.alerts.maintenance import MaintenanceWindow, WindowError
from quantrac.core.migrations import apply_component_migrations

_MIGRATION_LOCK = 0x71736C67  # "qslg"


async def _v1(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("""
        CREATE TABLE station_log (
            id           bigserial PRIMARY KEY,
            station_id   text NOT NULL,
            kind         text NOT NULL
                CHECK (kind IN ('maintenance', 'repair', 'replacement', 'calibration')),
            params       text[] NOT NULL DEFAULT '{}',  -- empty: the whole station
            start_at     timestamptz NOT NULL,
            end_at       timestamptz NOT NULL,
            reason       text NOT NULL,
            actor        text NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            cancelled_at timestamptz,
            cancelled_by text,
            CHECK (end_at > start_at)
        );
        CREATE INDEX station_log_station_time ON station_log (station_id, start_at, end_at);
    """)


MIGRATIONS = [(1, "station log and maintenance windows", _v1)]


async def upgrade(conn: psycopg.AsyncConnection) -> list[int]:
    return await apply_component_migrations(
        conn, "station_log_migrations", _MIGRATION_LOCK, MIGRATIONS
    )


_COLUMNS = "id, station_id, kind, start_at, end_at, reason, actor, params"


def _window(row: Sequence[Any]) -> MaintenanceWindow:
    return MaintenanceWindow(
        id=row[0],
        station_id=row[1],
        kind=row[2],
        start=row[3],
        end=row[4],
        reason=row[5],
        actor=row[6],
        params=frozenset(row[7]),
    )


async def add_entry(
    conn: psycopg.AsyncConnection,
    station_id: str,
    kind: str,
    start: datetime,
    end: datetime,
    params: Sequence[str],
    reason: str,
    actor: str,
) -> MaintenanceWindow:
    """Record an entry (validated by ``maintenance.check_window`` first). The caller commits."""
    cur = await conn.execute(
        f"INSERT INTO station_log (station_id, kind, params, start_at, end_at, reason, actor)"
        f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        [station_id, kind, sorted(params), start, end, reason, actor],
    )
    row = await cur.fetchone()
    assert row is not None
    return _window(row)


async def cancel_entry(conn: psycopg.AsyncConnection, entry_id: int, actor: str) -> None:
    cur = await conn.execute(
        "UPDATE station_log SET cancelled_at = now(), cancelled_by = %s"
        " WHERE id = %s AND cancelled_at IS NULL",
        [actor, entry_id],
    )
    if cur.rowcount == 0:
        raise WindowError("error.window.entry", id=entry_id)


async def entry_station(conn: psycopg.AsyncConnection, entry_id: int) -> str | None:
    """The station a log entry belongs to, or None when there is no such entry."""
    row = await (
        await conn.execute("SELECT station_id FROM station_log WHERE id = %s", [entry_id])
    ).fetchone()
    return None if row is None else str(row[0])


async def windows_between(
    conn: psycopg.AsyncConnection,
    station_ids: Sequence[str] | None,
    start: datetime,
    end: datetime,
) -> list[MaintenanceWindow]:
    """Entries (not cancelled) that overlap [start, end), of some stations or all."""
    query = (
        f"SELECT {_COLUMNS} FROM station_log WHERE cancelled_at IS NULL"
        " AND start_at < %s AND end_at > %s"
    )
    args: list[Any] = [end, start]
    if station_ids is not None:
        query += " AND station_id = ANY(%s)"
        args.append(list(station_ids))
    cur = await conn.execute(query + " ORDER BY start_at, id", args)
    return [_window(row) for row in await cur.fetchall()]
