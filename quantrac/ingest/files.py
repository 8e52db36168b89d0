"""File drop: Circular 10/2021 ``.txt`` files that an FTP server writes into a folder.

Any folder layout is accepted; the station comes from the file name
``Province_Facility_Station_yyyyMMddHHmmss.txt``. After its batch is committed a file moves to
``done/`` (with a ``.reason.json`` beside it if some lines were rejected) or, when nothing in
it could be stored, to ``rejected/`` with its reason file. A file delivered twice stores nothing
twice: its readings are duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from quantrac.core.contract import ParsedPayload, Problem, Reason
from quantrac.core.registry import Registry
from quantrac.ingest import tt10
from quantrac.ingest.payloads import decode_text, excerpt
from quantrac.ingest.receiver import Receiver
from quantrac.ingest.storable import storable_key

log = logging.getLogger(__name__)

DONE = "done"
REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class FileOutcome:
    path: Path
    moved_to: Path
    station_id: str | None
    stored: int
    duplicates: int
    problems: list[Problem]
    rejected: bool  # moved to rejected/: nothing in it could be stored


def _decode(raw: bytes) -> str | Problem:
    """The file's text: by its byte-order mark (UTF-8, UTF-16, UTF-32), else UTF-8, else the
    Windows code page older dataloggers use for the degree sign. UTF-16 without a mark, or
    broken after its mark, is refused."""
    try:
        return decode_text(raw)[0]
    except UnicodeDecodeError as exc:
        if exc.encoding == "utf-8" and raw.find(0) < 0:
            return raw.decode("cp1252", "replace")
        return Problem(
            Reason.PAYLOAD_ENCODING,
            "file",
            excerpt(raw, 80),
            f"file is not {exc.encoding.upper()} ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8",
        )


def _unique_target(target: Path) -> Path:
    if not target.exists():
        return target
    for n in range(1, 10_000):
        candidate = target.with_name(f"{target.name}.{n}")
        if not candidate.exists():
            return candidate
    raise RuntimeError(f"too many copies of {target.name} in {target.parent}")


# The source of files ingested with `quantrac ingest-files --historical`: backfill, whose alerts
# are recorded as historical and never paged (quantrac.alerts.maintenance.is_historical).
HISTORICAL_SOURCE = "file:historical"


def _account_station(path: Path, root: Path, registry: Registry) -> str | None:
    """The station whose FTP account delivered ``path``: its top folder under the watched
    folder, when that folder is a station id (one account per station, chrooted there). A file
    at the top, or under a folder that names no station, has no account to check."""
    parts = path.relative_to(root).parts
    if len(parts) < 2 or registry.get(parts[0]) is None:
        return None
    return parts[0]


async def ingest_file(
    path: Path, root: Path, receiver: Receiver, source: str = "file"
) -> FileOutcome:
    received_at = receiver.clock()
    receiver.metrics.message("file")
    with path.open("rb") as fh:
        # A file beyond the limit is refused whole: reading more of it would only cost memory
        # (its sha256, logged, is then that of the part read).
        raw = fh.read(receiver.max_payload_bytes + 1)
    name = path.name
    registry = receiver.registry()
    station_id = None
    try:
        file_name = tt10.parse_file_name(name, receiver.local)
    except ValueError as exc:
        parsed = ParsedPayload(
            "tt10", None, None, None, problems=[Problem(Reason.FILE_NAME, "file", name, str(exc))]
        )
    else:
        station = registry.for_file_prefix(file_name.prefix, file_name.station)
        if station is None:
            parsed = ParsedPayload(
                "tt10",
                None,
                None,
                None,
                problems=[
                    Problem(
                        Reason.STATION_UNKNOWN,
                        "file",
                        name,
                        f"no station in the registry has ftp_name {file_name.prefix!r} or id "
                        f"{file_name.station!r}",
                    )
                ],
            )
        else:
            station_id = station.id
            local = station.utc_offset or receiver.local
            account = _account_station(path, root, registry)
            if account is not None and account != station.id:
                parsed = ParsedPayload(
                    "tt10",
                    None,
                    None,
                    None,
                    problems=[
                        Problem(
                            Reason.STATION_MISMATCH,
                            "file",
                            name,
                            f"a file of station {station.id} delivered in the folder of station "
                            f"{account} (its FTP account): each account delivers its own "
                            "station's files only",
                            {"station": station.id, "account": account},
                        )
                    ],
                )
            elif len(raw) > receiver.max_payload_bytes:
                parsed = ParsedPayload(
                    "tt10",
                    None,
                    None,
                    None,
                    problems=[
                        Problem(
                            Reason.PAYLOAD_TOO_LARGE,
                            "file",
                            f"{path.stat().st_size} bytes",
                            f"file larger than {receiver.max_payload_bytes} bytes",
                        )
                    ],
                )
            else:
                text = _decode(raw)
                if isinstance(text, Problem):
                    parsed = ParsedPayload("tt10", None, None, None, problems=[text])
                else:
                    readings, problems = tt10.parse_lines(text, local)
                    parsed = ParsedPayload(
                        "tt10", None, None, None, readings=readings, problems=problems
                    )
    item = receiver.build_item(
        parsed,
        topic=f"file:{name}",
        topic_station=station_id,
        source=source,
        received_at=received_at,
        payload_excerpt=excerpt(raw),
    )
    item.file_sha256 = hashlib.sha256(raw).hexdigest()
    committed = await receiver.pipeline.submit(item)
    problems = [*committed.problems, *committed.conflicts]
    accepted_any = committed.stored or committed.duplicates
    folder = DONE if accepted_any or not problems else REJECTED
    relative = path.relative_to(root)
    target = _unique_target(root / folder / relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    path.rename(target)
    if problems:
        reason = {
            "file": storable_key(name),
            "station": committed.station_id,
            "received_at": received_at.isoformat(),
            "stored": committed.stored,
            "duplicates": committed.duplicates,
            "rejected": len(problems),
            "problems": [p.to_json() for p in problems],
        }
        # A file name with undecodable bytes holds lone surrogates: keep them visible, escaped.
        target.with_name(target.name + ".reason.json").write_bytes(
            json.dumps(reason, ensure_ascii=False, indent=2).encode("utf-8", "backslashreplace")
        )
    log.info(
        "file ingested",
        extra={
            "event": "file_ingested",
            "file": storable_key(name),
            "folder": folder,
            "stored": committed.stored,
            "duplicates": committed.duplicates,
            "rejected": len(problems),
        },
    )
    return FileOutcome(
        path,
        target,
        committed.station_id,
        committed.stored,
        committed.duplicates,
        problems,
        rejected=folder == REJECTED,
    )


def pending_files(root: Path, settle_s: float = 0.0) -> list[Path]:
    """Files waiting in the drop folder, oldest first; skips done/, rejected/ and files an FTP
    upload may still be writing (modified less than ``settle_s`` ago)."""
    now = time.time()
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        top = path.relative_to(root).parts[0]
        if top in (DONE, REJECTED):
            continue
        if settle_s and now - path.stat().st_mtime < settle_s:
            continue
        found.append(path)
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


async def ingest_folder(
    root: Path, receiver: Receiver, settle_s: float = 0.0, source: str = "file"
) -> list[FileOutcome]:
    """Ingest every waiting file concurrently, so they share batches. A file that cannot be
    read or moved is logged and left in place (tried again next time); it never stops the
    others."""
    files = pending_files(root, settle_s)
    results = await asyncio.gather(
        *(ingest_file(p, root, receiver, source) for p in files), return_exceptions=True
    )
    outcomes = []
    for path, result in zip(files, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, asyncio.CancelledError):
                raise result
            log.error(
                "file not ingested: %s",
                result,
                exc_info=result,
                extra={"event": "file_error", "file": storable_key(path.name)},
            )
            continue
        outcomes.append(result)
    return outcomes


async def watch_folder(root: Path, receiver: Receiver, poll_s: float, stop: asyncio.Event) -> None:
    root.mkdir(parents=True, exist_ok=True)
    while not stop.is_set():
        try:
            await ingest_folder(root, receiver, settle_s=2.0)
        except Exception as exc:  # the watcher lives on: next poll, next try
            log.error("file drop folder error: %s", exc, extra={"event": "file_drop_error"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_s)
