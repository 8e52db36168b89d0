"""``config/forward.yaml``: where ``quantrac forward`` sends what (parsing, pure)."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from quantrac.core.config_files import ConfigError, ConfigModel, read_yaml_file, validate
from quantrac.core.contract import parse_time
from quantrac.forward.files import DEFAULT_LAYOUT, ForwardError, check_layout

FORWARD_FILE_ENV = "QUANTRAC_FORWARD_FILE"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class ForwardTarget:
    name: str
    url: str  # may hold ${ENV_VAR} references (credentials)
    stations: tuple[str, ...] | None  # None: every station with an ftp_name
    since: datetime
    layout: str = DEFAULT_LAYOUT
    delay_s: float = 300.0  # a time slot is sent once it is this old (its readings are in)
    late_s: float = 7 * 86400.0  # readings arriving this late for a sent slot are still sent
    max_attempts: int = 5
    backoff_s: float = 5.0
    timeout_s: float = 30.0
    ca_file: Path | None = None
    poll_s: float = 60.0


def forward_path(config_dir: Path) -> Path:
    override = os.environ.get(FORWARD_FILE_ENV)
    return Path(override) if override else config_dir / "forward.yaml"


def resolve_url(url: str, environ: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ForwardError(f"url: environment variable {name} is not set")
        return environ[name]

    return _ENV_REF.sub(substitute, url)


class ForwardConfigError(ForwardError, ConfigError):
    """forward.yaml is invalid; each issue names file, line and field."""


def _as_text(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _at_least(low: float, default: float) -> Any:
    return Field(default=default, ge=low, allow_inf_nan=False)


class _Target(ConfigModel):
    name: Annotated[str, BeforeValidator(_as_text)]
    url: str
    stations: Any = "all"
    since: datetime
    layout: str = DEFAULT_LAYOUT
    delay_s: float = _at_least(0, 300.0)
    late_days: float = _at_least(0, 7.0)
    max_attempts: float = _at_least(1, 5)
    backoff_s: float = _at_least(0, 5.0)
    timeout_s: float = _at_least(0.1, 30.0)
    ca_file: str | None = None
    poll_s: float = _at_least(0.1, 60.0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("a unique name of letters, digits, '_', '.', '-'")
        return value

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            raise ValueError("ftp://user:${PASSWORD}@host/folder, ftps://… or file:///…")
        return value

    @field_validator("stations")
    @classmethod
    def _stations(cls, value: Any) -> Any:
        if value == "all":
            return value
        if isinstance(value, list) and value and all(isinstance(s, str) for s in value):
            return value
        raise ValueError("'all' or a list of station ids")

    @field_validator("since", mode="before")
    @classmethod
    def _since(cls, value: Any) -> datetime:
        return parse_time(str(value))

    @field_validator("layout")
    @classmethod
    def _layout(cls, value: str) -> str:
        check_layout(value)
        return value


class _ForwardFile(ConfigModel):
    targets: list[_Target] | None = None


def parse_forward_config(
    data: Any,
    source: str = "<memory>",
    known_stations: Collection[str] | None = None,
    lines: dict[str, int] | None = None,
) -> list[ForwardTarget]:
    """The targets of forward.yaml; every problem is a ForwardConfigError (a ForwardError)
    naming file:line: field."""
    if data is None:
        return []
    lines = lines or {}
    doc = validate(_ForwardFile, data, source, lines, ForwardConfigError)
    targets = []
    names: set[str] = set()
    for index, item in enumerate(doc.targets or []):
        where = f"targets[{index}]"
        if item.name in names:
            raise ForwardConfigError.at(
                source, lines, f"{where}.name", "a unique name of letters, digits, '_', '.', '-'"
            )
        names.add(item.name)
        chosen = None if item.stations == "all" else tuple(item.stations)
        unknown = [
            s for s in chosen or () if known_stations is not None and s not in known_stations
        ]
        if unknown:
            raise ForwardConfigError.at(
                source, lines, f"{where}.stations", f"unknown station(s): {', '.join(unknown)}"
            )
        targets.append(
            ForwardTarget(
                name=item.name,
                url=item.url,
                stations=chosen,
                since=item.since,
                layout=item.layout,
                delay_s=item.delay_s,
                late_s=86400.0 * item.late_days,
                max_attempts=int(item.max_attempts),
                backoff_s=item.backoff_s,
                timeout_s=item.timeout_s,
                ca_file=Path(item.ca_file) if item.ca_file else None,
                poll_s=item.poll_s,
            )
        )
    return targets


def load_forward_config(
    path: Path, known_stations: Collection[str] | None = None
) -> list[ForwardTarget]:
    data, lines = read_yaml_file(path, ForwardConfigError)
    return parse_forward_config(data, str(path), known_stations, lines)
