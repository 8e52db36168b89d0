"""The running service as one unit: ingest, alert engine, HTTP side; and the wait for a signal.

`quantrac run` and `quantrac demo` both run exactly this; the demo only adds local servers and
simulated stations around it.

The alert engine runs either in this process, handed every committed batch (``alerts_workers``
0), or as ``quantrac alerts`` child processes that follow the committed stream in PostgreSQL by
their leased cursors (the default on a machine with two cores or more: ingest and evaluation
then use one core each). The children are supervised here: restarted when one dies, stopped
with this process, their lag read from the cursors for ``/metrics`` and ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge

from quantrac.alerts import partitions as parts
from quantrac.alerts.service import AlertService
from quantrac.api.app import ApiService, build_api
from quantrac.core.registry import Registry
from quantrac.core.settings import CONFIG_FILE_ENV, ENV_PREFIX, Settings, settings_environment
from quantrac.core.tasks import cancel_and_wait
from quantrac.ingest import stream
from quantrac.ingest.service import IngestService
from quantrac.web import WebServer, ingest_health, web_servers

log = logging.getLogger(__name__)

_WATCH_S = 2.0  # how often the workers' lag is read from their cursors
_RESTART_S = (1.0, 30.0)  # delay before restarting a worker that died, doubled while it fails
_HEALTHY_RUN_S = 60.0  # a worker that ran this long before it died is restarted at once
_STOP_S = 20.0  # a worker not gone this long after SIGTERM is killed
_CURSORS_WAIT_S = 60.0  # ingest waits at most this long for a new installation's alert cursors


def alert_workers(settings: Settings) -> int:
    """Child processes for the alert engine: the setting, or 1 when the machine has 2 cores."""
    if not settings.alerts_enabled:
        return 0
    if settings.alerts_workers is not None:
        return settings.alerts_workers
    return 1 if (os.cpu_count() or 1) >= 2 else 0


class AlertWorkers:
    """``quantrac alerts`` child processes, started, watched and stopped by ``quantrac run``.

    Each child is a full alert worker (engine, live AQI, notification outbox) that leases its
    share of the partitions and follows the committed stream by cursor, so what it judges is
    what was committed, and a child that dies is restarted where its cursors stand: nothing is
    lost or judged twice. Children get exactly this process's settings (as ``QUANTRAC_*``
    variables, without the HTTP side) and stop by themselves when this process is gone.
    """

    def __init__(self, settings: Settings, count: int, registry: CollectorRegistry):
        self.settings = settings
        self.count = count
        self.processes: list[asyncio.subprocess.Process | None] = [None] * count
        self.lag: tuple[int, float] = (0, 0.0)
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.running = Gauge(
            "quantrac_alerts_workers_running",
            "Alert worker child processes running (quantrac run)",
            registry=registry,
        )
        self.restarts = Counter(
            "quantrac_alerts_worker_restarts",
            "Alert worker child processes restarted after they stopped unasked",
            registry=registry,
        )
        self.lag_batches = Gauge(
            "quantrac_alerts_lag_batches",
            "Committed batches stored but not yet judged by the alert workers",
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "quantrac_alerts_lag_seconds",
            "Age of the oldest committed batch the alert workers have not judged yet",
            registry=registry,
        )

    def command(self, index: int) -> tuple[list[str], dict[str, str]]:
        """The child's command line and environment."""
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env.pop(CONFIG_FILE_ENV, None)
        env.update(settings_environment(s))
        env[ENV_PREFIX + "HTTP_PORT"] = "0"
        env[ENV_PREFIX + "HTTPS_PORT"] = "0"
        if index:
            # Its own lease owner and notification MQTT client id; the first child keeps the
            # in-process engine's, so switching modes takes the leases back at once.
            env[ENV_PREFIX + "MQTT_CLIENT_ID"] = f"{s.mqtt_client_id}-w{index + 1}"
        argv = [sys.executable, "-m", "quantrac.cli.main", "alerts", "--parent", str(os.getpid())]
        return argv, env

    async def start(self) -> None:
        for index in range(self.count):
            self._tasks.append(
                asyncio.create_task(self._supervise(index), name=f"quantrac-alert-worker-{index}")
            )
        self._tasks.append(asyncio.create_task(self._watch_lag(), name="quantrac-alert-lag"))

    async def cursors_ready(self, timeout: float) -> bool:
        """Wait until the alert cursors of this partitioning exist (the first worker creates
        them on a new installation), so that every batch ingest commits is judged; False if
        they do not appear in time (ingest starts all the same: storage never waits long)."""
        assert self.settings.database_url
        names = parts.cursor_names(self.settings.alerts_partitions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.settings.database_url, autocommit=True
                ) as conn:
                    if await stream.cursors_exist(conn, names):
                        return True
            except (psycopg.Error, OSError):
                pass  # no schema or no database yet
            await asyncio.sleep(0.2)
        log.warning(
            "alert cursors not created within %.0f s; ingest starts without waiting",
            timeout,
            extra={"event": "alerts_cursors_late"},
        )
        return False

    async def _supervise(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        delay = _RESTART_S[0]
        while not self._stopping:
            argv, env = self.command(index)
            began = loop.time()
            # Its own session: a Ctrl-C in the terminal reaches this process, which stops the
            # workers after ingest, in order.
            process = await asyncio.create_subprocess_exec(*argv, env=env, start_new_session=True)
            self.processes[index] = process
            self.running.set(len(self._alive()))
            log.info(
                "alert worker started",
                extra={"event": "alerts_worker_started", "worker": index, "pid": process.pid},
            )
            code = await process.wait()
            self.running.set(len(self._alive()))
            if self._stopping:
                return
            if code == 0:  # asked to stop (a reloaded registry): start again
                delay = _RESTART_S[0]
                await asyncio.sleep(0.2)
                continue
            self.restarts.inc()
            if loop.time() - began >= _HEALTHY_RUN_S:
                delay = _RESTART_S[0]
            log.warning(
                "alert worker %s stopped (exit code %s); restarting in %.0f s",
                index,
                code,
                delay,
                extra={"event": "alerts_worker_died", "worker": index, "exit_code": code},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RESTART_S[1])

    async def _watch_lag(self) -> None:
        """The workers' lag, from their cursors (they report to no one else)."""
        assert self.settings.database_url
        conn: psycopg.AsyncConnection | None = None
        while not self._stopping:
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(
                        self.settings.database_url,
                        autocommit=True,
                        application_name="quantrac-run-alert-lag",
                    )
                self.lag = stream.worst_lag(
                    await stream.lag(conn), parts.cursor_names(self.settings.alerts_partitions)
                )
                self.lag_batches.set(self.lag[0])
                self.lag_seconds.set(self.lag[1])
            except (psycopg.Error, OSError):
                if conn is not None:
                    with contextlib.suppress(psycopg.Error, OSError):
                        await conn.close()
                conn = None
            await asyncio.sleep(_WATCH_S)
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    def _alive(self) -> list[asyncio.subprocess.Process]:
        return [p for p in self.processes if p is not None and p.returncode is None]

    def reload(self, registry: Registry) -> None:
        """A reloaded station registry: each worker stops cleanly and starts again with it."""
        for process in self._alive():
            process.send_signal(signal.SIGTERM)

    def health(self) -> dict[str, object]:
        batches, seconds = self.lag
        running = len(self._alive())
        return {
            "alerts_workers": self.count,
            "alerts_workers_running": running,
            "alerts_lag_batches": batches,
            "alerts_lag_seconds": round(seconds, 1),
            "alerts_lagging": seconds > self.settings.alerts_max_lag_s or running < self.count,
        }

    async def stop(self) -> None:
        self._stopping = True
        alive = self._alive()
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in alive:
            try:
                await asyncio.wait_for(process.wait(), _STOP_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        await cancel_and_wait(self._tasks)
        self.running.set(0)


class App:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.service = IngestService(settings)
        self.service.load_configuration()
        self.alerts: AlertService | None = None
        self.workers: AlertWorkers | None = None
        count = alert_workers(settings)
        if count:
            self.workers = AlertWorkers(settings, count, self.service.metrics.registry)
            self.service.registry_listeners.append(self.workers.reload)
        elif settings.alerts_enabled:
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
        # Likewise for child workers: ingest starts once their cursors exist (at once when
        # they already do; on a new installation after the first worker created them).
        if self.alerts is not None:
            await self.alerts.start()
        if self.workers is not None:
            await self.workers.start()
            await self.workers.cursors_ready(_CURSORS_WAIT_S)
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
        if self.workers is not None:
            report.update(self.workers.health())
        if report.get("alerts_lagging"):
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
        if self.workers is not None:
            await self.workers.stop()


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
