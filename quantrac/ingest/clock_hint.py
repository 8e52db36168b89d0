"""A datalogger whose clock is exactly the Vietnamese offset (7 h) off: the commonest clock fault.

A Circular 10/2021 logger left on UTC writes times read as UTC+7 that are 7 hours behind; a
logger on local time that marks its times as UTC is 7 hours ahead. Pure.
"""

from __future__ import annotations

from datetime import datetime, timedelta

VIETNAM_OFFSET = timedelta(hours=7)
# Within this of exactly 7 h: transmission delay and a little drift, not a different fault.
TOLERANCE = timedelta(minutes=10)

LOGGER_ON_UTC = "logger_on_utc"  # measured 7 h behind arrival: set the logger to UTC+7
LOCAL_MARKED_UTC = "local_marked_utc"  # measured 7 h ahead: mark the times +07:00


def utc_offset_hint(measured: datetime, received: datetime) -> str | None:
    """Which 7-hour mistake the measured time shows against its arrival, if any."""
    behind = received - measured
    if abs(behind - VIETNAM_OFFSET) <= TOLERANCE:
        return LOGGER_ON_UTC
    if abs(behind + VIETNAM_OFFSET) <= TOLERANCE:
        return LOCAL_MARKED_UTC
    return None
