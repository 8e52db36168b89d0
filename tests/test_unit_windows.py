"""Averaging windows count what they cover: distinct cadence slots, not readings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from quantrac.regulations.windows import SeriesWindows

HOUR = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
VN = timezone(timedelta(hours=7))


def series(times: list[datetime], value: float = 10.0) -> SeriesWindows:
    windows = SeriesWindows(300, VN, 0.75)
    for i, t in enumerate(times):
        windows.add(t, value + (1 if i % 2 else -1))
    return windows


def test_a_burst_in_two_minutes_does_not_make_an_hour_complete() -> None:
    burst = [HOUR + timedelta(seconds=5 * i) for i in range(24)]  # 24 readings, first 2 minutes
    window = series(burst).hour(HOUR)
    assert window.count == 1  # one 5-minute slot of twelve
    assert window.mean is None and not window.sufficient
    assert round(window.completeness, 3) == round(1 / 12, 3)


def test_a_station_faster_than_its_cadence_fills_the_slots_it_owes_and_no_more() -> None:
    every_minute = [HOUR + timedelta(minutes=i) for i in range(60)]
    window = series(every_minute).hour(HOUR)
    assert (window.count, window.completeness) == (12, 1.0)
    assert window.mean == 10.0  # every reading still counts in the mean


def test_the_cadence_it_is_registered_with_is_complete() -> None:
    window = series([HOUR + timedelta(minutes=5 * i) for i in range(12)]).hour(HOUR)
    assert (window.count, window.completeness, window.sufficient) == (12, 1.0, True)


def test_a_day_counts_slots_too() -> None:
    day_start = datetime(2026, 11, 1, tzinfo=VN).astimezone(UTC)
    # Every minute for 18 hours: 216 of the day's 288 slots, 75 %, not 1080 readings.
    times = [day_start + timedelta(minutes=i) for i in range(18 * 60)]
    window = series(times).day(date(2026, 11, 1))
    assert (window.count, window.expected) == (216, 288)
    assert window.completeness == 0.75 and window.sufficient
    # Every minute for 6 hours: 72 slots, 25 %: insufficient however many readings came.
    short = series(times[: 6 * 60]).day(date(2026, 11, 1))
    assert short.count == 72 and not short.sufficient


@given(
    st.lists(
        st.tuples(st.integers(0, 4 * 3600 - 1), st.sampled_from([60, 300, 420, 3600, 7200])),
        max_size=80,
    ),
    st.integers(0, 4),
)
def test_the_slots_kept_while_adding_are_those_counted_from_the_readings(
    offsets: list[tuple[int, int]], prune_hours: int
) -> None:
    """Counted incrementally as readings arrive, an hour's slots are what a pass over its
    readings gives, for any cadence (a divisor of the hour or not), duplicates and pruning."""
    for cadence in {c for _, c in offsets} or {300}:
        windows = SeriesWindows(cadence, VN, 0.75)
        for offset, _ in offsets:
            at = HOUR + timedelta(seconds=offset)
            first = at not in windows.hours.get(windows_hour(at), {})
            assert (windows.add(at, 1.0) == windows_hour(at)) is first
        windows.prune(HOUR + timedelta(hours=prune_hours))
        assert windows.slots.keys() == windows.hours.keys()
        for hour, values in windows.hours.items():
            assert windows.count(hour) == windows._slots(hour, values)
            assert windows.hour(hour).count == windows.count(hour)


@given(
    st.lists(st.tuples(st.integers(0, 3 * 3600 - 1), st.floats(-50, 500)), max_size=60),
    st.integers(1, 59),
)
def test_an_hour_asked_again_is_the_hour_as_it_now_stands(
    readings: list[tuple[int, float]], split: int
) -> None:
    """1 h windows are remembered between questions, and forgotten when their hour changes: any
    question, at any point of the arrivals, gets what a fresh computation would say."""
    windows = SeriesWindows(300, VN, 0.75)
    hours = [HOUR + timedelta(hours=i) for i in range(3)]
    for n, (offset, value) in enumerate(readings):
        windows.add(HOUR + timedelta(seconds=offset), value)
        if n % split == 0:
            for hour in hours:
                windows.hour(hour)  # remembered from here on
            windows.eight_hours(hours[-1])
    fresh = SeriesWindows(300, VN, 0.75)
    for offset, value in readings:
        fresh.add(HOUR + timedelta(seconds=offset), value)
    for hour in hours:
        assert windows.hour(hour) == fresh.hour(hour)
    assert windows.eight_hours(hours[-1]) == fresh.eight_hours(hours[-1])
    windows.prune(hours[1])
    assert windows.hour(hours[0]) == SeriesWindows(300, VN, 0.75).hour(hours[0])


def windows_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)
