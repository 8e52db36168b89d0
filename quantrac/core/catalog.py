"""Parameter and unit catalog: canonical codes, aliases and exact unit conversion.

The catalog is data (``config/parameters.yaml``); this module only loads and answers questions
about it. Lookups never guess: a name that is not a code or a declared alias is unknown.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from quantrac.core.config_files import ConfigError, ConfigModel, read_yaml_file, validate

_CACHE_LIMIT = 10_000


class CatalogError(ConfigError):
    """The catalog file itself is inconsistent (duplicate alias, unknown dimension …)."""


def normalize_name(name: str) -> str:
    """Fold the spellings dataloggers use for one name into one key.

    NFKC turns '³' into '3' and the micro sign into Greek mu; case and white space never
    distinguish two codes or two units in the catalog, so they are dropped.
    """
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(folded.split())


@dataclass(frozen=True, slots=True)
class Unit:
    id: str
    dimension: str
    factor: float


@dataclass(frozen=True, slots=True)
class Parameter:
    code: str
    name_vi: str
    name_en: str
    dimensions: tuple[str, ...]


@dataclass(slots=True)
class Catalog:
    units: dict[str, Unit]
    parameters: dict[str, Parameter]
    _unit_keys: dict[str, str] = field(default_factory=dict)
    _param_keys: dict[str, str] = field(default_factory=dict)
    # Stations repeat the same few spellings; remember each answer (bounded by _CACHE_LIMIT).
    _unit_cache: dict[str, Unit | None] = field(default_factory=dict)
    _param_cache: dict[str, Parameter | None] = field(default_factory=dict)

    def unit(self, name: str) -> Unit | None:
        try:
            return self._unit_cache[name]
        except KeyError:
            pass
        unit_id = self._unit_keys.get(normalize_name(name))
        found = self.units[unit_id] if unit_id is not None else None
        if len(self._unit_cache) < _CACHE_LIMIT:
            self._unit_cache[name] = found
        return found

    def parameter(self, name: str) -> Parameter | None:
        try:
            return self._param_cache[name]
        except KeyError:
            pass
        code = self._param_keys.get(normalize_name(name))
        found = self.parameters[code] if code is not None else None
        if len(self._param_cache) < _CACHE_LIMIT:
            self._param_cache[name] = found
        return found

    def conversion_factor(self, from_unit: Unit, to_unit: Unit) -> float | None:
        """Multiplier turning a value in ``from_unit`` into ``to_unit``; None when not exact."""
        if from_unit.dimension != to_unit.dimension:
            return None
        if from_unit.id == to_unit.id:
            return 1.0
        return from_unit.factor / to_unit.factor

    def accepts(self, parameter: Parameter, unit: Unit) -> bool:
        return unit.dimension in parameter.dimensions


class _UnitSpec(ConfigModel):
    dimension: str
    factor: float = Field(gt=0)
    aliases: list[str] = Field(default_factory=list)


class _ParameterSpec(ConfigModel):
    name_vi: str
    name_en: str
    dimensions: list[str] = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)


class _CatalogFile(ConfigModel):
    units: dict[str, _UnitSpec]
    parameters: dict[str, _ParameterSpec]

    @field_validator("parameters", "units", mode="before")
    @classmethod
    def _string_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    # e.g. an unquoted NO, which YAML 1.1 reads as the boolean false
                    raise ValueError(f"code {key!r} is not a string: quote it")
        return value


def _index(
    entries: dict[str, _UnitSpec] | dict[str, _ParameterSpec],
    kind: str,
    source: str,
    lines: dict[str, int],
) -> dict[str, str]:
    keys: dict[str, str] = {}
    for canonical, spec in entries.items():
        for i, name in enumerate([canonical, *spec.aliases]):
            key = normalize_name(name)
            owner = keys.get(key)
            if owner is not None and owner != canonical:
                where = f"{kind}s.{canonical}" + (f".aliases[{i - 1}]" if i else "")
                raise CatalogError.at(
                    source,
                    lines,
                    where,
                    f"{kind} alias {name!r} names both {owner!r} and {canonical!r}",
                )
            keys[key] = canonical
    return keys


def catalog_from_dict(
    data: Any, source: str = "<catalog>", lines: dict[str, int] | None = None
) -> Catalog:
    """The catalog from parsed YAML; every problem is a CatalogError naming file:line: field."""
    lines = lines or {}
    spec = validate(_CatalogFile, data, source, lines, error=CatalogError)
    units = {
        uid: Unit(id=uid, dimension=u.dimension, factor=float(u.factor))
        for uid, u in spec.units.items()
    }
    dimensions = {u.dimension for u in units.values()}
    parameters = {}
    for code, p in spec.parameters.items():
        unknown = [(i, d) for i, d in enumerate(p.dimensions) if d not in dimensions]
        if unknown:
            i, dim = unknown[0]
            raise CatalogError.at(
                source,
                lines,
                f"parameters.{code}.dimensions[{i}]",
                f"parameter {code!r}: no unit has dimension {dim!r}",
            )
        parameters[code] = Parameter(
            code=code, name_vi=p.name_vi, name_en=p.name_en, dimensions=tuple(p.dimensions)
        )
    return Catalog(
        units=units,
        parameters=parameters,
        _unit_keys=_index(spec.units, "unit", source, lines),
        _param_keys=_index(spec.parameters, "parameter", source, lines),
    )


def load_catalog(path: Path) -> Catalog:
    data, lines = read_yaml_file(path, error=CatalogError)
    return catalog_from_dict(data, str(path), lines)
