"""Turn a payload's bytes into a ParsedPayload: syntax only, no registry, never raises.

JSON v1 and the Circular 10/2021 text lines are told apart by their first character.
"""

from __future__ import annotations

import codecs
from datetime import tzinfo
from typing import Any

import msgspec

from quantrac.core.contract import (
    JSON_PAYLOAD_VERSION,
    JsonReading,
    NaiveTimeError,
    ParsedPayload,
    Problem,
    RawReading,
    Reason,
    parse_time,
)
from quantrac.ingest import tt10
from quantrac.ingest.storable import describe, fits_int8, safe_repr

_EXCERPT = 200
_decoder = msgspec.json.Decoder()


def excerpt(data: bytes | str, limit: int = _EXCERPT) -> str:
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else text[:limit] + "…"


# Windows dataloggers and editors save text as UTF-16 (or, rarely, UTF-32) with a byte-order
# mark, and UTF-8 with one. Longest mark first: UTF-32-LE's starts with UTF-16-LE's.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def decode_text(raw: bytes) -> tuple[str, str]:
    """The text of a payload or file and its encoding: by its byte-order mark if it has one,
    else UTF-8. Raises UnicodeDecodeError."""
    for mark, encoding in _BYTE_ORDER_MARKS:
        if raw.startswith(mark):
            return raw[len(mark) :].decode(encoding), encoding
    nul = raw.find(0)
    if nul >= 0 and raw.count(0) * 4 >= len(raw):
        # Valid UTF-8 in theory, but text with a NUL every other byte is UTF-16 without a mark.
        raise UnicodeDecodeError(
            "utf-8", raw, nul, nul + 1, "NUL bytes: UTF-16 without a byte-order mark?"
        )
    return raw.decode("utf-8"), "utf-8"


def _whole(reason: Reason, field: str, value: str, detail: str, fmt: str) -> ParsedPayload:
    return ParsedPayload(
        format=fmt,
        station=None,
        seq=None,
        time=None,
        problems=[Problem(reason, field, value, detail)],
    )


def parse_payload(raw: bytes, *, max_bytes: int, local: tzinfo) -> ParsedPayload:
    if len(raw) > max_bytes:
        return _whole(
            Reason.PAYLOAD_TOO_LARGE,
            "payload",
            f"{len(raw)} bytes",
            f"payload larger than {max_bytes} bytes",
            "unknown",
        )
    try:
        text, encoding = decode_text(raw)
    except UnicodeDecodeError as exc:
        return _whole(
            Reason.PAYLOAD_ENCODING,
            "payload",
            excerpt(raw),
            f"payload is not {exc.encoding.upper()} ({exc.reason} at byte {exc.start})",
            "unknown",
        )
    if encoding != "utf-8":
        raw = text.encode("utf-8")
    elif raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    if not text.strip():
        return _whole(Reason.PAYLOAD_EMPTY, "payload", "", "payload is empty", "unknown")
    if tt10.looks_like_tt10(text):
        readings, problems = tt10.parse_lines(text, local)
        parsed = ParsedPayload(
            format="tt10", station=None, seq=None, time=None, readings=readings, problems=problems
        )
        if not readings and not problems:
            parsed.problems.append(Problem(Reason.PAYLOAD_EMPTY, "payload", "", "no data lines"))
        return parsed
    return parse_json(raw)


def _time_problem(field: str, value: Any, exc: ValueError) -> Problem:
    reason = Reason.TIME_NO_OFFSET if isinstance(exc, NaiveTimeError) else Reason.TIME_INVALID
    return Problem(reason, field, excerpt(describe(value)), str(exc))


class _TypedPayload(msgspec.Struct):
    station: str
    time: str
    readings: list[JsonReading]
    seq: int | None = None
    v: int = JSON_PAYLOAD_VERSION


_typed_decoder = msgspec.json.Decoder(_TypedPayload)
_READING_FIELDS = [f"readings[{i}]" for i in range(64)]


def _reading_field(index: int) -> str:
    return _READING_FIELDS[index] if index < len(_READING_FIELDS) else f"readings[{index}]"


def _parse_well_formed(raw: bytes) -> ParsedPayload | None:
    """The common case, decoded and type-checked by msgspec in one pass. Anything it does not
    accept (None) goes through the general path, which says precisely what is wrong."""
    try:
        doc = _typed_decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    if doc.v != JSON_PAYLOAD_VERSION or not doc.station or not doc.readings:
        return None
    if doc.seq is not None and not fits_int8(doc.seq):
        return None
    try:
        moment = parse_time(doc.time)
        readings = [
            RawReading(
                param=r.param,
                value=r.value,
                unit=r.unit,
                status=r.status,
                time=moment if r.time is None else parse_time(r.time),
                field=_reading_field(index),
            )
            for index, r in enumerate(doc.readings)
        ]
    except ValueError:
        return None
    if not all(r.param for r in readings):
        return None
    return ParsedPayload("json", doc.station, doc.seq, moment, readings)


def parse_json(raw: bytes) -> ParsedPayload:
    well_formed = _parse_well_formed(raw)
    if well_formed is not None:
        return well_formed
    try:
        doc = _decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        return _whole(
            Reason.PAYLOAD_SYNTAX, "payload", excerpt(raw), f"invalid JSON: {exc}", "json"
        )
    if not isinstance(doc, dict):
        return _whole(
            Reason.PAYLOAD_SCHEMA, "payload", excerpt(raw), "payload must be a JSON object", "json"
        )

    parsed = ParsedPayload(format="json", station=None, seq=None, time=None)
    problems = parsed.problems

    version = doc.get("v", JSON_PAYLOAD_VERSION)
    if isinstance(version, bool) or version != JSON_PAYLOAD_VERSION:
        problems.append(
            Problem(
                Reason.PAYLOAD_SCHEMA,
                "v",
                excerpt(str(version)),
                f"unsupported payload version (this server speaks v{JSON_PAYLOAD_VERSION})",
            )
        )
        return parsed

    station = doc.get("station")
    if not isinstance(station, str) or not station:
        problems.append(
            Problem(
                Reason.PAYLOAD_SCHEMA,
                "station",
                excerpt(safe_repr(station)),
                "station must be a non-empty string",
            )
        )
        return parsed
    parsed.station = station

    seq = doc.get("seq")
    if seq is not None:
        if isinstance(seq, int) and not isinstance(seq, bool) and not fits_int8(seq):
            problems.append(
                Problem(
                    Reason.PAYLOAD_SCHEMA,
                    "seq",
                    excerpt(describe(seq)),
                    "seq must fit in a signed 64-bit integer (-9223372036854775808 to "
                    "9223372036854775807)",
                )
            )
            return parsed
        if isinstance(seq, int) and not isinstance(seq, bool):
            parsed.seq = seq
        else:
            problems.append(
                Problem(
                    Reason.PAYLOAD_SCHEMA, "seq", excerpt(safe_repr(seq)), "seq must be an integer"
                )
            )
            return parsed

    if "time" in doc:
        try:
            parsed.time = parse_time(doc["time"])
        except ValueError as exc:
            # Readings that carry their own time can still be stored.
            problems.append(_time_problem("time", doc["time"], exc))

    readings = doc.get("readings")
    if not isinstance(readings, list) or not readings:
        problems.append(
            Problem(
                Reason.PAYLOAD_SCHEMA,
                "readings",
                excerpt(safe_repr(readings)),
                "readings must be a non-empty array",
            )
        )
        return parsed

    for index, item in enumerate(readings):
        where = f"readings[{index}]"
        if not isinstance(item, dict):
            problems.append(
                Problem(
                    Reason.PAYLOAD_SCHEMA,
                    where,
                    excerpt(safe_repr(item)),
                    "each reading must be a JSON object",
                )
            )
            continue
        param = item.get("param")
        if not isinstance(param, str) or not param:
            problems.append(
                Problem(
                    Reason.PAYLOAD_SCHEMA,
                    f"{where}.param",
                    excerpt(safe_repr(param)),
                    "param must be a non-empty string",
                )
            )
            continue
        unit = item.get("unit")
        if not isinstance(unit, str):
            problems.append(
                Problem(
                    Reason.PAYLOAD_SCHEMA,
                    f"{where}.unit",
                    excerpt(safe_repr(unit)),
                    "unit must be a string",
                )
            )
            continue
        if "time" in item and item["time"] is not None:
            try:
                moment: Any = parse_time(item["time"])
            except ValueError as exc:
                problems.append(_time_problem(f"{where}.time", item["time"], exc))
                continue
        else:
            moment = parsed.time
            if moment is None:
                problems.append(
                    Problem(
                        Reason.TIME_INVALID,
                        f"{where}.time",
                        "",
                        "no valid time in the reading or the message",
                    )
                )
                continue
        parsed.readings.append(
            RawReading(
                param=param,
                value=item.get("value"),
                unit=unit,
                status=item.get("status", "00"),
                time=moment,
                field=where,
            )
        )
    return parsed
