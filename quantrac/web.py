"""The HTTP side of `quantrac run`: Prometheus metrics and a health check.

Later issues mount the operator API and board on this same application.
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from prometheus_client import make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from ingest.service import IngestService


def build_app(service: IngestService) -> Starlette:
    async def health(request: Request) -> JSONResponse:
        broker = service.mqtt is not None and service.mqtt.connected.is_set()
        database = service.pipeline is not None and service.pipeline.database_ok
        body = {
            "status": "ok" if broker and database else "degraded",
            "broker_connected": broker,
            "database_connected": database,
            "storage_backend": service.backend,
            "pending_readings": service.pipeline.pending if service.pipeline else 0,
            "stations": len(service.registry.stations) if service.registry else 0,
        }
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    return Starlette(
        routes=[
            Route("/healthz", health),
            Mount("/metrics", app=make_asgi_app(registry=service.metrics.registry)),
        ]
    )


class WebServer:
    def __init__(self, service: IngestService, host: str, port: int):
        config = uvicorn.Config(
            build_app(service), host=host, port=port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises the bind error
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
