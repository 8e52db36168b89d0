"""Circular 10/2021 files for the receiving system above (pure).

What the circular and the receiving side expect (docs: /work/shared/docs/regulations.md §1.3;
confidence in brackets):
- one ``.txt`` file per station and measurement time (a datalogger writes one every 5 minutes)
  [M], named ``Province_Facility_Station_yyyyMMddHHmmss.txt`` [M], the time being local time
  (UTC+07:00) [M]. The ``Province_Facility_Station`` part is the station's ``ftp_name`` in the
  registry: the name the upstream system knows it by;
- one line per parameter, ``Code<TAB>Value<TAB>Unit<TAB>yyyyMMddHHmmss<TAB>Status`` ending CRLF
  [M]; codes as in Phụ lục 15 (our canonical codes, e.g. ``PM2,5``) [M]; status 00/01/02 [M];
  the value with a ``.`` and never in exponent notation (project choice: the shortest exact
  decimal);
- the folder layout is not set by the rule [L]: it is a template per target, by default
  ``{station}/{yyyy}/{MM}/{dd}`` (a per-station folder with date subfolders, as the
  implementations the reference cites do).
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from quantrac.ingest.tt10 import format_timestamp

DEFAULT_LAYOUT = "{station}/{yyyy}/{MM}/{dd}"
LAYOUT_FIELDS = ("province", "facility", "station", "station_id", "yyyy", "MM", "dd", "HH")


class ForwardError(ValueError):
    """A configuration or data problem that stops forwarding with a reason."""


@dataclass(frozen=True, slots=True)
class Line:
    param: str
    value: float
    unit: str
    status: int


@dataclass(frozen=True, slots=True)
class Tt10File:
    station_id: str
    measured_at: datetime
    folder: str  # relative, "/"-separated, "" for the top
    name: str
    content: bytes
    readings: int

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.name}" if self.folder else self.name

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def decimal_text(value: float) -> str:
    """The shortest decimal that reads back as ``value``, without an exponent."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ForwardError(f"{value!r} cannot be written in a Circular 10/2021 file")
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def check_layout(layout: str) -> None:
    for _, name, spec, conversion in string.Formatter().parse(layout):
        if name is None:
            continue
        if name not in LAYOUT_FIELDS or spec or conversion:
            raise ForwardError(
                f"layout {layout!r}: {{{name}}} is not one of "
                + ", ".join(f"{{{f}}}" for f in LAYOUT_FIELDS)
            )
    if layout.startswith("/") or ".." in layout.split("/"):
        raise ForwardError(f"layout {layout!r}: must be a relative path without '..'")


def split_ftp_name(ftp_name: str) -> tuple[str, str, str]:
    parts = ftp_name.split("_")
    if len(parts) != 3 or not all(parts):
        raise ForwardError(
            f"ftp_name {ftp_name!r} must be Province_Facility_Station (three parts, no other '_')"
        )
    return parts[0], parts[1], parts[2]


def build_file(
    station_id: str,
    ftp_name: str,
    measured_at: datetime,
    lines: Sequence[Line],
    local: tzinfo,
    layout: str = DEFAULT_LAYOUT,
) -> Tt10File:
    province, facility, station = split_ftp_name(ftp_name)
    stamp = format_timestamp(measured_at, local)
    body = "".join(
        f"{line.param}\t{decimal_text(line.value)}\t{line.unit}\t{stamp}\t{line.status:02d}\r\n"
        for line in sorted(lines, key=lambda item: item.param)
    )
    here = measured_at.astimezone(local)
    folder = layout.format(
        province=province,
        facility=facility,
        station=station,
        station_id=station_id,
        yyyy=f"{here.year:04d}",
        MM=f"{here.month:02d}",
        dd=f"{here.day:02d}",
        HH=f"{here.hour:02d}",
    ).strip("/")
    return Tt10File(
        station_id=station_id,
        measured_at=measured_at,
        folder=folder,
        name=f"{province}_{facility}_{station}_{stamp}.txt",
        content=body.encode("utf-8"),
        readings=len(lines),
    )
