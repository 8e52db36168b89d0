"""Parameter and unit catalog: canonical codes, aliases and exact unit conversion.

The catalog is data (``config/parameters.yaml``); this module only loads and answers questions
about it. Lookups never guess: a name that is not a code or a declared alias is unknown.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_CACHE_LIMIT = 10_000


class CatalogError(ValueError):
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


def _index(entries: dict[str, Any], kind: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for canonical, spec in entries.items():
        for name in [canonical, *spec.get("aliases", [])]:
            key = normalize_name(str(name))
            owner = keys.get(key)
            if owner is not None and owner != canonical:
                raise CatalogError(f"{kind} alias {name!r} names both {owner!r} and {canonical!r}")
            keys[key] = canonical
    return keys


def catalog_from_dict(data: dict[str, Any]) -> Catalog:
    units = {
        uid: Unit(id=uid, dimension=str(spec["dimension"]), factor=float(spec["factor"]))
        for uid, spec in data["units"].items()
    }
    dimensions = {u.dimension for u in units.values()}
    parameters = {}
    for code, spec in data["parameters"].items():
        if not isinstance(code, str):
            # e.g. an unquoted NO, which YAML 1.1 reads as the boolean false
            raise CatalogError(f"parameter code {code!r} is not a string: quote it")
        dims = tuple(spec["dimensions"])
        unknown = [d for d in dims if d not in dimensions]
        if unknown:
            raise CatalogError(f"parameter {code!r}: no unit has dimension {unknown[0]!r}")
        parameters[code] = Parameter(
            code=code, name_vi=spec["name_vi"], name_en=spec["name_en"], dimensions=dims
        )
    return Catalog(
        units=units,
        parameters=parameters,
        _unit_keys=_index(data["units"], "unit"),
        _param_keys=_index(data["parameters"], "parameter"),
    )


def load_catalog(path: Path) -> Catalog:
    with path.open(encoding="utf-8") as fh:
        return catalog_from_dict(yaml.safe_load(fh))
