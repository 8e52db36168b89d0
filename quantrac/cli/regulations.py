"""`quantrac regulations list|show|check|limits`: the regulation catalog for people."""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from quantrac.aqi.index import publication_text
from quantrac.cli.util import add_lang_arg
from quantrac.core.catalog import load_catalog
from quantrac.core.i18n import translate
from quantrac.core.registry import RegistryError, load_registry
from quantrac.core.settings import Settings
from quantrac.regulations.limits import (
    EffectiveLimit,
    Factor,
    describe_regime,
    factor_text,
    station_limits,
)
from quantrac.regulations.tables import (
    CoefficientRule,
    PenaltySchedule,
    Provenance,
    Regulation,
    RegulationCatalog,
    RegulationError,
    load_regulation_catalog,
    load_regulation_files,
    number_text,
    range_text,
    regulation_files,
)

_MARK = {"vi": "CHƯA KIỂM CHỨNG", "en": "UNVERIFIED"}


def _folder(settings: Settings, args: argparse.Namespace) -> Path:
    if args.dir:
        return Path(args.dir)
    # Another part of quantrac may add a setting for this folder; fall back to config/regulations.
    configured = getattr(settings, "regulations_path", None)
    return Path(configured) if configured else settings.config_dir / "regulations"


def _load(settings: Settings, args: argparse.Namespace) -> RegulationCatalog | None:
    folder = _folder(settings, args)
    try:
        return load_regulation_catalog(folder, load_catalog(settings.catalog_path))
    except RegulationError as exc:
        _print_issues(exc, folder)
        return None


def _print_issues(exc: RegulationError, where: Path | str) -> None:
    print(f"{len(exc.issues)} problem(s) in {where}:", file=sys.stderr)
    for issue in exc.issues:
        print(f"  {issue}", file=sys.stderr)


def _day(value: date | None) -> str:
    return value.isoformat() if value else "–"


def _last_day(value: date | None) -> str:
    """Files store the first day something no longer applies; people read the last day."""
    return (value - timedelta(days=1)).isoformat() if value else "–"


def _prov(p: Provenance | None, lang: str) -> str:
    if p is None:
        return ""
    text = f"[{p.confidence}] {p.source}"
    if p.note:
        text += f" — {p.note}"
    if p.unverified:
        text += f" {_MARK[lang]}"
    return text


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


# --- list ----------------------------------------------------------------------------------------


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    regulations = _load(settings, args)
    if regulations is None:
        return 1
    header = ["ID", "KIND", "FROM", "UNTIL (LAST DAY)", "REPLACED BY", "NUMBERS", "UNVERIFIED"]
    rows = [[*header, "FILE"]]
    for reg in regulations.all():
        kind = reg.kind if reg.sector_of is None else f"{reg.kind} (sector)"
        rows.append(
            [
                reg.id,
                kind,
                _day(reg.effective_from),
                _last_day(reg.effective_to),
                reg.replaced_by or "–",
                reg.numbers(),
                str(reg.unverified_count()),
                " + ".join((reg.path, *reg.supplements)),
            ]
        )
    for schedule in regulations.penalties:
        rows.append(
            [
                schedule.id,
                "penalty bands (" + ", ".join(schedule.bands) + ")",
                _day(schedule.effective_from),
                "–",
                "–",
                "–",
                str(schedule.unverified_count()),
                schedule.path,
            ]
        )
    for line in _table(rows):
        print(line)
    return 0


# --- show ----------------------------------------------------------------------------------------


def _rule_lines(rule: CoefficientRule, lang: str, indent: str) -> list[str]:
    lines: list[str] = []
    if rule.value is not None:
        lines.append(f"{indent}= {factor_text(rule.value)}")
    elif rule.cases:
        for key, case in rule.cases.items():
            case_meaning = case.meaning_en if lang == "en" else case.meaning_vi
            label = f"{indent}{rule.select_by} = {key}"
            lines.append(f"{label}: {case_meaning}" if case_meaning != key else label)
            lines.extend(_rule_lines(case, lang, indent + "    "))
    elif rule.bands:
        unit = f" ({rule.unit})" if rule.unit else ""
        lines.append(f"{indent}input {rule.input}{unit}:")
        for band in rule.bands:
            lines.append(
                f"{indent}    {range_text(rule.symbol, band.over, band.up_to)} → "
                f"{factor_text(band.value)}"
            )
    elif rule.allowed:
        allowed = ", ".join(factor_text(a) for a in rule.allowed)
        lines.append(f"{indent}input {rule.input}: one of {allowed} (given by the station)")
    if rule.default is not None:
        note = rule.default_note_en if lang == "en" else rule.default_note_vi
        lines.append(f"{indent}    missing input ({note}) → default {factor_text(rule.default)}")
    return lines


def _show_regulation(reg: Regulation, lang: str) -> None:
    print(f"{reg.id} — {reg.title(lang)}")
    print(f"  kind: {reg.kind}; issued by: {reg.issued_by or '–'}")
    print(
        f"  in force: {_day(reg.effective_from)} to {_last_day(reg.effective_to)} (last day); "
        f"replaced by: {reg.replaced_by or '–'}"
    )
    print(f"  file: {reg.path}")
    print(f"  provenance: {_prov(reg.provenance, lang)}")
    for supplement in reg.supplements:
        print(f"  table supplement: {supplement}")
    o2 = f"{number_text(reg.o2_reference_percent)} %" if reg.o2_reference_percent else "none"
    if reg.kind == "emission" and any(c.o2_reference_percent for c in reg.categories.values()):
        o2 = "per source category (below)"
    print(f"  O2 reference: {o2}")
    if reg.kind == "emission" and o2 != "none":
        print("    correction: C × (20.9 − O2ref) / (20.9 − O2meas)")
    if reg.sector_of:
        print(
            "  "
            + translate(
                "show.sector", lang, sector=reg.sector(lang), general=reg.sector_of, id=reg.id
            )
        )
    if reg.transition is not None:
        t = reg.transition
        until = _last_day(t.existing_until) if t.existing_until else "?"
        print(
            "  "
            + translate(
                "show.transition",
                lang,
                replaces=", ".join(t.replaces),
                existing=t.existing(lang),
                until=until,
                since=_day(reg.effective_from),
            )
        )
        print(f"    {_prov(t.provenance, lang)}")
    if reg.column_choice_en:
        print("  " + translate("show.column_choice", lang, text=reg.column_choice(lang)))
        print(f"    {_prov(reg.column_choice_provenance, lang)}")
    if reg.limits_missing:
        print("  " + translate("show.limits_missing", lang, text=reg.missing_text(lang)))
    if reg.not_limited:
        names = ", ".join(sorted(reg.not_limited))
        print("  " + translate("show.not_limited", lang, params=names))
    if reg.default_averaging:
        rule = _prov(reg.averaging_provenance, lang)
        print(f"  compared at: {reg.default_averaging} averages — {rule}")
    if reg.columns:
        print("  columns:")
        for column in reg.columns:
            print(f"    {column}: {reg.column_meaning(column, lang)}")
    for category in reg.categories.values():
        meaning = category.meaning_en if lang == "en" else category.meaning_vi
        ref = category.o2_reference_percent
        o2_text = f" (O2 reference {number_text(ref)} %)" if ref is not None else ""
        source = f"  {_prov(category.provenance, lang)}" if category.provenance else ""
        print(f"  category {category.id}: {meaning}{o2_text}{source}")
    if reg.flow_bands is not None:
        fb = reg.flow_bands
        print(f"  flow bands (input {fb.input}, {fb.unit}):")
        for band in fb.bands:
            print(f"    {band.id}: {range_text(fb.symbol, band.over, band.up_to)}")
    if reg.coefficients:
        names = " × ".join(c.name for c in reg.coefficients)
        print(f"  coefficients: Cmax = C × {names}")
        for coefficient in reg.coefficients:
            meaning = coefficient.meaning_en if lang == "en" else coefficient.meaning_vi
            print(f"    {coefficient.name}: {meaning} — {_prov(coefficient.provenance, lang)}")
            for line in _rule_lines(coefficient.rule, lang, "      "):
                print(line)
        excluded = ", ".join(sorted(reg.coefficients_not_applied_to)) or "–"
        print(f"    not applied to: {excluded} (nor to ranges such as pH)")
    print("  limits:")
    if not reg.limits:
        print("    " + translate("show.no_numbers", lang))
    column_keys: list[str | None] = list(reg.columns) or [None]
    for key in column_keys:
        if key is not None:
            print(f"    column {key}:")
        rows = [r for r in reg.limits if r.column == key]
        for row in rows:
            if row.minimum is not None and row.maximum is not None:
                bound = f"{number_text(row.minimum)}–{number_text(row.maximum)}"
            elif row.maximum is not None:
                bound = f"≤ {number_text(row.maximum)}"
            else:
                bound = f"≥ {number_text(row.minimum)}"
            extra = []
            if row.category:
                extra.append(f"category {row.category}")
            if row.flow_band:
                extra.append(f"flow band {row.flow_band}")
            if row.valid_from:
                extra.append(f"from {row.valid_from.isoformat()}")
            if row.valid_to:
                extra.append(f"until {_last_day(row.valid_to)}")
            where = f" ({', '.join(extra)})" if extra else ""
            print(
                f"      {row.param:<11} {row.averaging:<4} {bound} {row.unit}{where}  "
                f"{_prov(row.provenance, lang)}"
            )


def _show_penalties(schedule: PenaltySchedule, lang: str) -> None:
    title = schedule.title_en if lang == "en" else schedule.title_vi
    print(f"{schedule.id} — {title}")
    print(f"  in force: {_day(schedule.effective_from)}; file: {schedule.path}")
    print(f"  provenance: {_prov(schedule.provenance, lang)}")
    for kind, bands in schedule.bands.items():
        article = bands[0].article if bands else ""
        print(f"  {kind} ({article}), multiple = measured / limit:")
        for band in bands:
            print(f"    {band.label:<9} {band.consequence(lang)}  {_prov(band.provenance, lang)}")


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    regulations = _load(settings, args)
    if regulations is None:
        return 1
    reg = regulations.get(args.id)
    if reg is not None:
        _show_regulation(reg, args.lang)
        return 0
    for schedule in regulations.penalties:
        if schedule.id == args.id:
            _show_penalties(schedule, args.lang)
            return 0
    known = [r.id for r in regulations.all()] + [s.id for s in regulations.penalties]
    print(f"no regulation {args.id!r}; known: {', '.join(known)}", file=sys.stderr)
    return 1


# --- check ---------------------------------------------------------------------------------------


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    paths = (
        [Path(f) for f in args.files] if args.files else regulation_files(_folder(settings, args))
    )
    if not paths:
        print("no regulation files to check", file=sys.stderr)
        return 1
    if args.files and any(_extends(p) for p in paths):
        # A table supplement is checked against the regulation it extends: the folder's files.
        given = {p.resolve() for p in paths}
        folder = regulation_files(_folder(settings, args))
        paths = [*paths, *(p for p in folder if p.resolve() not in given)]
    try:
        regulations = load_regulation_files(paths, load_catalog(settings.catalog_path))
    except RegulationError as exc:
        where = paths[0] if len(paths) == 1 else f"{len(paths)} files"
        _print_issues(exc, where)
        return 1
    for reg in regulations.all():
        print(
            f"{reg.path}: OK ({reg.id}, {len(reg.limits)} limit values, "
            f"{reg.unverified_count()} unverified)"
        )
        for supplement in reg.supplements:
            print(f"{supplement}: OK (table supplement of {reg.id})")
    for schedule in regulations.penalties:
        print(
            f"{schedule.path}: OK ({schedule.id}, penalty bands, "
            f"{schedule.unverified_count()} unverified)"
        )
    # The whole folder (or --stations): also every station's limits, as the alert service
    # computes them at start-up, so a missing number is seen before the service runs.
    if args.files and not args.stations:
        return 0
    return _check_stations(settings, args, regulations)


def _extends(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return False  # reported by the loader
    return any(line.startswith("extends:") for line in text.splitlines())


def _check_stations(
    settings: Settings, args: argparse.Namespace, regulations: RegulationCatalog
) -> int:
    path = Path(args.stations) if args.stations else settings.stations_path
    try:
        registry = load_registry(path, load_catalog(settings.catalog_path))
    except RegistryError as exc:
        print(f"{len(exc.issues)} problem(s) in {path}:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    problems = [
        p
        for station in registry.stations.values()
        for p in station_limits(station, regulations).problems
    ]
    if not problems:
        print(
            translate("check.stations_ok", args.lang, registry=path, count=len(registry.stations))
        )
        return 0
    print(
        translate("check.stations", args.lang, count=len(problems), registry=path), file=sys.stderr
    )
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


# --- limits --------------------------------------------------------------------------------------


def _limit_line(limit: EffectiveLimit, lang: str) -> str:
    text = f"{limit.param} {limit.averaging}: {limit.formula_text(lang)}"
    validity = limit.validity_text(lang)
    if validity:
        text += f"  [{validity}]"
    if limit.source == "permit":
        text += f"  — {_prov(limit.provenance, lang)}"
    elif limit.unverified:
        text += f"  {_MARK[lang]}"
    return text


def cmd_limits(settings: Settings, args: argparse.Namespace) -> int:
    regulations = _load(settings, args)
    if regulations is None:
        return 1
    catalog = load_catalog(settings.catalog_path)
    registry = load_registry(
        Path(args.stations) if args.stations else settings.stations_path, catalog
    )
    station = registry.get(args.station_id)
    if station is None:
        print(f"no station {args.station_id!r} in {registry.source}", file=sys.stderr)
        return 1
    lang = args.lang
    print(f"{station.id} — {station.name} ({station.kind})")
    ref = station.regulation
    if ref is None:
        print("  no regulation in the station registry: no limits")
        return 0
    column = f" column {ref.column}" if ref.column else ""
    print(f"  regulation: {ref.id}{column}")
    if ref.coefficients:
        inputs = ", ".join(f"{k}={v}" for k, v in ref.coefficients.items())
        print(f"  inputs: {inputs}")
    result = station_limits(station, regulations)
    print(f"  {translate('regime.heading', lang)}:")
    permit = station.permit.citation(lang) if station.permit else None
    for line in describe_regime(result.regime, permit, lang):
        print(f"    {line}")
    if station.kind == "air":
        print(f"    {publication_text(station.aqi_publishable, lang)}")
    factors: dict[str, Factor] = {}
    for limit in result.limits:
        for factor in limit.factors:
            factors.setdefault(factor.name, factor)
    if factors:
        print("  coefficients:")
        for factor in factors.values():
            explanation = factor.explanation if lang == "en" else factor.explanation_vi
            mark = f"  {_MARK[lang]}" if factor.unverified else ""
            print(f"    {factor.name} = {factor_text(factor.value)}: {explanation}{mark}")
    if result.limits:
        print("  limits:")
        for limit in result.limits:
            print(f"    {_limit_line(limit, lang)}")
        o2 = sorted({v for v in (limit.o2_reference_percent for limit in result.limits) if v})
        if o2:
            print(f"  O2 reference: {', '.join(number_text(v) for v in o2)} %")
    if result.problems:
        print(f"{len(result.problems)} problem(s):", file=sys.stderr)
        for problem in result.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    """Add `regulations` to the `quantrac` command (sub: its subparsers)."""
    parser = sub.add_parser(
        "regulations", help="regulation catalog: QCVN limits, coefficients, penalty bands"
    )
    actions = parser.add_subparsers(dest="regulations_command", required=True, metavar="ACTION")

    def with_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--dir", help="regulation folder (default: config/regulations)")
        return p

    def with_lang(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        add_lang_arg(p, help="language (default vi)")
        return p

    with_dir(
        actions.add_parser("list", help="regulations, dates, files, unverified values")
    ).set_defaults(handler=cmd_list)
    show = with_lang(with_dir(actions.add_parser("show", help="every limit of one regulation")))
    show.add_argument("id", help='e.g. "QCVN 40:2011/BTNMT"')
    show.set_defaults(handler=cmd_show)
    check = with_lang(
        with_dir(
            actions.add_parser("check", help="validate regulation files and the stations' limits")
        )
    )
    check.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="default: every file of the folder, and every station of the registry",
    )
    check.add_argument("--stations", help="also check this station registry's limits")
    check.set_defaults(handler=cmd_check)
    limits = with_lang(with_dir(actions.add_parser("limits", help="effective limits of a station")))
    limits.add_argument("station_id")
    limits.add_argument("--stations", help="station registry (default: the configured one)")
    limits.set_defaults(handler=cmd_limits)
