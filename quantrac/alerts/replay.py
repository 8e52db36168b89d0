"""``quantrac replay``: the live engine run over a CSV of readings, offline.

Inspectors audit a period or try another regulation; vendors dry-run their data. The engine is
the same object the service runs; only time differs: each reading arrives "as measured" and the
clock follows the data, so the answers match what the live service would have said.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from quantrac.alerts.config import load_alerts_config
from quantrac.alerts.engine import Change, Engine, Episode, Output, Transition, catalog_unit_factor
from quantrac.alerts.model import STATION_WIDE
from quantrac.core.catalog import Catalog, load_catalog
from quantrac.core.registry import (
    DEFAULT_CADENCE_S,
    DeclaredParameter,
    Registry,
    RegistryError,
    RegulationRef,
    Station,
    load_registry,
)
from quantrac.core.settings import Settings
from quantrac.ingest.readings_csv import CsvReading, read_readings_csv, write_rows
from quantrac.regulations.limits import StationLimits, station_limits
from quantrac.regulations.tables import RegulationCatalog, RegulationError, load_regulation_catalog

COLUMNS = (
    "record",
    "kind",
    "station",
    "param",
    "regulation",
    "column",
    "averaging",
    "window_start",
    "window_end",
    "value",
    "limit",
    "multiple",
    "band",
    "completeness",
    "count",
    "unit",
    "unverified",
)

_TICK_EVERY = timedelta(minutes=1)


def infer_cadence(times: Iterable[datetime]) -> int:
    """The median spacing of distinct measured times, in seconds (default 300 s)."""
    ordered = sorted(set(times))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ordered)]
    gaps = [g for g in gaps if g > 0]
    return max(1, round(statistics.median(gaps))) if gaps else DEFAULT_CADENCE_S


def with_regulation(
    registry: Registry,
    regulation_id: str,
    column: str | None,
    stations: Iterable[str],
    coefficients: dict[str, Any],
) -> Registry:
    """The registry with every listed station answering to another regulation (and column)."""
    changed = dict(registry.stations)
    for sid in stations:
        station = changed[sid]
        old = station.regulation
        inputs = {**(old.coefficients if old else {}), **coefficients}
        ref = RegulationRef(regulation_id, column, inputs)
        # The chosen regulation applies by its own dates: the facility's regime is set aside.
        changed[sid] = dataclasses.replace(station, regulation=ref, regime=None)
    return Registry(stations=changed, source=registry.source)


def parse_coefficients(items: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--coefficient {item!r}: write NAME=VALUE")
        try:
            inputs[name.strip()] = float(text) if "." in text else int(text)
        except ValueError:
            inputs[name.strip()] = text.strip()
    return inputs


def synthetic_stations(
    rows: list[CsvReading],
    catalog: Catalog,
    regulation: Any,
    column: str | None,
) -> dict[str, Station]:
    """Stations for CSV data with no registry entry: kind and units from the regulation."""
    by_station: dict[str, list[CsvReading]] = {}
    for row in rows:
        by_station.setdefault(row.reading.station_id, []).append(row)
    stations: dict[str, Station] = {}
    for sid, items in by_station.items():
        params: dict[str, DeclaredParameter] = {}
        for item in items:
            code = item.reading.param
            if code in params:
                continue
            unit = catalog.unit(item.unit)
            assert unit is not None
            params[code] = DeclaredParameter(code, unit)
        stations[sid] = Station(
            id=sid,
            name=sid,
            kind=regulation.kind,
            facility="",
            province="",
            lat=0.0,
            lon=0.0,
            cadence_s=infer_cadence(i.reading.measured_at for i in items),
            parameters=params,
            regulation=RegulationRef(regulation.id, column, {}),
        )
    return stations


@dataclasses.dataclass
class AlertRecord:
    transition: Transition
    count: int = 1
    maximum: float | None = None
    last: Transition | None = None
    cleared_at: datetime | None = None


def run_replay(
    rows: list[CsvReading],
    registry: Registry,
    regulations: RegulationCatalog,
    engine_config: Any,
    catalog: Catalog,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Feed the readings in measured-time order; return output records and limit problems."""
    problems: list[str] = []

    def limits_for(station: Station) -> StationLimits:
        limits = station_limits(station, regulations)
        problems.extend(limits.problems)  # each names its station
        return limits

    ordered = sorted(rows, key=lambda r: (r.reading.measured_at, r.line))
    start = ordered[0].reading.measured_at if ordered else datetime.now(UTC)
    engine = Engine(
        registry,
        limits_for,
        engine_config,
        regulations.band_for,
        start,
        catalog_unit_factor(catalog),
    )
    if not ordered:
        return [], problems
    outputs: list[Output] = []
    last_tick = start
    for row in ordered:
        at = row.reading.measured_at
        if at - last_tick >= _TICK_EVERY:
            outputs += engine.tick(at)
            last_tick = at
        outputs += engine.observe(row.reading, at)
    end = ordered[-1].reading.measured_at
    outputs += engine.close_windows(end + engine_config.window_grace + timedelta(hours=1))

    records: list[dict[str, Any]] = []
    for state in engine.stations.values():
        for series in state.series.values():
            for episodes in series.episodes.values():
                records += [_episode_record(e) for e in episodes.values()]
    records += _alert_records(outputs, end)
    records.sort(
        key=lambda r: (r["window_start"] or end, r["station"], r["param"], r["record"] != "episode")
    )
    return records, problems


def _episode_record(e: Episode) -> dict[str, Any]:
    return {
        "record": "episode",
        "kind": "exceedance",
        "station": e.station_id,
        "param": e.param,
        "regulation": e.regulation_id,
        "column": e.column,
        "averaging": e.averaging,
        "window_start": e.start,
        "window_end": e.end,
        "value": round(e.maximum, 6),
        "limit": e.limit if e.limit is not None else e.limit_text,
        "multiple": e.multiple,
        "band": e.band,
        "completeness": e.completeness,
        "count": e.windows,
        "unit": e.unit,
        "unverified": e.unverified,
    }


def _alert_records(outputs: list[Output], end: datetime) -> list[dict[str, Any]]:
    open_: dict[tuple[str, str, str], AlertRecord] = {}
    done: list[AlertRecord] = []
    for output in outputs:
        if not isinstance(output, Transition):
            continue
        key = (output.station_id, output.param, output.kind.value)
        if output.change is Change.CLEAR:
            record = open_.pop(key, None)
            if record is not None:
                record.cleared_at = output.at
                done.append(record)
            continue
        record = open_.get(key)
        if output.change is Change.REVISE:
            if record is not None:
                record.last = output
                if output.value is not None and record.maximum is not None:
                    record.maximum = max(record.maximum, output.value)
            continue
        if record is None:
            record = open_[key] = AlertRecord(output, 0)
        record.count += 1
        record.last = output
        if output.value is not None:
            record.maximum = (
                output.value if record.maximum is None else max(record.maximum, output.value)
            )
    done += open_.values()
    rows = []
    for record in done:
        first = record.transition
        worst = record.last or first
        d = worst.details
        start = (
            d.get("window_start")
            if first.details.get("window_start") is None
            else first.details["window_start"]
        )
        rows.append(
            {
                "record": "alert",
                "kind": first.kind.value,
                "station": first.station_id,
                "param": first.param if first.param != STATION_WIDE else "",
                "regulation": d.get("regulation"),
                "column": d.get("column"),
                "averaging": d.get("averaging"),
                "window_start": datetime.fromisoformat(start)
                if isinstance(start, str)
                else first.at,
                "window_end": record.cleared_at,
                "value": record.maximum,
                "limit": d.get("limit") if d.get("limit") is not None else d.get("limit_min"),
                "multiple": d.get("multiple"),
                "band": d.get("band"),
                "completeness": d.get("completeness"),
                "count": record.count,
                "unit": d.get("unit"),
                "unverified": d.get("unverified"),
            }
        )
    return rows


def register(sub: Any) -> None:
    replay = sub.add_parser(
        "replay",
        help="run the alert engine over a CSV of readings (audit a period, try a regulation)",
    )
    replay.add_argument(
        "--readings", required=True, help="CSV: station,param,time,value,unit,status"
    )
    replay.add_argument("--stations", help="station registry (default: the configured one)")
    replay.add_argument("--regulation", help="evaluate against this regulation id instead")
    replay.add_argument("--column", help="the regulation's column (with --regulation)")
    replay.add_argument(
        "--coefficient",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a coefficient input for --regulation, e.g. discharge_m3_per_day=3000 (repeatable)",
    )
    replay.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    replay.add_argument("-o", "--output", help="file to write (default: standard output)")
    replay.set_defaults(handler=cmd_replay)


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    catalog = load_catalog(settings.catalog_path)
    try:
        regulations = load_regulation_catalog(settings.regulations_path, catalog)
    except RegulationError as exc:
        print(f"quantrac replay: invalid regulation catalog:\n{exc}", file=sys.stderr)
        return 2
    regulation = None
    if args.regulation:
        regulation = regulations.get(args.regulation)
        if regulation is None:
            known = ", ".join(r.id for r in regulations.all())
            print(
                f"quantrac replay: unknown regulation {args.regulation!r} (known: {known})",
                file=sys.stderr,
            )
            return 2
    elif args.column or args.coefficient:
        print("quantrac replay: --column and --coefficient need --regulation", file=sys.stderr)
        return 2
    try:
        parse_coefficients(args.coefficient)
    except ValueError as exc:
        print(f"quantrac replay: {exc}", file=sys.stderr)
        return 2
    registry_path = Path(args.stations) if args.stations else settings.stations_path
    try:
        registry = load_registry(registry_path, catalog)
    except RegistryError as exc:
        print(f"quantrac replay: invalid station registry:\n{exc}", file=sys.stderr)
        return 2
    try:
        raw, _ = read_readings_csv(args.readings, catalog, None)
    except OSError as exc:
        print(f"quantrac replay: {exc}", file=sys.stderr)
        return 2
    unknown = {r.reading.station_id for r in raw} - set(registry.stations)
    if unknown and regulation is not None:
        extra = synthetic_stations(
            [r for r in raw if r.reading.station_id in unknown], catalog, regulation, args.column
        )
        registry = Registry(stations={**registry.stations, **extra}, source=registry.source)
    if regulation is not None:
        present = {r.reading.station_id for r in raw} & set(registry.stations)
        registry = with_regulation(
            registry, regulation.id, args.column, present, parse_coefficients(args.coefficient)
        )
    rows, problems = read_readings_csv(args.readings, catalog, registry)
    for problem in problems:
        print(f"{args.readings}: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} row(s) skipped", file=sys.stderr)
    engine_config = load_alerts_config(settings.alerts_path).engine
    records, limit_problems = run_replay(rows, registry, regulations, engine_config, catalog)
    for limit_problem in limit_problems:
        print(f"limits: {limit_problem}", file=sys.stderr)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            write_rows(records, out, args.format, COLUMNS)
    else:
        write_rows(records, sys.stdout, args.format, COLUMNS)
    episodes = sum(1 for r in records if r["record"] == "episode")
    print(
        f"{len(rows)} readings replayed: {episodes} exceedance episodes, "
        f"{len(records) - episodes} alerts",
        file=sys.stderr,
    )
    return 0 if rows else 1
