"""``quantrac check STATION_ID``: capture a station's traffic, judge it, write the report.

The I/O edge of the conformance check: listening on the MQTT topic, reading a TT10 folder or a
capture file, writing a capture file and the report. The verdict itself is
``quantrac.conformance.checks.check_station`` (pure).

Capture files are JSON lines, one message each::

    {"received_at": "2026-11-21T03:05:01.204+00:00", "topic": "stations/X/data",
     "payload": "<the payload as UTF-8 text>"}

with ``payload_base64`` instead of ``payload`` when the bytes are not UTF-8, and ``file``
instead of ``topic`` for a dropped file.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from quantrac.cli.util import add_lang_arg
from quantrac.conformance.checks import FILE, MQTT, Captured, check_station
from quantrac.conformance.report import FORMATS, render
from quantrac.core.catalog import CatalogError, load_catalog
from quantrac.core.contract import data_topic
from quantrac.core.mqtt import ClientFactory, MQTTConnectError, connect, make_client
from quantrac.core.registry import RegistryError, load_registry
from quantrac.core.settings import MqttEndpoint, Settings
from quantrac.ingest.validation import TimeLimits

DEFAULT_DURATION_S = 900.0  # three 5-minute cycles: enough to judge the cadence
EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class CaptureError(ValueError):
    pass


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- Capture files --------------------------------------------------------------------------------


def capture_line(item: Captured) -> str:
    body: dict[str, Any] = {"received_at": item.received_at.isoformat()}
    body["file" if item.kind == FILE else "topic"] = item.source
    try:
        body["payload"] = item.payload.decode("utf-8")
    except UnicodeDecodeError:
        body["payload_base64"] = base64.b64encode(item.payload).decode("ascii")
    return json.dumps(body, ensure_ascii=False)


def write_capture(path: Path, items: list[Captured]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for item in items:
            out.write(capture_line(item) + "\n")


def parse_capture(text: str, source: str = "<capture>") -> list[Captured]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
            received_at = datetime.fromisoformat(body["received_at"])
            if received_at.tzinfo is None:
                raise ValueError("received_at needs an offset")
            if "payload_base64" in body:
                payload = base64.b64decode(body["payload_base64"], validate=True)
            else:
                payload = str(body["payload"]).encode("utf-8")
            if "file" in body:
                items.append(Captured(received_at, str(body["file"]), payload, FILE))
            else:
                items.append(Captured(received_at, str(body["topic"]), payload, MQTT))
        except (ValueError, KeyError, TypeError) as exc:
            raise CaptureError(
                f"{source}:{number}: expected a JSON object with received_at, topic or file, "
                f"and payload or payload_base64 ({exc})"
            ) from None
    return items


def read_capture(path: Path) -> list[Captured]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptureError(f"{path}: {exc}") from None
    return parse_capture(text, str(path))


# --- A TT10 drop folder ---------------------------------------------------------------------------


def read_folder(folder: Path) -> list[Captured]:
    """Every file below ``folder`` (any layout), received at its modification time."""
    if not folder.is_dir():
        raise CaptureError(f"{folder}: not a folder")
    items = []
    for path in sorted(folder.rglob("*")):
        name = path.name
        if not path.is_file() or name.startswith(".") or name.endswith(".reason.json"):
            continue
        received = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        relative = path.relative_to(folder).as_posix()
        items.append(Captured(received, relative, path.read_bytes(), FILE))
    return sorted(items, key=lambda c: (c.received_at, c.source))


# --- Listening ------------------------------------------------------------------------------------


async def listen(
    endpoint: MqttEndpoint,
    station_id: str,
    *,
    duration: float,
    max_messages: int | None = None,
    ca_file: Path | None = None,
    protocol: str = "5",
    clock: Callable[[], datetime] = _utc_now,
    on_message: Callable[[int], None] | None = None,
    client_factory: ClientFactory = make_client,
) -> list[Captured]:
    """What arrives on ``stations/{station_id}/data`` within ``duration`` seconds.

    A plain subscription of its own, not the ingest share group, so ingest keeps receiving
    every message while the check runs beside it.
    """
    captured: list[Captured] = []
    enough = asyncio.Event()
    client = client_factory(f"quantrac-check-{uuid.uuid4().hex[:12]}", endpoint, clean_session=True)

    def received(client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        captured.append(Captured(clock(), topic, payload, MQTT))
        if on_message is not None:
            on_message(len(captured))
        if max_messages is not None and len(captured) >= max_messages:
            enough.set()
        return 0

    client.on_message = received
    try:
        await connect(client, endpoint, ca_file=ca_file, protocol=protocol)
    except BaseException:
        await client.disconnect()
        raise
    try:
        client.subscribe(data_topic(station_id), qos=1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), timeout=duration)
    finally:
        await client.disconnect()
    return captured


# --- The command ----------------------------------------------------------------------------------


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("station", metavar="STATION_ID", help="a station id of the registry")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--duration",
        "--listen",
        dest="duration",
        type=_positive,
        metavar="SECONDS",
        help=f"listen to stations/ID/data this long (default {DEFAULT_DURATION_S:.0f})",
    )
    source.add_argument("--folder", metavar="DIR", help="judge the TT10 .txt files in DIR")
    source.add_argument("--capture", metavar="FILE", help="judge a capture file (JSON lines)")
    parser.add_argument("--messages", type=int, metavar="N", help="stop listening after N messages")
    parser.add_argument(
        "--save-capture", metavar="FILE", help="also write what was heard to FILE (JSON lines)"
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="report format (default: from -o's extension .html/.json, else table)",
    )
    parser.add_argument("-o", "--output", metavar="REPORT", help="write the report to REPORT")
    add_lang_arg(parser, help="report language (vi, en)")


def register_check(sub: Any) -> None:
    """Add ``quantrac check`` to quantrac's subcommands."""
    parser = sub.add_parser(
        "check",
        help="vendor conformance check of a station's data (exit 0 pass, 1 fail, 2 usage)",
        description="Listen to a station's live MQTT stream (or read a TT10 folder or a capture "
        "file) and give a verdict per criterion of the message contract.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def _report_format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    suffix = Path(args.output).suffix.lower() if args.output else ""
    return {".html": "html", ".htm": "html", ".json": "json"}.get(suffix, "table")


async def _capture(args: argparse.Namespace, settings: Settings, station_id: str) -> list[Any]:
    if args.folder:
        return read_folder(Path(args.folder))
    if args.capture:
        return read_capture(Path(args.capture))
    duration = args.duration or DEFAULT_DURATION_S
    endpoint = settings.mqtt
    print(
        f"check: listening to {data_topic(station_id)} on {endpoint.host}:{endpoint.port} "
        f"for {duration:g} s …",
        file=sys.stderr,
        flush=True,
    )
    tty = sys.stderr.isatty()
    started = time.monotonic()

    def progress(count: int) -> None:
        if tty:
            elapsed = time.monotonic() - started
            sys.stderr.write(f"\r\x1b[K  {count} messages, {elapsed:.0f}/{duration:g} s")
            sys.stderr.flush()

    items = await listen(
        endpoint,
        station_id,
        duration=duration,
        max_messages=args.messages,
        ca_file=settings.mqtt_ca_file,
        protocol=settings.mqtt_protocol,
        on_message=progress,
    )
    if tty:
        sys.stderr.write("\r\x1b[K")
    return items


async def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        catalog = load_catalog(settings.catalog_path)
        registry = load_registry(settings.stations_path, catalog)
    except (OSError, CatalogError, RegistryError) as exc:
        print(f"check: cannot load the stations: {exc}", file=sys.stderr)
        return EXIT_USAGE
    station = registry.get(args.station)
    if station is None:
        print(
            f"check: station {args.station!r} is not in the registry {settings.stations_path}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.messages is not None and args.messages <= 0:
        print("check: --messages must be positive", file=sys.stderr)
        return EXIT_USAGE
    try:
        captured = await _capture(args, settings, station.id)
    except CaptureError as exc:
        print(f"check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, MQTTConnectError) as exc:
        endpoint = settings.mqtt
        print(f"check: MQTT broker {endpoint.host}:{endpoint.port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.save_capture:
        write_capture(Path(args.save_capture), captured)
    report = check_station(
        station,
        captured,
        registry=registry,
        catalog=catalog,
        local=settings.tt10_timezone,
        time_limits=TimeLimits(
            future_margin=timedelta(seconds=settings.future_margin_s),
            retention=settings.retention,
        ),
        max_payload_bytes=settings.max_payload_bytes,
        origin="folder" if args.folder else "capture" if args.capture else "live",
        origin_path=args.folder or args.capture or "",
    )
    fmt = _report_format(args)
    if args.output:
        text = render(report, fmt, args.lang, now=_utc_now())
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"check: {report.verdict}; report written to {args.output}", file=sys.stderr)
    else:
        color = fmt == "table" and sys.stdout.isatty()
        sys.stdout.write(render(report, fmt, args.lang, color=color, now=_utc_now()))
    return EXIT_PASS if report.passed else EXIT_FAIL
