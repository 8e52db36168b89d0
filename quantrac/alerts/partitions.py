"""How alert workers split the stations: a fixed number of partitions, one cursor each.

A station's partition is a stable hash of its id, the same in every process and release, so a
partition's cursor always covers the same stations. Workers lease partitions in PostgreSQL
(``quantrac.ingest.stream.lease``); any broker works, since none of this touches MQTT.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

CONSUMER = "alerts"


def partition_of(station_id: str, partitions: int) -> int:
    return zlib.crc32(station_id.encode("utf-8")) % partitions


def cursor_name(partition: int, partitions: int) -> str:
    return f"{CONSUMER}:{partition}/{partitions}"


def cursor_names(partitions: int) -> list[str]:
    return [cursor_name(p, partitions) for p in range(partitions)]


def stations_of(cursors: Iterable[str], station_ids: Iterable[str], partitions: int) -> set[str]:
    """The stations the given cursors cover."""
    held = set(cursors)
    return {s for s in station_ids if cursor_name(partition_of(s, partitions), partitions) in held}
