"""Readings CSV: good rows, every kind of bad row with its line, exact unit conversion, output."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from quantrac.core.catalog import Catalog, load_catalog
from quantrac.core.contract import Status
from quantrac.core.registry import Registry, registry_from_text
from quantrac.core.settings import default_config_dir
from quantrac.ingest.readings_csv import CsvProblem, CsvReading, read_readings_csv, write_rows

HEADER = "station,param,time,value,unit,status\n"

REGISTRY = """
stations:
  - id: AIR1
    name: "Test air station"
    kind: air
    facility: "Test"
    province: "Bắc Ninh"
    location: {lat: 21.27, lon: 106.19}
    cadence: 300
    parameters:
      - {code: "PM2,5", unit: "µg/m3"}
      - {code: CO, unit: "µg/m3"}
      - {code: NO2, unit: "mg/m3"}
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(default_config_dir() / "parameters.yaml")


@pytest.fixture(scope="module")
def registry(catalog: Catalog) -> Registry:
    return registry_from_text(REGISTRY, catalog)


def read(
    text: str, catalog: Catalog, registry: Registry | None = None
) -> tuple[list[CsvReading], list[CsvProblem]]:
    return read_readings_csv(io.StringIO(text), catalog, registry)


def test_good_rows(catalog: Catalog) -> None:
    text = (
        HEADER
        + 'AIR1,"PM2,5",2026-11-01T08:05:00+07:00,31.5,µg/m3,00\n'
        + "AIR1,PM2.5,2026-11-01T01:10:00Z,12,ug/m3,01\n"
        + "AIR1,pm10,2026-11-01T08:15+07:00,-1.5,µg/m³,2\n"
    )
    readings, problems = read(text, catalog)
    assert problems == []
    assert [r.line for r in readings] == [2, 3, 4]
    first = readings[0].reading
    assert first.station_id == "AIR1"
    assert first.param == "PM2,5"
    assert first.measured_at == datetime(2026, 11, 1, 1, 5, tzinfo=UTC)
    assert first.value == 31.5
    assert first.status is Status.MEASURING
    assert readings[0].unit == "µg/m3"
    assert readings[1].reading.param == "PM2,5"
    assert readings[1].reading.status is Status.CALIBRATING
    assert readings[2].reading.param == "PM10"
    assert readings[2].reading.status is Status.FAULT
    assert readings[2].unit == "µg/m3"


def test_header_in_any_order_with_extra_columns(catalog: Catalog) -> None:
    text = (
        "\ufeffStatus, Unit ,value,time,param,station,note\n"
        "00,mg/m3,1.2,2026-11-01T08:00+07:00,CO,A,x\n"
    )
    readings, problems = read(text, catalog)
    assert problems == []
    assert readings[0].reading.value == 1.2
    assert readings[0].unit == "mg/m3"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("station,param,time,value,status\nA,CO,2026-11-01T08:00+07:00,1,00\n", "unit"),
        ("A,CO,2026-11-01T08:00+07:00,1,mg/m3,00\n", "missing column"),
        ("station,param,time,value,unit,unit,status\n", "twice"),
    ],
)
def test_header_is_required_and_checked(catalog: Catalog, text: str, message: str) -> None:
    readings, problems = read(text, catalog)
    assert readings == []
    assert len(problems) == 1
    assert problems[0].line == 1
    assert problems[0].field == "header"
    assert message in problems[0].message


def test_each_bad_row_is_reported_with_its_line_and_the_rest_is_read(catalog: Catalog) -> None:
    text = (
        HEADER
        + "AIR1,PM10,2026-11-01T08:00+07:00,40,µg/m3,00\n"  # 2 good
        + "AIR1,PM1,2026-11-01T08:00+07:00,40,µg/m3,00\n"  # 3 unknown parameter
        + "AIR1,PM10,2026-11-01T08:05:00,40,µg/m3,00\n"  # 4 time without offset
        + "AIR1,PM10,yesterday,40,µg/m3,00\n"  # 5 not a time
        + "AIR1,PM10,2026-11-01T08:10+07:00,abc,µg/m3,00\n"  # 6 not a number
        + 'AIR1,PM10,2026-11-01T08:10+07:00,"40,5",µg/m3,00\n'  # 7 decimal comma
        + "AIR1,PM10,2026-11-01T08:10+07:00,40,ppb,00\n"  # 8 unknown unit
        + "AIR1,PM10,2026-11-01T08:10+07:00,40,µg/m3,03\n"  # 9 bad status
        + "AIR1,PM10,2026-11-01T08:10+07:00,40,mg/L,00\n"  # 10 unit of another dimension
        + "AIR1,PM10,2026-11-01T08:10+07:00\n"  # 11 short row
        + "\n"  # 12 blank: skipped silently
        + ",PM10,2026-11-01T08:10+07:00,40,µg/m3,00\n"  # 13 no station
        + "AIR1,PM10,2026-11-01T08:10+07:00,nan,µg/m3,00\n"  # 14 not finite
        + "AIR1,PM10,2026-11-01T08:15+07:00,41,µg/m3,00\n"  # 15 good
    )
    readings, problems = read(text, catalog)
    assert [r.line for r in readings] == [2, 15]
    by_line = {p.line: p for p in problems}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14]
    expected = {
        3: ("param", "unknown parameter 'PM1'"),
        4: ("time", "no UTC offset"),
        5: ("time", "bad time 'yesterday'"),
        6: ("value", "'abc' is not a number"),
        7: ("value", "decimal separator"),
        8: ("unit", "unknown unit 'ppb'"),
        9: ("status", "bad status '03'"),
        10: ("unit", "PM10 cannot be measured in mg/L"),
        11: ("row", "3 fields"),
        13: ("station", "empty"),
        14: ("value", "not a finite number"),
    }
    for line, (field, text_part) in expected.items():
        assert by_line[line].field == field, line
        assert text_part in by_line[line].message, (line, by_line[line].message)
    assert str(by_line[3]) == "line 3: param: unknown parameter 'PM1'"


def test_multi_line_quoted_field_reports_the_line_where_the_row_starts(catalog: Catalog) -> None:
    text = HEADER + 'AIR1,"PM\n1",2026-11-01T08:00+07:00,40,µg/m3,00\nAIR1,X,t,1,u,00\n'
    readings, problems = read(text, catalog)
    assert readings == []
    assert [(p.line, p.field) for p in problems] == [(2, "param"), (4, "param")]


def test_without_registry_values_keep_the_csv_unit(catalog: Catalog) -> None:
    text = HEADER + "AIR1,CO,2026-11-01T08:00+07:00,1.1,mg/m3,00\n"
    readings, problems = read(text, catalog)
    assert problems == []
    assert readings[0].reading.value == 1.1
    assert readings[0].unit == "mg/m3"


def test_registry_converts_exactly_to_the_declared_unit(
    catalog: Catalog, registry: Registry
) -> None:
    text = (
        HEADER
        + "AIR1,CO,2026-11-01T08:00+07:00,1.1,mg/m3,00\n"  # declared µg/m3
        + "AIR1,NO2,2026-11-01T08:00+07:00,150,µg/m3,00\n"  # declared mg/m3
        + "AIR1,PM2.5,2026-11-01T08:00+07:00,0.0305,mg/m³,00\n"
    )
    readings, problems = read(text, catalog, registry)
    assert problems == []
    # 1.1 × 1000 in binary floating point is 1100.0000000000002; the conversion is exact.
    assert readings[0].reading.value == 1100.0
    assert readings[0].unit == "µg/m3"
    assert readings[1].reading.value == 0.15
    assert readings[1].unit == "mg/m3"
    assert readings[2].reading.param == "PM2,5"
    assert readings[2].reading.value == 30.5


def test_registry_rejects_unknown_stations_undeclared_and_inexact_units(
    catalog: Catalog, registry: Registry
) -> None:
    text = (
        HEADER
        + "AIR9,CO,2026-11-01T08:00+07:00,1,mg/m3,00\n"
        + "AIR1,SO2,2026-11-01T08:00+07:00,1,mg/m3,00\n"
        + "AIR1,CO,2026-11-01T08:00+07:00,1,mg/Nm3,00\n"
    )
    readings, problems = read(text, catalog, registry)
    assert readings == []
    assert [(p.line, p.field) for p in problems] == [(2, "station"), (3, "param"), (4, "unit")]
    assert "unknown station 'AIR9'" in problems[0].message
    assert "does not declare SO2" in problems[1].message
    assert "mg/Nm3 cannot be converted exactly to µg/m3" in problems[2].message


def test_reads_a_path(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "\ufeff" + HEADER + "AIR1,O3,2026-11-01T08:00+07:00,80,µg/m3,00\n", encoding="utf-8"
    )
    readings, problems = read_readings_csv(path, catalog, None)
    assert problems == []
    assert readings[0].reading.param == "O3"
    with pytest.raises(OSError):
        read_readings_csv(tmp_path / "missing.csv", catalog, None)


def test_problem_type() -> None:
    assert str(CsvProblem(7, "unit", "unknown unit 'ppb'")) == "line 7: unit: unknown unit 'ppb'"


# --- write_rows -------------------------------------------------------------------------------

ROWS = [
    {"station": "AIR1", "start": datetime(2026, 11, 1, 1, tzinfo=UTC), "aqi": 60, "name": "Tốt"},
    {"station": "AIR2", "start": datetime(2026, 11, 1, 2, tzinfo=UTC), "aqi": None},
]
COLUMNS = ["station", "start", "aqi", "name"]


def test_write_rows_csv_in_vietnam_time() -> None:
    out = io.StringIO()
    assert write_rows(ROWS, out, "csv", COLUMNS) == 2
    assert out.getvalue().splitlines() == [
        "station,start,aqi,name",
        "AIR1,2026-11-01T08:00:00+07:00,60,Tốt",
        "AIR2,2026-11-01T09:00:00+07:00,,",
    ]


def test_write_rows_jsonl() -> None:
    out = io.StringIO()
    assert write_rows(ROWS, out, "jsonl", COLUMNS) == 2
    lines = out.getvalue().splitlines()
    assert "Tốt" in lines[0]  # UTF-8 text, not \\u escapes
    assert json.loads(lines[0]) == {
        "station": "AIR1",
        "start": "2026-11-01T08:00:00+07:00",
        "aqi": 60,
        "name": "Tốt",
    }
    assert json.loads(lines[1])["aqi"] is None


def test_write_rows_refuses_naive_times_and_unknown_formats() -> None:
    with pytest.raises(ValueError):
        write_rows([{"start": datetime(2026, 11, 1)}], io.StringIO(), "csv", ["start"])
    with pytest.raises(ValueError):
        write_rows([], io.StringIO(), "xml", ["start"])  # type: ignore[arg-type]


# --- hostile files (issue 15): a clear error per row, the rest read, never a crash -------------


def test_values_beyond_float_range_are_row_problems(catalog: Catalog, registry: Registry) -> None:
    text = HEADER + (
        "AIR1,PM2.5,2026-11-01T08:00+07:00,1e1000000,µg/m3,00\n"
        "AIR1,NO2,2026-11-01T08:00+07:00,1e400,µg/m3,00\n"  # converted to the declared mg/m3
        "AIR1,CO,2026-11-01T08:00+07:00,-1e999999999,µg/m3,00\n"
        "AIR1,PM2.5,2026-11-01T08:05+07:00,12.5,µg/m3,00\n"
    )
    for reg in (None, registry):
        rows, problems = read(text, catalog, reg)
        assert [r.reading.value for r in rows] == [12.5]
        assert [(p.line, p.field) for p in problems] == [(2, "value"), (3, "value"), (4, "value")]
        assert all("out of range" in p.message for p in problems)


def test_absurd_dates_are_row_problems(catalog: Catalog) -> None:
    text = HEADER + (
        "AIR1,PM2.5,0001-01-01T00:00:00+00:00,1,µg/m3,00\n"
        "AIR1,PM2.5,1970-01-01T00:00:00+00:00,1,µg/m3,00\n"
        "AIR1,PM2.5,9999-12-31T00:00:00+00:00,1,µg/m3,00\n"
        "AIR1,PM2.5,0001-01-01T00:00:00+07:00,1,µg/m3,00\n"
        "AIR1,PM2.5,2026-11-01T08:00+07:00,2,µg/m3,00\n"
    )
    rows, problems = read(text, catalog)
    assert [r.reading.value for r in rows] == [2.0]
    assert [(p.line, p.field) for p in problems] == [(n, "time") for n in (2, 3, 4, 5)]
    assert "before 2000-01-01" in problems[0].message and "after 2100" in problems[2].message


def test_undecodable_bytes_refuse_their_row_only(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "readings.csv"
    path.write_bytes(
        HEADER.encode()
        + b"AIR1,PM2.5,2026-11-01T08:00+07:00,1,\xb5g/m3,00\n"  # latin-1 micro sign
        + "AIR1,PM2.5,2026-11-01T08:05+07:00,2,µg/m3,00\n".encode()
    )
    rows, problems = read_readings_csv(path, catalog, None)
    assert [r.reading.value for r in rows] == [2.0]
    assert [(p.line, p.field) for p in problems] == [(2, "row")]
    assert "not UTF-8" in problems[0].message


def test_utf16_files_with_a_mark_are_read_and_without_one_refused(
    tmp_path: Path, catalog: Catalog
) -> None:
    text = HEADER + "AIR1,PM2.5,2026-11-01T08:00+07:00,3,µg/m3,00\n"
    path = tmp_path / "readings.csv"
    path.write_bytes(text.encode("utf-16"))
    rows, problems = read_readings_csv(path, catalog, None)
    assert [r.reading.value for r in rows] == [3.0] and not problems
    path.write_bytes(text.encode("utf-16-le"))
    rows, problems = read_readings_csv(path, catalog, None)
    assert not rows and [(p.line, p.field) for p in problems] == [(1, "file")]


def test_nul_bytes_are_a_row_problem(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "readings.csv"
    path.write_bytes(
        HEADER.encode()
        + b"AIR1,PM2.5,2026-11-01T08:00+07:00,1\x00,\xc2\xb5g/m3,00\n"
        + "AIR1,PM2.5,2026-11-01T08:05+07:00,2,µg/m3,00\n".encode()
    )
    rows, problems = read_readings_csv(path, catalog, None)
    assert [r.reading.value for r in rows] == [2.0]
    assert [p.line for p in problems] == [2]
