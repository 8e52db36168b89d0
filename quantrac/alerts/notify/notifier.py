"""Routing and delivery metrics of alert notifications.

Delivery itself is the outbox's (``quantrac.alerts.notify.outbox``): it follows the
``alert_events`` table by cursor and sends each event to every channel whose route matches, at
least once, surviving a crash between commit and delivery. The in-memory queues that came before
it are gone; the ``queue_size`` setting they used is accepted with a deprecation warning.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from quantrac.alerts.model import AlertEvent, EventType, Kind, Severity


class Outcome(enum.StrEnum):
    SENT = "sent"
    FAILED = "failed"  # given up: not retryable, or attempts used up
    RETRIED = "retried"  # one failed attempt followed by another


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
            "Alert notifications by channel and outcome (sent, failed, retried)",
            ["channel", "outcome"],
            registry=self.registry,
        )

    def count(self, channel: str, outcome: Outcome, amount: int = 1) -> None:
        self.notifications.labels(channel, outcome.value).inc(amount)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample, e.g. value("quantrac_notifications_total", channel=…)."""
        return self.registry.get_sample_value(name, labels or None) or 0.0

    def outcome(self, channel: str, outcome: Outcome | str) -> float:
        return self.value("quantrac_notifications_total", channel=channel, outcome=str(outcome))
