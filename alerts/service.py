"""The live alert service: MQTT in (its own shared-subscription group), engine, store, notify.

It reads the same station traffic as ingest, through ingest's parser and validation, so it sees
exactly the readings ingest accepts; it acknowledges a message only after the alerts it caused
are committed. Readings of one station are evaluated one message at a time, in arrival order,
under that station's lock; the engine orders windows by measured time itself.

At start it rebuilds its windows from the readings table (``rebuild_hours``), then reconciles
with the open alerts in the database, so a restart neither loses nor repeats alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from alerts import store as alert_store
from alerts.aqi_live import AqiTracker
from alerts.config import AlertsConfig, load_alerts_config
from alerts.engine import (
    Change,
    Engine,
    EpisodeChange,
    Output,
    Transition,
    WindowEvaluated,
    catalog_unit_factor,
)
from alerts.limits import StationLimits, station_limits
from alerts.model import AlertEvent, EventType
from alerts.notify import (
    EscalationRule,
    Notifier,
    build_notifier,
    due_escalations,
    parse_notification_config,
)
from alerts.notify import OpenAlert as EscalationView
from alerts.regulations import RegulationCatalog, load_regulation_catalog
from alerts.store import AlertStore
from ingest.catalog import Catalog, load_catalog
from ingest.contract import Reading, Status, station_from_topic
from ingest.metrics import IngestMetrics
from ingest.mqtt import MqttInput
from ingest.payloads import parse_payload
from ingest.registry import Registry, Station, load_registry
from ingest.service import cancel_and_wait, upgrade_database
from ingest.settings import Settings
from ingest.validation import TimeLimits, validate

log = logging.getLogger(__name__)

_ESCALATION_CHECK_S = 30.0
_MAX_UNSAVED = 100_000  # engine outputs kept for retry while the database is away


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.readings = Counter(
            "quantrac_alerts_readings", "Readings evaluated by the alert engine", registry=registry
        )
        self.events = Counter(
            "quantrac_alert_events",
            "Alert events stored, by kind and event",
            ["kind", "event"],
            registry=registry,
        )
        self.evaluation_seconds = Histogram(
            "quantrac_alerts_message_seconds",
            "Time from receiving a message to its alerts committed",
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.errors = Counter(
            "quantrac_alerts_errors",
            "Messages the alert engine failed to process",
            registry=registry,
        )


class AlertService:
    def __init__(
        self,
        settings: Settings,
        *,
        metrics_registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.settings = settings
        self.clock = clock
        self.metrics_registry = metrics_registry or CollectorRegistry()
        self.metrics = AlertMetrics(self.metrics_registry)
        self.config: AlertsConfig | None = None
        self.catalog: Catalog | None = None
        self.registry: Registry | None = None
        self.regulations: RegulationCatalog | None = None
        self.engine: Engine | None = None
        self.pool: AsyncConnectionPool | None = None
        self.notifier: Notifier | None = None
        self.mqtt: MqttInput | None = None
        self.aqi: AqiTracker | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._unsaved: list[Output] = []
        # Read once: every message is checked with them, as ingest checks it.
        self._local = settings.tt10_timezone
        self._time_limits = TimeLimits(
            future_margin=timedelta(seconds=settings.future_margin_s), retention=settings.retention
        )

    # --- configuration ---------------------------------------------------------------------

    def load_configuration(self, registry: Registry | None = None) -> None:
        s = self.settings
        self.config = load_alerts_config(s.alerts_path)
        self.catalog = load_catalog(s.catalog_path)
        self.registry = registry or load_registry(s.stations_path, self.catalog)
        self.regulations = load_regulation_catalog(s.regulations_path, self.catalog)

    def build_engine(self, started_at: datetime) -> Engine:
        assert self.config and self.registry and self.regulations and self.catalog
        regulations = self.regulations

        def limits_for(station: Station) -> StationLimits:
            # Called once per station when the engine adopts a registry (at start, on reload).
            limits = station_limits(station, regulations)
            for problem in limits.problems:
                log.warning("station %s: %s", station.id, problem, extra={"event": "limit_problem"})
            return limits

        return Engine(
            self.registry,
            limits_for,
            self.config.engine,
            regulations.band_for,
            started_at,
            catalog_unit_factor(self.catalog),
        )

    def set_registry(self, registry: Registry) -> None:
        """Follow a reloaded station registry (ingest watches the file)."""
        self.registry = registry
        if self.engine is not None:
            self.engine.set_registry(registry)
        if self.aqi is not None:
            self.aqi.registry = registry

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, mqtt: bool = True) -> None:
        s = self.settings
        if self.config is None:
            self.load_configuration()
        assert self.config is not None and self.registry is not None
        await upgrade_database(s)  # readings must exist; idempotent beside ingest's own call
        assert s.database_url
        self.pool = AsyncConnectionPool(
            s.database_url,
            min_size=1,
            max_size=4,
            open=False,
            kwargs={"application_name": "quantrac-alerts"},
        )
        await self.pool.open(wait=True)
        async with self.pool.connection() as conn:
            await alert_store.upgrade(conn)
        now = self.clock()
        self.engine = self.build_engine(now)
        assert self.catalog is not None
        self.aqi = AqiTracker(
            self.registry, self.settings.config_dir, self.catalog, self.config.engine.local_tz
        )
        await self._rebuild(now)
        notification_config = parse_notification_config(
            self.config.notifications, self.config.source
        )
        self.escalation_rules: tuple[EscalationRule, ...] = notification_config.escalations
        self.notifier = build_notifier(
            notification_config,
            s.mqtt,
            self.metrics_registry,
            mqtt_client_id=f"{s.mqtt_client_id}-notify",
            mqtt_ca_file=s.mqtt_ca_file,
            mqtt_protocol=s.mqtt_protocol,
        )
        await self.notifier.start()
        if mqtt:
            alerts_settings = dataclasses.replace(
                s,
                mqtt_client_id=f"{s.mqtt_client_id}-alerts",
                mqtt_share_group=s.alerts_share_group,
            )
            self.mqtt = MqttInput(alerts_settings, self._handle_mqtt, IngestMetrics())
            await self.mqtt.start()
        self._tasks.append(asyncio.create_task(self._clock_loop()))

    async def stop(self) -> None:
        self._stop.set()
        if self.mqtt is not None:
            await self.mqtt.stop()
        await cancel_and_wait(self._tasks)
        if self.notifier is not None:
            await self.notifier.close(5.0)
        if self.pool is not None:
            await self.pool.close()

    async def _rebuild(self, now: datetime) -> None:
        """Windows from recent readings, then agree with the database on what is open."""
        assert self.engine and self.pool and self.config
        engine = self.engine
        since = now - timedelta(hours=self.config.engine.rebuild_hours)
        async with self.pool.connection() as conn:
            store = self._store(conn)
            open_before = await store.open_alerts()
            engine.restore((a.station_id, a.param, a.kind) for a in open_before)
            rebuilt = 0
            episodes: list[EpisodeChange] = []
            async with conn.transaction():
                cursor = await alert_store.recent_readings(conn, since)
                async for row in cursor:
                    reading = Reading(
                        row["station_id"],
                        row["param"],
                        row["measured_at"],
                        row["value"],
                        Status(row["status"]),
                    )
                    for output in engine.observe(reading, row["received_at"]):
                        if isinstance(output, EpisodeChange):
                            episodes.append(output)
                    rebuilt += 1
            for output in engine.tick(now):
                if isinstance(output, EpisodeChange):
                    episodes.append(output)
            for change in episodes:
                await store.apply_episodes(list(change.upserts), list(change.deletes))
            active = set(engine.active)
            stale = [
                Transition(
                    Change.CLEAR, a.kind, a.station_id, a.param, now, None, {"reason": "rebuilt"}
                )
                for a in open_before
                if (a.station_id, a.param, a.kind) not in active
            ]
            events = await store.apply(stale, self.config.engine.severity, now)
            known = {(a.station_id, a.param, a.kind) for a in open_before}
            for key in active - known:
                # Found in the data but never stored (e.g. a crash before the commit): let the
                # next window or reading raise it again, as a new alert.
                engine.active.discard(key)
        log.info(
            "alert engine rebuilt",
            extra={
                "event": "alerts_rebuilt",
                "readings": rebuilt,
                "open_alerts": len(open_before) - len(stale),
                "auto_resolved": len(events),
            },
        )

    def _store(self, conn: psycopg.AsyncConnection) -> AlertStore:
        assert self.registry is not None
        return AlertStore(conn, {s.id: s.name for s in self.registry.stations.values()})

    # --- input ---------------------------------------------------------------------------------

    async def _handle_mqtt(self, topic: str, payload: bytes) -> None:
        received_at = self.clock()
        station_id = station_from_topic(topic)
        if station_id is None:
            return None
        try:
            readings = self._readings(topic, station_id, payload, received_at)
            if readings:
                await self.process(station_id, readings, received_at)
        except (psycopg.OperationalError, PoolTimeout):
            raise  # not acknowledged; what the engine decided is retried with the next commit
        except Exception:
            # A bug must not stall the station's traffic; ingest keeps the data regardless.
            self.metrics.errors.inc()
            log.exception(
                "alert evaluation failed", extra={"event": "alerts_error", "topic": topic}
            )
        return None

    def _readings(
        self, topic: str, station_id: str, payload: bytes, received_at: datetime
    ) -> list[Reading]:
        assert self.registry and self.catalog
        s = self.settings
        station = self.registry.get(station_id)
        local = station.utc_offset if station and station.utc_offset else self._local
        parsed = parse_payload(payload, max_bytes=s.max_payload_bytes, local=local)
        result = validate(
            parsed,
            topic_station=station_id,
            registry=self.registry,
            catalog=self.catalog,
            now=received_at,
            limits=self._time_limits,
        )
        return result.readings

    async def process(
        self, station_id: str, readings: list[Reading], received_at: datetime
    ) -> list[AlertEvent]:
        """Evaluate one message's readings and commit what they caused. Returns the events."""
        assert self.engine is not None
        lock = self._locks.setdefault(station_id, asyncio.Lock())
        async with lock:
            outputs = self.engine.observe_many(readings, received_at)
            self.metrics.readings.inc(len(readings))
            events = await self._commit(outputs)
        self.metrics.evaluation_seconds.observe(
            max(0.0, (self.clock() - received_at).total_seconds())
        )
        return events

    async def _commit(self, outputs: list[Output]) -> list[AlertEvent]:
        """Store what the engine decided, in one transaction; keep it for a retry on failure.

        The engine has already moved on (a redelivered message changes no window), so what a
        failed commit held is retried with the next commit rather than recomputed.
        """
        if self._unsaved:
            outputs = [*self._unsaved, *outputs]
        try:
            return await self._store_outputs(outputs)
        except Exception:
            if len(outputs) <= _MAX_UNSAVED:
                self._unsaved = outputs
            else:
                log.error(
                    "alert outputs dropped after repeated database failures",
                    extra={"event": "alerts_unsaved_dropped", "outputs": len(outputs)},
                )
                self._unsaved = []
            raise

    async def _store_outputs(self, outputs: list[Output]) -> list[AlertEvent]:
        if not outputs:
            return []
        assert self.pool is not None and self.config is not None
        transitions = [o for o in outputs if isinstance(o, Transition)]
        episodes = [o for o in outputs if isinstance(o, EpisodeChange)]
        windows = [o for o in outputs if isinstance(o, WindowEvaluated)]
        aqi_rows = (
            self.aqi.update(windows, self.engine) if self.aqi and self.engine and windows else []
        )
        if not transitions and not episodes and not aqi_rows:
            return []
        async with self.pool.connection() as conn, conn.transaction():
            store = self._store(conn)
            events = await store.apply(transitions, self.config.engine.severity, self.clock())
            for change in episodes:
                await store.apply_episodes(list(change.upserts), list(change.deletes))
            await store.save_aqi(aqi_rows)
        self._unsaved = []
        self._notify(events)
        return events

    def _notify_metrics(self, events: list[AlertEvent]) -> None:
        for event in events:
            self.metrics.events.labels(event.kind.value, event.event.value).inc()

    def _notify(self, events: list[AlertEvent]) -> None:
        self._notify_metrics(events)
        for event in events:
            log.info(
                "alert %s: %s %s %s",
                event.event.value,
                event.kind.value,
                event.station_id,
                event.param,
                extra={"event": "alert", "alert_id": event.alert_id, "kind": event.kind.value},
            )
            if self.notifier is not None:
                self.notifier.publish(event)

    # --- people's actions ----------------------------------------------------------------------

    async def act(
        self, alert_id: int, action: EventType, actor: str, note: str | None
    ) -> AlertEvent:
        assert self.pool is not None
        async with self.pool.connection() as conn:
            event = await self._store(conn).act(alert_id, action, actor, note, self.clock())
        self._notify([event])
        return event

    # --- clock ---------------------------------------------------------------------------------

    async def tick(self) -> list[AlertEvent]:
        assert self.engine is not None
        now = self.clock()
        events = await self._commit(self.engine.tick(now))
        self.engine.prune(now)
        return events

    async def escalate(self) -> list[AlertEvent]:
        """Send open alerts nobody acknowledged in time to their escalation channels (once)."""
        assert self.pool is not None and self.notifier is not None
        if not self.escalation_rules:
            return []
        now = self.clock()
        sent: list[AlertEvent] = []
        async with self.pool.connection() as conn:
            store = self._store(conn)
            open_alerts = {a.id: a for a in await store.open_alerts() if not a.acknowledged}
            done = await store.escalations_done()
            views = [
                EscalationView(
                    a.id,
                    a.kind,
                    a.severity,
                    a.station_id,
                    a.opened_at,
                    frozenset(done.get(a.id, ())),
                )
                for a in open_alerts.values()
            ]
            for due in due_escalations(views, self.escalation_rules, now):
                alert = open_alerts[due.alert_id]
                event = await store.record_escalation(alert, due.details(), now)
                self.notifier.publish(event, channels=list(due.channels))
                sent.append(event)
        self._notify_metrics(sent)
        return sent

    async def _clock_loop(self) -> None:
        last_escalation = 0.0
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.settings.alerts_tick_s)
            if self._stop.is_set():
                break
            try:
                await self.tick()
                if loop.time() - last_escalation >= _ESCALATION_CHECK_S:
                    last_escalation = loop.time()
                    await self.escalate()
            except (psycopg.Error, OSError) as exc:
                log.warning(
                    "alert clock step failed: %s", exc, extra={"event": "alerts_tick_error"}
                )
