"""Unit tests of quantrac.core.contract (topics, times, feedback) and quantrac.ingest.ratelimit."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from quantrac.core.contract import (
    ACK_TOPIC,
    DATA_TOPIC_FILTER,
    STATUS_BY_CODE,
    Feedback,
    JsonPayload,
    JsonReading,
    NaiveTimeError,
    Problem,
    Reason,
    Status,
    ack_topic,
    data_topic,
    encode_json_payload,
    format_time,
    parse_time,
    shared_subscription,
    station_from_topic,
)
from quantrac.core.i18n import default_messages
from quantrac.ingest.ratelimit import RateLimiter

T0 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)


# --- topics -----------------------------------------------------------------------------------


def test_topics() -> None:
    assert data_topic("AIR1") == "stations/AIR1/data"
    assert ack_topic("AIR1") == "stations/AIR1/ack"
    assert ACK_TOPIC == "stations/{station_id}/ack"
    assert DATA_TOPIC_FILTER == "stations/+/data"


def test_shared_subscription() -> None:
    assert shared_subscription() == "$share/quantrac-ingest/stations/+/data"
    assert shared_subscription("g1") == "$share/g1/stations/+/data"


@pytest.mark.parametrize(
    ("topic", "station"),
    [
        ("stations/AIR1/data", "AIR1"),
        ("stations/BG_WW.01-a/data", "BG_WW.01-a"),
        ("stations//data", None),
        ("stations/AIR1/ack", None),
        ("stations/AIR1/data/extra", None),
        ("station/AIR1/data", None),
        ("/stations/AIR1/data", None),
        ("stations/AIR1", None),
        ("", None),
    ],
)
def test_station_from_topic(topic: str, station: str | None) -> None:
    assert station_from_topic(topic) == station


def test_station_from_topic_round_trip() -> None:
    assert station_from_topic(data_topic("X.1")) == "X.1"


# --- status codes and reasons ------------------------------------------------------------------


def test_status_codes() -> None:
    assert STATUS_BY_CODE == {
        "00": Status.MEASURING,
        "01": Status.CALIBRATING,
        "02": Status.FAULT,
    }
    assert Status.FAULT.code == "02"


def test_reason_values_are_stable() -> None:
    assert Reason.TIME_IN_FUTURE == "time_in_future"
    assert Reason("duplicate_in_message") is Reason.DUPLICATE_IN_MESSAGE
    assert all(r.value == r.name.lower() for r in Reason)


# --- times -----------------------------------------------------------------------------------


def test_parse_time_forms() -> None:
    assert parse_time("2024-05-01T10:00:00+07:00") == T0
    assert parse_time("2024-05-01T03:00:00Z") == T0
    assert parse_time(1714532400000) == T0
    assert parse_time(1714532400000.0) == T0
    assert parse_time("2024-05-01T10:00:00+07:00").tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "exc", "message"),
    [
        ("2024-05-01T10:00:00", NaiveTimeError, "without a UTC offset"),
        ("soon", ValueError, "not an ISO-8601 date-time"),
        (True, ValueError, "ISO-8601 string or epoch milliseconds"),
        (None, ValueError, "ISO-8601 string or epoch milliseconds"),
        (math.inf, ValueError, "epoch milliseconds must be finite"),
        (math.nan, ValueError, "epoch milliseconds must be finite"),
        (10**30, ValueError, "epoch milliseconds out of range"),
    ],
)
def test_parse_time_errors(value: object, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        parse_time(value)


def test_format_time() -> None:
    local = T0.astimezone(timezone(timedelta(hours=7)))
    assert format_time(local) == "2024-05-01T10:00:00+07:00"
    assert parse_time(format_time(local)) == T0
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2024, 5, 1))


def test_encode_json_payload_omits_defaults() -> None:
    payload = JsonPayload(
        station="AIR1",
        time="2024-05-01T10:00:00+07:00",
        readings=[JsonReading(param="PM10", value=1.5, unit="µg/m3")],
    )
    assert json.loads(encode_json_payload(payload)) == {
        "station": "AIR1",
        "time": "2024-05-01T10:00:00+07:00",
        "readings": [{"param": "PM10", "value": 1.5, "unit": "µg/m3"}],
    }


# --- feedback --------------------------------------------------------------------------------

P1 = Problem(Reason.UNIT_UNKNOWN, "readings[1].unit", "ppm", "not a known unit")


def feedback(accepted: int, duplicates: int, problems: list[Problem]) -> Feedback:
    return Feedback(
        station="AIR1",
        seq=7,
        time="2024-05-01T10:00:00+07:00",
        received_at=T0,
        accepted=accepted,
        duplicates=duplicates,
        problems=problems,
    )


@pytest.mark.parametrize(
    ("accepted", "duplicates", "problems", "status"),
    [
        (3, 0, [], "accepted"),
        (0, 0, [], "accepted"),
        (0, 2, [], "accepted"),
        (2, 0, [P1], "partial"),
        (0, 1, [P1], "partial"),
        (0, 0, [P1], "rejected"),
        (0, 0, [P1, P1], "rejected"),
    ],
)
def test_feedback_status(
    accepted: int, duplicates: int, problems: list[Problem], status: str
) -> None:
    assert feedback(accepted, duplicates, problems).status == status


def test_feedback_json() -> None:
    body = json.loads(feedback(2, 1, [P1]).to_json())
    assert body == {
        "station": "AIR1",
        "seq": 7,
        "time": "2024-05-01T10:00:00+07:00",
        "received_at": "2024-05-01T03:00:00+00:00",
        "status": "partial",
        "accepted": 2,
        "duplicates": 1,
        "rejected": 1,
        "problems": [
            {
                "field": "readings[1].unit",
                "value": "ppm",
                "rule": "unit_unknown",
                "detail": "not a known unit",
                # Without the registered unit the translated text cannot be written: the
                # problem's own words stand.
                "detail_vi": "not a known unit",
                "detail_en": "not a known unit",
            }
        ],
    }


def test_feedback_json_nulls_and_source() -> None:
    fb = Feedback("WW1", None, None, T0, 0, 0, [])
    assert fb.source == "mqtt"
    body = json.loads(fb.to_json())
    assert (body["seq"], body["time"], body["status"], body["rejected"], body["problems"]) == (
        None,
        None,
        "accepted",
        0,
        [],
    )


def test_problem_to_json() -> None:
    problem = Problem(
        Reason.UNIT_UNKNOWN,
        "readings[1].unit",
        "ppm",
        "not a known unit",
        {"param": "NO2", "declared": "µg/m3"},
    )
    assert problem.to_json() == {
        "field": "readings[1].unit",
        "value": "ppm",
        "rule": "unit_unknown",
        "detail": "not a known unit",
        "detail_vi": "Đơn vị ppm không nhận biết được; NO2 đã đăng ký với đơn vị µg/m3, "
        "ghi đúng «µg/m3».",
        "detail_en": "Unit ppm is not known; NO2 is registered in µg/m3: write «µg/m3».",
    }


def test_every_rule_has_a_vietnamese_and_an_english_text_for_the_station() -> None:
    table = default_messages()
    missing = [r.value for r in Reason if f"ack.{r.value}" not in table]
    assert missing == []


# --- rate limiter ------------------------------------------------------------------------------


def test_rate_limiter_counts_per_window_of_the_stations_own_time() -> None:
    limiter = RateLimiter(rate=0.05, burst=2.0, window_s=60.0)  # 0.05 × 60 + 2 = 5 per minute
    assert limiter.per_window == 5
    assert [limiter.allow("A", 120.0) for _ in range(6)] == [True] * 5 + [False]
    assert limiter.allow("A", 179.9) is False  # the same minute of sent time
    assert limiter.allow("A", 180.0) is True  # the next one


def test_a_backlog_replayed_at_once_is_never_limited() -> None:
    """3,000 messages sent 5 s apart while ingest was down arrive within a second: each
    minute of their own time holds 12, far below the limit."""
    limiter = RateLimiter(rate=0.1, burst=10.0)  # 16 per minute of sent time
    assert all(limiter.allow("A", 1_800_000_000 + 5.0 * i) for i in range(3000))


def test_out_of_order_times_count_in_their_own_window() -> None:
    limiter = RateLimiter(rate=0.0 + 1 / 60, burst=0.0)  # one per minute
    assert limiter.allow("A", 600.0) and limiter.allow("A", 0.0) and limiter.allow("A", 300.0)
    assert not limiter.allow("A", 610.0) and not limiter.allow("A", 10.0)


def test_rate_limiter_keys_are_independent() -> None:
    limiter = RateLimiter(rate=1 / 60, burst=0.0)
    assert limiter.allow("A", 0.0) is True
    assert limiter.allow("A", 0.0) is False
    assert limiter.allow("B", 0.0) is True


def test_rate_limiter_memory_is_bounded_per_station() -> None:
    limiter = RateLimiter(rate=1.0, burst=0.0, max_windows=10)
    for minute in range(1000):
        limiter.allow("A", minute * 60.0)
    assert len(limiter._windows["A"]) == 10


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_rate_limiter_zero_is_unlimited(rate: float) -> None:
    limiter = RateLimiter(rate=rate, burst=0.0)
    assert all(limiter.allow("A", 0.0) for _ in range(10_000))
