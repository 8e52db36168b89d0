"""What every route needs: the shared context, the database, the signed-in user, one error shape.

Errors always look like ``{"error": {"code": "...", "message": "...", "details": ...}}``.
Authentication: ``Authorization: Bearer <token>`` from ``POST /api/v1/login``, or HTTP Basic
for scripts. Pages: ``?limit=&offset=`` → ``{"items": [...], "total": N, "limit", "offset"}``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request
from psycopg_pool import AsyncConnectionPool

from quantrac.alerts.config import EngineConfig
from quantrac.api.events import EventHub
from quantrac.api.security import LoginThrottle, client_address, retry_after_header
from quantrac.api.users import User, audit, authenticate, user_for_token
from quantrac.core.catalog import Catalog
from quantrac.core.i18n import TranslatedError
from quantrac.core.registry import Registry
from quantrac.core.settings import Settings
from quantrac.regulations.tables import RegulationCatalog


class ApiError(HTTPException):
    """An API refusal: ``code`` for scripts (English, stable), the message a key of the
    translation table (or a TranslatedError) said in the request's language (see app.py);
    ``message`` is the English text (logs)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str | TranslatedError,
        details: Any = None,
        headers: dict[str, str] | None = None,
        **params: Any,
    ):
        # A key becomes a TranslatedError, which says it in English at once: an unknown key
        # fails here, not in a reply.
        self.reason = (
            message if isinstance(message, TranslatedError) else TranslatedError(message, **params)
        )
        self.key, self.params = self.reason.key, self.reason.params
        super().__init__(status_code=status, detail=str(self.reason), headers=headers)
        self.code = code
        self.message = str(self.reason)
        self.details = details

    def text(self, lang: str) -> str:
        return self.reason.text(lang)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


@dataclass
class ApiContext:
    settings: Settings
    pool: AsyncConnectionPool
    catalog: Catalog
    registry: Callable[[], Registry]
    regulations: RegulationCatalog
    engine_config: EngineConfig
    events: EventHub
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Set when the registry is edited through the API: the file is rewritten and ingest reloads.
    registry_path: Any = None
    throttle: LoginThrottle = field(default_factory=LoginThrottle)


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.context
    return ctx


Ctx = Annotated[ApiContext, Depends(context)]


async def connection(ctx: Ctx) -> AsyncIterator[psycopg.AsyncConnection]:
    async with ctx.pool.connection() as conn:
        yield conn


Conn = Annotated[psycopg.AsyncConnection, Depends(connection)]


async def current_user(request: Request, ctx: Ctx, conn: Conn) -> User:
    return await _user_from_headers(request, ctx, conn)


async def user_on_short_connection(request: Request, ctx: ApiContext) -> User:
    """Sign-in for long-lived responses (the event stream): the connection is returned to the
    pool at once instead of being held for as long as the board stays open."""
    async with ctx.pool.connection() as conn:
        return await _user_from_headers(request, ctx, conn)


async def _user_from_headers(
    request: Request, ctx: ApiContext, conn: psycopg.AsyncConnection
) -> User:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    user = None
    if scheme.lower() == "bearer" and credentials:
        user = await user_for_token(conn, credentials.strip(), ctx.clock())
    elif scheme.lower() == "basic" and credentials:
        try:
            name, _, password = base64.b64decode(credentials).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            name, password = "", ""
        user = await sign_in(request, ctx, conn, name, password) if name else None
    if user is None:
        raise ApiError(401, "unauthenticated", "api.msg.sign_in")
    return user


async def sign_in(
    request: Request, ctx: ApiContext, conn: psycopg.AsyncConnection, name: str, password: str
) -> User | None:
    """Check a username and password (login and HTTP Basic alike): throttled per account and
    address, every failure audited. Raises 429 while throttled."""
    address = client_address(request)
    name = name[:128]
    wait = ctx.throttle.retry_after(name, address)
    if wait > 0:
        await audit(conn, name, "login.throttled", f"user:{name}", {"address": address})
        raise ApiError(
            429,
            "too_many_attempts",
            "api.msg.too_many_attempts",
            {"retry_after_s": round(wait)},
            headers=retry_after_header(wait),
        )
    user = await authenticate(conn, name, password[:1024])
    if user is None:
        ctx.throttle.failed(name, address)
        await audit(conn, name, "login.failed", f"user:{name}", {"address": address})
        return None
    ctx.throttle.succeeded(name)
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require(permission: str) -> Callable[..., Any]:
    async def check(user: CurrentUser) -> User:
        if not user.may(permission):
            raise ApiError(
                403,
                "forbidden",
                f"api.msg.may_not.{permission}",
                role=user.role_name,
            )
        return user

    return check


Reader = Annotated[User, Depends(require("read"))]
Operator = Annotated[User, Depends(require("act"))]
Inspector = Annotated[User, Depends(require("export"))]
Admin = Annotated[User, Depends(require("admin"))]


def page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


# Dates the API reasons about (periods, windows, offsets from them) stay far from datetime's
# limits, so that no arithmetic on them overflows.
EARLIEST_YEAR, LATEST_YEAR = 1970, 2999


def parse_when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    from quantrac.core.contract import parse_time

    shown = value[:64]
    try:
        moment = parse_time(value[:64])
    except ValueError as exc:
        raise ApiError(
            422, "invalid_parameter", "api.msg.bad_time", {"value": shown}, name=name, reason=exc
        ) from None
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise ApiError(
            422,
            "invalid_parameter",
            "api.msg.bad_year",
            {"value": shown},
            name=name,
            earliest=EARLIEST_YEAR,
            latest=LATEST_YEAR,
        )
    return moment


def visible_station_ids(ctx: ApiContext, user: User) -> list[str] | None:
    """The stations a scoped user may see (None: every station)."""
    if user.scope is None:
        return None
    return [s.id for s in ctx.registry().stations.values() if user.sees(s)]


def registry_for(ctx: ApiContext, user: User) -> Registry:
    """The registry as this user sees it: only the stations of its scope."""
    registry = ctx.registry()
    if user.scope is None:
        return registry
    visible = {sid: s for sid, s in registry.stations.items() if user.sees(s)}
    return Registry(visible, registry.source)


def sees_station(ctx: ApiContext, user: User, station_id: str) -> bool:
    station = ctx.registry().get(station_id)
    return user.scope is None or (station is not None and user.sees(station))


def check_visible(ctx: ApiContext, user: User, station_id: str) -> None:
    """404, as for a station that does not exist: a scoped user learns nothing of the others."""
    if not sees_station(ctx, user, station_id):
        raise ApiError(404, "not_found", "api.msg.no_station", station=repr(station_id[:100]))
