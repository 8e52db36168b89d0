"""VN_AQI per Decision 1459/QĐ-TCMT (2019): sub-indices, NowCast, hourly and daily AQI.

The breakpoints, categories and colours are data (``config/aqi/vn_aqi_1459.yaml``); this module
holds the decision's formulas and quantrac's readings of the points it leaves open:

- Rounding: the decision says "rounded to an integer". We round half up (109.5 → 110, as in the
  decision's daily example), in decimal arithmetic on the concentration as written, so that
  binary floating-point noise never moves a value across .5.
- The AQI day "01:00 to 00:00 (24:00)" names hours by the time they end: it is the 24 hourly
  means of the hours starting 00:00 … 23:00 local time, i.e. the local calendar day.
- NowCast uses the normalised formula for every w (the decision's w = ½ shortcut is the same
  up to the normalisation); negative hourly means count as missing; when every available value
  is 0 the NowCast is 0 (w is then undefined, and any w gives 0).
- Completeness of daily values and of 8 h means comes from the table's ``completeness`` block
  (quantrac's choice: 75 %), since the decision gives no number.

Pure: no clocks, no I/O apart from ``load_table``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal, localcontext
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from quantrac.core.config_files import (
    ConfigError,
    ConfigModel,
    FieldError,
    read_yaml_file,
    validate,
)
from quantrac.core.i18n import translate
from quantrac.regulations.windows import local_day_bounds

HOUR = timedelta(hours=1)
NOWCAST_HOURS = 12
# Decision §2.2.1 a: at least 2 of c1, c2, c3 must have data.
NOWCAST_RECENT_HOURS = 3
NOWCAST_MIN_RECENT = 2
NOWCAST_MIN_WEIGHT = 0.5

O3 = "O3"
O3Period = Literal["1h", "8h"]
Period = Literal["hour", "day"]


class AqiTableError(ConfigError):
    """The AQI table file is invalid (unsorted breakpoints, gaps between categories …); each
    issue names file, line and field."""


@dataclass(frozen=True, slots=True)
class Category:
    key: str
    min: int
    max: int
    name_vi: str
    name_en: str
    rgb: tuple[int, int, int]
    hex: str
    health_vi: str = ""
    health_en: str = ""


@dataclass(frozen=True, slots=True)
class AqiTable:
    id: str
    source: dict[str, Any]
    unit: str
    pollutants: tuple[str, ...]
    required_any: tuple[str, ...]
    nowcast: tuple[str, ...]
    index: tuple[int, ...]
    breakpoints: dict[str, tuple[float, ...]]
    categories: tuple[Category, ...]
    eight_hour_min_valid: int
    daily_min_hours: int

    def column(self, pollutant: str, o3_period: O3Period = "1h") -> tuple[float, ...]:
        name = f"{O3}_{o3_period}" if pollutant == O3 else pollutant
        try:
            return self.breakpoints[name]
        except KeyError:
            raise ValueError(f"no VN_AQI breakpoints for {name!r}") from None

    def category(self, aqi: int) -> Category:
        for category in self.categories:
            if category.min <= aqi <= category.max:
                return category
        raise ValueError(f"AQI {aqi} is outside every category")


# --- The table file ---------------------------------------------------------------------------
#
# Its shape is checked by the pydantic models below; what needs the whole table (a column as
# long as the index, categories that meet end to end over the index) by the table's own
# validator, in the same file:line: field: reason form.

Level = Annotated[int, Field(ge=0)]
Breakpoint = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Channel = Annotated[int, Field(ge=0, le=255)]


def _rising(values: Sequence[float], what: str) -> None:
    """FieldError at the first value of a column or of the index that does not rise from 0."""
    if values and values[0] != 0:
        raise FieldError("[0]", f"{what} start at 0")
    for i, (low, high) in enumerate(pairwise(values), 1):
        if high <= low:
            raise FieldError(f"[{i}]", f"must be above {low:g}: {what} rise strictly")


class _Category(ConfigModel):
    key: str
    min: int
    max: int
    name_vi: str
    name_en: str
    colour_vi: str | None = None
    colour_en: str | None = None
    rgb: Annotated[list[Channel], Field(min_length=3, max_length=3)]
    hex: str
    health_vi: str = ""
    health_en: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> _Category:
        if self.max < self.min:
            raise FieldError("max", f"category {self.key!r} ends before it starts ({self.min})")
        written = "#{:02X}{:02X}{:02X}".format(*self.rgb)
        if self.hex.upper() != written:
            raise FieldError("hex", f"category {self.key!r}: {self.hex} is not its rgb ({written})")
        return self


class _Completeness(ConfigModel):
    eight_hour_min_valid: int = Field(default=6, ge=1, le=8)
    daily_min_hours: int = Field(default=18, ge=1, le=24)


class _TableFile(ConfigModel):
    id: str
    name: str | None = None
    source: dict[str, Any] | None = None
    unit: str
    pollutants: list[str] = Field(min_length=1)
    required_any: list[str] = Field(min_length=1)
    nowcast: list[str]
    index: list[Level] = Field(min_length=2)
    breakpoints: dict[str, list[Breakpoint]]
    categories: list[_Category] = Field(min_length=1)
    completeness: _Completeness | None = None

    @field_validator("index")
    @classmethod
    def _index_rises(cls, value: list[int]) -> list[int]:
        _rising(value, "index levels")
        return value

    @field_validator("breakpoints")
    @classmethod
    def _columns_rise(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        for name, column in value.items():
            try:
                _rising(column, "breakpoints")
            except FieldError as exc:
                raise FieldError(f"{name}{exc.key}", str(exc)) from None
        return value

    @model_validator(mode="after")
    def _whole_table(self) -> _TableFile:
        levels = len(self.index)
        for name, column in self.breakpoints.items():
            if not 2 <= len(column) <= levels:
                raise FieldError(
                    f"breakpoints.{name}", f"needs 2 to {levels} breakpoints (one per index level)"
                )
        for i, pollutant in enumerate(self.pollutants):
            for needed in (f"{O3}_1h", f"{O3}_8h") if pollutant == O3 else (pollutant,):
                if needed not in self.breakpoints:
                    raise FieldError(f"pollutants[{i}]", f"no breakpoints for {needed!r}")
        if f"{O3}_8h" not in self.breakpoints:
            raise FieldError("breakpoints", f"no breakpoints for '{O3}_8h'")
        for key in ("required_any", "nowcast"):
            for i, pollutant in enumerate(getattr(self, key)):
                if pollutant not in self.pollutants:
                    raise FieldError(f"{key}[{i}]", f"{pollutant!r} is not one of the pollutants")
        expected = 0
        for i, category in enumerate(self.categories):
            if category.min != expected:
                where = "the index's start" if i == 0 else f"after {self.categories[i - 1].key!r}"
                raise FieldError(
                    f"categories[{i}].min",
                    f"category {category.key!r} must start at {expected} ({where}): categories "
                    "neither overlap nor leave a gap",
                )
            expected = category.max + 1
        if expected - 1 != self.index[-1]:
            raise FieldError(
                f"categories[{len(self.categories) - 1}].max",
                f"the categories must cover 0 … {self.index[-1]}, the index's range",
            )
        return self

    def table(self) -> AqiTable:
        completeness = self.completeness or _Completeness()
        return AqiTable(
            id=self.id,
            source=dict(self.source or {}),
            unit=self.unit,
            pollutants=tuple(self.pollutants),
            required_any=tuple(self.required_any),
            nowcast=tuple(self.nowcast),
            index=tuple(self.index),
            breakpoints={name: tuple(column) for name, column in self.breakpoints.items()},
            categories=tuple(
                Category(
                    key=c.key,
                    min=c.min,
                    max=c.max,
                    name_vi=c.name_vi,
                    name_en=c.name_en,
                    rgb=(c.rgb[0], c.rgb[1], c.rgb[2]),
                    hex=c.hex,
                    health_vi=c.health_vi,
                    health_en=c.health_en,
                )
                for c in self.categories
            ),
            eight_hour_min_valid=completeness.eight_hour_min_valid,
            daily_min_hours=completeness.daily_min_hours,
        )


def table_from_dict(
    data: Mapping[str, Any], source: str = "<memory>", lines: Mapping[str, int] | None = None
) -> AqiTable:
    """The table in ``data``; every problem is an AqiTableError naming file:line: field
    (``lines``: the line of each field, as ``load_yaml_with_lines`` gives them)."""
    return validate(_TableFile, data, source, lines, AqiTableError).table()


def load_table(path: Path) -> AqiTable:
    data, lines = read_yaml_file(path, AqiTableError)
    return table_from_dict(data, str(path), lines)


# --- Sub-index and NowCast --------------------------------------------------------------------


def _decimal(value: float) -> Decimal:
    # repr is the shortest text that reads back as this float: "55.7", not 55.70000000000000284.
    return Decimal(repr(float(value)))


def sub_index(
    pollutant: str, concentration: float, table: AqiTable, *, o3_period: O3Period = "1h"
) -> int | None:
    """AQIx by linear interpolation in Table 2, rounded half up; None when not defined.

    None for a negative or non-finite concentration, and for an O3 8 h mean above the end of
    its column (400 µg/m³: the decision then uses the 1 h value only). At or above the top
    breakpoint of a full column ("≥" in the table) the index is capped at 500.
    """
    column = table.column(pollutant, o3_period)
    if not math.isfinite(concentration) or concentration < 0:
        return None
    levels = table.index[: len(column)]
    if concentration >= column[-1]:
        if concentration == column[-1] or len(column) == len(table.index):
            return levels[-1]
        return None
    c = _decimal(concentration)
    for i in range(len(column) - 1):
        if concentration <= column[i + 1]:
            low, high = _decimal(column[i]), _decimal(column[i + 1])
            with localcontext() as ctx:
                ctx.prec = 40
                value = (levels[i + 1] - levels[i]) * (c - low) / (high - low) + levels[i]
                return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    raise AssertionError("unreachable: the concentration is below the top breakpoint")


def nowcast(hourly: Sequence[float | None]) -> float | None:
    """The NowCast of the last hourly means, ``hourly[0]`` being the current hour (c1).

    At most 12 values; a missing (None), non-finite or negative mean gets weight 0. None ("no
    data") unless at least 2 of c1, c2, c3 are present. w = max(min/max, ½) over the present
    values; NowCast = Σ w^(i−1)·ci / Σ w^(i−1) over them. All present values 0 → 0.
    """
    if len(hourly) > NOWCAST_HOURS:
        raise ValueError(f"NowCast takes at most {NOWCAST_HOURS} hourly means")
    present = [
        (i, float(c)) for i, c in enumerate(hourly) if c is not None and math.isfinite(c) and c >= 0
    ]
    if sum(1 for i, _ in present if i < NOWCAST_RECENT_HOURS) < NOWCAST_MIN_RECENT:
        return None
    values = [c for _, c in present]
    c_max = max(values)
    if c_max == 0:
        return 0.0
    w = max(min(values) / c_max, NOWCAST_MIN_WEIGHT)
    weights = [w**i for i, _ in present]
    return math.fsum(wt * c for wt, (_, c) in zip(weights, present, strict=True)) / math.fsum(
        weights
    )


# --- Hourly and daily AQI ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AqiResult:
    station_id: str
    period: Period
    start: datetime  # inclusive (UTC)
    end: datetime  # exclusive (UTC)
    aqi: int
    category: str  # key: good, moderate, poor, bad, very_bad, hazardous
    category_vi: str
    category_en: str
    colour_hex: str
    colour_rgb: tuple[int, int, int]
    dominant: tuple[str, ...]  # every pollutant whose sub-index equals the AQI (ties kept)
    sub_indices: dict[str, int] = field(default_factory=dict)
    # The concentration behind each sub-index (µg/m³): NowCast for PM hourly, 24 h mean for PM
    # daily, daily max 1 h for SO2/CO/NO2. Daily O3 adds "O3_1h" and "O3_8h" (the daily
    # maxima) and "O3" is the one whose sub-index was used.
    inputs: dict[str, float] = field(default_factory=dict)


def _result(
    station_id: str,
    period: Period,
    start: datetime,
    end: datetime,
    sub_indices: dict[str, int],
    inputs: dict[str, float],
    table: AqiTable,
) -> AqiResult | None:
    if not any(p in sub_indices for p in table.required_any):
        return None
    aqi = max(sub_indices.values())
    category = table.category(aqi)
    return AqiResult(
        station_id=station_id,
        period=period,
        start=start,
        end=end,
        aqi=aqi,
        category=category.key,
        category_vi=category.name_vi,
        category_en=category.name_en,
        colour_hex=category.hex,
        colour_rgb=category.rgb,
        dominant=tuple(p for p in table.pollutants if sub_indices.get(p) == aqi),
        sub_indices={p: sub_indices[p] for p in table.pollutants if p in sub_indices},
        inputs=inputs,
    )


def _check_hour(hour_start: datetime) -> None:
    if hour_start.tzinfo is None:
        raise ValueError("hour_start must be timezone-aware")
    if (hour_start.minute, hour_start.second, hour_start.microsecond) != (0, 0, 0):
        raise ValueError("hour_start must be the start of an hour")


def hourly_aqi(
    station_id: str,
    hour_start: datetime,
    means_by_param: Mapping[str, Mapping[datetime, float]],
    table: AqiTable,
) -> AqiResult | None:
    """AQI^h of the hour starting at ``hour_start``; None without a PM10 or PM2,5 sub-index.

    ``means_by_param`` holds the valid hourly means (µg/m³) of each pollutant by hour start;
    an absent hour is missing. PM uses the NowCast of the 12 hours ending with this one, the
    other pollutants this hour's mean (O3 with the 1 h breakpoints).
    """
    _check_hour(hour_start)
    sub_indices: dict[str, int] = {}
    inputs: dict[str, float] = {}
    for pollutant in table.pollutants:
        series = means_by_param.get(pollutant, {})
        concentration: float | None
        if pollutant in table.nowcast:
            concentration = nowcast(
                [series.get(hour_start - i * HOUR) for i in range(NOWCAST_HOURS)]
            )
        else:
            concentration = series.get(hour_start)
        if concentration is None:
            continue
        index = sub_index(pollutant, concentration, table)
        if index is not None:
            sub_indices[pollutant] = index
            inputs[pollutant] = concentration
    return _result(station_id, "hour", hour_start, hour_start + HOUR, sub_indices, inputs, table)


def _day_hours(local_day: date, tz: tzinfo) -> tuple[datetime, datetime, list[datetime]]:
    start, end = local_day_bounds(local_day, tz)
    hours = []
    hour = start
    while hour < end:
        hours.append(hour)
        hour += HOUR
    return start, end, hours


def max_eight_hour_mean(
    series: Mapping[datetime, float], hours: Sequence[datetime], min_valid: int
) -> float | None:
    """The largest rolling 8 h mean ending with one of ``hours`` (each window: that hour and the
    7 before it, so a day's first windows reach into the day before), counting only windows
    with at least ``min_valid`` of their 8 hourly means."""
    best: float | None = None
    for last in hours:
        values = [series.get(last - k * HOUR) for k in range(8)]
        valid = [v for v in values if v is not None]
        if len(valid) < min_valid:
            continue
        mean = math.fsum(valid) / len(valid)
        if best is None or mean > best:
            best = mean
    return best


def daily_aqi(
    station_id: str,
    local_day: date,
    means_by_param: Mapping[str, Mapping[datetime, float]],
    tz: tzinfo,
    table: AqiTable,
) -> AqiResult | None:
    """AQI^d of one local day (hours starting 00:00 … 23:00 in ``tz``: the decision's
    01:00 … 24:00); None without a PM10 or PM2,5 sub-index.

    A pollutant counts only when at least ``table.daily_min_hours`` of the day's hourly means
    are valid. PM: mean of the valid hourly means. SO2, CO, NO2: daily max 1 h. O3: the larger
    of the sub-indices of the daily max 1 h (1 h breakpoints) and of the daily max rolling 8 h
    mean (8 h breakpoints); when that 8 h maximum is above 400 µg/m³ only the 1 h one counts.
    """
    start, end, hours = _day_hours(local_day, tz)
    sub_indices: dict[str, int] = {}
    inputs: dict[str, float] = {}
    for pollutant in table.pollutants:
        series = means_by_param.get(pollutant, {})
        valid = [v for v in (series.get(h) for h in hours) if v is not None]
        if len(valid) < table.daily_min_hours:
            continue
        # PM: the 24 h mean; the gases: the daily max 1 h.
        mean = pollutant in table.nowcast
        concentration = math.fsum(valid) / len(valid) if mean else max(valid)
        index = sub_index(pollutant, concentration, table)
        if pollutant == O3:
            inputs["O3_1h"] = concentration
            max_8h = max_eight_hour_mean(series, hours, table.eight_hour_min_valid)
            if max_8h is not None:
                inputs["O3_8h"] = max_8h
                index_8h = sub_index(O3, max_8h, table, o3_period="8h")
                if index_8h is not None and (index is None or index_8h > index):
                    index, concentration = index_8h, max_8h
        if index is not None:
            sub_indices[pollutant] = index
            inputs[pollutant] = concentration
    return _result(station_id, "day", start, end, sub_indices, inputs, table)


def publication_text(aqi_publishable: bool | None, lang: str = "vi") -> str:
    """Whether an ambient station may publish VN_AQI (Circular 10/2021 Art. 29), as a sentence."""
    flag = {True: "yes", False: "no", None: "unknown"}[aqi_publishable]
    return translate(f"aqi.publishable.{flag}", lang)
