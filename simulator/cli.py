"""``quantrac simulate``: arguments and the command itself (wired in by quantrac's CLI)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from gmqtt import MQTTConnectError

from ingest.catalog import CatalogError, load_catalog
from ingest.contract import VIETNAM_UTC_OFFSET
from ingest.registry import STATION_KINDS, RegistryError, load_registry
from ingest.settings import Settings
from simulator.fleet import synthetic_registry
from simulator.run import SimStats, simulate, write_files

PLAIN_PROGRESS_EVERY_S = 10.0


def _moment(text: str) -> datetime:
    """ISO-8601; without an offset it is Vietnamese local time, like the stations' clocks."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=VIETNAM_UTC_OFFSET)


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    fleet = parser.add_argument_group("fleet (default: the station registry of the settings)")
    fleet.add_argument(
        "--stations",
        type=_positive(int),
        metavar="N",
        help="simulate N synthetic stations instead of the registry",
    )
    fleet.add_argument(
        "--kind",
        choices=STATION_KINDS,
        default="air",
        help="kind of the synthetic stations (default: air)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--speed",
        type=_positive(float),
        metavar="X",
        help="replay from 6 h ago X times faster than real time, then go live",
    )
    mode.add_argument(
        "--rate",
        type=_positive(float),
        metavar="R",
        help="benchmark: R messages/s round-robin over the stations, past times",
    )
    parser.add_argument(
        "--interval",
        type=_positive(int),
        metavar="SECONDS",
        help="send every SECONDS instead of each station's cadence (demos)",
    )
    parser.add_argument(
        "--duration", type=_positive(float), metavar="SECONDS", help="stop after this many seconds"
    )
    parser.add_argument(
        "--messages", type=_positive(int), metavar="N", help="stop after N messages"
    )
    parser.add_argument(
        "--format", choices=("json", "tt10"), default="json", help="payload format (default: json)"
    )
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1, help="MQTT QoS (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    files = parser.add_argument_group("file drop (Circular 10/2021 .txt files, no MQTT)")
    files.add_argument("--files", metavar="DIR", help="write TT10 files into DIR and exit")
    files.add_argument(
        "--from",
        dest="from_time",
        type=_moment,
        metavar="TIME",
        help="first measured time (ISO-8601, default: one hour before --to)",
    )
    files.add_argument(
        "--to",
        dest="to_time",
        type=_moment,
        metavar="TIME",
        help="last measured time (ISO-8601, default: now)",
    )


class _ProgressPrinter:
    """One self-rewriting line on a terminal; a plain line every 10 s into logs and pipes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last_plain = time.monotonic()

    def __call__(self, stats: SimStats) -> None:
        if not self.tty and time.monotonic() - self._last_plain < PLAIN_PROGRESS_EVERY_S:
            return
        self._last_plain = time.monotonic()
        line = describe(stats)
        self.stream.write(f"\r\x1b[K{line}" if self.tty else line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")


def describe(stats: SimStats) -> str:
    text = (
        f"published {stats.published:,}  acknowledged {stats.acknowledged:,}  "
        f"in flight {stats.in_flight:,}  {stats.rate:,.0f} msg/s"
    )
    if stats.lost:
        text += f"  lost in reconnects {stats.lost:,}"
    if stats.simulated_time is not None:
        local = stats.simulated_time.astimezone(VIETNAM_UTC_OFFSET)
        text += f"  measured {local:%Y-%m-%d %H:%M:%S}+07"
    return text


async def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        catalog = load_catalog(settings.catalog_path)
        if args.stations:
            registry = synthetic_registry(args.stations, args.kind, catalog, args.seed)
        else:
            registry = load_registry(settings.stations_path, catalog)
    except (OSError, CatalogError, RegistryError) as exc:
        print(f"simulate: cannot load the stations: {exc}", file=sys.stderr)
        return 2

    if args.files:
        end = args.to_time or datetime.now(VIETNAM_UTC_OFFSET)
        start = args.from_time or end - timedelta(hours=1)
        written = write_files(Path(args.files), registry, start, end, seed=args.seed)
        print(
            f"simulate: wrote {len(written):,} files for {len(registry.stations)} stations "
            f"into {args.files}",
            file=sys.stderr,
        )
        return 0

    printer = _ProgressPrinter(sys.stderr)
    try:
        stats = await simulate(
            settings.mqtt,
            registry,
            seed=args.seed,
            speed=args.speed,
            rate=args.rate,
            interval=args.interval,
            duration=args.duration,
            messages=args.messages,
            fmt=args.format,
            qos=args.qos,
            on_progress=printer,
            ca_file=settings.mqtt_ca_file,
            protocol=settings.mqtt_protocol,
        )
    except (OSError, MQTTConnectError) as exc:
        printer.finish()
        print(
            f"simulate: MQTT broker {settings.mqtt.host}:{settings.mqtt.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    printer.finish()
    print(
        f"simulate: {describe(stats)} (average over {stats.elapsed_s:.1f} s, "
        f"{len(registry.stations)} stations)",
        file=sys.stderr,
    )
    return 0 if stats.in_flight == 0 else 1
