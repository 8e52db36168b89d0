"""Scenarios: what goes wrong, when, at which stations. Pure: no clock, no I/O.

A scenario file (YAML, documented in docs/simulator.md) lists episodes whose times are relative
to the first measured time of the run, in simulated time::

    scenarios:
      - kind: exceedance
        station: BG_WW_SONGKHE
        param: COD
        start: 10m
        duration: 2h
        value: 190

A ``ScenarioPlayer`` turns each (station, measured time) the fleet is due to send into the
messages actually sent: none (outage, backlog held back), one, several (duplicates, a backlog
released), with values, statuses, units, clocks or bytes changed as the episodes say. Same seed,
same inputs, same messages.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import yaml

from quantrac.core.contract import JsonReading, Status
from quantrac.core.registry import STATION_KINDS, Registry, Station, load_yaml_with_lines
from quantrac.simulator.encode import FORMATS, encode_readings
from quantrac.simulator.values import round_sensibly, station_readings

# Episodes that change what a message says, then those that change how it travels.
VALUE_KINDS = ("exceedance", "weather", "stuck", "missing", "wrong_unit")
STATUS_KINDS = ("calibration", "fault", "bad_status")
DELIVERY_KINDS = ("outage", "backlog", "duplicates", "out_of_order", "malformed", "clock_drift")
SCENARIO_KINDS = VALUE_KINDS + STATUS_KINDS + DELIVERY_KINDS

MALFORMED_HOW = ("truncated", "not_utf8", "value_as_text")

# Pollutants a weather episode (inversion, dust storm, rain-free stagnation) raises by default.
WEATHER_PARAMETERS = {
    "air": ("PM2,5", "PM10", "TSP", "NO2", "NO", "NOx", "CO", "SO2"),
    "wastewater": ("TSS", "COD", "BOD5", "Color"),  # storm run-off into the sewer
    "emission": ("PM",),
}

# A datalogger misconfigured with a unit of another dimension; value left as it was.
WRONG_UNITS = {
    "mass_per_volume_liquid": "mg/m3",
    "mass_per_m3": "mg/Nm3",
    "mass_per_nm3": "mg/m3",
    "volume_flow": "m3/ngày/đêm",
    "temperature": "K",
}
DEFAULT_WRONG_UNIT = "ppm"

_COMMON_KEYS = {"name", "kind", "station", "stations", "station_kind", "start", "duration", "end"}
_KIND_KEYS: dict[str, set[str]] = {
    "exceedance": {"param", "params", "factor", "value"},
    "weather": {"param", "params", "factor"},
    "stuck": {"param", "params"},
    "missing": {"param", "params"},
    "wrong_unit": {"param", "params", "unit"},
    "calibration": {"param", "params"},
    "fault": {"param", "params"},
    "bad_status": {"param", "params", "code"},
    "outage": set(),
    "backlog": set(),
    "duplicates": {"probability"},
    "out_of_order": {"group"},
    "malformed": {"probability", "how"},
    "clock_drift": {"offset", "drift_per_hour"},
}
_NEEDS_PARAMS = {"exceedance", "stuck", "missing", "wrong_unit"}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|min|m|s)", re.IGNORECASE)
_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "min": 60.0, "m": 60.0, "s": 1.0}


class ScenarioError(ValueError):
    def __init__(self, issues: list[str]):
        self.issues = issues
        super().__init__("\n".join(issues))


def parse_duration(value: Any) -> timedelta:
    """``90`` (seconds), ``"90s"``, ``"10m"``, ``"2h"``, ``"1h30m"``, ``"1d"``, ``"-5m"``."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 10m, 2h or 90s")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("a duration must be finite")
        return timedelta(seconds=value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a duration such as 10m, 2h or 90s")
    text = value.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-").strip()
    seconds = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if text[position : match.start()].strip():
            break
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
        position = match.end()
    if position == 0 or text[position:].strip():
        raise ValueError(f"{value!r} is not a duration such as 10m, 2h, 1h30m or 90s")
    return timedelta(seconds=sign * seconds)


@dataclass(frozen=True, slots=True)
class Scenario:
    kind: str
    name: str
    start: timedelta
    end: timedelta | None  # None: until the run ends
    stations: tuple[str, ...] | None = None  # None: every station (of station_kind)
    station_kind: str | None = None
    params: tuple[str, ...] | None = None  # None: every parameter the message carries
    factor: float | None = None
    value: float | None = None
    probability: float = 1.0
    offset: timedelta = timedelta(0)
    drift_per_hour: timedelta = timedelta(0)
    group: int = 3
    unit: str | None = None
    how: str = "truncated"
    code: str = "03"
    line: int = 0

    def applies_to(self, station: Station) -> bool:
        if self.stations is not None and station.id not in self.stations:
            return False
        return self.station_kind is None or station.kind == self.station_kind

    def active(self, elapsed: timedelta) -> bool:
        return elapsed >= self.start and (self.end is None or elapsed < self.end)

    def touches(self, param: str) -> bool:
        return self.params is None or param in self.params


@dataclass(frozen=True, slots=True)
class ScenarioSet:
    scenarios: tuple[Scenario, ...]
    source: str = "<memory>"
    description: str = ""


# --- Loading ------------------------------------------------------------------------------------


class _Issues:
    def __init__(self, source: str, lines: dict[str, int]) -> None:
        self.source = source
        self.lines = lines
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        line = self.lines.get(path)
        while line is None and path:
            path = path.rsplit(".", 1)[0] if "." in path else ""
            line = self.lines.get(path)
        self.items.append(f"{self.source}:{line or 1}: {path or '(file)'}: {message}")


def _names(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return (str(value),)
    if isinstance(value, list) and value and all(isinstance(v, str | int) for v in value):
        return tuple(str(v) for v in value)
    return None


def _number(issues: _Issues, entry: dict[str, Any], key: str, path: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        issues.add(f"{path}.{key}", "must be a number")
        return None
    return float(value)


def _duration(issues: _Issues, entry: dict[str, Any], key: str, path: str) -> timedelta | None:
    if key not in entry:
        return None
    try:
        return parse_duration(entry[key])
    except ValueError as exc:
        issues.add(f"{path}.{key}", str(exc))
        return None


def _scenario(issues: _Issues, entry: Any, path: str) -> Scenario | None:
    if not isinstance(entry, dict):
        issues.add(path, "each scenario must be a mapping with at least 'kind'")
        return None
    before = len(issues.items)
    kind = entry.get("kind")
    if kind not in SCENARIO_KINDS:
        issues.add(f"{path}.kind", f"must be one of {', '.join(SCENARIO_KINDS)}, not {kind!r}")
        return None
    for key in entry:
        if key not in _COMMON_KEYS | _KIND_KEYS[kind]:
            allowed = ", ".join(sorted(_COMMON_KEYS | _KIND_KEYS[kind]))
            issues.add(f"{path}.{key}", f"unknown field for {kind} (expected one of {allowed})")

    stations = None
    for key in ("station", "stations"):
        if key in entry and entry[key] != "*":
            stations = _names(entry[key])
            if stations is None:
                issues.add(f"{path}.{key}", "a station id, a list of ids, or '*' for all")
    station_kind = entry.get("station_kind")
    if station_kind is not None and station_kind not in STATION_KINDS:
        issues.add(f"{path}.station_kind", f"must be one of {', '.join(STATION_KINDS)}")

    params = None
    for key in ("param", "params"):
        if key in entry:
            params = _names(entry[key])
            if params is None:
                issues.add(f"{path}.{key}", "a parameter code or a list of codes")
    if kind in _NEEDS_PARAMS and "param" not in entry and "params" not in entry:
        issues.add(path, f"{kind} needs 'param' (or 'params')")

    start = _duration(issues, entry, "start", path) or timedelta(0)
    if start < timedelta(0):
        issues.add(f"{path}.start", "must not be negative")
    duration = _duration(issues, entry, "duration", path)
    end = _duration(issues, entry, "end", path)
    if duration is not None and end is not None:
        issues.add(f"{path}.end", "give 'duration' or 'end', not both")
    if duration is not None:
        if duration <= timedelta(0):
            issues.add(f"{path}.duration", "must be positive")
        end = start + duration
    elif end is not None and end <= start:
        issues.add(f"{path}.end", "must be after start")

    factor = _number(issues, entry, "factor", path)
    if factor is not None and factor <= 0:
        issues.add(f"{path}.factor", "must be positive")
    value = _number(issues, entry, "value", path)
    if kind == "exceedance" and factor is not None and value is not None:
        issues.add(f"{path}.value", "give 'factor' or 'value', not both")
    probability = _number(issues, entry, "probability", path)
    if probability is not None and not 0 < probability <= 1:
        issues.add(f"{path}.probability", "must be in (0, 1]")
    group = entry.get("group", 3)
    if isinstance(group, bool) or not isinstance(group, int) or group < 2:
        issues.add(f"{path}.group", "must be a whole number of messages, at least 2")
    how = entry.get("how", "truncated")
    if how not in MALFORMED_HOW:
        issues.add(f"{path}.how", f"must be one of {', '.join(MALFORMED_HOW)}")
    unit = entry.get("unit")
    if unit is not None and not isinstance(unit, str):
        issues.add(f"{path}.unit", "must be a unit as text")
    code = str(entry.get("code", "03"))
    offset = _duration(issues, entry, "offset", path) or timedelta(0)
    drift = _duration(issues, entry, "drift_per_hour", path) or timedelta(0)
    if kind == "clock_drift" and not offset and not drift:
        issues.add(path, "clock_drift needs 'offset' and/or 'drift_per_hour'")
    name = entry.get("name")

    if len(issues.items) > before:
        return None
    return Scenario(
        kind=kind,
        name=str(name) if name is not None else kind,
        start=start,
        end=end,
        stations=stations,
        station_kind=station_kind,
        params=params,
        factor=factor,
        value=value,
        probability=1.0 if probability is None else probability,
        offset=offset,
        drift_per_hour=drift,
        group=group,
        unit=unit,
        how=how,
        code=code,
        line=issues.lines.get(path, 0),
    )


def _check_against(issues: _Issues, scenarios: list[Scenario], registry: Registry) -> None:
    for index, scenario in enumerate(scenarios):
        path = f"scenarios[{index}]"
        targets = [s for s in registry.stations.values() if scenario.applies_to(s)]
        for station_id in scenario.stations or ():
            if station_id not in registry.stations:
                issues.add(f"{path}.station", f"station {station_id!r} is not in the registry")
        if not targets and scenario.stations is None:
            issues.add(path, "no station of the registry matches")
        if scenario.params is None:
            continue
        for param in scenario.params:
            if not any(param in s.parameters for s in targets):
                issues.add(
                    f"{path}.param",
                    f"{param!r} is declared for none of the stations it targets "
                    "(use the registry's canonical code, e.g. PM2,5)",
                )


def scenarios_from_text(
    text: str, source: str = "<text>", registry: Registry | None = None
) -> ScenarioSet:
    """Parse and check a scenario file; with a registry, stations and parameters must exist."""
    try:
        data, lines = load_yaml_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ScenarioError([f"{source}:{mark.line + 1 if mark else 1}: (yaml): {exc}"]) from None
    issues = _Issues(source, lines)
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        issues.add("scenarios", "the file must contain 'scenarios:' with a list of scenarios")
        raise ScenarioError(issues.items)
    for key in data:
        if key not in ("scenarios", "description"):
            issues.add(str(key), "unknown field (expected scenarios, description)")
    scenarios = []
    for index, entry in enumerate(data["scenarios"]):
        scenario = _scenario(issues, entry, f"scenarios[{index}]")
        if scenario is not None:
            scenarios.append(scenario)
    if registry is not None and not issues.items:
        _check_against(issues, scenarios, registry)
    if issues.items:
        raise ScenarioError(issues.items)
    return ScenarioSet(tuple(scenarios), source, str(data.get("description") or ""))


def load_scenarios(path: Path | str, registry: Registry | None = None) -> ScenarioSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError([f"{path}: {exc}"]) from None
    return scenarios_from_text(text, str(path), registry)


# --- Playing ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Message:
    """One message as the station's datalogger sends it."""

    station: Station
    moment: datetime  # true measured time
    stamp: datetime  # the time the datalogger writes (differs under clock drift)
    readings: list[JsonReading]
    seq: int | None
    malformed: str | None = None  # how to break its bytes

    def encode(self, fmt: str) -> bytes:
        raw = encode_readings(self.station, self.stamp, self.readings, fmt=fmt, seq=self.seq)
        return raw if self.malformed is None else break_payload(raw, self.malformed, fmt)


def break_payload(raw: bytes, how: str, fmt: str) -> bytes:
    """Bytes a faulty datalogger might send instead of ``raw``."""
    if how == "not_utf8":
        # A legacy code page, or a corrupted buffer: ingest must say "not UTF-8". (Not
        # b"\xff\xfe": that is UTF-16's byte-order mark, which ingest honours.)
        return b"\xb0\xff" + raw
    if how == "value_as_text":
        if fmt == "json":
            doc = msgspec.json.decode(raw)
            doc["readings"][0]["value"] = str(doc["readings"][0]["value"])
            return msgspec.json.encode(doc)
        first, _, rest = raw.partition(b"\r\n")
        fields = first.split(b"\t")
        fields[1] = b"N/A"
        return b"\t".join(fields) + b"\r\n" + rest
    if how == "truncated":
        if fmt == "json":
            return raw[: max(1, len(raw) * 3 // 5)]
        lines = raw.split(b"\r\n")
        lines[0] = b"\t".join(lines[0].split(b"\t")[:3])  # the line was cut mid-write
        return b"\r\n".join(lines)
    raise ValueError(f"malformed 'how' must be one of {', '.join(MALFORMED_HOW)}")


def _replace(reading: JsonReading, **changes: Any) -> JsonReading:
    return msgspec.structs.replace(reading, **changes)


class ScenarioPlayer:
    """Applies a ScenarioSet to the messages of a run, in the order they fall due.

    Held messages (backlog, out-of-order groups) come out with a later message of the same
    station, or from ``finish()`` at the end of the run. ``effects`` counts what each kind did.
    """

    def __init__(
        self,
        scenarios: ScenarioSet | None,
        *,
        seed: int = 0,
        origin: datetime | None = None,
        fmt: str = "json",
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        self.scenarios = scenarios.scenarios if scenarios else ()
        self.seed = seed
        self.origin = origin
        self.fmt = fmt
        self.effects: Counter[str] = Counter()
        self._per_station: dict[str, list[tuple[int, Scenario]]] = {}
        self._frozen: dict[tuple[int, str, str], float] = {}
        self._held: dict[str, list[Message]] = {}
        self._shuffled: dict[str, list[Message]] = {}

    def _for(self, station: Station) -> list[tuple[int, Scenario]]:
        found = self._per_station.get(station.id)
        if found is None:
            found = [(i, s) for i, s in enumerate(self.scenarios) if s.applies_to(station)]
            self._per_station[station.id] = found
        return found

    def _rng(self, index: int, station: Station, moment: datetime) -> random.Random:
        return random.Random(f"{self.seed}:{station.id}:{int(moment.timestamp())}:s{index}")

    def emit(self, station: Station, moment: datetime, seq: int | None = None) -> list[Message]:
        """The messages to send now, in order, when ``station`` is due at ``moment``."""
        if self.origin is None:
            self.origin = moment
        mine = self._for(station)
        readings = station_readings(station, moment, self.seed)
        if not mine:
            return [Message(station, moment, moment, readings, seq)]
        elapsed = moment - self.origin
        active = [(i, s) for i, s in mine if s.active(elapsed)]
        kinds = {s.kind for _, s in active}

        released: list[Message] = []
        if "backlog" not in kinds and station.id in self._held:
            # The link is back: the datalogger uploads what it buffered, oldest first.
            released += self._held.pop(station.id)
        if "out_of_order" not in kinds and station.id in self._shuffled:
            released += reversed(self._shuffled.pop(station.id))
        message = Message(station, moment, moment, readings, seq)
        for index, scenario in active:
            self._apply(index, scenario, message, elapsed)

        if "outage" in kinds:
            self.effects["outage"] += 1
            return released
        if "backlog" in kinds:
            self.effects["backlog"] += 1
            self._held.setdefault(station.id, []).append(message)
            return released
        if "out_of_order" in kinds:
            group = next(s.group for _, s in active if s.kind == "out_of_order")
            buffer = self._shuffled.setdefault(station.id, [])
            buffer.append(message)
            if len(buffer) >= group:
                self.effects["out_of_order"] += len(buffer)
                released += reversed(self._shuffled.pop(station.id))
            return released
        out = [*released, message]
        for index, scenario in active:
            if (
                scenario.kind == "duplicates"
                and self._rng(index, station, moment).random() < scenario.probability
            ):
                self.effects["duplicates"] += 1
                out.append(message)
        return out

    def finish(self) -> list[Message]:
        """What is still held when the run ends: the backlogs, then the unshuffled groups."""
        out: list[Message] = []
        for held in self._held.values():
            out += held
        for buffer in self._shuffled.values():
            self.effects["out_of_order"] += len(buffer)
            out += reversed(buffer)
        self._held.clear()
        self._shuffled.clear()
        return out

    def _apply(self, index: int, scenario: Scenario, message: Message, elapsed: timedelta) -> None:
        kind = scenario.kind
        station = message.station
        if kind in ("outage", "backlog", "out_of_order", "duplicates"):
            return  # delivery, decided once every change is made
        if kind == "clock_drift":
            hours = (elapsed - scenario.start).total_seconds() / 3600
            shift = scenario.offset + scenario.drift_per_hour * hours
            # Dataloggers keep whole seconds; TT10 times have no fractions.
            message.stamp = message.stamp + timedelta(seconds=round(shift.total_seconds()))
            self.effects[kind] += 1
            return
        if kind == "malformed":
            rng = self._rng(index, station, message.moment)
            if rng.random() < scenario.probability:
                message.malformed = scenario.how
                self.effects[kind] += 1
            return
        if kind == "missing":
            kept = [r for r in message.readings if not scenario.touches(r.param)]
            self.effects[kind] += len(message.readings) - len(kept)
            message.readings = kept
            return
        rng = self._rng(index, station, message.moment)
        changed: list[JsonReading] = []
        for reading in message.readings:
            if not scenario.touches(reading.param):
                changed.append(reading)
                continue
            new = self._change(index, scenario, reading, message, elapsed, rng)
            if new is None:
                changed.append(reading)
                continue
            self.effects[kind] += 1
            changed.append(new)
        message.readings = changed

    def _change(
        self,
        index: int,
        scenario: Scenario,
        reading: JsonReading,
        message: Message,
        elapsed: timedelta,
        rng: random.Random,
    ) -> JsonReading | None:
        kind = scenario.kind
        if kind == "exceedance":
            if scenario.value is not None:
                value = scenario.value * max(0.5, 1.0 + rng.gauss(0.0, 0.04))
            else:
                value = reading.value * (scenario.factor or 2.5)
            return _replace(reading, value=round_sensibly(value))
        if kind == "weather":
            params = WEATHER_PARAMETERS.get(message.station.kind, ())
            if scenario.params is None and reading.param not in params:
                return None
            factor = scenario.factor or 2.0
            if scenario.end is not None:
                # The episode builds up and clears: strongest halfway through.
                span = (scenario.end - scenario.start).total_seconds()
                phase = (elapsed - scenario.start).total_seconds() / span
                factor = 1.0 + (factor - 1.0) * math.sin(math.pi * phase)
            return _replace(reading, value=round_sensibly(reading.value * factor))
        if kind == "stuck":
            key = (index, message.station.id, reading.param)
            frozen = self._frozen.setdefault(key, reading.value)
            return _replace(reading, value=frozen)
        if kind == "wrong_unit":
            declared = message.station.parameters.get(reading.param)
            dimension = declared.unit.dimension if declared else ""
            unit = scenario.unit or WRONG_UNITS.get(dimension, DEFAULT_WRONG_UNIT)
            return _replace(reading, unit=unit)
        if kind == "calibration":
            return _replace(reading, status=Status.CALIBRATING.code)
        if kind == "fault":
            return _replace(reading, status=Status.FAULT.code)
        if kind == "bad_status":
            return _replace(reading, status=scenario.code)
        raise AssertionError(kind)


@dataclass(slots=True)
class ScenarioSummary:
    """What a run's scenarios did, for the end-of-run summary."""

    effects: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        if not self.effects:
            return "no scenario applied"
        unit = {
            "outage": "messages not sent",
            "backlog": "messages sent late",
            "out_of_order": "messages reordered",
            "duplicates": "messages sent twice",
            "malformed": "payloads broken",
            "clock_drift": "messages with a drifted clock",
            "missing": "readings left out",
        }
        return ", ".join(
            f"{kind} {count:,} {unit.get(kind, 'readings changed')}"
            for kind, count in sorted(self.effects.items())
        )
