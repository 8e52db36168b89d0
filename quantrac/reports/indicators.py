"""Provincial indicators of the seed plans, per province and overall, over a period.

- **No. 23**: the share of facilities required to transmit automatic monitoring data that
  actually transmitted in the period. Required: every facility of the registry with a
  wastewater or emission station, unless ``config/indicators.yaml`` lists them. A facility
  transmitted if any of its stations has any reading (any status) in the period; its
  completeness is the valid readings of all its stations and parameters over those expected.
- **No. 22**: automatic ambient-air stations (in the registry) per urban population, given per
  100,000 people; the population is an input of ``config/indicators.yaml`` with its source.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg
from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from quantrac.core.config_files import (
    ConfigError,
    ConfigModel,
    FieldError,
    read_yaml_file,
    validate,
)
from quantrac.core.registry import Registry, Station
from quantrac.reports.completeness import completeness_report

INDICATORS_FILE_ENV = "QUANTRAC_INDICATORS_FILE"
REQUIRED_KINDS = ("wastewater", "emission")


@dataclass(frozen=True, slots=True)
class UrbanPopulation:
    province: str
    population: int
    year: int | None
    source: str
    illustrative: bool
    source_vi: str | None = None  # the source in Vietnamese, when given as {vi, en}


@dataclass(frozen=True, slots=True)
class IndicatorConfig:
    urban_population: tuple[UrbanPopulation, ...] = ()
    per: int = 100_000
    required_facilities: tuple[tuple[str, str | None], ...] | None = None  # None: the default
    source: str = "<defaults>"


def indicators_path(config_dir: Path) -> Path:
    override = os.environ.get(INDICATORS_FILE_ENV)
    return Path(override) if override else config_dir / "indicators.yaml"


_LENIENT = ConfigDict(extra="ignore", strict=True, frozen=True)  # other keys: notes, ignored


def _positive_int(message: str) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(message)
        return value

    return check


def _year(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError("must be a year")
    return value


def _texts(value: Any) -> dict[str, str]:
    if isinstance(value, dict):  # {vi: "…", en: "…"}: what people read, in each language
        texts = {k: v for k, v in value.items() if isinstance(v, str) and v.strip()}
        if set(texts) != {"vi", "en"}:
            raise ValueError("give both languages: {vi: …, en: …}")
        return texts
    if isinstance(value, str) and value.strip():
        return {"en": value}
    raise ValueError("required: where the figure comes from")


def _with_province(value: Any) -> Any:
    if not isinstance(value, dict) or not isinstance(value.get("province"), str):
        raise ValueError("needs a province name")
    return value


def _mapping(value: Any) -> Any:
    value = value or {}
    if not isinstance(value, dict):
        raise ValueError("expected a mapping")
    return value


def _list(value: Any) -> Any:
    value = value or []
    if not isinstance(value, list):
        raise ValueError("expected a list")
    return tuple(value)


def _facility(value: Any) -> tuple[str, str | None]:
    if isinstance(value, str):
        return (value, None)
    if isinstance(value, dict) and isinstance(value.get("facility"), str):
        province = value.get("province")
        return (value["facility"], str(province) if province else None)
    raise ValueError("a facility name, or {facility, province}")


class _Population(ConfigModel):
    model_config = _LENIENT
    province: str
    population: Annotated[int, BeforeValidator(_positive_int("must be a positive integer"))] = (
        Field(default=None, validate_default=True)
    )
    year: Annotated[int | None, BeforeValidator(_year)] = None
    source: Annotated[dict[str, str], BeforeValidator(_texts)] = Field(
        default=None, validate_default=True
    )
    illustrative: Any = False


class _Indicator22(ConfigModel):
    model_config = _LENIENT
    per: Annotated[int, BeforeValidator(_positive_int("must be a positive integer"))] = 100_000
    urban_population: Annotated[
        tuple[Annotated[_Population, BeforeValidator(_with_province)], ...],
        BeforeValidator(_list),
    ] = ()

    @model_validator(mode="after")
    def _once_each(self) -> _Indicator22:
        names = [p.province for p in self.urban_population]
        if len(set(names)) != len(names):
            raise FieldError("urban_population", "a province is listed twice")
        return self


class _Indicator23(ConfigModel):
    model_config = _LENIENT
    required_facilities: Annotated[
        tuple[Annotated[tuple[str, str | None], BeforeValidator(_facility)], ...] | None,
        BeforeValidator(lambda value: _list(value) or None),
    ] = None


class _IndicatorsFile(ConfigModel):
    model_config = _LENIENT
    indicator_22: Annotated[_Indicator22, BeforeValidator(_mapping)] = _Indicator22()
    indicator_23: Annotated[_Indicator23, BeforeValidator(_mapping)] = _Indicator23()


def parse_indicator_config(
    data: Any, source: str = "<memory>", lines: Mapping[str, int] | None = None
) -> IndicatorConfig:
    """The inputs of the indicators; every problem is a ConfigError naming file:line: field."""
    if data is None:
        return IndicatorConfig(source=source)
    if not isinstance(data, dict):
        raise ConfigError.at(source, lines or {}, "(top level)", "expected a mapping")
    doc = validate(_IndicatorsFile, data, source, lines)
    populations = tuple(
        UrbanPopulation(
            p.province,
            p.population,
            p.year,
            " ".join(p.source["en"].split()),
            bool(p.illustrative),
            " ".join(p.source["vi"].split()) if "vi" in p.source else None,
        )
        for p in doc.indicator_22.urban_population
    )
    return IndicatorConfig(
        populations, doc.indicator_22.per, doc.indicator_23.required_facilities, source
    )


def load_indicator_config(path: Path) -> IndicatorConfig:
    if not path.is_file():
        return IndicatorConfig(source=str(path))
    data, lines = read_yaml_file(path)
    return parse_indicator_config(data, str(path), lines)


@dataclass(frozen=True, slots=True)
class FacilityStatus:
    facility: str
    province: str
    stations: tuple[str, ...]
    transmitted: bool
    completeness: float | None


@dataclass(frozen=True, slots=True)
class Indicator23:
    scope: str  # a province, or "" for all
    required: int
    transmitted: int

    @property
    def value(self) -> float | None:
        return self.transmitted / self.required if self.required else None


@dataclass(frozen=True, slots=True)
class Indicator22:
    province: str  # "" for all provinces with a population
    urban_population: int | None
    air_stations: int
    air_stations_transmitting: int
    per: int
    year: int | None = None
    source: str | None = None
    illustrative: bool = False
    source_vi: str | None = None

    @property
    def per_population(self) -> float | None:
        if not self.urban_population:
            return None
        return self.air_stations / self.urban_population * self.per


@dataclass
class Indicators:
    start: datetime
    end: datetime
    facilities: list[FacilityStatus] = field(default_factory=list)
    indicator_23: Indicator23 = field(default_factory=lambda: Indicator23("", 0, 0))
    indicator_23_by_province: list[Indicator23] = field(default_factory=list)
    indicator_22: list[Indicator22] = field(default_factory=list)
    indicator_22_overall: Indicator22 | None = None


def required_facilities(
    registry: Registry, config: IndicatorConfig
) -> list[tuple[str, str, list[Station]]]:
    """(facility, province, its stations) of every facility required to transmit."""
    by_facility: dict[tuple[str, str], list[Station]] = {}
    for s in registry.stations.values():
        by_facility.setdefault((s.facility, s.province), []).append(s)
    if config.required_facilities is None:
        keys = sorted(
            key
            for key, stations in by_facility.items()
            if any(s.kind in REQUIRED_KINDS for s in stations)
        )
        return [(f, p, sorted(by_facility[(f, p)], key=lambda s: s.id)) for f, p in keys]
    out = []
    for facility, province in config.required_facilities:
        stations = [
            s
            for (f, p), found in by_facility.items()
            if f == facility and (province is None or p == province)
            for s in found
        ]
        where = province or (stations[0].province if stations else "")
        out.append((facility, where, sorted(stations, key=lambda s: s.id)))
    return out


async def stations_with_readings(
    conn: psycopg.AsyncConnection, station_ids: list[str], start: datetime, end: datetime
) -> set[str]:
    """Stations with at least one reading (any status) in [start, end): one index probe each."""
    if not station_ids:
        return set()
    cur = await conn.execute(
        """SELECT s.id FROM unnest(%(ids)s::text[]) AS s(id)
           WHERE EXISTS (SELECT 1 FROM readings r WHERE r.station_id = s.id
                         AND r.measured_at >= %(start)s AND r.measured_at < %(end)s)""",
        {"ids": station_ids, "start": start, "end": end},
    )
    return {r[0] for r in await cur.fetchall()}


async def compute_indicators(
    conn: psycopg.AsyncConnection,
    registry: Registry,
    config: IndicatorConfig,
    start: datetime,
    end: datetime,
    *,
    now: datetime | None = None,
) -> Indicators:
    now = now or datetime.now(UTC)
    result = Indicators(start, end)
    required = required_facilities(registry, config)
    air = [s for s in registry.stations.values() if s.kind == "air"]
    involved = {s.id: s for _, _, stations in required for s in stations}
    involved.update({s.id: s for s in air})
    sending = await stations_with_readings(conn, sorted(involved), start, end)
    completeness = await completeness_report(
        conn, [involved[i] for i in sorted(involved)], start, end, now=now
    )
    for facility, province, stations in required:
        received = expected = 0
        for s in stations:
            total = completeness.total(s.id)
            if total is not None:
                received += total.received
                expected += total.expected
        result.facilities.append(
            FacilityStatus(
                facility=facility,
                province=province,
                stations=tuple(s.id for s in stations),
                transmitted=any(s.id in sending for s in stations),
                completeness=min(1.0, received / expected) if expected else None,
            )
        )
    result.indicator_23 = Indicator23(
        "", len(result.facilities), sum(f.transmitted for f in result.facilities)
    )
    provinces = sorted({f.province for f in result.facilities})
    result.indicator_23_by_province = [
        Indicator23(
            p,
            sum(f.province == p for f in result.facilities),
            sum(f.province == p and f.transmitted for f in result.facilities),
        )
        for p in provinces
    ]
    populations = {p.province: p for p in config.urban_population}
    for province in sorted({s.province for s in air} | set(populations)):
        stations = [s for s in air if s.province == province]
        pop = populations.get(province)
        result.indicator_22.append(
            Indicator22(
                province=province,
                urban_population=pop.population if pop else None,
                air_stations=len(stations),
                air_stations_transmitting=sum(s.id in sending for s in stations),
                per=config.per,
                year=pop.year if pop else None,
                source=pop.source if pop else None,
                illustrative=pop.illustrative if pop else False,
                source_vi=pop.source_vi if pop else None,
            )
        )
    counted = [i for i in result.indicator_22 if i.urban_population]
    if counted:
        result.indicator_22_overall = Indicator22(
            province="",
            urban_population=sum(i.urban_population or 0 for i in counted),
            air_stations=sum(i.air_stations for i in counted),
            air_stations_transmitting=sum(i.air_stations_transmitting for i in counted),
            per=config.per,
            illustrative=any(i.illustrative for i in counted),
        )
    return result


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def indicators_json(ind: Indicators) -> dict[str, Any]:
    def i22(i: Indicator22) -> dict[str, Any]:
        return {
            "province": i.province or None,
            "urban_population": i.urban_population,
            "air_stations": i.air_stations,
            "air_stations_transmitting": i.air_stations_transmitting,
            "per_100k": _round(i.per_population) if i.per == 100_000 else None,
            "per": i.per,
            "value": _round(i.per_population),
            "year": i.year,
            "source": i.source,
            "source_vi": i.source_vi or i.source,
            "illustrative": i.illustrative,
        }

    return {
        "period": {"from": ind.start.isoformat(), "to": ind.end.isoformat()},
        "indicator_23": {
            "value": _round(ind.indicator_23.value),
            "required": ind.indicator_23.required,
            "transmitted": ind.indicator_23.transmitted,
            "by_province": [
                {
                    "province": i.scope,
                    "value": _round(i.value),
                    "required": i.required,
                    "transmitted": i.transmitted,
                }
                for i in ind.indicator_23_by_province
            ],
            "facilities": [
                {
                    "facility": f.facility,
                    "province": f.province,
                    "stations": list(f.stations),
                    "transmitted": f.transmitted,
                    "completeness": _round(f.completeness),
                }
                for f in ind.facilities
            ],
        },
        "indicator_22": [i22(i) for i in ind.indicator_22],
        "indicator_22_overall": i22(ind.indicator_22_overall) if ind.indicator_22_overall else None,
    }
