"""The operator and inspector API: stations, readings, alerts, episodes, AQI, regulations, users."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from quantrac.alerts import station_log
from quantrac.alerts import store as alert_store
from quantrac.alerts.choices import design_choices
from quantrac.alerts.model import EventType, Kind, Severity, State
from quantrac.alerts.store import (
    AlertQuery,
    AlertRow,
    AlertStateError,
    AlertStore,
    AlreadyAssigned,
    EpisodeQuery,
)
from quantrac.api.deps import (
    Admin,
    ApiError,
    Conn,
    Ctx,
    CurrentUser,
    Operator,
    Reader,
    check_visible,
    page,
    parse_when,
    sees_station,
    sign_in,
    user_on_short_connection,
    visible_station_ids,
)
from quantrac.api.users import (
    Scope,
    User,
    UserError,
    add_user,
    audit,
    check_password_off_loop,
    get_user,
    issue_token,
    list_users,
    password_hash_of,
    revoke_token,
    set_disabled,
    set_password,
    set_scope,
)
from quantrac.core.i18n import default_messages
from quantrac.core.registry import Registry, RegistryError, Station, registry_from_text
from quantrac.ingest import rollup, writer
from quantrac.regulations.limits import decimal_comma, station_limits

router = APIRouter(prefix="/api/v1")

ONLINE_CADENCES = 2  # newest reading within 2 cadences: online
LATE_CADENCES = 12  # within 12 cadences (1 h at 5 min): late; older or never: offline
# An hourly AQI is current until the next hour's is due: older than this after its hour ended
# (or from a station that is silent), it is shown as stale.
AQI_FRESH = timedelta(minutes=90)
# A station takes the colour of its worst open alert: exceedance, then a faulty instrument, then
# missing data, then early warnings (the board's legend names these tiers).
TROUBLE_TIERS = {
    "exceedance": "exceedance",
    "device_fault": "fault",
    "out_of_range": "fault",
    "stuck_value": "fault",
    "data_loss": "data_loss",
    "warning": "warning",
    "calibration": "warning",
    "clock_drift": "warning",
}
TROUBLE_ORDER = ("exceedance", "fault", "data_loss", "warning")
# The averaging a live value is coloured against: the shortest in force, never the annual mean
# (an instant value above an annual mean says nothing).
LIVE_AVERAGINGS = ("1h", "8h", "24h")
FLAP_WINDOW = timedelta(hours=24)


class Credentials(BaseModel):
    username: str = Field(max_length=128)
    password: str = Field(max_length=1024)


class ScopeBody(BaseModel):
    provinces: list[str] = Field(default_factory=list, max_length=500)
    facilities: list[str] = Field(default_factory=list, max_length=500)
    stations: list[str] = Field(default_factory=list, max_length=5000)

    def to_scope(self) -> Scope:
        return Scope(
            frozenset(self.provinces), frozenset(self.facilities), frozenset(self.stations)
        )


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class UserChange(BaseModel):
    """What an admin may change of a user; omitted fields stay as they are."""

    disabled: bool | None = None
    password: str | None = Field(default=None, max_length=1024)
    role: str | None = None
    scope: ScopeBody | None = None
    unrestricted: bool = Field(default=False, description="remove the scope: every station")


class Note(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


class Assignment(BaseModel):
    assignee: str = Field(max_length=64, description="the username the alert is given to")
    note: str | None = Field(default=None, max_length=2000)


class NewUser(BaseModel):
    username: str = Field(max_length=64)
    role: str
    password: str = Field(max_length=1024)
    display_name: str = Field(default="", max_length=200)
    scope: ScopeBody | None = None


# --- public ------------------------------------------------------------------------------------


@router.get("/i18n", tags=["board"], summary="The translation table (vi and en)")
async def i18n(lang: str = Query("vi", pattern="^(vi|en)$")) -> dict[str, str]:
    return {key: texts[lang] for key, texts in default_messages().items()}


@router.post("/login", tags=["auth"], summary="Exchange a username and password for a token")
async def login(request: Request, ctx: Ctx, conn: Conn, credentials: Credentials) -> dict[str, Any]:
    user = await sign_in(request, ctx, conn, credentials.username, credentials.password)
    if user is None:
        raise ApiError(401, "bad_credentials", "api.msg.bad_credentials")
    token, expires = await issue_token(conn, user, ctx.clock())
    await audit(conn, user.username, "login", f"user:{user.username}", {})
    return {"token": token, "expires_at": expires.isoformat(), "user": user.to_json()}


@router.post("/logout", tags=["auth"], summary="Revoke the token of this request")
async def logout(request: Request, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    revoked = scheme.lower() == "bearer" and await revoke_token(conn, token.strip())
    await audit(conn, user.username, "logout", f"user:{user.username}", {})
    return {"revoked": bool(revoked)}


@router.get("/me", tags=["auth"])
async def me(user: CurrentUser) -> dict[str, Any]:
    return user.to_json()


@router.post("/me/password", tags=["auth"], summary="Change one's own password")
async def change_password(conn: Conn, user: CurrentUser, body: PasswordChange) -> dict[str, Any]:
    stored = await password_hash_of(conn, user.id)
    if stored is None or not await check_password_off_loop(body.current_password, stored):
        await audit(conn, user.username, "password.change_failed", f"user:{user.username}", {})
        raise ApiError(403, "bad_credentials", "api.msg.current_password")
    try:
        await set_password(conn, user, body.new_password)
    except UserError as exc:
        raise ApiError(422, "invalid_user", exc) from None
    await audit(conn, user.username, "password.change", f"user:{user.username}", {})
    return {"changed": True, "tokens_revoked": True}


# --- stations ----------------------------------------------------------------------------------


def _station_json(
    station: Station, newest: datetime | None, now: datetime, data_loss: bool = False
) -> dict[str, Any]:
    status = _status(station, newest, now)
    if data_loss and status != "offline":
        # Readings arrive, but not all that should: not "transmitting".
        status = "data_loss"
    return {
        "id": station.id,
        "name": station.name,
        "kind": station.kind,
        "facility": station.facility,
        "province": station.province,
        "lat": station.lat,
        "lon": station.lon,
        "cadence_s": station.cadence_s,
        "status": status,
        "last_reading_at": newest.isoformat() if newest else None,
        "regulation": station.regulation.id if station.regulation else None,
        "aqi_publishable": station.aqi_publishable,
    }


def _status(station: Station, newest: datetime | None, now: datetime) -> str:
    if newest is None:
        return "offline"
    age = (now - newest).total_seconds()
    if age <= ONLINE_CADENCES * station.cadence_s:
        return "online"
    return "late" if age <= LATE_CADENCES * station.cadence_s else "offline"


async def _latest(conn: Conn, station: Station, now: datetime) -> dict[str, writer.StoredValue]:
    return await writer.latest_values(
        conn, station.id, list(station.parameters), now - timedelta(days=7)
    )


class OpenAlerts:
    """Open (or acknowledged) alerts of every station, by severity and by kind."""

    def __init__(self, rows: list[tuple[str, str, str, int]]):
        self.by_severity: dict[str, dict[str, int]] = {}
        self.by_kind: dict[str, dict[str, int]] = {}
        for station_id, severity, kind, n in rows:
            sev = self.by_severity.setdefault(station_id, {})
            sev[severity] = sev.get(severity, 0) + n
            kinds = self.by_kind.setdefault(station_id, {})
            kinds[kind] = kinds.get(kind, 0) + n

    def worst(self, station_id: str) -> str | None:
        tiers = {TROUBLE_TIERS.get(k, "warning") for k in self.by_kind.get(station_id, {})}
        return next((t for t in TROUBLE_ORDER if t in tiers), None)

    def data_loss(self, station_id: str) -> bool:
        return "data_loss" in self.by_kind.get(station_id, {})


async def _current_aqi(conn: Conn, since: datetime) -> dict[str, dict[str, Any]]:
    return {
        h.station_id: {
            "hour_start": h.hour_start.isoformat(),
            "aqi": h.aqi,
            "category": h.category,
            "dominant": h.dominant,
        }
        for h in await alert_store.current_aqi(conn, since)
    }


@router.get("/stations", tags=["stations"], summary="Stations with status and open alerts")
async def stations(ctx: Ctx, conn: Conn, user: Reader) -> dict[str, Any]:
    now = ctx.clock()
    registry = ctx.registry()
    newest = await writer.newest_per_station(conn, now - timedelta(days=2))
    alerts = OpenAlerts(await alert_store.open_alerts_by_station(conn))
    aqi = await _current_aqi(conn, now - timedelta(hours=3))
    items = []
    for station in registry.stations.values():
        if not user.sees(station):
            continue
        item = _station_json(station, newest.get(station.id), now, alerts.data_loss(station.id))
        current = aqi.get(station.id)
        if current is not None:
            hour_end = datetime.fromisoformat(current["hour_start"]) + timedelta(hours=1)
            stale = now - hour_end > AQI_FRESH or item["status"] in ("offline", "data_loss")
            current = {**current, "stale": stale}
        items.append(
            {
                **item,
                "open_alerts": alerts.by_severity.get(station.id, {}),
                "open_alert_kinds": alerts.by_kind.get(station.id, {}),
                "worst_alert": alerts.worst(station.id),
                "aqi": current,
            }
        )
    return page(items, len(items), len(items), 0)


def _station(ctx: Ctx, station_id: str, user: User) -> Station:
    station = ctx.registry().get(station_id)
    if station is None or not user.sees(station):
        raise ApiError(404, "not_found", "api.msg.no_station", station=repr(station_id))
    return station


@router.get("/stations/{station_id}", tags=["stations"], summary="Latest values against limits")
async def station_detail(station_id: str, ctx: Ctx, conn: Conn, user: Reader) -> dict[str, Any]:
    station = _station(ctx, station_id, user)
    now = ctx.clock()
    latest = await _latest(conn, station, now)
    limits = station_limits(station, ctx.regulations)
    values = []
    for code, declared in station.parameters.items():
        row = latest.get(code)
        in_force = [
            {
                "averaging": lim.averaging,
                "maximum": lim.maximum,
                "minimum": lim.minimum,
                "unit": lim.unit,
                "text": lim.bound_text(),
                "text_vi": decimal_comma(lim.bound_text()),
                "formula": lim.formula,
                "formula_vi": lim.formula_vi,
                "regulation": lim.regulation_id,
                "column": lim.column,
                "source": lim.source,
                "unverified": lim.unverified,
            }
            for lim in limits.in_force(code, now)
        ]
        value = row[1] if row else None
        reference = _reference_limit(in_force)
        ratio = None
        if (
            value is not None
            and reference
            and reference["maximum"]
            and reference["minimum"] is None
        ):
            ratio = round(value / reference["maximum"], 4)
        values.append(
            {
                "param": code,
                "unit": declared.unit.id,
                "measured_at": row[0].isoformat() if row else None,
                "value": value,
                "status": f"{row[2]:02d}" if row else None,
                "limits": in_force,
                # Colour and percentage are both against this one limit (None: only an annual
                # mean applies, which a live value is not compared with).
                "reference": reference,
                "ratio": ratio,
            }
        )
    newest = max((r[0] for r in latest.values()), default=None)
    return {
        **_station_json(station, newest, now),
        "column": station.regulation.column if station.regulation else None,
        "values": values,
        "limit_problems": limits.problems,
        "regime": [period.to_json() for period in limits.regime],
        "permit": station.permit.citation() if station.permit else None,
        # Values quantrac decides with that no legal text sets, and where to change them.
        "design_choices": [c.to_json() for c in design_choices(ctx.engine_config, ctx.regulations)],
    }


async def _flagged_runs(
    conn: Conn, station: Station, param: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Runs of consecutive status 01 or 02 readings (a gap over 1.5 cadences ends a run); each
    ends one cadence after its last reading. Served by the partial index on status <> 0."""
    cadence = timedelta(seconds=station.cadence_s)
    runs: list[dict[str, Any]] = []
    last: datetime | None = None
    for at, status in await writer.flagged_readings(conn, station.id, param, start, end):
        code = f"{status:02d}"
        run = runs[-1] if runs else None
        if run and run["status"] == code and last is not None and at - last <= 1.5 * cadence:
            run["count"] += 1
        else:
            runs.append({"status": code, "start": at, "count": 1})
        last = at
        runs[-1]["end"] = at + cadence
    return [{**r, "start": r["start"].isoformat(), "end": r["end"].isoformat()} for r in runs]


async def _held_off_runs(
    conn: Conn, station: Station, param: str, start: datetime, end: datetime, holdoff: timedelta
) -> list[dict[str, Any]]:
    """The calibration hold-off after each calibration window of ``param`` (status
    ``holdoff``): readings there are stored and drawn but do not count for exceedances."""
    if holdoff <= timedelta(0):
        return []
    cur = await conn.execute("SELECT to_regclass('station_log') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return []
    windows = await station_log.windows_between(conn, [station.id], start - holdoff, end)
    runs: list[dict[str, Any]] = []
    for w in windows:
        if w.kind != "calibration" or (w.params and param not in w.params):
            continue
        a, b = max(w.end, start), min(w.end + holdoff, end)
        if b <= a:
            continue
        count = await writer.count_between(conn, station.id, param, w.end, w.end + holdoff, a)
        runs.append(
            {"status": "holdoff", "start": a.isoformat(), "end": b.isoformat(), "count": count}
        )
    return runs


def _reference_limit(in_force: list[dict[str, Any]]) -> dict[str, Any] | None:
    for averaging in LIVE_AVERAGINGS:
        for limit in in_force:
            if limit["averaging"] == averaging:
                return limit
    return None


@router.get("/stations/{station_id}/readings", tags=["readings"], summary="A series of one param")
async def readings(
    station_id: str,
    ctx: Ctx,
    conn: Conn,
    user: Reader,
    param: str,
    start: str = Query(..., alias="from", description="ISO-8601 with offset"),
    end: str = Query(..., alias="to"),
    interval: str = Query("hour", pattern="^(raw|hour|day)$"),
) -> dict[str, Any]:
    station = _station(ctx, station_id, user)
    t0, t1 = parse_when(start, "from"), parse_when(end, "to")
    assert t0 is not None and t1 is not None
    if t1 <= t0:
        raise ApiError(422, "invalid_parameter", "api.msg.period_order")
    if param not in station.parameters:
        raise ApiError(404, "not_found", "api.msg.no_param", station=station_id, param=repr(param))
    if interval == "raw":
        if t1 - t0 > timedelta(days=31):
            raise ApiError(422, "too_long", "api.msg.raw_too_long")
        points = [
            {"t": r[0].isoformat(), "value": r[1], "status": f"{r[2]:02d}"}
            for r in await writer.raw_series(conn, station_id, param, t0, t1)
        ]
    elif interval == "hour":
        points = [
            {"t": r[0].isoformat(), "value": r[1], "min": r[2], "max": r[3], "count": r[4]}
            for r in await rollup.hourly_series(conn, station_id, param, t0, t1)
        ]
    else:
        points = [
            {"t": r[0].date().isoformat(), "value": r[1], "min": r[2], "max": r[3], "count": r[4]}
            for r in await rollup.daily_series(conn, station_id, param, t0, t1)
        ]
    now = ctx.clock()
    limits = station_limits(station, ctx.regulations).in_force(param, now)
    flagged = await _flagged_runs(conn, station, param, t0, t1)
    holdoff = timedelta(minutes=ctx.settings.alerts_holdoff_minutes)
    flagged += await _held_off_runs(conn, station, param, t0, t1, holdoff)
    return {
        "station": station_id,
        "param": param,
        "unit": station.parameters[param].unit.id,
        "interval": interval,
        "points": points,
        # Readings that are not data: calibration (01) and device fault (02), as time runs;
        # and the calibration hold-off (``holdoff``), stored but not counted for exceedances.
        "flagged": flagged,
        "limits": [
            {"averaging": lim.averaging, "maximum": lim.maximum, "minimum": lim.minimum}
            for lim in limits
        ],
    }


# --- alerts ------------------------------------------------------------------------------------


def _alert_json(row: AlertRow, registry: Registry) -> dict[str, Any]:
    item = row.columns()
    for key, value in item.items():
        if isinstance(value, datetime):
            item[key] = value.isoformat()
    item["param"] = item["param"] or None
    station = registry.stations.get(row.station_id)
    item["station_name"] = station.name if station else row.station_id
    # The registered unit of the alert's parameter: its values (last, maximum) are in it.
    declared = station.parameters.get(row.param) if station and row.param else None
    item["unit"] = declared.unit.id if declared else None
    return item


async def _newest_readings(conn: Conn, rows: list[AlertRow]) -> list[datetime | None]:
    """The newest reading each alert rests on (its last_data_at is a window's end)."""
    return await writer.newest_within(
        conn, [(r.station_id, r.param, r.first_data_at, r.last_data_at) for r in rows]
    )


def _csv(value: str | None, allowed: set[str], name: str) -> list[str] | None:
    if not value:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ApiError(
            422,
            "invalid_parameter",
            "api.msg.unknown_values",
            sorted(allowed),
            name=name,
            values=", ".join(bad),
        )
    return items


@router.get("/alerts", tags=["alerts"], summary="Alerts, newest first, with filters")
async def alerts(
    ctx: Ctx,
    conn: Conn,
    user: Reader,
    state: str | None = Query(None, description="comma-separated: open,acknowledged,resolved"),
    kind: str | None = None,
    severity: str | None = None,
    station: str | None = None,
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    sort: str = Query("time", pattern="^(time|severity)$", description="severity: worst first"),
) -> dict[str, Any]:
    query = AlertQuery(
        states=_csv(state, {s.value for s in State}, "state"),
        kinds=_csv(kind, {k.value for k in Kind}, "kind"),
        severities=_csv(severity, {s.value for s in Severity}, "severity"),
        station_id=station,
        station_ids=visible_station_ids(ctx, user),
        opened_from=parse_when(start, "from"),
        opened_before=parse_when(end, "to"),
        worst_first=sort == "severity",
    )
    total = await alert_store.count_alerts(conn, query)
    # flaps: how often this condition (station, parameter, kind) opened in the last 24 hours.
    listed = await alert_store.list_alerts(conn, query, ctx.clock() - FLAP_WINDOW, limit, offset)
    newest = await _newest_readings(conn, [row for row, _ in listed])
    registry = ctx.registry()
    items = [
        {
            **_alert_json(row, registry),
            "flaps_24h": flaps,
            "newest_reading_at": at.isoformat() if at else None,
        }
        for (row, flaps), at in zip(listed, newest, strict=True)
    ]
    return page(items, total, limit, offset)


@router.get("/alerts/stream", tags=["alerts"], summary="Alert events as Server-Sent Events")
async def alert_stream(request: Request, ctx: Ctx) -> StreamingResponse:
    user = await user_on_short_connection(request, ctx)
    if not user.may("read"):
        raise ApiError(403, "forbidden", "api.msg.may_not.read", role=user.role_name)
    queue = ctx.events.listen()

    def visible(event: dict[str, Any]) -> bool:
        station = ctx.registry().get(str(event.get("station", "")))
        return user.scope is None or (station is not None and user.sees(station))

    async def events() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                try:
                    event = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if not visible(event):
                    continue
                yield f"event: alert\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
        finally:
            ctx.events.forget(queue)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.get("/alerts/{alert_id}", tags=["alerts"], summary="One alert with its audit trail")
async def alert(alert_id: int, ctx: Ctx, conn: Conn, user: Reader) -> dict[str, Any]:
    row = await alert_store.get_alert(conn, alert_id)
    if row is None or not sees_station(ctx, user, row.station_id):
        raise ApiError(404, "not_found", "api.msg.no_alert", id=alert_id)
    item = _alert_json(row, ctx.registry())
    [newest] = await _newest_readings(conn, [row])
    item["newest_reading_at"] = newest.isoformat() if newest else None
    item["events"] = [
        {
            "id": e.id,
            "at": e.at.isoformat(),
            "event": e.event,
            "actor": e.actor,
            "note": e.note,
            "details": e.details,
        }
        for e in await alert_store.events_of(conn, alert_id)
    ]
    return item


async def _alert_station(ctx: Ctx, conn: Conn, user: User, alert_id: int) -> str | None:
    """The station of an alert this user may see; 404 otherwise (None: not looked up, for a
    user who sees every station)."""
    if user.scope is None:
        return None
    station_id = await alert_store.alert_station(conn, alert_id)
    if station_id is None or not sees_station(ctx, user, station_id):
        raise ApiError(404, "not_found", "api.msg.no_alert", id=alert_id)
    return station_id


async def _act(
    ctx: Ctx, conn: Conn, user: User, alert_id: int, action: EventType, note: str | None
) -> dict[str, Any]:
    await _alert_station(ctx, conn, user, alert_id)
    names = {s.id: s.name for s in ctx.registry().stations.values()}
    store = AlertStore(conn, names)
    try:
        event = await store.act(alert_id, action, user.username, note, ctx.clock())
    except LookupError:
        raise ApiError(404, "not_found", "api.msg.no_alert", id=alert_id) from None
    except AlertStateError as exc:
        raise ApiError(409, "conflict", exc) from None
    # Committed as an alert event: the board's stream and the notification channels follow it.
    await audit(conn, user.username, f"alert.{action.value}", f"alert:{alert_id}", {"note": note})
    return event.to_json()


@router.post("/alerts/{alert_id}/acknowledge", tags=["alerts"], summary="Acknowledge (operator)")
async def acknowledge(
    alert_id: int, ctx: Ctx, conn: Conn, user: Operator, body: Note | None = None
) -> dict[str, Any]:
    return await _act(
        ctx, conn, user, alert_id, EventType.ACKNOWLEDGED, body.note if body else None
    )


@router.post("/alerts/{alert_id}/resolve", tags=["alerts"], summary="Resolve (operator)")
async def resolve(
    alert_id: int, ctx: Ctx, conn: Conn, user: Operator, body: Note | None = None
) -> dict[str, Any]:
    text = (body.note or "").strip() if body else ""
    if not text:
        # Closing is evidence too: say what was done (the board asks for it in the dialog).
        raise ApiError(422, "note_required", "api.msg.note_to_resolve")
    return await _act(ctx, conn, user, alert_id, EventType.RESOLVED, text)


@router.post("/alerts/{alert_id}/note", tags=["alerts"], summary="Add a note (operator)")
async def note(alert_id: int, ctx: Ctx, conn: Conn, user: Operator, body: Note) -> dict[str, Any]:
    if not body.note:
        raise ApiError(422, "invalid_parameter", "api.msg.note_required")
    return await _act(ctx, conn, user, alert_id, EventType.NOTED, body.note)


async def _assignees(ctx: Ctx, conn: Conn, alert_id: int) -> list[User]:
    """Who an alert can be given to: enabled users who may act on alerts and see its station."""
    station_id = await alert_store.alert_station(conn, alert_id)
    if station_id is None:
        raise ApiError(404, "not_found", "api.msg.no_alert", id=alert_id)
    station = ctx.registry().get(station_id)
    return [
        u
        for u in await list_users(conn)
        if u.may("act") and (u.scope is None or (station is not None and u.sees(station)))
    ]


@router.get(
    "/alerts/{alert_id}/assignees", tags=["alerts"], summary="Who an alert can be assigned to"
)
async def assignees(alert_id: int, ctx: Ctx, conn: Conn, user: Operator) -> dict[str, Any]:
    await _alert_station(ctx, conn, user, alert_id)
    items = [
        {"username": u.username, "display_name": u.display_name, "role": u.role}
        for u in await _assignees(ctx, conn, alert_id)
    ]
    return page(items, len(items), len(items), 0)


@router.post("/alerts/{alert_id}/assign", tags=["alerts"], summary="Assign to a user (operator)")
async def assign(
    alert_id: int, ctx: Ctx, conn: Conn, user: Operator, body: Assignment
) -> dict[str, Any]:
    await _alert_station(ctx, conn, user, alert_id)
    wanted = body.assignee.strip()
    if wanted not in {u.username for u in await _assignees(ctx, conn, alert_id)}:
        raise ApiError(
            422,
            "invalid_assignee",
            "api.msg.invalid_assignee",
            assignee=repr(wanted),
        )
    note = (body.note or "").strip() or None
    names = {s.id: s.name for s in ctx.registry().stations.values()}
    try:
        event = await AlertStore(conn, names).assign(
            alert_id, user.username, wanted, note, ctx.clock()
        )
    except LookupError:
        raise ApiError(404, "not_found", "api.msg.no_alert", id=alert_id) from None
    except AlreadyAssigned as exc:
        raise ApiError(409, "already_assigned", exc) from None
    except AlertStateError as exc:
        raise ApiError(409, "conflict", exc) from None
    # Committed as an alert event: the board's stream and the notification channels follow it.
    details = {"assignee": wanted, "note": note}
    await audit(conn, user.username, "alert.assigned", f"alert:{alert_id}", details)
    return event.to_json()


# --- episodes, AQI, regulations ------------------------------------------------------------------


@router.get("/episodes", tags=["evidence"], summary="Exceedance episodes")
async def episodes(
    ctx: Ctx,
    conn: Conn,
    user: Reader,
    station: str | None = None,
    facility: str | None = None,
    province: str | None = None,
    param: str | None = None,
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    registry = ctx.registry()
    chosen = [
        s.id
        for s in registry.stations.values()
        if (station is None or s.id == station)
        and (facility is None or s.facility == facility)
        and (province is None or s.province == province)
        and user.sees(s)
    ]
    query = EpisodeQuery(
        chosen,
        param=param,
        ending_after=parse_when(start, "from"),
        starting_before=parse_when(end, "to"),
    )
    total = await alert_store.count_episodes(conn, query)
    items = []
    for r in await alert_store.list_episodes(conn, query, limit, offset):
        items.append(
            {
                "station": r.station_id,
                "param": r.param,
                "averaging": r.averaging,
                "start": r.start_at.isoformat(),
                "end": r.end_at.isoformat(),
                "duration_minutes": round((r.end_at - r.start_at).total_seconds() / 60),
                "windows": r.windows,
                "maximum": r.maximum,
                "mean": r.mean,
                "limit": r.limit_value,
                "limit_text": r.limit_text,
                "unit": r.unit,
                "multiple": r.multiple,
                "band": r.band,
                "completeness": r.completeness,
                "regulation": r.regulation_id,
                "column": r.column_name,
                "formula": r.formula,
                "unverified": r.unverified,
                "ongoing": r.ongoing,
            }
        )
    return page(items, total, limit, offset)


@router.get("/aqi/current", tags=["aqi"], summary="The latest hourly VN_AQI per air station")
async def aqi_current(ctx: Ctx, conn: Conn, user: Reader) -> dict[str, Any]:
    current = await _current_aqi(conn, ctx.clock() - timedelta(hours=3))
    items = [
        {"station": sid, **value}
        for sid, value in sorted(current.items())
        if sees_station(ctx, user, sid)
    ]
    return page(items, len(items), len(items), 0)


@router.get("/aqi/history", tags=["aqi"], summary="Hourly VN_AQI of one station")
async def aqi_history(
    ctx: Ctx,
    conn: Conn,
    user: Reader,
    station: str,
    start: str = Query(..., alias="from"),
    end: str = Query(..., alias="to"),
) -> dict[str, Any]:
    check_visible(ctx, user, station)
    t0, t1 = parse_when(start, "from"), parse_when(end, "to")
    assert t0 is not None and t1 is not None
    items = [
        {
            "hour_start": h.hour_start.isoformat(),
            "aqi": h.aqi,
            "category": h.category,
            "dominant": h.dominant,
            "sub_indices": h.sub_indices,
        }
        for h in await alert_store.aqi_history(conn, station, t0, t1)
    ]
    return page(items, len(items), len(items), 0)


@router.get("/regulations", tags=["regulations"], summary="The regulation catalog")
async def regulations(
    ctx: Ctx, user: Reader, regulation_id: str | None = Query(None, alias="id")
) -> dict[str, Any]:
    chosen = [r for r in ctx.regulations.all() if regulation_id in (None, r.id)]
    if regulation_id and not chosen:
        raise ApiError(404, "not_found", "api.msg.no_regulation", regulation=repr(regulation_id))
    items = [
        {
            "id": r.id,
            "title_vi": r.title_vi,
            "title_en": r.title_en,
            "kind": r.kind,
            "effective_from": r.effective_from.isoformat() if r.effective_from else None,
            "effective_to": r.effective_to.isoformat() if r.effective_to else None,
            "columns": r.columns,
            "unverified_values": r.unverified_count(),
            "source": r.provenance.source,
            "issued_by": r.issued_by,
            "replaced_by": r.replaced_by,
            # No number is invented: 'missing' or 'partial' tables say why.
            "numbers": r.numbers(),
            "limits_missing": {"vi": r.missing_text("vi"), "en": r.missing_text("en")}
            if r.limits_missing
            else None,
            "transition": {
                "replaces": list(r.transition.replaces),
                "existing_until": r.transition.existing_until.isoformat()
                if r.transition.existing_until
                else None,
            }
            if r.transition
            else None,
            "sector_of": r.sector_of,
            "supplements": list(r.supplements),
        }
        for r in chosen
    ]
    return page(items, len(items), len(items), 0)


# --- administration ------------------------------------------------------------------------------


@router.get("/users", tags=["admin"])
async def users(conn: Conn, user: Admin, disabled: bool = False) -> dict[str, Any]:
    listed = await list_users(conn, include_disabled=disabled)
    items = [{**u.to_json(), "disabled": u.disabled} for u in listed]
    return page(items, len(items), len(items), 0)


@router.post("/users", tags=["admin"], status_code=201)
async def create_user(conn: Conn, user: Admin, body: NewUser) -> dict[str, Any]:
    scope = body.scope.to_scope() if body.scope is not None else None
    try:
        created = await add_user(
            conn, body.username, body.role, body.password, body.display_name, scope
        )
    except UserError as exc:
        raise ApiError(422, "invalid_user", exc) from None
    details = {"role": body.role, "scope": scope.to_json() if scope else None}
    await audit(conn, user.username, "user.add", f"user:{created.username}", details)
    return created.to_json()


@router.patch(
    "/users/{username}", tags=["admin"], summary="Disable, re-enable, set password, role or scope"
)
async def change_user(username: str, conn: Conn, user: Admin, body: UserChange) -> dict[str, Any]:
    target = await get_user(conn, username[:64])
    if target is None:
        raise ApiError(404, "not_found", "api.msg.no_user", username=repr(username[:64]))
    try:
        if body.role is not None or body.scope is not None or body.unrestricted:
            scope = (
                None
                if body.unrestricted
                else (body.scope.to_scope() if body.scope is not None else target.scope)
            )
            await set_scope(conn, target, body.role or target.role, scope)
        if body.password is not None:
            await set_password(conn, target, body.password)
        if body.disabled is not None:
            if body.disabled and target.id == user.id:
                raise UserError("error.user.self_disable")
            await set_disabled(conn, target, body.disabled)
    except UserError as exc:
        raise ApiError(422, "invalid_user", exc) from None
    changes = body.model_dump(exclude_none=True, exclude={"password"})
    if body.password is not None:
        changes["password"] = "changed"
    await audit(conn, user.username, "user.change", f"user:{target.username}", changes)
    changed = await get_user(conn, target.username)
    assert changed is not None
    return {**changed.to_json(), "disabled": changed.disabled}


@router.get("/registry", tags=["admin"], summary="The station registry file")
async def registry_file(ctx: Ctx, user: Admin) -> dict[str, Any]:
    path = Path(ctx.settings.stations_path)
    return {"path": str(path), "yaml": path.read_text(encoding="utf-8")}


@router.put("/registry", tags=["admin"], summary="Replace the station registry (validated)")
async def replace_registry(
    ctx: Ctx, conn: Conn, user: Admin, yaml_text: str = Body(..., media_type="text/plain")
) -> dict[str, Any]:
    path = Path(ctx.settings.stations_path)
    try:
        registry = registry_from_text(yaml_text, ctx.catalog, source=str(path))
    except RegistryError as exc:
        raise ApiError(
            422,
            "invalid_registry",
            "api.msg.invalid_registry",
            [str(i) for i in exc.issues],
            count=len(exc.issues),
        ) from None
    # Written beside and renamed: ingest's watcher never reads half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".stations-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(yaml_text)
    os.replace(tmp, path)
    await audit(
        conn, user.username, "registry.replace", str(path), {"stations": len(registry.stations)}
    )
    return {"stations": len(registry.stations)}
