"""Locking a period and the one audited path that may still change its readings.

Locks are admin actions (CLI ``quantrac period lock``, API ``POST /api/v1/locks``). A
correction sets ``quantrac.correction`` for its own transaction only (``set_config(..., true)``),
so the database trigger lets that one change through, and writes the before/after row in
``reading_corrections`` in the same transaction: a correction without its audit row cannot be
committed, and nothing else can change a locked reading.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from quantrac.core.contract import Status
from quantrac.core.i18n import TranslatedError
from quantrac.evidence.schema import refresh_guard

_CORRECTION_LOCK = 0x71636F72  # "qcor", with the reading's hash as second key


class LockError(TranslatedError):
    """A lock or correction request that cannot be carried out (said why; nothing changed)."""


@dataclass(frozen=True, slots=True)
class Lock:
    id: int
    station_id: str | None
    start: datetime
    end: datetime
    reason: str
    locked_by: str
    locked_at: datetime
    unlocked_by: str | None = None
    unlocked_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "station": self.station_id,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "reason": self.reason,
            "locked_by": self.locked_by,
            "locked_at": self.locked_at.isoformat(),
            "unlocked_by": self.unlocked_by,
            "unlocked_at": self.unlocked_at.isoformat() if self.unlocked_at else None,
        }


def check_lock_request(
    station_id: str | None,
    start: datetime,
    end: datetime,
    reason: str,
    known_stations: Collection[str],
    now: datetime,
) -> None:
    """Pure: raise LockError when the request is not sensible."""
    if end <= start:
        raise LockError("error.lock.order")
    if end > now:
        raise LockError("error.lock.open")
    if station_id is not None and station_id not in known_stations:
        raise LockError("error.lock.station", station=repr(station_id))
    if not reason.strip():
        raise LockError("error.lock.reason")


_LOCK_COLUMNS = (
    "id, station_id, start_at, end_at, reason, locked_by, locked_at, unlocked_by, unlocked_at"
)


async def lock_period(
    conn: psycopg.AsyncConnection,
    station_id: str | None,
    start: datetime,
    end: datetime,
    reason: str,
    actor: str,
) -> Lock:
    async with conn.transaction():
        cur = await conn.execute(
            f"INSERT INTO locked_periods (station_id, start_at, end_at, reason, locked_by)"
            f" VALUES (%s, %s, %s, %s, %s) RETURNING {_LOCK_COLUMNS}",
            [station_id, start, end, reason, actor],
        )
        row = await cur.fetchone()
        assert row is not None
        await refresh_guard(conn)
    return Lock(*row)


async def unlock_period(conn: psycopg.AsyncConnection, lock_id: int, actor: str) -> Lock:
    async with conn.transaction():
        cur = await conn.execute(
            f"UPDATE locked_periods SET unlocked_by = %s, unlocked_at = now()"
            f" WHERE id = %s AND unlocked_at IS NULL RETURNING {_LOCK_COLUMNS}",
            [actor, lock_id],
        )
        row = await cur.fetchone()
        if row is None:
            raise LockError("error.lock.missing", id=lock_id)
        await refresh_guard(conn)
    return Lock(*row)


async def list_locks(conn: psycopg.AsyncConnection, *, active_only: bool = False) -> list[Lock]:
    where = " WHERE unlocked_at IS NULL" if active_only else ""
    cur = await conn.execute(f"SELECT {_LOCK_COLUMNS} FROM locked_periods{where} ORDER BY id")
    return [Lock(*row) for row in await cur.fetchall()]


@dataclass(frozen=True, slots=True)
class Correction:
    station_id: str
    param: str
    measured_at: datetime
    value: float | None  # None: delete the reading
    status: Status | None
    reason: str


async def correct_reading(conn: psycopg.AsyncConnection, correction: Correction, actor: str) -> str:
    """Apply one correction with its audit row, in one transaction. Returns the action."""
    c = correction
    if not c.reason.strip():
        raise LockError("error.lock.correction_reason")
    async with conn.transaction():
        await conn.execute("SELECT set_config('quantrac.correction', 'on', true)")
        # Two corrections of one reading take turns. Not SELECT … FOR UPDATE: TimescaleDB
        # cannot lock rows of a compressed chunk, where readings older than a week are (and
        # ingest never changes a stored reading, so only corrections need to wait).
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s || '/' || %s || '/' ||"
            " extract(epoch FROM %s::timestamptz)::text))",
            [_CORRECTION_LOCK, c.station_id, c.param, c.measured_at],
        )
        cur = await conn.execute(
            "SELECT value, status FROM readings"
            " WHERE station_id = %s AND param = %s AND measured_at = %s",
            [c.station_id, c.param, c.measured_at],
        )
        old = await cur.fetchone()
        old_value, old_status = old if old else (None, None)
        if c.value is None:
            if old is None:
                raise LockError("error.lock.no_reading")
            action = "delete"
            await conn.execute(
                "DELETE FROM readings WHERE station_id = %s AND param = %s AND measured_at = %s",
                [c.station_id, c.param, c.measured_at],
            )
        else:
            status = int(c.status if c.status is not None else Status.MEASURING)
            if old is None:
                action = "insert"
                await conn.execute(
                    "INSERT INTO readings (station_id, param, measured_at, value, status,"
                    " received_at) VALUES (%s, %s, %s, %s, %s, now())",
                    [c.station_id, c.param, c.measured_at, c.value, status],
                )
            else:
                action = "update"
                await conn.execute(
                    "UPDATE readings SET value = %s, status = %s"
                    " WHERE station_id = %s AND param = %s AND measured_at = %s",
                    [c.value, status, c.station_id, c.param, c.measured_at],
                )
        await conn.execute(
            "INSERT INTO reading_corrections (station_id, param, measured_at, action, old_value,"
            " old_status, new_value, new_status, reason, actor)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                c.station_id,
                c.param,
                c.measured_at,
                action,
                old_value,
                old_status,
                c.value,
                None if c.value is None else int(c.status or Status.MEASURING),
                c.reason,
                actor,
            ],
        )
        await _mark_hour_dirty(conn, c.measured_at)
    return action


async def _mark_hour_dirty(conn: psycopg.AsyncConnection, moment: datetime) -> None:
    """Have the hourly rollup recompute (plain PostgreSQL) or refresh (TimescaleDB's continuous
    aggregate) the corrected hour; see quantrac.ingest.rollup."""
    cur = await conn.execute("SELECT to_regclass('rollup_dirty') IS NOT NULL")
    row = await cur.fetchone()
    if row and row[0]:
        # The hour in UTC, as the writer marks it (the session's zone may be off the hour).
        await conn.execute(
            "INSERT INTO rollup_dirty (hour) VALUES (date_trunc('hour', %s::timestamptz, 'UTC'))",
            [moment],
        )


async def held_readings(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT id, lock_id, station_id, param, measured_at, value, status, received_at"
        " FROM held_readings WHERE resolution IS NULL ORDER BY id"
    )
    keys = ("id", "lock", "station", "param", "time", "value", "status", "received_at")
    return [dict(zip(keys, row, strict=True)) for row in await cur.fetchall()]


async def resolve_held(
    conn: psycopg.AsyncConnection, held_id: int, apply: bool, reason: str, actor: str
) -> str:
    """Apply a held arrival as an audited correction, or discard it (kept, marked)."""
    cur = await conn.execute(
        "SELECT station_id, param, measured_at, value, status FROM held_readings"
        " WHERE id = %s AND resolution IS NULL",
        [held_id],
    )
    row = await cur.fetchone()
    if row is None:
        raise LockError("error.lock.no_held", id=held_id)
    station, param, measured_at, value, status = row
    if apply:
        await correct_reading(
            conn, Correction(station, param, measured_at, value, Status(status), reason), actor
        )
    async with conn.transaction():
        await conn.execute(
            "UPDATE held_readings SET resolution = %s, resolved_by = %s, resolved_at = now()"
            " WHERE id = %s",
            ["applied" if apply else "discarded", actor, held_id],
        )
    return "applied" if apply else "discarded"
