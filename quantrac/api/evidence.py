"""API routes of sealed evidence: locked periods (admin), corrections (admin), held readings.

Every change is recorded in the audit log, beside its own audit rows (``locked_periods``,
``reading_corrections``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from quantrac.api.deps import Admin, ApiError, Conn, Ctx, Reader, page, parse_when, registry_for
from quantrac.api.users import audit
from quantrac.core.contract import STATUS_BY_CODE
from quantrac.evidence.locks import (
    Correction,
    LockError,
    check_lock_request,
    correct_reading,
    held_readings,
    list_locks,
    lock_period,
    unlock_period,
)

router = APIRouter(prefix="/api/v1", tags=["evidence"])


class NewLock(BaseModel):
    station: str | None = Field(default=None, description="one station; omitted: every station")
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    reason: str = Field(max_length=2000)


class NewCorrection(BaseModel):
    station: str
    param: str
    time: str
    value: float | None = Field(default=None, description="omitted: delete the reading")
    status: str = "00"
    reason: str = Field(max_length=2000)


def _invalid(exc: LockError) -> ApiError:
    return ApiError(422, "invalid_request", exc)


@router.get("/locks", summary="Locked periods")
async def locks(ctx: Ctx, conn: Conn, user: Reader, all: bool = False) -> dict[str, Any]:
    visible = registry_for(ctx, user).stations
    items = [
        lock.to_json()
        for lock in await list_locks(conn, active_only=not all)
        if lock.station_id is None or lock.station_id in visible
    ]
    return page(items, len(items), len(items), 0)


@router.post("/locks", status_code=201, summary="Lock a closed period (admin)")
async def create_lock(ctx: Ctx, conn: Conn, user: Admin, body: NewLock) -> dict[str, Any]:
    start = parse_when(body.start, "from")
    end = parse_when(body.end, "to")
    assert start is not None and end is not None
    try:
        check_lock_request(
            body.station, start, end, body.reason, ctx.registry().stations, ctx.clock()
        )
    except LockError as exc:
        raise _invalid(exc) from None
    lock = await lock_period(conn, body.station, start, end, body.reason, user.username)
    await audit(conn, user.username, "period.lock", f"lock:{lock.id}", lock.to_json())
    return lock.to_json()


@router.post("/locks/{lock_id}/unlock", summary="Lift a lock (admin)")
async def lift_lock(conn: Conn, user: Admin, lock_id: int) -> dict[str, Any]:
    try:
        lock = await unlock_period(conn, lock_id, user.username)
    except LockError as exc:
        raise ApiError(404, "not_found", exc) from None
    await audit(conn, user.username, "period.unlock", f"lock:{lock.id}", {})
    return lock.to_json()


@router.post("/readings/corrections", status_code=201, summary="Correct a reading (admin)")
async def create_correction(
    ctx: Ctx, conn: Conn, user: Admin, body: NewCorrection
) -> dict[str, Any]:
    moment = parse_when(body.time, "time")
    assert moment is not None
    if body.station not in ctx.registry().stations:
        raise ApiError(
            422, "invalid_request", "api.msg.unknown_station", station=repr(body.station)
        )
    if body.status not in STATUS_BY_CODE:
        raise ApiError(422, "invalid_request", "api.msg.status")
    correction = Correction(
        body.station,
        body.param,
        moment,
        body.value,
        STATUS_BY_CODE[body.status],
        body.reason,
    )
    try:
        action = await correct_reading(conn, correction, user.username)
    except LockError as exc:
        raise _invalid(exc) from None
    details = {"param": body.param, "time": moment.isoformat(), "action": action}
    await audit(conn, user.username, "reading.correct", f"station:{body.station}", details)
    return {"action": action, **details, "station": body.station}


@router.get("/readings/held", summary="Readings that arrived for a locked period")
async def held(ctx: Ctx, conn: Conn, user: Reader) -> dict[str, Any]:
    visible = registry_for(ctx, user).stations
    items = [
        {**r, "time": r["time"].isoformat(), "received_at": r["received_at"].isoformat()}
        for r in await held_readings(conn)
        if r["station"] in visible
    ]
    return page(items, len(items), len(items), 0)
