"""Hostile traffic with known answers: good readings interleaved with poison payloads.

``generate`` makes a seeded, reproducible mix of MQTT messages for the stations of a registry.
Each message says what must come of it: the readings that must be stored exactly, whether it
must be rejected (and so acknowledged on its station's topic), and its ack topic.
``verify`` compares that with what quantrac stored and sent back. Used by the fuzz test
(tests/test_fuzz.py, a few thousand messages) and by ``bench/fuzz.py`` (>= 100,000).

The poison kinds are the ones found by fuzzing a running ``quantrac run`` (issue 15): random
bytes, invalid UTF-8, UTF-16 with and without a byte-order mark, NUL characters (JSON ``\\u0000``
and raw bytes in text), NaN/Infinity, numbers beyond any double, a seq beyond 64 bits, wrong
types, duplicate keys, unknown stations and parameters, topic/payload mismatch, an empty station
in the topic, text lines with the wrong fields, deep nesting, huge strings, oversized payloads.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from quantrac.core.contract import Reason, ack_topic, data_topic
from quantrac.core.registry import Registry, Station
from quantrac.core.time import VIETNAM

# (station, param, measured_at, value, status) as stored in the readings table.
StoredReading = tuple[str, str, datetime, float, int]


@dataclass(slots=True)
class FuzzMessage:
    kind: str
    topic: str
    payload: bytes
    stored: list[StoredReading] = field(default_factory=list)
    rejected: bool = False  # at least one problem: one ack on ack_topic (when there is one)
    ack_topic: str | None = None


@dataclass(slots=True)
class _Context:
    rng: random.Random
    stations: list[Station]
    start: datetime
    max_payload_bytes: int
    local: tzinfo
    seconds: int = 0  # every good reading gets its own measured second: no accidental conflicts
    seq: int = 0

    def moment(self) -> datetime:
        self.seconds += 1
        return self.start + timedelta(seconds=self.seconds)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def station(self) -> Station:
        return self.rng.choice(self.stations)


def _value(ctx: _Context) -> float:
    return round(ctx.rng.uniform(0, 500), ctx.rng.choice((0, 1, 2, 3)))


def _status(ctx: _Context) -> tuple[str, int]:
    code = ctx.rng.choices(("00", "01", "02"), weights=(8, 1, 1))[0]
    return code, int(code)


def _good_readings(
    ctx: _Context, station: Station, moment: datetime, count: int
) -> tuple[list[dict[str, Any]], list[StoredReading]]:
    params = ctx.rng.sample(sorted(station.parameters), min(count, len(station.parameters)))
    body, stored = [], []
    for code in params:
        value = _value(ctx)
        status, status_int = _status(ctx)
        unit = station.parameters[code].unit.id
        body.append({"param": code, "value": value, "unit": unit, "status": status})
        stored.append((station.id, code, moment, value, status_int))
    return body, stored


def _json(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


# --- good ------------------------------------------------------------------------------------


def good_json(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    moment = ctx.moment()
    readings, stored = _good_readings(ctx, station, moment, ctx.rng.randint(1, 4))
    doc = {
        "station": station.id,
        "time": moment.isoformat(),
        "seq": ctx.next_seq(),
        "readings": readings,
    }
    return FuzzMessage("good_json", data_topic(station.id), _json(doc), stored)


def good_tt10(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    moment = ctx.moment()
    local = station.utc_offset or ctx.local
    stamp = moment.astimezone(local).strftime("%Y%m%d%H%M%S")
    readings, stored = _good_readings(ctx, station, moment, ctx.rng.randint(1, 4))
    lines = [
        f"{r['param']}\t{str(r['value']).replace('.', ',')}\t{r['unit']}\t{stamp}\t{r['status']}"
        for r in readings
    ]
    return FuzzMessage("good_tt10", data_topic(station.id), "\r\n".join(lines).encode(), stored)


def good_utf16_bom(ctx: _Context) -> FuzzMessage:
    message = good_json(ctx)
    message.kind = "good_utf16_bom"
    message.payload = message.payload.decode().encode("utf-16")
    return message


def good_duplicate_keys(ctx: _Context) -> FuzzMessage:
    """The same key twice with the same value: harmless, stored."""
    message = good_json(ctx)
    message.kind = "good_duplicate_keys"
    doc = json.loads(message.payload)
    text = json.dumps(doc, ensure_ascii=False)
    message.payload = ('{"v": 1, "v": 1, ' + text[1:]).encode()
    return message


def partial(ctx: _Context) -> FuzzMessage:
    """Good readings with a poisoned one beside them: the good ones are stored."""
    station = ctx.station()
    moment = ctx.moment()
    readings, stored = _good_readings(ctx, station, moment, 2)
    poison = ctx.rng.choice(
        [
            {"param": "CO\u0000D", "value": 1, "unit": "mg\u0000/L"},
            {"param": readings[0]["param"] + "\u0000", "value": 1.0, "unit": "x"},
            {"param": "Unobtainium", "value": 1, "unit": "mg/L"},
            {"param": readings[0]["param"], "value": "7,1", "unit": readings[0]["unit"]},
            {"param": readings[0]["param"], "value": 1.0, "unit": "??"},
            {"param": readings[0]["param"], "value": 1, "unit": readings[0]["unit"], "status": "9"},
            {
                "param": readings[0]["param"],
                "value": 1,
                "unit": readings[0]["unit"],
                "time": "2026-01-01T00:00:00",
            },
        ]
    )
    doc = {
        "station": station.id,
        "time": moment.isoformat(),
        "seq": ctx.next_seq(),
        "readings": [*readings, poison],
    }
    return FuzzMessage(
        "partial", data_topic(station.id), _json(doc), stored, True, ack_topic(station.id)
    )


# --- poison: rejected whole ------------------------------------------------------------------


def _rejected(kind: str, station_id: str, payload: bytes) -> FuzzMessage:
    return FuzzMessage(kind, data_topic(station_id), payload, [], True, ack_topic(station_id))


def _valid_doc(ctx: _Context, station: Station) -> dict[str, Any]:
    moment = ctx.start - timedelta(days=1, seconds=ctx.rng.randint(0, 10**6))
    readings, _ = _good_readings(ctx, station, moment, 2)
    return {
        "station": station.id,
        "time": moment.isoformat(),
        "seq": ctx.next_seq(),
        "readings": readings,
    }


def random_bytes(ctx: _Context) -> FuzzMessage:
    size = ctx.rng.choice((1, 7, 60, 500, 5000))
    data = bytes(ctx.rng.getrandbits(8) for _ in range(size))
    if not data.strip():
        data = b"\x00" + data
    return _rejected("random_bytes", ctx.station().id, data)


def invalid_utf8(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    text = _json(_valid_doc(ctx, station))
    cut = ctx.rng.randrange(1, len(text))
    return _rejected("invalid_utf8", station.id, text[:cut] + b"\xc3\x28" + text[cut:])


def utf16_without_bom(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    return _rejected(
        "utf16_no_bom", station.id, _json(_valid_doc(ctx, station)).decode().encode("utf-16-le")
    )


def nul_in_json(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    doc = _valid_doc(ctx, station)
    for reading in doc["readings"]:
        reading["param"] = reading["param"] + "\u0000"
        reading["unit"] = "\u0000" + reading["unit"]
    return _rejected("nul_json", station.id, _json(doc))


def nul_in_station(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    doc = _valid_doc(ctx, station)
    doc["station"] = station.id + "\u0000"
    return _rejected("nul_station", station.id, _json(doc))


def nul_in_text(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    code = ctx.rng.choice(sorted(station.parameters))
    stamp = (ctx.start - timedelta(days=2)).astimezone(ctx.local).strftime("%Y%m%d%H%M%S")
    line = f"{code}\x00\t6\x001\tmg/L\t{stamp}\t00\r\n{code}\t1\t\x00\t{stamp}\t00\r\n"
    return _rejected("nul_text", station.id, line.encode())


def non_finite(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    doc = _valid_doc(ctx, station)
    token = ctx.rng.choice(("NaN", "Infinity", "-Infinity", "1e400", "-1e999999", "9" * 400))
    text = _json(doc).decode()
    for reading in doc["readings"]:
        text = text.replace(f'"value": {json.dumps(reading["value"])}', f'"value": {token}', 1)
    return _rejected("non_finite", station.id, text.encode())


def seq_beyond_int8(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    doc = _valid_doc(ctx, station)
    huge = ctx.rng.choice((2**63, 2**64 + 7, -(2**63) - 1, 10**30))
    text = _json(doc).decode().replace(f'"seq": {doc["seq"]}', f'"seq": {huge}')
    return _rejected("seq_beyond_int8", station.id, text.encode())


def wrong_types(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    doc = _valid_doc(ctx, station)
    field_name, bad = ctx.rng.choice(
        [
            ("readings", {"param": "COD"}),
            ("readings", []),
            ("station", 12),
            ("seq", "12"),
            ("v", 2),
            ("time", True),
            ("readings", [1, 2, 3]),
        ]
    )
    doc[field_name] = bad
    if field_name == "time":
        for reading in doc["readings"]:
            reading.pop("time", None)
    return _rejected("wrong_types", station.id, _json(doc))


def value_as_text(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    doc = _valid_doc(ctx, station)
    for reading in doc["readings"]:
        reading["value"] = str(reading["value"])
    return _rejected("value_as_text", station.id, _json(doc))


def unknown_station(ctx: _Context) -> FuzzMessage:
    ghost = f"F{ctx.rng.randint(0, 99999):05d}"
    doc = _valid_doc(ctx, ctx.station())
    doc["station"] = ghost
    return _rejected("unknown_station", ghost, _json(doc))


def unknown_param(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    doc = _valid_doc(ctx, station)
    for reading in doc["readings"]:
        reading["param"] = ctx.rng.choice(
            ("Unobtainium", "pm 2.5 x", "", "COD;DROP TABLE", "ü" * 300)
        )
    return _rejected("unknown_param", station.id, _json(doc))


def topic_mismatch(ctx: _Context) -> FuzzMessage:
    station, other = (
        ctx.rng.sample(ctx.stations, 2) if len(ctx.stations) > 1 else (ctx.stations[0], None)
    )
    doc = _valid_doc(ctx, station)
    topic_station = other.id if other is not None else "SOMEONE_ELSE"
    return _rejected("topic_mismatch", topic_station, _json(doc))


def empty_topic_station(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    doc = _valid_doc(ctx, station)
    return FuzzMessage("empty_topic_station", "stations//data", _json(doc), [], True, None)


def bad_text_lines(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    code = ctx.rng.choice(sorted(station.parameters))
    stamp = (ctx.start - timedelta(days=3)).astimezone(ctx.local).strftime("%Y%m%d%H%M%S")
    line = ctx.rng.choice(
        [
            f"{code}\t61,5\tmg/L",
            f"{code}\t61,5\tmg/L\t{stamp}\t00\textra\tfields",
            f"{code}\tabc\tmg/L\t{stamp}\t00",
            f"{code}\t1\tmg/L\t00010101000000\t00",
            f"{code}\t1\tmg/L\t99999999999999\t00",
            f"{code}\t1e1000000\tmg/L\t{stamp}\t00",
        ]
    )
    return _rejected("bad_text_lines", station.id, (line + "\r\n").encode())


def naive_or_future_time(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    doc = _valid_doc(ctx, station)
    doc["time"] = ctx.rng.choice(
        [
            "2026-11-21T10:05:00",
            (ctx.start + timedelta(days=400)).isoformat(),
            "0001-01-01T00:00:00+07:00",
            "yesterday",
        ]
    )
    return _rejected("bad_time", station.id, _json(doc))


def deep_nesting(ctx: _Context) -> FuzzMessage:
    depth = ctx.rng.choice((100, 1000, 20000))
    return _rejected("deep_nesting", ctx.station().id, b"[" * depth + b"]" * depth)


def huge_strings(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    doc = _valid_doc(ctx, station)
    doc["readings"][0]["param"] = "P" * 100_000
    if len(doc["readings"]) > 1:
        doc["readings"][1]["unit"] = "\u0000" * 10_000
    # Every reading rejected: the huge param is unknown, the NUL unit is unknown.
    return _rejected("huge_strings", station.id, _json(doc))


def oversized(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    padding = "x" * (ctx.max_payload_bytes + 10)
    doc = {**_valid_doc(ctx, station), "padding": padding}
    return _rejected("oversized", station.id, _json(doc))


def empty_payload(ctx: _Context) -> FuzzMessage:
    return _rejected(
        "empty", ctx.station().id, ctx.rng.choice((b"", b" ", b"\r\n", b"\xef\xbb\xbf"))
    )


def lone_surrogate(ctx: _Context) -> FuzzMessage:
    station = ctx.station()
    doc = _valid_doc(ctx, station)
    text = _json(doc).decode().replace(f'"{station.id}"', '"\\ud800' + station.id + '"', 1)
    return _rejected("lone_surrogate", station.id, text.encode())


GOOD: list[Callable[[_Context], FuzzMessage]] = [
    good_json,
    good_json,
    good_json,
    good_tt10,
    good_utf16_bom,
    good_duplicate_keys,
]
POISON: list[Callable[[_Context], FuzzMessage]] = [
    partial,
    random_bytes,
    invalid_utf8,
    utf16_without_bom,
    nul_in_json,
    nul_in_station,
    nul_in_text,
    non_finite,
    seq_beyond_int8,
    wrong_types,
    value_as_text,
    unknown_station,
    unknown_param,
    topic_mismatch,
    empty_topic_station,
    bad_text_lines,
    naive_or_future_time,
    deep_nesting,
    huge_strings,
    empty_payload,
    lone_surrogate,
]


def iter_messages(
    registry: Registry,
    count: int,
    *,
    seed: int,
    start: datetime,
    max_payload_bytes: int,
    good_share: float = 0.5,
    oversized_every: int = 2000,
    local: tzinfo = VIETNAM,
) -> Iterator[FuzzMessage]:
    """``count`` messages, about ``good_share`` of them good, in a seeded random order. Good
    readings are measured from ``start`` on, one second apart (keep it in the past)."""
    stations = sorted(registry.stations.values(), key=lambda s: s.id)
    start = start.astimezone(UTC).replace(microsecond=0)
    ctx = _Context(random.Random(seed), stations, start, max_payload_bytes, local)
    for index in range(count):
        maker: Callable[[_Context], FuzzMessage]
        if oversized_every and index % oversized_every == oversized_every - 1:
            maker = oversized
        elif ctx.rng.random() < good_share:
            maker = ctx.rng.choice(GOOD)
        else:
            maker = ctx.rng.choice(POISON)
        yield maker(ctx)


def generate(registry: Registry, count: int, **options: Any) -> list[FuzzMessage]:
    return list(iter_messages(registry, count, **options))


# --- verification ----------------------------------------------------------------------------


@dataclass(slots=True)
class FuzzReport:
    messages: int
    good_readings: int
    stored_readings: int
    lost: list[StoredReading]
    changed_or_unexpected: list[StoredReading]
    rejected_messages: int
    acks: int
    ack_mismatches: dict[str, tuple[int, int]]  # topic: (expected, received)
    rejections_stored: int
    problems_acked: int
    topicless_rejections: int
    without_reason: int
    internal_errors: int
    kinds: dict[str, int]

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and not self.changed_or_unexpected
            and not self.ack_mismatches
            and not self.without_reason
            and not self.internal_errors
            and self.rejections_stored == self.problems_acked + self.topicless_rejections
        )

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "good_readings": self.good_readings,
            "stored_readings": self.stored_readings,
            "lost": len(self.lost),
            "changed_or_unexpected": len(self.changed_or_unexpected),
            "rejected_messages": self.rejected_messages,
            "acks": self.acks,
            "ack_mismatches": len(self.ack_mismatches),
            "rejections_stored": self.rejections_stored,
            "problems_acked": self.problems_acked,
            "topicless_rejections": self.topicless_rejections,
            "rejections_without_reason": self.without_reason,
            "internal_errors": self.internal_errors,
            "kinds": self.kinds,
            "ok": self.ok,
        }


def expected_acks(messages: Iterable[FuzzMessage]) -> Counter[str]:
    return Counter(m.ack_topic for m in messages if m.rejected and m.ack_topic is not None)


def verify(
    messages: list[FuzzMessage],
    stored: Iterable[StoredReading],
    rejections: Iterable[tuple[str | None, str, str]],
    acks: Iterable[tuple[str, bytes]],
) -> FuzzReport:
    """``stored``: rows of readings; ``rejections``: (station_id, reason, detail) rows;
    ``acks``: (topic, payload) received on stations/+/ack."""
    want: dict[tuple[str, str, datetime], tuple[float, int]] = {}
    for message in messages:
        for station, param, at, value, status in message.stored:
            want[(station, param, at.astimezone(UTC))] = (value, status)
    got: dict[tuple[str, str, datetime], tuple[float, int]] = {
        (s, p, at.astimezone(UTC)): (v, st) for s, p, at, v, st in stored
    }
    lost = [(*k, *want[k]) for k in want.keys() - got.keys()]
    changed = [(*k, *got[k]) for k in got if want.get(k) != got[k]]
    reasons = {r.value for r in Reason}
    rejection_rows = list(rejections)
    without_reason = sum(
        1 for _, reason, detail in rejection_rows if reason not in reasons or not detail
    )
    internal = sum(1 for _, reason, _ in rejection_rows if reason == Reason.INTERNAL_ERROR)
    topicless = sum(1 for _, reason, _ in rejection_rows if reason == Reason.TOPIC_INVALID)
    received: Counter[str] = Counter()
    problems_acked = 0
    for topic, body in acks:
        received[topic] += 1
        doc = json.loads(body)
        problems_acked += len(doc["problems"])
        if doc["rejected"] != len(doc["problems"]) or not all(
            p["rule"] in reasons and p["detail"] for p in doc["problems"]
        ):
            without_reason += 1
    expected = expected_acks(messages)
    mismatches = {
        t: (expected[t], received[t])
        for t in expected.keys() | received.keys()
        if expected[t] != received[t]
    }
    return FuzzReport(
        messages=len(messages),
        good_readings=len(want),
        stored_readings=len(got),
        lost=lost,
        changed_or_unexpected=changed,
        rejected_messages=sum(1 for m in messages if m.rejected),
        acks=sum(received.values()),
        ack_mismatches=mismatches,
        rejections_stored=len(rejection_rows),
        problems_acked=problems_acked,
        topicless_rejections=topicless,
        without_reason=without_reason,
        internal_errors=internal,
        kinds=dict(Counter(m.kind for m in messages)),
    )
