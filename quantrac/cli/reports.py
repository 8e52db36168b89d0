"""`quantrac report exceedances|completeness` and `quantrac indicators`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from quantrac.alerts.choices import design_choices
from quantrac.alerts.config import AlertConfigError, load_alerts_config
from quantrac.cli.evidence import (
    open_evidence,
    register_verify,
    seal_written_file,
    sealable_digest,
    start_sealed_snapshot,
)
from quantrac.cli.schedule import register as register_schedule
from quantrac.cli.util import add_lang_arg
from quantrac.core.catalog import load_catalog
from quantrac.core.config_files import ConfigError
from quantrac.core.contract import parse_time
from quantrac.core.db import connect
from quantrac.core.i18n import TranslatedError, translate
from quantrac.core.registry import load_registry
from quantrac.core.settings import Settings
from quantrac.regulations.tables import RegulationError, load_regulation_catalog
from quantrac.reports.completeness import completeness_report
from quantrac.reports.exceedances import ReportError, exceedance_report, stations_for
from quantrac.reports.indicators import (
    compute_indicators,
    indicators_json,
    indicators_path,
    load_indicator_config,
)
from quantrac.reports.writers import (
    CSV_SECTIONS,
    ReportFontError,
    completeness_csv,
    completeness_json,
    exceedance_file,
    local_text,
    num,
    percent_text,
)
from quantrac.upgrade import require_current

# Longer periods show a progress bar on standard error (one step per month).
PROGRESS_AFTER = timedelta(days=31)


def exporter() -> str:
    """Who runs the command: the system account, said to be the command line."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "?"
    return f"{name} (quantrac report)"


def _time_arg(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


class ProgressBar:
    """``[#####.....] 5/14 2026-03`` on one line of standard error."""

    def __init__(self, stream: TextIO | None = None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width = width
        self.shown = False

    def __call__(self, done: int, total: int, label: str) -> None:
        filled = self.width * done // max(1, total)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {done}/{total} {label:<24}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _load(settings: Settings) -> tuple[Any, Any]:
    catalog = load_catalog(settings.catalog_path)
    registry = load_registry(settings.stations_path, catalog)
    regulations = load_regulation_catalog(settings.regulations_path, catalog)
    return registry, regulations


def _write(data: bytes, output: str | None, binary: bool) -> int:
    if output and output != "-":
        Path(output).write_bytes(data)
        return 0
    if binary:
        print("this format is binary: give a file with -o FILE", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


def _check_period(args: argparse.Namespace, command: str) -> bool:
    if args.end <= args.start:
        print(f"quantrac {command}: --to must be after --from", file=sys.stderr)
        return False
    return True


async def cmd_exceedances(settings: Settings, args: argparse.Namespace) -> int:
    if not _check_period(args, "report exceedances"):
        return 2
    try:
        registry, regulations = _load(settings)
        stations = stations_for(registry, args.station, args.facility)
        engine_config = load_alerts_config(settings.alerts_path).engine
    except (ReportError, RegulationError, AlertConfigError) as exc:
        print(f"quantrac report exceedances: {_said(exc, args.lang)}", file=sys.stderr)
        return 2
    if args.format in ("pdf", "xlsx") and not args.output:
        print("quantrac report exceedances: pdf and xlsx need -o FILE", file=sys.stderr)
        return 2
    bar = ProgressBar() if args.end - args.start > PROGRESS_AFTER and not args.quiet else None
    station_ids = [s.id for s in stations]
    async with await open_evidence(settings) as conn:
        await require_current(conn)  # a report changes no schema: `quantrac db upgrade` does
        await start_sealed_snapshot(conn)
        try:
            report = await exceedance_report(
                conn,
                registry,
                regulations,
                [s.id for s in stations],
                args.start,
                args.end,
                progress=bar,
                facility=args.facility,
                engine_config=engine_config,
                exported_by=exporter(),
                holdoff=timedelta(minutes=settings.alerts_holdoff_minutes),
            )
        finally:
            if bar is not None:
                bar.close()
        digest = await sealable_digest(conn, station_ids, args.start, args.end)
        await conn.commit()
        if digest is not None:
            report.readings_sha256, report.readings_count = digest.sha256, digest.count
        try:
            data = exceedance_file(report, args.format, args.lang, section=args.section)
        except ReportFontError as exc:
            print(f"quantrac report exceedances: {exc}", file=sys.stderr)
            return 1
        code = _write(data, args.output, args.format in ("pdf", "xlsx"))
        if code == 0 and args.output:
            print(
                f"{len(report.episodes)} episode(s), {len(report.status_periods)} "
                f"calibration/fault period(s) → {args.output}",
                file=sys.stderr,
            )
            if digest is not None and args.output != "-":
                note = await seal_written_file(
                    conn,
                    Path(args.output),
                    kind="report exceedances",
                    request={
                        "format": args.format,
                        "lang": args.lang,
                        "section": args.section,
                        "facility": args.facility,
                    },
                    stations=station_ids,
                    start=args.start,
                    end=args.end,
                    digest=digest,
                )
                print(note, file=sys.stderr)
    return code


async def cmd_completeness(settings: Settings, args: argparse.Namespace) -> int:
    if not _check_period(args, "report completeness"):
        return 2
    try:
        registry, regulations = _load(settings)
        stations = stations_for(registry, args.station, args.facility)
        choices = design_choices(load_alerts_config(settings.alerts_path).engine, regulations)
    except (ReportError, RegulationError, AlertConfigError) as exc:
        print(f"quantrac report completeness: {_said(exc, args.lang)}", file=sys.stderr)
        return 2
    async with await connect(settings) as conn:
        await require_current(conn)
        report = await completeness_report(conn, stations, args.start, args.end)
    if args.format == "json":
        data = json.dumps(completeness_json(report, choices), ensure_ascii=False, indent=1).encode()
    else:
        data = completeness_csv(report, args.lang)
    return _write(data, args.output, False)


def _said(exc: Exception, lang: str) -> str:
    """A refusal in the report's language when the table has it (ReportError), else as raised."""
    return exc.text(lang) if isinstance(exc, TranslatedError) else str(exc)


def indicators_table(doc: dict[str, Any], lang: str) -> str:
    def t(key: str, **params: Any) -> str:
        return translate(f"report.{key}", lang, **params)

    def pct(value: float | None) -> str:
        return percent_text(value, lang)

    def count(value: int | None) -> str:
        return "–" if value is None else num(value, lang, 0)

    i23 = doc["indicator_23"]
    period = (local_text(datetime.fromisoformat(doc["period"][end])) for end in ("from", "to"))
    lines = [
        t("title.indicators"),
        " – ".join(period),
        "",
        t("indicator_23"),
        f"  {t('all_provinces')}: {i23['transmitted']}/{i23['required']} = {pct(i23['value'])}",
    ]
    lines += [
        f"  {p['province']}: {p['transmitted']}/{p['required']} = {pct(p['value'])}"
        for p in i23["by_province"]
    ]
    lines.append(
        f"  {t('facility'):<44}{t('province'):<16}{t('transmitted'):<12}{t('col.completeness')}"
    )
    for f in i23["facilities"]:
        lines.append(
            f"  {f['facility'][:42]:<44}{f['province'][:14]:<16}"
            f"{t('yes') if f['transmitted'] else t('no'):<12}{pct(f['completeness'])}"
        )
    lines += ["", t("indicator_22")]
    for i in doc["indicator_22"]:
        note = f" {t('illustrative')}" if i["illustrative"] else ""
        lines.append(
            f"  {i['province']}: {count(i['air_stations'])} {t('air_stations').lower()} / "
            f"{count(i['urban_population'])} → {num(i['per_100k'], lang)} "
            f"{t('per_100k').lower()}{note}"
        )
        source = i["source_vi"] if lang == "vi" else i["source"]
        if source:
            year = i["year"] if i["year"] is not None else "–"
            lines.append(f"    {t('population_source', year=year, source=source)}")
    return "\n".join(lines) + "\n"


async def cmd_indicators(settings: Settings, args: argparse.Namespace) -> int:
    if not _check_period(args, "indicators"):
        return 2
    try:
        registry, _ = _load(settings)
        path = Path(args.inputs) if args.inputs else indicators_path(settings.config_dir)
        config = load_indicator_config(path)
    except (ConfigError, RegulationError) as exc:
        print(f"quantrac indicators: {exc}", file=sys.stderr)
        return 2
    async with await connect(settings) as conn:
        await require_current(conn)
        result = await compute_indicators(conn, registry, config, args.start, args.end)
    doc = indicators_json(result)
    if args.format == "json":
        text = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
    else:
        text = indicators_table(doc, args.lang)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _period_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="start",
        required=True,
        type=_time_arg,
        help="ISO-8601 with offset, e.g. 2026-01-01T00:00+07:00",
    )
    parser.add_argument("--to", dest="end", required=True, type=_time_arg)


def _target_args(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--station", help="station id")
    target.add_argument("--facility", help="every station of this facility (name as registered)")


def register(sub: Any) -> None:
    report = sub.add_parser("report", help="inspector reports: exceedance history, completeness")
    report_sub = report.add_subparsers(dest="report_command", required=True, metavar="REPORT")

    ex = report_sub.add_parser(
        "exceedances",
        help="exceedance episodes, limits, completeness, calibration and faults, summaries",
    )
    _target_args(ex)
    _period_args(ex)
    ex.add_argument("--format", choices=("pdf", "xlsx", "csv", "json"), default="pdf")
    ex.add_argument("-o", "--output", help="file to write (csv and json: default stdout)")
    add_lang_arg(ex, help="language of the report (default vi)")
    ex.add_argument(
        "--section",
        choices=CSV_SECTIONS,
        default="episodes",
        help="csv only: which table (default: episodes)",
    )
    ex.add_argument("--quiet", action="store_true", help="no progress bar")
    ex.set_defaults(handler=cmd_exceedances)

    register_verify(report_sub)
    register_schedule(report_sub)

    co = report_sub.add_parser(
        "completeness", help="valid readings against expected, per parameter and day"
    )
    _target_args(co)
    _period_args(co)
    co.add_argument("--format", choices=("csv", "json"), default="csv")
    co.add_argument("-o", "--output", help="file to write (default: standard output)")
    add_lang_arg(co, help="language of the report (default vi)")
    co.set_defaults(handler=cmd_completeness)

    ind = sub.add_parser(
        "indicators",
        help="provincial indicators No. 23 (facilities transmitting) and No. 22 (air stations "
        "per urban population)",
    )
    _period_args(ind)
    ind.add_argument("--format", choices=("table", "json"), default="table")
    add_lang_arg(ind, help="language of the report (default vi)")
    ind.add_argument("--inputs", help="indicator inputs (default: config/indicators.yaml)")
    ind.add_argument("-o", "--output", help="file to write (default: standard output)")
    ind.set_defaults(handler=cmd_indicators)
