"""Unit tests of quantrac.ingest.validation against the test registry (AIR1, WW1), the catalog."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantrac.core.catalog import Catalog
from quantrac.core.contract import ParsedPayload, RawReading, Reason, Status
from quantrac.core.registry import Registry
from quantrac.core.time import VIETNAM
from quantrac.ingest.payloads import parse_payload
from quantrac.ingest.validation import TimeLimits, Validated, resolve_station, validate

NOW = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
NOW_MS = 1714532400000
LIMITS = TimeLimits(future_margin=timedelta(seconds=300), retention=timedelta(days=730))


def raw(
    param: str = "PM10", value: Any = 10.0, unit: Any = "µg/m3", status: Any = "00", **kw: Any
) -> RawReading:
    return RawReading(
        param=param,
        value=value,
        unit=unit,
        status=status,
        time=kw.get("time", NOW),
        field=kw.get("field", "readings[0]"),
    )


def run(
    registry: Registry,
    catalog: Catalog,
    *readings: RawReading,
    station: str | None = "AIR1",
    topic: str | None = None,
    now: datetime = NOW,
    problems: list[Any] | None = None,
) -> Validated:
    parsed = ParsedPayload(
        format="json",
        station=station,
        seq=None,
        time=None,
        readings=list(readings),
        problems=list(problems or []),
    )
    return validate(
        parsed, topic_station=topic, registry=registry, catalog=catalog, now=now, limits=LIMITS
    )


def only_problem(result: Validated) -> tuple[Reason, str, str]:
    assert result.readings == []
    assert len(result.problems) == 1
    p = result.problems[0]
    assert p.detail
    return (p.reason, p.field, p.value)


def test_good_reading(registry: Registry, catalog: Catalog) -> None:
    result = run(registry, catalog, raw())
    assert result.problems == []
    assert result.duplicates == 0
    assert result.station is registry.get("AIR1")
    (r,) = result.readings
    assert (r.station_id, r.param, r.measured_at, r.value, r.status) == (
        "AIR1",
        "PM10",
        NOW,
        10.0,
        Status.MEASURING,
    )
    assert r.key == ("AIR1", "PM10", NOW)


def test_alias_and_unit_conversion(registry: Registry, catalog: Catalog) -> None:
    result = run(
        registry,
        catalog,
        raw("PM2.5", 0.035, "mg/m3"),
        raw("pm10", 2, "mg/m³", "01", time=NOW - timedelta(minutes=5)),
        raw("Temperature", 25, "oC", "02"),
    )
    assert result.problems == []
    assert [(r.param, r.value, r.status) for r in result.readings] == [
        ("PM2,5", 0.035 * 1000.0, Status.MEASURING),
        ("PM10", 2000.0, Status.CALIBRATING),
        ("Temp", 25.0, Status.FAULT),
    ]
    assert all(isinstance(r.value, float) for r in result.readings)


def test_flow_conversion_to_declared_unit(registry: Registry, catalog: Catalog) -> None:
    result = run(
        registry,
        catalog,
        raw("Flow", 2, "m3/s"),
        raw("Flow", 10, "L/s", time=NOW - timedelta(minutes=5)),
        station="WW1",
    )
    assert result.problems == []
    assert [r.value for r in result.readings] == [7200.0, 36.0]


def test_station_unknown(registry: Registry, catalog: Catalog) -> None:
    result = run(registry, catalog, raw(), station="NOPE")
    assert only_problem(result) == (Reason.STATION_UNKNOWN, "station", "NOPE")
    assert result.station is None


def test_station_mismatch(registry: Registry, catalog: Catalog) -> None:
    result = run(registry, catalog, raw(), station="AIR1", topic="WW1")
    assert only_problem(result) == (Reason.STATION_MISMATCH, "station", "AIR1")
    assert "WW1" in result.problems[0].detail


def test_station_from_topic_when_payload_has_none(registry: Registry, catalog: Catalog) -> None:
    result = run(registry, catalog, raw("COD", 5, "mg/L"), station=None, topic="WW1")
    assert result.problems == []
    assert result.readings[0].station_id == "WW1"


def test_no_station_anywhere(registry: Registry, catalog: Catalog) -> None:
    result = run(registry, catalog, raw(), station=None, topic=None)
    assert only_problem(result) == (Reason.PAYLOAD_SCHEMA, "station", "")


def test_resolve_station_same_name_ok(registry: Registry) -> None:
    parsed = ParsedPayload(format="json", station="AIR1", seq=None, time=None)
    station, problem = resolve_station(parsed, "AIR1", registry)
    assert problem is None
    assert station is not None and station.id == "AIR1"


@pytest.mark.parametrize("param", ["PM2", "CODx", "Ozone?"])
def test_param_unknown(registry: Registry, catalog: Catalog, param: str) -> None:
    assert only_problem(run(registry, catalog, raw(param))) == (
        Reason.PARAM_UNKNOWN,
        "readings[0].param",
        param,
    )


def test_param_not_declared(registry: Registry, catalog: Catalog) -> None:
    result = run(registry, catalog, raw("SO2"))
    assert only_problem(result) == (Reason.PARAM_NOT_DECLARED, "readings[0].param", "SO2")
    assert result.problems[0].detail == ("SO2 is not declared for station AIR1 in the registry")


@pytest.mark.parametrize("unit", ["ppm", "g/m3", 5, None])
def test_unit_unknown(registry: Registry, catalog: Catalog, unit: Any) -> None:
    expected = unit if isinstance(unit, str) else repr(unit)
    assert only_problem(run(registry, catalog, raw(unit=unit))) == (
        Reason.UNIT_UNKNOWN,
        "readings[0].unit",
        expected,
    )


@pytest.mark.parametrize("unit", ["mg/Nm3", "mg/L", "°C"])
def test_unit_mismatch(registry: Registry, catalog: Catalog, unit: str) -> None:
    result = run(registry, catalog, raw(unit=unit))
    assert only_problem(result) == (Reason.UNIT_MISMATCH, "readings[0].unit", unit)
    assert "PM10 is declared in µg/m3" in result.problems[0].detail


@pytest.mark.parametrize(
    ("value", "shown"),
    [(True, "True"), (False, "False"), ("12", "12"), (None, "None"), ([1], "[1]"), ({}, "{}")],
)
def test_value_not_number(registry: Registry, catalog: Catalog, value: Any, shown: str) -> None:
    assert only_problem(run(registry, catalog, raw(value=value))) == (
        Reason.VALUE_NOT_NUMBER,
        "readings[0].value",
        shown,
    )


@pytest.mark.parametrize(("value", "shown"), [(float("inf"), "inf"), (float("-inf"), "-inf")])
def test_value_not_finite(registry: Registry, catalog: Catalog, value: float, shown: str) -> None:
    assert only_problem(run(registry, catalog, raw(value=value))) == (
        Reason.VALUE_NOT_FINITE,
        "readings[0].value",
        shown,
    )


def test_nan_through_tt10_text(registry: Registry, catalog: Catalog) -> None:
    parsed = parse_payload(
        b"COD\tnan\tmg/L\t20240501100000\t00\r\nTSS\t-inf\tmg/L\t20240501100000\t00\r\n"
        b"pH\t7,1\tpH\t20240501100000\t00\r\n",
        max_bytes=10_000,
        local=VIETNAM,
    )
    result = validate(
        parsed, topic_station="WW1", registry=registry, catalog=catalog, now=NOW, limits=LIMITS
    )
    assert [(p.reason, p.field, p.value) for p in result.problems] == [
        (Reason.VALUE_NOT_FINITE, "line 1.value", "nan"),
        (Reason.VALUE_NOT_FINITE, "line 2.value", "-inf"),
    ]
    assert [(r.station_id, r.param, r.value, r.measured_at) for r in result.readings] == [
        ("WW1", "pH", 7.1, NOW)
    ]


@pytest.mark.parametrize("status", ["03", "0", "", 0, None, "00 "])
def test_status_invalid(registry: Registry, catalog: Catalog, status: Any) -> None:
    reason, field, _ = only_problem(run(registry, catalog, raw(status=status)))
    assert (reason, field) == (Reason.STATUS_INVALID, "readings[0].status")


def test_time_not_datetime(registry: Registry, catalog: Catalog) -> None:
    assert only_problem(run(registry, catalog, raw(time="2024"))) == (
        Reason.TIME_INVALID,
        "readings[0].time",
        "2024",
    )


def test_future_margin_boundary(registry: Registry, catalog: Catalog) -> None:
    at_margin = NOW + LIMITS.future_margin
    assert run(registry, catalog, raw(time=at_margin)).problems == []
    late = at_margin + timedelta(seconds=1)
    result = run(registry, catalog, raw(time=late))
    assert only_problem(result) == (Reason.TIME_IN_FUTURE, "readings[0].time", late.isoformat())
    assert result.problems[0].detail.startswith("more than 300 s ahead of the server clock")


def test_retention_boundary(registry: Registry, catalog: Catalog) -> None:
    oldest = NOW - LIMITS.retention
    assert run(registry, catalog, raw(time=oldest)).problems == []
    too_old = oldest - timedelta(seconds=1)
    result = run(registry, catalog, raw(time=too_old))
    assert only_problem(result) == (Reason.TIME_TOO_OLD, "readings[0].time", too_old.isoformat())
    assert result.problems[0].detail == "older than the retention of 730 days"


def test_identical_duplicate_counted_not_a_problem(registry: Registry, catalog: Catalog) -> None:
    result = run(
        registry,
        catalog,
        raw(value=10.0, field="readings[0]"),
        raw(value=0.01, unit="mg/m3", field="readings[1]"),  # same value after conversion
        raw("pm10", value=10, field="readings[2]"),
    )
    assert result.problems == []
    assert result.duplicates == 2
    assert [r.value for r in result.readings] == [10.0]


def test_different_duplicate_is_a_problem_first_kept(registry: Registry, catalog: Catalog) -> None:
    result = run(
        registry,
        catalog,
        raw(value=10.0, field="readings[0]"),
        raw(value=11.0, field="readings[1]"),
        raw(value=10.0, status="01", field="readings[2]"),
    )
    assert [(p.reason, p.field, p.value) for p in result.problems] == [
        (Reason.DUPLICATE_IN_MESSAGE, "readings[1]", "11.0"),
        (Reason.DUPLICATE_IN_MESSAGE, "readings[2]", "10.0"),
    ]
    assert "the first one was kept" in result.problems[0].detail
    assert result.duplicates == 0
    assert [(r.value, r.status) for r in result.readings] == [(10.0, Status.MEASURING)]


def test_rejected_first_reading_does_not_block_a_later_one(
    registry: Registry, catalog: Catalog
) -> None:
    result = run(
        registry, catalog, raw(value="x", field="readings[0]"), raw(value=3, field="readings[1]")
    )
    assert [p.reason for p in result.problems] == [Reason.VALUE_NOT_NUMBER]
    assert [r.value for r in result.readings] == [3.0]


def test_good_readings_kept_when_others_rejected(registry: Registry, catalog: Catalog) -> None:
    t = NOW - timedelta(minutes=10)
    result = run(
        registry,
        catalog,
        raw("PM10", 1, field="readings[0]", time=t),
        raw("SO2", 1, field="readings[1]", time=t),
        raw("NO2", 2, field="readings[2]", time=t),
        raw("Temp", 1, "mg/L", field="readings[3]", time=t),
        raw("PM2,5", 3, field="readings[4]", time=t),
        problems=[],
    )
    assert [(p.reason, p.field) for p in result.problems] == [
        (Reason.PARAM_NOT_DECLARED, "readings[1].param"),
        (Reason.UNIT_MISMATCH, "readings[3].unit"),
    ]
    assert [(r.param, r.value) for r in result.readings] == [
        ("PM10", 1.0),
        ("NO2", 2.0),
        ("PM2,5", 3.0),
    ]


def test_parse_problems_are_carried_over(registry: Registry, catalog: Catalog) -> None:
    parsed = parse_payload(
        json.dumps(
            {
                "station": "AIR1",
                "time": "2024-05-01T03:00:00Z",
                "readings": [{"param": "PM10", "value": 4, "unit": "ug/m3"}, 7],
            }
        ).encode(),
        max_bytes=10_000,
        local=VIETNAM,
    )
    result = validate(
        parsed, topic_station="AIR1", registry=registry, catalog=catalog, now=NOW, limits=LIMITS
    )
    assert [(p.reason, p.field) for p in result.problems] == [
        (Reason.PAYLOAD_SCHEMA, "readings[1]")
    ]
    assert [r.value for r in result.readings] == [4.0]


def test_no_readings_and_no_problems_is_payload_empty(registry: Registry, catalog: Catalog) -> None:
    result = run(registry, catalog)
    assert [(p.reason, p.field) for p in result.problems] == [(Reason.PAYLOAD_EMPTY, "readings")]
    assert result.station is registry.get("AIR1")


def test_no_readings_keeps_parse_problems_only(registry: Registry, catalog: Catalog) -> None:
    parsed = parse_payload(b"{", max_bytes=100, local=VIETNAM)
    result = validate(
        parsed, topic_station="WW1", registry=registry, catalog=catalog, now=NOW, limits=LIMITS
    )
    assert [p.reason for p in result.problems] == [Reason.PAYLOAD_SYNTAX]
    assert result.station is registry.get("WW1")


def test_huge_integer_value_is_a_problem(registry: Registry, catalog: Catalog) -> None:
    result = run(registry, catalog, raw(value=10**400))
    assert [p.reason for p in result.problems] == [Reason.VALUE_NOT_FINITE]


def test_conversion_overflow_is_not_stored_as_inf(registry: Registry, catalog: Catalog) -> None:
    result = run(registry, catalog, raw(value=1e306, unit="mg/m3"))
    assert result.readings == []
    assert [p.reason for p in result.problems] == [Reason.VALUE_NOT_FINITE]


# --- hypothesis: valid generated v1 payloads are accepted ------------------------------------

UNITS = {
    "PM2,5": {"µg/m3": 1.0, "ug/m3": 1.0, "μg/m3": 1.0, "µg/m³": 1.0, "mg/m3": 1000.0},
    "PM10": {"µg/m3": 1.0, "ug/m3": 1.0, "mg/m3": 1000.0, "mg/m³": 1000.0},
    "NO2": {"µg/m3": 1.0, "ug/m^3": 1.0, "mg/m3": 1000.0},
    "Temp": {"°C": 1.0, "oC": 1.0, "degC": 1.0, "℃": 1.0},
}
PARAM_NAMES = {
    "PM2,5": ["PM2,5", "PM2.5", "PM25", "pm2_5", "PM 2.5"],
    "PM10": ["PM10", "pm10", "PM_10"],
    "NO2": ["NO2", "no2"],
    "Temp": ["Temp", "Temperature", "Nhiệt độ"],
}


@st.composite
def valid_payloads(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[str, float, datetime]]]:
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(sorted(UNITS)), st.integers(0, 86_400_000)),
            min_size=1,
            max_size=12,
            unique=True,
        )
    )
    readings = []
    expected = []
    for code, ms_ago in keys:
        moment = NOW - timedelta(milliseconds=ms_ago)
        unit = draw(st.sampled_from(sorted(UNITS[code])))
        value = draw(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False))
        form = draw(st.sampled_from(["iso_z", "iso_local", "epoch"]))
        if form == "iso_z":
            time: Any = moment.isoformat().replace("+00:00", "Z")
        elif form == "iso_local":
            time = moment.astimezone(VIETNAM).isoformat()
        else:
            time = NOW_MS - ms_ago
        item = {
            "param": draw(st.sampled_from(PARAM_NAMES[code])),
            "value": value,
            "unit": unit,
            "status": draw(st.sampled_from(["00", "01", "02"])),
            "time": time,
        }
        readings.append(item)
        expected.append((code, value * UNITS[code][unit], moment))
    doc = {
        "v": 1,
        "station": "AIR1",
        "seq": draw(st.integers(0, 2**31)),
        "time": NOW.isoformat(),
        "readings": readings,
    }
    return doc, expected


@given(valid_payloads())
@settings(max_examples=200, deadline=None)
def test_valid_payloads_are_accepted(
    registry: Registry, catalog: Catalog, case: tuple[dict[str, Any], list[Any]]
) -> None:
    doc, expected = case
    parsed = parse_payload(json.dumps(doc).encode(), max_bytes=1 << 20, local=VIETNAM)
    assert parsed.problems == []
    result = validate(
        parsed, topic_station="AIR1", registry=registry, catalog=catalog, now=NOW, limits=LIMITS
    )
    assert result.problems == []
    assert result.duplicates == 0
    assert [(r.param, r.value, r.measured_at) for r in result.readings] == expected
    assert [r.status.code for r in result.readings] == [item["status"] for item in doc["readings"]]


# --- what the station is told (issue 13, item 8) ----------------------------------------------


def test_an_unknown_unit_names_the_registered_unit(registry: Registry, catalog: Catalog) -> None:
    result = run(registry, catalog, raw(unit="microgram"))
    (problem,) = result.problems
    body = problem.to_json()
    assert "registered in µg/m3" in body["detail"] and 'write "µg/m3"' in body["detail"]
    assert body["detail_vi"] == (
        "Đơn vị microgram không nhận biết được; PM10 đã đăng ký với đơn vị µg/m3, ghi đúng «µg/m3»."
    )


def test_one_bad_field_is_one_problem(registry: Registry, catalog: Catalog) -> None:
    # A wrong unit and a value that is no number: the reading is told once, for its unit.
    result = run(registry, catalog, raw(unit="xyz", value="n/a"), raw(param="NO2", value="n/a"))
    assert [(p.reason, p.field) for p in result.problems] == [
        (Reason.UNIT_UNKNOWN, "readings[0].unit"),
        (Reason.VALUE_NOT_NUMBER, "readings[0].value"),
    ]
    assert "12.5" in result.problems[1].to_json()["detail_vi"]  # the expected form


def test_a_clock_exactly_seven_hours_ahead_is_named(registry: Registry, catalog: Catalog) -> None:
    # Local wall time marked as UTC: 7 h in the server's future.
    result = run(registry, catalog, raw(time=NOW + timedelta(hours=7, seconds=20)))
    (problem,) = result.problems
    assert problem.reason is Reason.TIME_IN_FUTURE
    body = problem.to_json()
    assert "exactly 7 h ahead" in body["detail"]
    assert "ghi như giờ UTC: ghi kèm múi giờ +07:00" in body["detail_vi"]
    assert "Local time marked as UTC" in body["detail_en"]
    # Two hours ahead is a clock fault of another kind: no such hint.
    other = run(registry, catalog, raw(time=NOW + timedelta(hours=2))).problems[0].to_json()
    assert "UTC" not in other["detail_vi"] and "7 h" not in other["detail"]


def test_a_logger_on_utc_is_told_though_its_readings_are_stored() -> None:
    from quantrac.core.contract import Reading
    from quantrac.ingest.receiver import clock_notices

    seven_behind = [Reading("AIR1", "PM10", NOW - timedelta(hours=7, minutes=1), 1.0, Status(0))]
    (notice,) = clock_notices(seven_behind, NOW)
    assert notice["rule"] == "clock_utc_offset"
    assert notice["detail_vi"].startswith(
        "Đồng hồ bộ ghi dữ liệu đang để giờ UTC: đặt về giờ Việt Nam (UTC+7)."
    )
    assert notice["detail_en"].startswith("Logger on UTC: set UTC+7")
    assert (
        clock_notices([Reading("AIR1", "PM10", NOW - timedelta(hours=6), 1.0, Status(0))], NOW)
        == []
    )


@pytest.mark.parametrize("status", ["01", "02"])
def test_no_value_with_a_fault_or_calibration_status_is_the_status_alone(
    registry: Registry, catalog: Catalog, status: str
) -> None:
    result = run(registry, catalog, raw(value=None, status=status))
    assert result.problems == []
    [reading] = result.readings
    assert reading.value is None and reading.status.code == status


def test_no_value_with_status_00_is_refused_naming_the_rule(
    registry: Registry, catalog: Catalog
) -> None:
    result = run(registry, catalog, raw(value=None, status="00"))
    assert [p.reason for p in result.problems] == [Reason.VALUE_NOT_NUMBER]
    assert '"01"' in result.problems[0].detail and '"02"' in result.problems[0].detail
