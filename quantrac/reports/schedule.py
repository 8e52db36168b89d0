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
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from quantrac.core.config_files import ConfigError, ConfigModel, read_yaml_file, validate
from quantrac.core.time import VIETNAM

REPORTS_FILE_ENV = "QUANTRAC_REPORTS_FILE"
PERIODS = ("daily", "weekly", "monthly")
FORMATS = ("pdf", "xlsx", "csv", "json")
LANGS = ("vi", "en")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$|^[^<>]*<[^@\s<>]+@[^@\s<>]+>$")
_SEND_AT = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class ScheduleConfigError(ConfigError):
    """reports.yaml is invalid; each issue names file, line and field."""


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


def _as_text(value: Any) -> Any:
    """Ids and names written as numbers (``station: 2024``) are their text, as before."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _one_of(value: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"one of {', '.join(options)}")
    return value


class _Schedule(ConfigModel):
    id: Annotated[str, BeforeValidator(_as_text)]
    station: Annotated[str | None, BeforeValidator(_as_text)] = None
    facility: Annotated[str | None, BeforeValidator(_as_text)] = None
    period: str = "monthly"
    format: str = "pdf"
    lang: str = "vi"
    recipients: list[Any]
    send_at: Annotated[str, BeforeValidator(_as_text)] = "07:00"

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("letters, digits, '_', '.', '-' (required)")
        return value

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        return _one_of(value, PERIODS)

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        return _one_of(value, FORMATS)

    @field_validator("lang")
    @classmethod
    def _lang(cls, value: str) -> str:
        return _one_of(value, LANGS)

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("a list of e-mail addresses (at least one)")
        for address in value:
            if not isinstance(address, str) or not _ADDRESS.match(address):
                raise ValueError(f"not an e-mail address: {address!r}")
        return value

    @field_validator("send_at")
    @classmethod
    def _send_at(cls, value: str) -> str:
        if not _SEND_AT.match(value):
            raise ValueError("HH:MM, local time (UTC+07:00)")
        return value

    @model_validator(mode="after")
    def _target(self) -> _Schedule:
        if (self.station is None) == (self.facility is None):
            raise ValueError("give a station or a facility")
        return self


class _ReportsFile(ConfigModel):
    email_channel: Annotated[str | None, BeforeValidator(_as_text)] = None
    schedules: list[_Schedule] | None = None
    max_attempts: int = Field(default=8, ge=1)
    retry_s: float = Field(default=60.0, ge=0, allow_inf_nan=False)
    max_retry_s: float = Field(default=3600.0, ge=0, allow_inf_nan=False)
    poll_s: float = Field(default=60.0, ge=0.1, allow_inf_nan=False)


def parse_schedule_config(
    data: Any, source: str = "<memory>", lines: dict[str, int] | None = None
) -> ScheduleConfig:
    """The schedules of reports.yaml; every problem is a ScheduleConfigError naming file:line:
    field."""
    lines = lines or {}
    doc = validate(_ReportsFile, {} if data is None else data, source, lines, ScheduleConfigError)
    schedules: list[ReportSchedule] = []
    seen: set[str] = set()
    for index, item in enumerate(doc.schedules or []):
        if item.id in seen:
            where = f"schedules[{index}].id"
            raise ScheduleConfigError.at(source, lines, where, f"{item.id!r} is used twice")
        seen.add(item.id)
        match = _SEND_AT.match(item.send_at)
        assert match is not None  # checked by the model
        schedules.append(
            ReportSchedule(
                id=item.id,
                station=item.station,
                facility=item.facility,
                period=item.period,
                format=item.format,
                lang=item.lang,
                recipients=tuple(item.recipients),
                send_at=time(int(match[1]), int(match[2])),
            )
        )
    if schedules and not doc.email_channel:
        raise ScheduleConfigError.at(
            source,
            lines,
            "email_channel",
            "name the e-mail channel of config/alerts.yaml to send with",
        )
    return ScheduleConfig(
        email_channel=doc.email_channel,
        schedules=tuple(schedules),
        max_attempts=doc.max_attempts,
        retry_s=doc.retry_s,
        max_retry_s=doc.max_retry_s,
        poll_s=doc.poll_s,
        source=source,
    )


def load_schedule_config(path: Path) -> ScheduleConfig:
    data, lines = read_yaml_file(path, ScheduleConfigError)
    return parse_schedule_config(data, str(path), lines)


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
