"""Circular 10/2021/TT-BTNMT text format: data lines and file names.

A datalogger writes one line per parameter,
``Code<TAB>Value<TAB>Unit<TAB>yyyyMMddHHmmss<TAB>Status``, with CRLF endings, into a file
named ``Province_Facility_Station_yyyyMMddHHmmss.txt``. Real dataloggers also use spaces and
decimal commas, so both are accepted. Times carry no offset: they are local time (UTC+7 unless
configured).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from quantrac.core.contract import Problem, RawReading, Reason

_FILE_NAME = re.compile(r"^([^_]+)_([^_]+)_([^_]+)_(\d{14})\.txt$", re.IGNORECASE)
_TIMESTAMP = re.compile(r"^[0-9]{14}$")
_NUMBER = re.compile(r"^[+-]?([0-9]+([.,][0-9]*)?|[.,][0-9]+)([eE][+-]?[0-9]+)?$")
_NON_FINITE = re.compile(r"^[+-]?(nan|inf|infinity)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FileName:
    province: str
    facility: str
    station: str
    stamped_at: datetime

    @property
    def prefix(self) -> str:
        return f"{self.province}_{self.facility}_{self.station}"


def parse_timestamp(text: str, local: tzinfo) -> datetime:
    """``yyyyMMddHHmmss`` in local time → aware UTC datetime. Raises ValueError."""
    if not _TIMESTAMP.match(text):
        raise ValueError("timestamp must be 14 digits yyyyMMddHHmmss")
    naive = datetime.strptime(text, "%Y%m%d%H%M%S")
    try:
        return naive.replace(tzinfo=local).astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp out of range") from None


def format_timestamp(moment: datetime, local: tzinfo) -> str:
    return moment.astimezone(local).strftime("%Y%m%d%H%M%S")


def parse_file_name(name: str, local: tzinfo) -> FileName:
    match = _FILE_NAME.match(name)
    if not match:
        raise ValueError("file name must be Province_Facility_Station_yyyyMMddHHmmss.txt")
    province, facility, station, stamp = match.groups()
    return FileName(province, facility, station, parse_timestamp(stamp, local))


def parse_value(text: str) -> float:
    """A decimal with '.' or ',' as the separator. Raises ValueError."""
    if _NON_FINITE.match(text):
        return float(text)
    if not _NUMBER.match(text):
        raise ValueError("value is not a decimal number")
    return float(text.replace(",", "."))


def looks_like_tt10(text: str) -> bool:
    return not text.lstrip().startswith(("{", "["))


def _split(line: str) -> list[str] | None:
    if "\t" in line:
        fields = [f.strip() for f in line.split("\t")]
        return fields if len(fields) == 5 else None
    tokens = line.split()
    if len(tokens) < 5:
        return None
    # A unit may contain a space ("MPN/100 mL"): the first two and last two tokens are fixed.
    return [tokens[0], tokens[1], " ".join(tokens[2:-2]), tokens[-2], tokens[-1]]


def parse_lines(text: str, local: tzinfo) -> tuple[list[RawReading], list[Problem]]:
    """Every line becomes a reading or a problem; nothing is dropped silently."""
    readings: list[RawReading] = []
    problems: list[Problem] = []
    for number, raw_line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        line = raw_line.strip()
        if not line:
            continue
        where = f"line {number}"
        fields = _split(line)
        if fields is None:
            problems.append(
                Problem(
                    Reason.LINE_SYNTAX,
                    where,
                    line[:200],
                    "expected 5 fields: code, value, unit, yyyyMMddHHmmss, status",
                )
            )
            continue
        code, value_text, unit, stamp, status = fields
        try:
            # An empty value is how dataloggers write an analyser's fault or calibration
            # (status 02/01); validation accepts it with those statuses only.
            value: object = parse_value(value_text) if value_text else None
        except ValueError as exc:
            problems.append(
                Problem(Reason.VALUE_NOT_NUMBER, f"{where}.value", value_text, str(exc))
            )
            continue
        try:
            moment: object = parse_timestamp(stamp, local)
        except ValueError as exc:
            problems.append(Problem(Reason.TIME_INVALID, f"{where}.time", stamp, str(exc)))
            continue
        readings.append(
            RawReading(param=code, value=value, unit=unit, status=status, time=moment, field=where)
        )
    return readings, problems


def format_line(
    code: str, value: float, unit: str, moment: datetime, status: str, local: tzinfo
) -> str:
    return f"{code}\t{value:g}\t{unit}\t{format_timestamp(moment, local)}\t{status}"
