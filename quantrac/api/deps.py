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

from alerts.config import EngineConfig
from alerts.regulations import RegulationCatalog
from ingest.catalog import Catalog
from ingest.registry import Registry
from ingest.settings import Settings
from quantrac.api.events import EventHub
from quantrac.api.users import User, authenticate, user_for_token


class ApiError(HTTPException):
    def __init__(self, status: int, code: str, message: str, details: Any = None):
        super().__init__(status_code=status, detail=message)
        self.code = code
        self.message = message
        self.details = details


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
        user = await authenticate(conn, name, password) if name else None
    if user is None:
        raise ApiError(401, "unauthenticated", "sign in: Bearer token or HTTP Basic")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require(permission: str) -> Callable[..., Any]:
    async def check(user: CurrentUser) -> User:
        if not user.may(permission):
            raise ApiError(
                403, "forbidden", f"the role {user.role!r} may not do this ({permission})"
            )
        return user

    return check


Reader = Annotated[User, Depends(require("read"))]
Operator = Annotated[User, Depends(require("act"))]
Inspector = Annotated[User, Depends(require("export"))]
Admin = Annotated[User, Depends(require("admin"))]


def page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def parse_when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    from ingest.contract import parse_time

    try:
        return parse_time(value)
    except ValueError as exc:
        raise ApiError(422, "invalid_parameter", f"{name}: {exc}", {"value": value}) from None
