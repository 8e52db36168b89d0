"""Readings from a CSV file (``station,param,time,value,unit,status``) for batch commands.

Used by ``quantrac aqi`` and ``quantrac replay``: it only parses and checks rows against the
catalog (and, when given, the station registry); what the readings are for is the caller's
business. A bad row becomes a ``CsvProblem`` naming its line and field and never stops the
rest of the file. Also ``write_rows``, the output side of those commands.

Header: required, column names in any order, matched without regard to case or surrounding
spaces; columns beyond the six are ignored. Values use a dot as the decimal separator (a
comma is refused rather than guessed: "1,200" could be either). Status is 00, 01 or 02; the
one-digit forms 0, 1, 2 are accepted too because spreadsheets drop the leading zero.
Duplicate rows are not checked here: storage (replay) and averaging (first one wins) do that.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, Literal

from quantrac.core.catalog import Catalog, Unit
from quantrac.core.contract import STATUS_BY_CODE, NaiveTimeError, Reading, Status, parse_time
from quantrac.core.registry import Registry
from quantrac.core.time import VIETNAM
from quantrac.ingest.payloads import decode_text

COLUMNS = ("station", "param", "time", "value", "unit", "status")


@dataclass(frozen=True, slots=True)
class CsvReading:
    reading: Reading
    unit: str  # unit id of reading.value: the station's declared unit, else the CSV's
    line: int


@dataclass(frozen=True, slots=True)
class CsvProblem:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


class _RowError(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _status(text: str) -> Status:
    code = text.strip()
    if len(code) == 1:
        code = "0" + code
    status = STATUS_BY_CODE.get(code)
    if status is None:
        raise _RowError("status", f"bad status {text!r} (expected 00, 01 or 02)")
    return status


def _value(text: str) -> Decimal:
    cleaned = text.strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        hint = " (use a dot as the decimal separator)" if "," in cleaned else ""
        raise _RowError("value", f"value {_shown(text)} is not a number{hint}") from None
    if not value.is_finite():
        raise _RowError("value", f"value {_shown(text)} is not a finite number")
    if not math.isfinite(float(value)):
        raise _RowError("value", f"value {_shown(text)} is out of range (beyond ±1.8e308)")
    return value


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _time(text: str, window: TimeWindow) -> datetime:
    try:
        moment = parse_time(text.strip())
    except NaiveTimeError:
        raise _RowError(
            "time", f"time {_shown(text)} has no UTC offset (write e.g. 2026-11-01T08:00+07:00)"
        ) from None
    except ValueError as exc:
        raise _RowError("time", f"bad time {_shown(text)}: {exc}") from None
    if moment < window.earliest:
        raise _RowError(
            "time",
            f"time {_shown(text)} is before {window.earliest.date().isoformat()}: not a "
            "plausible measurement (a datalogger's reset clock?)",
        )
    if moment >= window.latest:
        raise _RowError(
            "time",
            f"time {_shown(text)} is after {window.latest.date().isoformat()}: not a plausible "
            "measurement",
        )
    return moment


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Measured times a CSV row may carry. The project's choice, not a rule of law: automatic
    stations report from the 2000s on, and a row dated 0001 or 1970 (a reset clock) or 9999
    beside 2026 rows would make the commands walk every hour in between. Future years stay
    allowed: replay tries regulations that take effect later."""

    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    latest: datetime = datetime(2100, 1, 1, tzinfo=UTC)


def _convert(value: Decimal, from_unit: Unit, to_unit: Unit, catalog: Catalog) -> float:
    factor = catalog.conversion_factor(from_unit, to_unit)
    if factor is None:
        raise _RowError("unit", f"{from_unit.id} cannot be converted exactly to {to_unit.id}")
    # In decimal, so 1.1 mg/m3 becomes 1100 µg/m3 and not 1100.0000000000002.
    try:
        return float(value * Decimal(repr(factor)))
    except ArithmeticError:  # decimal.Overflow and friends
        raise _RowError("value", f"value {value} is out of range in {to_unit.id}") from None


def _row(
    row: Mapping[str, str],
    line: int,
    catalog: Catalog,
    registry: Registry | None,
    window: TimeWindow,
) -> CsvReading:
    station_id = row["station"].strip()
    if not station_id:
        raise _RowError("station", "station is empty")
    station = None
    if registry is not None:
        station = registry.get(station_id)
        if station is None:
            raise _RowError("station", f"unknown station {station_id!r}")
    param_name = row["param"].strip()
    parameter = catalog.parameter(param_name)
    if parameter is None:
        raise _RowError("param", f"unknown parameter {param_name!r}")
    measured_at = _time(row["time"], window)
    value = _value(row["value"])
    unit_name = row["unit"].strip()
    unit = catalog.unit(unit_name)
    if unit is None:
        raise _RowError("unit", f"unknown unit {unit_name!r}")
    if not catalog.accepts(parameter, unit):
        raise _RowError("unit", f"{parameter.code} cannot be measured in {unit.id}")
    status = _status(row["status"])
    target = unit
    if station is not None:
        declared = station.parameters.get(parameter.code)
        if declared is None:
            raise _RowError("param", f"station {station_id} does not declare {parameter.code}")
        target = declared.unit
    number = _convert(value, unit, target, catalog)
    if not math.isfinite(number):
        raise _RowError("value", f"value {row['value']!r} is out of range")
    reading = Reading(station_id, parameter.code, measured_at, number, status)
    return CsvReading(reading=reading, unit=target.id, line=line)


def _header(fields: Sequence[str] | None) -> dict[str, int] | CsvProblem:
    if not fields:
        return CsvProblem(1, "header", f"empty file: expected the header {','.join(COLUMNS)}")
    names = [f.strip().lstrip("\ufeff").strip().casefold() for f in fields]
    positions: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in COLUMNS:
            if name in positions:
                return CsvProblem(1, "header", f"column {name!r} appears twice")
            positions[name] = i
    missing = [c for c in COLUMNS if c not in positions]
    if missing:
        return CsvProblem(
            1,
            "header",
            f"missing column(s) {', '.join(missing)}: the first line must be the header "
            f"{','.join(COLUMNS)}",
        )
    return positions


def read_readings_csv(
    path_or_file: str | Path | IO[str],
    catalog: Catalog,
    registry: Registry | None,
    window: TimeWindow | None = None,
) -> tuple[list[CsvReading], list[CsvProblem]]:
    """Every good row as a reading, every bad row as a problem (with its 1-based line).

    With a registry, stations must be registered and declare the parameter, and values are
    converted exactly to the declared unit; without one, values keep the CSV's unit. A file
    is UTF-8 (or UTF-16/32 with a byte-order mark); a row with other bytes is a problem.
    A file that cannot be opened raises OSError.
    """
    window = window or TimeWindow()
    if isinstance(path_or_file, str | Path):
        raw = Path(path_or_file).read_bytes()
        try:
            text = decode_text(raw)[0]
        except UnicodeDecodeError as exc:
            if exc.reason.startswith("NUL"):
                return [], [CsvProblem(1, "file", f"not UTF-8 text ({exc.reason}); save as UTF-8")]
            text = raw.decode("utf-8", "surrogateescape")  # bad bytes: their rows are refused
        return _read(io.StringIO(text, newline=""), catalog, registry, window)
    return _read(path_or_file, catalog, registry, window)


def _undecodable(fields: Sequence[str]) -> bool:
    try:
        "".join(fields).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _read(
    fh: IO[str], catalog: Catalog, registry: Registry | None, window: TimeWindow
) -> tuple[list[CsvReading], list[CsvProblem]]:
    readings: list[CsvReading] = []
    problems: list[CsvProblem] = []
    reader = csv.reader(fh)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        return readings, [CsvProblem(1, "header", f"not CSV: {exc}")]
    positions = _header(header)
    if isinstance(positions, CsvProblem):
        return readings, [positions]
    assert header is not None
    width = max(positions.values()) + 1
    end_of_previous = reader.line_num
    while True:
        line = end_of_previous + 1  # a quoted field may span lines: report where the row starts
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(CsvProblem(line, "row", f"not valid CSV: {exc}"))
            end_of_previous = reader.line_num
            continue
        end_of_previous = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if _undecodable(fields):
            problems.append(CsvProblem(line, "row", "bytes that are not UTF-8; save as UTF-8"))
            continue
        if len(fields) < width:
            problems.append(
                CsvProblem(line, "row", f"{len(fields)} fields, the header has {len(header)}")
            )
            continue
        row = {name: fields[i] for name, i in positions.items()}
        try:
            readings.append(_row(row, line, catalog, registry, window))
        except _RowError as exc:
            problems.append(CsvProblem(line, exc.field, exc.message))
    return readings, problems


# --- Output -----------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in an output row")
        # People here read Vietnam time; the offset keeps it unambiguous for programs.
        return value.astimezone(VIETNAM).isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_rows(
    rows: Iterable[Mapping[str, Any]],
    out: IO[str],
    fmt: Literal["csv", "jsonl"],
    columns: Sequence[str],
) -> int:
    """Write rows (only ``columns``, in that order; absent ones empty/null); returns the count.

    ``out`` should be opened with encoding="utf-8" (and newline="" for csv). Datetimes are
    written as ISO-8601 in +07:00.
    """
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            cells = [_cell(row.get(c)) for c in columns]
            writer.writerow(["" if c is None else c for c in cells])
            count += 1
    elif fmt == "jsonl":
        for row in rows:
            record = {c: _cell(row.get(c)) for c in columns}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    return count
