"""The notification outbox: channels follow the ``alert_events`` table, each by its own cursor.

Nothing waits in memory. An event is committed (by the engine, an escalation, or a person's
acknowledge, resolve or note through the API) and then delivered to every channel its routes
name; a channel's cursor moves past an event only once the event was delivered or refused for
good (a 4xx answer). A crash between the commit and the delivery, a channel down for an hour, a
restart: the channel resumes at its cursor, so every event arrives at least once (a receiver
deduplicates on ``event_id``, sent as ``X-Quantrac-Delivery`` by webhooks).

With several alert workers the channel cursors are leased like the engine's partitions, so one
worker delivers each channel at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from quantrac.alerts import store as alert_store
from quantrac.alerts.model import AlertEvent, EventType
from quantrac.alerts.notify.base import Channel, DeliveryError, ReportsRetries, RetryHook
from quantrac.alerts.notify.notifier import NotifyMetrics, Outcome, Route, route
from quantrac.ingest import stream

log = logging.getLogger(__name__)

CONSUMER = "notify"
_OUTAGE_RETRY_S = (1.0, 60.0)  # first and longest wait while a channel's receiver is down


def cursor_name(channel: str) -> str:
    return f"{CONSUMER}:{channel}"


def targets(event: AlertEvent, routes: Sequence[Route]) -> list[str]:
    """Channels for ``event``: an escalation goes exactly where its rule says, the rest by route."""
    if event.details.get("historical"):
        return []  # backfill: recorded and shown, never sent (docs/maintenance.md)
    if event.event is EventType.ESCALATED:
        return [str(c) for c in event.details.get("channels", ())]
    return route(event, routes)


def _permanent(exc: DeliveryError) -> bool:
    """Refused (e.g. HTTP 400) rather than unreachable: sending again cannot help."""
    cause = exc.__cause__
    if isinstance(cause, DeliveryError):
        return not cause.retryable
    return not exc.retryable


class DeliveryOutbox:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        database_url: str,
        channels: Sequence[Channel],
        routes: Sequence[Route],
        metrics: NotifyMetrics,
        station_names: Callable[[], dict[str, str]],
        *,
        owner: str,
        lease_s: float,
        poll_s: float = 2.0,
    ):
        self.pool = pool
        self.channels = {c.name: c for c in channels}
        self.routes = tuple(routes)
        self.metrics = metrics
        self.station_names = station_names
        self.owner = owner
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.wakeup = stream.Wakeup(database_url, alert_store.EVENTS_CHANNEL)
        self.held: dict[str, int] = {}  # cursor name → position, for the channels leased here
        self._tasks: list[asyncio.Task[None]] = []
        for channel in channels:
            if isinstance(channel, ReportsRetries):
                channel.on_retry = self._retry_hook(channel.name)

    def _retry_hook(self, name: str) -> RetryHook:
        """Counts a channel's own quick retries inside one send, like the outbox's own."""

        def on_retry(attempt: int, error: DeliveryError, delay_s: float) -> None:
            self.metrics.count(name, Outcome.RETRIED)
            log.info(
                "notification attempt %d on %s failed (%s); retrying in %.1f s",
                attempt,
                name,
                error,
                delay_s,
                extra={"event": "notification_retry", "channel": name, "attempt": attempt},
            )

        return on_retry

    async def start(self) -> None:
        if not self.channels:
            return
        names = [cursor_name(c) for c in self.channels]
        async with self.pool.connection() as conn:
            # A new channel starts with the events to come, not with the whole audit trail.
            head = await alert_store.last_event_id(conn)
            await stream.register(conn, names, head, stream=alert_store.EVENTS_CHANNEL)
            await conn.commit()
        for channel in self.channels.values():
            try:
                await channel.start()
            except Exception as exc:
                log.error(
                    "notification channel %s did not start: %s",
                    channel.name,
                    exc,
                    extra={"event": "notification_channel_start_failed", "channel": channel.name},
                )
        await self._renew()
        self.wakeup.start()
        self._tasks.append(asyncio.create_task(self._lease_loop(), name="notify-lease"))
        for name in self.channels:
            self._tasks.append(asyncio.create_task(self._follow(name), name=f"notify-{name}"))

    async def close(self) -> None:
        for task in self._tasks:
            await stream.stop_task(task)
        self._tasks = []
        await self.wakeup.stop()
        if self.held:
            with contextlib.suppress(psycopg.Error, OSError, PoolTimeout):
                async with self.pool.connection() as conn:
                    await stream.release(conn, CONSUMER, self.owner)
        for channel in self.channels.values():
            try:
                await channel.close()
            except Exception as exc:
                log.warning("notification channel %s did not close cleanly: %s", channel.name, exc)

    async def _renew(self) -> None:
        names = [cursor_name(c) for c in self.channels]
        async with self.pool.connection() as conn:
            held = await stream.lease(conn, CONSUMER, names, self.owner, self.lease_s)
        self.held = {n: max(p, self.held.get(n, p)) for n, p in held.items()}

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self._renew()
            except (psycopg.Error, OSError, PoolTimeout) as exc:
                log.warning("notification leases not renewed: %s", exc)

    async def _follow(self, channel_name: str) -> None:
        channel = self.channels[channel_name]
        name = cursor_name(channel_name)
        waiter = self.wakeup.waiter()
        while True:
            try:
                if name not in self.held:
                    await stream.wait(waiter, self.poll_s)
                    continue
                if not await self._deliver_pending(channel, name):
                    await stream.wait(waiter, self.poll_s)
            except asyncio.CancelledError:
                raise
            except stream.LeaseLost:
                self.held.pop(name, None)
            except (psycopg.Error, OSError, PoolTimeout) as exc:
                log.warning("notification outbox of %s waits for the database: %s", name, exc)
                await asyncio.sleep(self.poll_s)

    async def _deliver_pending(self, channel: Channel, name: str) -> bool:
        """Deliver what follows the channel's cursor; False when there was nothing."""
        position = self.held[name]
        async with self.pool.connection() as conn:
            events = await alert_store.events_after(conn, position, self.station_names())
        if not events:
            return False
        for event in events:
            if channel.name in targets(event, self.routes):
                await self._deliver(channel, event)
                await self._move(name, event.event_id)
        await self._move(name, events[-1].event_id)
        return True

    async def _move(self, name: str, position: int) -> None:
        if self.held.get(name, -1) >= position:
            return
        async with self.pool.connection() as conn, conn.transaction():
            await stream.advance(conn, {name: position}, self.owner)
        self.held[name] = position

    async def _deliver(self, channel: Channel, event: AlertEvent) -> None:
        """Until delivered or refused for good; an unreachable receiver is waited for."""
        wait_s = _OUTAGE_RETRY_S[0]
        while True:
            try:
                await channel.send(event)
            except DeliveryError as exc:
                if _permanent(exc):
                    self._given_up(channel, event, exc, bug=False)
                    return
                self.metrics.count(channel.name, Outcome.RETRIED)
                log.warning(
                    "notification to %s not delivered, trying again in %.0f s: %s",
                    channel.name,
                    wait_s,
                    exc,
                    extra={"event": "notification_retry", "event_id": event.event_id},
                )
                await asyncio.sleep(wait_s)
                wait_s = min(wait_s * 2, _OUTAGE_RETRY_S[1])
                continue
            except Exception as exc:
                # A bug in a channel must not hold every later event of that channel back.
                self._given_up(channel, event, exc, bug=True)
                return
            self.metrics.count(channel.name, Outcome.SENT)
            return

    def _given_up(self, channel: Channel, event: AlertEvent, exc: Exception, *, bug: bool) -> None:
        self.metrics.count(channel.name, Outcome.FAILED)
        log.error(
            "notification to %s failed, not sent again: %s",
            channel.name,
            exc,
            extra={"event": "notification_failed", "event_id": event.event_id},
            exc_info=bug,
        )
