"""The ingest worker: database schema, pipeline, MQTT input, file drop and upkeep, wired up.

Several workers with the same share group split the stations' traffic between them (MQTT shared
subscription); each needs its own ``mqtt_client_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from quantrac.core.catalog import Catalog, load_catalog
from quantrac.core.contract import Feedback
from quantrac.core.db import connect
from quantrac.core.mqtt import ClientFactory, make_client
from quantrac.core.registry import Registry, RegistryError, load_registry
from quantrac.core.settings import Settings
from quantrac.core.tasks import cancel_and_wait, tune_garbage_collector
from quantrac.ingest import schema, stream
from quantrac.ingest.files import watch_folder
from quantrac.ingest.metrics import IngestMetrics
from quantrac.ingest.mqtt import MqttInput
from quantrac.ingest.pipeline import Pipeline, PipelineOptions
from quantrac.ingest.ratelimit import RateLimiter
from quantrac.ingest.receiver import Receiver
from quantrac.ingest.rollup import refresh_hourly, refresh_timescale_hourly
from quantrac.ingest.validation import TimeLimits
from quantrac.ingest.writer import BatchWriter

log = logging.getLogger(__name__)

_MAINTENANCE_EVERY = timedelta(hours=6)


def storage_options(settings: Settings) -> schema.StorageOptions:
    return schema.StorageOptions(
        backend=settings.storage_backend,
        retention_days=settings.retention_days,
        compression_after_days=settings.compression_after_days,
        chunk_interval_days=settings.chunk_interval_days,
        partitions_ahead_months=settings.partitions_ahead_months,
    )


async def upgrade_database(settings: Settings) -> tuple[str, list[int]]:
    async with await connect(settings) as conn:
        return await schema.upgrade(conn, storage_options(settings))


@dataclass
class IngestService:
    settings: Settings
    metrics: IngestMetrics = field(default_factory=IngestMetrics)
    catalog: Catalog | None = None
    registry: Registry | None = None
    backend: str | None = None
    pipeline: Pipeline | None = None
    receiver: Receiver | None = None
    mqtt: MqttInput | None = None
    # Builds the MQTT client (tests pass one returning a fake).
    mqtt_client_factory: ClientFactory = make_client
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _registry_mtime: float = 0.0
    # Told about every reloaded registry (e.g. the alert engine running in the same process).
    registry_listeners: list[Callable[[Registry], None]] = field(default_factory=list)

    def current_registry(self) -> Registry:
        assert self.registry is not None
        return self.registry

    async def _writer(self) -> BatchWriter:
        conn = await connect(self.settings)
        assert self.backend is not None
        writer = BatchWriter(conn, self.backend)
        await writer.prepare()
        return writer

    async def _wait_for_database(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await connect(self.settings) as conn:
                    opts = storage_options(self.settings)
                    self.backend, applied = await schema.upgrade(conn, opts)
                    await schema.sync_stations(conn, self.current_registry())
                self.metrics.database_up.set(1)
                log.info(
                    "database ready",
                    extra={
                        "event": "database_ready",
                        "backend": self.backend,
                        "migrations_applied": applied,
                    },
                )
                return
            except psycopg.OperationalError as exc:
                self.metrics.database_up.set(0)
                log.warning(
                    "database unreachable, retrying in %.1f s: %s",
                    delay,
                    exc,
                    extra={"event": "database_retry"},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    def load_configuration(self) -> None:
        s = self.settings
        self.catalog = load_catalog(s.catalog_path)
        self.registry = load_registry(s.stations_path, self.catalog)
        self._registry_mtime = s.stations_path.stat().st_mtime

    async def start(self) -> None:
        """Everything: storage, MQTT input, upkeep, and the file drop watcher if configured."""
        tune_garbage_collector()
        await self.start_without_mqtt()
        assert self.receiver is not None
        s = self.settings
        self.mqtt = MqttInput(
            s, self._handle_mqtt, self.metrics, client_factory=self.mqtt_client_factory
        )
        await self.mqtt.start()
        self._spawn(self._upkeep())
        if s.files_dir is not None:
            self._spawn(watch_folder(s.files_dir, self.receiver, s.files_poll_s, self._stop))

    async def start_without_mqtt(self) -> None:
        """Database ready, pipeline and receiver running: enough for the file drop command."""
        s = self.settings
        if self.registry is None:
            self.load_configuration()
        assert self.catalog is not None
        await self._wait_for_database()
        self.pipeline = Pipeline(
            self._writer,
            self.metrics,
            PipelineOptions(
                batch_size=s.batch_size,
                max_latency_s=s.batch_max_latency_ms / 1000,
                max_pending=s.max_pending_readings,
            ),
        )
        self.pipeline.start()
        self.receiver = Receiver(
            self.pipeline,
            self.current_registry,
            self.catalog,
            self.metrics,
            limits=TimeLimits(
                future_margin=timedelta(seconds=s.future_margin_s), retention=s.retention
            ),
            max_payload_bytes=s.max_payload_bytes,
            local=s.tt10_timezone,
            rate_limiter=RateLimiter(s.rate_limit_per_s, s.rate_limit_burst),
        )

    def _spawn(self, coro: object) -> None:
        self._tasks.append(asyncio.create_task(coro))  # type: ignore[arg-type]

    async def _handle_mqtt(self, topic: str, payload: bytes) -> Feedback | None:
        assert self.receiver is not None
        _, feedback = await self.receiver.receive_mqtt(topic, payload)
        if not feedback.station:  # the topic names no station: nowhere to answer (logged)
            return None
        if feedback.problems or feedback.notices or self.settings.positive_ack:
            return feedback
        return None

    async def _upkeep(self) -> None:
        """Hourly rollup, partitions ahead (plain PostgreSQL), retention, registry reload."""
        s = self.settings
        last_maintenance = datetime.min.replace(tzinfo=UTC)
        interval = s.rollup_interval_s or 30.0
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            try:
                self.reload_registry_if_changed()
                async with await connect(s) as conn:
                    await stream.prune(conn)
                    await conn.commit()
                    plain = self.backend == schema.POSTGRES
                    if s.rollup_interval_s:
                        if plain:
                            await refresh_hourly(conn)
                        else:  # chunks and compression are TimescaleDB's own policies
                            await conn.set_autocommit(True)
                            await refresh_timescale_hourly(conn)
                            await conn.set_autocommit(False)
                    now = datetime.now(UTC)
                    if self.backend and now - last_maintenance >= _MAINTENANCE_EVERY:
                        opts = storage_options(s)
                        # Retention is quantrac's own on both backends: it keeps what a
                        # locked (sealed) period overlaps.
                        dropped = await schema.apply_retention(conn, self.backend, opts, now)
                        if dropped:
                            log.info(
                                "retention dropped partitions",
                                extra={"event": "retention", "partitions": dropped},
                            )
                        last_maintenance = now
            except (psycopg.Error, OSError) as exc:
                log.warning("upkeep failed, will retry: %s", exc, extra={"event": "upkeep_error"})

    def reload_registry_if_changed(self) -> bool:
        path = self.settings.stations_path
        if not self.settings.registry_reload_s:
            return False
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return False
        if mtime == self._registry_mtime:
            return False
        self._registry_mtime = mtime
        assert self.catalog is not None
        try:
            registry = load_registry(path, self.catalog)
        except RegistryError as exc:
            log.error(
                "station registry not reloaded; keeping the previous one:\n%s",
                exc,
                extra={"event": "registry_invalid"},
            )
            return False
        self.registry = registry
        for listener in self.registry_listeners:
            listener(registry)
        self._spawn(self._sync_registry(registry))
        log.info(
            "station registry reloaded",
            extra={"event": "registry_reloaded", "stations": len(registry.stations)},
        )
        return True

    async def _sync_registry(self, registry: Registry) -> None:
        try:
            async with await connect(self.settings) as conn:
                await schema.sync_stations(conn, registry)
        except psycopg.Error as exc:
            log.warning("stations table not synced: %s", exc, extra={"event": "sync_error"})

    async def stop(self) -> None:
        """Flush and commit what was received, acknowledge it, then disconnect."""
        self._stop.set()
        if self.pipeline is not None:
            await self.pipeline.close()
        if self.mqtt is not None:
            await self.mqtt.stop()
        await cancel_and_wait(self._tasks)
