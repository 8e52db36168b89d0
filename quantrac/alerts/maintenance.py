"""Maintenance windows and the station log: which alerts a window suppresses, which readings it
flags, the calibration hold-off, and historical (backfilled) readings. Pure: time is passed in.

A window is planned work on a station (all its parameters, or some): maintenance, repair,
replacement or calibration, from ``start`` to ``end``, with a reason and who planned it. During
a window:

- device-fault, calibration and data-loss alerts of the covered parameters (a station-wide
  window also covers station-wide data loss) are **suppressed**: not opened, not sent; the
  readings are kept and **flagged** with the window, never hidden;
- exceedances are still raised: planned work does not excuse a discharge above the limit.

After a calibration window (or a run of status-01 readings) an optional **hold-off** of
``holdoff_minutes`` (a project setting, not law) keeps readings from counting for compliance
while the analyser settles; they are flagged ``holdoff``.

Historical readings: a reading measured more than ``historical_after`` before it was received
(or ingested with ``--historical``) is stored and judged like any other, but the alerts it
raises are *historical*: recorded, never paged or escalated.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from quantrac.alerts.engine import Change, Output, Transition
from quantrac.alerts.model import STATION_WIDE, Kind
from quantrac.core.i18n import TranslatedError

LOG_KINDS = ("maintenance", "repair", "replacement", "calibration")
SUPPRESSED_KINDS = frozenset({Kind.DEVICE_FAULT, Kind.CALIBRATION, Kind.DATA_LOSS})
# What the calibration hold-off withholds: readings that do not count for compliance yet.
HELD_OFF_KINDS = frozenset({Kind.EXCEEDANCE, Kind.WARNING})


class WindowError(TranslatedError):
    """A window or log entry that cannot be recorded (said why; nothing changed)."""


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    id: int
    station_id: str
    kind: str  # one of LOG_KINDS
    start: datetime
    end: datetime
    reason: str
    actor: str
    params: frozenset[str] = frozenset()  # empty: the whole station

    def covers(self, station_id: str, param: str, at: datetime) -> bool:
        if station_id != self.station_id or not self.start <= at < self.end:
            return False
        return not self.params or param in self.params

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "station": self.station_id,
            "kind": self.kind,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "params": sorted(self.params),
            "reason": self.reason,
            "by": self.actor,
        }


def check_window(
    station_id: str,
    kind: str,
    start: datetime,
    end: datetime,
    params: Collection[str],
    reason: str,
    stations: Mapping[str, Collection[str]],
) -> None:
    """``stations``: each known station's declared parameter codes."""
    if station_id not in stations:
        raise WindowError("error.window.station", station=repr(station_id))
    if kind not in LOG_KINDS:
        raise WindowError("error.window.kind", kinds=", ".join(LOG_KINDS))
    if start.tzinfo is None or end.tzinfo is None:
        raise WindowError("error.window.offset")
    if end <= start:
        raise WindowError("error.window.order")
    if end - start > timedelta(days=31):
        raise WindowError("error.window.too_long")
    unknown = sorted(set(params) - set(stations[station_id]))
    if unknown:
        raise WindowError("error.window.param", station=station_id, params=", ".join(unknown))
    if not reason.strip():
        raise WindowError("error.window.reason")


def suppressed(
    windows: Iterable[MaintenanceWindow], station_id: str, param: str, kind: Kind, at: datetime
) -> MaintenanceWindow | None:
    """The window that suppresses an alert of ``kind`` on (station, param) at ``at``, if any.
    A station-wide condition (param ``STATION_WIDE``) needs a station-wide window."""
    if kind not in SUPPRESSED_KINDS:
        return None
    for window in windows:
        if param == STATION_WIDE and window.params:
            continue
        if window.covers(station_id, param, at):
            return window
    return None


def in_holdoff(
    windows: Iterable[MaintenanceWindow],
    station_id: str,
    param: str,
    at: datetime,
    holdoff: timedelta,
    last_calibration_reading: datetime | None = None,
) -> bool:
    """Within ``holdoff`` after a calibration window, or after the last status-01 reading."""
    if holdoff <= timedelta(0):
        return False
    if last_calibration_reading is not None and (
        last_calibration_reading < at < last_calibration_reading + holdoff
    ):
        return True
    return any(
        w.kind == "calibration"
        and w.station_id == station_id
        and (not w.params or param in w.params)
        and w.end <= at < w.end + holdoff
        for w in windows
    )


def reading_flag(
    windows: Iterable[MaintenanceWindow],
    station_id: str,
    param: str,
    at: datetime,
    holdoff: timedelta = timedelta(0),
) -> str | None:
    """How a reading is flagged: the covering window's kind, ``holdoff``, or None."""
    chosen = list(windows)
    for window in chosen:
        if window.covers(station_id, param, at):
            return window.kind
    if in_holdoff(chosen, station_id, param, at, holdoff):
        return "holdoff"
    return None


def is_historical(
    measured_at: datetime, received_at: datetime, after: timedelta | None, marked: bool = False
) -> bool:
    """A backfilled reading: marked so by its source, or older than ``after`` on arrival."""
    return marked or (after is not None and received_at - measured_at > after)


def apply_windows(
    transitions: Sequence[Transition], windows: Sequence[MaintenanceWindow]
) -> tuple[list[Transition], list[tuple[Transition, MaintenanceWindow]]]:
    """Drop what a window suppresses: a raise, repeat or revision of a fault, calibration or
    data-loss condition whose data time it covers. A clear always passes, and a condition that
    still holds after the window opens its alert then (the next repeat opens it)."""
    kept: list[Transition] = []
    dropped: list[tuple[Transition, MaintenanceWindow]] = []
    for t in transitions:
        window = (
            None
            if t.change is Change.CLEAR
            else suppressed(windows, t.station_id, t.param, t.kind, t.at)
        )
        if window is None:
            kept.append(t)
        else:
            dropped.append((t, window))
    return kept, dropped


def apply_holdoff(
    transitions: Sequence[Transition], windows: Sequence[MaintenanceWindow], holdoff: timedelta
) -> tuple[list[Transition], list[Transition]]:
    """Drop an exceedance or warning (a raise, repeat or revision) whose data time lies in the
    hold-off after a calibration window of its parameter: those readings do not count for
    compliance yet. A clear always passes. ``holdoff`` zero: nothing is dropped."""
    if holdoff <= timedelta(0):
        return list(transitions), []
    kept: list[Transition] = []
    held: list[Transition] = []
    for t in transitions:
        if (
            t.change is not Change.CLEAR
            and t.kind in HELD_OFF_KINDS
            and in_holdoff(windows, t.station_id, t.param, t.at, holdoff)
        ):
            held.append(t)
        else:
            kept.append(t)
    return kept, held


def mark_historical(
    transitions: Sequence[Transition],
    received_at: datetime,
    after: timedelta | None,
    marked: bool = False,
) -> list[Transition]:
    """Transitions resting on backfilled data carry ``historical: true`` in their details: the
    alert is recorded, and notification and escalation leave it alone."""
    return [
        replace(t, details={**t.details, "historical": True})
        if t.change is not Change.CLEAR and is_historical(t.at, received_at, after, marked)
        else t
        for t in transitions
    ]


def mark_historical_outputs(
    outputs: Sequence[Output],
    received_at: datetime,
    after: timedelta | None,
    marked: bool = False,
) -> list[Output]:
    """``mark_historical`` over what the engine said about one committed item (its episodes and
    windows pass unchanged: backfill still produces episodes and report rows)."""
    return [
        mark_historical([o], received_at, after, marked)[0] if isinstance(o, Transition) else o
        for o in outputs
    ]
