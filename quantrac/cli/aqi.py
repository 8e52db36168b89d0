"""``quantrac aqi``: VN_AQI (Decision 1459) per station from a readings CSV.

The I/O side of ``quantrac.aqi.index``: read the CSV, build the valid hourly means
(``quantrac.regulations.windows``,
status 00 only, 75 % completeness at the station's cadence), compute hourly or daily AQI rows
and write them as CSV or JSON lines.

Cadence: from the registry when ``--stations`` is given; otherwise inferred per station as the
median spacing between consecutive distinct measured times of each of its parameters (all
pooled), because completeness of an hour depends on how many readings it should have held.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

from quantrac.aqi.index import (
    NOWCAST_HOURS,
    AqiResult,
    AqiTable,
    AqiTableError,
    daily_aqi,
    hourly_aqi,
    load_table,
)
from quantrac.cli.util import add_lang_arg
from quantrac.core.catalog import Catalog, load_catalog
from quantrac.core.contract import Reading
from quantrac.core.i18n import translate
from quantrac.core.registry import DEFAULT_CADENCE_S, Registry, load_registry
from quantrac.core.settings import Settings
from quantrac.core.time import VIETNAM
from quantrac.ingest.readings_csv import CsvProblem, CsvReading, read_readings_csv, write_rows
from quantrac.regulations.windows import hourly_means, local_date

TABLE_FILE = Path("aqi") / "vn_aqi_1459.yaml"
HOUR = timedelta(hours=1)
# The decision's own spelling in its tables; the catalog code keeps the datalogger comma.
DISPLAY = {"PM2,5": "PM2.5"}
BASE_COLUMNS = ("station", "start", "end", "aqi", "category", "category_name", "colour")


def display(pollutant: str) -> str:
    return DISPLAY.get(pollutant, pollutant)


def register(sub: Any) -> None:
    """Add the ``aqi`` subcommand to the ``quantrac`` parser's subparsers."""
    aqi = sub.add_parser(
        "aqi",
        help="VN_AQI (Decision 1459/QĐ-TCMT) per station from a readings CSV",
        description="Hourly (NowCast) or daily VN_AQI per station from a CSV with columns "
        "station,param,time,value,unit,status.",
    )
    aqi.add_argument("--readings", required=True, metavar="FILE.csv", help="readings CSV")
    aqi.add_argument(
        "--daily", action="store_true", help="daily AQI (local days 01:00–24:00) instead of hourly"
    )
    aqi.add_argument(
        "--stations",
        metavar="FILE.yaml",
        help="station registry: checks stations, converts units, gives each station's cadence",
    )
    aqi.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    aqi.add_argument("-o", "--output", help="file to write (default: standard output)")
    add_lang_arg(aqi, help="language of category names")
    aqi.set_defaults(handler=cmd_aqi)


def infer_cadences(readings: Iterable[Reading]) -> dict[str, int]:
    """Seconds between readings per station: the median spacing of measured times."""
    times: dict[tuple[str, str], set[datetime]] = defaultdict(set)
    for reading in readings:
        times[(reading.station_id, reading.param)].add(reading.measured_at)
    gaps: dict[str, list[float]] = defaultdict(list)
    for (station_id, _), moments in times.items():
        ordered = sorted(moments)
        gaps[station_id].extend((b - a).total_seconds() for a, b in pairwise(ordered))
    return {
        station_id: max(1, round(statistics.median(spacing))) if spacing else DEFAULT_CADENCE_S
        for station_id, spacing in gaps.items()
    }


def _exact(value: float, factor: float) -> float:
    return float(Decimal(repr(value)) * Decimal(repr(factor)))


def pollutant_readings(
    readings: Sequence[CsvReading], catalog: Catalog, table: AqiTable
) -> tuple[list[Reading], list[CsvProblem]]:
    """The readings of the index's pollutants, in the table's unit (µg/m³)."""
    target = catalog.unit(table.unit)
    if target is None:
        raise AqiTableError(f"the AQI table's unit {table.unit!r} is not in the catalog")
    kept: list[Reading] = []
    problems: list[CsvProblem] = []
    for item in readings:
        reading = item.reading
        if reading.param not in table.pollutants:
            continue
        unit = catalog.unit(item.unit)
        factor = catalog.conversion_factor(unit, target) if unit is not None else None
        if factor is None:
            problems.append(
                CsvProblem(
                    item.line,
                    "unit",
                    f"{reading.param} in {item.unit} cannot be converted exactly to "
                    f"{table.unit} for the AQI; row not used",
                )
            )
            continue
        if reading.value is None:
            continue
        value = reading.value if factor == 1.0 else _exact(reading.value, factor)
        kept.append(
            Reading(reading.station_id, reading.param, reading.measured_at, value, reading.status)
        )
    return kept, problems


def station_means(
    readings: Sequence[Reading], cadence_of: dict[str, int]
) -> tuple[dict[str, dict[str, dict[datetime, float]]], dict[str, set[datetime]]]:
    """Valid hourly means per station and pollutant, and every hour that had any reading."""
    windows = hourly_means(readings, lambda station_id: cadence_of[station_id])
    means: dict[str, dict[str, dict[datetime, float]]] = defaultdict(dict)
    hours: dict[str, set[datetime]] = defaultdict(set)
    for (station_id, param), by_hour in windows.items():
        means[station_id][param] = {
            hour: window.mean for hour, window in by_hour.items() if window.mean is not None
        }
        hours[station_id].update(by_hour)
    return means, hours


def compute(
    means: dict[str, dict[str, dict[datetime, float]]],
    hours: dict[str, set[datetime]],
    table: AqiTable,
    *,
    daily: bool,
) -> list[AqiResult]:
    """Hourly AQI for every hour from a station's first to its last hour with readings, or
    daily AQI for every local day that has readings."""
    results: list[AqiResult] = []
    for station_id in sorted(hours):
        station_hours = hours[station_id]
        if not station_hours:
            continue
        by_param = means.get(station_id, {})
        if daily:
            days = sorted({local_date(h, VIETNAM) for h in station_hours})
            for day in days:
                result = daily_aqi(station_id, day, by_param, VIETNAM, table)
                if result is not None:
                    results.append(result)
            continue
        # An hour has an AQI only within the NowCast's reach of an hour with data: walking
        # just those keeps a long gap (years between two rows) from costing every hour in it.
        last = max(station_hours)
        reach = {h + i * HOUR for h in station_hours for i in range(NOWCAST_HOURS)}
        for hour in sorted(h for h in reach if h <= last):
            result = hourly_aqi(station_id, hour, by_param, table)
            if result is not None:
                results.append(result)
    return results


def input_columns(table: AqiTable, *, daily: bool) -> list[tuple[str, str]]:
    """(column, key in AqiResult.inputs): what each concentration column holds, in µg/m³."""
    columns: list[tuple[str, str]] = []
    for pollutant in table.pollutants:
        name = display(pollutant)
        if not daily:
            suffix = "nowcast" if pollutant in table.nowcast else "1h"
            columns.append((f"{name}_{suffix}", pollutant))
        elif pollutant in table.nowcast:
            columns.append((f"{name}_24h", pollutant))
        elif pollutant == "O3":
            columns += [(f"{name}_max1h", "O3_1h"), (f"{name}_max8h", "O3_8h")]
        else:
            columns.append((f"{name}_max1h", pollutant))
    return columns


def result_rows(
    results: Iterable[AqiResult], table: AqiTable, *, daily: bool, lang: str
) -> tuple[list[str], list[dict[str, Any]]]:
    inputs = input_columns(table, daily=daily)
    columns = [
        *BASE_COLUMNS,
        "dominant",
        *(display(p) for p in table.pollutants),
        *(c for c, _ in inputs),
    ]
    rows = []
    for result in results:
        row: dict[str, Any] = {
            "station": result.station_id,
            "start": result.start,
            "end": result.end,
            "aqi": result.aqi,
            "category": result.category,
            "category_name": translate(f"aqi.category.{result.category}", lang),
            "colour": result.colour_hex,
            "dominant": "+".join(display(p) for p in result.dominant),
        }
        for pollutant, index in result.sub_indices.items():
            row[display(pollutant)] = index
        for column, key in inputs:
            value = result.inputs.get(key)
            # Two decimals: enough to redo the interpolation by hand, without float noise.
            row[column] = None if value is None or not math.isfinite(value) else round(value, 2)
        rows.append(row)
    return columns, rows


def _is_air(registry: Registry, station_id: str) -> bool:
    station = registry.get(station_id)
    return station is not None and station.kind == "air"


def _report(path: str, problems: Sequence[CsvProblem]) -> None:
    for problem in sorted(problems, key=lambda p: p.line):
        print(f"{path}:{problem.line}: {problem.field}: {problem.message}", file=sys.stderr)


def cmd_aqi(settings: Settings, args: argparse.Namespace) -> int:
    catalog = load_catalog(settings.catalog_path)
    try:
        table = load_table(settings.config_dir / TABLE_FILE)
    except (OSError, AqiTableError) as exc:
        print(f"quantrac aqi: cannot load the AQI table: {exc}", file=sys.stderr)
        return 2
    registry: Registry | None = None
    if args.stations:
        registry = load_registry(Path(args.stations), catalog)
    try:
        csv_readings, problems = read_readings_csv(Path(args.readings), catalog, registry)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"quantrac aqi: cannot read {args.readings}: {exc}", file=sys.stderr)
        return 2
    if any(p.field in ("header", "file") for p in problems):
        _report(args.readings, problems)
        return 2

    air = csv_readings
    if registry is not None:
        air = [r for r in csv_readings if _is_air(registry, r.reading.station_id)]
        if len(air) < len(csv_readings):
            print(
                f"{len(csv_readings) - len(air)} reading(s) of non-air stations ignored",
                file=sys.stderr,
            )
    readings, unit_problems = pollutant_readings(air, catalog, table)
    problems = problems + unit_problems
    if problems:
        _report(args.readings, problems)
        print(f"{len(problems)} row(s) of {args.readings} not used", file=sys.stderr)

    if registry is not None:
        cadences = {sid: station.cadence_s for sid, station in registry.stations.items()}
    else:
        cadences = infer_cadences(readings)
    means, hours = station_means(readings, cadences)
    results = compute(means, hours, table, daily=args.daily)
    period = "daily" if args.daily else "hourly"
    if not results:
        print(
            f"quantrac aqi: no {period} AQI could be computed (it needs valid PM10 or PM2.5 "
            "hourly means of an air station)",
            file=sys.stderr,
        )
        return 1
    columns, rows = result_rows(results, table, daily=args.daily, lang=args.lang)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            count = write_rows(rows, out, args.format, columns)
    else:
        count = write_rows(rows, sys.stdout, args.format, columns)
    stations = len({r.station_id for r in results})
    print(f"{count} {period} AQI rows for {stations} station(s)", file=sys.stderr)
    return 0
