"""Effective limits of one station: the regulation's table, its coefficients, the permit.

A station's registry entry names its regulation, column and coefficient inputs; this module turns
them into Cmax per parameter and averaging period, and keeps the arithmetic as text
("C × Kq × Kf = 75 × 1.0 × 0.9 = 67.5 mg/L") so an inspector can check it. Pure: no I/O.

Dates are Vietnamese calendar days: ``valid_from`` is the first day a limit applies,
``valid_to`` the first day it no longer applies (None: open). A measured time is turned into its
date at UTC+07:00 before it is compared.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from quantrac.core.i18n import translate
from quantrac.core.registry import RegulationRef, Station, as_date
from quantrac.core.time import VIETNAM
from quantrac.regulations.tables import (
    AVERAGING_PERIODS,
    CONFIDENCE_PATTERN,
    Coefficient,
    CoefficientRule,
    Provenance,
    Regulation,
    RegulationCatalog,
    RegulationLimit,
    number_text,
    range_text,
)

# A permit written by a person: a primary document unless it says otherwise.
PERMIT_CONFIDENCE = "H"


def _words(lang: str) -> dict[str, str]:
    """The words of a limit's description, from the translation table (config/messages/
    limits.yaml): averaging periods, column, permit, unverified, from, until."""
    keys = ("column", "permit", "unverified", "from", "until")
    words = {k: translate(f"limit.word.{k}", lang) for k in keys}
    for code in ("1h", "8h", "24h", "year"):
        words[code] = translate(f"limit.averaging.{code}", lang)
    return words


_PERMIT_KEYS = frozenset(
    {"param", "averaging", "max", "min", "unit", "source", "confidence", "note"}
    | {"effective_from", "effective_to"}
)


def vietnam_date(at: datetime) -> date:
    """The Vietnamese calendar day of an aware time (limits change at local midnight)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("the time must be timezone-aware (UTC)")
    return at.astimezone(VIETNAM).date()


def correct_to_o2_reference(
    value: float, o2_measured_percent: float, o2_reference_percent: float
) -> float:
    """C × (20.9 − O2ref) / (20.9 − O2meas): a stack concentration at the reference oxygen."""
    if not o2_measured_percent < 20.9:
        raise ValueError("measured O2 must be below 20.9 % (oxygen in air)")
    return value * (20.9 - o2_reference_percent) / (20.9 - o2_measured_percent)


def factor_text(value: float) -> str:
    # Coefficients are written "1.0", "0.9" in the regulations; keep that look.
    return f"{value:.1f}" if float(value).is_integer() else number_text(value)


@dataclass(frozen=True, slots=True)
class Factor:
    name: str  # "Kq"
    value: float
    explanation: str  # "river, Q = 120 m3/s (50 < Q ≤ 200)"
    explanation_vi: str = ""
    unverified: bool = False
    is_default: bool = False  # the input was missing and the regulation's default was used


@dataclass(frozen=True, slots=True)
class EffectiveLimit:
    station_id: str
    param: str
    unit: str
    averaging: str  # "1h" | "8h" | "24h" | "year"
    regulation_id: str
    regulation_kind: str
    column: str | None
    maximum: float | None  # after coefficients
    minimum: float | None  # a range limit (pH) has both
    base_maximum: float | None
    base_minimum: float | None
    factors: tuple[Factor, ...]
    formula: str
    provenance: Provenance
    unverified: bool  # the value or one of its coefficients is [L]: check before relying on it
    source: str  # "regulation" | "permit"
    valid_from: date | None  # first Vietnamese calendar day it applies (inclusive)
    valid_to: date | None  # first day it no longer applies (exclusive)
    o2_reference_percent: float | None
    formula_vi: str = ""  # the formula in Vietnamese (``formula`` is the English one)

    def formula_text(self, lang: str = "vi") -> str:
        """The formula in the user's language: its words come from the translation table."""
        return self.formula_vi if lang == "vi" and self.formula_vi else self.formula

    def applies_on(self, day: date) -> bool:
        return (self.valid_from is None or day >= self.valid_from) and (
            self.valid_to is None or day < self.valid_to
        )

    def exceeds(self, value: float) -> bool:
        return self.excess(value) > 0

    def multiple(self, value: float) -> float | None:
        """value / Cmax, the figure Decree 45/2022 bands use; None for a range such as pH."""
        if self.minimum is not None or self.maximum is None or self.maximum <= 0:
            return None
        return value / self.maximum

    def excess(self, value: float) -> float:
        """How far outside the limit the value is (0 when within); both ends of a range."""
        if self.maximum is not None and value > self.maximum:
            return value - self.maximum
        if self.minimum is not None and value < self.minimum:
            return self.minimum - value
        return 0.0

    def validity_text(self, lang: str = "vi") -> str:
        """'from 2026-01-01', 'until 2025-12-31' (the last day, inclusive) or both; '' if open."""
        words = _words(lang)
        parts = []
        if self.valid_from is not None:
            parts.append(f"{words['from']} {self.valid_from.isoformat()}")
        if self.valid_to is not None:
            last = self.valid_to - timedelta(days=1)
            parts.append(f"{words['until']} {last.isoformat()}")
        return ", ".join(parts)

    def bound_text(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            # "pH 6–9", not "pH 6–9 pH"
            unit = "" if self.unit == self.param else f" {self.unit}"
            return f"{number_text(self.minimum)}–{number_text(self.maximum)}{unit}"
        if self.maximum is not None:
            return f"≤ {number_text(self.maximum)} {self.unit}"
        return f"≥ {number_text(self.minimum)} {self.unit}"

    def describe(self, lang: str = "vi") -> str:
        words = _words(lang)
        averaging = words.get(self.averaging, self.averaging)
        where = self.regulation_id
        if self.column:
            where += f" {words['column']} {self.column}"
        if self.source == "permit":
            where = f"{words['permit']} ({self.provenance.source}); {where}"
        text = (
            f"{self.param} ({averaging}) {_number(self.bound_text(), lang)} — {where}: "
            f"{self.formula_text(lang)}"
        )
        if self.unverified:
            text += f" {words['unverified']}"
        return text


class LimitError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class StationLimits:
    station_id: str
    limits: list[EffectiveLimit] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    regime: list[RegimePeriod] = field(default_factory=list)  # which regulation when, and why

    def regime_on(self, day: date) -> RegimePeriod | None:
        return next((p for p in self.regime if p.applies_on(day)), None)

    def params(self) -> set[str]:
        return {limit.param for limit in self.limits}

    def in_force(self, param: str, at: datetime) -> list[EffectiveLimit]:
        """The limits of a parameter on the Vietnamese day of ``at``: one per averaging period.

        A permit limit in force replaces the regulation's limit of the same averaging period.
        """
        day = vietnam_date(at)
        chosen: dict[str, EffectiveLimit] = {}
        for limit in self.limits:
            if limit.param != param or not limit.applies_on(day):
                continue
            current = chosen.get(limit.averaging)
            if current is None or (limit.source == "permit" and current.source != "permit"):
                chosen[limit.averaging] = limit
        return [chosen[a] for a in AVERAGING_PERIODS if a in chosen]

    def raise_for_problems(self) -> None:
        if self.problems:
            raise LimitError(self.problems)


# --- Coefficients ------------------------------------------------------------------------------


class _Inputs:
    def __init__(
        self, station_id: str, values: dict[str, Any], prefix: str = "regulation.coefficients"
    ):
        self.station_id = station_id
        self.values = values
        self.prefix = prefix
        self.problems: list[str] = []

    def problem(self, name: str, message: str) -> None:
        self.problems.append(f"{self.station_id}: {self.prefix}.{name}: {message}")

    def number(self, name: str) -> float | None:
        """The input as a number ≥ 0; None when absent (a problem is recorded when invalid)."""
        value = self.values.get(name)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.problem(name, f"must be a number, not {value!r}")
            return None
        if value < 0:
            self.problem(name, "must not be negative")
            return None
        return float(value)


@dataclass(frozen=True, slots=True)
class _Outcome:
    value: float
    en: str
    vi: str
    is_default: bool = False


def _evaluate(rule: CoefficientRule, name: str, reg_id: str, inputs: _Inputs) -> _Outcome | None:
    """The coefficient for this station's inputs, or None after recording why not."""
    if rule.value is not None:
        return _Outcome(rule.value, rule.meaning_en, rule.meaning_vi)
    if rule.select_by is not None:
        key = inputs.values.get(rule.select_by)
        if key is None:
            return _default(rule, name, rule.select_by, reg_id, inputs, list(rule.cases))
        case = rule.cases.get(str(key))
        if case is None:
            inputs.problem(
                rule.select_by,
                f"{key!r} is not one of {', '.join(rule.cases)} ({name} of {reg_id})",
            )
            return None
        inner = _evaluate(case, name, reg_id, inputs)
        if inner is None:
            return None
        label = str(key) if str(key).isidentifier() else f"{rule.select_by} = {key}"
        if case.value is not None:
            return _Outcome(inner.value, f"{label} ({inner.en})", f"{label} ({inner.vi})")
        return _Outcome(
            inner.value, f"{label}, {inner.en}", f"{label}, {inner.vi}", inner.is_default
        )
    assert rule.input is not None
    x = inputs.number(rule.input)
    if x is None:
        if rule.input in inputs.values:
            return None  # invalid: already reported
        return _default(rule, name, rule.input, reg_id, inputs, [])
    unit = f" {rule.unit}" if rule.unit else ""
    if rule.allowed:
        if not any(math.isclose(x, a) for a in rule.allowed):
            allowed = ", ".join(factor_text(a) for a in rule.allowed)
            inputs.problem(rule.input, f"must be one of {allowed} ({name} of {reg_id})")
            return None
        text = f"{rule.input} = {factor_text(x)} (station registry)"
        return _Outcome(x, text, f"{rule.input} = {factor_text(x)} (sổ đăng ký trạm)")
    band = next((b for b in rule.bands if b.contains(x)), None)
    if band is None:  # the loader makes bands cover every value ≥ 0; kept for safety
        inputs.problem(rule.input, f"{number_text(x)} is outside the {name} table of {reg_id}")
        return None
    text = (
        f"{rule.symbol} = {number_text(x)}{unit} ({range_text(rule.symbol, band.over, band.up_to)})"
    )
    return _Outcome(band.value, text, text)


def _default(
    rule: CoefficientRule,
    name: str,
    input_name: str,
    reg_id: str,
    inputs: _Inputs,
    choices: list[str],
) -> _Outcome | None:
    if rule.default is not None:
        value = factor_text(rule.default)
        return _Outcome(
            rule.default,
            translate("limit.formula.default", "en", note=rule.default_note_en, value=value),
            translate(
                "limit.formula.default",
                "vi",
                note=rule.default_note_vi,
                value=decimal_comma(value),
            ),
            is_default=True,
        )
    hint = f" (one of {', '.join(choices)})" if choices else ""
    inputs.problem(
        input_name, f"required for {name} of {reg_id}{hint}; the regulation gives no default"
    )
    return None


def _factor(coefficient: Coefficient, reg_id: str, inputs: _Inputs) -> Factor | None:
    outcome = _evaluate(coefficient.rule, coefficient.name, reg_id, inputs)
    if outcome is None:
        return None
    return Factor(
        name=coefficient.name,
        value=outcome.value,
        explanation=outcome.en,
        explanation_vi=outcome.vi,
        unverified=coefficient.provenance.unverified,
        is_default=outcome.is_default,
    )


# --- Station limits ----------------------------------------------------------------------------


def _later(a: date | None, b: date | None) -> date | None:
    return b if a is None else a if b is None else max(a, b)


def _earlier(a: date | None, b: date | None) -> date | None:
    return b if a is None else a if b is None else min(a, b)


def _rows_for(
    regulation: Regulation,
    column: str | None,
    category: str | None,
    flow_band: str | None,
) -> dict[tuple[str, str], list[RegulationLimit]]:
    """Rows per (param, averaging); rows for the station's category or flow band replace
    the general rows of the same parameter and averaging period."""
    general: dict[tuple[str, str], list[RegulationLimit]] = {}
    specific: dict[tuple[str, str], list[RegulationLimit]] = {}
    for row in regulation.limits:
        if row.column != column:
            continue
        if row.category is not None and row.category != category:
            continue
        if row.flow_band is not None and row.flow_band != flow_band:
            continue
        target = specific if (row.category or row.flow_band) else general
        target.setdefault((row.param, row.averaging), []).append(row)
    return {**general, **specific}


def decimal_comma(text: str) -> str:
    """Vietnamese writes 0,9 for 0.9: every decimal point between digits becomes a comma."""
    return re.sub(r"(?<=\d)\.(?=\d)", ",", text)


def _number(text: str, lang: str) -> str:
    return decimal_comma(text) if lang == "vi" else text


def _math(
    row: RegulationLimit, factors: tuple[Factor, ...], maximum: float | None, unit: str
) -> str:
    if row.minimum is not None and row.maximum is not None:
        return f"{number_text(row.minimum)}–{number_text(row.maximum)}"
    if row.maximum is None:
        return f"≥ {number_text(row.minimum)} {unit}"
    if factors:
        names = " × ".join(f.name for f in factors)
        values = " × ".join(factor_text(f.value) for f in factors)
        return (
            f"C × {names} = {number_text(row.maximum)} × {values} = {number_text(maximum)} {unit}"
        )
    return f"C = {number_text(row.maximum)} {unit}"


def _formula(
    row: RegulationLimit,
    factors: tuple[Factor, ...],
    maximum: float | None,
    coefficients_apply: bool,
    regulation: Regulation,
    band_text: str,
    lang: str = "en",
) -> str:
    """'C × Kq × Kf = 150 × 0.9 × 1.1 = 148.5 mg/L (Kf: …)' with its words in ``lang``
    (and Vietnamese's decimal comma: 150 × 0,9 × 1,1 = 148,5 mg/L)."""
    unit = row.unit
    text = _math(row, factors, maximum, unit)
    if lang == "vi":
        text = decimal_comma(text)
    if regulation.coefficients and not coefficients_apply:
        text += f" ({translate('limit.formula.no_coefficients', lang)})"
    for factor in factors:
        if factor.is_default:
            explanation = factor.explanation_vi if lang == "vi" else factor.explanation
            text += f" ({factor.name}: {explanation})"
    if band_text:
        text += f" ({band_text})"
    return text


def station_limits(station: Station, regulations: RegulationCatalog) -> StationLimits:
    """The effective limits of the parameters a station declares, plus its permit limits.

    The station's regime (``regime`` in the registry) decides which regulation applies on which
    day: an existing facility keeps its regulation until the 2025 transition ends (or an earlier
    switch date from its permit), then ``regime.next``; a sector regulation takes precedence over
    the general one. Problems (unknown regulation or column, a missing coefficient input without
    a documented default, an invalid permit limit, a parameter with no number on a regulation
    whose table is missing) are returned, each naming the station and the field; the limits that
    could still be computed are returned with them.
    """
    result = StationLimits(station.id)
    if station.regulation is None:
        return result
    problems: list[str] = []
    periods = _regime_periods(station, regulations, problems)
    for period in periods:
        result.limits.extend(_period_limits(station, period, regulations, problems))
    result.regime = [period.public() for period in periods]
    _missing_numbers(station, periods, regulations, result.limits, problems)
    result.problems = list(dict.fromkeys(problems))  # a period repeats its regulation's problems
    return result


@dataclass(frozen=True, slots=True)
class RegimePeriod:
    """Which regulation applies to a station from one day to another, and why."""

    regulation_id: str
    column: str | None
    sector_id: str | None
    valid_from: date | None  # first day (None: as long as the regulation is in force)
    valid_to: date | None  # first day it no longer applies
    reason_key: str  # config/messages/regulations.yaml
    reason_params: tuple[tuple[str, str], ...] = ()

    def reason(self, lang: str = "vi") -> str:
        return translate(self.reason_key, lang, **dict(self.reason_params))

    def applies_on(self, day: date) -> bool:
        return (self.valid_from is None or day >= self.valid_from) and (
            self.valid_to is None or day < self.valid_to
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "regulation": self.regulation_id,
            "column": self.column,
            "sector": self.sector_id,
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "valid_to": self.valid_to.isoformat() if self.valid_to else None,
            "reason_vi": self.reason("vi"),
            "reason_en": self.reason("en"),
        }


def period_text(valid_from: date | None, valid_to: date | None, lang: str = "vi") -> str:
    """'từ 01/01/2032', 'đến hết 31/12/2031', both, or 'every day in force' (last day shown)."""
    parts = []
    if valid_from is not None:
        parts.append(translate("regime.from", lang, day=_vn_day(valid_from)))
    if valid_to is not None:
        parts.append(translate("regime.until", lang, day=_vn_day(valid_to - timedelta(days=1))))
    return ", ".join(parts) or translate("regime.always", lang)


def describe_regime(
    periods: Sequence[RegimePeriod], permit: str | None, lang: str = "vi"
) -> list[str]:
    """Which regulation applies when, and why; the sector precedence; the permit's citation."""
    lines = []
    for period in periods:
        column = translate("regime.column", lang, column=period.column) if period.column else ""
        head = translate(
            "regime.period",
            lang,
            period=period_text(period.valid_from, period.valid_to, lang),
            regulation=period.regulation_id,
            column=column,
        )
        lines.append(f"{head} — {period.reason(lang)}")
        if period.sector_id:
            sector = translate(
                "regime.sector", lang, sector=period.sector_id, general=period.regulation_id
            )
            lines.append(f"  {sector}")
    if permit is not None:
        lines.append(translate("regime.permit", lang, citation=permit))
    return lines


@dataclass(frozen=True, slots=True)
class _Period:
    ref: RegulationRef | None  # None: the regulation after the transition is not configured
    regulation_id: str
    valid_from: date | None
    valid_to: date | None
    reason_key: str
    reason_params: dict[str, str]

    def public(self) -> RegimePeriod:
        ref = self.ref
        return RegimePeriod(
            regulation_id=self.regulation_id,
            column=ref.column if ref else None,
            sector_id=ref.sector.id if ref and ref.sector else None,
            valid_from=self.valid_from,
            valid_to=self.valid_to,
            reason_key=self.reason_key,
            reason_params=tuple(self.reason_params.items()),
        )


def _vn_day(day: date | None) -> str:
    return f"{day:%d/%m/%Y}" if day else "–"


def _regime_periods(
    station: Station, regulations: RegulationCatalog, problems: list[str]
) -> list[_Period]:
    ref = station.regulation
    assert ref is not None
    regime = station.regime
    successor = regulations.successor(ref.id)
    if regime is None:
        own = regulations.get(ref.id)
        in_transition = successor is not None or (own is not None and own.transition is not None)
        key = "regime.unstated" if in_transition else "regime.registry"
        return [_Period(ref, ref.id, None, None, key, {"regulation": ref.id})]
    params = {"basis": regime.basis, "regulation": ref.id}
    if regime.status == "new":
        if successor is not None and successor.id != ref.id:
            since = _vn_day(successor.effective_from)
            problems.append(
                f"{station.id}: regime.status: a new facility applies {successor.id} (in force "
                f"from {since}), not {ref.id} which it replaces; set regulation.id"
            )
        own = regulations.get(ref.id)
        start = own.effective_from if own is not None else None
        end = own.effective_to if own is not None else None
        return [_Period(ref, ref.id, start, end, "regime.new", params)]

    transition = successor.transition if successor is not None else None
    transition_end = transition.existing_until if transition is not None else None
    switch = regime.switch_on
    if switch is not None and transition_end is not None and switch > transition_end:
        problems.append(
            f"{station.id}: regime.switch_on: {switch.isoformat()} is after the end of the "
            f"transition to {successor.id if successor else '?'} ({transition_end.isoformat()}, "
            "the first day the old regulation no longer applies); the transition end is used"
        )
        switch = transition_end
    end = switch or transition_end
    permit = station.permit.citation() if station.permit else translate("permit.unnamed")
    params = {
        **params,
        "next": regime.next.id if regime.next else successor.id if successor else "–",
        "last_day": _vn_day(end - timedelta(days=1)) if end else "–",
        "switch": _vn_day(end),
        "permit": permit,
    }
    if end is None:
        key = "regime.existing_open" if successor is not None else "regime.existing_plain"
        return [_Period(ref, ref.id, None, None, key, params)]
    key = "regime.existing_switch" if regime.switch_on is not None else "regime.existing"
    periods = [_Period(ref, ref.id, None, end, key, params)]
    if regime.next is not None:
        periods.append(
            _Period(regime.next, regime.next.id, end, None, "regime.after_transition", params)
        )
    else:
        periods.append(_Period(None, params["next"], end, None, "regime.next_missing", params))
    return periods


def _clip(limit: EffectiveLimit, period: _Period) -> EffectiveLimit | None:
    valid_from = _later(limit.valid_from, period.valid_from)
    valid_to = _earlier(limit.valid_to, period.valid_to)
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        return None
    return dataclasses.replace(limit, valid_from=valid_from, valid_to=valid_to)


def _period_limits(
    station: Station, period: _Period, regulations: RegulationCatalog, problems: list[str]
) -> list[EffectiveLimit]:
    ref = period.ref
    if ref is None:
        # After the transition with no regulation configured: the permit still binds.
        following = regulations.get(period.regulation_id)
        if following is None or following.kind != station.kind:
            return []
        bare = RegulationRef(following.id, None, {})
        permits = _permits(station, bare, following, [], problems)
        return [c for limit in permits if (c := _clip(limit, period)) is not None]
    field_name = "regulation" if ref is station.regulation else "regime.next"
    regulation = _checked(station, ref, regulations, field_name, problems)
    if regulation is None:
        return []
    limits = _regulation_limits(station, ref, regulation, field_name, problems)
    if ref.sector is not None:
        limits = _with_sector(station, ref, regulation, limits, regulations, field_name, problems)
    permits = _permits(station, ref, regulation, limits, problems)
    return [c for limit in limits + permits if (c := _clip(limit, period)) is not None]


def _checked(
    station: Station,
    ref: RegulationRef,
    regulations: RegulationCatalog,
    field_name: str,
    problems: list[str],
) -> Regulation | None:
    regulation = regulations.get(ref.id)
    if regulation is None:
        known = ", ".join(r.id for r in regulations.all()) or "none"
        problems.append(
            f"{station.id}: {field_name}.id: {ref.id!r} is not in the regulation catalog "
            f"(known: {known})"
        )
        return None
    if regulation.kind != station.kind:
        problems.append(
            f"{station.id}: {field_name}.id: {ref.id} is a {regulation.kind} regulation, "
            f"the station is {station.kind}"
        )
        return None
    if regulation.columns and ref.column not in regulation.columns:
        problems.append(
            f"{station.id}: {field_name}.column: must be one of {', '.join(regulation.columns)} "
            f"for {ref.id}, not {ref.column!r}"
        )
        return None
    if not regulation.columns and ref.column is not None:
        problems.append(
            f"{station.id}: {field_name}.column: {ref.id} has no columns; remove {ref.column!r}"
        )
        return None
    return regulation


def _with_sector(
    station: Station,
    ref: RegulationRef,
    general: Regulation,
    limits: list[EffectiveLimit],
    regulations: RegulationCatalog,
    field_name: str,
    problems: list[str],
) -> list[EffectiveLimit]:
    """The sector regulation's limits replace the general one's of the same parameter and
    averaging period; a parameter the sector regulation has no row for keeps the general limit
    only when the sector table is complete (with its table missing, nobody knows)."""
    sector_ref = ref.sector
    assert sector_ref is not None
    where = f"{field_name}.sector"
    candidate = regulations.get(sector_ref.id)
    if candidate is not None and candidate.sector_of != general.id:
        problems.append(
            f"{station.id}: {where}.id: {candidate.id} is not a sector regulation of {general.id}"
            + (f" (it is one of {candidate.sector_of})" if candidate.sector_of else "")
        )
        return limits
    sector = _checked(station, sector_ref, regulations, where, problems)
    if sector is None:
        return limits
    own = _regulation_limits(station, sector_ref, sector, where, problems)
    covered = {(limit.param, limit.averaging) for limit in own}
    sector_params = {limit.param for limit in own}
    kept = [
        limit
        for limit in limits
        if (limit.param, limit.averaging) not in covered
        and limit.param not in sector_params
        and not sector.limits_missing
    ]
    return own + kept


def _missing_numbers(
    station: Station,
    periods: list[_Period],
    regulations: RegulationCatalog,
    limits: list[EffectiveLimit],
    problems: list[str],
) -> None:
    """Say which monitored parameter has no number on a regulation whose table is missing."""
    for period in periods:
        ref = period.ref
        if ref is None:
            continue
        general = regulations.get(ref.id)
        sector = regulations.get(ref.sector.id) if ref.sector else None
        incomplete = [r for r in (sector, general) if r is not None and r.limits_missing]
        if not incomplete or general is None or general.kind != station.kind:
            continue
        regulation = incomplete[0]
        exempt = regulation.not_limited | (sector.not_limited if sector else frozenset())
        for param in station.parameters:
            if param in exempt:
                continue
            if any(
                lim.param == param and _overlaps(lim, period.valid_from, period.valid_to)
                for lim in limits
            ):
                continue
            when = _period_text(period.valid_from, period.valid_to)
            problems.append(
                f"{station.id}: {param}: no numeric limit in {regulation.id}{when}: "
                f"{regulation.missing_text('en')} "
                "(docs/regulations.md: adding a table; stations.yaml: permit.limits)"
            )


def _overlaps(limit: EffectiveLimit, start: date | None, end: date | None) -> bool:
    return (limit.valid_to is None or start is None or limit.valid_to > start) and (
        end is None or limit.valid_from is None or limit.valid_from < end
    )


def _period_text(start: date | None, end: date | None) -> str:
    parts = []
    if start is not None:
        parts.append(f"from {start.isoformat()}")
    if end is not None:
        parts.append(f"until {(end - timedelta(days=1)).isoformat()}")
    return f" ({', '.join(parts)})" if parts else ""


def _regulation_limits(
    station: Station,
    ref: RegulationRef,
    regulation: Regulation,
    field_name: str,
    problems: list[str],
) -> list[EffectiveLimit]:
    """One regulation's limits for a station (its column, coefficients, category, flow band)."""
    result: list[EffectiveLimit] = []
    inputs = _Inputs(station.id, ref.coefficients, f"{field_name}.coefficients")
    used = regulation.inputs()
    for name in ref.coefficients:
        if name not in used:
            expected = ", ".join(sorted(used)) or "none"
            inputs.problem(name, f"not used by {ref.id} (its inputs: {expected})")

    category = None
    o2_reference = regulation.o2_reference_percent
    o2_unverified = False  # an [L] O2 reference makes every corrected limit unverified
    if ref.coefficients.get("category") is not None:
        category = str(ref.coefficients["category"])
        found = regulation.categories.get(category)
        if found is None:
            if "category" in used:
                choices = ", ".join(regulation.categories)
                inputs.problem("category", f"{category!r} is not one of {choices}")
            category = None
        elif found.o2_reference_percent is not None:
            o2_reference = found.o2_reference_percent
            o2_unverified = found.unverified

    flow_band = None
    band_text = band_text_vi = ""
    if regulation.flow_bands is not None:
        bands = regulation.flow_bands
        x = inputs.number(bands.input)
        if x is not None:
            selected = bands.band_for(x)
            if selected is not None:
                flow_band = selected.id
                band_text, band_text_vi = (
                    translate(
                        "limit.formula.flow_band",
                        lang,
                        band=selected.id,
                        symbol=bands.symbol,
                        value=_number(number_text(x), lang),
                        unit=bands.unit,
                        range=_number(
                            range_text(bands.symbol, selected.over, selected.up_to), lang
                        ),
                    ).replace("  ", " ")
                    for lang in ("en", "vi")
                )
        elif bands.input not in ref.coefficients and any(r.flow_band for r in regulation.limits):
            inputs.problem(bands.input, f"required to choose the flow band of {ref.id}")

    factors: list[Factor] = []
    factors_ok = True
    for coefficient in regulation.coefficients:
        factor = _factor(coefficient, ref.id, inputs)
        if factor is None:
            factors_ok = False
        else:
            factors.append(factor)

    rows = _rows_for(regulation, ref.column, category, flow_band)
    for param in station.parameters:
        keys = [key for key in rows if key[0] == param]
        limited = any(r.param == param for r in regulation.limits)
        if not keys and limited and regulation.categories and category is None:
            inputs.problem(
                "category",
                f"{param} has limits only per source category in {ref.id}: "
                f"set one of {', '.join(regulation.categories)}",
            )
        for key in keys:
            for row in rows[key]:
                limit = _effective(
                    station,
                    regulation,
                    row,
                    factors,
                    factors_ok,
                    o2_reference,
                    {"en": band_text, "vi": band_text_vi},
                )
                if limit is not None and o2_unverified and not limit.unverified:
                    limit = dataclasses.replace(limit, unverified=True)
                if limit is not None:
                    result.append(limit)
    problems.extend(inputs.problems)
    if not factors_ok:
        skipped = sorted(
            {p for p in station.parameters if any(k[0] == p for k in rows)}
            - {limit.param for limit in result}
        )
        if skipped:
            problems.append(
                f"{station.id}: no limit computed for {', '.join(skipped)} "
                "until the coefficient inputs above are fixed"
            )
    return result


def _effective(
    station: Station,
    regulation: Regulation,
    row: RegulationLimit,
    factors: list[Factor],
    factors_ok: bool,
    o2_reference: float | None,
    band_text: dict[str, str],
) -> EffectiveLimit | None:
    valid_from = _later(regulation.effective_from, row.valid_from)
    valid_to = _earlier(regulation.effective_to, row.valid_to)
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        return None
    applies = regulation.coefficients_apply(row.param) and row.minimum is None
    used = tuple(factors) if applies and row.maximum is not None else ()
    if applies and row.maximum is not None and not factors_ok:
        return None
    maximum = row.maximum
    if maximum is not None and used:
        product = maximum
        for factor in used:
            product *= factor.value
        # Float noise (75 × 0.9 × 1.1 = 74.25000000000001) must not show in limits or alerts.
        maximum = round(product, 9)
    formulas = {
        lang: _formula(
            row,
            used,
            maximum,
            applies and row.maximum is not None,
            regulation,
            band_text[lang] if row.flow_band else "",
            lang,
        )
        for lang in ("en", "vi")
    }
    return EffectiveLimit(
        station_id=station.id,
        param=row.param,
        unit=row.unit,
        averaging=row.averaging,
        regulation_id=regulation.id,
        regulation_kind=regulation.kind,
        column=row.column,
        maximum=maximum,
        minimum=row.minimum,
        base_maximum=row.maximum,
        base_minimum=row.minimum,
        factors=used,
        formula=formulas["en"],
        formula_vi=formulas["vi"],
        provenance=row.provenance,
        unverified=row.unverified or any(f.unverified for f in used),
        source="regulation",
        valid_from=valid_from,
        valid_to=valid_to,
        o2_reference_percent=o2_reference if regulation.kind == "emission" else None,
    )


def _permit_date(value: Any, where: str, problems: list[str]) -> date | None:
    if value is None:
        return None
    try:
        return as_date(value)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _permit_number(value: Any, where: str, problems: list[str]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append(f"{where}: must be a number, not {value!r}")
        return None
    return float(value)


def _permit_entries(station: Station) -> list[tuple[str, dict[str, Any], str | None]]:
    """Every permit limit of a station: (where, entry, the permit's citation as default source)."""
    found: list[tuple[str, dict[str, Any], str | None]] = []
    if station.regulation is not None:
        for i, entry in enumerate(station.regulation.permit_limits):
            found.append((f"regulation.permit_limits[{i}]", entry, None))
    if station.permit is not None:
        citation = station.permit.citation()
        for i, entry in enumerate(station.permit.limits):
            found.append((f"permit.limits[{i}]", entry, citation))
    return found


def _permits(
    station: Station,
    ref: RegulationRef,
    regulation: Regulation,
    limits: list[EffectiveLimit],
    all_problems: list[str],
) -> list[EffectiveLimit]:
    """The permit's limits while ``regulation`` applies: they replace its limit of the same
    parameter and averaging period (``StationLimits.in_force`` prefers them)."""
    category = regulation.categories.get(str(ref.coefficients.get("category")))
    o2_reference = (
        category.o2_reference_percent
        if category is not None and category.o2_reference_percent is not None
        else regulation.o2_reference_percent
    )
    made: list[EffectiveLimit] = []
    for field_path, entry, default_source in _permit_entries(station):
        where = f"{station.id}: {field_path}"
        problems: list[str] = []
        for key in entry:
            if key not in _PERMIT_KEYS:
                expected = ", ".join(sorted(_PERMIT_KEYS))
                problems.append(f"{where}.{key}: unknown field (expected one of {expected})")
        param = entry.get("param")
        reg_units = {r.unit for r in regulation.limits if r.param == param}
        declared = station.parameters.get(param) if isinstance(param, str) else None
        if not isinstance(param, str) or (declared is None and not reg_units):
            problems.append(
                f"{where}.param: {param!r} is neither measured by the station nor limited by "
                f"{regulation.id}"
            )
            param = None
        averaging = entry.get("averaging", regulation.default_averaging)
        if averaging not in AVERAGING_PERIODS:
            problems.append(f"{where}.averaging: must be one of {', '.join(AVERAGING_PERIODS)}")
        maximum = _permit_number(entry.get("max"), f"{where}.max", problems)
        minimum = _permit_number(entry.get("min"), f"{where}.min", problems)
        if entry.get("max") is None and entry.get("min") is None:
            problems.append(f"{where}: give 'max', 'min' or both")
        if maximum is not None and minimum is not None and minimum >= maximum:
            problems.append(f"{where}.min: must be below max")
        source = entry.get("source", default_source)
        if not isinstance(source, str) or not source.strip():
            problems.append(f"{where}.source: the permit (number, date) is required")
        confidence = entry.get("confidence", PERMIT_CONFIDENCE)
        if not isinstance(confidence, str) or not CONFIDENCE_PATTERN.fullmatch(confidence):
            problems.append(f"{where}.confidence: must be H, M, L (or L-M …), not {confidence!r}")
        note = entry.get("note") or ""
        if not isinstance(note, str):
            problems.append(f"{where}.note: must be a string")
        valid_from = _permit_date(entry.get("effective_from"), f"{where}.effective_from", problems)
        if valid_from is None and "effective_from" not in entry and station.permit is not None:
            # A permit's own limits apply from the day it was issued unless they say otherwise.
            valid_from = station.permit.issued_on if default_source is not None else None
        valid_to = _permit_date(entry.get("effective_to"), f"{where}.effective_to", problems)
        if valid_from and valid_to and valid_to <= valid_from:
            problems.append(f"{where}.effective_to: must be after effective_from")
        unit = None
        if param is not None:
            unit = next(iter(reg_units)) if reg_units else declared.unit.id if declared else None
            given = entry.get("unit")
            if given is not None and given != unit:
                problems.append(f"{where}.unit: limits of {param} are in {unit}, not {given!r}")
        if problems or param is None or unit is None:
            all_problems.extend(problems)
            continue
        assert isinstance(source, str) and isinstance(confidence, str) and isinstance(note, str)
        replaced = [
            limit
            for limit in limits
            if limit.source == "regulation"
            and limit.param == param
            and limit.averaging == averaging
        ]
        bound = (
            f"{number_text(minimum)}–{number_text(maximum)}"
            if minimum is not None and maximum is not None
            else f"≤ {number_text(maximum)} {unit}"
            if maximum is not None
            else f"≥ {number_text(minimum)} {unit}"
        )
        formula = translate("limit.formula.permit", "en", bound=bound)
        formula_vi = translate("limit.formula.permit", "vi", bound=decimal_comma(bound))
        if replaced:
            formula += " " + translate("limit.formula.replaces", "en", formula=replaced[0].formula)
            formula_vi += " " + translate(
                "limit.formula.replaces", "vi", formula=replaced[0].formula_text("vi")
            )
            looser = [
                r
                for r in replaced
                if maximum is not None and r.maximum is not None and maximum > r.maximum
            ]
            if looser:
                all_problems.append(
                    f"{where}.max: {number_text(maximum)} {unit} is less strict than "
                    f"{regulation.id} ({number_text(looser[0].maximum)} {unit}); check the permit"
                )
        provenance = Provenance(source.strip(), confidence, note.strip())
        made.append(
            EffectiveLimit(
                station_id=station.id,
                param=param,
                unit=unit,
                averaging=str(averaging),
                regulation_id=regulation.id,
                regulation_kind=regulation.kind,
                column=ref.column,
                maximum=maximum,
                minimum=minimum,
                base_maximum=maximum,
                base_minimum=minimum,
                factors=(),
                formula=formula,
                formula_vi=formula_vi,
                provenance=provenance,
                unverified=provenance.unverified,
                source="permit",
                valid_from=valid_from,
                valid_to=valid_to,
                o2_reference_percent=o2_reference if regulation.kind == "emission" else None,
            )
        )
    return made
