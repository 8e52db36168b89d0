"""The notifier: routes alert events to channels without ever making the caller wait.

Each channel has its own bounded queue and worker task. ``publish`` only appends to queues, so
a slow or failing channel delays nothing but its own later events; when its queue is full the
oldest waiting event is dropped (and counted), because the newest state of an alert matters
more than a stale one.

``publish`` must be called from the event loop's thread (it is not thread-safe).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from quantrac.alerts.model import AlertEvent, EventType, Kind, Severity
from quantrac.alerts.notify.base import Channel, DeliveryError, ReportsRetries, RetryHook

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1000


class Outcome(enum.StrEnum):
    SENT = "sent"
    FAILED = "failed"  # given up: not retryable, or attempts used up
    RETRIED = "retried"  # one failed attempt followed by another
    DROPPED = "dropped"  # never attempted: queue overflow, or still queued at shutdown


@dataclass(frozen=True, slots=True)
class Route:
    """Events matching every non-empty filter go to ``channels``."""

    channels: tuple[str, ...]
    kinds: frozenset[Kind] = frozenset()
    severities: frozenset[Severity] = frozenset()
    events: frozenset[EventType] = frozenset()
    stations: frozenset[str] = frozenset()

    def matches(self, event: AlertEvent) -> bool:
        return (
            (not self.kinds or event.kind in self.kinds)
            and (not self.severities or event.severity in self.severities)
            and (not self.events or event.event in self.events)
            and (not self.stations or event.station_id in self.stations)
        )


def route(event: AlertEvent, routes: Iterable[Route]) -> list[str]:
    """Channel names for ``event``, each once, in the order the routes name them."""
    names: dict[str, None] = {}
    for candidate in routes:
        if candidate.matches(event):
            names.update(dict.fromkeys(candidate.channels))
    return list(names)


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.notifications = Counter(
            "quantrac_notifications_total",
            "Alert notifications by channel and outcome (sent, failed, retried, dropped)",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.queued = Gauge(
            "quantrac_notification_queue_length",
            "Alert events waiting to be sent, by channel",
            ["channel"],
            registry=self.registry,
        )

    def count(self, channel: str, outcome: Outcome, amount: int = 1) -> None:
        self.notifications.labels(channel, outcome.value).inc(amount)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample, e.g. value("quantrac_notifications_total", channel=…)."""
        return self.registry.get_sample_value(name, labels or None) or 0.0

    def outcome(self, channel: str, outcome: Outcome | str) -> float:
        return self.value("quantrac_notifications_total", channel=channel, outcome=str(outcome))


def _log_extra(event: AlertEvent, channel: str, name: str) -> dict[str, object]:
    return {
        "event": name,
        "channel": channel,
        "alert_id": event.alert_id,
        "event_id": event.event_id,
        "alert_event": event.event.value,
        "station": event.station_id,
        "kind": event.kind.value,
    }


class _Worker:
    """One channel's queue and the task that drains it."""

    def __init__(self, channel: Channel, queue_size: int, metrics: NotifyMetrics) -> None:
        self.channel = channel
        self.name = channel.name
        self.queue: collections.deque[AlertEvent] = collections.deque()
        self.queue_size = queue_size
        self.metrics = metrics
        self.wakeup = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.task: asyncio.Task[None] | None = None
        self._queued = metrics.queued.labels(self.name)
        if isinstance(channel, ReportsRetries):
            channel.on_retry = self._retry_hook()

    def _retry_hook(self) -> RetryHook:
        def on_retry(attempt: int, error: DeliveryError, delay_s: float) -> None:
            self.metrics.count(self.name, Outcome.RETRIED)
            log.info(
                "notification attempt %d on %s failed (%s); retrying in %.1f s",
                attempt,
                self.name,
                error,
                delay_s,
                extra={"event": "notification_retry", "channel": self.name, "attempt": attempt},
            )

        return on_retry

    def put(self, event: AlertEvent) -> None:
        if len(self.queue) >= self.queue_size:
            dropped = self.queue.popleft()
            self.metrics.count(self.name, Outcome.DROPPED)
            log.warning(
                "notification queue of %s full; dropped the oldest event",
                self.name,
                extra=_log_extra(dropped, self.name, "notification_dropped"),
            )
        self.queue.append(event)
        self._queued.set(len(self.queue))
        self.idle.clear()
        self.wakeup.set()

    async def run(self) -> None:
        while True:
            if not self.queue:
                self.idle.set()
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            event = self.queue.popleft()
            self._queued.set(len(self.queue))
            await self._deliver(event)

    async def _deliver(self, event: AlertEvent) -> None:
        try:
            await self.channel.send(event)
        except asyncio.CancelledError:
            # Shutdown interrupted it: neither sent nor a channel failure.
            self.metrics.count(self.name, Outcome.DROPPED)
            raise
        except Exception as exc:
            self.metrics.count(self.name, Outcome.FAILED)
            log.error(
                "notification to %s failed: %s",
                self.name,
                exc,
                extra=_log_extra(event, self.name, "notification_failed"),
                exc_info=not isinstance(exc, DeliveryError),
            )
        else:
            self.metrics.count(self.name, Outcome.SENT)


class Notifier:
    def __init__(
        self,
        channels: Sequence[Channel],
        routes: Sequence[Route] = (),
        registry: CollectorRegistry | None = None,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        names = [channel.name for channel in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique: {names}")
        unknown = {name for r in routes for name in r.channels} - set(names)
        if unknown:
            raise ValueError(f"routes name unknown channels: {sorted(unknown)}")
        self.routes = tuple(routes)
        self.metrics = NotifyMetrics(registry)
        self._workers = {c.name: _Worker(c, queue_size, self.metrics) for c in channels}
        self._started = False
        self._closing = False

    @property
    def channel_names(self) -> list[str]:
        return list(self._workers)

    def channel(self, name: str) -> Channel:
        return self._workers[name].channel

    async def start(self) -> None:
        """Open the channels and start one worker per channel. A channel that fails to start is
        logged; its events fail (and are counted) like any other delivery failure."""
        if self._started:
            return
        self._started = True
        for worker in self._workers.values():
            try:
                await worker.channel.start()
            except Exception as exc:
                log.error(
                    "notification channel %s did not start: %s",
                    worker.name,
                    exc,
                    extra={"event": "notification_channel_start_failed", "channel": worker.name},
                )
            worker.task = asyncio.create_task(worker.run(), name=f"notify-{worker.name}")

    def publish(self, event: AlertEvent, channels: Iterable[str] | None = None) -> list[str]:
        """Queue ``event`` for its routed channels, or exactly for ``channels`` when given
        (escalations). Never blocks and never raises for a channel's sake; returns the names of
        the channels it was queued for."""
        if self._closing:
            log.warning(
                "notifier closing; event not sent",
                extra=_log_extra(event, "*", "notification_after_close"),
            )
            return []
        names = route(event, self.routes) if channels is None else list(dict.fromkeys(channels))
        queued = []
        for name in names:
            worker = self._workers.get(name)
            if worker is None:
                log.error(
                    "no notification channel named %r",
                    name,
                    extra=_log_extra(event, name, "notification_unknown_channel"),
                )
                continue
            worker.put(event)
            queued.append(name)
        return queued

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queue is empty and no send is in progress. True if that happened."""
        waits = [w.idle.wait() for w in self._workers.values() if w.task is not None]
        if not waits:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 10.0) -> bool:
        """Send what is queued for up to ``timeout`` s, then stop: what is left is dropped and
        counted. Closes the channels. True if everything queued was attempted."""
        self._closing = True
        complete = (
            await self.drain(timeout)
            if self._started
            else not any(w.queue for w in self._workers.values())
        )
        for worker in self._workers.values():
            if worker.task is not None:
                worker.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker.task
                worker.task = None
            if worker.queue:
                self.metrics.count(worker.name, Outcome.DROPPED, len(worker.queue))
                worker.queue.clear()
                worker._queued.set(0)
            try:
                await worker.channel.close()
            except Exception as exc:
                log.warning(
                    "notification channel %s did not close cleanly: %s",
                    worker.name,
                    exc,
                    extra={"event": "notification_channel_close_failed", "channel": worker.name},
                )
        return complete
