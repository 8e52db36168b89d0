"""Tables of sealed evidence (owner module): sealed files, locked periods, corrections, held
arrivals, and the trigger that keeps a locked period's readings from changing silently.

The triggers are the guard, not the application (installed while locks exist, see
``refresh_guard``): an UPDATE or DELETE of a reading inside a locked
period fails (SQLSTATE ``QL001``) unless the session went through the correction path, which
sets ``quantrac.correction`` for its transaction and writes the audit row. A reading that
*arrives* for a locked period is not lost and not merged silently: it is kept in
``held_readings`` for an administrator to apply (as a correction) or discard.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from quantrac.core.migrations import apply_component_migrations

_MIGRATION_LOCK = 0x71657664  # "qevd"

LOCKED_SQLSTATE = "QL001"


async def _v1(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("""
        CREATE TABLE sealed_files (
            sha256          text PRIMARY KEY,
            file_name       text NOT NULL,
            kind            text NOT NULL,
            request         jsonb NOT NULL,
            stations        text[] NOT NULL,
            period_start    timestamptz NOT NULL,
            period_end      timestamptz NOT NULL,
            readings_sha256 text NOT NULL,
            readings_count  bigint NOT NULL,
            sealed_at       timestamptz NOT NULL,
            sealed_by       text NOT NULL
        );
        CREATE TABLE locked_periods (
            id          bigserial PRIMARY KEY,
            station_id  text,  -- NULL: every station
            start_at    timestamptz NOT NULL,
            end_at      timestamptz NOT NULL,
            reason      text NOT NULL,
            locked_by   text NOT NULL,
            locked_at   timestamptz NOT NULL DEFAULT now(),
            unlocked_by text,
            unlocked_at timestamptz,
            CHECK (end_at > start_at)
        );
        CREATE INDEX locked_periods_active ON locked_periods (start_at, end_at)
            WHERE unlocked_at IS NULL;
        CREATE TABLE reading_corrections (
            id          bigserial PRIMARY KEY,
            station_id  text NOT NULL,
            param       text NOT NULL,
            measured_at timestamptz NOT NULL,
            action      text NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
            old_value   double precision,
            old_status  smallint,
            new_value   double precision,
            new_status  smallint,
            reason      text NOT NULL,
            actor       text NOT NULL,
            at          timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE INDEX reading_corrections_key ON reading_corrections (station_id, measured_at);
        CREATE TABLE held_readings (
            id          bigserial PRIMARY KEY,
            lock_id     bigint NOT NULL REFERENCES locked_periods (id),
            station_id  text NOT NULL,
            param       text NOT NULL,
            measured_at timestamptz NOT NULL,
            value       double precision NOT NULL,
            status      smallint NOT NULL,
            received_at timestamptz NOT NULL,
            held_at     timestamptz NOT NULL DEFAULT now(),
            resolution  text CHECK (resolution IN ('applied', 'discarded')),
            resolved_by text,
            resolved_at timestamptz
        );
        CREATE FUNCTION quantrac_locked_period(station text, moment timestamptz)
        RETURNS bigint LANGUAGE sql STABLE AS $$
            SELECT id FROM locked_periods
            WHERE unlocked_at IS NULL AND (station_id IS NULL OR station_id = station)
              AND moment >= start_at AND moment < end_at
            ORDER BY id LIMIT 1
        $$;
        CREATE FUNCTION quantrac_guard_readings() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            lock_id bigint;
        BEGIN
            IF coalesce(current_setting('quantrac.correction', true), '') = 'on' THEN
                RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
            END IF;
            IF TG_OP = 'INSERT' THEN
                lock_id := quantrac_locked_period(NEW.station_id, NEW.measured_at);
                IF lock_id IS NULL THEN
                    RETURN NEW;
                END IF;
                INSERT INTO held_readings (lock_id, station_id, param, measured_at, value,
                                           status, received_at)
                VALUES (lock_id, NEW.station_id, NEW.param, NEW.measured_at, NEW.value,
                        NEW.status, NEW.received_at);
                RETURN NULL;
            END IF;
            lock_id := quantrac_locked_period(OLD.station_id, OLD.measured_at);
            IF lock_id IS NULL AND TG_OP = 'UPDATE' THEN
                lock_id := quantrac_locked_period(NEW.station_id, NEW.measured_at);
            END IF;
            IF lock_id IS NOT NULL THEN
                RAISE EXCEPTION 'reading % % % is in locked period %',
                    OLD.station_id, OLD.param, OLD.measured_at, lock_id
                    USING ERRCODE = 'QL001',
                          HINT = 'change it with: quantrac readings correct (admin, audited)';
            END IF;
            RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END
        $$;
        CREATE TRIGGER readings_locked_guard
            BEFORE INSERT OR UPDATE OR DELETE ON readings
            FOR EACH ROW EXECUTE FUNCTION quantrac_guard_readings();
    """)


async def _v2(conn: psycopg.AsyncConnection) -> None:
    # The guard of v1 ran for every row ingested, halving the writer's rate (bench/locks.py):
    # it is now installed by refresh_guard only while locks exist, and only for old times.
    await conn.execute("DROP TRIGGER IF EXISTS readings_locked_guard ON readings")
    await refresh_guard(conn)


_GUARDS = ("readings_locked_insert", "readings_locked_update", "readings_locked_delete")


async def refresh_guard(conn: psycopg.AsyncConnection) -> None:
    """(Re)install the guard triggers for the active locks, in the caller's transaction.

    Locks cover closed periods, so live readings are always after the latest locked end: the
    triggers' WHEN clause (a constant, evaluated without calling the function) lets them
    through at no cost, and only a reading for a time before that end is checked. No lock, no
    trigger.
    """
    for name in _GUARDS:
        await conn.execute(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON readings").format(sql.Identifier(name))
        )
    cur = await conn.execute("SELECT max(end_at) FROM locked_periods WHERE unlocked_at IS NULL")
    row = await cur.fetchone()
    cutoff = row[0] if row else None
    if cutoff is None:
        return
    until = sql.Literal(cutoff)
    for name, event, condition in (
        (_GUARDS[0], "INSERT", sql.SQL("NEW.measured_at < {}").format(until)),
        (
            _GUARDS[1],
            "UPDATE",
            sql.SQL("OLD.measured_at < {c} OR NEW.measured_at < {c}").format(c=until),
        ),
        (_GUARDS[2], "DELETE", sql.SQL("OLD.measured_at < {}").format(until)),
    ):
        await conn.execute(
            sql.SQL(
                "CREATE TRIGGER {} BEFORE {} ON readings FOR EACH ROW WHEN ({})"
                " EXECUTE FUNCTION quantrac_guard_readings()"
            ).format(sql.Identifier(name), sql.SQL(event), condition)
        )


MIGRATIONS = [
    (1, "sealed files, locked periods, corrections, held readings", _v1),
    (2, "the locked-period guard only while locks exist, only for old times", _v2),
]


async def upgrade(conn: psycopg.AsyncConnection) -> list[int]:
    return await apply_component_migrations(
        conn, "evidence_migrations", _MIGRATION_LOCK, MIGRATIONS
    )
