"""``config/forward.yaml``: where ``quantrac forward`` sends what (parsing, pure)."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

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


def parse_forward_config(
    data: Any, source: str = "<memory>", known_stations: Collection[str] | None = None
) -> list[ForwardTarget]:
    def fail(where: str, message: str) -> ForwardError:
        return ForwardError(f"{source}: {where}: {message}")

    if data is None:
        return []
    if not isinstance(data, dict) or set(data) - {"targets"}:
        raise fail("top level", "expected a mapping with 'targets'")
    raw = data.get("targets") or []
    if not isinstance(raw, list):
        raise fail("targets", "expected a list")
    targets = []
    names: set[str] = set()
    allowed = {
        "name",
        "url",
        "stations",
        "since",
        "layout",
        "delay_s",
        "late_days",
        "max_attempts",
        "backoff_s",
        "timeout_s",
        "ca_file",
        "poll_s",
    }
    for index, item in enumerate(raw):
        where = f"targets[{index}]"
        if not isinstance(item, dict):
            raise fail(where, "expected a mapping")
        for key in item:
            if key not in allowed:
                raise fail(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(allowed))})")
        name = str(item.get("name", ""))
        if not _NAME.match(name) or name in names:
            raise fail(f"{where}.name", "a unique name of letters, digits, '_', '.', '-'")
        names.add(name)
        url = item.get("url")
        if not isinstance(url, str) or not url:
            raise fail(f"{where}.url", "ftp://user:${PASSWORD}@host/folder, ftps://… or file:///…")
        stations = item.get("stations", "all")
        chosen: tuple[str, ...] | None
        if stations == "all":
            chosen = None
        elif isinstance(stations, list) and stations and all(isinstance(s, str) for s in stations):
            chosen = tuple(stations)
            unknown = [s for s in chosen if known_stations is not None and s not in known_stations]
            if unknown:
                raise fail(f"{where}.stations", f"unknown station(s): {', '.join(unknown)}")
        else:
            raise fail(f"{where}.stations", "'all' or a list of station ids")
        try:
            since = parse_time(str(item["since"]))
        except KeyError:
            raise fail(f"{where}.since", "required: the first measured time to send") from None
        except ValueError as exc:
            raise fail(f"{where}.since", str(exc)) from None
        layout = str(item.get("layout", DEFAULT_LAYOUT))
        try:
            check_layout(layout)
        except ForwardError as exc:
            raise fail(f"{where}.layout", str(exc)) from None

        def number(key: str, default: float, low: float = 0.0, at: str = where) -> float:
            value = item.get(key, default)  # noqa: B023  (called in this iteration only)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
                raise fail(f"{at}.{key}", f"must be a number ≥ {low}")
            return float(value)

        targets.append(
            ForwardTarget(
                name=name,
                url=url,
                stations=chosen,
                since=since,
                layout=layout,
                delay_s=number("delay_s", 300.0),
                late_s=86400.0 * number("late_days", 7.0),
                max_attempts=int(number("max_attempts", 5, 1)),
                backoff_s=number("backoff_s", 5.0),
                timeout_s=number("timeout_s", 30.0, 0.1),
                ca_file=Path(item["ca_file"]) if item.get("ca_file") else None,
                poll_s=number("poll_s", 60.0, 0.1),
            )
        )
    return targets


def load_forward_config(
    path: Path, known_stations: Collection[str] | None = None
) -> list[ForwardTarget]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ForwardError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ForwardError(f"{path}: not valid YAML: {exc}") from None
    return parse_forward_config(data, str(path), known_stations)
