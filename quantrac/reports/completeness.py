"""Data completeness per station, parameter and Vietnamese calendar day.

**received** is the number of cadence slots holding a valid (status 00) reading, taken from
``readings_hourly`` (the hourly rollup holds only status-00 readings, so a year of 1-minute data
is 8,760 rows per parameter instead of 525,600). A series that sends more readings in an hour
than its registered cadence owes is a fast sender: its slots are counted from ``readings``, so
eighteen readings in three minutes are one 5-minute slot, never a complete hour. (A series that
never sends more than an hour owes keeps the rollup's count.) **expected** is
``seconds / cadence`` over the part of the day inside the period (and not in the future): 288 for
a whole day at 5 minutes, 1,440 at 1 minute.
**share** is received / expected, at most 1. Readings with status 01 (calibrating) and 02
(device fault) are counted apart: they arrived, but they are not valid data.

The period is widened to whole hours (the rollup's resolution); days are Vietnamese calendar
days (UTC+07:00), the days of the 24-hour means of QCVN 05:2023.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import psycopg

from quantrac.core.registry import Station
from quantrac.core.time import VIETNAM

# Called after each step of a long report: (steps done, steps in all, what was just done).
Progress = Callable[[int, int, str], None]

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# Vietnamese days and months, computed in SQL without depending on the server's time zone
# database: Vietnam has kept UTC+07:00 since 1975.
LOCAL_DAY_SQL = "(({col} AT TIME ZONE 'UTC') + interval '7 hours')::date"


# --- pure helpers ----------------------------------------------------------------------------


def floor_hour(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    floor = floor_hour(at)
    return floor if floor == at.astimezone(UTC) else floor + HOUR


def local_day(at: datetime) -> date:
    return at.astimezone(VIETNAM).date()


def day_start(day: date) -> datetime:
    """00:00 of a Vietnamese day, as a UTC time."""
    return datetime.combine(day, time(), VIETNAM).astimezone(UTC)


def local_days(start: datetime, end: datetime) -> list[tuple[date, datetime, datetime]]:
    """The Vietnamese days that [start, end) touches, each with its part inside the period."""
    out: list[tuple[date, datetime, datetime]] = []
    if end <= start:
        return out
    day = local_day(start)
    while True:
        lo, hi = day_start(day), day_start(day + DAY)
        if lo >= end:
            break
        out.append((day, max(lo, start), min(hi, end)))
        day += DAY
    return out


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def month_label(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def local_months(start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    """The Vietnamese calendar months that [start, end) touches, clipped to the period."""
    out: list[tuple[str, datetime, datetime]] = []
    if end <= start:
        return out
    month = month_start(local_day(start))
    while True:
        lo, hi = day_start(month), day_start(next_month(month))
        if lo >= end:
            break
        out.append((month_label(month), max(lo, start), min(hi, end)))
        month = next_month(month)
    return out


def expected_count(cadence_s: int, start: datetime, end: datetime) -> int:
    """Readings a station sending every ``cadence_s`` seconds owes over [start, end)."""
    if cadence_s <= 0:
        raise ValueError("cadence must be positive")
    seconds = (end - start).total_seconds()
    return max(0, int(seconds // cadence_s))


def expected_per_day(cadence_s: int) -> int:
    """86400 / cadence: 288 at 5 minutes, 1,440 at 1 minute."""
    return expected_count(
        cadence_s, datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 2, tzinfo=UTC)
    )


def share(received: int, expected: int) -> float | None:
    """received / expected, at most 1."""
    if expected <= 0:
        return None
    return min(1.0, received / expected)


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayCompleteness:
    station_id: str
    param: str | None  # None: the whole station (every declared parameter together)
    day: date
    received: int  # valid readings (status 00)
    expected: int
    calibrating: int = 0  # status 01 readings
    faulty: int = 0  # status 02 readings

    @property
    def share(self) -> float | None:
        return share(self.received, self.expected)


@dataclass(frozen=True, slots=True)
class Total:
    station_id: str
    param: str | None
    received: int
    expected: int
    calibrating: int
    faulty: int

    @property
    def share(self) -> float | None:
        return share(self.received, self.expected)


@dataclass
class CompletenessReport:
    start: datetime  # the period, widened to whole hours
    end: datetime
    stations: list[Station]
    days: list[DayCompleteness] = field(default_factory=list)  # per parameter and day
    station_days: list[DayCompleteness] = field(default_factory=list)  # per station and day
    totals: list[Total] = field(default_factory=list)  # per parameter, then per station (None)

    def day(self, station_id: str, param: str | None, day: date) -> DayCompleteness | None:
        rows = self.station_days if param is None else self.days
        return next(
            (r for r in rows if r.station_id == station_id and r.param == param and r.day == day),
            None,
        )

    def total(self, station_id: str, param: str | None = None) -> Total | None:
        return next(
            (t for t in self.totals if t.station_id == station_id and t.param == param), None
        )

    def share_between(self, start: datetime, end: datetime) -> float | None:
        """Every station and parameter together over the days of [start, end)."""
        first, last = local_day(start), local_day(end - timedelta(microseconds=1))
        rows = [r for r in self.station_days if first <= r.day <= last]
        return share(sum(r.received for r in rows), sum(r.expected for r in rows))


def combine(
    stations: Iterable[Station],
    start: datetime,
    end: datetime,
    received: dict[tuple[str, str, date], int],
    other: dict[tuple[str, str, date, int], int],
    now: datetime | None = None,
) -> CompletenessReport:
    """Build the report from counts (pure): ``received[(station, param, day)]`` of status 00,
    ``other[(station, param, day, status)]`` of status 01 and 02."""
    stations = list(stations)
    report = CompletenessReport(start, end, stations)
    owed_until = min(end, now) if now is not None else end
    days = local_days(start, end)
    for station in stations:
        per_day_station: dict[date, list[int]] = {}
        for param in station.parameters:
            sums = [0, 0, 0, 0]
            for day, lo, hi in days:
                expected = expected_count(station.cadence_s, lo, min(hi, owed_until))
                row = DayCompleteness(
                    station.id,
                    param,
                    day,
                    received.get((station.id, param, day), 0),
                    expected,
                    other.get((station.id, param, day, 1), 0),
                    other.get((station.id, param, day, 2), 0),
                )
                report.days.append(row)
                acc = per_day_station.setdefault(day, [0, 0, 0, 0])
                for i, value in enumerate(
                    (row.received, row.expected, row.calibrating, row.faulty)
                ):
                    acc[i] += value
                    sums[i] += value
            report.totals.append(Total(station.id, param, *sums))
        whole = [0, 0, 0, 0]
        for day, _, _ in days:
            acc = per_day_station.get(day, [0, 0, 0, 0])
            report.station_days.append(DayCompleteness(station.id, None, day, *acc))
            whole = [a + b for a, b in zip(whole, acc, strict=True)]
        report.totals.append(Total(station.id, None, *whole))
    return report


# --- queries -----------------------------------------------------------------------------------

# An hour counts at most the readings its cadence owes (12 at 5 minutes), from the rollup.
_RECEIVED = f"""
    SELECT h.station_id, h.param, {LOCAL_DAY_SQL.format(col="h.hour")} AS day,
           sum(least(h.n, c.per_hour))::bigint
    FROM readings_hourly h
    JOIN unnest(%(stations)s::text[], %(per_hour)s::int[]) AS c(station_id, per_hour)
      ON c.station_id = h.station_id
    WHERE h.station_id = ANY(%(stations)s) AND h.hour >= %(start)s AND h.hour < %(end)s
    GROUP BY 1, 2, 3
"""

# ... and no more than the cadence slots its readings cover: a series that sent more readings in
# some hour than its cadence owes is a fast sender, and for it alone (hour by hour, through the
# readings' primary key) the slots are counted as the alert engine's windows count them. What
# _SURPLUS returns is taken off the rollup's count: a burst cannot make an hour complete. The two
# steps keep the common case (no fast sender) to one short read of the rollup: a single query's
# estimate for the per-hour counts is enough to start PostgreSQL's JIT compiler (over a second).
_FAST_SERIES = """
    SELECT DISTINCT h.station_id, h.param
    FROM readings_hourly h
    JOIN unnest(%(stations)s::text[], %(per_hour)s::int[]) AS c(station_id, per_hour)
      ON c.station_id = h.station_id
    WHERE h.station_id = ANY(%(stations)s) AND h.hour >= %(start)s AND h.hour < %(end)s
      AND h.n > c.per_hour
"""

_SURPLUS = f"""
    WITH f AS (
        SELECT * FROM unnest(%(stations)s::text[], %(params)s::text[], %(per_hour)s::int[],
                             %(cadence)s::int[]) AS f(station_id, param, per_hour, cadence_s)
    )
    SELECT h.station_id, h.param, {LOCAL_DAY_SQL.format(col="h.hour")} AS day,
           sum(least(h.n, f.per_hour) - s.slots)::bigint
    FROM f
    JOIN readings_hourly h ON h.station_id = f.station_id AND h.param = f.param
    CROSS JOIN LATERAL (
        SELECT count(DISTINCT floor(extract(epoch FROM r.measured_at - h.hour) / f.cadence_s))
            AS slots
        FROM readings r
        WHERE r.station_id = h.station_id AND r.param = h.param AND r.status = 0
          AND r.measured_at >= h.hour AND r.measured_at < h.hour + interval '1 hour'
    ) s
    WHERE h.hour >= %(start)s AND h.hour < %(end)s
    GROUP BY 1, 2, 3
    HAVING sum(least(h.n, f.per_hour) - s.slots) > 0
"""


def owed_per_hour(cadence_s: int) -> int:
    """The most readings one hour can count: 3600 / cadence, at least one."""
    return max(1, 3600 // cadence_s)


# Served by the partial index readings_not_valid (status <> 0): a few rows, never the year.
_NOT_VALID = f"""
    SELECT station_id, param, {LOCAL_DAY_SQL.format(col="measured_at")} AS day, status,
           count(*)::bigint
    FROM readings
    WHERE station_id = ANY(%(stations)s) AND status <> 0
      AND measured_at >= %(start)s AND measured_at < %(end)s
    GROUP BY 1, 2, 3, 4
"""


async def count_received(
    conn: psycopg.AsyncConnection, stations: list[Station], start: datetime, end: datetime
) -> dict[tuple[str, str, date], int]:
    args = {
        "stations": [s.id for s in stations],
        "per_hour": [owed_per_hour(s.cadence_s) for s in stations],
        "start": start,
        "end": end,
    }
    cur = await conn.execute(_RECEIVED, args)
    received = {(r[0], r[1], r[2]): int(r[3]) for r in await cur.fetchall()}
    cur = await conn.execute(_FAST_SERIES, args)
    fast = await cur.fetchall()
    if fast:
        cadence = {s.id: s.cadence_s for s in stations}
        series = {
            "stations": [sid for sid, _ in fast],
            "params": [param for _, param in fast],
            "per_hour": [owed_per_hour(cadence[sid]) for sid, _ in fast],
            "cadence": [cadence[sid] for sid, _ in fast],
            "start": start,
            "end": end,
        }
        cur = await conn.execute(_SURPLUS, series)
        for station_id, param, day, surplus in await cur.fetchall():
            received[(station_id, param, day)] -= int(surplus)
    return received


async def count_not_valid(
    conn: psycopg.AsyncConnection, station_ids: list[str], start: datetime, end: datetime
) -> dict[tuple[str, str, date, int], int]:
    cur = await conn.execute(_NOT_VALID, {"stations": station_ids, "start": start, "end": end})
    return {(r[0], r[1], r[2], int(r[3])): int(r[4]) for r in await cur.fetchall()}


def period_steps(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Whole-hour bounds of the period cut at Vietnamese month starts (progress steps)."""
    return [(lo, hi) for _, lo, hi in local_months(floor_hour(start), ceil_hour(end))]


async def completeness_report(
    conn: psycopg.AsyncConnection,
    stations: list[Station],
    start: datetime,
    end: datetime,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
    steps_before: int = 0,
    steps_total: int | None = None,
) -> CompletenessReport:
    """Completeness of the stations over [start, end), counted month by month."""
    start, end = floor_hour(start), ceil_hour(end)
    ids = [s.id for s in stations]
    received: dict[tuple[str, str, date], int] = {}
    other: dict[tuple[str, str, date, int], int] = {}
    steps = period_steps(start, end)
    total = steps_total if steps_total is not None else len(steps)
    for i, (lo, hi) in enumerate(steps, 1):
        received.update(await count_received(conn, stations, lo, hi))
        other.update(await count_not_valid(conn, ids, lo, hi))
        if progress is not None:
            progress(steps_before + i, total, month_label(local_day(lo)))
    return combine(stations, start, end, received, other, now or datetime.now(UTC))
