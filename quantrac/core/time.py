"""Time zones: Vietnam's, and the UTC offsets stations declare."""

from __future__ import annotations

import re
from datetime import timedelta, timezone, tzinfo

# Vietnam has used UTC+07:00 all year since 1975 (no daylight saving time).
VIETNAM = timezone(timedelta(hours=7))
# The same zone by its IANA name, for PostgreSQL (which reads '+07' the POSIX way: west of UTC).
VIETNAM_ZONE_NAME = "Asia/Ho_Chi_Minh"


_OFFSET = re.compile(r"([+-])([0-9]{2}):([0-5][0-9])")


def parse_utc_offset(text: str) -> tzinfo:
    match = _OFFSET.fullmatch(text.strip())
    if not match:
        raise ValueError("UTC offset must look like +07:00")
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14):
        raise ValueError("UTC offset beyond ±14:00")
    return timezone(-delta if sign == "-" else delta)
