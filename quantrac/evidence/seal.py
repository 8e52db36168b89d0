"""Seals: the SHA-256 of a report or export file and of the readings it was computed from.

The readings digest is over one canonical line per stored reading of the stations and period,
in key order: ``station<TAB>param<TAB>measured_at (UTC, ISO 8601)<TAB>value (repr)<TAB>status``
and a newline. Recomputing it later over the same rows gives the same digest; a changed, added
or removed reading changes it. The file digest is over the file's bytes. Both are recorded in
``sealed_files`` (so a file that lost its sidecar can still be verified) and in a sidecar
``FILE.seal.json`` beside the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

SIDECAR_SUFFIX = ".seal.json"
SEAL_FORMAT = "quantrac-seal/1"


def canonical_line(
    station: str, param: str, measured_at: datetime, value: float, status: int
) -> bytes:
    moment = measured_at.astimezone(UTC).isoformat()
    return f"{station}\t{param}\t{moment}\t{value!r}\t{int(status)}\n".encode()


@dataclass(frozen=True, slots=True)
class ReadingsDigest:
    sha256: str
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "readings": self.count}


def digest_rows(rows: Iterable[tuple[str, str, datetime, float, int]]) -> ReadingsDigest:
    """Pure: the digest of rows already in key order."""
    h = hashlib.sha256()
    n = 0
    for row in rows:
        h.update(canonical_line(*row))
        n += 1
    return ReadingsDigest(h.hexdigest(), n)


async def _stored(
    conn: psycopg.AsyncConnection,
    stations: Sequence[str],
    start: datetime,
    end: datetime,
    params: Sequence[str] | None,
) -> AsyncIterator[tuple[str, str, datetime, float, int]]:
    query = (
        "SELECT station_id, param, measured_at, value, status FROM readings "
        "WHERE station_id = ANY(%s) AND measured_at >= %s AND measured_at < %s"
    )
    args: list[Any] = [list(stations), start, end]
    if params:
        query += " AND param = ANY(%s)"
        args.append(list(params))
    async with conn.cursor(name="seal_readings") as cur:
        await cur.execute(query + " ORDER BY station_id, param, measured_at", args)
        async for row in cur:
            yield row


async def readings_digest(
    conn: psycopg.AsyncConnection,
    stations: Sequence[str],
    start: datetime,
    end: datetime,
    params: Sequence[str] | None = None,
) -> ReadingsDigest:
    """Run it in the transaction (REPEATABLE READ) that built the report, so both saw the same
    rows."""
    h = hashlib.sha256()
    n = 0
    async for row in _stored(conn, stations, start, end, params):
        h.update(canonical_line(*row))
        n += 1
    return ReadingsDigest(h.hexdigest(), n)


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Seal:
    file_name: str
    file_sha256: str
    kind: str  # "report exceedances" | "export readings"
    request: dict[str, Any]  # what reproduces the file: format, lang, section, params
    stations: tuple[str, ...]
    start: datetime
    end: datetime
    readings: ReadingsDigest
    sealed_at: datetime
    sealed_by: str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SEAL_FORMAT,
            "file": self.file_name,
            "file_sha256": self.file_sha256,
            "kind": self.kind,
            "request": self.request,
            "stations": list(self.stations),
            "period": {"from": self.start.isoformat(), "to": self.end.isoformat()},
            "readings_sha256": self.readings.sha256,
            "readings": self.readings.count,
            "sealed_at": self.sealed_at.isoformat(),
            "sealed_by": self.sealed_by,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Seal:
        if doc.get("format") != SEAL_FORMAT:
            raise ValueError(f"not a quantrac seal (format {doc.get('format')!r})")
        return cls(
            file_name=str(doc["file"]),
            file_sha256=str(doc["file_sha256"]),
            kind=str(doc["kind"]),
            request=dict(doc.get("request") or {}),
            stations=tuple(doc["stations"]),
            start=datetime.fromisoformat(doc["period"]["from"]),
            end=datetime.fromisoformat(doc["period"]["to"]),
            readings=ReadingsDigest(str(doc["readings_sha256"]), int(doc["readings"])),
            sealed_at=datetime.fromisoformat(doc["sealed_at"]),
            sealed_by=str(doc["sealed_by"]),
        )


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def period_closed(end: datetime, now: datetime) -> bool:
    """Only a period that is over can be sealed: later readings would change an open one."""
    return end <= now


async def record_seal(conn: psycopg.AsyncConnection, seal: Seal) -> None:
    await conn.execute(
        "INSERT INTO sealed_files (sha256, file_name, kind, request, stations, period_start,"
        " period_end, readings_sha256, readings_count, sealed_at, sealed_by)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (sha256) DO NOTHING",
        [
            seal.file_sha256,
            seal.file_name,
            seal.kind,
            json.dumps(seal.request, ensure_ascii=False),
            list(seal.stations),
            seal.start,
            seal.end,
            seal.readings.sha256,
            seal.readings.count,
            seal.sealed_at,
            seal.sealed_by,
        ],
    )


async def seal_file(
    conn: psycopg.AsyncConnection,
    path: Path,
    *,
    kind: str,
    request: dict[str, Any],
    stations: Sequence[str],
    start: datetime,
    end: datetime,
    readings: ReadingsDigest,
    now: datetime,
    actor: str,
) -> Seal:
    """Record the seal of a written file and write its sidecar. The caller commits."""
    seal = seal_for(
        path.read_bytes(),
        path.name,
        kind=kind,
        request=request,
        stations=stations,
        start=start,
        end=end,
        readings=readings,
        now=now,
        actor=actor,
    )
    await record_seal(conn, seal)
    sidecar_path(path).write_text(seal_json(seal), encoding="utf-8")
    return seal


def seal_json(seal: Seal) -> str:
    return json.dumps(seal.to_json(), ensure_ascii=False, indent=1) + "\n"


def seal_for(
    data: bytes,
    file_name: str,
    *,
    kind: str,
    request: dict[str, Any],
    stations: Sequence[str],
    start: datetime,
    end: datetime,
    readings: ReadingsDigest,
    now: datetime,
    actor: str,
) -> Seal:
    return Seal(
        file_name=file_name,
        file_sha256=file_sha256(data),
        kind=kind,
        request=request,
        stations=tuple(stations),
        start=start,
        end=end,
        readings=readings,
        sealed_at=now,
        sealed_by=actor,
    )


async def find_seal(conn: psycopg.AsyncConnection, sha256: str) -> Seal | None:
    cur = await conn.execute(
        "SELECT file_name, sha256, kind, request, stations, period_start, period_end,"
        " readings_sha256, readings_count, sealed_at, sealed_by FROM sealed_files"
        " WHERE sha256 = %s",
        [sha256],
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return Seal(
        file_name=row[0],
        file_sha256=row[1],
        kind=row[2],
        request=row[3],
        stations=tuple(row[4]),
        start=row[5],
        end=row[6],
        readings=ReadingsDigest(row[7], int(row[8])),
        sealed_at=row[9],
        sealed_by=row[10],
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    file_ok: bool
    data_ok: bool | None  # None: no seal found, nothing to compare with
    seal: Seal | None
    file_sha256: str
    readings_now: ReadingsDigest | None
    corrections: list[dict[str, Any]]  # audited corrections in the period since the seal
    message: str

    @property
    def ok(self) -> bool:
        return self.file_ok and bool(self.data_ok)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "file_ok": self.file_ok,
            "data_ok": self.data_ok,
            "file_sha256": self.file_sha256,
            "seal": self.seal.to_json() if self.seal else None,
            "readings_now": self.readings_now.to_json() if self.readings_now else None,
            "corrections_since_seal": self.corrections,
            "message": self.message,
        }


async def corrections_since(conn: psycopg.AsyncConnection, seal: Seal) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT station_id, param, measured_at, action, old_value, old_status, new_value,"
        " new_status, reason, actor, at FROM reading_corrections"
        " WHERE station_id = ANY(%s) AND measured_at >= %s AND measured_at < %s AND at > %s"
        " ORDER BY at, id",
        [list(seal.stations), seal.start, seal.end, seal.sealed_at],
    )
    keys = (
        "station",
        "param",
        "time",
        "action",
        "old_value",
        "old_status",
        "new_value",
        "new_status",
        "reason",
        "actor",
        "at",
    )
    out = []
    for row in await cur.fetchall():
        item = dict(zip(keys, row, strict=True))
        item["time"] = item["time"].isoformat()
        item["at"] = item["at"].isoformat()
        out.append(item)
    return out


async def verify_file(conn: psycopg.AsyncConnection, path: Path) -> Verdict:
    """Recompute the file's digest and its readings' digest and compare them with the seal."""
    data = path.read_bytes()
    digest = file_sha256(data)
    recorded = await find_seal(conn, digest)
    sidecar = sidecar_path(path)
    claimed: Seal | None = None
    if sidecar.exists():
        claimed = Seal.from_json(json.loads(sidecar.read_text(encoding="utf-8")))
    seal = recorded or claimed
    if seal is None:
        return Verdict(
            False,
            None,
            None,
            digest,
            None,
            [],
            "no seal: this file's content was never sealed by this quantrac (changed, or not a "
            "sealed report)",
        )
    file_ok = recorded is not None and digest == seal.file_sha256
    now = await readings_digest(
        conn, seal.stations, seal.start, seal.end, seal.request.get("params") or None
    )
    data_ok = now.sha256 == seal.readings.sha256
    corrections = await corrections_since(conn, seal)
    parts = []
    if file_ok:
        parts.append(f"file unchanged since {seal.sealed_at.isoformat()} (sha256 {digest})")
    elif claimed is not None and digest != claimed.file_sha256:
        parts.append(f"FILE CHANGED: its sha256 is {digest}, the seal says {claimed.file_sha256}")
    else:
        parts.append("FILE NOT RECORDED: its seal is not in this database")
    if data_ok:
        parts.append(f"stored readings unchanged ({now.count} readings, sha256 {now.sha256})")
    else:
        parts.append(
            f"STORED READINGS CHANGED: {seal.readings.count} readings then "
            f"(sha256 {seal.readings.sha256}), {now.count} now (sha256 {now.sha256}); "
            f"{len(corrections)} audited correction(s) since the seal"
        )
    return Verdict(file_ok, data_ok, seal, digest, now, corrections, "; ".join(parts))
