"""The running service as one unit: ingest, alert engine, HTTP side; and the wait for a signal.

`quantrac run` and `quantrac demo` both run exactly this; the demo only adds local servers and
simulated stations around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

from quantrac.alerts.service import AlertService
from quantrac.api.app import ApiService, build_api
from quantrac.core.settings import Settings
from quantrac.ingest.service import IngestService
from quantrac.web import WebServer, ingest_health, web_servers


class App:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.service = IngestService(settings)
        self.service.load_configuration()
        self.alerts: AlertService | None = None
        if settings.alerts_enabled:
            self.alerts = AlertService(settings, metrics_registry=self.service.metrics.registry)
            self.alerts.load_configuration(self.service.current_registry())
            self.service.registry_listeners.append(self.alerts.set_registry)
        self.api: ApiService | None = None
        self.web: list[WebServer] = []
        if settings.http_port or settings.https_port:
            assert self.service.catalog is not None
            self.api = ApiService(settings, self.service.catalog, self.service.current_registry)

    async def start(self) -> None:
        # The engine's cursors exist before ingest commits anything, and it is handed every
        # batch the pipeline commits; whatever it misses it reads back from its cursors.
        if self.alerts is not None:
            await self.alerts.start()
        await self.service.start()
        if self.alerts is not None:
            assert self.service.pipeline is not None
            self.service.pipeline.subscribe(self.alerts.accept)
        if self.api is not None:
            context = await self.api.start()
            app = build_api(context, metrics=self.service.metrics.registry, health=self.health)
            self.web = web_servers(app, self.settings)
            for server in self.web:
                await server.start()

    def health(self) -> dict[str, object]:
        report = ingest_health(self.service)
        if self.alerts is not None:
            report.update(self.alerts.health())
            if report["alerts_lagging"]:
                report["status"] = "degraded"
        return report

    async def stop(self) -> None:
        for server in self.web:
            await server.stop()
        if self.api is not None:
            await self.api.stop()
        await self.service.stop()  # ingest first: what it acknowledged is stored
        if self.alerts is not None:
            await self.alerts.stop()


async def run_until_signalled(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    duration: float | None = None,
) -> None:
    """Start, wait for SIGTERM/SIGINT (or the duration), then stop cleanly."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await start()
    try:
        if duration is None:
            await stopping.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), duration)
    finally:
        await stop()
