"""Averaging windows on measured time: 1 h means, 8 h rolling means of hourly values, local days.

Only readings with status 00 (measuring) count. A window whose valid readings fall below the
completeness threshold has no mean: it is "insufficient data", which later code must treat as
neither a pass nor an exceedance. Pure: no clocks, no I/O.

Why a reading-level store (not running sums): a redelivered reading (same measured time) must not
count twice, and a late reading must be able to change a window that was already evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from quantrac.core.contract import Reading, Status

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
DEFAULT_MIN_COMPLETENESS = 0.75

ONE_HOUR = "1h"
EIGHT_HOURS = "8h"
DAILY = "24h"


def hour_floor(moment: datetime) -> datetime:
    if moment.tzinfo is not UTC:  # skipped for the usual UTC time: twice as fast, same result
        moment = moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def hour_place(moment: datetime) -> tuple[datetime, float]:
    """The hour a moment falls in, and its seconds into that hour."""
    hour = hour_floor(moment)
    return hour, (moment - hour).total_seconds()


def expected_per_hour(cadence_s: int) -> float:
    """Readings an hour should hold at this cadence (a fraction when the cadence exceeds 1 h)."""
    return 3600 / cadence_s


def local_day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """A local calendar day as a UTC interval [start, end)."""
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    return start, datetime.combine(day + DAY, time(0), tz).astimezone(UTC)


def local_date(moment: datetime, tz: tzinfo) -> date:
    return moment.astimezone(tz).date()


@dataclass(frozen=True, slots=True)
class Window:
    averaging: str  # "1h" | "8h" | "24h"
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    mean: float | None  # None: insufficient data
    count: int  # cadence slots with a valid reading (1 h, 24 h), valid hourly means (8 h)
    expected: float
    maximum: float | None  # the highest valid reading (1 h, 24 h) or hourly mean (8 h)

    @property
    def completeness(self) -> float:
        return min(1.0, self.count / self.expected) if self.expected else 0.0

    @property
    def sufficient(self) -> bool:
        return self.mean is not None


def _meets(count: float, expected: float, min_completeness: float) -> bool:
    # A hair of tolerance so 9 of 12 readings is exactly 75 %, not 74.99999 %.
    return count > 0 and count + 1e-9 >= min_completeness * expected


class SeriesWindows:
    """The valid readings of one (station, parameter), by hour, for a bounded horizon."""

    __slots__ = ("_windows", "cadence_s", "full", "hours", "min_completeness", "slots", "tz")

    def __init__(self, cadence_s: int, tz: tzinfo, min_completeness: float):
        self.cadence_s = cadence_s
        # Cadence slots that make an hour full (evaluated at once, without waiting).
        self.full = math.floor(expected_per_hour(cadence_s))
        self.tz = tz
        self.min_completeness = min_completeness
        self.hours: dict[datetime, dict[datetime, float]] = {}
        # Per hour, the cadence slots (from the hour's start) its readings fill, kept as they
        # are added: asking whether an hour is full costs a len(), not a pass over its readings.
        self.slots: dict[datetime, set[int]] = {}
        # 1 h windows computed since their hour last changed: the 8 h means, the daily window and
        # live AQI's NowCast ask for the same past hours again and again.
        self._windows: dict[datetime, Window] = {}

    def add(
        self, measured_at: datetime, value: float, place: tuple[datetime, float] | None = None
    ) -> datetime | None:
        """Record a valid reading; returns the start of its hour, or None when that measured
        time is already there (first wins). ``place``: its hour and its seconds into that hour
        (:func:`hour_place`), when the caller knows them (several parameters share a time)."""
        hour, offset = place if place is not None else hour_place(measured_at)
        bucket = self.hours.get(hour)
        if bucket is None:
            bucket = self.hours[hour] = {}
            slots = self.slots[hour] = set()
        elif measured_at in bucket:
            return None
        else:
            slots = self.slots[hour]
        bucket[measured_at] = value
        self._windows.pop(hour, None)
        slots.add(int(offset // self.cadence_s))
        return hour

    def count(self, hour_start: datetime) -> int:
        """Cadence slots of the hour that hold a valid reading (not readings: a station sending
        every minute at a registered 5 minutes fills at most the 12 slots it owes)."""
        return len(self.slots.get(hour_start, ()))

    def _slots(self, origin: datetime, values: Iterable[datetime]) -> int:
        step = self.cadence_s
        return len({int((at - origin).total_seconds() // step) for at in values})

    def is_full(self, hour_start: datetime) -> bool:
        return len(self.slots.get(hour_start, ())) >= self.full

    def hour(self, hour_start: datetime) -> Window:
        known = self._windows.get(hour_start)
        if known is not None:
            return known
        values = self.hours.get(hour_start)
        expected = expected_per_hour(self.cadence_s)
        if not values:
            return Window(ONE_HOUR, hour_start, hour_start + HOUR, None, 0, expected, None)
        count = len(self.slots[hour_start])
        ok = _meets(count, max(expected, 1.0), self.min_completeness)
        window = self._windows[hour_start] = Window(
            ONE_HOUR,
            hour_start,
            hour_start + HOUR,
            math.fsum(values.values()) / len(values) if ok else None,
            count,
            expected,
            max(values.values()),
        )
        return window

    def eight_hours(self, last_hour_start: datetime) -> Window:
        """The rolling 8 h mean ending with the hour that starts at ``last_hour_start``."""
        start = last_hour_start - 7 * HOUR
        means = [self.hour(start + i * HOUR).mean for i in range(8)]
        valid = [m for m in means if m is not None]
        ok = _meets(len(valid), 8, self.min_completeness)
        return Window(
            EIGHT_HOURS,
            start,
            last_hour_start + HOUR,
            math.fsum(valid) / len(valid) if ok else None,
            len(valid),
            8,
            max(valid) if valid else None,
        )

    def day(self, day: date) -> Window:
        start, end = local_day_bounds(day, self.tz)
        values: list[float] = []
        slots = 0
        hour = start
        while hour < end:
            bucket = self.hours.get(hour)
            if bucket:
                values.extend(bucket.values())
                slots += self._slots(start, bucket)
            hour += HOUR
        expected = (end - start).total_seconds() / self.cadence_s
        ok = _meets(slots, expected, self.min_completeness)
        return Window(
            DAILY,
            start,
            end,
            math.fsum(values) / len(values) if ok else None,
            slots,
            expected,
            max(values) if values else None,
        )

    def window(self, averaging: str, start: datetime) -> Window:
        """The window of this averaging period that starts at ``start``."""
        if averaging == ONE_HOUR:
            return self.hour(start)
        if averaging == EIGHT_HOURS:
            return self.eight_hours(start + 7 * HOUR)
        if averaging == DAILY:
            return self.day(local_date(start, self.tz))
        raise ValueError(f"unknown averaging period {averaging!r}")

    def prune(self, keep_from: datetime) -> None:
        for hour_start in [h for h in self.hours if h < keep_from]:
            del self.hours[hour_start]
            del self.slots[hour_start]
            self._windows.pop(hour_start, None)


def windows_containing(averaging: str, hour_start: datetime, tz: tzinfo) -> list[datetime]:
    """Start times of the windows of one averaging period that contain a given hour."""
    if averaging == ONE_HOUR:
        return [hour_start]
    if averaging == EIGHT_HOURS:
        return [hour_start - i * HOUR for i in range(8)]
    if averaging == DAILY:
        return [local_day_bounds(local_date(hour_start, tz), tz)[0]]
    raise ValueError(f"unknown averaging period {averaging!r}")


def hourly_means(
    readings: Iterable[Reading],
    cadence_of: Callable[[str], int],
    min_completeness: float = DEFAULT_MIN_COMPLETENESS,
    tz: tzinfo = UTC,
) -> dict[tuple[str, str], dict[datetime, Window]]:
    """1 h windows of every (station, parameter) that has readings, keyed by hour start (UTC).

    For batch work (the ``aqi`` and ``replay`` commands); hours without any reading are absent.
    """
    series: dict[tuple[str, str], SeriesWindows] = {}
    for reading in readings:
        if reading.status is not Status.MEASURING:
            continue
        if reading.value is None:
            continue  # a status record without value: nothing to average
        key = (reading.station_id, reading.param)
        windows = series.get(key)
        if windows is None:
            windows = series[key] = SeriesWindows(
                cadence_of(reading.station_id), tz, min_completeness
            )
        windows.add(reading.measured_at, reading.value)
    return {
        key: {hour: windows.hour(hour) for hour in sorted(windows.hours)}
        for key, windows in series.items()
    }
