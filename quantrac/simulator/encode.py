"""One simulated message as bytes: JSON v1 or Circular 10/2021 text lines, and TT10 files."""

from __future__ import annotations

import os
from datetime import datetime, tzinfo
from pathlib import Path

from quantrac.core.contract import JsonPayload, JsonReading, encode_json_payload, format_time
from quantrac.core.registry import Station
from quantrac.core.time import VIETNAM
from quantrac.ingest.tt10 import format_line, format_timestamp
from quantrac.simulator.values import station_readings

FORMATS = ("json", "tt10")


def station_clock(station: Station) -> tzinfo:
    """The offset the station's datalogger writes local times in."""
    return station.utc_offset or VIETNAM


def json_payload(
    station: Station, moment: datetime, readings: list[JsonReading], seq: int | None
) -> bytes:
    # Stations send local time with its offset, as Vietnamese dataloggers do.
    local = moment.astimezone(station_clock(station))
    return encode_json_payload(
        JsonPayload(station=station.id, time=format_time(local), readings=readings, seq=seq)
    )


def tt10_text(station: Station, moment: datetime, readings: list[JsonReading]) -> bytes:
    clock = station_clock(station)
    lines = [format_line(r.param, r.value, r.unit, moment, r.status, clock) for r in readings]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def encode_message(
    station: Station, moment: datetime, *, seed: int, fmt: str = "json", seq: int | None = None
) -> bytes:
    """The payload a station sends for ``moment``: same inputs, same bytes."""
    return encode_readings(station, moment, station_readings(station, moment, seed), fmt, seq)


def encode_readings(
    station: Station,
    moment: datetime,
    readings: list[JsonReading],
    fmt: str = "json",
    seq: int | None = None,
) -> bytes:
    """``readings`` stamped ``moment`` (the time the datalogger writes) in format ``fmt``."""
    if fmt == "json":
        return json_payload(station, moment, readings, seq)
    if fmt == "tt10":
        return tt10_text(station, moment, readings)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def tt10_file_name(station: Station, moment: datetime) -> str:
    # Without an ftp_name, ingest matches the third part against station ids; '_' would split
    # the id across parts, so it is replaced (such a station should declare an ftp_name).
    prefix = station.ftp_name or f"BacNinh_SIM_{station.id.replace('_', '-')}"
    return f"{prefix}_{format_timestamp(moment, station_clock(station))}.txt"


def write_file_bytes(path: Path, content: bytes) -> Path:
    # Write aside then rename, so a watcher polling the folder never reads half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.parent / f".{path.name}.part"
    partial.write_bytes(content)
    os.replace(partial, path)
    return path
