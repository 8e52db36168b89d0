"""Unit tests of quantrac.ingest.tt10: Circular 10/2021 text lines and file names."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantrac.core.contract import Reason
from quantrac.core.time import VIETNAM
from quantrac.ingest import tt10

VN = VIETNAM
T0_UTC = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)  # 2024-05-01 10:00 local


def test_tab_separated_line() -> None:
    readings, problems = tt10.parse_lines("COD\t12.5\tmg/L\t20240501100000\t00\r\n", VN)
    assert problems == []
    assert len(readings) == 1
    r = readings[0]
    assert (r.param, r.value, r.unit, r.status, r.time, r.field) == (
        "COD",
        12.5,
        "mg/L",
        "00",
        T0_UTC,
        "line 1",
    )


def test_space_separated_line_with_multiple_spaces() -> None:
    readings, problems = tt10.parse_lines("  pH   7.25  pH  20240501100000   01  ", VN)
    assert problems == []
    assert [(r.param, r.value, r.unit, r.status, r.time) for r in readings] == [
        ("pH", 7.25, "pH", "01", T0_UTC)
    ]


def test_unit_with_space_in_space_mode() -> None:
    readings, problems = tt10.parse_lines("Coliform 2300 MPN/100 mL 20240501100000 00", VN)
    assert problems == []
    assert readings[0].unit == "MPN/100 mL"
    assert readings[0].value == 2300.0
    assert readings[0].param == "Coliform"


def test_tab_fields_are_stripped() -> None:
    readings, problems = tt10.parse_lines("COD \t 1,5 \t mg/L \t 20240501100000 \t 00", VN)
    assert problems == []
    assert (readings[0].param, readings[0].value, readings[0].unit, readings[0].status) == (
        "COD",
        1.5,
        "mg/L",
        "00",
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1,5", 1.5),
        ("1.5", 1.5),
        ("-0,25", -0.25),
        ("+3", 3.0),
        (",5", 0.5),
        ("5,", 5.0),
        ("1e3", 1000.0),
        ("1,5E-2", 0.015),
        ("0", 0.0),
    ],
)
def test_parse_value(text: str, value: float) -> None:
    assert tt10.parse_value(text) == value


@pytest.mark.parametrize("text", ["nan", "NaN", "-inf", "+Infinity", "INF"])
def test_parse_value_non_finite_words(text: str) -> None:
    assert not math.isfinite(tt10.parse_value(text))


@pytest.mark.parametrize(
    "text", ["", "abc", "1.2.3", "1,2,3", "1 000", "0x10", "1e", "--1", ",", ".", "1_000", "12a"]
)
def test_parse_value_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="value is not a decimal number"):
        tt10.parse_value(text)


def test_crlf_lf_blank_lines_and_bom() -> None:
    text = (
        "\ufeffCOD\t10\tmg/L\t20240501100000\t00\r\n"
        "\r\n"
        "   \n"
        "TSS\t20\tmg/L\t20240501100000\t00\n"
        "\n"
        "pH\t7\tpH\t20240501100000\t00"
    )
    readings, problems = tt10.parse_lines(text, VN)
    assert problems == []
    assert [(r.param, r.value, r.field) for r in readings] == [
        ("COD", 10.0, "line 1"),
        ("TSS", 20.0, "line 4"),
        ("pH", 7.0, "line 6"),
    ]


def test_only_blank_lines_give_nothing() -> None:
    assert tt10.parse_lines("\r\n\n  \n\t\n", VN) == ([], [])
    assert tt10.parse_lines("", VN) == ([], [])
    assert tt10.parse_lines("\ufeff", VN) == ([], [])


@pytest.mark.parametrize(
    "line",
    [
        "COD\t10\tmg/L\t20240501100000",
        "COD\t10\tmg/L\t20240501100000\t00\textra",
        "COD 10 20240501100000 00",
        "COD",
    ],
)
def test_wrong_field_count_is_line_syntax(line: str) -> None:
    text = "TSS\t20\tmg/L\t20240501100000\t00\n\n" + line + "\n"
    readings, problems = tt10.parse_lines(text, VN)
    assert [r.param for r in readings] == ["TSS"]
    assert len(problems) == 1
    p = problems[0]
    assert p.reason is Reason.LINE_SYNTAX
    assert p.field == "line 3"
    assert p.value == line
    assert p.detail == "expected 5 fields: code, value, unit, yyyyMMddHHmmss, status"


def test_line_syntax_value_is_truncated_to_200_chars() -> None:
    line = "X" * 500
    _, problems = tt10.parse_lines(line, VN)
    assert problems[0].value == "X" * 200


def test_bad_value_is_value_not_number() -> None:
    readings, problems = tt10.parse_lines("COD\t1.2.3\tmg/L\t20240501100000\t00", VN)
    assert readings == []
    assert len(problems) == 1
    p = problems[0]
    assert (p.reason, p.field, p.value, p.detail) == (
        Reason.VALUE_NOT_NUMBER,
        "line 1.value",
        "1.2.3",
        "value is not a decimal number",
    )


def test_nan_value_parses_to_a_reading() -> None:
    readings, problems = tt10.parse_lines("COD\tnan\tmg/L\t20240501100000\t00", VN)
    assert problems == []
    assert math.isnan(readings[0].value)


@pytest.mark.parametrize(
    "stamp", ["2024050110000", "202405011000000", "2024-05-01", "20241301100000", "20240230100000"]
)
def test_bad_timestamp_is_time_invalid(stamp: str) -> None:
    readings, problems = tt10.parse_lines(f"COD\t1\tmg/L\t{stamp}\t00", VN)
    assert readings == []
    assert len(problems) == 1
    assert problems[0].reason is Reason.TIME_INVALID
    assert problems[0].field == "line 1.time"
    assert problems[0].value == stamp
    assert problems[0].detail


def test_local_time_to_utc() -> None:
    assert tt10.parse_timestamp("20240101000000", VN) == datetime(2023, 12, 31, 17, 0, tzinfo=UTC)
    assert tt10.parse_timestamp("20240501100000", VN) == T0_UTC
    other = timezone(timedelta(hours=-3))
    assert tt10.parse_timestamp("20240501100000", other) == datetime(2024, 5, 1, 13, tzinfo=UTC)
    assert tt10.parse_timestamp("20240501100000", VN).tzinfo is UTC


def test_format_timestamp() -> None:
    assert tt10.format_timestamp(T0_UTC, VN) == "20240501100000"
    assert tt10.format_timestamp(datetime(2023, 12, 31, 17, tzinfo=UTC), VN) == "20240101000000"


def test_parse_timestamp_rejects_non_14_digits() -> None:
    with pytest.raises(ValueError, match="14 digits"):
        tt10.parse_timestamp("2024050110000a", VN)


def test_year_one_timestamp_is_time_invalid_not_a_crash() -> None:
    readings, problems = tt10.parse_lines("COD\t1\tmg/L\t00010101000000\t00", VN)
    assert readings == []
    assert [p.reason for p in problems] == [Reason.TIME_INVALID]


def test_unicode_digits_are_not_a_number() -> None:
    _, problems = tt10.parse_lines("COD\t\u0661\tmg/L\t20240501100000\t00", VN)
    assert [p.reason for p in problems] == [Reason.VALUE_NOT_NUMBER]


# --- file names ---------------------------------------------------------------------------------


def test_parse_file_name() -> None:
    fn = tt10.parse_file_name("BacGiang_KCNThu_NT01_20240501100000.txt", VN)
    assert (fn.province, fn.facility, fn.station) == ("BacGiang", "KCNThu", "NT01")
    assert fn.stamped_at == T0_UTC
    assert fn.prefix == "BacGiang_KCNThu_NT01"


def test_parse_file_name_upper_case_extension() -> None:
    fn = tt10.parse_file_name("BG_F_S_20240501100000.TXT", VN)
    assert fn.prefix == "BG_F_S"
    assert fn.stamped_at == T0_UTC


@pytest.mark.parametrize(
    "name",
    [
        "BacGiang_KCNThu_20240501100000.txt",
        "A_B_C_D_20240501100000.txt",
        "A_B_C_2024050110000.txt",
        "A_B_C_20240501100000.csv",
        "A_B_C_20240501100000.txt.bak",
        "A__C_20240501100000.txt",
        "A_B_C_20241301100000.txt",
        "",
    ],
)
def test_parse_file_name_invalid(name: str) -> None:
    with pytest.raises(ValueError):
        tt10.parse_file_name(name, VN)


def test_parse_file_name_message() -> None:
    with pytest.raises(ValueError, match=r"Province_Facility_Station_yyyyMMddHHmmss\.txt"):
        tt10.parse_file_name("nope.txt", VN)


# --- format_line round trip ----------------------------------------------------------------------


def test_format_line() -> None:
    line = tt10.format_line("COD", 12.5, "mg/L", T0_UTC, "00", VN)
    assert line == "COD\t12.5\tmg/L\t20240501100000\t00"


@pytest.mark.parametrize(
    ("code", "value", "unit", "status"),
    [
        ("COD", 12.5, "mg/L", "00"),
        ("PM2,5", 35.0, "µg/m3", "01"),
        ("Coliform", 2300.0, "MPN/100 mL", "02"),
        ("Temp", -3.25, "°C", "00"),
        ("Flow", 1e-5, "m3/h", "00"),
    ],
)
def test_format_line_round_trip(code: str, value: float, unit: str, status: str) -> None:
    readings, problems = tt10.parse_lines(
        tt10.format_line(code, value, unit, T0_UTC, status, VN), VN
    )
    assert problems == []
    r = readings[0]
    assert (r.param, r.value, r.unit, r.time, r.status) == (code, value, unit, T0_UTC, status)


@given(
    value=st.floats(allow_nan=False, allow_infinity=False, width=32),
    moment=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    status=st.sampled_from(["00", "01", "02"]),
)
@settings(max_examples=200, deadline=None)
def test_format_line_round_trip_property(value: float, moment: datetime, status: str) -> None:
    moment = moment.replace(microsecond=0)
    line = tt10.format_line("COD", value, "mg/L", moment, status, VN)
    readings, problems = tt10.parse_lines(line, VN)
    assert problems == []
    assert readings[0].time == moment
    # "%g" keeps 6 significant digits.
    assert readings[0].value == pytest.approx(value, rel=1e-5, abs=1e-300)


def test_looks_like_tt10() -> None:
    assert tt10.looks_like_tt10("COD\t1\tmg/L\t20240501100000\t00")
    assert tt10.looks_like_tt10("hello")
    assert not tt10.looks_like_tt10('{"station": "A"}')
    assert not tt10.looks_like_tt10("  \r\n[1, 2]")


# --- property: never raises ----------------------------------------------------------------------

_LINE_PIECES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["\t", " ", "\r\n", "\n", ",", ".", "nan", "inf", "\ufeff", "00"]),
    st.from_regex(r"\A[0-9]{14}\Z"),
    st.sampled_from(["00010101000000", "99991231235959"]),
)


@given(st.one_of(st.text(), st.lists(_LINE_PIECES, max_size=30).map("".join)))
@settings(max_examples=300, deadline=None)
def test_parse_lines_never_raises(text: str) -> None:
    readings, problems = tt10.parse_lines(text, VN)
    for p in problems:
        assert isinstance(p.reason, Reason)
        assert p.detail
        assert p.field.startswith("line ")
    for r in readings:
        assert isinstance(r.value, float)
        assert isinstance(r.time, datetime) and r.time.tzinfo is UTC
    non_blank = [line for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    assert len(readings) + len(problems) == len(non_blank)


def test_an_empty_value_is_read_as_no_value_for_validation_to_judge() -> None:
    readings, problems = tt10.parse_lines("TSS\t\tmg/L\t20261121101500\t02", VN)
    assert problems == []
    assert [(r.param, r.value, r.status) for r in readings] == [("TSS", None, "02")]
