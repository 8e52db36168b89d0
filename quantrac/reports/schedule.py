"""Scheduled reports: ``config/reports.yaml`` (parsing, pure) and which period is due when.

A schedule names a recipient list, a station or a facility, a period (daily, weekly from
Monday, monthly: Vietnamese calendar days, UTC+07:00), a format and a language. A period is due
at ``send_at`` (local time) on the day it ends; the sender delivers the latest due period of each
schedule, once (see ``delivery.py``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml

from quantrac.core.time import VIETNAM

REPORTS_FILE_ENV = "QUANTRAC_REPORTS_FILE"
PERIODS = ("daily", "weekly", "monthly")
FORMATS = ("pdf", "xlsx", "csv", "json")
LANGS = ("vi", "en")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$|^[^<>]*<[^@\s<>]+@[^@\s<>]+>$")
_SEND_AT = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class ScheduleConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ReportSchedule:
    id: str
    station: str | None
    facility: str | None
    period: str
    format: str
    lang: str
    recipients: tuple[str, ...]
    send_at: time = time(7, 0)

    @property
    def target(self) -> str:
        return self.facility or self.station or ""


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    email_channel: str | None  # an e-mail channel of config/alerts.yaml: its SMTP server
    schedules: tuple[ReportSchedule, ...]
    max_attempts: int = 8
    retry_s: float = 60.0  # first retry; doubles up to max_retry_s
    max_retry_s: float = 3600.0
    poll_s: float = 60.0
    source: str = "<memory>"


def reports_path(config_dir: Path) -> Path:
    override = os.environ.get(REPORTS_FILE_ENV)
    return Path(override) if override else config_dir / "reports.yaml"


def parse_schedule_config(data: Any, source: str = "<memory>") -> ScheduleConfig:
    def fail(where: str, message: str) -> ScheduleConfigError:
        return ScheduleConfigError(f"{source}: {where}: {message}")

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise fail("top level", "expected a mapping")
    known = {"email_channel", "schedules", "max_attempts", "retry_s", "max_retry_s", "poll_s"}
    for key in data:
        if key not in known:
            raise fail(str(key), f"unknown key (known: {', '.join(sorted(known))})")

    def number(key: str, default: float, low: float) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
            raise fail(key, f"must be a number ≥ {low}")
        return float(value)

    raw = data.get("schedules") or []
    if not isinstance(raw, list):
        raise fail("schedules", "expected a list")
    schedules: list[ReportSchedule] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"schedules[{index}]"
        if not isinstance(item, dict):
            raise fail(where, "expected a mapping")
        allowed = {"id", "station", "facility", "period", "format", "lang", "recipients", "send_at"}
        for key in item:
            if key not in allowed:
                raise fail(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(allowed))})")
        sid = str(item.get("id", ""))
        if not _ID.match(sid):
            raise fail(f"{where}.id", "letters, digits, '_', '.', '-' (required)")
        if sid in seen:
            raise fail(f"{where}.id", f"{sid!r} is used twice")
        seen.add(sid)
        station, facility = item.get("station"), item.get("facility")
        if (station is None) == (facility is None):
            raise fail(where, "give a station or a facility")
        period = item.get("period", "monthly")
        if period not in PERIODS:
            raise fail(f"{where}.period", f"one of {', '.join(PERIODS)}")
        fmt = item.get("format", "pdf")
        if fmt not in FORMATS:
            raise fail(f"{where}.format", f"one of {', '.join(FORMATS)}")
        lang = item.get("lang", "vi")
        if lang not in LANGS:
            raise fail(f"{where}.lang", f"one of {', '.join(LANGS)}")
        recipients = item.get("recipients")
        if not isinstance(recipients, list) or not recipients:
            raise fail(f"{where}.recipients", "a list of e-mail addresses (at least one)")
        for address in recipients:
            if not isinstance(address, str) or not _ADDRESS.match(address):
                raise fail(f"{where}.recipients", f"not an e-mail address: {address!r}")
        send_at = str(item.get("send_at", "07:00"))
        match = _SEND_AT.match(send_at)
        if not match:
            raise fail(f"{where}.send_at", "HH:MM, local time (UTC+07:00)")
        schedules.append(
            ReportSchedule(
                id=sid,
                station=None if station is None else str(station),
                facility=None if facility is None else str(facility),
                period=period,
                format=fmt,
                lang=lang,
                recipients=tuple(recipients),
                send_at=time(int(match[1]), int(match[2])),
            )
        )
    channel = data.get("email_channel")
    if schedules and not channel:
        raise fail("email_channel", "name the e-mail channel of config/alerts.yaml to send with")
    return ScheduleConfig(
        email_channel=None if channel is None else str(channel),
        schedules=tuple(schedules),
        max_attempts=int(number("max_attempts", 8, 1)),
        retry_s=number("retry_s", 60.0, 0),
        max_retry_s=number("max_retry_s", 3600.0, 0),
        poll_s=number("poll_s", 60.0, 0.1),
        source=source,
    )


def load_schedule_config(path: Path) -> ScheduleConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScheduleConfigError(f"{path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScheduleConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_schedule_config(data, str(path))


# --- periods (pure) ------------------------------------------------------------------------------


def _local_midnight(moment: datetime) -> datetime:
    local = moment.astimezone(VIETNAM)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def period_containing(kind: str, moment: datetime) -> tuple[datetime, datetime]:
    """The [start, end) of the daily, weekly (Monday) or monthly period holding ``moment``."""
    day = _local_midnight(moment)
    if kind == "daily":
        start = day
        end = start + timedelta(days=1)
    elif kind == "weekly":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif kind == "monthly":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"period: one of {', '.join(PERIODS)}")
    return start.astimezone(UTC), end.astimezone(UTC)


def due_at(schedule: ReportSchedule, period_end: datetime) -> datetime:
    local_day = period_end.astimezone(VIETNAM)
    return datetime.combine(local_day.date(), schedule.send_at, VIETNAM).astimezone(UTC)


def latest_due_period(schedule: ReportSchedule, now: datetime) -> tuple[datetime, datetime]:
    """The most recent closed period whose send time has come."""
    start, _ = period_containing(schedule.period, now)
    previous = period_containing(schedule.period, start - timedelta(seconds=1))
    if due_at(schedule, previous[1]) <= now:
        return previous
    return period_containing(schedule.period, previous[0] - timedelta(seconds=1))


def retry_delay(attempts: int, first_s: float, max_s: float) -> float:
    """After ``attempts`` failed attempts: first_s, 2·first_s, 4·first_s … at most max_s."""
    return float(min(max_s, first_s * 2 ** max(0, attempts - 1)))
