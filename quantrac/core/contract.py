"""The message contract between stations and quantrac.

Topics, status codes, the JSON v1 payload, the Circular 10/2021 text line, and the feedback a
station receives on its ack topic. ``alerts`` and ``simulator`` import from here; nothing here
does I/O.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

DATA_TOPIC = "stations/{station_id}/data"
ACK_TOPIC = "stations/{station_id}/ack"
DATA_TOPIC_FILTER = "stations/+/data"
DEFAULT_SHARE_GROUP = "quantrac-ingest"

JSON_PAYLOAD_VERSION = 1

# Vietnamese dataloggers stamp readings in local time; Circular 10/2021 files carry no offset.


class Status(enum.IntEnum):
    """Instrument status sent with every value (Circular 10/2021)."""

    MEASURING = 0  # "00": normal measurement, the only status counted for compliance
    CALIBRATING = 1  # "01"
    FAULT = 2  # "02": device error

    @property
    def code(self) -> str:
        return f"{int(self):02d}"


STATUS_BY_CODE = {s.code: s for s in Status}


def data_topic(station_id: str) -> str:
    return DATA_TOPIC.format(station_id=station_id)


def ack_topic(station_id: str) -> str:
    return ACK_TOPIC.format(station_id=station_id)


def shared_subscription(group: str = DEFAULT_SHARE_GROUP) -> str:
    return f"$share/{group}/{DATA_TOPIC_FILTER}"


def station_from_topic(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "stations" and parts[2] == "data" and parts[1]:
        return parts[1]
    return None


class Reason(enum.StrEnum):
    """Why a payload, or one reading of it, was not stored. Stable codes: stations see them."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    PAYLOAD_ENCODING = "payload_encoding"
    PAYLOAD_SYNTAX = "payload_syntax"
    PAYLOAD_SCHEMA = "payload_schema"
    PAYLOAD_EMPTY = "payload_empty"
    STATION_UNKNOWN = "station_unknown"
    STATION_MISMATCH = "station_mismatch"
    TOPIC_INVALID = "topic_invalid"
    PARAM_UNKNOWN = "param_unknown"
    PARAM_NOT_DECLARED = "param_not_declared"
    UNIT_UNKNOWN = "unit_unknown"
    UNIT_MISMATCH = "unit_mismatch"
    VALUE_NOT_NUMBER = "value_not_number"
    VALUE_NOT_FINITE = "value_not_finite"
    STATUS_INVALID = "status_invalid"
    TIME_INVALID = "time_invalid"
    TIME_NO_OFFSET = "time_no_offset"
    TIME_IN_FUTURE = "time_in_future"
    TIME_TOO_OLD = "time_too_old"
    RATE_LIMITED = "rate_limited"
    DUPLICATE_IN_MESSAGE = "duplicate_in_message"
    CONFLICTING_DUPLICATE = "conflicting_duplicate"
    LINE_SYNTAX = "line_syntax"
    FILE_NAME = "file_name"
    STORAGE_REFUSED = "storage_refused"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Problem:
    """One rejected thing: which field, what value, which rule, in words."""

    reason: Reason
    field: str
    value: str
    detail: str
    # Named facts for the translated texts (config/messages/ack.yaml): the registered unit, …
    params: dict[str, str] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict[str, str]:
        from quantrac.core.i18n import translate_ack

        return {
            "field": self.field,
            "value": self.value,
            "rule": self.reason.value,
            "detail": self.detail,
            "detail_vi": translate_ack(self, "vi"),
            "detail_en": translate_ack(self, "en"),
        }


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated value, in the unit the station registry declares for it."""

    station_id: str
    param: str
    measured_at: datetime  # aware, UTC
    value: float | None  # None only for a status 01/02 line that carried no value (TT10)
    status: Status

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.station_id, self.param, self.measured_at)


@dataclass(slots=True)
class RawReading:
    """A reading as the station sent it, before the registry is consulted."""

    param: str
    value: Any
    unit: Any
    status: Any
    time: Any  # datetime (parsed), or the raw value when it did not parse
    field: str  # where it sat in the payload: "readings[2]" or "line 4"


@dataclass(slots=True)
class ParsedPayload:
    """What a payload said, syntax checked but not yet validated against the registry."""

    format: str  # "json" or "tt10"
    station: str | None
    seq: int | None
    time: datetime | None
    readings: list[RawReading] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


# --- JSON v1 payload (what stations and the simulator send) ----------------------------------


class JsonReading(msgspec.Struct, omit_defaults=True):
    param: str
    value: float
    unit: str
    status: str = "00"
    time: str | None = None


class JsonPayload(msgspec.Struct, omit_defaults=True):
    station: str
    time: str
    readings: list[JsonReading]
    seq: int | None = None


_json_encoder = msgspec.json.Encoder()


def encode_json_payload(payload: JsonPayload) -> bytes:
    return _json_encoder.encode(payload)


def format_time(moment: datetime) -> str:
    """ISO-8601 with an explicit offset, as the contract asks of stations."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: the contract requires an offset")
    return moment.isoformat()


def parse_time(value: Any) -> datetime:
    """ISO-8601 with an offset, or epoch milliseconds. Raises ValueError with the rule broken."""
    if isinstance(value, bool):
        raise ValueError("time must be an ISO-8601 string or epoch milliseconds")
    if isinstance(value, int | float):
        try:
            seconds = value / 1000.0
        except OverflowError:  # an integer beyond any double
            raise ValueError("epoch milliseconds out of range") from None
        if not math.isfinite(seconds):
            raise ValueError("epoch milliseconds must be finite")
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"epoch milliseconds out of range ({exc})") from None
    if not isinstance(value, str):
        raise ValueError("time must be an ISO-8601 string or epoch milliseconds")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not an ISO-8601 date-time") from None
    if moment.tzinfo is None:
        raise NaiveTimeError("ISO-8601 time without a UTC offset (write +07:00 or Z)")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range") from None


class NaiveTimeError(ValueError):
    pass


# --- Feedback on stations/{id}/ack ------------------------------------------------------------


@dataclass(slots=True)
class Feedback:
    station: str
    seq: int | None
    time: str | None
    received_at: datetime
    accepted: int
    duplicates: int
    problems: list[Problem]
    source: str = "mqtt"
    # Said about accepted data (a logger exactly 7 h off): {"rule", "detail", "detail_vi", …}.
    notices: list[dict[str, str]] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.problems:
            return "accepted"
        return "partial" if self.accepted or self.duplicates else "rejected"

    def to_json(self) -> bytes:
        body = {
            "station": self.station,
            "seq": self.seq,
            "time": self.time,
            "received_at": self.received_at.isoformat(),
            "status": self.status,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": len(self.problems),
            "problems": [p.to_json() for p in self.problems],
        }
        if self.notices:
            body["notices"] = self.notices
        return _json_encoder.encode(body)
