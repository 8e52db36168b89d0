"""What the alert engine tells the rest of the world: alert kinds, severities and events."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Kind(enum.StrEnum):
    EXCEEDANCE = "exceedance"
    WARNING = "warning"
    DATA_LOSS = "data_loss"
    DEVICE_FAULT = "device_fault"
    CALIBRATION = "calibration"
    STUCK_VALUE = "stuck_value"
    OUT_OF_RANGE = "out_of_range"
    CLOCK_DRIFT = "clock_drift"


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    INFO = "info"


class State(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class EventType(enum.StrEnum):
    OPENED = "opened"
    UPDATED = "updated"  # the condition repeated: count, last value, maximum changed
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"  # by a person
    AUTO_RESOLVED = "auto_resolved"  # the condition cleared (after hysteresis)
    ESCALATED = "escalated"  # not acknowledged in time: sent to another channel
    NOTED = "noted"  # a person added a note
    ASSIGNED = "assigned"  # a person gave the alert to a user (details: assignee)
    REVISED = "revised"  # late readings changed the evidence of the window that raised it


# Station-wide conditions (a silent station) use this instead of a parameter code.
STATION_WIDE = ""


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One transition of one alert, as stored for audit and sent to notification channels."""

    event_id: int
    alert_id: int
    event: EventType
    kind: Kind
    severity: Severity
    station_id: str
    station_name: str
    param: str  # STATION_WIDE for station-wide conditions
    state: State
    at: datetime  # when the transition happened (server time, UTC)
    opened_at: datetime
    actor: str | None = None  # the user who acknowledged/resolved/assigned; None for the engine
    note: str | None = None
    # Kind-specific evidence: value, limit, multiple, averaging, window_start, window_end,
    # regulation, column, band, completeness, count, maximum ...
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return f"alerts/{self.station_id}/{self.kind.value}"

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "alert_id": self.alert_id,
            "event": self.event.value,
            "kind": self.kind.value,
            "severity": self.severity.value,
            "station": self.station_id,
            "station_name": self.station_name,
            "param": self.param or None,
            "state": self.state.value,
            "at": self.at.isoformat(),
            "opened_at": self.opened_at.isoformat(),
            "actor": self.actor,
            "note": self.note,
            "details": self.details,
        }
