"""Station registry: which stations exist, what they measure, which regulation they answer to.

Loaded from YAML (``config/stations.yaml``) and checked completely before use; every error names
the file, the line and the field, so an operator can fix the file without guessing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

import yaml

from quantrac.core.catalog import Catalog, Unit
from quantrac.core.config_files import (
    ConfigError,
    ConfigIssue,
    load_yaml_with_lines,
    nearest_line,
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


class _Checker:
    def __init__(self, source: str, lines: dict[str, int]):
        self.source = source
        self.lines = lines
        self.issues: list[RegistryIssue] = []

    def line_of(self, path: str) -> int:
        return nearest_line(self.lines, path)

    def fail(self, path: str, message: str) -> None:
        self.issues.append(RegistryIssue(self.source, self.line_of(path), path, message))


def _text(
    chk: _Checker, entry: dict[str, Any], key: str, path: str, *, required: bool = True
) -> str | None:
    value = entry.get(key)
    if value is None:
        if required:
            chk.fail(f"{path}.{key}" if key in entry else path, f"'{key}' is required")
        return None
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value).strip() == "":
        chk.fail(f"{path}.{key}", f"'{key}' must be a non-empty string")
        return None
    return str(value)


def _number(chk: _Checker, value: Any, path: str, low: float, high: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        chk.fail(path, "must be a number")
        return None
    if not low <= value <= high:
        chk.fail(path, f"must be between {low} and {high}")
        return None
    return float(value)


def _station(chk: _Checker, entry: Any, path: str, catalog: Catalog) -> Station | None:
    if not isinstance(entry, dict):
        chk.fail(path, "each station must be a mapping")
        return None
    before = len(chk.issues)
    station_id = _text(chk, entry, "id", path)
    if station_id is not None and not _STATION_ID.fullmatch(station_id):
        chk.fail(f"{path}.id", "letters, digits, '_', '.', '-' only (it is part of MQTT topics)")
    name = _text(chk, entry, "name", path)
    kind = _text(chk, entry, "kind", path)
    if kind is not None and kind not in STATION_KINDS:
        chk.fail(f"{path}.kind", f"must be one of {', '.join(STATION_KINDS)}, not {kind!r}")
    facility = _text(chk, entry, "facility", path)
    province = _text(chk, entry, "province", path)

    lat = lon = None
    location = entry.get("location")
    if not isinstance(location, dict):
        chk.fail(
            f"{path}.location" if "location" in entry else path,
            "'location' with lat and lon is required",
        )
    else:
        lat = _number(chk, location.get("lat"), f"{path}.location.lat", -90, 90)
        lon = _number(chk, location.get("lon"), f"{path}.location.lon", -180, 180)

    cadence = entry.get("cadence", DEFAULT_CADENCE_S)
    if isinstance(cadence, bool) or not isinstance(cadence, int) or cadence <= 0:
        chk.fail(f"{path}.cadence", "must be a positive whole number of seconds")

    parameters: dict[str, DeclaredParameter] = {}
    declared = entry.get("parameters")
    if not isinstance(declared, list) or not declared:
        chk.fail(
            f"{path}.parameters" if "parameters" in entry else path,
            "'parameters' must list at least one {code, unit}",
        )
        declared = []
    for i, item in enumerate(declared):
        ppath = f"{path}.parameters[{i}]"
        if not isinstance(item, dict):
            chk.fail(ppath, "each parameter must be a mapping with code and unit")
            continue
        code = _text(chk, item, "code", ppath)
        unit_name = item.get("unit")
        if code is None:
            continue
        param = catalog.parameter(code)
        if param is None:
            chk.fail(f"{ppath}.code", f"unknown parameter code {code!r}")
            continue
        if param.code != code:
            chk.fail(f"{ppath}.code", f"write the canonical code {param.code!r}, not {code!r}")
            continue
        if code in parameters:
            chk.fail(f"{ppath}.code", f"parameter {code!r} is declared twice")
            continue
        if not isinstance(unit_name, str):
            chk.fail(f"{ppath}.unit" if "unit" in item else ppath, "'unit' is required")
            continue
        unit = catalog.unit(unit_name)
        if unit is None:
            chk.fail(f"{ppath}.unit", f"unknown unit {unit_name!r}")
            continue
        if not catalog.accepts(param, unit):
            chk.fail(f"{ppath}.unit", f"{code} cannot be measured in {unit.id}")
            continue
        parameters[code] = DeclaredParameter(code=code, unit=unit)

    regulation = None
    if entry.get("regulation") is not None:
        regulation = _regulation_ref(
            chk, entry["regulation"], f"{path}.regulation", extra=_STATION_REF_FIELDS
        )
    permit = _permit(chk, entry.get("permit"), f"{path}.permit")
    regime = _regime(chk, entry.get("regime"), f"{path}.regime")
    if regime is not None and regulation is None:
        chk.fail(f"{path}.regime", "a regime needs the station's 'regulation'")
    aqi_publishable = entry.get("aqi_publishable")
    if aqi_publishable is not None:
        if not isinstance(aqi_publishable, bool):
            chk.fail(f"{path}.aqi_publishable", "must be true or false")
        elif kind != "air":
            chk.fail(f"{path}.aqi_publishable", "only ambient-air stations publish VN_AQI")

    ftp_name = _text(chk, entry, "ftp_name", path, required=False)
    offset = None
    raw_offset = entry.get("utc_offset")
    if raw_offset is not None:
        if not isinstance(raw_offset, str):
            # YAML 1.1 reads an unquoted +10:00 as the base-60 number 600.
            chk.fail(f"{path}.utc_offset", 'write the offset in quotes, e.g. "+07:00"')
        else:
            try:
                offset = parse_utc_offset(raw_offset)
            except ValueError as exc:
                chk.fail(f"{path}.utc_offset", str(exc))

    known = {
        "id",
        "name",
        "kind",
        "facility",
        "province",
        "location",
        "cadence",
        "parameters",
        "regulation",
        "ftp_name",
        "utc_offset",
        "permit",
        "regime",
        "aqi_publishable",
    }
    for key in entry:
        if key not in known:
            chk.fail(f"{path}.{key}", f"unknown field (expected one of {', '.join(sorted(known))})")

    if len(chk.issues) > before:
        return None
    assert station_id and name and kind and facility and province
    assert lat is not None and lon is not None
    return Station(
        id=station_id,
        name=name,
        kind=kind,
        facility=facility,
        province=province,
        lat=lat,
        lon=lon,
        cadence_s=cadence,
        parameters=parameters,
        regulation=regulation,
        ftp_name=ftp_name,
        utc_offset=offset,
        permit=permit,
        regime=regime,
        aqi_publishable=aqi_publishable if isinstance(aqi_publishable, bool) else None,
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


def _date(chk: _Checker, value: Any, path: str) -> date | None:
    if value is None:
        return None
    try:
        return as_date(value)
    except ValueError as exc:
        chk.fail(path, str(exc))
        return None


def _entries(chk: _Checker, raw: Any, path: str, what: str) -> list[dict[str, Any]]:
    items = raw or []
    if not isinstance(items, list):
        chk.fail(path, f"must be a list of {what}")
        return []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            chk.fail(f"{path}[{i}]", "each entry must be a mapping")
    return [dict(item) for item in items if isinstance(item, dict)]


def _known_keys(chk: _Checker, entry: dict[str, Any], path: str, known: set[str]) -> None:
    for key in entry:
        if key not in known:
            chk.fail(f"{path}.{key}", f"unknown field (expected one of {', '.join(sorted(known))})")


def _regulation_ref(
    chk: _Checker, reg: Any, rpath: str, *, extra: frozenset[str] = frozenset()
) -> RegulationRef | None:
    """{id, column, coefficients} plus the ``extra`` fields allowed where it stands."""
    if not isinstance(reg, dict):
        chk.fail(rpath, "must be a mapping with id, column and coefficients")
        return None
    _known_keys(chk, reg, rpath, {"id", "column", "coefficients"} | extra)
    reg_id = _text(chk, reg, "id", rpath)
    column = reg.get("column")
    coefficients = reg.get("coefficients", {}) or {}
    if column is not None and not isinstance(column, str):
        chk.fail(f"{rpath}.column", "must be a string such as 'A' or 'B'")
    if not isinstance(coefficients, dict):
        chk.fail(f"{rpath}.coefficients", "must be a mapping of inputs")
    permits = _entries(
        chk, reg.get("permit_limits"), f"{rpath}.permit_limits", "{param, max|min, source}"
    )
    sector = None
    if reg.get("sector") is not None:
        sector = _regulation_ref(chk, reg["sector"], f"{rpath}.sector")
    if reg_id is None or not isinstance(coefficients, dict):
        return None
    return RegulationRef(reg_id, column, dict(coefficients), tuple(permits), sector)


def _permit(chk: _Checker, raw: Any, path: str) -> Permit | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        chk.fail(path, "must be a mapping with number, issued_on, issued_by and limits")
        return None
    _known_keys(chk, raw, path, {"number", "issued_on", "issued_by", "limits"})
    number = _text(chk, raw, "number", path)
    issued_on = _date(chk, raw.get("issued_on"), f"{path}.issued_on")
    issued_by = _text(chk, raw, "issued_by", path, required=False)
    limits = _entries(chk, raw.get("limits"), f"{path}.limits", "{param, max|min}")
    if number is None:
        return None
    return Permit(number, issued_on, issued_by, tuple(limits))


def _regime(chk: _Checker, raw: Any, path: str) -> Regime | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        chk.fail(path, "must be a mapping with status and basis")
        return None
    _known_keys(chk, raw, path, {"status", "basis", "switch_on", "next"})
    status = raw.get("status")
    if status not in REGIME_STATUSES:
        chk.fail(f"{path}.status" if "status" in raw else path, "must be existing or new")
    basis = _text(chk, raw, "basis", path)
    switch_on = _date(chk, raw.get("switch_on"), f"{path}.switch_on")
    following = None
    if raw.get("next") is not None:
        # The permit's limits are the station's (permit.limits), not the next regulation's.
        following = _regulation_ref(chk, raw["next"], f"{path}.next", extra=frozenset({"sector"}))
    if status == "new" and ("switch_on" in raw or "next" in raw):
        chk.fail(path, "switch_on and next are for existing facilities; a new one has none")
    if status not in REGIME_STATUSES or basis is None:
        return None
    return Regime(str(status), basis, switch_on, following)


def registry_from_text(text: str, catalog: Catalog, source: str = "<text>") -> Registry:
    try:
        data, lines = load_yaml_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise RegistryError([RegistryIssue(source, line, "(yaml)", str(exc))]) from None
    chk = _Checker(source, lines)
    if not isinstance(data, dict) or not isinstance(data.get("stations"), list):
        chk.fail("stations", "the file must contain 'stations:' with a list of stations")
        raise RegistryError(chk.issues)
    stations: dict[str, Station] = {}
    ftp_names: dict[str, str] = {}
    for i, entry in enumerate(data["stations"]):
        path = f"stations[{i}]"
        station = _station(chk, entry, path, catalog)
        if station is None:
            continue
        if station.id in stations:
            chk.fail(f"{path}.id", f"station id {station.id!r} is used twice")
            continue
        if station.ftp_name:
            other = ftp_names.get(station.ftp_name.casefold())
            if other:
                chk.fail(f"{path}.ftp_name", f"ftp_name also used by station {other!r}")
                continue
            ftp_names[station.ftp_name.casefold()] = station.id
        stations[station.id] = station
    if chk.issues:
        raise RegistryError(chk.issues)
    return Registry(stations=stations, source=source)


def load_registry(path: Path, catalog: Catalog) -> Registry:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError([RegistryIssue(str(path), 0, "(file)", str(exc))]) from None
    return registry_from_text(text, catalog, source=str(path))
