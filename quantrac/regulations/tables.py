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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from quantrac.core.catalog import Catalog
from quantrac.core.config_files import (
    ConfigError,
    ConfigIssue,
    ConfigModel,
    FieldError,
    nearest_line,
    read_yaml_file,
    validate,
)
from quantrac.core.registry import as_date

M = TypeVar("M", bound=BaseModel)

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
    """A regulation file is invalid; each issue names file, line and field."""


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


# --- The file formats, as pydantic models ------------------------------------------------------
#
# The models check each value where it is written: types, unknown fields, parameter codes and
# units against the parameter catalog, columns, categories, flow bands and source names against
# the file (``_Scope``, passed as the validation context), band edges. What needs rows of the
# whole table or other files (date overlaps, a supplement's base, ids across files, sector
# regulations) is checked after, in the same file:line: field form.


@dataclass(frozen=True, slots=True)
class _Scope:
    """What a file's values are checked against: the catalog and the names the file declares."""

    catalog: Catalog
    sources: dict[str, Any] = field(default_factory=dict)  # name → checked entry
    columns: tuple[str, ...] = ()
    categories: frozenset[str] = frozenset()
    flow_bands: frozenset[str] = frozenset()
    default_averaging: str | None = None
    limits_missing: bool = False


def _scope(info: ValidationInfo) -> _Scope:
    scope = info.context
    assert isinstance(scope, _Scope)
    return scope


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"must be a number, not {value!r}")
    return float(value)


def _at_least(low: float) -> Any:
    def check(value: float) -> float:
        if value < low:
            raise ValueError(f"must be at least {number_text(low)}")
        return value

    return AfterValidator(check)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _o2(value: float) -> float:
    if value >= O2_IN_AIR_PERCENT:
        raise ValueError(f"must be below {O2_IN_AIR_PERCENT} (oxygen in air)")
    return value


def _averaging(value: Any) -> str:
    if value not in AVERAGING_PERIODS:
        raise ValueError(f"must be one of {', '.join(AVERAGING_PERIODS)}")
    return str(value)


def _kind(value: Any) -> str:
    if value not in REGULATION_KINDS:
        raise ValueError(f"must be one of {', '.join(REGULATION_KINDS)}, not {value!r}")
    return str(value)


def _confidence(value: Any) -> str:
    if not isinstance(value, str) or not CONFIDENCE_PATTERN.fullmatch(value.strip()):
        raise ValueError(
            f"must be a confidence tag of regulations.md (H, M, L, L-M, M-H …), not {value!r}"
        )
    return value


def _param_code(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a parameter code string, not {value!r} (quote it)")
    param = _scope(info).catalog.parameter(value)
    if param is None:
        raise ValueError(f"unknown parameter code {value!r} (see config/parameters.yaml)")
    if param.code != value:
        raise ValueError(f"write the canonical code {param.code!r}, not {value!r}")
    return value


def _unit_id(value: Any, info: ValidationInfo) -> str:
    unit = _scope(info).catalog.unit(value) if isinstance(value, str) else None
    if unit is None:
        raise ValueError(f"unknown unit {value!r} (see config/parameters.yaml)")
    if unit.id != value:
        raise ValueError(f"write the unit id {unit.id!r}, not {value!r}")
    return value


def _limit_value(value: Any, info: ValidationInfo) -> Any:
    """A number, or one number per column when the regulation has columns."""
    columns = _scope(info).columns
    if not columns:
        return _number(value)
    if not isinstance(value, dict):
        raise ValueError(
            f"must give a value per column: {{{', '.join(f'{c}: …' for c in columns)}}}"
        )
    result: dict[str, float] = {}
    for key, raw in value.items():
        if str(key) not in columns:
            raise FieldError(str(key), f"no column {key!r} (columns: {', '.join(columns)})")
        try:
            result[str(key)] = _number(raw)
        except ValueError as exc:
            raise FieldError(str(key), str(exc)) from None
    missing = [c for c in columns if c not in result]
    if missing:
        raise ValueError(f"no value for column {', '.join(missing)}")
    return result


def _provenance_ref(value: Any, info: ValidationInfo) -> Any:
    """A provenance entry as written, or the entry of ``sources`` its name gives."""
    if value is None:
        raise ValueError("provenance is required: {source, confidence, note} or a source name")
    if isinstance(value, str):
        sources = _scope(info).sources
        if value not in sources:
            raise ValueError(f"no entry {value!r} in 'sources'")
        return sources[value]
    return value


Number = Annotated[float, BeforeValidator(_number)]
NonNegative = Annotated[float, BeforeValidator(_number), _at_least(0)]
O2Percent = Annotated[float, BeforeValidator(_number), _at_least(0), AfterValidator(_o2)]
Text = Annotated[str, BeforeValidator(_text)]
Day = Annotated[date, BeforeValidator(as_date)]
Averaging = Annotated[str, BeforeValidator(_averaging)]
ParamCode = Annotated[str, BeforeValidator(_param_code)]
UnitId = Annotated[str, BeforeValidator(_unit_id)]
LimitValue = Annotated[float | dict[str, float], BeforeValidator(_limit_value)]


class _Texts(ConfigModel):
    vi: Text
    en: Text


class _ProvenanceEntry(ConfigModel):
    source: Text
    confidence: Annotated[str, BeforeValidator(_confidence)]
    note: str | None = None

    def provenance(self) -> Provenance:
        return Provenance(self.source.strip(), self.confidence.strip(), (self.note or "").strip())


ProvenanceRef = Annotated[_ProvenanceEntry, BeforeValidator(_provenance_ref)]


class _Sources(ConfigModel):
    sources: dict[str, _ProvenanceEntry] | None = None


def _contiguous(bands: Sequence[Any], symbol: str) -> None:
    """Bands over < x ≤ up_to: the first open below, the last open above, no gap, no overlap."""
    if not bands:
        raise ValueError("must be a non-empty list of bands {over, up_to, ...}")
    previous: float | None = None
    for i, band in enumerate(bands):
        first, last = i == 0, i == len(bands) - 1
        if band.over is not None and band.up_to is not None and band.up_to <= band.over:
            raise FieldError(f"[{i}].up_to", f"must be above over ({number_text(band.over)})")
        if first and band.over is not None:
            raise FieldError(f"[{i}].over", f"the first band must be open below ({symbol} ≤ …)")
        if last and band.up_to is not None:
            raise FieldError(f"[{i}].up_to", f"the last band must be open above ({symbol} > …)")
        if not first:
            if band.over is None:
                raise FieldError(i, "'over' is required after the first band")
            if previous is not None and band.over > previous:
                raise FieldError(
                    f"[{i}].over",
                    f"gap: nothing covers {number_text(previous)} < {symbol} ≤ "
                    f"{number_text(band.over)}",
                )
            if previous is not None and band.over < previous:
                raise FieldError(
                    f"[{i}].over", f"overlaps the band before (up to {number_text(previous)})"
                )
        if not last and band.up_to is None:
            raise FieldError(i, "'up_to' is required except in the last band")
        previous = band.up_to


class _ValueBand(ConfigModel):
    over: Number | None = None
    up_to: Number | None = None
    value: NonNegative


class _IdBand(ConfigModel):
    over: Number | None = None
    up_to: Number | None = None
    id: Text


class _Default(ConfigModel):
    value: NonNegative
    note: _Texts


class _Rule(ConfigModel):
    """A coefficient's rule: exactly one of value, bands, allowed, cases."""

    meaning: _Texts | None = None
    value: NonNegative | None = None
    input: Text | None = None
    symbol: str | None = None
    unit: str | None = None
    bands: list[_ValueBand] | None = None
    allowed: list[NonNegative] | None = None
    default: _Default | None = None
    select_by: Text | None = None
    cases: dict[str, _Rule] | None = None

    @field_validator("bands")
    @classmethod
    def _contiguous_bands(
        cls, bands: list[_ValueBand] | None, info: ValidationInfo
    ) -> list[_ValueBand] | None:
        if bands is not None:
            _contiguous(bands, info.data.get("symbol") or info.data.get("input") or "x")
        return bands

    @field_validator("cases", mode="before")
    @classmethod
    def _case_names(cls, value: Any) -> Any:
        """Cases are named by what the station gives: a region class 1 is the case "1"."""
        if isinstance(value, dict):
            return {str(key): case for key, case in value.items()}
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> _Rule:
        shapes = [k for k in ("value", "bands", "allowed", "cases") if getattr(self, k) is not None]
        if len(shapes) != 1:
            raise ValueError(
                "give exactly one of value, bands (with input), allowed (with input), cases"
            )
        if shapes[0] in ("bands", "allowed") and self.input is None:
            raise FieldError("input", "'input' is required")
        if self.allowed == []:
            raise FieldError("allowed", "must be a non-empty list of numbers")
        if self.cases is not None and self.select_by is None:
            raise FieldError("select_by", "'select_by' is required")
        if self.cases == {}:
            raise FieldError("cases", "must list at least one case")
        return self


class _Coefficient(_Rule):
    meaning: _Texts
    provenance: ProvenanceRef


class _AveragingSpec(ConfigModel):
    default: Averaging
    provenance: ProvenanceRef


class _Category(ConfigModel):
    vi: Text
    en: Text
    o2_reference_percent: O2Percent | None = None
    provenance: ProvenanceRef | None = None


class _FlowBands(ConfigModel):
    input: Text
    symbol: str | None = None
    unit: str | None = None
    bands: list[_IdBand]

    @field_validator("bands")
    @classmethod
    def _contiguous_bands(cls, bands: list[_IdBand], info: ValidationInfo) -> list[_IdBand]:
        _contiguous(bands, info.data.get("symbol") or info.data.get("input") or "x")
        return bands


class _Limit(ConfigModel):
    param: ParamCode
    unit: UnitId
    averaging: Averaging | None = None
    max: LimitValue | None = None
    min: LimitValue | None = None
    valid_from: Day | None = None
    valid_to: Day | None = None
    category: str | None = None
    flow_band: str | None = None
    provenance: ProvenanceRef

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value not in _scope(info).categories:
            raise ValueError(f"no category {value!r} in 'categories'")
        return value

    @field_validator("flow_band")
    @classmethod
    def _known_band(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value not in _scope(info).flow_bands:
            raise ValueError(f"no band {value!r} in 'flow_bands'")
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> _Limit:
        scope = _scope(info)
        if not scope.catalog.accepts(
            scope.catalog.parameters[self.param], scope.catalog.units[self.unit]
        ):
            raise FieldError("unit", f"{self.param} cannot be measured in {self.unit}")
        if self.averaging is None and scope.default_averaging is None:
            raise ValueError(
                f"averaging must be one of {', '.join(AVERAGING_PERIODS)} (the file has no "
                "default 'averaging')"
            )
        if self.max is None and self.min is None:
            raise ValueError("give 'max', 'min' or both (a range such as pH 6–9)")
        maxima, minima = _per_column(self.max), _per_column(self.min)
        for column in maxima.keys() & minima.keys():
            if minima[column] >= maxima[column]:
                raise FieldError(
                    "min", f"min {minima[column]:g} is not below max {maxima[column]:g}"
                )
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise FieldError("valid_to", "must be after valid_from")
        return self


def _per_column(value: float | dict[str, float] | None) -> dict[str | None, float]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {column: number for column, number in value.items()}
    return {None: value}


def _limit_list(value: list[_Limit], info: ValidationInfo) -> list[_Limit]:
    if not value and not _scope(info).limits_missing:
        raise ValueError(
            "must be a non-empty list of limits (or [] with 'limits_missing' saying why)"
        )
    return value


class _Transition(ConfigModel):
    replaces: list[Text]
    existing_until: Day | None = None
    existing: _Texts
    provenance: ProvenanceRef

    @field_validator("replaces")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must list the ids of the regulations this one replaces")
        return value


class _Sector(ConfigModel):
    general: Text
    vi: Text
    en: Text


class _ColumnChoice(ConfigModel):
    vi: Text
    en: Text
    provenance: ProvenanceRef


class _RegulationFile(ConfigModel):
    format: str
    id: Text
    title: _Texts
    kind: Annotated[str, BeforeValidator(_kind)]
    issued_by: Text | None = None
    effective_from: Day | None = None
    effective_to: Day | None = None
    replaced_by: Text | None = None
    provenance: ProvenanceRef
    o2_reference_percent: O2Percent | None = None
    sources: dict[str, Any] | None = None  # checked first, by _Sources
    averaging: _AveragingSpec | None = None
    columns: dict[str, _Texts] | None = None
    categories: dict[str, _Category] | None = None
    flow_bands: _FlowBands | None = None
    coefficients: dict[str, _Coefficient] | None = None
    coefficients_not_applied_to: list[ParamCode] | None = None
    limits: list[_Limit]
    limits_missing: _Texts | None = None
    transition: _Transition | None = None
    sector: _Sector | None = None
    not_limited: list[ParamCode] | None = None
    column_choice: _ColumnChoice | None = None

    _limits = field_validator("limits")(_limit_list)

    @model_validator(mode="after")
    def _dates(self) -> _RegulationFile:
        if self.effective_from and self.effective_to and self.effective_to <= self.effective_from:
            raise FieldError("effective_to", "must be after effective_from")
        return self


class _SupplementFile(ConfigModel):
    """A department's rows for a shipped regulation (``extends: ID``)."""

    format: str
    extends: Text
    provenance: ProvenanceRef
    sources: dict[str, Any] | None = None
    categories: dict[str, _Category] | None = None
    limits: list[_Limit]

    _limits = field_validator("limits")(_limit_list)


class _FineTier(ConfigModel):
    over_m3_day: Number | None = None
    up_to_m3_day: Number | None = None
    min_vnd: NonNegative
    max_vnd: NonNegative


CLAUSE_NOT_VERIFIED = "not verified"


class _PenaltyBand(ConfigModel):
    lower: Annotated[float, BeforeValidator(_number), _at_least(1.0)]
    upper: Number | None = None
    consequence: _Texts
    provenance: ProvenanceRef
    fine_tiers: list[_FineTier] | None = None
    # A clause is law only where a source was read: "not verified" (or none), or the clause with
    # ``clause_source``, so that none can be typed in from memory unnoticed.
    clause: Text | None = None
    clause_source: ProvenanceRef | None = None

    def clause_verified(self) -> bool:
        return self.clause is not None and self.clause.strip() != CLAUSE_NOT_VERIFIED

    @model_validator(mode="after")
    def _clause_has_a_source(self) -> _PenaltyBand:
        if not self.clause_verified():
            if self.clause_source is not None:
                raise FieldError("clause_source", "only with a clause (not with 'not verified')")
        elif self.clause_source is None:
            raise FieldError(
                "clause_source",
                f"'clause_source' is required with a clause: the source that names it "
                f"(or clause: {CLAUSE_NOT_VERIFIED!r})",
            )
        return self


class _PenaltyKind(ConfigModel):
    article: Text
    bands: list[_PenaltyBand]

    @field_validator("bands")
    @classmethod
    def _contiguous_bands(cls, bands: list[_PenaltyBand]) -> list[_PenaltyBand]:
        """From 1 up, each band starting where the one before ends; the last open above."""
        if not bands:
            raise ValueError("must be a non-empty list of bands")
        previous: float | None = 1.0
        for i, band in enumerate(bands):
            if previous is not None and band.lower != previous:
                problem = "gap" if band.lower > previous else "overlap"
                raise FieldError(
                    f"[{i}].lower",
                    f"{problem}: the band before ends at {number_text(previous)}, "
                    f"this one starts at {number_text(band.lower)}",
                )
            if band.upper is not None and band.upper <= band.lower:
                raise FieldError(f"[{i}].upper", "must be above lower")
            if i < len(bands) - 1 and band.upper is None:
                raise FieldError(i, "'upper' is required except in the last band")
            if i == len(bands) - 1 and band.upper is not None:
                raise FieldError(f"[{i}].upper", "the last band must be open above (no 'upper')")
            previous = band.upper
        return bands


class _PenaltyFile(ConfigModel):
    format: str
    id: Text
    title: _Texts
    effective_from: Day | None = None
    provenance: ProvenanceRef
    sources: dict[str, Any] | None = None
    kinds: dict[str, _PenaltyKind]

    @field_validator("kinds", mode="before")
    @classmethod
    def _known_kinds(cls, value: Any) -> Any:
        for kind in value if isinstance(value, dict) else ():
            if kind not in PENALTY_KINDS:
                raise FieldError(str(kind), f"must be one of {', '.join(PENALTY_KINDS)}")
        return value


# --- From checked files to the catalog ---------------------------------------------------------

# A missing field, said the way this file's users know it.
_TEXT_PAIRS = {"title", "meaning", "consequence", "existing", "note", "limits_missing"}
_MISSING = {
    "provenance": "provenance is required: {source, confidence, note} or a source name",
    "limits": "'limits' is required: a non-empty list of limits (or [] with 'limits_missing' "
    "saying why)",
    "kind": f"'kind' is required: one of {', '.join(REGULATION_KINDS)}",
    "default": f"'default' is required: one of {', '.join(AVERAGING_PERIODS)}",
}
_TYPES = {
    "input should be a valid dictionary": "must be a mapping",
    "input should be a valid list": "must be a list",
    "input should be a valid string": "must be a string",
}


def _as_written(issue: ConfigIssue) -> ConfigIssue:
    message = issue.message
    key = re.sub(r"\[\d+\]$", "", issue.field.rpartition(".")[2])
    if message == "required field missing":
        if key in _TEXT_PAIRS:
            message = f"must be a mapping {{vi, en}} ('{key}' is required)"
        else:
            message = _MISSING.get(key, f"'{key}' is required")
    for prefix, text in _TYPES.items():
        if message.startswith(prefix):
            message = text
    return dataclasses.replace(issue, message=message)


@dataclass(slots=True)
class _File:
    """One file read: its data, the line of each field, and the problems found so far."""

    source: str
    data: dict[str, Any]
    lines: dict[str, int]
    issues: list[ConfigIssue] = field(default_factory=list)

    def fail(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.source, nearest_line(self.lines, path), path, message))

    def check(self, model: type[M], scope: _Scope, data: Any = None) -> M | None:
        data = self.data if data is None else data
        try:
            return validate(model, data, self.source, self.lines, RegulationError, "", scope)
        except RegulationError as exc:
            self.issues.extend(_as_written(i) for i in exc.issues)
            return None

    def sources(self, catalog: Catalog) -> dict[str, _ProvenanceEntry]:
        """The named sources, checked first: every use of a name then finds a checked entry."""
        spec = self.check(_Sources, _Scope(catalog), {"sources": self.data.get("sources")})
        if spec is not None:
            return dict(spec.sources or {})
        # The file is already invalid: a name is reported at its entry, not at every use.
        invalid = _ProvenanceEntry.model_construct(source="(invalid)", confidence="L")
        return dict.fromkeys(_keys(self.data.get("sources")), invalid)

    def raise_issues(self) -> None:
        if self.issues:
            raise RegulationError(sorted(self.issues, key=lambda i: i.line))


def _keys(value: Any) -> list[str]:
    return [str(k) for k in value] if isinstance(value, dict) else []


def _regulation_scope(data: dict[str, Any], catalog: Catalog, sources: dict[str, Any]) -> _Scope:
    bands = (data.get("flow_bands") or {}) if isinstance(data.get("flow_bands"), dict) else {}
    averaging = data.get("averaging")
    default = averaging.get("default") if isinstance(averaging, dict) else averaging
    return _Scope(
        catalog,
        sources,
        columns=tuple(_keys(data.get("columns"))),
        categories=frozenset(_keys(data.get("categories"))),
        flow_bands=frozenset(
            str(b["id"]) for b in bands.get("bands") or [] if isinstance(b, dict) and "id" in b
        ),
        # Checked at its place; the rows only need to know that the file gives one.
        default_averaging=None if default is None else str(default),
        limits_missing=data.get("limits_missing") is not None,
    )


def _texts(spec: _Texts | None) -> tuple[str, str]:
    return (spec.vi, spec.en) if spec is not None else ("", "")


def _provenance(spec: _ProvenanceEntry | None) -> Provenance | None:
    return spec.provenance() if spec is not None else None


def _rule(spec: _Rule) -> CoefficientRule:
    meaning_vi, meaning_en = _texts(spec.meaning)
    note_vi, note_en = _texts(spec.default.note if spec.default else None)
    common: dict[str, Any] = {
        "meaning_vi": meaning_vi,
        "meaning_en": meaning_en,
        "default": spec.default.value if spec.default else None,
        "default_note_vi": note_vi,
        "default_note_en": note_en,
    }
    if spec.value is not None:
        return CoefficientRule(value=spec.value, **common)
    if spec.cases is not None:
        cases = {key: _rule(case) for key, case in spec.cases.items()}
        return CoefficientRule(select_by=spec.select_by, cases=cases, **common)
    station_input = {"input": spec.input, "symbol": spec.symbol or spec.input or "", **common}
    station_input["unit"] = spec.unit or ""
    if spec.allowed is not None:
        return CoefficientRule(allowed=tuple(spec.allowed), **station_input)
    bands = tuple(Band(b.over, b.up_to, b.value) for b in spec.bands or ())
    return CoefficientRule(bands=bands, **station_input)


def _categories(specs: dict[str, _Category] | None) -> dict[str, Category]:
    return {
        key: Category(key, c.vi, c.en, c.o2_reference_percent, _provenance(c.provenance))
        for key, c in (specs or {}).items()
    }


def _ranges_overlap(
    a_from: date | None, a_to: date | None, b_from: date | None, b_to: date | None
) -> bool:
    return (a_to is None or b_from is None or b_from < a_to) and (
        b_to is None or a_from is None or a_from < b_to
    )


def _limits(
    file: _File,
    specs: list[_Limit],
    scope: _Scope,
    existing: tuple[RegulationLimit, ...] = (),
    existing_path: str = "",
) -> tuple[RegulationLimit, ...]:
    """The table's rows, one per column; rows of one parameter, averaging period, category and
    flow band (here or in the file a supplement extends) must not overlap in dates."""
    seen: dict[tuple[str, str, str | None, str | None], list[tuple[int, date | None, date | None]]]
    seen = {}
    first_column = scope.columns[0] if scope.columns else None
    for row in existing:
        if row.column == first_column:
            key = (row.param, row.averaging, row.category, row.flow_band)
            seen.setdefault(key, []).append((-1, row.valid_from, row.valid_to))
    limits: list[RegulationLimit] = []
    for i, spec in enumerate(specs):
        path = f"limits[{i}]"
        averaging = spec.averaging or str(scope.default_averaging)
        key = (spec.param, averaging, spec.category, spec.flow_band)
        for j, other_from, other_to in seen.get(key, []):
            if _ranges_overlap(spec.valid_from, spec.valid_to, other_from, other_to):
                other = (
                    f"a row of {existing_path}"
                    if j < 0
                    else f"limits[{j}] (line {nearest_line(file.lines, f'limits[{j}]')})"
                )
                file.fail(
                    f"{path}.valid_from" if spec.valid_from is not None else path,
                    f"{spec.param} {averaging}: dates overlap {other}; give valid_from/valid_to "
                    "that do not overlap",
                )
                break
        seen.setdefault(key, []).append((i, spec.valid_from, spec.valid_to))
        maxima, minima = _per_column(spec.max), _per_column(spec.min)
        provenance = spec.provenance.provenance()
        line = nearest_line(file.lines, path)
        for column in scope.columns or (None,):
            limits.append(
                RegulationLimit(
                    param=spec.param,
                    unit=spec.unit,
                    averaging=averaging,
                    column=column,
                    maximum=maxima.get(column),
                    minimum=minima.get(column),
                    valid_from=spec.valid_from,
                    valid_to=spec.valid_to,
                    category=spec.category,
                    flow_band=spec.flow_band,
                    provenance=provenance,
                    line=line,
                )
            )
    return tuple(limits)


def _regulation(file: _File, catalog: Catalog) -> Regulation:
    scope = _regulation_scope(file.data, catalog, file.sources(catalog))
    spec = file.check(_RegulationFile, scope)
    file.raise_issues()
    assert spec is not None
    limits = _limits(file, spec.limits, scope)
    file.raise_issues()
    flow_bands = None
    if spec.flow_bands is not None:
        fb = spec.flow_bands
        flow_bands = FlowBands(
            fb.input,
            fb.symbol or fb.input,
            fb.unit or "",
            tuple(FlowBand(b.id, b.over, b.up_to) for b in fb.bands),
        )
    columns = spec.columns or {}
    transition = None
    if spec.transition is not None:
        t = spec.transition
        transition = Transition(
            tuple(t.replaces), t.existing_until, *_texts(t.existing), t.provenance.provenance()
        )
    missing_vi, missing_en = _texts(spec.limits_missing)
    choice = spec.column_choice
    choice_vi, choice_en = (choice.vi, choice.en) if choice else ("", "")
    sector = spec.sector
    return Regulation(
        id=spec.id,
        title_vi=spec.title.vi,
        title_en=spec.title.en,
        kind=spec.kind,
        effective_from=spec.effective_from,
        effective_to=spec.effective_to,
        replaced_by=spec.replaced_by,
        columns={k: v.en for k, v in columns.items()},
        o2_reference_percent=spec.o2_reference_percent,
        provenance=spec.provenance.provenance(),
        path=file.source,
        issued_by=spec.issued_by,
        columns_vi={k: v.vi for k, v in columns.items()},
        default_averaging=spec.averaging.default if spec.averaging else None,
        averaging_provenance=spec.averaging.provenance.provenance() if spec.averaging else None,
        coefficients=tuple(
            Coefficient(name, c.meaning.vi, c.meaning.en, _rule(c), c.provenance.provenance())
            for name, c in (spec.coefficients or {}).items()
        ),
        coefficients_not_applied_to=frozenset(spec.coefficients_not_applied_to or ()),
        categories=_categories(spec.categories),
        flow_bands=flow_bands,
        limits=limits,
        limits_missing_vi=missing_vi,
        limits_missing_en=missing_en,
        transition=transition,
        sector_of=sector.general if sector else None,
        sector_vi=sector.vi if sector else "",
        sector_en=sector.en if sector else "",
        not_limited=frozenset(spec.not_limited or ()),
        column_choice_vi=choice_vi,
        column_choice_en=choice_en,
        column_choice_provenance=_provenance(choice.provenance if choice else None),
    )


def _supplement(file: _File, catalog: Catalog, base: Regulation) -> Regulation:
    """A catalog regulation with the source categories and limit rows a department adds
    (``extends:``): the shipped file keeps its facts, the department's file its own source and
    confidence."""
    added_names = frozenset(_keys(file.data.get("categories")))
    scope = _Scope(
        catalog,
        file.sources(catalog),
        columns=tuple(base.columns),
        categories=frozenset(base.categories) | added_names,
        flow_bands=frozenset(b.id for b in base.flow_bands.bands)
        if base.flow_bands
        else frozenset(),
        default_averaging=base.default_averaging,
    )
    spec = file.check(_SupplementFile, scope)
    file.raise_issues()
    assert spec is not None
    added = _categories(spec.categories)
    for key in added.keys() & base.categories.keys():
        file.fail(f"categories.{key}", f"category {key!r} is already in {base.path}")
    rows = _limits(file, spec.limits, scope, existing=base.limits, existing_path=base.path)
    file.raise_issues()
    return dataclasses.replace(
        base,
        categories={**base.categories, **added},
        limits=base.limits + rows,
        supplements=(*base.supplements, file.source),
    )


def _band_label(lower: float, upper: float | None) -> str:
    if upper is None:
        return f"≥{number_text(lower)}"
    if lower <= 1.0:
        return f"<{number_text(upper)}"
    return f"{number_text(lower)}–<{number_text(upper)}"


def _penalties(file: _File, catalog: Catalog) -> PenaltySchedule:
    spec = file.check(_PenaltyFile, _Scope(catalog, file.sources(catalog)))
    file.raise_issues()
    assert spec is not None
    result: dict[str, tuple[PenaltyBand, ...]] = {}
    for kind, entry in spec.kinds.items():
        bands = []
        for b in entry.bands:
            provenance = b.provenance.provenance()
            verified = b.clause_verified()
            bands.append(
                PenaltyBand(
                    label=_band_label(b.lower, b.upper),
                    lower=b.lower,
                    upper=b.upper,
                    article=entry.article,
                    consequence_vi=b.consequence.vi,
                    consequence_en=b.consequence.en,
                    unverified=provenance.unverified,
                    kind=kind,
                    document=spec.id,
                    provenance=provenance,
                    fine_tiers=tuple(
                        FineTier(t.over_m3_day, t.up_to_m3_day, int(t.min_vnd), int(t.max_vnd))
                        for t in b.fine_tiers or ()
                    ),
                    clause=(b.clause or "") if verified else "",
                    clause_provenance=_provenance(b.clause_source) if verified else None,
                )
            )
        result[kind] = tuple(bands)
    return PenaltySchedule(
        spec.id,
        spec.title.vi,
        spec.title.en,
        spec.effective_from,
        spec.provenance.provenance(),
        file.source,
        result,
    )


def _read(path: Path) -> _File:
    source = str(path)
    data, lines = read_yaml_file(path, RegulationError)
    if not isinstance(data, dict):
        raise RegulationError.at(
            source, lines, "format", "the file must be a mapping starting with 'format:'"
        )
    return _File(source, data, lines)


def _parse(file: _File, catalog: Catalog) -> Regulation | PenaltySchedule:
    fmt = file.data.get("format")
    if fmt == REGULATION_FORMAT:
        return _regulation(file, catalog)
    if fmt == PENALTY_FORMAT:
        return _penalties(file, catalog)
    file.fail("format", f"must be {REGULATION_FORMAT!r} or {PENALTY_FORMAT!r}, not {fmt!r}")
    file.raise_issues()
    raise AssertionError("unreachable")


def load_regulation_file(path: Path, catalog: Catalog) -> Regulation | PenaltySchedule:
    """One regulation or penalty-band file, checked completely; raises RegulationError.

    A table supplement (``extends:``) needs the regulation it extends: load it with
    ``load_regulation_files`` together with that regulation's file.
    """
    file = _read(path)
    if "extends" in file.data:
        file.fail(
            "extends", "a table supplement is checked together with the regulation it extends"
        )
        file.raise_issues()
    return _parse(file, catalog)


def load_regulation_files(paths: Iterable[Path], catalog: Catalog) -> RegulationCatalog:
    """Several files as one catalog: every file is checked, and ids must not repeat.

    Table supplements (``extends: ID``) are checked against the regulation they extend, after
    every regulation file, and their rows join that regulation's table.
    """
    issues: list[ConfigIssue] = []
    result = RegulationCatalog()
    penalty_kinds: dict[str, str] = {}
    supplements: list[_File] = []
    lines: dict[str, dict[str, int]] = {}
    for path in paths:
        try:
            file = _read(path)
            lines[file.source] = file.lines
            if "extends" in file.data:
                supplements.append(file)
                continue
            loaded = _parse(file, catalog)
        except RegulationError as exc:
            issues.extend(exc.issues)
            continue
        id_line = file.lines.get("id", 1)
        if isinstance(loaded, Regulation):
            other = result.regulations.get(loaded.id)
            if other is not None:
                issues.append(
                    ConfigIssue(
                        file.source, id_line, "id", f"{loaded.id!r} is also in {other.path}"
                    )
                )
                continue
            result.regulations[loaded.id] = loaded
        else:
            for kind in loaded.bands:
                if kind in penalty_kinds:
                    issues.append(
                        ConfigIssue(
                            file.source,
                            id_line,
                            f"kinds.{kind}",
                            f"{kind} penalty bands are also in {penalty_kinds[kind]}",
                        )
                    )
                penalty_kinds[kind] = file.source
            result.penalties.append(loaded)
    for file in supplements:
        if file.data.get("format") != REGULATION_FORMAT:
            file.fail("format", f"a table supplement must be {REGULATION_FORMAT!r}")
        base = result.regulations.get(str(file.data.get("extends")))
        if base is None:
            known = ", ".join(r.id for r in result.all()) or "none"
            file.fail("extends", f"no regulation {file.data.get('extends')!r} (known: {known})")
        try:
            file.raise_issues()
            assert base is not None
            result.regulations[base.id] = _supplement(file, catalog, base)
        except RegulationError as exc:
            issues.extend(exc.issues)
    for reg in result.all():
        if reg.sector_of is None:
            continue
        general = result.regulations.get(reg.sector_of)
        line = nearest_line(lines.get(reg.path, {}), "sector.general")
        if general is None:
            message = f"no regulation {reg.sector_of!r} in the catalog"
        elif general.kind != reg.kind:
            message = f"{general.id} is a {general.kind} regulation, this one {reg.kind}"
        else:
            continue
        issues.append(ConfigIssue(reg.path, line, "sector.general", message))
    if issues:
        raise RegulationError(issues)
    return result


def regulation_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.yaml") if p.is_file())


def load_regulation_catalog(folder: Path, catalog: Catalog) -> RegulationCatalog:
    """Every ``*.yaml`` of the folder; raises RegulationError naming file, line and field."""
    if not folder.is_dir():
        raise RegulationError([ConfigIssue(str(folder), 0, "(folder)", "not a folder")])
    return load_regulation_files(regulation_files(folder), catalog)
