"""Forwarding runs: which time slots are due, sending them in order, the record of what went.

``forward_log`` (owner module) has one row per target, station and measured time: the file
name and path, its SHA-256, how many readings it held, when it was sent and how many times.
A slot is due when it has no row, or when it has more readings now than were sent (a late
parameter), or when one of its readings was corrected after it was sent (the audited overlay
of ``reading_corrections``): then the whole file is sent again under the same name. Each
file's row is committed right after the upload, so a run that fails (server unreachable,
disk full) resumes at the first file not recorded. ``forward_state`` keeps each target's last
outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

from quantrac.core.migrations import apply_component_migrations
from quantrac.core.registry import Registry
from quantrac.core.time import VIETNAM
from quantrac.forward.config import ForwardTarget, resolve_url
from quantrac.forward.files import ForwardError, Line, Tt10File, build_file
from quantrac.forward.targets import Target, TargetError, target_from_url
from quantrac.ingest.writer import READING_SLOTS

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x7166776E  # "qfwn"


async def _v1(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("""
        CREATE TABLE forward_log (
            target      text NOT NULL,
            station_id  text NOT NULL,
            measured_at timestamptz NOT NULL,
            file_name   text NOT NULL,
            remote_path text NOT NULL,
            sha256      text NOT NULL,
            readings    integer NOT NULL,
            sent_at     timestamptz NOT NULL,
            sends       integer NOT NULL DEFAULT 1,
            PRIMARY KEY (target, station_id, measured_at)
        );
        CREATE TABLE forward_state (
            target          text PRIMARY KEY,
            last_run_at     timestamptz NOT NULL,
            last_ok_at      timestamptz,
            last_error      text,
            files_sent      bigint NOT NULL DEFAULT 0
        );
    """)


async def _v2(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("ALTER TABLE forward_state ADD COLUMN scanned_until timestamptz")


async def _v3(conn: psycopg.AsyncConnection) -> None:
    # The database's time when the slot's readings were read for the file: a correction
    # recorded after it (reading_corrections.at, same clock) sends the file again. Rows sent
    # before this version count from the upgrade (earlier corrections are not sent again).
    await conn.execute(
        "ALTER TABLE forward_log ADD COLUMN read_at timestamptz NOT NULL DEFAULT now()"
    )


MIGRATIONS = [
    (1, "forward log and state", _v1),
    (2, "forward state: how far every due slot was sent", _v2),
    (3, "forward log: when the readings of each file were read", _v3),
]


async def upgrade(conn: psycopg.AsyncConnection) -> list[int]:
    return await apply_component_migrations(conn, "forward_migrations", _MIGRATION_LOCK, MIGRATIONS)


def forwarded_stations(target: ForwardTarget, registry: Registry) -> list[str]:
    """The target's stations; each needs an ftp_name (the name upstream knows it by)."""
    if target.stations is None:
        return sorted(s.id for s in registry.stations.values() if s.ftp_name)
    missing = [
        s for s in target.stations if registry.get(s) is None or not registry.stations[s].ftp_name
    ]
    if missing:
        raise ForwardError(
            f"target {target.name}: station(s) without an ftp_name in the registry (the "
            f"Province_Facility_Station name of their files): {', '.join(missing)}"
        )
    return list(target.stations)


# The readings' owner (ingest/writer.py) groups the slots; a slot is due when this target's log
# has no row for it or one with fewer readings. Arguments: stations, start, end, target, limit.
_DUE_SLOTS = f"""
    WITH s AS ({READING_SLOTS})
    SELECT s.station_id, s.measured_at, s.params, s."values", s.statuses
    FROM s
    LEFT JOIN forward_log f ON f.target = %s AND f.station_id = s.station_id
                           AND f.measured_at = s.measured_at
    WHERE f.readings IS NULL OR f.readings < s.n
    ORDER BY s.measured_at, s.station_id
    LIMIT %s
"""

# Slots already sent whose readings were corrected since (the audited overlay of evidence,
# ``reading_corrections``, read by SQL: that module is not imported here). Not bounded by the
# scan window: a correction of a sealed month, however old, is sent again. Arguments: target,
# stations, limit.
_CORRECTED_SLOTS = """
    SELECT c.station_id, c.measured_at
    FROM reading_corrections c
    JOIN forward_log f ON f.target = %s AND f.station_id = c.station_id
                      AND f.measured_at = c.measured_at
    WHERE c.station_id = ANY(%s) AND c.at > f.read_at
    GROUP BY c.station_id, c.measured_at
    ORDER BY c.measured_at, c.station_id
    LIMIT %s
"""

_SLOT_READINGS = f"""
    WITH s AS ({READING_SLOTS})
    SELECT s.station_id, s.measured_at, s.params, s."values", s.statuses FROM s
"""

Slot = tuple[str, datetime, list[str], list[float], list[int]]


async def corrected_slots(
    conn: psycopg.AsyncConnection, target: str, stations: list[str], limit: int
) -> list[Slot]:
    """The slots sent to ``target`` whose readings were corrected after they were sent, with
    their readings as they are now. A slot whose readings were all deleted has no file to send
    (it is logged and left as it was)."""
    cur = await conn.execute("SELECT to_regclass('reading_corrections') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0] or limit <= 0:
        return []
    cur = await conn.execute(_CORRECTED_SLOTS, [target, stations, limit])
    out: list[Slot] = []
    for station_id, measured_at in await cur.fetchall():
        found = await conn.execute(
            _SLOT_READINGS, [[station_id], measured_at, measured_at + timedelta(microseconds=1)]
        )
        slot = await found.fetchone()
        if slot is None:
            log.warning(
                "forward: every reading of a sent file was deleted by correction; not resent",
                extra={
                    "event": "forward_corrected_empty",
                    "target": target,
                    "station": station_id,
                    "measured_at": measured_at.isoformat(),
                },
            )
            continue
        out.append(tuple(slot))
    return out


@dataclass
class ForwardResult:
    target: str
    sent: int = 0
    resent: int = 0
    error: str | None = None
    paths: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


Sleep = Callable[[float], Awaitable[None]]


async def forward_once(
    conn: psycopg.AsyncConnection,
    target: ForwardTarget,
    registry: Registry,
    now: datetime,
    *,
    environ: Mapping[str, str],
    max_files: int = 10_000,
    sleep: Sleep = asyncio.sleep,
    destination: Target | None = None,
) -> ForwardResult:
    """Send the due slots of ``target`` oldest first; stop at the first file that keeps
    failing (it and what follows are sent by the next run)."""
    result = ForwardResult(target.name)
    stations = forwarded_stations(target, registry)
    dest = destination or target_from_url(
        resolve_url(target.url, environ), ca_file=target.ca_file, timeout_s=target.timeout_s
    )
    until = now - timedelta(seconds=target.delay_s)
    cur = await conn.execute(
        "SELECT scanned_until FROM forward_state WHERE target = %s", [target.name]
    )
    row = await cur.fetchone()
    scan_from = target.since
    if row and row[0] is not None:
        # Everything due before scanned_until was sent; look back late_s for late readings.
        scan_from = max(target.since, row[0] - timedelta(seconds=target.late_s))
    cur = await conn.execute("SELECT clock_timestamp()")
    clock = await cur.fetchone()
    assert clock is not None
    read_at: datetime = clock[0]
    corrected = await corrected_slots(conn, target.name, stations, max_files)
    limit = max_files - len(corrected)
    cur = await conn.execute(_DUE_SLOTS, [stations, scan_from, until, target.name, limit])
    due = await cur.fetchall()
    await conn.commit()
    seen = {(slot[0], slot[1]) for slot in corrected}
    slots = sorted(
        [*corrected, *(slot for slot in due if (slot[0], slot[1]) not in seen)],
        key=lambda slot: (slot[1], slot[0]),
    )
    opened = False
    try:
        for station_id, measured_at, params, values, statuses in slots:
            station = registry.stations[station_id]
            assert station.ftp_name is not None
            local = station.utc_offset or VIETNAM
            lines = [
                Line(p, v, station.parameters[p].unit.id if p in station.parameters else "", s)
                for p, v, s in zip(params, values, statuses, strict=True)
            ]
            item = build_file(
                station_id, station.ftp_name, measured_at, lines, local, target.layout
            )
            path = await _put_with_retries(dest, item, target, sleep, opened)
            opened = True
            resent = await _record(conn, target.name, item, path, now, read_at)
            result.sent += 1
            result.resent += int(resent)
            result.paths.append(path)
    except TargetError as exc:
        result.error = str(exc)
    finally:
        await asyncio.to_thread(dest.close)
    complete = result.ok and len(due) < limit
    await _record_state(conn, result, now, until if complete else None)
    return result


async def _put_with_retries(
    dest: Target, item: Tt10File, target: ForwardTarget, sleep: Sleep, opened: bool
) -> str:
    attempt = 0
    while True:
        attempt += 1
        try:
            if not opened:
                await asyncio.to_thread(dest.open)
                opened = True
            return await asyncio.to_thread(dest.put, item)
        except TargetError as exc:
            opened = False
            if not exc.retryable or attempt >= target.max_attempts:
                raise
            delay = target.backoff_s * 2 ** (attempt - 1)
            log.warning(
                "forward: retrying",
                extra={
                    "event": "forward_retry",
                    "target": target.name,
                    "file": item.name,
                    "attempt": attempt,
                    "error": str(exc),
                },
            )
            await sleep(delay)


async def _record(
    conn: psycopg.AsyncConnection,
    target: str,
    item: Tt10File,
    path: str,
    now: datetime,
    read_at: datetime,
) -> bool:
    cur = await conn.execute(
        "INSERT INTO forward_log (target, station_id, measured_at, file_name, remote_path,"
        " sha256, readings, sent_at, read_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (target, station_id, measured_at) DO UPDATE SET"
        " file_name = EXCLUDED.file_name, remote_path = EXCLUDED.remote_path,"
        " sha256 = EXCLUDED.sha256, readings = EXCLUDED.readings, sent_at = EXCLUDED.sent_at,"
        " read_at = EXCLUDED.read_at, sends = forward_log.sends + 1 RETURNING sends",
        [
            target,
            item.station_id,
            item.measured_at,
            item.name,
            path,
            item.sha256,
            item.readings,
            now,
            read_at,
        ],
    )
    row = await cur.fetchone()
    await conn.commit()
    return bool(row and row[0] > 1)


async def target_states(
    conn: psycopg.AsyncConnection,
) -> list[tuple[str, datetime, datetime | None, str | None, int]]:
    """Each target's (name, last run, last success, last error, files sent), by name."""
    cur = await conn.execute(
        "SELECT target, last_run_at, last_ok_at, last_error, files_sent FROM forward_state"
        " ORDER BY target"
    )
    return [tuple(row) for row in await cur.fetchall()]


async def _record_state(
    conn: psycopg.AsyncConnection,
    result: ForwardResult,
    now: datetime,
    scanned_until: datetime | None,
) -> None:
    await conn.execute(
        "INSERT INTO forward_state (target, last_run_at, last_ok_at, last_error, files_sent,"
        " scanned_until) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (target) DO UPDATE SET"
        " last_run_at = EXCLUDED.last_run_at,"
        " last_ok_at = coalesce(EXCLUDED.last_ok_at, forward_state.last_ok_at),"
        " last_error = EXCLUDED.last_error,"
        " files_sent = forward_state.files_sent + EXCLUDED.files_sent,"
        " scanned_until = greatest(forward_state.scanned_until, EXCLUDED.scanned_until)",
        [result.target, now, now if result.ok else None, result.error, result.sent, scanned_until],
    )
    await conn.commit()
