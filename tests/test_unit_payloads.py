"""Unit tests of quantrac.ingest.payloads: JSON v1 and TT10 payload parsing (syntax only)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantrac.core.contract import ParsedPayload, Reason
from quantrac.core.time import VIETNAM
from quantrac.ingest.payloads import excerpt, parse_payload

VN = VIETNAM
MAX = 256 * 1024
T0 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)


def parse(raw: bytes | str | dict[str, Any] | list[Any], max_bytes: int = MAX) -> ParsedPayload:
    if isinstance(raw, dict | list):
        raw = json.dumps(raw)
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    return parse_payload(raw, max_bytes=max_bytes, local=VN)


def reasons(parsed: ParsedPayload) -> list[tuple[Reason, str]]:
    return [(p.reason, p.field) for p in parsed.problems]


def test_full_v1_payload() -> None:
    parsed = parse(
        {
            "v": 1,
            "station": "AIR1",
            "seq": 42,
            "time": "2024-05-01T10:00:00+07:00",
            "readings": [
                {"param": "PM2,5", "value": 35.5, "unit": "µg/m3", "status": "00"},
                {
                    "param": "PM10",
                    "value": 50,
                    "unit": "ug/m3",
                    "status": "01",
                    "time": "2024-05-01T02:55:00Z",
                },
            ],
        }
    )
    assert parsed.problems == []
    assert (parsed.format, parsed.station, parsed.seq, parsed.time) == ("json", "AIR1", 42, T0)
    r0, r1 = parsed.readings
    assert (r0.param, r0.value, r0.unit, r0.status, r0.time, r0.field) == (
        "PM2,5",
        35.5,
        "µg/m3",
        "00",
        T0,
        "readings[0]",
    )
    assert (r1.param, r1.value, r1.unit, r1.status, r1.field) == (
        "PM10",
        50,
        "ug/m3",
        "01",
        "readings[1]",
    )
    assert r1.time == T0 - timedelta(minutes=5)  # per-reading time overrides the message's


def test_minimal_v1_payload_defaults() -> None:
    parsed = parse(
        {
            "station": "AIR1",
            "time": "2024-05-01T03:00:00Z",
            "readings": [{"param": "PM10", "value": 1.5, "unit": "ug/m3"}],
        }
    )
    assert parsed.problems == []
    assert parsed.seq is None
    assert parsed.readings[0].status == "00"
    assert parsed.readings[0].time == T0


def test_value_is_passed_through_unchecked() -> None:
    parsed = parse(
        {"station": "A", "time": 0, "readings": [{"param": "P", "unit": "u", "value": "abc"}]}
    )
    assert parsed.problems == []
    assert parsed.readings[0].value == "abc"
    missing = parse({"station": "A", "time": 0, "readings": [{"param": "P", "unit": "u"}]})
    assert missing.readings[0].value is None


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        (1714532400000, T0),
        (1714532400000.0, T0),
        (1714532400500, T0 + timedelta(milliseconds=500)),
        ("2024-05-01T03:00:00Z", T0),
        ("2024-05-01T03:00:00z", T0),
        ("2024-05-01T03:00:00+00:00", T0),
        ("2024-05-01T10:00:00+07:00", T0),
        ("2024-04-30T22:00:00-05:00", T0),
        ("2024-05-01 10:00:00+07:00", T0),
        (" 2024-05-01T03:00:00Z ", T0),
        ("2024-05-01T03:00:00.250Z", T0 + timedelta(milliseconds=250)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_message_time_forms(time: Any, expected: datetime) -> None:
    parsed = parse(
        {"station": "A", "time": time, "readings": [{"param": "P", "value": 1, "unit": "u"}]}
    )
    assert parsed.problems == []
    assert parsed.time == expected
    assert parsed.time.tzinfo is UTC
    assert parsed.readings[0].time == expected


def test_naive_time_is_time_no_offset() -> None:
    parsed = parse(
        {
            "station": "A",
            "time": "2024-05-01T10:00:00",
            "readings": [{"param": "P", "value": 1, "unit": "u"}],
        }
    )
    assert parsed.time is None
    assert reasons(parsed) == [
        (Reason.TIME_NO_OFFSET, "time"),
        (Reason.TIME_INVALID, "readings[0].time"),
    ]
    assert parsed.problems[0].value == "2024-05-01T10:00:00"
    assert "offset" in parsed.problems[0].detail
    assert parsed.problems[1].detail == "no valid time in the reading or the message"
    assert parsed.readings == []


def test_naive_time_with_per_reading_times_keeps_readings() -> None:
    parsed = parse(
        {
            "station": "A",
            "time": "2024-05-01T10:00:00",
            "readings": [
                {"param": "P", "value": 1, "unit": "u", "time": "2024-05-01T03:00:00Z"},
                {"param": "Q", "value": 2, "unit": "u"},
            ],
        }
    )
    assert reasons(parsed) == [
        (Reason.TIME_NO_OFFSET, "time"),
        (Reason.TIME_INVALID, "readings[1].time"),
    ]
    assert [(r.param, r.time) for r in parsed.readings] == [("P", T0)]


@pytest.mark.parametrize(
    ("time", "reason"),
    [
        ("yesterday", Reason.TIME_INVALID),
        ("2024-13-01T00:00:00Z", Reason.TIME_INVALID),
        ("2024-05-01T10:00:00", Reason.TIME_NO_OFFSET),
        (True, Reason.TIME_INVALID),
        ([1], Reason.TIME_INVALID),
        ({"t": 1}, Reason.TIME_INVALID),
        (1e300, Reason.TIME_INVALID),
        (-1e20, Reason.TIME_INVALID),
    ],
)
def test_per_reading_time_problems(time: Any, reason: Reason) -> None:
    parsed = parse(
        {
            "station": "A",
            "time": "2024-05-01T03:00:00Z",
            "readings": [
                {"param": "P", "value": 1, "unit": "u", "time": time},
                {"param": "Q", "value": 2, "unit": "u"},
            ],
        }
    )
    assert reasons(parsed) == [(reason, "readings[0].time")]
    assert parsed.problems[0].detail
    assert [r.param for r in parsed.readings] == ["Q"]


def test_per_reading_time_null_uses_message_time() -> None:
    parsed = parse(
        {
            "station": "A",
            "time": "2024-05-01T03:00:00Z",
            "readings": [{"param": "P", "value": 1, "unit": "u", "time": None}],
        }
    )
    assert parsed.problems == []
    assert parsed.readings[0].time == T0


def test_missing_message_time_with_per_reading_times() -> None:
    parsed = parse(
        {
            "station": "A",
            "readings": [
                {"param": "P", "value": 1, "unit": "u", "time": 1714532400000},
                {"param": "Q", "value": 2, "unit": "u", "time": "2024-05-01T10:00:00+07:00"},
            ],
        }
    )
    assert parsed.problems == []
    assert parsed.time is None
    assert [r.time for r in parsed.readings] == [T0, T0]


def test_missing_message_time_without_per_reading_times() -> None:
    parsed = parse({"station": "A", "readings": [{"param": "P", "value": 1, "unit": "u"}]})
    assert reasons(parsed) == [(Reason.TIME_INVALID, "readings[0].time")]
    assert parsed.problems[0].value == ""
    assert parsed.readings == []


@pytest.mark.parametrize("version", [2, 0, "1", None, 1.5])
def test_other_versions_rejected(version: Any) -> None:
    parsed = parse(
        {
            "v": version,
            "station": "A",
            "time": 0,
            "readings": [{"param": "P", "value": 1, "unit": "u"}],
        }
    )
    assert reasons(parsed) == [(Reason.PAYLOAD_SCHEMA, "v")]
    assert parsed.problems[0].value == str(version)
    assert parsed.problems[0].detail == "unsupported payload version (this server speaks v1)"
    assert parsed.readings == []
    assert parsed.station is None


def test_version_true_rejected() -> None:
    parsed = parse(
        {
            "v": True,
            "station": "A",
            "time": 0,
            "readings": [{"param": "P", "value": 1, "unit": "u"}],
        }
    )
    assert reasons(parsed) == [(Reason.PAYLOAD_SCHEMA, "v")]


@pytest.mark.parametrize("doc", ["[1, 2]", "[]", '"text"', "42", "null", "true", "[{}]"])
def test_non_object_json(doc: str) -> None:
    parsed = parse(doc)
    assert parsed.format in ("json", "tt10")
    if doc.lstrip().startswith(("[", "{")):
        assert parsed.format == "json"
        assert reasons(parsed) == [(Reason.PAYLOAD_SCHEMA, "payload")]
        assert parsed.problems[0].detail == "payload must be a JSON object"
    else:
        # Does not start with { or [: read as TT10 text, which it is not.
        assert parsed.format == "tt10"
        assert reasons(parsed) == [(Reason.LINE_SYNTAX, "line 1")]


@pytest.mark.parametrize("raw", [b"", b"   ", b"\r\n\t \n"])
def test_empty_payload(raw: bytes) -> None:
    parsed = parse(raw)
    assert parsed.format == "unknown"
    assert reasons(parsed) == [(Reason.PAYLOAD_EMPTY, "payload")]
    assert parsed.problems[0].detail == "payload is empty"


def test_bom_and_a_blank_line_is_an_empty_payload() -> None:
    parsed = parse("\ufeff\r\n")
    assert reasons(parsed) == [(Reason.PAYLOAD_EMPTY, "payload")]
    assert parsed.problems[0].detail == "payload is empty"


def test_non_utf8() -> None:
    parsed = parse(b'{"station": "\xff\xfe"}')
    assert parsed.format == "unknown"
    assert reasons(parsed) == [(Reason.PAYLOAD_ENCODING, "payload")]
    assert parsed.problems[0].detail == "payload is not UTF-8 (invalid start byte at byte 13)"
    assert parsed.problems[0].value == '{"station": "\\xff\\xfe"}'  # visible, not U+FFFD


def test_payload_too_large() -> None:
    raw = b"x" * 101
    parsed = parse(raw, max_bytes=100)
    assert parsed.format == "unknown"
    assert reasons(parsed) == [(Reason.PAYLOAD_TOO_LARGE, "payload")]
    assert parsed.problems[0].value == "101 bytes"
    assert parsed.problems[0].detail == "payload larger than 100 bytes"


def test_payload_exactly_max_bytes_is_parsed() -> None:
    raw = json.dumps(
        {"station": "A", "time": 0, "readings": [{"param": "P", "value": 1, "unit": "u"}]}
    ).encode()
    parsed = parse(raw, max_bytes=len(raw))
    assert parsed.problems == []
    assert len(parsed.readings) == 1


def test_invalid_json_syntax() -> None:
    parsed = parse('{"station": "A",')
    assert parsed.format == "json"
    assert reasons(parsed) == [(Reason.PAYLOAD_SYNTAX, "payload")]
    assert parsed.problems[0].detail.startswith("invalid JSON: ")
    assert parsed.problems[0].value == '{"station": "A",'


@pytest.mark.parametrize("station", [None, "", 5, ["A"], True])
def test_station_must_be_non_empty_string(station: Any) -> None:
    doc: dict[str, Any] = {"time": 0, "readings": [{"param": "P", "value": 1, "unit": "u"}]}
    if station is not None:
        doc["station"] = station
    parsed = parse(doc)
    assert reasons(parsed) == [(Reason.PAYLOAD_SCHEMA, "station")]
    assert parsed.problems[0].value == repr(station)
    assert parsed.station is None
    assert parsed.readings == []


@pytest.mark.parametrize("seq", ["1", 1.5, True, [1], {"n": 1}])
def test_seq_not_int(seq: Any) -> None:
    parsed = parse(
        {
            "station": "A",
            "seq": seq,
            "time": 0,
            "readings": [{"param": "P", "value": 1, "unit": "u"}],
        }
    )
    assert reasons(parsed) == [(Reason.PAYLOAD_SCHEMA, "seq")]
    assert parsed.problems[0].detail == "seq must be an integer"
    assert parsed.seq is None
    assert parsed.readings == []


def test_seq_null_and_zero_and_negative() -> None:
    base = {"station": "A", "time": 0, "readings": [{"param": "P", "value": 1, "unit": "u"}]}
    assert parse({**base, "seq": None}).seq is None
    assert parse({**base, "seq": 0}).seq == 0
    assert parse({**base, "seq": -7}).seq == -7


@pytest.mark.parametrize("readings", [None, [], {}, "x", 1, {"param": "P"}])
def test_readings_not_a_non_empty_list(readings: Any) -> None:
    doc: dict[str, Any] = {"station": "A", "time": 0}
    if readings is not None:
        doc["readings"] = readings
    parsed = parse(doc)
    assert reasons(parsed) == [(Reason.PAYLOAD_SCHEMA, "readings")]
    assert parsed.problems[0].detail == "readings must be a non-empty array"
    assert parsed.problems[0].value == repr(readings)
    assert parsed.station == "A"


def test_reading_not_an_object_and_others_kept() -> None:
    parsed = parse(
        {
            "station": "A",
            "time": 0,
            "readings": [1, {"param": "P", "value": 1, "unit": "u"}, ["x"], None],
        }
    )
    assert reasons(parsed) == [
        (Reason.PAYLOAD_SCHEMA, "readings[0]"),
        (Reason.PAYLOAD_SCHEMA, "readings[2]"),
        (Reason.PAYLOAD_SCHEMA, "readings[3]"),
    ]
    assert [p.value for p in parsed.problems] == ["1", "['x']", "None"]
    assert [r.field for r in parsed.readings] == ["readings[1]"]


@pytest.mark.parametrize("param", [None, "", 3, ["P"]])
def test_param_missing_or_not_string(param: Any) -> None:
    item: dict[str, Any] = {"value": 1, "unit": "u"}
    if param is not None:
        item["param"] = param
    parsed = parse({"station": "A", "time": 0, "readings": [item]})
    assert reasons(parsed) == [(Reason.PAYLOAD_SCHEMA, "readings[0].param")]
    assert parsed.problems[0].detail == "param must be a non-empty string"
    assert parsed.readings == []


@pytest.mark.parametrize("unit", [None, 1, ["u"]])
def test_unit_not_string(unit: Any) -> None:
    item: dict[str, Any] = {"param": "P", "value": 1}
    if unit is not None:
        item["unit"] = unit
    parsed = parse({"station": "A", "time": 0, "readings": [item]})
    assert reasons(parsed) == [(Reason.PAYLOAD_SCHEMA, "readings[0].unit")]
    assert parsed.problems[0].detail == "unit must be a string"


def test_empty_unit_string_is_accepted_syntactically() -> None:
    parsed = parse(
        {"station": "A", "time": 0, "readings": [{"param": "pH", "value": 7, "unit": ""}]}
    )
    assert parsed.problems == []
    assert parsed.readings[0].unit == ""


def test_tt10_detection() -> None:
    text = "COD\t10\tmg/L\t20240501100000\t00\r\nTSS 5,5 mg/L 20240501100000 00\r\n"
    parsed = parse(text)
    assert parsed.format == "tt10"
    assert parsed.problems == []
    assert (parsed.station, parsed.seq, parsed.time) == (None, None, None)
    assert [(r.param, r.value, r.time) for r in parsed.readings] == [
        ("COD", 10.0, T0),
        ("TSS", 5.5, T0),
    ]
    assert parse('  \n {"station": "A"}').format == "json"
    assert parse("[1]").format == "json"


def test_excerpt() -> None:
    assert excerpt("abc") == "abc"
    assert excerpt("x" * 200) == "x" * 200
    assert excerpt("x" * 201) == "x" * 200 + "…"
    assert excerpt(b"\xffa", limit=5) == "\\xffa"  # undecodable bytes shown, not lost


def test_problem_values_are_excerpted() -> None:
    parsed = parse({"station": "A", "time": 0, "readings": [{"param": "P" * 500}, "y" * 500]})
    assert parsed.problems[0].field == "readings[0].unit"
    assert parsed.problems[1].value == repr("y" * 500)[:200] + "…"


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_out_of_range_iso_time_is_time_invalid(time: str) -> None:
    parsed = parse(
        {"station": "A", "time": time, "readings": [{"param": "P", "value": 1, "unit": "u"}]}
    )
    assert reasons(parsed)[0] == (Reason.TIME_INVALID, "time")


def test_deeply_nested_json_is_a_problem_not_a_crash() -> None:
    parsed = parse(b"[" * 5000 + b"]" * 5000)
    assert [p.reason for p in parsed.problems] == [Reason.PAYLOAD_SYNTAX]


def test_tt10_payload_early_year_in_range() -> None:
    parsed = parse("COD\t1\tmg/L\t00020101000000\t00")
    assert parsed.problems == []
    assert parsed.readings[0].time == datetime(1, 12, 31, 17, tzinfo=UTC)


# --- hypothesis: never raises --------------------------------------------------------------------


def check_problems(parsed: ParsedPayload) -> None:
    assert isinstance(parsed, ParsedPayload)
    assert parsed.format in ("json", "tt10", "unknown")
    for p in parsed.problems:
        assert isinstance(p.reason, Reason)
        assert isinstance(p.detail, str) and p.detail
        assert isinstance(p.field, str) and p.field
        assert isinstance(p.value, str)
    for r in parsed.readings:
        assert isinstance(r.time, datetime) and r.time.tzinfo is UTC
        assert isinstance(r.param, str) and r.param
        assert isinstance(r.unit, str)


@given(st.binary(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_parse_payload_never_raises_for_bytes(raw: bytes) -> None:
    check_problems(parse_payload(raw, max_bytes=1000, local=VN))


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@given(JSON_VALUES)
@settings(max_examples=300, deadline=None)
def test_parse_payload_never_raises_for_any_json(value: Any) -> None:
    check_problems(parse(json.dumps(value)))


OFFSETS = st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23)),
)
# Times over datetime's whole range, including the edges where a UTC offset overflows.
TIMES = st.one_of(
    JSON_VALUES,
    st.integers(min_value=-(10**20), max_value=10**20),
    st.datetimes(timezones=OFFSETS).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["2024-05-01T03:00:00Z", "2024-05-01T03:00:00", "", "Z"]),
)
READING_SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "param": st.one_of(st.sampled_from(["PM10", "PM2.5", "", "COD"]), JSON_VALUES),
        "value": st.one_of(st.floats(allow_nan=False), JSON_VALUES),
        "unit": st.one_of(st.sampled_from(["ug/m3", "mg/m3", ""]), JSON_VALUES),
        "status": st.one_of(st.sampled_from(["00", "01", "02", "03"]), JSON_VALUES),
        "time": TIMES,
    },
)
PAYLOAD_SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(1), JSON_VALUES),
        "station": st.one_of(st.sampled_from(["AIR1", "WW1", ""]), JSON_VALUES),
        "seq": st.one_of(st.integers(), JSON_VALUES),
        "time": TIMES,
        "readings": st.one_of(st.lists(st.one_of(READING_SHAPED, JSON_VALUES)), JSON_VALUES),
    },
)


@given(PAYLOAD_SHAPED)
@settings(max_examples=300, deadline=None)
def test_parse_payload_never_raises_for_v1_shaped(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc, allow_nan=True)
    parsed = parse(raw)
    check_problems(parsed)
    assert parsed.format == "json"
    # Every reading in a well-formed list becomes exactly one reading or one problem.
    readings = doc.get("readings")
    valid_json = "Infinity" not in raw and "NaN" not in raw  # else one payload_syntax problem
    if (
        valid_json
        and doc.get("v", 1) == 1
        and not isinstance(doc.get("v"), bool)
        and isinstance(doc.get("station"), str)
        and doc["station"]
        and (
            doc.get("seq") is None
            # a seq beyond a signed 64-bit integer rejects the whole message (payload_schema)
            or (type(doc.get("seq")) is int and -(2**63) <= doc["seq"] < 2**63)
        )
        and isinstance(readings, list)
        and readings
    ):
        message_time_problem = any(p.field == "time" for p in parsed.problems)
        assert len(parsed.readings) + len(parsed.problems) - message_time_problem == len(readings)
    for r in parsed.readings:
        assert not (isinstance(r.value, float) and math.isnan(r.value))


def test_a_utf8_byte_order_mark_is_ignored_for_json_and_text() -> None:
    body = {
        "station": "AIR1",
        "time": "2026-11-01T08:05:00+07:00",
        "readings": [{"param": "NO2", "value": 41.5, "unit": "µg/m3"}],
    }
    bom = b"\xef\xbb\xbf"
    as_json = parse(bom + json.dumps(body).encode())
    assert as_json.format == "json" and not as_json.problems
    assert [r.value for r in as_json.readings] == [41.5]
    as_text = parse(bom + b"NO2\t41,5\tug/m3\t20261101080500\t00\r\n")
    assert as_text.format == "tt10" and not as_text.problems
    assert [r.param for r in as_text.readings] == ["NO2"]
    only_bom = parse(bom)
    assert [p.reason for p in only_bom.problems] == [Reason.PAYLOAD_EMPTY]


BODY = {
    "station": "AIR1",
    "time": "2026-11-01T08:05:00+07:00",
    "readings": [{"param": "NO2", "value": 41.5, "unit": "µg/m3"}],
}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-32-be"])
def test_utf16_and_utf32_with_a_byte_order_mark_are_decoded(encoding: str) -> None:
    text = json.dumps(BODY, ensure_ascii=False)
    raw = text.encode(encoding)
    if encoding.endswith("-be"):
        raw = ("\ufeff" + text).encode(encoding)
    parsed = parse(raw)
    assert parsed.format == "json" and not parsed.problems
    assert [(r.param, r.value, r.unit) for r in parsed.readings] == [("NO2", 41.5, "µg/m3")]
    tt10 = parse("\ufeffNO2\t41,5\tug/m3\t20261101080500\t00\r\n".encode(encoding))
    assert tt10.format == "tt10" and not tt10.problems


def test_utf16_without_a_byte_order_mark_is_a_payload_encoding_problem() -> None:
    parsed = parse(json.dumps(BODY).encode("utf-16-le"))
    assert reasons(parsed) == [(Reason.PAYLOAD_ENCODING, "payload")]
    assert "UTF-16" in parsed.problems[0].detail
    assert parsed.problems[0].value.startswith('{\x00"\x00s')  # escaped when stored


def test_broken_utf16_after_its_mark_is_a_payload_encoding_problem() -> None:
    parsed = parse(b"\xff\xfe{\x00\x00\xd8")  # a lone high surrogate
    assert reasons(parsed) == [(Reason.PAYLOAD_ENCODING, "payload")]
    assert parsed.problems[0].detail.startswith("payload is not UTF-16-LE")


@pytest.mark.parametrize(
    "seq", [str(2**63), str(-(2**63) - 1), str(2**64 + 1), "9" * 400], ids=["+", "-", "u64", "400"]
)
def test_seq_that_does_not_fit_64_bits_is_a_schema_problem(seq: str) -> None:
    raw = json.dumps(BODY)[:-1].encode() + b', "seq": ' + seq.encode() + b"}"
    parsed = parse(raw)
    assert reasons(parsed) == [(Reason.PAYLOAD_SCHEMA, "seq")]
    assert parsed.seq is None and not parsed.readings
    assert "64-bit" in parsed.problems[0].detail


@pytest.mark.parametrize("seq", [2**63 - 1, -(2**63)])
def test_seq_at_the_64_bit_limits_is_kept(seq: int) -> None:
    parsed = parse({**BODY, "seq": seq})
    assert parsed.seq == seq and not parsed.problems


def test_integers_beyond_any_double_or_printable_length_are_problems_not_crashes() -> None:
    huge = "9" * 5000
    for raw in (
        f'{{"station": "AIR1", "time": {huge}, "readings": [{{"param": "NO2", "value": 1,'
        ' "unit": "ug/m3"}]}',
        f'{{"station": "AIR1", "time": "2026-11-01T08:05:00+07:00", "readings": [{huge}]}}',
        f'{{"station": {huge}, "readings": []}}',
    ):
        parsed = parse(raw)
        assert parsed.problems and all(p.value for p in parsed.problems)
        assert all(len(p.value) < 300 for p in parsed.problems)
