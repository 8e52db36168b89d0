"""Regulation catalog: QCVN limit tables, coefficient tables and penalty bands, as data.

One YAML file per regulation version in ``config/regulations/`` (format in its README.md), plus
penalty-band files. Every file is checked completely against the parameter catalog before use,
and every problem names the file, the line and the field, so a user can add QCVN 40:2025 or
QCVN 19:2024 as a file without touching code.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from quantrac.core.catalog import Catalog
from quantrac.core.config_files import ConfigError
from quantrac.core.registry import RegistryIssue, as_date, load_yaml_with_lines, nearest_line

REGULATION_FORMAT = "quantrac-regulation/1"
PENALTY_FORMAT = "quantrac-penalty-bands/1"
REGULATION_KINDS = ("wastewater", "emission", "air")
PENALTY_KINDS = ("wastewater", "emission")
AVERAGING_PERIODS = ("1h", "8h", "24h", "year")
# The tags of regulations.md: H, M, L, and the in-between forms it uses (L-M, M-H, M-).
CONFIDENCE_PATTERN = re.compile(r"[HML](-[HML]?)?")
# Oxygen in dry air: an O2 reference at or above it would divide by zero in the correction.
O2_IN_AIR_PERCENT = 20.9


class RegulationError(ConfigError):
    """A regulation file is invalid; each issue names file, line and field (still checked by
    hand below: its rules need the whole file)."""


@dataclass(frozen=True, slots=True)
class Provenance:
    source: str
    confidence: str
    note: str = ""

    @property
    def unverified(self) -> bool:
        """regulations.md asks for a check of every [L] value (and L-M) before relying on it."""
        return self.confidence.startswith("L")


def range_text(symbol: str, over: float | None, up_to: float | None) -> str:
    """'Q ≤ 50', '50 < Q ≤ 200', 'Q > 500': the regulations' own way of writing a band."""
    if over is None and up_to is None:
        return f"any {symbol}"
    if over is None:
        return f"{symbol} ≤ {number_text(up_to)}"
    if up_to is None:
        return f"{symbol} > {number_text(over)}"
    return f"{number_text(over)} < {symbol} ≤ {number_text(up_to)}"


def number_text(value: float | None) -> str:
    if value is None:
        return "–"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.9f}".rstrip("0").rstrip(".")


@dataclass(frozen=True, slots=True)
class Band:
    """One row of a coefficient table: over < x ≤ up_to gives value."""

    over: float | None
    up_to: float | None
    value: float

    def contains(self, x: float) -> bool:
        return (self.over is None or x > self.over) and (self.up_to is None or x <= self.up_to)


@dataclass(frozen=True, slots=True)
class CoefficientRule:
    """How a coefficient follows from a station's inputs: one of four shapes.

    fixed ``value``; ``input`` + ``bands`` (numeric input looked up in a table); ``input`` +
    ``allowed`` (the station gives the value itself, e.g. QCVN 14's K); ``select_by`` + ``cases``
    (a categorical input such as the receiving water, each case a rule of its own).
    """

    meaning_vi: str = ""
    meaning_en: str = ""
    value: float | None = None
    input: str | None = None
    symbol: str = ""
    unit: str = ""
    bands: tuple[Band, ...] = ()
    allowed: tuple[float, ...] = ()
    default: float | None = None
    default_note_vi: str = ""
    default_note_en: str = ""
    select_by: str | None = None
    cases: dict[str, CoefficientRule] = field(default_factory=dict)

    def inputs(self) -> set[str]:
        names = {n for n in (self.input, self.select_by) if n}
        for case in self.cases.values():
            names |= case.inputs()
        return names

    def value_count(self) -> int:
        own = len(self.bands) + len(self.allowed) + (self.value is not None)
        return own + (self.default is not None) + sum(c.value_count() for c in self.cases.values())


@dataclass(frozen=True, slots=True)
class Coefficient:
    name: str
    meaning_vi: str
    meaning_en: str
    rule: CoefficientRule
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class Category:
    """A source category with limits of its own (QCVN 19:2024: per category O2 reference)."""

    id: str
    meaning_vi: str
    meaning_en: str
    o2_reference_percent: float | None = None
    provenance: Provenance | None = None  # of the O2 reference, when the file gives one

    @property
    def unverified(self) -> bool:
        return self.provenance is not None and self.provenance.unverified


@dataclass(frozen=True, slots=True)
class FlowBand:
    id: str
    over: float | None
    up_to: float | None

    def contains(self, x: float) -> bool:
        return (self.over is None or x > self.over) and (self.up_to is None or x <= self.up_to)


@dataclass(frozen=True, slots=True)
class FlowBands:
    """Limits that differ by discharge flow (QCVN 40:2025) instead of a Kf coefficient."""

    input: str
    symbol: str
    unit: str
    bands: tuple[FlowBand, ...]

    def band_for(self, x: float) -> FlowBand | None:
        return next((b for b in self.bands if b.contains(x)), None)


@dataclass(frozen=True, slots=True)
class RegulationLimit:
    """One value of a table: a parameter, column, averaging period and date range."""

    param: str
    unit: str
    averaging: str
    column: str | None
    maximum: float | None
    minimum: float | None
    valid_from: date | None  # first day it applies (Vietnam calendar); None: since always
    valid_to: date | None  # first day it no longer applies; None: no end
    category: str | None
    flow_band: str | None
    provenance: Provenance
    line: int = 0

    @property
    def unverified(self) -> bool:
        return self.provenance.unverified


@dataclass(frozen=True, slots=True)
class Transition:
    """How facilities move to this regulation from the ones it replaces (the 2025 reform).

    Existing facilities keep a replaced regulation until ``existing_until`` (the first day they no
    longer may; None: not known); new facilities apply this one from its ``effective_from``.
    """

    replaces: tuple[str, ...]
    existing_until: date | None
    existing_vi: str  # who counts as an existing facility
    existing_en: str
    provenance: Provenance

    def existing(self, lang: str = "vi") -> str:
        return self.existing_en if lang == "en" else self.existing_vi


@dataclass(frozen=True, slots=True)
class Regulation:
    id: str
    title_vi: str
    title_en: str
    kind: str
    effective_from: date | None
    effective_to: date | None  # first day it no longer applies
    replaced_by: str | None
    columns: dict[str, str]  # column → meaning (English)
    o2_reference_percent: float | None
    provenance: Provenance
    path: str
    issued_by: str | None = None
    columns_vi: dict[str, str] = field(default_factory=dict)
    default_averaging: str | None = None
    averaging_provenance: Provenance | None = None
    coefficients: tuple[Coefficient, ...] = ()
    coefficients_not_applied_to: frozenset[str] = frozenset()
    categories: dict[str, Category] = field(default_factory=dict)
    flow_bands: FlowBands | None = None
    limits: tuple[RegulationLimit, ...] = ()
    # The numeric table is not (fully) in the catalog: why, and what to do. Empty: complete.
    limits_missing_vi: str = ""
    limits_missing_en: str = ""
    transition: Transition | None = None
    sector_of: str | None = None  # a sector regulation: the general one it takes precedence over
    sector_vi: str = ""  # the sector ("cement kilns")
    sector_en: str = ""
    # Parameters a station measures for the conditions (flow, O2 …) that no limit is expected for.
    not_limited: frozenset[str] = frozenset()
    column_choice_vi: str = ""  # how a facility's column is chosen
    column_choice_en: str = ""
    column_choice_provenance: Provenance | None = None
    supplements: tuple[str, ...] = ()  # table files that add limit rows (``extends:``)

    @property
    def limits_missing(self) -> bool:
        return bool(self.limits_missing_en)

    def numbers(self) -> str:
        """'complete', 'missing' (no number at all) or 'partial' (rows, the table incomplete)."""
        if not self.limits_missing:
            return "complete"
        return "partial" if self.limits else "missing"

    def missing_text(self, lang: str = "vi") -> str:
        return self.limits_missing_en if lang == "en" else self.limits_missing_vi

    def sector(self, lang: str = "vi") -> str:
        return self.sector_en if lang == "en" else self.sector_vi

    def column_choice(self, lang: str = "vi") -> str:
        return self.column_choice_en if lang == "en" else self.column_choice_vi

    def title(self, lang: str = "vi") -> str:
        return self.title_en if lang == "en" else self.title_vi

    def column_meaning(self, column: str, lang: str = "vi") -> str:
        table = self.columns if lang == "en" else self.columns_vi
        return table.get(column, "")

    def inputs(self) -> set[str]:
        """The station inputs (registry ``regulation.coefficients`` keys) this regulation reads."""
        names: set[str] = set()
        for coefficient in self.coefficients:
            names |= coefficient.rule.inputs()
        if self.flow_bands is not None:
            names.add(self.flow_bands.input)
        if self.categories:
            names.add("category")
        return names

    def coefficients_apply(self, param: str) -> bool:
        return param not in self.coefficients_not_applied_to

    def unverified_count(self) -> int:
        """Unverified limit values plus unverified coefficient-table values."""
        count = sum(1 for limit in self.limits if limit.unverified)
        count += sum(1 for c in self.categories.values() if c.unverified)
        for coefficient in self.coefficients:
            if coefficient.provenance.unverified:
                count += coefficient.rule.value_count()
        return count


@dataclass(frozen=True, slots=True)
class FineTier:
    """Fines of one band by daily wastewater volume: over < m3/day ≤ up_to (individuals)."""

    over_m3_day: float | None
    up_to_m3_day: float | None
    min_vnd: int
    max_vnd: int


@dataclass(frozen=True, slots=True)
class PenaltyBand:
    label: str  # "<1.1", "1.1–<1.5", "≥10"
    lower: float  # lower ≤ multiple (the first band starts just above 1: at 1 it is compliant)
    upper: float | None  # multiple < upper; None: no upper end
    article: str
    consequence_vi: str
    consequence_en: str
    unverified: bool
    kind: str = ""
    document: str = ""
    provenance: Provenance | None = None
    fine_tiers: tuple[FineTier, ...] = ()
    clause: str = ""  # "khoản 1" where a source gives it; "" when not verified (reports say so)
    clause_provenance: Provenance | None = None  # the source that names the clause

    def contains(self, multiple: float) -> bool:
        return multiple >= self.lower and (self.upper is None or multiple < self.upper)

    def consequence(self, lang: str = "vi") -> str:
        return self.consequence_en if lang == "en" else self.consequence_vi


@dataclass(frozen=True, slots=True)
class PenaltySchedule:
    id: str
    title_vi: str
    title_en: str
    effective_from: date | None
    provenance: Provenance
    path: str
    bands: dict[str, tuple[PenaltyBand, ...]]

    def unverified_count(self) -> int:
        return sum(1 for bands in self.bands.values() for b in bands if b.unverified)


@dataclass(slots=True)
class RegulationCatalog:
    regulations: dict[str, Regulation] = field(default_factory=dict)
    penalties: list[PenaltySchedule] = field(default_factory=list)

    def get(self, regulation_id: str) -> Regulation | None:
        return self.regulations.get(regulation_id)

    def all(self) -> list[Regulation]:
        return sorted(self.regulations.values(), key=lambda r: r.id)

    def successor(self, regulation_id: str) -> Regulation | None:
        """The regulation whose transition replaces this one (QCVN 40:2011 → QCVN 40:2025)."""
        for reg in self.all():
            if reg.transition is not None and regulation_id in reg.transition.replaces:
                return reg
        old = self.regulations.get(regulation_id)
        return self.regulations.get(old.replaced_by) if old and old.replaced_by else None

    def band_for(self, kind: str, multiple: float) -> PenaltyBand | None:
        """The Decree 45/2022 band of an exceedance multiple; None within the limit or for air."""
        if not math.isfinite(multiple) or multiple <= 1.0:
            return None
        for schedule in self.penalties:
            for band in schedule.bands.get(kind, ()):
                if band.contains(multiple):
                    return band
        return None


# --- Loading -----------------------------------------------------------------------------------


class _Reader:
    """Field access on one file's data that records problems with their line instead of raising."""

    def __init__(self, source: str, lines: dict[str, int], catalog: Catalog):
        self.source = source
        self.lines = lines
        self.catalog = catalog
        self.issues: list[RegistryIssue] = []
        self.sources: dict[str, Provenance] = {}
        # Names whose entry is invalid: already reported, not again at every use.
        self.broken_sources: set[str] = set()

    def line_of(self, path: str) -> int:
        return nearest_line(self.lines, path)

    def fail(self, path: str, message: str) -> None:
        self.issues.append(RegistryIssue(self.source, self.line_of(path), path, message))

    def mapping(self, value: Any, path: str, *, required: bool = True) -> dict[str, Any]:
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            self.fail(path, "must be a mapping")
            return {}
        return value

    def text(self, data: dict[str, Any], key: str, path: str, *, required: bool = True) -> str:
        value = data.get(key)
        if value is None:
            if required:
                self.fail(_join(path, key), f"'{key}' is required")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.fail(_join(path, key), "must be a non-empty string")
            return ""
        return value

    def number(self, value: Any, path: str, *, low: float = -math.inf) -> float | None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.fail(path, f"must be a number, not {value!r}")
            return None
        if value < low:
            self.fail(path, f"must be at least {number_text(low)}")
            return None
        return float(value)

    def day(self, data: dict[str, Any], key: str, path: str) -> date | None:
        value = data.get(key)
        if value is None:
            return None
        try:
            return as_date(value)
        except ValueError as exc:
            self.fail(_join(path, key), str(exc))
            return None

    def languages(self, value: Any, path: str) -> tuple[str, str]:
        entry = self.mapping(value, path)
        if not entry:
            return "", ""
        return self.text(entry, "vi", path), self.text(entry, "en", path)

    def unknown_keys(self, data: dict[str, Any], path: str, known: Iterable[str]) -> None:
        allowed = set(known)
        for key in data:
            if key not in allowed:
                self.fail(
                    _join(path, str(key)), f"unknown field (expected one of {_list(allowed)})"
                )

    def provenance(self, value: Any, path: str) -> Provenance | None:
        """A mapping {source, confidence, note}, or the name of an entry of ``sources``."""
        if value is None:
            self.fail(path, "provenance is required: {source, confidence, note} or a source name")
            return None
        if isinstance(value, str):
            found = self.sources.get(value)
            if found is None and value not in self.broken_sources:
                self.fail(path, f"no entry {value!r} in 'sources'")
            return found
        entry = self.mapping(value, path)
        if not entry:
            return None
        self.unknown_keys(entry, path, ("source", "confidence", "note"))
        source = self.text(entry, "source", path)
        confidence = entry.get("confidence")
        if not isinstance(confidence, str) or not CONFIDENCE_PATTERN.fullmatch(confidence.strip()):
            self.fail(
                _join(path, "confidence"),
                f"must be a confidence tag of regulations.md (H, M, L, L-M, M-H …), "
                f"not {confidence!r}",
            )
            return None
        note = entry.get("note") or ""
        if not isinstance(note, str):
            self.fail(_join(path, "note"), "must be a string")
            note = ""
        if not source:
            return None
        return Provenance(source.strip(), confidence.strip(), note.strip())

    def param_code(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            self.fail(path, f"must be a parameter code string, not {value!r} (quote it)")
            return None
        param = self.catalog.parameter(value)
        if param is None:
            self.fail(path, f"unknown parameter code {value!r} (see config/parameters.yaml)")
            return None
        if param.code != value:
            self.fail(path, f"write the canonical code {param.code!r}, not {value!r}")
            return None
        return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _list(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def _ranges_overlap(
    a_from: date | None, a_to: date | None, b_from: date | None, b_to: date | None
) -> bool:
    return (a_to is None or b_from is None or b_from < a_to) and (
        b_to is None or a_from is None or a_from < b_to
    )


def _bands(
    rd: _Reader, value: Any, path: str, symbol: str, *, with_id: bool
) -> list[tuple[float | None, float | None, Any]]:
    """Contiguous bands: the first open below, the last open above, no gap and no overlap."""
    if not isinstance(value, list) or not value:
        rd.fail(path, "must be a non-empty list of bands {over, up_to, ...}")
        return []
    result: list[tuple[float | None, float | None, Any]] = []
    for i, raw in enumerate(value):
        bpath = f"{path}[{i}]"
        entry = rd.mapping(raw, bpath)
        if not entry:
            continue
        payload_key = "id" if with_id else "value"
        rd.unknown_keys(entry, bpath, ("over", "up_to", payload_key))
        over = rd.number(entry["over"], f"{bpath}.over") if "over" in entry else None
        up_to = rd.number(entry["up_to"], f"{bpath}.up_to") if "up_to" in entry else None
        payload: Any = None
        if with_id:
            payload = rd.text(entry, "id", bpath) or None
        elif "value" in entry:
            payload = rd.number(entry["value"], f"{bpath}.value", low=0)
        else:
            rd.fail(bpath, "'value' is required")
        if over is not None and up_to is not None and up_to <= over:
            rd.fail(f"{bpath}.up_to", f"must be above over ({number_text(over)})")
        if i == 0 and "over" in entry:
            rd.fail(f"{bpath}.over", f"the first band must be open below ({symbol} ≤ …)")
        if i == len(value) - 1 and "up_to" in entry:
            rd.fail(f"{bpath}.up_to", f"the last band must be open above ({symbol} > …)")
        if i > 0 and result:
            previous = result[-1][1]
            if "over" not in entry:
                rd.fail(bpath, "'over' is required after the first band")
            elif previous is not None and over is not None and over > previous:
                rd.fail(
                    f"{bpath}.over",
                    f"gap: nothing covers {number_text(previous)} < {symbol} ≤ {number_text(over)}",
                )
            elif previous is not None and over is not None and over < previous:
                rd.fail(
                    f"{bpath}.over", f"overlaps the band before (up to {number_text(previous)})"
                )
        if i < len(value) - 1 and "up_to" not in entry:
            rd.fail(bpath, "'up_to' is required except in the last band")
        result.append((over, up_to, payload))
    return result


def _rule(rd: _Reader, raw: Any, path: str, *, top: bool) -> CoefficientRule | None:
    entry = rd.mapping(raw, path)
    if not entry:
        return None
    known = {"meaning", "value", "input", "symbol", "unit", "bands", "allowed", "default"}
    known |= {"select_by", "cases"}
    if top:
        known.add("provenance")
    rd.unknown_keys(entry, path, known)
    meaning_vi, meaning_en = ("", "")
    if "meaning" in entry:
        meaning_vi, meaning_en = rd.languages(entry["meaning"], f"{path}.meaning")
    shapes = [k for k in ("value", "bands", "allowed", "cases") if k in entry]
    if len(shapes) != 1:
        rd.fail(path, "give exactly one of value, bands (with input), allowed (with input), cases")
        return None
    shape = shapes[0]
    default = None
    note_vi = note_en = ""
    if "default" in entry:
        dentry = rd.mapping(entry["default"], f"{path}.default")
        rd.unknown_keys(dentry, f"{path}.default", ("value", "note"))
        default = rd.number(dentry.get("value"), f"{path}.default.value", low=0)
        note_vi, note_en = rd.languages(dentry.get("note"), f"{path}.default.note")
    common: dict[str, Any] = {
        "meaning_vi": meaning_vi,
        "meaning_en": meaning_en,
        "default": default,
        "default_note_vi": note_vi,
        "default_note_en": note_en,
    }
    if shape == "value":
        value = rd.number(entry["value"], f"{path}.value", low=0)
        return CoefficientRule(value=value, **common) if value is not None else None
    if shape == "cases":
        select_by = rd.text(entry, "select_by", path)
        cases_raw = rd.mapping(entry["cases"], f"{path}.cases")
        if not cases_raw:
            rd.fail(f"{path}.cases", "must list at least one case")
        cases: dict[str, CoefficientRule] = {}
        for key, case_raw in cases_raw.items():
            case = _rule(rd, case_raw, f"{path}.cases.{key}", top=False)
            if case is not None:
                cases[str(key)] = case
        return CoefficientRule(select_by=select_by or None, cases=cases, **common)
    name = rd.text(entry, "input", path)
    symbol = str(entry.get("symbol") or name)
    unit = str(entry.get("unit") or "")
    if shape == "allowed":
        allowed_raw = entry["allowed"]
        if not isinstance(allowed_raw, list) or not allowed_raw:
            rd.fail(f"{path}.allowed", "must be a non-empty list of numbers")
            return None
        allowed = [rd.number(v, f"{path}.allowed[{i}]", low=0) for i, v in enumerate(allowed_raw)]
        return CoefficientRule(
            input=name or None,
            symbol=symbol,
            unit=unit,
            allowed=tuple(a for a in allowed if a is not None),
            **common,
        )
    bands = _bands(rd, entry["bands"], f"{path}.bands", symbol, with_id=False)
    return CoefficientRule(
        input=name or None,
        symbol=symbol,
        unit=unit,
        bands=tuple(Band(o, u, v) for o, u, v in bands if v is not None),
        **common,
    )


def _limit_values(
    rd: _Reader, value: Any, path: str, columns: list[str]
) -> dict[str | None, float] | None:
    if not columns:
        number = rd.number(value, path)
        return None if number is None else {None: number}
    if not isinstance(value, dict):
        rd.fail(path, f"must give a value per column: {{{', '.join(f'{c}: …' for c in columns)}}}")
        return None
    result: dict[str | None, float] = {}
    for key, raw in value.items():
        if str(key) not in columns:
            rd.fail(f"{path}.{key}", f"no column {key!r} (columns: {', '.join(columns)})")
            continue
        number = rd.number(raw, f"{path}.{key}")
        if number is not None:
            result[str(key)] = number
    missing = [c for c in columns if c not in {str(k) for k in value}]
    if missing:
        rd.fail(path, f"no value for column {', '.join(missing)}")
    return result


def _limits(
    rd: _Reader,
    raw: Any,
    columns: list[str],
    default_averaging: str | None,
    categories: dict[str, Category],
    flow_band_ids: set[str],
    *,
    may_be_empty: bool = False,
    existing: tuple[RegulationLimit, ...] = (),
    existing_path: str = "",
) -> list[RegulationLimit]:
    if may_be_empty and raw == []:
        return []
    if not isinstance(raw, list) or not raw:
        hint = "" if may_be_empty else " (or [] with 'limits_missing' saying why)"
        rd.fail("limits", f"must be a non-empty list of limits{hint}")
        return []
    limits: list[RegulationLimit] = []
    seen: dict[tuple[str, str, str | None, str | None], list[tuple[int, date | None, date | None]]]
    seen = {}
    # Rows of the file a table supplement extends: index -1, named by that file in messages.
    for row in existing:
        if row.column == (columns[0] if columns else None):
            key = (row.param, row.averaging, row.category, row.flow_band)
            seen.setdefault(key, []).append((-1, row.valid_from, row.valid_to))
    known = {"param", "unit", "averaging", "max", "min", "valid_from", "valid_to"}
    known |= {"category", "flow_band", "provenance"}
    for i, item in enumerate(raw):
        path = f"limits[{i}]"
        entry = rd.mapping(item, path)
        if not entry:
            continue
        before = len(rd.issues)
        rd.unknown_keys(entry, path, known)
        code = rd.param_code(entry.get("param"), f"{path}.param")
        unit_name = entry.get("unit")
        unit = rd.catalog.unit(unit_name) if isinstance(unit_name, str) else None
        if unit is None:
            rd.fail(
                f"{path}.unit" if "unit" in entry else path,
                f"unknown unit {unit_name!r} (see config/parameters.yaml)",
            )
        elif unit.id != unit_name:
            rd.fail(f"{path}.unit", f"write the unit id {unit.id!r}, not {unit_name!r}")
            unit = None
        elif code is not None and not rd.catalog.accepts(rd.catalog.parameters[code], unit):
            rd.fail(f"{path}.unit", f"{code} cannot be measured in {unit.id}")
            unit = None
        averaging = entry.get("averaging", default_averaging)
        if averaging not in AVERAGING_PERIODS:
            where = f"{path}.averaging" if "averaging" in entry else path
            rd.fail(where, f"averaging must be one of {', '.join(AVERAGING_PERIODS)}")
        maxima = minima = None
        if "max" in entry:
            maxima = _limit_values(rd, entry["max"], f"{path}.max", columns)
        if "min" in entry:
            minima = _limit_values(rd, entry["min"], f"{path}.min", columns)
        if "max" not in entry and "min" not in entry:
            rd.fail(path, "give 'max', 'min' or both (a range such as pH 6–9)")
        for column in (maxima or {}).keys() & (minima or {}).keys():
            if maxima and minima and minima[column] >= maxima[column]:
                rd.fail(
                    f"{path}.min",
                    f"min {minima[column]:g} is not below max {maxima[column]:g}",
                )
        valid_from = rd.day(entry, "valid_from", path)
        valid_to = rd.day(entry, "valid_to", path)
        if valid_from and valid_to and valid_to <= valid_from:
            rd.fail(f"{path}.valid_to", "must be after valid_from")
        category = entry.get("category")
        if category is not None and str(category) not in categories:
            rd.fail(f"{path}.category", f"no category {category!r} in 'categories'")
        flow_band = entry.get("flow_band")
        if flow_band is not None and str(flow_band) not in flow_band_ids:
            rd.fail(f"{path}.flow_band", f"no band {flow_band!r} in 'flow_bands'")
        provenance = rd.provenance(entry.get("provenance"), f"{path}.provenance")
        if len(rd.issues) > before or code is None or unit is None or provenance is None:
            continue
        key = (code, str(averaging), _opt(category), _opt(flow_band))
        for j, other_from, other_to in seen.get(key, []):
            if _ranges_overlap(valid_from, valid_to, other_from, other_to):
                other = (
                    f"a row of {existing_path}"
                    if j < 0
                    else f"limits[{j}] (line {rd.line_of(f'limits[{j}]')})"
                )
                rd.fail(
                    f"{path}.valid_from" if "valid_from" in entry else path,
                    f"{code} {averaging}: dates overlap {other}; give valid_from/valid_to that "
                    "do not overlap",
                )
                break
        seen.setdefault(key, []).append((i, valid_from, valid_to))
        line = rd.line_of(path)
        column_keys: list[str | None] = list(columns) or [None]
        for col in column_keys:
            limits.append(
                RegulationLimit(
                    param=code,
                    unit=unit.id,
                    averaging=str(averaging),
                    column=col,
                    maximum=(maxima or {}).get(col),
                    minimum=(minima or {}).get(col),
                    valid_from=valid_from,
                    valid_to=valid_to,
                    category=_opt(category),
                    flow_band=_opt(flow_band),
                    provenance=provenance,
                    line=line,
                )
            )
    return limits


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _sources(rd: _Reader, data: dict[str, Any]) -> None:
    raw = rd.mapping(data.get("sources"), "sources", required=False)
    for name, entry in raw.items():
        found = rd.provenance(entry, f"sources.{name}")
        if found is not None:
            rd.sources[str(name)] = found
        else:
            rd.broken_sources.add(str(name))


def _regulation(rd: _Reader, data: dict[str, Any], path: str) -> Regulation | None:
    top_keys = {"format", "id", "title", "kind", "issued_by", "effective_from", "effective_to"}
    top_keys |= {"replaced_by", "provenance", "o2_reference_percent", "sources", "averaging"}
    top_keys |= {"columns", "categories", "flow_bands", "coefficients"}
    top_keys |= {"coefficients_not_applied_to", "limits"}
    top_keys |= {"limits_missing", "transition", "sector", "not_limited", "column_choice"}
    rd.unknown_keys(data, "", top_keys)
    _sources(rd, data)
    reg_id = rd.text(data, "id", "")
    title_vi, title_en = rd.languages(data.get("title"), "title")
    kind = data.get("kind")
    if kind not in REGULATION_KINDS:
        rd.fail("kind", f"must be one of {', '.join(REGULATION_KINDS)}, not {kind!r}")
    issued_by = rd.text(data, "issued_by", "", required=False) or None
    effective_from = rd.day(data, "effective_from", "")
    effective_to = rd.day(data, "effective_to", "")
    if effective_from and effective_to and effective_to <= effective_from:
        rd.fail("effective_to", "must be after effective_from")
    replaced_by = rd.text(data, "replaced_by", "", required=False) or None
    provenance = rd.provenance(data.get("provenance"), "provenance")
    o2_ref = None
    if data.get("o2_reference_percent") is not None:
        o2_ref = _o2(rd, data["o2_reference_percent"], "o2_reference_percent")

    default_averaging = None
    averaging_provenance = None
    if data.get("averaging") is not None:
        averaging = rd.mapping(data["averaging"], "averaging")
        rd.unknown_keys(averaging, "averaging", ("default", "provenance"))
        default_averaging = averaging.get("default")
        if default_averaging not in AVERAGING_PERIODS:
            rd.fail("averaging.default", f"must be one of {', '.join(AVERAGING_PERIODS)}")
            default_averaging = None
        averaging_provenance = rd.provenance(averaging.get("provenance"), "averaging.provenance")

    columns_en: dict[str, str] = {}
    columns_vi: dict[str, str] = {}
    for key, meaning in rd.mapping(data.get("columns"), "columns", required=False).items():
        columns_vi[str(key)], columns_en[str(key)] = rd.languages(meaning, f"columns.{key}")

    categories = _categories(rd, data.get("categories"))

    flow_bands = None
    if data.get("flow_bands") is not None:
        fentry = rd.mapping(data["flow_bands"], "flow_bands")
        rd.unknown_keys(fentry, "flow_bands", ("input", "symbol", "unit", "bands"))
        finput = rd.text(fentry, "input", "flow_bands")
        symbol = str(fentry.get("symbol") or finput)
        rows = _bands(rd, fentry.get("bands"), "flow_bands.bands", symbol, with_id=True)
        flow_bands = FlowBands(
            finput,
            symbol,
            str(fentry.get("unit") or ""),
            tuple(FlowBand(str(b), o, u) for o, u, b in rows if b),
        )

    coefficients: list[Coefficient] = []
    for name, raw in rd.mapping(data.get("coefficients"), "coefficients", required=False).items():
        cpath = f"coefficients.{name}"
        rule = _rule(rd, raw, cpath, top=True)
        cprov = rd.provenance(
            raw.get("provenance") if isinstance(raw, dict) else None, f"{cpath}.provenance"
        )
        if "meaning" not in (raw if isinstance(raw, dict) else {}):
            rd.fail(cpath, "'meaning' {vi, en} is required")
        if rule is not None and cprov is not None:
            coefficients.append(
                Coefficient(str(name), rule.meaning_vi, rule.meaning_en, rule, cprov)
            )

    not_applied: set[str] = set()
    raw_not_applied = data.get("coefficients_not_applied_to") or []
    if not isinstance(raw_not_applied, list):
        rd.fail("coefficients_not_applied_to", "must be a list of parameter codes")
        raw_not_applied = []
    for i, code in enumerate(raw_not_applied):
        found = rd.param_code(code, f"coefficients_not_applied_to[{i}]")
        if found:
            not_applied.add(found)

    missing_vi = missing_en = ""
    if data.get("limits_missing") is not None:
        missing_vi, missing_en = rd.languages(data["limits_missing"], "limits_missing")
    limits = _limits(
        rd,
        data.get("limits"),
        list(columns_en),
        default_averaging,
        categories,
        {b.id for b in flow_bands.bands} if flow_bands else set(),
        may_be_empty=bool(missing_en),
    )
    transition = _transition(rd, data.get("transition"))
    sector_of = None
    sector_vi = sector_en = ""
    if data.get("sector") is not None:
        sector = rd.mapping(data["sector"], "sector")
        rd.unknown_keys(sector, "sector", ("general", "vi", "en"))
        sector_of = rd.text(sector, "general", "sector") or None
        sector_vi, sector_en = rd.text(sector, "vi", "sector"), rd.text(sector, "en", "sector")
    not_limited = _codes(rd, data.get("not_limited"), "not_limited")
    choice_vi = choice_en = ""
    choice_provenance = None
    if data.get("column_choice") is not None:
        choice = rd.mapping(data["column_choice"], "column_choice")
        rd.unknown_keys(choice, "column_choice", ("vi", "en", "provenance"))
        choice_vi = rd.text(choice, "vi", "column_choice")
        choice_en = rd.text(choice, "en", "column_choice")
        choice_provenance = rd.provenance(choice.get("provenance"), "column_choice.provenance")
    if rd.issues or provenance is None or kind not in REGULATION_KINDS:
        return None
    return Regulation(
        id=reg_id,
        title_vi=title_vi,
        title_en=title_en,
        kind=str(kind),
        effective_from=effective_from,
        effective_to=effective_to,
        replaced_by=replaced_by,
        columns=columns_en,
        o2_reference_percent=o2_ref,
        provenance=provenance,
        path=path,
        issued_by=issued_by,
        columns_vi=columns_vi,
        default_averaging=default_averaging,
        averaging_provenance=averaging_provenance,
        coefficients=tuple(coefficients),
        coefficients_not_applied_to=frozenset(not_applied),
        categories=categories,
        flow_bands=flow_bands,
        limits=tuple(limits),
        limits_missing_vi=missing_vi,
        limits_missing_en=missing_en,
        transition=transition,
        sector_of=sector_of,
        sector_vi=sector_vi,
        sector_en=sector_en,
        not_limited=frozenset(not_limited),
        column_choice_vi=choice_vi,
        column_choice_en=choice_en,
        column_choice_provenance=choice_provenance,
    )


def _categories(rd: _Reader, raw: Any) -> dict[str, Category]:
    categories: dict[str, Category] = {}
    for key, value in rd.mapping(raw, "categories", required=False).items():
        cpath = f"categories.{key}"
        entry = rd.mapping(value, cpath)
        rd.unknown_keys(entry, cpath, ("vi", "en", "o2_reference_percent", "provenance"))
        ref = None
        if entry.get("o2_reference_percent") is not None:
            ref = _o2(rd, entry["o2_reference_percent"], f"{cpath}.o2_reference_percent")
        provenance = None
        if "provenance" in entry:
            provenance = rd.provenance(entry["provenance"], f"{cpath}.provenance")
        categories[str(key)] = Category(
            str(key), rd.text(entry, "vi", cpath), rd.text(entry, "en", cpath), ref, provenance
        )
    return categories


def _codes(rd: _Reader, raw: Any, path: str) -> set[str]:
    if raw is None:
        return set()
    if not isinstance(raw, list):
        rd.fail(path, "must be a list of parameter codes")
        return set()
    return {c for i, code in enumerate(raw) if (c := rd.param_code(code, f"{path}[{i}]"))}


def _transition(rd: _Reader, raw: Any) -> Transition | None:
    if raw is None:
        return None
    entry = rd.mapping(raw, "transition")
    rd.unknown_keys(entry, "transition", ("replaces", "existing_until", "existing", "provenance"))
    replaces = entry.get("replaces")
    if (
        not isinstance(replaces, list)
        or not replaces
        or not all(isinstance(r, str) and r.strip() for r in replaces)
    ):
        rd.fail("transition.replaces", "must list the ids of the regulations this one replaces")
        replaces = []
    existing_until = rd.day(entry, "existing_until", "transition")
    vi, en = rd.languages(entry.get("existing"), "transition.existing")
    provenance = rd.provenance(entry.get("provenance"), "transition.provenance")
    if provenance is None:
        return None
    return Transition(tuple(replaces), existing_until, vi, en, provenance)


def _supplement(rd: _Reader, data: dict[str, Any], base: Regulation) -> Regulation:
    """A catalog regulation with the source categories and limit rows a department adds
    (``extends:``): the shipped file keeps its facts, the department's file its own source and
    confidence."""
    known = ("format", "extends", "provenance", "sources", "categories", "limits")
    rd.unknown_keys(data, "", known)
    _sources(rd, data)
    rd.provenance(data.get("provenance"), "provenance")
    added = _categories(rd, data.get("categories"))
    for key in added.keys() & base.categories.keys():
        rd.fail(f"categories.{key}", f"category {key!r} is already in {base.path}")
    categories = {**base.categories, **added}
    rows = _limits(
        rd,
        data.get("limits"),
        list(base.columns),
        base.default_averaging,
        categories,
        {b.id for b in base.flow_bands.bands} if base.flow_bands else set(),
        existing=base.limits,
        existing_path=base.path,
    )
    return dataclasses.replace(
        base,
        categories=categories,
        limits=base.limits + tuple(rows),
        supplements=(*base.supplements, rd.source),
    )


def _o2(rd: _Reader, value: Any, path: str) -> float | None:
    number = rd.number(value, path, low=0)
    if number is not None and number >= O2_IN_AIR_PERCENT:
        rd.fail(path, f"must be below {O2_IN_AIR_PERCENT} (oxygen in air)")
        return None
    return number


def _band_label(lower: float, upper: float | None) -> str:
    if upper is None:
        return f"≥{number_text(lower)}"
    if lower <= 1.0:
        return f"<{number_text(upper)}"
    return f"{number_text(lower)}–<{number_text(upper)}"


def _penalties(rd: _Reader, data: dict[str, Any], path: str) -> PenaltySchedule | None:
    rd.unknown_keys(
        data, "", ("format", "id", "title", "effective_from", "provenance", "sources", "kinds")
    )
    _sources(rd, data)
    doc_id = rd.text(data, "id", "")
    title_vi, title_en = rd.languages(data.get("title"), "title")
    effective_from = rd.day(data, "effective_from", "")
    provenance = rd.provenance(data.get("provenance"), "provenance")
    kinds = rd.mapping(data.get("kinds"), "kinds")
    result: dict[str, tuple[PenaltyBand, ...]] = {}
    for kind, raw in kinds.items():
        kpath = f"kinds.{kind}"
        if kind not in PENALTY_KINDS:
            rd.fail(kpath, f"must be one of {', '.join(PENALTY_KINDS)}")
            continue
        entry = rd.mapping(raw, kpath)
        rd.unknown_keys(entry, kpath, ("article", "bands"))
        article = rd.text(entry, "article", kpath)
        rows = entry.get("bands")
        if not isinstance(rows, list) or not rows:
            rd.fail(f"{kpath}.bands", "must be a non-empty list of bands")
            continue
        bands: list[PenaltyBand] = []
        previous_upper: float | None = 1.0
        for i, row_raw in enumerate(rows):
            bpath = f"{kpath}.bands[{i}]"
            row = rd.mapping(row_raw, bpath)
            rd.unknown_keys(
                row,
                bpath,
                (
                    "lower",
                    "upper",
                    "consequence",
                    "provenance",
                    "fine_tiers",
                    "clause",
                    "clause_source",
                ),
            )
            lower = rd.number(row.get("lower"), f"{bpath}.lower", low=1.0)
            upper = rd.number(row["upper"], f"{bpath}.upper") if "upper" in row else None
            if lower is not None and previous_upper is not None and lower != previous_upper:
                problem = "gap" if lower > previous_upper else "overlap"
                rd.fail(
                    f"{bpath}.lower",
                    f"{problem}: the band before ends at {number_text(previous_upper)}, "
                    f"this one starts at {number_text(lower)}",
                )
            if lower is not None and upper is not None and upper <= lower:
                rd.fail(f"{bpath}.upper", "must be above lower")
            if i < len(rows) - 1 and upper is None:
                rd.fail(bpath, "'upper' is required except in the last band")
            if i == len(rows) - 1 and upper is not None:
                rd.fail(f"{bpath}.upper", "the last band must be open above (no 'upper')")
            previous_upper = upper
            vi, en = rd.languages(row.get("consequence"), f"{bpath}.consequence")
            bprov = rd.provenance(row.get("provenance"), f"{bpath}.provenance")
            tiers = _fine_tiers(rd, row_raw, bpath)
            clause, clause_prov = _clause(rd, row, bpath)
            if lower is None or bprov is None:
                continue
            bands.append(
                PenaltyBand(
                    label=_band_label(lower, upper),
                    lower=lower,
                    upper=upper,
                    article=article,
                    consequence_vi=vi,
                    consequence_en=en,
                    unverified=bprov.unverified,
                    kind=str(kind),
                    document=doc_id,
                    provenance=bprov,
                    fine_tiers=tiers,
                    clause=clause,
                    clause_provenance=clause_prov,
                )
            )
        result[str(kind)] = tuple(bands)
    if rd.issues or provenance is None:
        return None
    return PenaltySchedule(doc_id, title_vi, title_en, effective_from, provenance, path, result)


CLAUSE_NOT_VERIFIED = "not verified"


def _clause(rd: _Reader, row: dict[str, Any], path: str) -> tuple[str, Provenance | None]:
    """A band's khoản: "not verified" (or absent), or a clause with the source that names it.

    A clause is law only where a source was read: one given without ``clause_source`` is an
    error, so none can be typed in from memory unnoticed.
    """
    raw = row.get("clause")
    if raw is None or (isinstance(raw, str) and raw.strip() == CLAUSE_NOT_VERIFIED):
        if "clause_source" in row:
            rd.fail(f"{path}.clause_source", "only with a clause (not with 'not verified')")
        return "", None
    clause = rd.text(row, "clause", path)
    if "clause_source" not in row:
        rd.fail(
            f"{path}.clause_source",
            f"'clause_source' is required with a clause: the source that names it "
            f"(or clause: {CLAUSE_NOT_VERIFIED!r})",
        )
        return "", None
    return clause, rd.provenance(row.get("clause_source"), f"{path}.clause_source")


def _fine_tiers(rd: _Reader, row: Any, path: str) -> tuple[FineTier, ...]:
    raw = row.get("fine_tiers") if isinstance(row, dict) else None
    if raw is None:
        return ()
    if not isinstance(raw, list):
        rd.fail(f"{path}.fine_tiers", "must be a list")
        return ()
    tiers: list[FineTier] = []
    for i, item in enumerate(raw):
        tpath = f"{path}.fine_tiers[{i}]"
        entry = rd.mapping(item, tpath)
        rd.unknown_keys(entry, tpath, ("over_m3_day", "up_to_m3_day", "min_vnd", "max_vnd"))
        over = rd.number(entry["over_m3_day"], tpath) if "over_m3_day" in entry else None
        up_to = rd.number(entry["up_to_m3_day"], tpath) if "up_to_m3_day" in entry else None
        low = rd.number(entry.get("min_vnd"), f"{tpath}.min_vnd", low=0)
        high = rd.number(entry.get("max_vnd"), f"{tpath}.max_vnd", low=0)
        if low is not None and high is not None:
            tiers.append(FineTier(over, up_to, int(low), int(high)))
    return tuple(tiers)


def _read(path: Path, catalog: Catalog) -> tuple[dict[str, Any], _Reader]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegulationError([RegistryIssue(source, 0, "(file)", str(exc))]) from None
    try:
        data, lines = load_yaml_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise RegulationError([RegistryIssue(source, line, "(yaml)", str(exc))]) from None
    rd = _Reader(source, lines, catalog)
    if not isinstance(data, dict):
        rd.fail("format", "the file must be a mapping starting with 'format:'")
        raise RegulationError(rd.issues)
    return data, rd


def _parse(data: dict[str, Any], rd: _Reader) -> Regulation | PenaltySchedule:
    fmt = data.get("format")
    loaded: Regulation | PenaltySchedule | None
    if fmt == REGULATION_FORMAT:
        loaded = _regulation(rd, data, rd.source)
    elif fmt == PENALTY_FORMAT:
        loaded = _penalties(rd, data, rd.source)
    else:
        rd.fail("format", f"must be {REGULATION_FORMAT!r} or {PENALTY_FORMAT!r}, not {fmt!r}")
        loaded = None
    if rd.issues or loaded is None:
        raise RegulationError(rd.issues)
    return loaded


def load_regulation_file(path: Path, catalog: Catalog) -> Regulation | PenaltySchedule:
    """One regulation or penalty-band file, checked completely; raises RegulationError.

    A table supplement (``extends:``) needs the regulation it extends: load it with
    ``load_regulation_files`` together with that regulation's file.
    """
    data, rd = _read(path, catalog)
    if "extends" in data:
        rd.fail("extends", "a table supplement is checked together with the regulation it extends")
        raise RegulationError(rd.issues)
    return _parse(data, rd)


def load_regulation_files(paths: Iterable[Path], catalog: Catalog) -> RegulationCatalog:
    """Several files as one catalog: every file is checked, and ids must not repeat.

    Table supplements (``extends: ID``) are checked against the regulation they extend, after
    every regulation file, and their rows join that regulation's table.
    """
    issues: list[RegistryIssue] = []
    result = RegulationCatalog()
    penalty_kinds: dict[str, str] = {}
    supplements: list[tuple[dict[str, Any], _Reader]] = []
    for path in paths:
        try:
            data, rd = _read(path, catalog)
            if "extends" in data:
                supplements.append((data, rd))
                continue
            loaded = _parse(data, rd)
        except RegulationError as exc:
            issues.extend(exc.issues)
            continue
        if isinstance(loaded, Regulation):
            other = result.regulations.get(loaded.id)
            if other is not None:
                line = _line_of_id(path)
                issues.append(
                    RegistryIssue(str(path), line, "id", f"{loaded.id!r} is also in {other.path}")
                )
                continue
            result.regulations[loaded.id] = loaded
        else:
            for kind in loaded.bands:
                if kind in penalty_kinds:
                    issues.append(
                        RegistryIssue(
                            str(path),
                            _line_of_id(path),
                            f"kinds.{kind}",
                            f"{kind} penalty bands are also in {penalty_kinds[kind]}",
                        )
                    )
                penalty_kinds[kind] = str(path)
            result.penalties.append(loaded)
    for data, rd in supplements:
        if data.get("format") != REGULATION_FORMAT:
            rd.fail("format", f"a table supplement must be {REGULATION_FORMAT!r}")
        base = result.regulations.get(str(data.get("extends")))
        if base is None:
            known = ", ".join(r.id for r in result.all()) or "none"
            rd.fail("extends", f"no regulation {data.get('extends')!r} (known: {known})")
        if rd.issues or base is None:
            issues.extend(rd.issues)
            continue
        extended = _supplement(rd, data, base)
        if rd.issues:
            issues.extend(rd.issues)
            continue
        result.regulations[base.id] = extended
    for reg in result.all():
        if reg.sector_of is not None:
            general = result.regulations.get(reg.sector_of)
            where = Path(reg.path)
            if general is None:
                issues.append(
                    RegistryIssue(
                        reg.path,
                        _line_of(where, "sector.general"),
                        "sector.general",
                        f"no regulation {reg.sector_of!r} in the catalog",
                    )
                )
            elif general.kind != reg.kind:
                issues.append(
                    RegistryIssue(
                        reg.path,
                        _line_of(where, "sector.general"),
                        "sector.general",
                        f"{general.id} is a {general.kind} regulation, this one {reg.kind}",
                    )
                )
    if issues:
        raise RegulationError(issues)
    return result


def _line_of(path: Path, field_path: str) -> int:
    _, lines = load_yaml_with_lines(path.read_text(encoding="utf-8"))
    return nearest_line(lines, field_path)


def _line_of_id(path: Path) -> int:
    _, lines = load_yaml_with_lines(path.read_text(encoding="utf-8"))
    return lines.get("id", 1)


def regulation_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.yaml") if p.is_file())


def load_regulation_catalog(folder: Path, catalog: Catalog) -> RegulationCatalog:
    """Every ``*.yaml`` of the folder; raises RegulationError naming file, line and field."""
    if not folder.is_dir():
        raise RegulationError([RegistryIssue(str(folder), 0, "(folder)", "not a folder")])
    return load_regulation_files(regulation_files(folder), catalog)
