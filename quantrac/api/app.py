"""The HTTP application: API, OpenAPI (``/docs``, ``/openapi.json``), board, metrics, health.

One application serves `quantrac run` (beside ingest and the alert engine) and `quantrac api`
(alone, for instance on another machine): everything it shows comes from the database and, for
live events, from the broker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from psycopg_pool import AsyncConnectionPool
from starlette.exceptions import HTTPException as StarletteHTTPException

from quantrac.alerts.config import load_alerts_config
from quantrac.alerts.station_log import upgrade as upgrade_station_log
from quantrac.alerts.store import upgrade as upgrade_alerts
from quantrac.api import schema
from quantrac.api.alert_metrics import OpenAlertsGauge
from quantrac.api.deps import ApiContext, ApiError, error_body
from quantrac.api.events import EventHub
from quantrac.api.evidence import router as evidence_router
from quantrac.api.maintenance import router as maintenance_router
from quantrac.api.reports import router as reports_router
from quantrac.api.routes import router
from quantrac.api.security import SecurityMiddleware, request_language
from quantrac.core.catalog import Catalog
from quantrac.core.i18n import translate
from quantrac.core.registry import Registry, RegistryError, load_registry
from quantrac.core.settings import Settings
from quantrac.evidence.schema import upgrade as upgrade_evidence
from quantrac.ingest.service import upgrade_database
from quantrac.regulations.tables import load_regulation_catalog

log = logging.getLogger(__name__)

BOARD = Path(__file__).resolve().parent.parent / "board"

Health = Callable[[], dict[str, Any]]


def build_api(
    context: ApiContext | None,
    metrics: CollectorRegistry | None = None,
    health: Health | None = None,
) -> FastAPI:
    app = FastAPI(
        title="quantrac",
        description="Automatic environmental monitoring: stations, readings, QCVN alerts, "
        "exceedance evidence, VN_AQI. Errors: {error: {code, message, details}}.",
        version="0.1.0",
        # The interactive page is served from the package, not a CDN: IOC networks are closed.
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = context

    def said(request: Request, key: str, /, **params: Any) -> str:
        return translate(key, request_language(request), **params)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.text(request_language(request)), exc.details),
            exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Routing's own answers (no such path, method not allowed) in the one error shape.
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        if exc.status_code == 404:
            message = said(request, "api.msg.no_route")
        elif exc.status_code == 405:
            message = said(request, "api.msg.method_not_allowed", method=request.method)
        else:
            message = said(request, "api.msg.http_error", status=exc.status_code, reason=exc.detail)
        return JSONResponse(error_body(code, message), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Each field's own text is pydantic's (English); its "type" is the stable part.
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "type": e["type"], "message": e["msg"]}
            for e in exc.errors()
        ]
        return JSONResponse(
            error_body("invalid_request", said(request, "api.msg.invalid_request"), details), 422
        )

    @app.exception_handler(psycopg.DataError)
    async def bad_value(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # A value the database cannot take (a NUL in text, a number out of range): the
        # request's fault, never a 500.
        reason = str(exc).splitlines()[0][:200]
        message = said(request, "api.msg.bad_value", reason=reason)
        return JSONResponse(error_body("invalid_parameter", message), 422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal", said(request, "api.msg.internal")), 500)

    app.add_middleware(SecurityMiddleware)
    # Swagger UI 5 from the fastapi-swagger wheel, served here (no CDN): FastAPI's OpenAPI is
    # 3.1, which Swagger UI 4 cannot render.
    assets = resources.files("fastapi_swagger") / "resources"
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="quantrac API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        body = health() if health else {"status": "ok"}
        return JSONResponse(body, status_code=200 if body.get("status") == "ok" else 503)

    if context is not None:
        app.include_router(router)
        app.include_router(reports_router)
        app.include_router(evidence_router)
        app.include_router(maintenance_router)
        if BOARD.is_dir():
            app.mount("/board", StaticFiles(directory=BOARD, html=True), name="board")

            @app.get("/", include_in_schema=False)
            async def root() -> RedirectResponse:
                return RedirectResponse("/board/")

    if metrics is not None:
        open_alerts = OpenAlertsGauge.of(metrics) if context is not None else None

        # A route, not a mounted app: /metrics answers itself (a mount redirects to /metrics/).
        @app.get("/metrics", include_in_schema=False)
        async def prometheus() -> Response:
            if open_alerts is not None and context is not None:
                await open_alerts.refresh(context.pool)
            return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    return app


class FileRegistry:
    """The station registry of a file, reloaded when the file changes (and still valid).

    For `quantrac api` alone; inside `quantrac run` the ingest service does this and the API
    asks it.
    """

    def __init__(self, path: Path, catalog: Catalog):
        self.path = path
        self.catalog = catalog
        self.mtime = path.stat().st_mtime
        self.registry = load_registry(path, catalog)

    def __call__(self) -> Registry:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return self.registry
        if mtime != self.mtime:
            self.mtime = mtime
            try:
                self.registry = load_registry(self.path, self.catalog)
            except RegistryError as exc:
                log.error("station registry not reloaded:\n%s", exc, extra={"event": "registry"})
        return self.registry


class ApiService:
    """The database pool, the live event hub and the context the routes share."""

    def __init__(self, settings: Settings, catalog: Catalog, registry: Callable[[], Registry]):
        self.settings = settings
        self.catalog = catalog
        self.registry = registry
        self.pool: AsyncConnectionPool | None = None
        self.events = EventHub(
            settings.database_url,
            lambda: {s.id: s.name for s in registry().stations.values()},
        )
        self.context: ApiContext | None = None

    async def start(self) -> ApiContext:
        s = self.settings
        assert s.database_url
        await upgrade_database(s)
        self.pool = AsyncConnectionPool(
            s.database_url,
            min_size=1,
            max_size=8,
            open=False,
            kwargs={"application_name": "quantrac-api", "autocommit": True},
        )
        await self.pool.open(wait=True)
        async with self.pool.connection() as conn:
            await upgrade_alerts(conn)
            await schema.upgrade(conn)
            await upgrade_evidence(conn)
            await upgrade_station_log(conn)
        await self.events.start()
        self.context = ApiContext(
            settings=s,
            pool=self.pool,
            catalog=self.catalog,
            registry=self.registry,
            regulations=load_regulation_catalog(s.regulations_path, self.catalog),
            engine_config=load_alerts_config(s.alerts_path).engine,
            events=self.events,
        )
        return self.context

    async def stop(self) -> None:
        await self.events.stop()
        if self.pool is not None:
            await self.pool.close()
