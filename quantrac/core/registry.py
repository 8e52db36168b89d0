"""Station registry: which stations exist, what they measure, which regulation they answer to.

Loaded from YAML (``config/stations.yaml``) and checked completely before use; every error names
the file, the line and the field, so an operator can fix the file without guessing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

from quantrac.core.catalog import Catalog, Unit
from quantrac.core.config_files import (
    ConfigError,
    ConfigIssue,
    ConfigModel,
    FieldError,
    nearest_line,
    parse_yaml,
    read_config_text,
    validate,
)
from quantrac.core.time import parse_utc_offset

STATION_KINDS = ("air", "wastewater", "emission")
DEFAULT_CADENCE_S = 300
_STATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


# One issue form and one error class for every configuration file (core/config_files.py).
RegistryIssue = ConfigIssue


class RegistryError(ConfigError):
    """stations.yaml is invalid; each issue names file, line and field."""


@dataclass(frozen=True, slots=True)
class DeclaredParameter:
    code: str
    unit: Unit


@dataclass(frozen=True, slots=True)
class RegulationRef:
    """What the alert engine needs to find a station's limits; ingest only carries it."""

    id: str
    column: str | None
    coefficients: dict[str, Any]
    # Stricter limits from the facility's environmental permit; alerts checks their content.
    permit_limits: tuple[dict[str, Any], ...] = ()
    # A sector regulation (QCVN 23:2009 for cement kilns …) that takes precedence over ``id``.
    sector: RegulationRef | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "column": self.column,
            "coefficients": self.coefficients,
            "permit_limits": [_json_safe(p) for p in self.permit_limits],
            "sector": self.sector.to_json() if self.sector else None,
        }


REGIME_STATUSES = ("existing", "new")
_STATION_REF_FIELDS = frozenset({"permit_limits", "sector"})


@dataclass(frozen=True, slots=True)
class Permit:
    """The facility's environmental permit: who issued it, when, and the limits it sets."""

    number: str
    issued_on: date | None = None
    issued_by: str | None = None
    # Limit entries as written ({param, averaging, max/min, note …}); alerts checks them.
    limits: tuple[dict[str, Any], ...] = ()

    def citation(self, lang: str = "vi") -> str:
        """'Giấy phép môi trường số 123/GPMT-UBND ngày 15/06/2024 (UBND tỉnh Bắc Giang)', from
        the translation table (config/messages/common.yaml)."""
        from quantrac.core.i18n import translate

        text = translate("permit.citation", lang, number=self.number)
        if self.issued_on:
            text += translate("permit.issued_on", lang, date=f"{self.issued_on:%d/%m/%Y}")
        if self.issued_by:
            text += f" ({self.issued_by})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "issued_on": self.issued_on.isoformat() if self.issued_on else None,
            "issued_by": self.issued_by,
            "limits": [_json_safe(p) for p in self.limits],
        }


@dataclass(frozen=True, slots=True)
class Regime:
    """Where the facility stands in the 2025 transition, and why.

    ``existing``: the facility keeps ``regulation`` (the old regulation) until the transition
    ends or ``switch_on`` (an earlier date its permit sets), then ``next`` applies. ``new``: the
    2025 regulation applies from its first day.
    """

    status: str  # "existing" | "new"
    basis: str  # why: "ĐTM phê duyệt năm 2019 (QĐ 123/QĐ-UBND)"
    switch_on: date | None = None
    next: RegulationRef | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "basis": self.basis,
            "switch_on": self.switch_on.isoformat() if self.switch_on else None,
            "next": self.next.to_json() if self.next else None,
        }


def _json_safe(value: Any) -> Any:
    """Unquoted YAML dates (effective_from: 2024-01-01) become ISO text in the stored row."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


@dataclass(frozen=True, slots=True)
class Station:
    id: str
    name: str
    kind: str
    facility: str
    province: str
    lat: float
    lon: float
    cadence_s: int
    parameters: dict[str, DeclaredParameter]
    regulation: RegulationRef | None
    ftp_name: str | None = None
    utc_offset: tzinfo | None = None
    permit: Permit | None = None
    regime: Regime | None = None
    # Ambient stations: may this station publish VN_AQI (Circular 10/2021 Art. 29)? None: not said.
    aqi_publishable: bool | None = None

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "facility": self.facility,
            "province": self.province,
            "lat": self.lat,
            "lon": self.lon,
            "cadence_s": self.cadence_s,
            "parameters": [{"code": p.code, "unit": p.unit.id} for p in self.parameters.values()],
            # The regime and the permit travel with the regulation (one JSON column).
            "regulation": None
            if self.regulation is None
            else {
                **self.regulation.to_json(),
                "permit": self.permit.to_json() if self.permit else None,
                "regime": self.regime.to_json() if self.regime else None,
            },
            "ftp_name": self.ftp_name,
            "aqi_publishable": self.aqi_publishable,
        }


@dataclass(slots=True)
class Registry:
    stations: dict[str, Station]
    source: str = "<memory>"
    _by_ftp_name: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for station in self.stations.values():
            if station.ftp_name:
                self._by_ftp_name[station.ftp_name.casefold()] = station.id

    def get(self, station_id: str) -> Station | None:
        return self.stations.get(station_id)

    def for_file_prefix(self, prefix: str, station_part: str) -> Station | None:
        """The station a TT10 file name belongs to: its ftp_name, else its station id."""
        station_id = self._by_ftp_name.get(prefix.casefold())
        if station_id is None and station_part in self.stations:
            station_id = station_part
        return self.stations.get(station_id) if station_id else None


# --- Validation --------------------------------------------------------------------------------
# The shape of stations.yaml is the models below; what needs the parameter catalog is checked
# with it (the validation context), what needs the whole file (ids used twice) by the loader.

_LENIENT = ConfigDict(extra="ignore", strict=True, frozen=True)  # keys the file never checked


def _text_of(key: str, *, required: bool = True) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None:
            if required:
                raise ValueError(f"'{key}' is required")
            return None
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            raise ValueError(f"'{key}' must be a non-empty string")
        return str(value)

    return check


def _coordinate(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError("must be a number")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return float(value)

    return check


def _mapping(message: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(message)
        return value

    return check


def _entries(what: str) -> Callable[[Any], tuple[dict[Any, Any], ...]]:
    def check(value: Any) -> tuple[dict[Any, Any], ...]:
        items = value or []
        if not isinstance(items, list):
            raise ValueError(f"must be a list of {what}")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise FieldError(i, "each entry must be a mapping")
        return tuple(dict(item) for item in items)

    return check


def _mapping_or_none(message: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        return None if value is None else _mapping(message)(value)

    return check


def _date(value: Any) -> date | None:
    return None if value is None else as_date(value)


def _column(value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise ValueError("must be a string such as 'A' or 'B'")
    return value


def _coefficients(value: Any) -> dict[Any, Any]:
    value = value or {}
    if not isinstance(value, dict):
        raise ValueError("must be a mapping of inputs")
    return dict(value)


def _kind(value: Any) -> str | None:
    kind = _text_of("kind")(value)
    if kind not in STATION_KINDS:
        raise ValueError(f"must be one of {', '.join(STATION_KINDS)}, not {kind!r}")
    return kind


def _station_id(value: Any) -> str | None:
    station_id = _text_of("id")(value)
    if station_id is not None and not _STATION_ID.fullmatch(station_id):
        raise ValueError("letters, digits, '_', '.', '-' only (it is part of MQTT topics)")
    return station_id


def _cadence(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("must be a positive whole number of seconds")
    return value


def _parameter_list(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise ValueError("'parameters' must list at least one {code, unit}")
    return tuple(value)


def _unit(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("'unit' is required")
    return value


def _status(value: Any) -> str:
    if value not in REGIME_STATUSES:
        raise ValueError("must be existing or new")
    return str(value)


def _offset(value: Any) -> tzinfo | None:
    if value is None:
        return None
    if not isinstance(value, str):
        # YAML 1.1 reads an unquoted +10:00 as the base-60 number 600.
        raise ValueError('write the offset in quotes, e.g. "+07:00"')
    return parse_utc_offset(value)


def _boolean(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


Date = Annotated[Any, BeforeValidator(_date)]
_REF = "must be a mapping with id, column and coefficients"


class _Location(ConfigModel):
    model_config = _LENIENT
    lat: Annotated[float, BeforeValidator(_coordinate(-90, 90))] = Field(
        default=None, validate_default=True
    )
    lon: Annotated[float, BeforeValidator(_coordinate(-180, 180))] = Field(
        default=None, validate_default=True
    )


class _Parameter(ConfigModel):
    model_config = _LENIENT
    code: Annotated[str, BeforeValidator(_text_of("code"))]
    unit: Annotated[str, BeforeValidator(_unit)]

    @model_validator(mode="after")
    def _in_catalog(self, info: ValidationInfo) -> _Parameter:
        catalog: Catalog = (info.context or {})["catalog"]
        param = catalog.parameter(self.code)
        if param is None:
            raise FieldError("code", f"unknown parameter code {self.code!r}")
        if param.code != self.code:
            raise FieldError("code", f"write the canonical code {param.code!r}, not {self.code!r}")
        unit = catalog.unit(self.unit)
        if unit is None:
            raise FieldError("unit", f"unknown unit {self.unit!r}")
        if not catalog.accepts(param, unit):
            raise FieldError("unit", f"{self.code} cannot be measured in {unit.id}")
        return self


class _Ref(ConfigModel):
    id: Annotated[str, BeforeValidator(_text_of("id"))]
    column: Annotated[str | None, BeforeValidator(_column)] = None
    coefficients: Annotated[dict[Any, Any], BeforeValidator(_coefficients)] = Field(
        default_factory=dict
    )

    def ref(self) -> RegulationRef:
        permits: tuple[dict[Any, Any], ...] = getattr(self, "permit_limits", ())
        sector: _Ref | None = getattr(self, "sector", None)
        return RegulationRef(
            self.id, self.column, dict(self.coefficients), permits, sector.ref() if sector else None
        )


class _NextRef(_Ref):
    sector: Annotated[_Ref | None, BeforeValidator(_mapping_or_none(_REF))] = None


class _StationRef(_NextRef):
    permit_limits: Annotated[
        tuple[dict[Any, Any], ...], BeforeValidator(_entries("{param, max|min, source}"))
    ] = ()


class _Permit(ConfigModel):
    number: Annotated[str, BeforeValidator(_text_of("number"))]
    issued_on: Date = None
    issued_by: Annotated[str | None, BeforeValidator(_text_of("issued_by", required=False))] = None
    limits: Annotated[
        tuple[dict[Any, Any], ...], BeforeValidator(_entries("{param, max|min}"))
    ] = ()


class _Regime(ConfigModel):
    status: Annotated[str, BeforeValidator(_status)]
    basis: Annotated[str, BeforeValidator(_text_of("basis"))]
    switch_on: Date = None
    next: Annotated[_NextRef | None, BeforeValidator(_mapping_or_none(_REF))] = None

    @model_validator(mode="after")
    def _existing_only(self) -> _Regime:
        if self.status == "new" and {"switch_on", "next"} & self.model_fields_set:
            raise ValueError("switch_on and next are for existing facilities; a new one has none")
        return self


class _Station(ConfigModel):
    id: Annotated[str, BeforeValidator(_station_id)]
    name: Annotated[str, BeforeValidator(_text_of("name"))]
    kind: Annotated[str, BeforeValidator(_kind)]
    facility: Annotated[str, BeforeValidator(_text_of("facility"))]
    province: Annotated[str, BeforeValidator(_text_of("province"))]
    location: Annotated[
        _Location, BeforeValidator(_mapping("'location' with lat and lon is required"))
    ]
    cadence: Annotated[int, BeforeValidator(_cadence)] = DEFAULT_CADENCE_S
    parameters: Annotated[
        tuple[
            Annotated[
                _Parameter,
                BeforeValidator(_mapping("each parameter must be a mapping with code and unit")),
            ],
            ...,
        ],
        BeforeValidator(_parameter_list),
    ]
    regulation: Annotated[_StationRef | None, BeforeValidator(_mapping_or_none(_REF))] = None
    ftp_name: Annotated[str | None, BeforeValidator(_text_of("ftp_name", required=False))] = None
    utc_offset: Annotated[Any, BeforeValidator(_offset)] = None
    permit: Annotated[
        _Permit | None,
        BeforeValidator(
            _mapping_or_none("must be a mapping with number, issued_on, issued_by and limits")
        ),
    ] = None
    regime: Annotated[
        _Regime | None, BeforeValidator(_mapping_or_none("must be a mapping with status and basis"))
    ] = None
    aqi_publishable: Annotated[bool | None, BeforeValidator(_boolean)] = None

    @model_validator(mode="after")
    def _consistent(self) -> _Station:
        seen: set[str] = set()
        for i, param in enumerate(self.parameters):
            if param.code in seen:
                raise FieldError(
                    f"parameters[{i}].code", f"parameter {param.code!r} is declared twice"
                )
            seen.add(param.code)
        if self.regime is not None and self.regulation is None:
            raise FieldError("regime", "a regime needs the station's 'regulation'")
        if self.aqi_publishable is not None and self.kind != "air":
            raise FieldError("aqi_publishable", "only ambient-air stations publish VN_AQI")
        return self

    def station(self, catalog: Catalog) -> Station:
        parameters = {}
        for p in self.parameters:
            unit = catalog.unit(p.unit)
            assert unit is not None  # checked by _Parameter
            parameters[p.code] = DeclaredParameter(code=p.code, unit=unit)
        regime = None
        if self.regime is not None:
            r = self.regime
            regime = Regime(r.status, r.basis, r.switch_on, r.next.ref() if r.next else None)
        permit = None
        if self.permit is not None:
            permit = Permit(
                self.permit.number, self.permit.issued_on, self.permit.issued_by, self.permit.limits
            )
        return Station(
            id=self.id,
            name=self.name,
            kind=self.kind,
            facility=self.facility,
            province=self.province,
            lat=self.location.lat,
            lon=self.location.lon,
            cadence_s=self.cadence,
            parameters=parameters,
            regulation=self.regulation.ref() if self.regulation else None,
            ftp_name=self.ftp_name,
            utc_offset=self.utc_offset,
            permit=permit,
            regime=regime,
            aqi_publishable=self.aqi_publishable,
        )


# A missing field is reported at the field that should hold it, as the file's users know it.
_MISSING = {
    "location": "'location' with lat and lon is required",
    "parameters": "'parameters' must list at least one {code, unit}",
    "unit": "'unit' is required",
    "status": "must be existing or new",
}


def _as_written(issue: RegistryIssue) -> RegistryIssue:
    if issue.message != "required field missing":
        return issue
    parent, _, key = issue.field.rpartition(".")
    return RegistryIssue(
        issue.file, issue.line, parent or issue.field, _MISSING.get(key, f"'{key}' is required")
    )


def as_date(value: Any) -> date:
    """A date as YAML gives it (unquoted) or as ISO text; ValueError naming the rule otherwise."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"must be a date such as 2026-01-01, not {value!r}")


def registry_from_text(text: str, catalog: Catalog, source: str = "<text>") -> Registry:
    data, lines = parse_yaml(text, source, RegistryError)
    if not isinstance(data, dict) or not isinstance(data.get("stations"), list):
        raise RegistryError.at(
            source, lines, "stations", "the file must contain 'stations:' with a list of stations"
        )
    issues: list[RegistryIssue] = []
    stations: dict[str, Station] = {}
    ftp_names: dict[str, str] = {}
    for i, entry in enumerate(data["stations"]):
        path = f"stations[{i}]"
        if not isinstance(entry, dict):
            issues.append(
                RegistryIssue(
                    source, nearest_line(lines, path), path, "each station must be a mapping"
                )
            )
            continue
        try:
            doc = validate(
                _Station, entry, source, lines, RegistryError, path, context={"catalog": catalog}
            )
        except RegistryError as exc:
            issues.extend(_as_written(issue) for issue in exc.issues)
            continue
        station = doc.station(catalog)
        if station.id in stations:
            issues.append(
                RegistryIssue(
                    source,
                    nearest_line(lines, f"{path}.id"),
                    f"{path}.id",
                    f"station id {station.id!r} is used twice",
                )
            )
            continue
        if station.ftp_name:
            other = ftp_names.get(station.ftp_name.casefold())
            if other:
                issues.append(
                    RegistryIssue(
                        source,
                        nearest_line(lines, f"{path}.ftp_name"),
                        f"{path}.ftp_name",
                        f"ftp_name also used by station {other!r}",
                    )
                )
                continue
            ftp_names[station.ftp_name.casefold()] = station.id
        stations[station.id] = station
    if issues:
        raise RegistryError(issues)
    return Registry(stations=stations, source=source)


def load_registry(path: Path, catalog: Catalog) -> Registry:
    return registry_from_text(read_config_text(path, RegistryError), catalog, source=str(path))
