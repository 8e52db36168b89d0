"""The live alert service: the committed stream in, engine, alert store, notification outbox.

It judges only what ingest stored: committed batches, handed over in process by ``quantrac run``
and read from PostgreSQL by durable cursor (``quantrac.ingest.stream``) in every case, so a separate
``quantrac alerts`` and a restart both resume exactly where the last commit left off. Stations
are split into partitions, one cursor each; the worker leases partitions in PostgreSQL and moves
their cursors in the transaction that stores the alerts their readings caused, so a crash, a
restart or a lost lease neither loses nor repeats an alert.

Taking over a partition rebuilds its stations' windows from the readings stored up to its
cursor (the last ``rebuild_hours``), adopts the open alerts stored for them, then replays the
batches after the cursor. Only a cursor created now (a new installation) falls back to judging
the rebuilt windows against the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from quantrac.alerts import partitions as parts
from quantrac.alerts import store as alert_store
from quantrac.alerts.aqi_live import AqiTracker
from quantrac.alerts.config import AlertsConfig, load_alerts_config
from quantrac.alerts.engine import (
    Change,
    Engine,
    EpisodeChange,
    Output,
    Transition,
    WindowEvaluated,
    catalog_unit_factor,
)
from quantrac.alerts.maintenance import mark_historical_outputs
from quantrac.alerts.model import AlertEvent, EventType
from quantrac.alerts.notify import (
    EscalationRule,
    NotifyMetrics,
    build_channels,
    due_escalations,
    parse_notification_config,
)
from quantrac.alerts.notify import OpenAlert as EscalationView
from quantrac.alerts.notify.outbox import DeliveryOutbox
from quantrac.alerts.store import AlertStore
from quantrac.alerts.suppression import without_planned
from quantrac.core.catalog import Catalog, load_catalog
from quantrac.core.contract import Reading, Status
from quantrac.core.registry import Registry, Station, load_registry
from quantrac.core.settings import Settings
from quantrac.core.tasks import cancel_and_wait
from quantrac.ingest import stream, writer
from quantrac.ingest.files import HISTORICAL_SOURCE
from quantrac.ingest.service import upgrade_database
from quantrac.ingest.stream import CommittedBatch
from quantrac.regulations.limits import StationLimits, station_limits
from quantrac.regulations.tables import RegulationCatalog, load_regulation_catalog

log = logging.getLogger(__name__)

_ESCALATION_CHECK_S = 30.0
_MAX_UNSAVED = 100_000  # engine outputs kept for retry while the database is away
_BATCHES_PER_COMMIT = 20  # committed batches judged together in one alert transaction
_INBOX_LIMIT = 200  # batches handed over in process and not yet judged; more are read back
_RETRY_S = (0.5, 15.0)


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
            "Committed batches the alert engine failed to process (retried from its cursor)",
            registry=registry,
        )
        self.lag_batches = Gauge(
            "quantrac_alerts_lag_batches",
            "Committed batches stored but not yet judged by this alert worker",
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "quantrac_alerts_lag_seconds",
            "Age of the oldest committed batch this alert worker has not judged yet",
            registry=registry,
        )
        self.partitions = Gauge(
            "quantrac_alerts_partitions",
            "Station partitions leased by this alert worker",
            registry=registry,
        )


class AlertService:
    def __init__(
        self,
        settings: Settings,
        *,
        metrics_registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        owner: str | None = None,
    ):
        self.settings = settings
        self.clock = clock
        # Readings measured this long before they arrived raise historical alerts (0: off).
        after = settings.alerts_historical_after_s
        self.historical_after = timedelta(seconds=after) if after else None
        self.holdoff = timedelta(minutes=settings.alerts_holdoff_minutes)
        # Stable across restarts of one worker: a restarted worker takes its own leases back
        # at once instead of waiting for them to run out.
        self.owner = owner or f"{settings.mqtt_client_id}-alerts"
        self.metrics_registry = metrics_registry or CollectorRegistry()
        self.metrics = AlertMetrics(self.metrics_registry)
        self.config: AlertsConfig | None = None
        self.catalog: Catalog | None = None
        self.registry: Registry | None = None
        self.regulations: RegulationCatalog | None = None
        self.engine: Engine | None = None
        self.pool: AsyncConnectionPool | None = None
        self.outbox: DeliveryOutbox | None = None
        self.aqi: AqiTracker | None = None
        self.escalation_rules: tuple[EscalationRule, ...] = ()
        self.positions: dict[str, int] = {}  # leased partition cursor → batches judged up to
        self.caught_up = False  # the last read found no committed batch left to judge
        self._engine_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._unsaved: list[Output] = []
        self._unsaved_moves: dict[str, int] = {}
        self._inbox: dict[int, CommittedBatch] = {}
        self._wakeup: stream.Wakeup | None = None
        self._waiter: asyncio.Event | None = None
        self._fresh: set[str] = set()  # cursors created by this start: no history to resume
        self._cursor_of: dict[str, str] = {}  # station → its partition's cursor
        self.lag: tuple[int, float] = (0, 0.0)  # batches behind, age of the oldest (seconds)

    @property
    def partitions(self) -> int:
        return self.settings.alerts_partitions

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
            self._owned_registry(),
            limits_for,
            self.config.engine,
            regulations.band_for,
            started_at,
            catalog_unit_factor(self.catalog),
        )

    def _owned_registry(self) -> Registry:
        """The stations of the partitions this worker holds: the engine knows no others."""
        assert self.registry is not None
        owned = parts.stations_of(self.positions, self.registry.stations, self.partitions)
        return Registry(
            {k: v for k, v in self.registry.stations.items() if k in owned}, self.registry.source
        )

    def set_registry(self, registry: Registry) -> None:
        """Follow a reloaded station registry (ingest watches the file)."""
        self.registry = registry
        if self.engine is not None:
            self.engine.set_registry(self._owned_registry())
        if self.aqi is not None:
            self.aqi.registry = registry

    def station_names(self) -> dict[str, str]:
        assert self.registry is not None
        return {s.id: s.name for s in self.registry.stations.values()}

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Schema, leases, windows rebuilt up to the cursors, then the follower task."""
        s = self.settings
        if self.config is None:
            self.load_configuration()
        assert self.config is not None and self.registry is not None and self.catalog
        await upgrade_database(s)  # readings must exist; idempotent beside ingest's own call
        assert s.database_url
        self.pool = AsyncConnectionPool(
            s.database_url,
            min_size=1,
            max_size=6,
            open=False,
            kwargs={"application_name": "quantrac-alerts"},
        )
        await self.pool.open(wait=True)
        async with self.pool.connection() as conn:
            await alert_store.upgrade(conn)
        self.engine = self.build_engine(self.clock())
        self.aqi = AqiTracker(
            self.registry, self.settings.config_dir, self.catalog, self.config.engine.local_tz
        )
        self._fresh = await self._register_cursors()
        await self._renew_leases()
        self._wakeup = stream.Wakeup(s.database_url)
        self._waiter = self._wakeup.waiter()
        self._wakeup.start()
        notification_config = parse_notification_config(
            self.config.notifications, self.config.source, self.config.lines
        )
        self.escalation_rules = notification_config.escalations
        channels = build_channels(
            notification_config,
            s.mqtt,
            mqtt_client_id=f"{s.mqtt_client_id}-notify",
            mqtt_ca_file=s.mqtt_ca_file,
            mqtt_protocol=s.mqtt_protocol,
        )
        self.outbox = DeliveryOutbox(
            self.pool,
            s.database_url,
            channels,
            notification_config.routes,
            NotifyMetrics(self.metrics_registry),
            self.station_names,
            owner=self.owner,
            lease_s=s.alerts_lease_s,
        )
        await self.outbox.start()
        self._tasks.append(asyncio.create_task(self._follow(), name="quantrac-alerts"))

    async def stop(self) -> None:
        self._stop.set()
        await cancel_and_wait(self._tasks)
        if self._wakeup is not None:
            await self._wakeup.stop()
        if self.outbox is not None:
            await self.outbox.close()
        if self.pool is not None:
            with contextlib.suppress(psycopg.Error, OSError, PoolTimeout):
                async with self.pool.connection() as conn:
                    await stream.release(conn, parts.CONSUMER, self.owner)
            await self.pool.close()

    def accept(self, batch: CommittedBatch) -> None:
        """Subscriber of an in-process pipeline: the batch is judged without reading it back."""
        if len(self._inbox) < _INBOX_LIMIT:
            self._inbox[batch.id] = batch
        if self._waiter is not None:
            self._waiter.set()

    # --- partitions and cursors ----------------------------------------------------------------

    async def _register_cursors(self) -> set[str]:
        """Create this partitioning's cursors; returns those created now (no history)."""
        assert self.pool is not None
        names = parts.cursor_names(self.partitions)
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT name, position FROM stream_cursors WHERE name LIKE %s AND stream = %s",
                [f"{parts.CONSUMER}:%", stream.CHANNEL],
            )
            existing: dict[str, int] = dict(await cur.fetchall())
            other = {n: p for n, p in existing.items() if n not in names}
            # Another partition count before: start where the slowest old cursor was.
            start = min(other.values()) if other else await stream.head(conn)
            created = await stream.register(conn, names, start)
            if other:
                await conn.execute("DELETE FROM stream_cursors WHERE name = ANY(%s)", [list(other)])
        return set(created) if not other else set()

    async def _renew_leases(self) -> None:
        assert self.pool is not None
        async with self.pool.connection() as conn:
            held = await stream.lease(
                conn,
                parts.CONSUMER,
                parts.cursor_names(self.partitions),
                self.owner,
                self.settings.alerts_lease_s,
            )
            behind = await stream.lag(conn)
        self.lag = stream.worst_lag(behind, held)
        self.metrics.lag_batches.set(self.lag[0])
        self.metrics.lag_seconds.set(self.lag[1])
        lost = [n for n in self.positions if n not in held]
        gained = {n: p for n, p in held.items() if n not in self.positions}
        if lost:
            async with self._engine_lock:
                for name in lost:
                    del self.positions[name]
                assert self.engine is not None
                self.engine.set_registry(self._owned_registry())
        if gained:
            await self._adopt(gained)
        self.metrics.partitions.set(len(self.positions))
        if lost or gained:
            log.info(
                "alert partitions leased",
                extra={
                    "event": "alerts_partitions",
                    "held": sorted(self.positions),
                    "gained": sorted(gained),
                    "lost": sorted(lost),
                },
            )

    async def _adopt(self, gained: dict[str, int]) -> None:
        """Take over partitions: windows up to each cursor, open alerts as stored."""
        assert self.engine and self.pool and self.config and self.registry
        now = self.clock()
        async with self._engine_lock:
            self.positions.update(gained)
            engine = self.engine
            engine.set_registry(self._owned_registry())
            stations = parts.stations_of(gained, self.registry.stations, self.partitions)
            since = now - timedelta(hours=self.config.engine.rebuild_hours)
            async with self.pool.connection() as conn:
                after = await self._keys_after_cursors(conn, gained)
                store = self._store(conn)
                open_before = [a for a in await store.open_alerts() if a.station_id in stations]
                engine.active = {k for k in engine.active if k[0] not in stations}
                rebuilt, episodes = 0, []
                async with conn.transaction():
                    cursor = await writer.recent_readings(conn, since, sorted(stations))
                    async for row in cursor:
                        key = (row["station_id"], row["param"], row["measured_at"])
                        if key in after:
                            continue  # after the cursor: judged when its batch is replayed
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
                fresh = [n for n in gained if n in self._fresh]
                stale: list[Transition] = []
                if fresh:
                    # No cursor before now: the old way, judging the rebuilt windows by the clock.
                    for output in engine.tick(now):
                        if isinstance(output, EpisodeChange):
                            episodes.append(output)
                    active = set(engine.active)
                    stale = [
                        Transition(
                            Change.CLEAR,
                            a.kind,
                            a.station_id,
                            a.param,
                            now,
                            None,
                            {"reason": "rebuilt"},
                        )
                        for a in open_before
                        if (a.station_id, a.param, a.kind) not in active
                    ]
                    self._fresh -= set(fresh)
                for change in episodes:
                    await store.apply_episodes(list(change.upserts), list(change.deletes))
                events = await store.apply(stale, self.config.engine.severity, now)
                await conn.commit()
                stale_keys = {(t.station_id, t.param, t.kind) for t in stale}
                # What the database holds open is the truth at the cursor.
                engine.active = {k for k in engine.active if k[0] not in stations} | {
                    (a.station_id, a.param, a.kind)
                    for a in open_before
                    if (a.station_id, a.param, a.kind) not in stale_keys
                }
        self._notify_metrics(events)
        log.info(
            "alert engine rebuilt",
            extra={
                "event": "alerts_rebuilt",
                "stations": len(stations),
                "readings": rebuilt,
                "after_cursor": len(after),
                "open_alerts": len(open_before) - len(stale),
                "auto_resolved": len(events),
            },
        )

    async def _keys_after_cursors(
        self, conn: psycopg.AsyncConnection, cursors: dict[str, int]
    ) -> set[tuple[str, str, datetime]]:
        """Readings of these partitions in batches after their cursors (replayed later)."""
        keys: set[tuple[str, str, datetime]] = set()
        position = min(cursors.values())
        while True:
            rows = await stream.read_after(conn, position, limit=50)
            if not rows:
                return keys
            for batch_id, payload in rows:
                assert payload is not None
                for item in stream.decode(batch_id, payload).items:
                    name = parts.cursor_name(
                        parts.partition_of(item.station_id, self.partitions), self.partitions
                    )
                    if name in cursors and batch_id > cursors[name]:
                        keys.update(r.key for r in item.readings)
            position = rows[-1][0]

    # --- the committed stream ----------------------------------------------------------------

    async def _follow(self) -> None:
        """Judge committed batches as they come; tick and escalate when caught up; renew leases."""
        loop = asyncio.get_running_loop()
        s = self.settings
        last_lease = last_tick = last_escalation = loop.time()
        delay = _RETRY_S[0]
        assert self._waiter is not None
        while not self._stop.is_set():
            try:
                if loop.time() - last_lease >= s.alerts_lease_s / 3:
                    last_lease = loop.time()
                    await self._renew_leases()
                more = await self.drain_once()
                if more:
                    continue
                if loop.time() - last_tick >= s.alerts_tick_s:
                    last_tick = loop.time()
                    await self.tick()
                if loop.time() - last_escalation >= _ESCALATION_CHECK_S:
                    last_escalation = loop.time()
                    await self.escalate()
                delay = _RETRY_S[0]
            except stream.LeaseLost as exc:
                log.warning("alert partition lost: %s", exc, extra={"event": "alerts_lease_lost"})
                await self._reset()
                continue
            except (psycopg.Error, OSError, PoolTimeout) as exc:
                log.warning(
                    "alert engine waits for the database (%.1f s): %s",
                    delay,
                    exc,
                    extra={"event": "alerts_database_retry"},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_S[1])
                continue
            except Exception:
                # A bug must not stop the engine for good: start again from the cursors.
                self.metrics.errors.inc()
                log.exception("alert evaluation failed", extra={"event": "alerts_error"})
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_S[1])
                await self._reset()
                continue
            await stream.wait(self._waiter, min(s.alerts_tick_s, s.alerts_lease_s / 3))

    async def _reset(self) -> None:
        """Forget everything held in memory and take the leases again from the database."""
        async with self._engine_lock:
            self.positions = {}
            self._unsaved = []
            self._unsaved_moves = {}
            self._inbox = {}
            self.engine = self.build_engine(self.clock())
        with contextlib.suppress(psycopg.Error, OSError, PoolTimeout):
            await self._renew_leases()

    async def drain_once(self) -> bool:
        """Judge the next committed batches and commit what they caused with the cursors.
        Returns True if there may be more."""
        assert self.pool is not None and self.engine is not None
        if not self.positions:
            return False
        position = min(self.positions.values())
        for stale in [i for i in self._inbox if i <= position]:
            del self._inbox[stale]
        async with self.pool.connection() as conn:
            rows = await stream.read_after(
                conn, position, limit=_BATCHES_PER_COMMIT, skip=list(self._inbox)
            )
        if not rows:
            self.caught_up = True
            self.lag = (0, 0.0)
            self.metrics.lag_batches.set(0)
            self.metrics.lag_seconds.set(0)
            return False
        self.caught_up = False
        async with self._engine_lock:
            outputs: list[Output] = []
            readings = 0
            oldest: datetime | None = None
            for batch_id, payload in rows:
                batch = (
                    self._inbox.pop(batch_id)
                    if payload is None
                    else stream.decode(batch_id, payload)
                )
                for item in batch.items:
                    name = self._cursor_of.get(item.station_id)
                    if name is None:
                        name = self._cursor_of[item.station_id] = parts.cursor_name(
                            parts.partition_of(item.station_id, self.partitions), self.partitions
                        )
                    if self.positions.get(name, batch_id) >= batch_id:
                        continue  # not ours, or judged before this partition came here
                    judged = self.engine.observe_many(item.readings, item.received_at)
                    # Backfill: what old readings raise is recorded, never paged.
                    outputs.extend(
                        mark_historical_outputs(
                            judged,
                            item.received_at,
                            self.historical_after,
                            item.source == HISTORICAL_SOURCE,
                        )
                    )
                    readings += len(item.readings)
                    if oldest is None or item.received_at < oldest:
                        oldest = item.received_at
            last = rows[-1][0]
            moves = {name: max(p, last) for name, p in self.positions.items()}
            self.positions.update(moves)
            self.metrics.readings.inc(readings)
            await self._commit(outputs, moves)
        if oldest is not None:
            self.metrics.evaluation_seconds.observe(
                max(0.0, (self.clock() - oldest).total_seconds())
            )
        return len(rows) == _BATCHES_PER_COMMIT

    def health(self) -> dict[str, object]:
        """For /healthz: degraded while the engine is further behind storage than allowed."""
        batches, seconds = self.lag
        lagging = seconds > self.settings.alerts_max_lag_s
        return {
            "alerts_partitions": len(self.positions),
            "alerts_lag_batches": batches,
            "alerts_lag_seconds": round(seconds, 1),
            "alerts_lagging": lagging,
        }

    async def process(
        self, station_id: str, readings: list[Reading], received_at: datetime
    ) -> list[AlertEvent]:
        """Judge readings handed over directly (tests, tools) and commit what they caused."""
        assert self.engine is not None
        async with self._engine_lock:
            outputs = mark_historical_outputs(
                self.engine.observe_many(readings, received_at),
                received_at,
                self.historical_after,
            )
            self.metrics.readings.inc(len(readings))
            return await self._commit(outputs, {})

    def _store(self, conn: psycopg.AsyncConnection) -> AlertStore:
        return AlertStore(conn, self.station_names())

    async def _commit(self, outputs: list[Output], moves: dict[str, int]) -> list[AlertEvent]:
        """Store what the engine decided and move the cursors, in one transaction; keep both
        for a retry on failure.

        The engine has already moved on (a batch it saw changes no window again), so what a
        failed commit held is retried with the next commit rather than recomputed. A crash
        loses it from memory only: the cursors did not move, so it is judged again.
        """
        if self._unsaved or self._unsaved_moves:
            outputs = [*self._unsaved, *outputs]
            moves = {**self._unsaved_moves, **moves}
        try:
            events = await self._store_outputs(outputs, moves)
        except stream.LeaseLost:
            raise
        except Exception:
            if len(outputs) <= _MAX_UNSAVED:
                self._unsaved, self._unsaved_moves = outputs, moves
            else:
                log.error(
                    "alert outputs dropped after repeated database failures; the engine "
                    "starts again from its cursors",
                    extra={"event": "alerts_unsaved_dropped", "outputs": len(outputs)},
                )
                self._unsaved, self._unsaved_moves = [], {}
            raise
        self._unsaved, self._unsaved_moves = [], {}
        return events

    async def _store_outputs(
        self, outputs: list[Output], moves: dict[str, int]
    ) -> list[AlertEvent]:
        assert self.pool is not None and self.config is not None
        transitions = [o for o in outputs if isinstance(o, Transition)]
        episodes = [o for o in outputs if isinstance(o, EpisodeChange)]
        windows = [o for o in outputs if isinstance(o, WindowEvaluated)]
        aqi_rows = (
            self.aqi.update(windows, self.engine) if self.aqi and self.engine and windows else []
        )
        if not transitions and not episodes and not aqi_rows and not moves:
            return []
        async with self.pool.connection() as conn, conn.transaction():
            store = self._store(conn)
            # Planned work: fault, calibration and data-loss conditions in a window are dropped, and
            # exceedances and warnings in the calibration hold-off.
            transitions, _ = await without_planned(conn, transitions, self.holdoff)
            events = await store.apply(transitions, self.config.engine.severity, self.clock())
            for change in episodes:
                await store.apply_episodes(list(change.upserts), list(change.deletes))
            await store.save_aqi(aqi_rows)
            await stream.advance(conn, moves, self.owner)
        self._log_events(events)
        return events

    def _notify_metrics(self, events: Iterable[AlertEvent]) -> None:
        for event in events:
            self.metrics.events.labels(event.kind.value, event.event.value).inc()

    def _log_events(self, events: list[AlertEvent]) -> None:
        """Count and log; delivery follows the committed rows (``DeliveryOutbox``)."""
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

    # --- people's actions ----------------------------------------------------------------------

    async def act(
        self, alert_id: int, action: EventType, actor: str, note: str | None
    ) -> AlertEvent:
        assert self.pool is not None
        async with self.pool.connection() as conn:
            event = await self._store(conn).act(alert_id, action, actor, note, self.clock())
        self._log_events([event])
        return event

    # --- clock ---------------------------------------------------------------------------------

    async def tick(self) -> list[AlertEvent]:
        assert self.engine is not None
        async with self._engine_lock:
            now = self.clock()
            events = await self._commit(self.engine.tick(now), {})
            self.engine.prune(now)
        return events

    async def escalate(self) -> list[AlertEvent]:
        """Send open alerts nobody acknowledged in time to their escalation channels (once).

        Each worker escalates the alerts of its own stations; the ``escalated`` event names the
        channels, and the outbox delivers it there."""
        assert self.pool is not None and self.engine is not None
        if not self.escalation_rules:
            return []
        now = self.clock()
        mine = set(self.engine.stations)
        sent: list[AlertEvent] = []
        async with self.pool.connection() as conn:
            store = self._store(conn)
            open_alerts = {
                a.id: a
                for a in await store.open_alerts()
                if not a.acknowledged and not a.historical and a.station_id in mine
            }
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
                sent.append(await store.record_escalation(alert, due.details(), now))
        self._log_events(sent)
        return sent
