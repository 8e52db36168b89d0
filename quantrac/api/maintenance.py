"""API routes of the station log: maintenance windows and maintenance, repair, replacement or
calibration entries (operators plan them; everyone reads them). Audited."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from quantrac.alerts import station_log
from quantrac.alerts.maintenance import LOG_KINDS, WindowError, check_window
from quantrac.api.deps import (
    ApiError,
    Conn,
    Ctx,
    Operator,
    Reader,
    check_visible,
    page,
    parse_when,
    sees_station,
)
from quantrac.api.users import audit

router = APIRouter(prefix="/api/v1", tags=["maintenance"])


class NewEntry(BaseModel):
    kind: str = Field(default="maintenance", description=" | ".join(LOG_KINDS))
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    params: list[str] = Field(default_factory=list, description="empty: the whole station")
    reason: str = Field(max_length=2000)


@router.get("/stations/{station_id}/log", summary="A station's log and maintenance windows")
async def log(
    ctx: Ctx,
    conn: Conn,
    user: Reader,
    station_id: str,
    start: str | None = None,
    end: str | None = None,
) -> dict[str, Any]:
    check_visible(ctx, user, station_id)
    if ctx.registry().get(station_id) is None:
        raise ApiError(404, "not_found", "api.msg.no_station", station=repr(station_id))
    now = ctx.clock()
    first = parse_when(start, "start") or now - timedelta(days=30)
    last = parse_when(end, "end") or now + timedelta(days=30)
    items = [
        e.to_json() for e in await station_log.windows_between(conn, [station_id], first, last)
    ]
    return page(items, len(items), len(items), 0)


@router.post("/stations/{station_id}/log", status_code=201, summary="Plan a window (operator)")
async def add(
    ctx: Ctx, conn: Conn, user: Operator, station_id: str, body: NewEntry
) -> dict[str, Any]:
    check_visible(ctx, user, station_id)
    start = parse_when(body.start, "from")
    end = parse_when(body.end, "to")
    assert start is not None and end is not None
    declared = {s.id: list(s.parameters) for s in ctx.registry().stations.values()}
    try:
        check_window(station_id, body.kind, start, end, body.params, body.reason, declared)
    except WindowError as exc:
        status = 404 if station_id not in declared else 422
        raise ApiError(status, "invalid_window", exc) from None
    entry = await station_log.add_entry(
        conn, station_id, body.kind, start, end, body.params, body.reason, user.username
    )
    await audit(conn, user.username, "station_log.add", f"station:{station_id}", entry.to_json())
    return entry.to_json()


@router.post("/log/{entry_id}/cancel", summary="Cancel a log entry (kept, marked)")
async def cancel(ctx: Ctx, conn: Conn, user: Operator, entry_id: int) -> dict[str, Any]:
    if user.scope is not None:
        station = await station_log.entry_station(conn, entry_id)
        if station is None or not sees_station(ctx, user, station):
            raise ApiError(404, "not_found", "api.msg.no_log_entry", id=entry_id)
    try:
        await station_log.cancel_entry(conn, entry_id, user.username)
    except WindowError as exc:
        raise ApiError(404, "not_found", exc) from None
    await audit(conn, user.username, "station_log.cancel", f"log:{entry_id}", {})
    return {"id": entry_id, "cancelled": True}
