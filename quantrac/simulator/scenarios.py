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
from typing import Annotated, Any, Literal, get_args

import msgspec
from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from quantrac.core.config_files import (
    ConfigError,
    ConfigModel,
    FieldError,
    parse_yaml,
    read_config_text,
    validate,
)
from quantrac.core.contract import JsonReading, Status
from quantrac.core.registry import STATION_KINDS, Registry, Station
from quantrac.simulator.encode import FORMATS, encode_readings
from quantrac.simulator.values import round_sensibly, station_readings

# Episodes that change what a message says, then those that change how it travels.
VALUE_KINDS = ("exceedance", "weather", "stuck", "missing", "wrong_unit")
STATUS_KINDS = ("calibration", "fault", "bad_status")
DELIVERY_KINDS = ("outage", "backlog", "duplicates", "out_of_order", "malformed", "clock_drift")
SCENARIO_KINDS = VALUE_KINDS + STATUS_KINDS + DELIVERY_KINDS

MalformedHow = Literal["truncated", "not_utf8", "value_as_text"]
MALFORMED_HOW: tuple[str, ...] = get_args(MalformedHow)

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

_NEEDS_PARAMS = {"exceedance", "stuck", "missing", "wrong_unit"}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|min|m|s)", re.IGNORECASE)
_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "min": 60.0, "m": 60.0, "s": 1.0}


class ScenarioError(ConfigError):
    """A scenario file is invalid; each issue names file, line and field."""


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
#
# The file's shape is checked by the pydantic models below (one per kind, so a field another
# kind takes is an unknown field here), the stations and parameters against the registry in the
# validation context; every problem is reported as file:line: field: reason.


def _duration(value: Any) -> timedelta:
    return value if isinstance(value, timedelta) else parse_duration(value)


def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return (str(value),)
    if isinstance(value, list) and value and all(isinstance(v, str | int) for v in value):
        return tuple(str(v) for v in value)
    raise ValueError(what)


def _station_names(value: Any) -> tuple[str, ...] | None:
    if value == "*":
        return None
    return _names(value, "a station id, a list of ids, or '*' for all")


def _param_names(value: Any) -> tuple[str, ...]:
    return _names(value, "a parameter code or a list of codes")


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Number = Annotated[float, Field(allow_inf_nan=False)]
StationNames = Annotated[tuple[str, ...] | None, BeforeValidator(_station_names)]
ParamNames = Annotated[tuple[str, ...] | None, BeforeValidator(_param_names)]
Text = Annotated[str, BeforeValidator(_text)]


class _Scenario(ConfigModel):
    """The fields of every kind; the models below add the ones of their kind."""

    kind: str
    name: Text | None = None
    station: StationNames = None
    stations: StationNames = None
    station_kind: str | None = None
    start: Duration = timedelta(0)
    duration: Duration | None = None
    end: Duration | None = None

    @field_validator("station_kind")
    @classmethod
    def _station_kind(cls, value: str | None) -> str | None:
        if value is not None and value not in STATION_KINDS:
            raise ValueError(f"must be one of {', '.join(STATION_KINDS)}")
        return value

    @model_validator(mode="after")
    def _times(self, info: ValidationInfo) -> _Scenario:
        if self.start < timedelta(0):
            raise FieldError("start", "must not be negative")
        if self.duration is not None and self.end is not None:
            raise FieldError("end", "give 'duration' or 'end', not both")
        if self.duration is not None and self.duration <= timedelta(0):
            raise FieldError("duration", "must be positive")
        if self.end is not None and self.end <= self.start:
            raise FieldError("end", "must be after start")
        self._check_kind()
        registry = (info.context or {}).get("registry")
        if registry is not None:
            self._check_against(registry)
        return self

    def _check_kind(self) -> None:
        """What one kind's fields must say together."""

    @property
    def targets(self) -> tuple[str, ...] | None:
        """The station ids named, None for every station (of ``station_kind``)."""
        return self.stations if self.stations is not None else self.station

    def _params(self) -> tuple[str, ...] | None:
        return None

    def _check_against(self, registry: Registry) -> None:
        key = "stations" if "stations" in self.model_fields_set else "station"
        for station_id in self.targets or ():
            if station_id not in registry.stations:
                raise FieldError(key, f"station {station_id!r} is not in the registry")
        scenario = self.scenario(0)
        targets = [s for s in registry.stations.values() if scenario.applies_to(s)]
        if not targets and self.targets is None:
            raise ValueError("no station of the registry matches")
        for param in self._params() or ():
            if not any(param in s.parameters for s in targets):
                raise FieldError(
                    "params" if "params" in self.model_fields_set else "param",
                    f"{param!r} is declared for none of the stations it targets "
                    "(use the registry's canonical code, e.g. PM2,5)",
                )

    def scenario(self, line: int) -> Scenario:
        end = self.start + self.duration if self.duration is not None else self.end
        probability = getattr(self, "probability", None)
        return Scenario(
            kind=self.kind,
            name=self.name if self.name is not None else self.kind,
            start=self.start,
            end=end,
            stations=self.targets,
            station_kind=self.station_kind,
            params=self._params(),
            factor=getattr(self, "factor", None),
            value=getattr(self, "value", None),
            probability=1.0 if probability is None else probability,
            offset=getattr(self, "offset", None) or timedelta(0),
            drift_per_hour=getattr(self, "drift_per_hour", None) or timedelta(0),
            group=getattr(self, "group", 3),
            unit=getattr(self, "unit", None),
            how=getattr(self, "how", "truncated"),
            code=getattr(self, "code", "03"),
            line=line,
        )


class _OnParams(_Scenario):
    """A kind that changes readings: of ``param``/``params``, or (where allowed) of all."""

    param: ParamNames = None
    params: ParamNames = None

    def _params(self) -> tuple[str, ...] | None:
        return self.params if self.params is not None else self.param

    def _check_kind(self) -> None:
        if self.kind in _NEEDS_PARAMS and self._params() is None:
            raise ValueError(f"{self.kind} needs 'param' (or 'params')")


class _Exceedance(_OnParams):
    kind: Literal["exceedance"]
    factor: Number | None = Field(default=None, gt=0)
    value: Number | None = None

    def _check_kind(self) -> None:
        super()._check_kind()
        if self.factor is not None and self.value is not None:
            raise FieldError("value", "give 'factor' or 'value', not both")


class _Weather(_OnParams):
    kind: Literal["weather"]
    factor: Number | None = Field(default=None, gt=0)


class _Stuck(_OnParams):
    kind: Literal["stuck"]


class _Missing(_OnParams):
    kind: Literal["missing"]


class _WrongUnit(_OnParams):
    kind: Literal["wrong_unit"]
    unit: str | None = None


class _Calibration(_OnParams):
    kind: Literal["calibration"]


class _Fault(_OnParams):
    kind: Literal["fault"]


class _BadStatus(_OnParams):
    kind: Literal["bad_status"]
    code: Text = "03"


class _Outage(_Scenario):
    kind: Literal["outage"]


class _Backlog(_Scenario):
    kind: Literal["backlog"]


class _Duplicates(_Scenario):
    kind: Literal["duplicates"]
    probability: Number | None = Field(default=None, gt=0, le=1)


class _OutOfOrder(_Scenario):
    kind: Literal["out_of_order"]
    group: int = Field(default=3, ge=2)


class _Malformed(_Scenario):
    kind: Literal["malformed"]
    probability: Number | None = Field(default=None, gt=0, le=1)
    how: MalformedHow = "truncated"


class _ClockDrift(_Scenario):
    kind: Literal["clock_drift"]
    offset: Duration | None = None
    drift_per_hour: Duration | None = None

    def _check_kind(self) -> None:
        if not self.offset and not self.drift_per_hour:
            raise ValueError("clock_drift needs 'offset' and/or 'drift_per_hour'")


def _kind_of(value: Any) -> Any:
    return value.get("kind") if isinstance(value, dict) else None


_AnyScenario = Annotated[
    Annotated[_Exceedance, Tag("exceedance")]
    | Annotated[_Weather, Tag("weather")]
    | Annotated[_Stuck, Tag("stuck")]
    | Annotated[_Missing, Tag("missing")]
    | Annotated[_WrongUnit, Tag("wrong_unit")]
    | Annotated[_Calibration, Tag("calibration")]
    | Annotated[_Fault, Tag("fault")]
    | Annotated[_BadStatus, Tag("bad_status")]
    | Annotated[_Outage, Tag("outage")]
    | Annotated[_Backlog, Tag("backlog")]
    | Annotated[_Duplicates, Tag("duplicates")]
    | Annotated[_OutOfOrder, Tag("out_of_order")]
    | Annotated[_Malformed, Tag("malformed")]
    | Annotated[_ClockDrift, Tag("clock_drift")],
    Discriminator(
        _kind_of,
        custom_error_type="scenario_kind",
        custom_error_message=(
            f"each scenario is a mapping whose 'kind' is one of {', '.join(SCENARIO_KINDS)}"
        ),
    ),
]


class _ScenarioFile(ConfigModel):
    description: str | None = None
    scenarios: list[_AnyScenario]


def scenarios_from_text(
    text: str, source: str = "<text>", registry: Registry | None = None
) -> ScenarioSet:
    """Parse and check a scenario file; with a registry, stations and parameters must exist."""
    data, lines = parse_yaml(text, source, ScenarioError)
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        raise ScenarioError.at(
            source,
            lines,
            "scenarios",
            "the file must contain 'scenarios:' with a list of scenarios",
        )
    doc = validate(
        _ScenarioFile, data, source, lines, ScenarioError, context={"registry": registry}
    )
    scenarios = tuple(
        s.scenario(lines.get(f"scenarios[{i}]", 0)) for i, s in enumerate(doc.scenarios)
    )
    return ScenarioSet(scenarios, source, doc.description or "")


def load_scenarios(path: Path | str, registry: Registry | None = None) -> ScenarioSet:
    path = Path(path)
    return scenarios_from_text(read_config_text(path, ScenarioError), str(path), registry)


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
