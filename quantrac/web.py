"""The HTTP side of `quantrac run`: the API and board (quantrac.api), metrics and health."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn

from quantrac.core.settings import Settings
from quantrac.ingest.service import IngestService


def ingest_health(service: IngestService) -> dict[str, Any]:
    broker = service.mqtt is not None and service.mqtt.connected.is_set()
    pipeline = service.pipeline
    database = pipeline is not None and pipeline.database_ok
    storing = pipeline is not None and pipeline.healthy
    stuck_since = pipeline.stuck_since if pipeline is not None else None
    return {
        "status": "ok" if broker and storing else "degraded",
        "broker_connected": broker,
        "database_connected": database,
        "storage_stuck_since": datetime.fromtimestamp(stuck_since, UTC).isoformat()
        if stuck_since is not None
        else None,
        "writer_running": pipeline is not None and pipeline.writer_failed is None,
        "storage_backend": service.backend,
        "pending_readings": service.pipeline.pending if service.pipeline else 0,
        "stations": len(service.registry.stations) if service.registry else 0,
    }


class WebServer:
    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ):
        # Open event streams (boards) would otherwise hold a shutdown forever.
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=5,
            ssl_certfile=str(cert_file) if cert_file else None,
            ssl_keyfile=str(key_file) if key_file else None,
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked for any free one)."""
        for server in self.server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self.server.config.port)

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


def web_servers(app: Any, settings: Settings) -> list[WebServer]:
    """Plain HTTP on http_host:http_port and, when configured, HTTPS on https_port (same app)."""
    servers = []
    if settings.http_port:
        servers.append(WebServer(app, settings.http_host, settings.http_port))
    if settings.https_port:
        servers.append(
            WebServer(
                app,
                settings.https_host,
                settings.https_port,
                settings.https_cert_file,
                settings.https_key_file,
            )
        )
    return servers
