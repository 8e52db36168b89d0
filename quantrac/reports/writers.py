"""Report files: JSON, CSV (UTF-8 with BOM, so Excel shows Vietnamese), XLSX and PDF.

Times are written in Vietnamese time (UTC+07:00): ISO 8601 with the offset in CSV and JSON,
local date and time in XLSX and PDF (whose headers say so). Texts come from the translation
table (``config/messages/report.yaml``), in Vietnamese or English.

The PDF uses the DejaVu Sans fonts for the Vietnamese diacritics: the Debian package
``fonts-dejavu-core`` installs them in /usr/share/fonts/truetype/dejavu; the environment
variable QUANTRAC_REPORT_FONT_DIR (or the ``font_dir`` argument) points elsewhere.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from quantrac.alerts.choices import DesignChoice
from quantrac.aqi.index import publication_text
from quantrac.core.i18n import format_number, format_time, translate
from quantrac.core.time import VIETNAM
from quantrac.regulations.limits import Factor, decimal_comma, describe_regime, factor_text
from quantrac.reports.completeness import CompletenessReport, DayCompleteness, month_label
from quantrac.reports.exceedances import ExceedanceReport, LimitInfo, ReportEpisode, StationInfo

FONT_DIR_ENV = "QUANTRAC_REPORT_FONT_DIR"
DEFAULT_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
FORMATS = ("json", "csv", "xlsx", "pdf")
CSV_SECTIONS = ("episodes", "completeness", "status", "by_parameter", "by_month", "log")
MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}

Table = tuple[list[str], list[list[Any]]]


class ReportFontError(RuntimeError):
    pass


def _t(key: str, lang: str, **params: Any) -> str:
    return translate(f"report.{key}", lang, **params)


# --- value formatting --------------------------------------------------------------------------


def local_iso(at: datetime) -> str:
    return at.astimezone(VIETNAM).isoformat(timespec="seconds")


def local_text(at: datetime) -> str:
    """Vietnamese time as written in Vietnam: 31/10/2026 23:00 (both languages)."""
    return format_time(at)


def num(value: float | None, lang: str, digits: int = 3) -> str:
    """A number for people: 1.234,5 in Vietnamese, 1,234.5 in English; at most ``digits``
    decimals, trailing zeros dropped."""
    return "–" if value is None else format_number(value, lang, digits)


def local_naive(at: datetime) -> datetime:
    """For spreadsheets, which have no time zones: the Vietnamese wall-clock time."""
    return at.astimezone(VIETNAM).replace(tzinfo=None)


def hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def percent_text(value: float | None, lang: str = "en") -> str:
    return "–" if value is None else f"{num(100 * value, lang, 1)} %"


def fine_text(e: ReportEpisode, lang: str) -> str:
    """The fine of an episode's band for its daily wastewater volume, or why it is not known."""
    band = e.penalty
    if band is None or not band.fine_tiers:
        return ""
    if e.discharge_m3_day is None:
        return _t("fine.no_flow", lang)
    for tier in band.fine_tiers:
        above = tier.over_m3_day is None or e.discharge_m3_day > tier.over_m3_day
        below = tier.up_to_m3_day is None or e.discharge_m3_day <= tier.up_to_m3_day
        if above and below:
            return _t(
                "fine.tier",
                lang,
                low=num(tier.min_vnd, lang, 0),
                high=num(tier.max_vnd, lang, 0),
                volume=num(e.discharge_m3_day, lang, 1),
            )
    return _t("fine.beyond", lang, volume=num(e.discharge_m3_day, lang, 1))


def penalty_text(e: ReportEpisode, lang: str) -> str:
    """'NĐ 45/2022/NĐ-CP Điều 18, khoản chưa xác minh: Cảnh cáo' — where the band is in law."""
    band = e.penalty
    if band is None:
        return ""
    clause = band.clause or _t("clause_unverified", lang)
    consequence = band.consequence_vi if lang == "vi" else band.consequence_en
    text = f"{band.document} {band.article}, {clause}: {consequence}"
    fine = fine_text(e, lang)
    if fine:
        text += f"; {fine}"
    if band.unverified:
        text += f" {_t('unverified', lang)}"
    return text


def generated_line(report: ExceedanceReport, lang: str) -> str:
    at = local_text(report.generated_at)
    if report.exported_by:
        return _t("generated_by", lang, at=at, who=report.exported_by)
    return _t("generated", lang, at=at)


def factor_line(factor: Factor, lang: str) -> str:
    explanation = (
        factor.explanation_vi if lang == "vi" and factor.explanation_vi else (factor.explanation)
    )
    text = f"{factor.name} = {factor_text(factor.value)} ({explanation})"
    if factor.unverified:
        text += f" {_t('unverified', lang)}"
    return text


def factors_text(factors: Sequence[Factor], lang: str) -> str:
    return "; ".join(factor_line(f, lang) for f in factors)


def _yes(value: bool, lang: str) -> str:
    return _t("yes" if value else "no", lang)


def _param(param: str | None, lang: str) -> str:
    return param if param is not None else _t("whole_station", lang)


def limit_line(limit: LimitInfo, lang: str) -> str:
    """'COD 1h ≤ 75 mg/L — QCVN 40:2011/BTNMT cột A: C × Kq × Kf = … ; Kq = 1.0 (…)'."""
    where = limit.regulation_id
    if limit.column:
        where += f" {_t('column', lang).lower()} {limit.column}"
    if limit.source == "permit":
        where = f"{_t('permit', lang)} ({limit.permit_source}); {where}"
    averaging = translate(f"limit.averaging.{limit.averaging}", lang)
    bound = decimal_comma(limit.text) if lang == "vi" else limit.text
    text = f"{limit.param} ({averaging}) {bound} — {where}: {limit.formula_text(lang)}"
    if limit.factors:
        text += f"; {factors_text(limit.factors, lang)}"
    validity = []
    if limit.valid_from:
        validity.append(f"≥ {limit.valid_from.isoformat()}")
    if limit.valid_to:
        validity.append(f"< {limit.valid_to.isoformat()}")
    if validity:
        text += f" ({_t('valid', lang, text=', '.join(validity))})"
    if limit.unverified:
        text += f" {_t('unverified', lang)}"
    return text


# --- tables (shared by CSV, XLSX and PDF) --------------------------------------------------


def regime_lines(s: StationInfo, lang: str) -> list[str]:
    """The regulation in force by date and why, the permit, and (ambient) the AQI flag."""
    lines = describe_regime(s.regime, s.permit, lang)
    if s.kind == "air":
        lines.append(publication_text(s.aqi_publishable, lang))
    return lines


def choice_lines(report: ExceedanceReport, lang: str) -> list[str]:
    return [translate("choice.heading", lang)] + [
        f"- {c.text(lang)}" for c in report.design_choices
    ]


def _headers(lang: str, *keys: str) -> list[str]:
    return [_t(f"col.{k}", lang) for k in keys]


def episodes_table(report: ExceedanceReport, lang: str, *, spreadsheet: bool = False) -> Table:
    when: Callable[[datetime], Any] = local_naive if spreadsheet else local_iso
    headers = _headers(
        lang,
        "station",
        "param",
        "averaging",
        "start",
        "end",
        "duration_h",
        "windows",
        "maximum",
        "mean",
        "limit_value",
        "limit",
        "unit",
        "multiple",
        "band",
        "completeness_pct",
        "regulation",
        "column",
        "formula",
        "factors",
        "source",
        "unverified",
        "ongoing",
        "discharge_m3_day",
        "penalty",
        "design_choices",
    )
    kinds = {s.id: s.kind for s in report.stations}
    rows = [
        [
            e.station_id,
            e.param,
            e.averaging,
            when(e.start),
            # An episode still going on has no end yet (the last window's end is not one).
            None if e.ongoing else when(e.end),
            hours(e.duration.total_seconds()),
            e.windows,
            rounded(e.maximum, 4),
            rounded(e.mean, 4),
            e.limit_value,
            e.limit_text,
            e.unit,
            rounded(e.multiple),
            e.band or "",
            percent(e.completeness),
            e.regulation_id,
            e.column or "",
            e.formula,
            factors_text(e.factors, lang),
            _t("permit", lang) if e.limit_source == "permit" else (e.limit_source or ""),
            _yes(e.unverified, lang),
            _yes(e.ongoing, lang),
            e.discharge_m3_day,
            penalty_text(e, lang),
            episode_choices(report, e, kinds.get(e.station_id), lang),
        ]
        for e in report.episodes
    ]
    return headers, rows


def episode_choices(report: ExceedanceReport, e: ReportEpisode, kind: str | None, lang: str) -> str:
    """Which of an episode's values are quantrac's choices, not law: the completeness its
    windows needed, and (wastewater, emissions: no clause names one) the average compared.
    Ambient air's averaging periods are the regulation's own, so they are not flagged."""
    choices = {c.key: c for c in report.design_choices}
    said: list[str] = []
    if "completeness" in choices:
        said.append(_t("choice_flag.completeness", lang, value=choices["completeness"].value))
    if "averaging" in choices and kind != "air":
        averaging = translate(f"limit.averaging.{e.averaging}", lang)
        said.append(_t("choice_flag.averaging", lang, value=averaging))
    return "; ".join(said)


def completeness_table(
    report: CompletenessReport, lang: str, *, spreadsheet: bool = False
) -> Table:
    """Per day: every parameter, then the whole station."""
    headers = _headers(
        lang, "station", "param", "day", "received", "expected", "share", "calibrating", "faulty"
    )
    day: Callable[[date], Any] = (lambda d: d) if spreadsheet else (lambda d: d.isoformat())
    rows: list[list[Any]] = []
    ordered: list[DayCompleteness] = sorted(
        [*report.days, *report.station_days],
        key=lambda r: (r.station_id, r.day, r.param is None, r.param or ""),
    )
    for r in ordered:
        rows.append(
            [
                r.station_id,
                _param(r.param, lang),
                day(r.day),
                r.received,
                r.expected,
                percent(r.share),
                r.calibrating,
                r.faulty,
            ]
        )
    return headers, rows


def status_table(report: ExceedanceReport, lang: str, *, spreadsheet: bool = False) -> Table:
    when: Callable[[datetime], Any] = local_naive if spreadsheet else local_iso
    headers = _headers(lang, "station", "param", "kind", "start", "end", "duration_h", "readings")
    rows = [
        [
            p.station_id,
            p.param,
            _t(f"kind.{p.kind}", lang) if p.kind in ("calibration", "fault") else p.kind,
            when(p.start),
            when(p.end),
            hours(p.duration.total_seconds()),
            p.readings,
        ]
        for p in report.status_periods
    ]
    return headers, rows


def station_log_table(report: ExceedanceReport, lang: str, *, spreadsheet: bool = False) -> Table:
    when: Callable[[datetime], Any] = local_naive if spreadsheet else local_iso
    headers = _headers(lang, "station", "kind", "log_params", "start", "end", "reason", "by")
    rows = [
        [
            w.station_id,
            _t(f"log.{w.kind}", lang),
            ", ".join(sorted(w.params)) or _t("whole_station", lang),
            when(w.start),
            when(w.end),
            w.reason,
            w.actor,
        ]
        for w in report.station_log
    ]
    return headers, rows


def by_parameter_table(report: ExceedanceReport, lang: str) -> Table:
    headers = _headers(
        lang,
        "station",
        "param",
        "unit",
        "episodes",
        "total_duration_h",
        "hours_exceeded",
        "maximum",
        "worst_multiple",
        "worst_band",
        "completeness_pct",
    )
    rows = [
        [
            s.station_id,
            s.param,
            s.unit,
            s.episodes,
            hours(s.duration.total_seconds()),
            round(s.hours_exceeded, 2),
            rounded(s.maximum, 4),
            rounded(s.worst_multiple),
            s.worst_band or "",
            percent(s.completeness),
        ]
        for s in report.by_parameter
    ]
    return headers, rows


def by_month_table(report: ExceedanceReport, lang: str) -> Table:
    headers = _headers(
        lang, "month", "episodes", "hours_exceeded", "worst_multiple", "params", "completeness_pct"
    )
    rows = [
        [
            m.month,
            m.episodes,
            round(m.hours_exceeded, 2),
            rounded(m.worst_multiple),
            ", ".join(m.params),
            percent(m.completeness),
        ]
        for m in report.by_month
    ]
    return headers, rows


# --- JSON ----------------------------------------------------------------------------------------


def _factor_json(f: Factor) -> dict[str, Any]:
    return {
        "name": f.name,
        "value": f.value,
        "explanation": f.explanation,
        "explanation_vi": f.explanation_vi,
        "unverified": f.unverified,
        "default": f.is_default,
    }


def _episode_json(e: ReportEpisode) -> dict[str, Any]:
    return {
        "station": e.station_id,
        "param": e.param,
        "averaging": e.averaging,
        "start": local_iso(e.start),
        "end": local_iso(e.end),
        "duration_hours": hours(e.duration.total_seconds()),
        "windows": e.windows,
        "maximum": e.maximum,
        "mean": e.mean,
        "limit": e.limit_value,
        "limit_text": e.limit_text,
        "unit": e.unit,
        "multiple": rounded(e.multiple, 4),
        "band": e.band,
        "completeness": e.completeness,
        "regulation": e.regulation_id,
        "column": e.column,
        "formula": e.formula,
        "factors": [_factor_json(f) for f in e.factors],
        "limit_source": e.limit_source,
        "unverified": e.unverified,
        "ongoing": e.ongoing,
    }


def completeness_json(
    report: CompletenessReport, choices: Sequence[DesignChoice] | None = None
) -> dict[str, Any]:
    """The completeness report; with ``choices`` (a report of its own), the design choices."""

    def row(r: DayCompleteness) -> dict[str, Any]:
        return {
            "station": r.station_id,
            "param": r.param,
            "day": r.day.isoformat(),
            "received": r.received,
            "expected": r.expected,
            "share": rounded(r.share, 4),
            "calibrating": r.calibrating,
            "faulty": r.faulty,
        }

    return {
        "period": {"from": local_iso(report.start), "to": local_iso(report.end)},
        "stations": [
            {"id": s.id, "name": s.name, "cadence_s": s.cadence_s} for s in report.stations
        ],
        "days": [row(r) for r in report.days],
        "station_days": [row(r) for r in report.station_days],
        "totals": [
            {
                "station": t.station_id,
                "param": t.param,
                "received": t.received,
                "expected": t.expected,
                "share": rounded(t.share, 4),
                "calibrating": t.calibrating,
                "faulty": t.faulty,
            }
            for t in report.totals
        ],
    } | ({} if choices is None else {"design_choices": [c.to_json() for c in choices]})


def _readings_digest_json(report: ExceedanceReport) -> dict[str, Any] | None:
    if report.readings_sha256 is None:
        return None
    return {"sha256": report.readings_sha256, "readings": report.readings_count}


def readings_digest_line(report: ExceedanceReport, lang: str) -> str | None:
    if report.readings_sha256 is None:
        return None
    return _t("readings_digest", lang, n=report.readings_count, sha256=report.readings_sha256)


def exceedance_json(report: ExceedanceReport) -> dict[str, Any]:
    return {
        "period": {"from": local_iso(report.start), "to": local_iso(report.end)},
        "generated_at": local_iso(report.generated_at),
        "readings_digest": _readings_digest_json(report),
        "facility": report.facility,
        "stations": [
            {
                "id": s.id,
                "name": s.name,
                "kind": s.kind,
                "facility": s.facility,
                "province": s.province,
                "cadence_s": s.cadence_s,
                "regulation": s.regulation_id,
                "column": s.column,
                "regime": [p.to_json() for p in s.regime],
                "permit": s.permit,
                "aqi_publishable": s.aqi_publishable,
                "problems": list(s.problems),
                "limits": [
                    {
                        "param": lim.param,
                        "averaging": lim.averaging,
                        "text": lim.text,
                        "formula": lim.formula,
                        "formula_vi": lim.formula_vi,
                        "regulation": lim.regulation_id,
                        "column": lim.column,
                        "factors": [_factor_json(f) for f in lim.factors],
                        "unverified": lim.unverified,
                        "source": lim.source,
                        "permit_source": lim.permit_source,
                        "valid_from": lim.valid_from.isoformat() if lim.valid_from else None,
                        "valid_to": lim.valid_to.isoformat() if lim.valid_to else None,
                    }
                    for lim in s.limits
                ],
            }
            for s in report.stations
        ],
        "episodes": [_episode_json(e) for e in report.episodes],
        "status_periods": [
            {
                "station": p.station_id,
                "param": p.param,
                "kind": p.kind,
                "start": local_iso(p.start),
                "end": local_iso(p.end),
                "readings": p.readings,
            }
            for p in report.status_periods
        ],
        "station_log": [
            {**w.to_json(), "from": local_iso(w.start), "to": local_iso(w.end)}
            for w in report.station_log
        ],
        "by_parameter": [
            {
                "station": s.station_id,
                "param": s.param,
                "unit": s.unit,
                "episodes": s.episodes,
                "duration_hours": hours(s.duration.total_seconds()),
                "hours_exceeded": round(s.hours_exceeded, 4),
                "maximum": s.maximum,
                "worst_multiple": rounded(s.worst_multiple, 4),
                "worst_band": s.worst_band,
                "completeness": rounded(s.completeness, 4),
            }
            for s in report.by_parameter
        ],
        "by_month": [
            {
                "month": m.month,
                "episodes": m.episodes,
                "hours_exceeded": round(m.hours_exceeded, 4),
                "worst_multiple": rounded(m.worst_multiple, 4),
                "params": list(m.params),
                "completeness": rounded(m.completeness, 4),
            }
            for m in report.by_month
        ],
        "completeness": completeness_json(report.completeness),
        "design_choices": [c.to_json() for c in report.design_choices],
    }


# --- CSV -----------------------------------------------------------------------------------------


def csv_bytes(table: Table) -> bytes:
    """UTF-8 with a byte-order mark: Excel then reads Vietnamese correctly."""
    headers, rows = table
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def exceedance_csv(report: ExceedanceReport, lang: str = "vi", section: str = "episodes") -> bytes:
    tables: dict[str, Callable[[], Table]] = {
        "episodes": lambda: episodes_table(report, lang),
        "completeness": lambda: completeness_table(report.completeness, lang),
        "status": lambda: status_table(report, lang),
        "by_parameter": lambda: by_parameter_table(report, lang),
        "by_month": lambda: by_month_table(report, lang),
        "log": lambda: station_log_table(report, lang),
    }
    if section not in tables:
        raise ValueError(f"section: one of {', '.join(CSV_SECTIONS)}")
    return csv_bytes(tables[section]())


def completeness_csv(report: CompletenessReport, lang: str = "vi") -> bytes:
    return csv_bytes(completeness_table(report, lang))


def indicators_csv(doc: dict[str, Any], lang: str = "vi") -> bytes:
    """The indicators of ``indicators_json`` as one table: a row per province and indicator,
    then a row per facility (No. 23's evidence)."""
    headers = [
        _t("col.indicator", lang),
        _t("province", lang),
        _t("facility", lang),
        _t("stations", lang),
        _t("transmitted", lang),
        _t("required", lang),
        _t("col.value", lang),
        _t("col.completeness_pct", lang),
        _t("col.note", lang),
    ]
    rows: list[list[Any]] = []
    i23 = doc["indicator_23"]
    overall = {**i23, "province": _t("all_provinces", lang)}
    for p in [overall, *i23["by_province"]]:
        rows.append(
            [
                "23",
                p["province"],
                "",
                "",
                p["transmitted"],
                p["required"],
                percent(p["value"]),
                "",
                "%",
            ]
        )
    for f in i23["facilities"]:
        rows.append(
            [
                "23",
                f["province"],
                f["facility"],
                " ".join(f["stations"]),
                _yes(f["transmitted"], lang),
                "",
                "",
                percent(f["completeness"]),
                "",
            ]
        )
    for i in [
        *doc["indicator_22"],
        *([doc["indicator_22_overall"]] if doc.get("indicator_22_overall") else []),
    ]:
        note = _t("per_100k", lang)
        if i.get("illustrative"):
            note += f" {_t('illustrative', lang)}"
        source = i.get("source_vi") if lang == "vi" else i.get("source")
        if source or i.get("source"):
            note += f"; {source or i['source']}"
        rows.append(
            [
                "22",
                i["province"] or _t("all_provinces", lang),
                "",
                i["air_stations"],
                i["air_stations_transmitting"],
                i["urban_population"],
                rounded(i["per_100k"] if i["per_100k"] is not None else i["value"]),
                "",
                note,
            ]
        )
    return csv_bytes((headers, rows))


# --- XLSX ----------------------------------------------------------------------------------------


def exceedance_xlsx(report: ExceedanceReport, lang: str = "vi") -> bytes:
    from openpyxl import Workbook
    from openpyxl.chart import BarChart, Reference
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.worksheet import Worksheet

    header_font = Font(bold=True, color="FFFFFF")
    header_fill = PatternFill("solid", fgColor="1F4E78")
    book = Workbook()

    def fill(sheet: Worksheet, table: Table, first_row: int = 1) -> None:
        headers, rows = table
        for col, text in enumerate(headers, 1):
            cell = sheet.cell(first_row, col, text)
            cell.font = header_font
            cell.fill = header_fill
            cell.alignment = Alignment(wrap_text=True, vertical="top")
        for r, row in enumerate(rows, first_row + 1):
            for col, value in enumerate(row, 1):
                cell = sheet.cell(r, col, value)
                if isinstance(value, datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm"
                elif isinstance(value, date):
                    cell.number_format = "yyyy-mm-dd"
        sheet.freeze_panes = sheet.cell(first_row + 1, 1)
        for col, text in enumerate(headers, 1):
            values = [text] + [str(row[col - 1]) for row in rows[:200]]
            width = min(60, max(10, max(len(v) for v in values) + 2))
            sheet.column_dimensions[get_column_letter(col)].width = width
        if rows:
            sheet.auto_filter.ref = (
                f"A{first_row}:{get_column_letter(len(headers))}{first_row + len(rows)}"
            )

    overview = book.active
    assert overview is not None
    overview.title = _t("sheet.report", lang)
    lines: list[tuple[str, bool]] = [
        (_t("title.exceedances", lang), True),
        (report.title_target, True),
        (_t("period", lang, start=local_text(report.start), end=local_text(report.end)), False),
        (generated_line(report, lang), False),
        (readings_digest_line(report, lang) or "", False),
        ("", False),
    ]
    for s in report.stations:
        reg = f"{s.regulation_id or '–'}" + (
            f" {_t('column', lang).lower()} {s.column}" if s.column else ""
        )
        lines.append((f"{_t('station', lang)}: {s.name} ({s.id})", True))
        lines.append(
            (
                f"{_t('facility', lang)}: {s.facility} — {_t('province', lang)}: {s.province} — "
                f"{_t('regulation', lang)}: {reg}",
                False,
            )
        )
        lines.extend((text, False) for text in regime_lines(s, lang))
        lines.append((_t("limits", lang), True))
        lines.extend((limit_line(lim, lang), False) for lim in s.limits)
        if not s.limits:
            lines.append((_t("no_limits", lang), False))
        lines.extend((_t("limit_problem", lang, problem=p), False) for p in s.problems)
        lines.append(("", False))
    lines.append((_t("unverified_note", lang), False))
    lines.append((_t("completeness_note", lang), False))
    lines.append((_t("hours_note", lang), False))
    lines.append(("", False))
    choices = choice_lines(report, lang)
    lines.append((choices[0], True))
    lines.extend((text, False) for text in choices[1:])
    for row, (text, bold) in enumerate(lines, 1):
        cell = overview.cell(row, 1, text)
        if bold:
            cell.font = Font(bold=True, size=13 if row == 1 else 11)
    overview.column_dimensions["A"].width = 140

    fill(
        book.create_sheet(_t("sheet.episodes", lang)),
        episodes_table(report, lang, spreadsheet=True),
    )
    fill(
        book.create_sheet(_t("sheet.completeness", lang)),
        completeness_table(report.completeness, lang, spreadsheet=True),
    )
    fill(book.create_sheet(_t("sheet.status", lang)), status_table(report, lang, spreadsheet=True))
    fill(book.create_sheet(_t("sheet.by_parameter", lang)), by_parameter_table(report, lang))
    months = book.create_sheet(_t("sheet.by_month", lang))
    table = by_month_table(report, lang)
    fill(months, table)
    if table[1]:
        chart = BarChart()
        chart.type = "col"
        chart.title = _t("section.chart", lang)
        chart.y_axis.title = _t("col.hours_exceeded", lang)
        chart.x_axis.title = _t("col.month", lang)
        n = len(table[1])
        data = Reference(months, min_col=3, min_row=1, max_row=n + 1)
        cats = Reference(months, min_col=1, min_row=2, max_row=n + 1)
        chart.add_data(data, titles_from_data=True)
        chart.set_categories(cats)
        chart.legend = None
        chart.width, chart.height = 22, 10
        months.add_chart(chart, f"A{n + 4}")
    log_sheet = book.create_sheet(_t("sheet.log", lang))
    fill(log_sheet, station_log_table(report, lang, spreadsheet=True))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# --- PDF -----------------------------------------------------------------------------------------


def font_paths(font_dir: Path | str | None = None) -> dict[str, Path]:
    folder = Path(font_dir or os.environ.get(FONT_DIR_ENV) or DEFAULT_FONT_DIR)
    paths = {style: folder / name for style, name in FONT_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ReportFontError(
            f"PDF reports need the DejaVu Sans fonts for Vietnamese text; not found: "
            f"{', '.join(missing)}. Install the Debian package fonts-dejavu-core "
            f"(apt-get install fonts-dejavu-core) or set {FONT_DIR_ENV} to a folder holding "
            f"{' and '.join(FONT_FILES.values())}."
        )
    return paths


def _monthly_completeness(
    report: CompletenessReport, lang: str = "en"
) -> tuple[list[str], list[list[str]]]:
    """Rows (station, parameter), columns months: the share of valid readings."""
    months = sorted({month_label(r.day) for r in report.days})
    sums: dict[tuple[str, str | None, str], list[int]] = {}
    for r in [*report.days, *report.station_days]:
        acc = sums.setdefault((r.station_id, r.param, month_label(r.day)), [0, 0])
        acc[0] += r.received
        acc[1] += r.expected
    keys = sorted(
        {(k[0], k[1]) for k in sums},
        key=lambda k: (k[0], k[1] is None, k[1] or ""),
    )
    rows = []
    for station_id, param in keys:
        cells = [station_id, param or "*"]
        for m in months:
            received, expected = sums.get((station_id, param, m), [0, 0])
            cells.append(percent_text(min(1.0, received / expected) if expected else None, lang))
        rows.append(cells)
    return months, rows


def exceedance_pdf(
    report: ExceedanceReport, lang: str = "vi", font_dir: Path | str | None = None
) -> bytes:
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    fonts = font_paths(font_dir)
    footer_text = _t("page", lang, n="{n}", total="{nb}")
    title = _t("title.exceedances", lang)

    class Pdf(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("DejaVu", size=7)
            self.set_text_color(90)
            left = f"quantrac — {title} — {report.title_target}"
            self.cell(0, 6, left[:150], align="L")
            self.set_x(self.l_margin)
            self.cell(0, 6, footer_text.replace("{n}", str(self.page_no())), align="R")
            self.set_text_color(0)

    pdf = Pdf(orientation="L", unit="mm", format="A4")
    pdf.set_title(f"{title} — {report.title_target}")
    pdf.set_creator("quantrac")
    pdf.set_lang(lang)
    for style, path in fonts.items():
        pdf.add_font("DejaVu", style, str(path))
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def heading(text: str, size: float = 12) -> None:
        if pdf.get_y() > pdf.h - 40:
            pdf.add_page()
        pdf.ln(2)
        pdf.set_font("DejaVu", "B", size)
        pdf.multi_cell(width, size * 0.5, text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)
        pdf.set_font("DejaVu", size=8)

    def para(text: str, size: float = 8) -> None:
        pdf.set_font("DejaVu", size=size)
        pdf.multi_cell(width, size * 0.5, text, align="L", new_x="LMARGIN", new_y="NEXT")

    def table(headers: list[str], rows: list[list[Any]], widths: Sequence[float]) -> None:
        pdf.set_font("DejaVu", size=7)
        style = FontFace(emphasis="BOLD", fill_color=(31, 78, 120), color=(255, 255, 255))
        with pdf.table(
            col_widths=tuple(widths),
            width=width,
            headings_style=style,
            cell_fill_color=(235, 241, 247),
            cell_fill_mode="ROWS",
            line_height=3.6,
            text_align="LEFT",
            first_row_as_headings=True,
        ) as t:
            row = t.row()
            for h in headers:
                row.cell(h)
            for values in rows:
                row = t.row()
                for v in values:
                    if isinstance(v, float):
                        v = num(v, lang)
                    row.cell("" if v is None else str(v))
        pdf.ln(2)

    # Title and overview
    pdf.set_font("DejaVu", "B", 16)
    pdf.multi_cell(width, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "B", 12)
    pdf.multi_cell(width, 6, report.title_target, new_x="LMARGIN", new_y="NEXT")
    para(_t("period", lang, start=local_text(report.start), end=local_text(report.end)), 9)
    para(generated_line(report, lang), 8)
    digest_line = readings_digest_line(report, lang)
    if digest_line:
        para(digest_line, 7)
        pdf.set_keywords(f"readings-sha256:{report.readings_sha256}")

    # Stations, regulations and limits, numbered so the episodes can refer to them
    refs: dict[tuple[str, str, str, str], int] = {}
    for s in report.stations:
        heading(f"{_t('station', lang)}: {s.name} ({s.id})", 11)
        reg = s.regulation_id or "–"
        if s.column:
            reg += f" {_t('column', lang).lower()} {s.column}"
        para(
            f"{_t('facility', lang)}: {s.facility}   {_t('province', lang)}: {s.province}   "
            f"{_t('cadence', lang)}: {s.cadence_s} s   {_t('regulation', lang)}: {reg}"
        )
        for text in regime_lines(s, lang):
            para(text, 7.5)
        pdf.set_font("DejaVu", "B", 8)
        pdf.multi_cell(width, 4.5, _t("limits", lang), new_x="LMARGIN", new_y="NEXT")
        if not s.limits:
            para(_t("no_limits", lang))
        for lim in s.limits:
            n = len(refs) + 1
            refs.setdefault((s.id, lim.param, lim.averaging, lim.formula), n)
            para(
                f"[{refs[(s.id, lim.param, lim.averaging, lim.formula)]}] {limit_line(lim, lang)}",
                7.5,
            )
        for problem in s.problems:
            para(_t("limit_problem", lang, problem=problem), 7.5)
    pdf.ln(1)
    para(_t("unverified_note", lang), 7)
    choices = choice_lines(report, lang)
    pdf.set_font("DejaVu", "B", 8)
    pdf.multi_cell(width, 4.5, choices[0], new_x="LMARGIN", new_y="NEXT")
    for text in choices[1:]:
        para(text, 7)

    # Summaries and chart
    heading(_t("section.by_parameter", lang))
    headers, rows = by_parameter_table(report, lang)
    table(headers, rows, (14, 10, 8, 8, 10, 10, 10, 10, 10, 10))
    para(_t("hours_note", lang), 7)

    heading(_t("section.by_month", lang))
    headers, rows = by_month_table(report, lang)
    table(headers, rows, (10, 8, 10, 10, 30, 10))
    _bar_chart(pdf, report, lang, width)

    # Episodes
    heading(_t("section.episodes", lang))
    if not report.episodes:
        para(_t("no_episodes", lang))
    else:
        headers = _headers(
            lang,
            "station",
            "param",
            "averaging",
            "start",
            "end",
            "duration_h",
            "maximum",
            "mean",
            "limit",
            "multiple",
            "band",
            "completeness",
            "discharge_m3_day",
        )
        rows = []
        for e in report.episodes:
            ref = refs.get((e.station_id, e.param, e.averaging, e.formula))
            bound = decimal_comma(e.limit_text) if lang == "vi" else e.limit_text
            limit = bound + (f" [{ref}]" if ref else f" ({e.regulation_id}: {e.formula})")
            if e.unverified:
                limit += f" {_t('unverified', lang)}"
            end = _t("ongoing", lang) if e.ongoing else local_text(e.end)
            rows.append(
                [
                    e.station_id,
                    e.param,
                    translate(f"averaging.{e.averaging}", lang),
                    local_text(e.start),
                    end,
                    num(hours(e.duration.total_seconds()), lang, 2),
                    f"{num(e.maximum, lang)} {e.unit}",
                    f"{num(e.mean, lang)} {e.unit}",
                    limit,
                    "" if e.multiple is None else num(e.multiple, lang, 2),
                    f"{e.band or ''}\n{penalty_text(e, lang)}".strip(),
                    percent_text(e.completeness, lang),
                    num(e.discharge_m3_day, lang, 1) if e.discharge_m3_day is not None else "–",
                ]
            )
        table(headers, rows, (11, 8, 6, 13, 13, 7, 11, 11, 20, 7, 26, 8, 10))

    # Completeness
    heading(_t("section.completeness", lang))
    months, rows = _monthly_completeness(report.completeness, lang)
    headers = [_t("col.station", lang), _t("col.param", lang), *months]
    month_width = max(8.0, min(16.0, (width - 40) / max(1, len(months))))
    table(headers, rows, (22, 18, *([month_width] * len(months))))
    para(_t("completeness_note", lang) + f" *: {_t('whole_station', lang)}.", 7)

    # Calibration and faults
    heading(_t("section.status", lang))
    if not report.status_periods:
        para(_t("no_status_periods", lang))
    else:
        headers, rows = status_table(report, lang)
        rows = [
            [*r[:3], local_text(p.start), local_text(p.end), *r[5:]]
            for r, p in zip(rows, report.status_periods, strict=True)
        ]
        table(headers, rows, (14, 10, 14, 16, 16, 10, 10))

    # The station log: maintenance, repair, replacement and calibration
    heading(_t("section.log", lang))
    if not report.station_log:
        para(_t("no_log", lang))
    else:
        headers, rows = station_log_table(report, lang)
        rows = [
            [*r[:3], local_text(w.start), local_text(w.end), *r[5:]]
            for r, w in zip(rows, report.station_log, strict=True)
        ]
        table(headers, rows, (14, 12, 12, 16, 16, 40, 10))
    return bytes(pdf.output())


def _bar_chart(pdf: Any, report: ExceedanceReport, lang: str, width: float) -> None:
    """Hours exceeded per month, drawn with rectangles and lines."""
    months = report.by_month
    if not months:
        return
    chart_h, label_h = 45.0, 10.0
    if pdf.get_y() + chart_h + label_h + 12 > pdf.h - 15:
        pdf.add_page()
    pdf.set_font("DejaVu", "B", 9)
    pdf.cell(width, 6, _t("section.chart", lang), new_x="LMARGIN", new_y="NEXT")
    top = pdf.get_y() + 2
    left = pdf.l_margin + 14
    plot_w = min(width - 20, 18.0 * len(months) + 10)
    bottom = top + chart_h
    peak = max((m.hours_exceeded for m in months), default=0.0)
    scale_max = max(1.0, peak)
    pdf.set_draw_color(120)
    pdf.set_line_width(0.2)
    pdf.line(left, top, left, bottom)
    pdf.line(left, bottom, left + plot_w, bottom)
    pdf.set_font("DejaVu", size=6)
    for frac in (0.0, 0.5, 1.0):
        y = bottom - frac * chart_h
        pdf.line(left - 1, y, left, y)
        pdf.set_xy(pdf.l_margin, y - 2)
        pdf.cell(12, 4, f"{scale_max * frac:.3g}", align="R")
    slot = plot_w / len(months)
    bar_w = min(12.0, slot * 0.7)
    pdf.set_fill_color(192, 57, 43)
    for i, m in enumerate(months):
        x = left + i * slot + (slot - bar_w) / 2
        h = chart_h * m.hours_exceeded / scale_max
        if h > 0:
            pdf.rect(x, bottom - h, bar_w, h, style="F")
            pdf.set_xy(x - 2, bottom - h - 4)
            pdf.cell(bar_w + 4, 4, f"{m.hours_exceeded:.3g}", align="C")
        pdf.set_xy(left + i * slot, bottom + 1)
        pdf.cell(slot, 4, m.month, align="C")
    pdf.set_y(bottom + label_h)
    pdf.set_draw_color(0)
    pdf.set_fill_color(255)


def exceedance_file(
    report: ExceedanceReport,
    fmt: str,
    lang: str = "vi",
    *,
    section: str = "episodes",
    font_dir: Path | str | None = None,
) -> bytes:
    if fmt == "json":
        import json

        return json.dumps(exceedance_json(report), ensure_ascii=False, indent=1).encode()
    if fmt == "csv":
        return exceedance_csv(report, lang, section)
    if fmt == "xlsx":
        return exceedance_xlsx(report, lang)
    if fmt == "pdf":
        return exceedance_pdf(report, lang, font_dir)
    raise ValueError(f"format: one of {', '.join(FORMATS)}")
