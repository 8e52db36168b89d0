"""Alerts, their audit trail, exceedance episodes and hourly AQI in PostgreSQL.

"One open alert per (station, parameter, kind)" is a partial unique index, so two workers (or two
messages racing) can never open two: the insert that loses the race updates the winner's row.
Every transition is a row in ``alert_events``; the alert row is only the current summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple

import psycopg

from quantrac.alerts.engine import Change, Episode, Transition
from quantrac.alerts.model import AlertEvent, EventType, Kind, Severity, State
from quantrac.core.i18n import TranslatedError
from quantrac.core.migrations import apply_component_migrations

_MIGRATION_LOCK = 0x71616C74  # "qalt"


async def _v1(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("""
        CREATE TABLE alerts (
            id              bigserial PRIMARY KEY,
            station_id      text NOT NULL,
            param           text NOT NULL DEFAULT '',
            kind            text NOT NULL,
            severity        text NOT NULL,
            state           text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
            opened_at       timestamptz NOT NULL,
            updated_at      timestamptz NOT NULL,
            first_data_at   timestamptz NOT NULL,
            last_data_at    timestamptz NOT NULL,
            count           integer NOT NULL DEFAULT 1,
            last_value      double precision,
            max_value       double precision,
            details         jsonb NOT NULL DEFAULT '{}',
            acknowledged_at timestamptz,
            acknowledged_by text,
            resolved_at     timestamptz,
            resolved_by     text,
            resolution      text CHECK (resolution IN ('auto', 'manual')),
            note            text
        );
        CREATE UNIQUE INDEX alerts_one_open ON alerts (station_id, param, kind)
            WHERE state <> 'resolved';
        CREATE INDEX alerts_open ON alerts (state, severity) WHERE state <> 'resolved';
        CREATE INDEX alerts_station_time ON alerts (station_id, opened_at DESC);
        CREATE TABLE alert_events (
            id        bigserial PRIMARY KEY,
            alert_id  bigint NOT NULL REFERENCES alerts (id),
            at        timestamptz NOT NULL,
            event     text NOT NULL,
            actor     text,
            note      text,
            details   jsonb NOT NULL DEFAULT '{}'
        );
        CREATE INDEX alert_events_alert ON alert_events (alert_id, id);
        CREATE TABLE exceedance_episodes (
            station_id     text NOT NULL,
            param          text NOT NULL,
            averaging      text NOT NULL,
            start_at       timestamptz NOT NULL,
            end_at         timestamptz NOT NULL,
            windows        integer NOT NULL,
            maximum        double precision NOT NULL,
            mean           double precision NOT NULL,
            limit_value    double precision,
            limit_text     text NOT NULL,
            unit           text NOT NULL,
            multiple       double precision,
            band           text,
            completeness   double precision NOT NULL,
            regulation_id  text NOT NULL,
            column_name    text,
            formula        text NOT NULL,
            unverified     boolean NOT NULL,
            ongoing        boolean NOT NULL,
            updated_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (station_id, param, averaging, start_at)
        );
        CREATE INDEX exceedance_episodes_time ON exceedance_episodes (start_at);
        CREATE TABLE aqi_hourly (
            station_id   text NOT NULL,
            hour_start   timestamptz NOT NULL,
            aqi          integer NOT NULL,
            category     text NOT NULL,
            dominant     text[] NOT NULL,
            sub_indices  jsonb NOT NULL,
            inputs       jsonb NOT NULL,
            PRIMARY KEY (station_id, hour_start)
        );
    """)


async def _v2_readings_not_valid(conn: psycopg.AsyncConnection) -> None:
    # Inspector reports (quantrac/reports) read calibration (01) and fault (02) periods: a
    # partial index holds only those few readings, so a year's report never scans the year.
    await conn.execute(
        "CREATE INDEX IF NOT EXISTS readings_not_valid "
        "ON readings (station_id, param, measured_at) WHERE status <> 0"
    )


async def _v3_events_outbox(conn: psycopg.AsyncConnection) -> None:
    # The notification outbox and the board's stream rebuild each event from its row alone.
    await conn.execute("""
        ALTER TABLE alert_events ADD COLUMN state text, ADD COLUMN severity text;
        UPDATE alert_events e SET state = a.state, severity = a.severity
            FROM alerts a WHERE a.id = e.alert_id;
    """)


async def _v4_assignee(conn: psycopg.AsyncConnection) -> None:
    # Who an open alert is given to (issue 13): the summary of its newest ``assigned`` event.
    await conn.execute("""
        ALTER TABLE alerts ADD COLUMN assigned_to text, ADD COLUMN assigned_at timestamptz,
            ADD COLUMN assigned_by text;
    """)


MIGRATIONS = [
    (1, "alerts, alert events, exceedance episodes, hourly AQI", _v1),
    (2, "partial index of readings with status 01/02 (reports)", _v2_readings_not_valid),
    (3, "alert events carry their state and severity (notification outbox)", _v3_events_outbox),
    (4, "alerts carry their assignee (who, by whom, when)", _v4_assignee),
]

# NOTIFY channel woken by every committed alert event.
EVENTS_CHANNEL = "alert_events"
# Held by every transaction that writes alert events, from its first statement to its commit:
# event ids are then taken in commit order, so a reader that saw event n missed none below n.
# Taken first, before any alert row is locked, so it can never be part of a deadlock.
_EVENTS_ORDER_LOCK = 0x71657674  # "qevt"


async def lock_events(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_EVENTS_ORDER_LOCK])


_EVENTS_AFTER = """
    SELECT e.id, e.alert_id, e.event, a.kind, coalesce(e.severity, a.severity), a.station_id,
           a.param, coalesce(e.state, a.state), e.at, a.opened_at, e.actor, e.note, e.details
    FROM alert_events e JOIN alerts a ON a.id = e.alert_id
    WHERE e.id > %s ORDER BY e.id LIMIT %s
"""


async def events_after(
    conn: psycopg.AsyncConnection, position: int, station_names: dict[str, str], limit: int = 200
) -> list[AlertEvent]:
    """Committed alert events after ``position``, oldest first, as notifications carry them."""
    cur = await conn.execute(_EVENTS_AFTER, [position, limit])
    return [
        AlertEvent(
            event_id=r[0],
            alert_id=r[1],
            event=EventType(r[2]),
            kind=Kind(r[3]),
            severity=Severity(r[4]),
            station_id=r[5],
            station_name=station_names.get(r[5]) or r[5],
            param=r[6],
            state=State(r[7]),
            at=r[8],
            opened_at=r[9],
            actor=r[10],
            note=r[11],
            details=r[12],
        )
        for r in await cur.fetchall()
    ]


async def last_event_id(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute("SELECT coalesce(max(id), 0) FROM alert_events")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def open_alert_counts(conn: psycopg.AsyncConnection) -> dict[tuple[str, str], int]:
    """Alerts not resolved (open or acknowledged), by (kind, severity)."""
    cur = await conn.execute(
        "SELECT kind, severity, count(*) FROM alerts WHERE state <> 'resolved' "
        "GROUP BY kind, severity"
    )
    return {(kind, severity): int(n) for kind, severity, n in await cur.fetchall()}


async def upgrade(conn: psycopg.AsyncConnection) -> list[int]:
    return await apply_component_migrations(conn, "alerts_migrations", _MIGRATION_LOCK, MIGRATIONS)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class AlertStateError(TranslatedError):
    """A person's action the alert's state refuses (already resolved, acknowledged …)."""


class AlreadyAssigned(AlertStateError):
    """The alert is already given to that user: nothing to record."""


@dataclass(frozen=True, slots=True)
class OpenAlert:
    id: int
    station_id: str
    param: str
    kind: Kind
    severity: Severity
    state: State
    opened_at: datetime
    acknowledged: bool
    historical: bool = False  # raised by backfilled readings: never escalated


class AlertStore:
    """Applies engine transitions and people's actions; returns the events to notify."""

    def __init__(self, conn: psycopg.AsyncConnection, station_names: dict[str, str]):
        self.conn = conn
        self.station_names = station_names

    async def apply(
        self, transitions: list[Transition], severity_of: Any, now: datetime
    ) -> list[AlertEvent]:
        """One transaction for all transitions of one message, in order."""
        events: list[AlertEvent] = []
        if not transitions:
            return events
        async with self.conn.transaction():
            await lock_events(self.conn)
            for t in transitions:
                event = await self._apply_one(t, severity_of(t.kind), now)
                if event is not None:
                    events.append(event)
        return events

    async def _apply_one(
        self, t: Transition, severity: Severity, now: datetime
    ) -> AlertEvent | None:
        conn = self.conn
        if t.change is Change.CLEAR:
            cur = await conn.execute(
                """UPDATE alerts SET state = 'resolved', resolved_at = %(now)s,
                          resolution = 'auto', updated_at = %(now)s
                   WHERE station_id = %(s)s AND param = %(p)s AND kind = %(k)s
                     AND state <> 'resolved'
                   RETURNING id, opened_at, severity""",
                {"now": now, "s": t.station_id, "p": t.param, "k": t.kind.value},
            )
            row = await cur.fetchone()
            if row is None:
                return None
            return await self._event(
                row[0], EventType.AUTO_RESOLVED, t, Severity(row[2]), State.RESOLVED, row[1], now
            )
        if t.change is Change.REVISE:
            cur = await conn.execute(
                """UPDATE alerts SET details = %(d)s, updated_at = %(now)s,
                          last_value = coalesce(%(v)s, last_value),
                          max_value = greatest(max_value, %(v)s),
                          last_data_at = greatest(last_data_at, %(at)s)
                   WHERE station_id = %(s)s AND param = %(p)s AND kind = %(k)s
                     AND state <> 'resolved'
                   RETURNING id, opened_at, severity, state""",
                {
                    "d": _json(t.details),
                    "now": now,
                    "v": t.value,
                    "at": t.at,
                    "s": t.station_id,
                    "p": t.param,
                    "k": t.kind.value,
                },
            )
            row = await cur.fetchone()
            if row is None:
                return None
            return await self._event(
                row[0], EventType.REVISED, t, Severity(row[2]), State(row[3]), row[1], now
            )
        # Raise or repeat: the one open alert is inserted or updated, whoever gets there first.
        cur = await conn.execute(
            """INSERT INTO alerts AS a (station_id, param, kind, severity, state, opened_at,
                                        updated_at, first_data_at, last_data_at, count,
                                        last_value, max_value, details)
               VALUES (%(s)s, %(p)s, %(k)s, %(sev)s, 'open', %(now)s, %(now)s, %(at)s, %(at)s, 1,
                       %(v)s, %(v)s, %(d)s)
               ON CONFLICT (station_id, param, kind) WHERE state <> 'resolved' DO UPDATE SET
                   count = a.count + 1, updated_at = excluded.updated_at,
                   last_data_at = greatest(a.last_data_at, excluded.last_data_at),
                   last_value = coalesce(excluded.last_value, a.last_value),
                   max_value = CASE WHEN a.max_value IS NULL THEN excluded.max_value
                                    WHEN excluded.max_value IS NULL THEN a.max_value
                                    ELSE greatest(a.max_value, excluded.max_value) END,
                   details = excluded.details
               RETURNING id, opened_at, state, (xmax = 0) AS inserted""",
            {
                "s": t.station_id,
                "p": t.param,
                "k": t.kind.value,
                "sev": severity.value,
                "now": now,
                "at": t.at,
                "v": t.value,
                "d": _json(t.details),
            },
        )
        row = await cur.fetchone()
        assert row is not None
        event_type = EventType.OPENED if row[3] else EventType.UPDATED
        return await self._event(row[0], event_type, t, severity, State(row[2]), row[1], now)

    async def _event(
        self,
        alert_id: int,
        event_type: EventType,
        t: Transition,
        severity: Severity,
        state: State,
        opened_at: datetime,
        now: datetime,
        actor: str | None = None,
        note: str | None = None,
    ) -> AlertEvent:
        details = {**t.details, "data_time": t.at.isoformat()}
        if t.value is not None:
            details.setdefault("value", t.value)
        cur = await self.conn.execute(
            "INSERT INTO alert_events (alert_id, at, event, actor, note, details, state, severity)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            [
                alert_id,
                now,
                event_type.value,
                actor,
                note,
                _json(details),
                state.value,
                severity.value,
            ],
        )
        row = await cur.fetchone()
        assert row is not None
        await self.conn.execute("SELECT pg_notify(%s, %s)", [EVENTS_CHANNEL, str(row[0])])
        return AlertEvent(
            event_id=row[0],
            alert_id=alert_id,
            event=event_type,
            kind=t.kind,
            severity=severity,
            station_id=t.station_id,
            station_name=self.station_names.get(t.station_id, t.station_id),
            param=t.param,
            state=state,
            at=now,
            opened_at=opened_at,
            actor=actor,
            note=note,
            details=details,
        )

    async def _locked(self, alert_id: int) -> tuple[Any, ...]:
        """(station_id, param, kind, severity, state, opened_at, assigned_to) of an alert, locked
        for the caller's transaction after the events lock. Raises LookupError."""
        await lock_events(self.conn)
        cur = await self.conn.execute(
            "SELECT station_id, param, kind, severity, state, opened_at, assigned_to "
            "FROM alerts WHERE id = %s FOR UPDATE",
            [alert_id],
        )
        row = await cur.fetchone()
        if row is None:
            raise LookupError(f"no alert {alert_id}")
        return tuple(row)

    async def act(
        self, alert_id: int, action: EventType, actor: str, note: str | None, now: datetime
    ) -> AlertEvent:
        """A person acknowledges, resolves or annotates an alert. Raises LookupError/ValueError."""
        if action not in (EventType.ACKNOWLEDGED, EventType.RESOLVED, EventType.NOTED):
            raise AlertStateError("error.alert.action", action=action)
        async with self.conn.transaction():
            station_id, param, kind, severity, state, opened_at, _ = await self._locked(alert_id)
            if state == State.RESOLVED.value and action is not EventType.NOTED:
                raise AlertStateError("error.alert.resolved", id=alert_id)
            if action is EventType.ACKNOWLEDGED:
                if state == State.ACKNOWLEDGED.value:
                    raise AlertStateError("error.alert.acknowledged", id=alert_id)
                await self.conn.execute(
                    "UPDATE alerts SET state = 'acknowledged', acknowledged_at = %s, "
                    "acknowledged_by = %s, note = coalesce(%s, note), updated_at = %s "
                    "WHERE id = %s",
                    [now, actor, note, now, alert_id],
                )
                state = State.ACKNOWLEDGED.value
            elif action is EventType.RESOLVED:
                await self.conn.execute(
                    "UPDATE alerts SET state = 'resolved', resolved_at = %s, resolved_by = %s, "
                    "resolution = 'manual', note = coalesce(%s, note), updated_at = %s "
                    "WHERE id = %s",
                    [now, actor, note, now, alert_id],
                )
                state = State.RESOLVED.value
            else:
                await self.conn.execute(
                    "UPDATE alerts SET note = %s, updated_at = %s WHERE id = %s",
                    [note, now, alert_id],
                )
            t = Transition(Change.UPDATE, Kind(kind), station_id, param, now, None, {})
            return await self._event(
                alert_id, action, t, Severity(severity), State(state), opened_at, now, actor, note
            )

    async def assign(
        self, alert_id: int, actor: str, assignee: str, note: str | None, now: datetime
    ) -> AlertEvent:
        """A person gives an alert not yet resolved to ``assignee`` (a user the caller has
        checked). Raises LookupError (no such alert) or ValueError (resolved, or already
        assigned to that user)."""
        async with self.conn.transaction():
            row = await self._locked(alert_id)
            station_id, param, kind, severity, state, opened_at, assigned_to = row
            if state == State.RESOLVED.value:
                raise AlertStateError("error.alert.resolved", id=alert_id)
            if assigned_to == assignee:
                raise AlreadyAssigned("error.alert.assigned", id=alert_id, assignee=assignee)
            await self.conn.execute(
                "UPDATE alerts SET assigned_to = %s, assigned_at = %s, assigned_by = %s, "
                "updated_at = %s WHERE id = %s",
                [assignee, now, actor, now, alert_id],
            )
            details: dict[str, Any] = {"assignee": assignee}
            if assigned_to:
                details["previous_assignee"] = assigned_to
            t = Transition(Change.UPDATE, Kind(kind), station_id, param, now, None, details)
            return await self._event(
                alert_id,
                EventType.ASSIGNED,
                t,
                Severity(severity),
                State(state),
                opened_at,
                now,
                actor,
                note,
            )

    async def record_escalation(
        self, alert: OpenAlert, details: dict[str, Any], now: datetime
    ) -> AlertEvent:
        async with self.conn.transaction():
            await lock_events(self.conn)
            t = Transition(
                Change.UPDATE, alert.kind, alert.station_id, alert.param, now, None, details
            )
            return await self._event(
                alert.id, EventType.ESCALATED, t, alert.severity, alert.state, alert.opened_at, now
            )

    async def open_alerts(self) -> list[OpenAlert]:
        cur = await self.conn.execute(
            "SELECT id, station_id, param, kind, severity, state, opened_at,"
            " coalesce((details->>'historical')::boolean, false)"
            " FROM alerts WHERE state <> 'resolved' ORDER BY id"
        )
        return [
            OpenAlert(
                r[0],
                r[1],
                r[2],
                Kind(r[3]),
                Severity(r[4]),
                State(r[5]),
                r[6],
                r[5] == "acknowledged",
                r[7],
            )
            for r in await cur.fetchall()
        ]

    async def escalations_done(self) -> dict[int, set[str]]:
        cur = await self.conn.execute(
            "SELECT e.alert_id, e.details->>'escalation' FROM alert_events e "
            "JOIN alerts a ON a.id = e.alert_id "
            "WHERE a.state <> 'resolved' AND e.event = 'escalated'"
        )
        done: dict[int, set[str]] = {}
        for alert_id, rule_id in await cur.fetchall():
            done.setdefault(alert_id, set()).add(str(rule_id))
        return done

    async def apply_episodes(
        self, upserts: list[Episode], deletes: list[tuple[str, str, str, datetime]]
    ) -> None:
        async with self.conn.transaction():
            for station_id, param, averaging, start in deletes:
                await self.conn.execute(
                    "DELETE FROM exceedance_episodes WHERE station_id = %s AND param = %s "
                    "AND averaging = %s AND start_at = %s",
                    [station_id, param, averaging, start],
                )
            for e in upserts:
                if e.continues_earlier and await self._extend_earlier(e):
                    continue
                await self.conn.execute(_UPSERT_EPISODE, _episode_row(e))

    async def _extend_earlier(self, e: Episode) -> bool:
        """After a restart the engine holds only a long episode's tail: extend the stored one."""
        cur = await self.conn.execute(
            """UPDATE exceedance_episodes SET end_at = greatest(end_at, %(end)s),
                   maximum = greatest(maximum, %(maximum)s),
                   multiple = CASE WHEN %(maximum)s > maximum THEN %(multiple)s ELSE multiple END,
                   band = CASE WHEN %(maximum)s > maximum THEN %(band)s ELSE band END,
                   ongoing = %(ongoing)s, updated_at = now()
               WHERE station_id = %(station_id)s AND param = %(param)s
                 AND averaging = %(averaging)s AND start_at < %(start)s AND end_at >= %(start)s
               RETURNING start_at""",
            _episode_row(e),
        )
        return await cur.fetchone() is not None

    async def save_aqi(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        async with self.conn.transaction():
            for row in rows:
                await self.conn.execute(
                    """INSERT INTO aqi_hourly (station_id, hour_start, aqi, category, dominant,
                                              sub_indices, inputs)
                       VALUES (%(station_id)s, %(hour_start)s, %(aqi)s, %(category)s, %(dominant)s,
                               %(sub_indices)s, %(inputs)s)
                       ON CONFLICT (station_id, hour_start) DO UPDATE SET aqi = excluded.aqi,
                         category = excluded.category, dominant = excluded.dominant,
                         sub_indices = excluded.sub_indices, inputs = excluded.inputs""",
                    {
                        **row,
                        "sub_indices": _json(row["sub_indices"]),
                        "inputs": _json(row["inputs"]),
                    },
                )


_UPSERT_EPISODE = """
    INSERT INTO exceedance_episodes (station_id, param, averaging, start_at, end_at, windows,
        maximum, mean, limit_value, limit_text, unit, multiple, band, completeness, regulation_id,
        column_name, formula, unverified, ongoing, updated_at)
    VALUES (%(station_id)s, %(param)s, %(averaging)s, %(start)s, %(end)s, %(windows)s,
        %(maximum)s, %(mean)s, %(limit)s, %(limit_text)s, %(unit)s, %(multiple)s, %(band)s,
        %(completeness)s, %(regulation_id)s, %(column)s, %(formula)s, %(unverified)s,
        %(ongoing)s, now())
    ON CONFLICT (station_id, param, averaging, start_at) DO UPDATE SET
        end_at = excluded.end_at, windows = excluded.windows, maximum = excluded.maximum,
        mean = excluded.mean, limit_value = excluded.limit_value,
        limit_text = excluded.limit_text, unit = excluded.unit, multiple = excluded.multiple,
        band = excluded.band, completeness = excluded.completeness,
        regulation_id = excluded.regulation_id, column_name = excluded.column_name,
        formula = excluded.formula, unverified = excluded.unverified, ongoing = excluded.ongoing,
        updated_at = now()
"""


def _episode_row(e: Episode) -> dict[str, Any]:
    return {
        "station_id": e.station_id,
        "param": e.param,
        "averaging": e.averaging,
        "start": e.start,
        "end": e.end,
        "windows": e.windows,
        "maximum": e.maximum,
        "mean": e.mean,
        "limit": e.limit,
        "limit_text": e.limit_text,
        "unit": e.unit,
        "multiple": e.multiple,
        "band": e.band,
        "completeness": e.completeness,
        "regulation_id": e.regulation_id,
        "column": e.column,
        "formula": e.formula,
        "unverified": e.unverified,
        "ongoing": e.ongoing,
    }


# --- reads for the API and the board -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One row of ``alerts`` (param '' when the alert is about the whole station)."""

    id: int
    station_id: str
    param: str
    kind: str
    severity: str
    state: str
    opened_at: datetime
    updated_at: datetime
    first_data_at: datetime
    last_data_at: datetime
    count: int
    last_value: float | None
    max_value: float | None
    details: dict[str, Any]
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    note: str | None
    assigned_to: str | None
    assigned_at: datetime | None
    assigned_by: str | None

    def columns(self) -> dict[str, Any]:
        """Column name to value, in the table's order."""
        return {name: getattr(self, name) for name in ALERT_FIELDS}


ALERT_FIELDS = tuple(f.name for f in fields(AlertRow))
_ALERT_COLUMNS = ", ".join(f"a.{name}" for name in ALERT_FIELDS)
_SEVERITY_ORDER = (
    "CASE a.severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 WHEN 'minor' THEN 2 ELSE 3 END"
)


class _Where:
    """SQL conditions and their arguments; a condition whose value is empty is left out."""

    def __init__(self, clause: str = "true", *args: Any):
        self.clauses = [clause]
        self.args: list[Any] = list(args)

    def add(self, clause: str, value: Any) -> None:
        if value:
            self.clauses.append(clause)
            self.args.append(value)

    def within(self, column: str, station_ids: list[str] | None) -> None:
        if station_ids is not None:
            self.clauses.append(f"{column} = ANY(%s)")
            self.args.append(station_ids)

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses)


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Which alerts to list; None (or empty) means no condition."""

    states: list[str] | None = None
    kinds: list[str] | None = None
    severities: list[str] | None = None
    station_id: str | None = None
    station_ids: list[str] | None = None  # a user's scope; None: every station
    opened_from: datetime | None = None
    opened_before: datetime | None = None
    worst_first: bool = False  # by severity, then newest first

    def where(self) -> _Where:
        w = _Where()
        w.add("a.state = ANY(%s)", self.states)
        w.add("a.kind = ANY(%s)", self.kinds)
        w.add("a.severity = ANY(%s)", self.severities)
        w.add("a.station_id = %s", self.station_id)
        w.within("a.station_id", self.station_ids)
        w.add("a.opened_at >= %s", self.opened_from)
        w.add("a.opened_at < %s", self.opened_before)
        return w


async def count_alerts(conn: psycopg.AsyncConnection, query: AlertQuery) -> int:
    w = query.where()
    cur = await conn.execute(f"SELECT count(*) FROM alerts a WHERE {w.sql}", w.args)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def list_alerts(
    conn: psycopg.AsyncConnection,
    query: AlertQuery,
    flaps_since: datetime,
    limit: int,
    offset: int,
) -> list[tuple[AlertRow, int]]:
    """A page of alerts, newest first (worst first if asked), each with how often its
    condition (station, parameter, kind) opened since ``flaps_since``."""
    w = query.where()
    order = f"{_SEVERITY_ORDER}, " if query.worst_first else ""
    cur = await conn.execute(
        f"SELECT {_ALERT_COLUMNS}, (SELECT count(*) FROM alerts b WHERE "
        "b.station_id = a.station_id AND b.param IS NOT DISTINCT FROM a.param "
        "AND b.kind = a.kind AND b.opened_at > %s) "
        f"FROM alerts a WHERE {w.sql} "
        f"ORDER BY {order}a.opened_at DESC, a.id DESC LIMIT %s OFFSET %s",
        [flaps_since, *w.args, limit, offset],
    )
    return [(AlertRow(*r[:-1]), int(r[-1])) for r in await cur.fetchall()]


async def get_alert(conn: psycopg.AsyncConnection, alert_id: int) -> AlertRow | None:
    cur = await conn.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts a WHERE a.id = %s", [alert_id])
    row = await cur.fetchone()
    return AlertRow(*row) if row else None


async def alert_station(conn: psycopg.AsyncConnection, alert_id: int) -> str | None:
    """The station of an alert; None when there is no such alert."""
    cur = await conn.execute("SELECT station_id FROM alerts WHERE id = %s", [alert_id])
    row = await cur.fetchone()
    return str(row[0]) if row else None


class EventRow(NamedTuple):
    id: int
    at: datetime
    event: str
    actor: str | None
    note: str | None
    details: dict[str, Any]


async def events_of(conn: psycopg.AsyncConnection, alert_id: int) -> list[EventRow]:
    """The audit trail of one alert, oldest first."""
    cur = await conn.execute(
        "SELECT id, at, event, actor, note, details FROM alert_events WHERE alert_id = %s "
        "ORDER BY id",
        [alert_id],
    )
    return [EventRow(*r) for r in await cur.fetchall()]


async def open_alerts_by_station(
    conn: psycopg.AsyncConnection,
) -> list[tuple[str, str, str, int]]:
    """(station, severity, kind, count) of the alerts not resolved."""
    cur = await conn.execute(
        "SELECT station_id, severity, kind, count(*) FROM alerts WHERE state <> 'resolved' "
        "GROUP BY station_id, severity, kind"
    )
    return [(r[0], r[1], r[2], int(r[3])) for r in await cur.fetchall()]


class EpisodeRow(NamedTuple):
    station_id: str
    param: str
    averaging: str
    start_at: datetime
    end_at: datetime
    windows: int
    maximum: float
    mean: float
    limit_value: float | None
    limit_text: str
    unit: str
    multiple: float | None
    band: str | None
    completeness: float
    regulation_id: str
    column_name: str | None
    formula: str
    unverified: bool
    ongoing: bool


@dataclass(frozen=True, slots=True)
class EpisodeQuery:
    """Episodes of these stations; the others None (or empty) mean no condition."""

    station_ids: list[str]
    param: str | None = None
    ending_after: datetime | None = None
    starting_before: datetime | None = None

    def where(self) -> _Where:
        w = _Where("station_id = ANY(%s)", self.station_ids)
        w.add("param = %s", self.param)
        w.add("end_at > %s", self.ending_after)
        w.add("start_at < %s", self.starting_before)
        return w


async def count_episodes(conn: psycopg.AsyncConnection, query: EpisodeQuery) -> int:
    w = query.where()
    cur = await conn.execute(f"SELECT count(*) FROM exceedance_episodes WHERE {w.sql}", w.args)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def list_episodes(
    conn: psycopg.AsyncConnection, query: EpisodeQuery, limit: int, offset: int
) -> list[EpisodeRow]:
    """A page of episodes, the latest start first."""
    w = query.where()
    columns = ", ".join(EpisodeRow._fields)
    cur = await conn.execute(
        f"SELECT {columns} FROM exceedance_episodes WHERE {w.sql} "
        "ORDER BY start_at DESC LIMIT %s OFFSET %s",
        [*w.args, limit, offset],
    )
    return [EpisodeRow(*r) for r in await cur.fetchall()]


async def episodes_between(
    conn: psycopg.AsyncConnection, station_ids: list[str], start: datetime, end: datetime
) -> list[EpisodeRow]:
    """The episodes of these stations that overlap [start, end), in time order (reports)."""
    columns = ", ".join(EpisodeRow._fields)
    cur = await conn.execute(
        f"SELECT {columns} FROM exceedance_episodes WHERE station_id = ANY(%s) "
        "AND start_at < %s AND end_at > %s ORDER BY start_at, station_id, param, averaging",
        [station_ids, end, start],
    )
    return [EpisodeRow(*r) for r in await cur.fetchall()]


class AqiHour(NamedTuple):
    station_id: str
    hour_start: datetime
    aqi: int
    category: str
    dominant: list[str]
    sub_indices: dict[str, Any] | None  # not read for the current values


async def current_aqi(conn: psycopg.AsyncConnection, since: datetime) -> list[AqiHour]:
    """The newest hourly AQI after ``since`` of each station that has one."""
    cur = await conn.execute(
        "SELECT DISTINCT ON (station_id) station_id, hour_start, aqi, category, dominant "
        "FROM aqi_hourly WHERE hour_start > %s ORDER BY station_id, hour_start DESC",
        [since],
    )
    return [AqiHour(r[0], r[1], r[2], r[3], r[4], None) for r in await cur.fetchall()]


async def aqi_history(
    conn: psycopg.AsyncConnection, station_id: str, start: datetime, end: datetime
) -> list[AqiHour]:
    """The hourly AQI of one station for the hours starting in [start, end), oldest first."""
    cur = await conn.execute(
        "SELECT hour_start, aqi, category, dominant, sub_indices FROM aqi_hourly "
        "WHERE station_id = %s AND hour_start >= %s AND hour_start < %s ORDER BY hour_start",
        [station_id, start, end],
    )
    return [AqiHour(station_id, *r) for r in await cur.fetchall()]
