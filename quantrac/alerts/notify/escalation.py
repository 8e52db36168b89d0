"""Escalation: which open, unacknowledged alerts are due to go to more channels. Pure.

The alert service calls ``due_escalations`` periodically with snapshots of its open,
unacknowledged alerts. For each result it stores an ``escalated`` AlertEvent (with
``DueEscalation.details()`` among its details, so the rule is remembered as done) and calls
``notifier.publish(event, channels=due.channels)``. Each rule fires once per alert: a snapshot
lists the rule ids already done in ``escalations_done``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from quantrac.alerts.model import Kind, Severity


@dataclass(frozen=True, slots=True)
class EscalationRule:
    """Send to ``channels`` when an alert stays unacknowledged ``after_minutes`` after opening.

    Empty filters match everything. ``rule_id`` is what the alert service stores as done; the
    configuration parser derives a stable one from the rule unless it is given a ``name``.
    """

    rule_id: str
    after_minutes: float
    channels: tuple[str, ...]
    severities: frozenset[Severity] = frozenset()
    kinds: frozenset[Kind] = frozenset()
    stations: frozenset[str] = frozenset()

    @property
    def delay(self) -> timedelta:
        return timedelta(minutes=self.after_minutes)

    def applies_to(self, alert: OpenAlert) -> bool:
        return (
            (not self.severities or alert.severity in self.severities)
            and (not self.kinds or alert.kind in self.kinds)
            and (not self.stations or alert.station_id in self.stations)
        )


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """What the escalation logic needs to know about one open, unacknowledged alert."""

    alert_id: int
    kind: Kind
    severity: Severity
    station_id: str
    opened_at: datetime
    escalations_done: frozenset[str] = frozenset()  # rule ids


@dataclass(frozen=True, slots=True)
class DueEscalation:
    alert_id: int
    rule_id: str
    channels: tuple[str, ...]
    due_at: datetime  # opened_at + after_minutes; may be well past if the service was down

    def details(self) -> dict[str, Any]:
        """For the ``escalated`` event's details: names the rule so it fires only once."""
        return {
            "escalation": self.rule_id,
            "channels": list(self.channels),
            "due_at": self.due_at.isoformat(),
        }


def due_escalations(
    alerts: Iterable[OpenAlert], rules: Sequence[EscalationRule], now: datetime
) -> list[DueEscalation]:
    """Escalations due at ``now``, oldest due first; each rule at most once per alert."""
    due = [
        DueEscalation(alert.alert_id, rule.rule_id, rule.channels, alert.opened_at + rule.delay)
        for alert in alerts
        for rule in rules
        if rule.rule_id not in alert.escalations_done
        and rule.applies_to(alert)
        and alert.opened_at + rule.delay <= now
    ]
    due.sort(key=lambda item: (item.due_at, item.alert_id, item.rule_id))
    return due


def next_escalation_at(
    alerts: Iterable[OpenAlert], rules: Sequence[EscalationRule]
) -> datetime | None:
    """When the next not-yet-done escalation falls due (possibly in the past), if any.

    Lets the caller sleep until then instead of polling on a short fixed period.
    """
    times = [
        alert.opened_at + rule.delay
        for alert in alerts
        for rule in rules
        if rule.rule_id not in alert.escalations_done and rule.applies_to(alert)
    ]
    return min(times, default=None)
