"""``quantrac simulate``: arguments and the command itself (wired in by quantrac's CLI)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import queue
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from quantrac.core.catalog import CatalogError, load_catalog
from quantrac.core.mqtt import MQTTConnectError
from quantrac.core.registry import STATION_KINDS, Registry, RegistryError, load_registry
from quantrac.core.settings import Settings
from quantrac.core.time import VIETNAM
from quantrac.simulator.fleet import synthetic_registry
from quantrac.simulator.run import SimStats, simulate, write_files
from quantrac.simulator.scenarios import ScenarioError, ScenarioSet, ScenarioSummary, load_scenarios

PLAIN_PROGRESS_EVERY_S = 10.0


def _moment(text: str) -> datetime:
    """ISO-8601; without an offset it is Vietnamese local time, like the stations' clocks."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=VIETNAM)


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
    parser.add_argument(
        "--scenario",
        metavar="FILE",
        help="apply the episodes of a scenario file (config/scenarios/*.yaml; times relative "
        "to the first measured time, in simulated time)",
    )
    parser.add_argument(
        "--processes",
        type=_positive(int),
        default=1,
        metavar="N",
        help="split the stations over N processes (for loads beyond one core)",
    )
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
        local = stats.simulated_time.astimezone(VIETNAM)
        text += f"  measured {local:%Y-%m-%d %H:%M:%S}+07"
    return text


def _load(args: argparse.Namespace, settings: Settings) -> tuple[Registry, ScenarioSet | None]:
    catalog = load_catalog(settings.catalog_path)
    if args.stations:
        registry = synthetic_registry(args.stations, args.kind, catalog, args.seed)
    else:
        registry = load_registry(settings.stations_path, catalog)
    scenarios = load_scenarios(args.scenario, registry) if args.scenario else None
    return registry, scenarios


def _shard(registry: Registry, index: int, count: int) -> Registry:
    stations = list(registry.stations.values())[index::count]
    return Registry({s.id: s for s in stations}, f"{registry.source} [{index + 1}/{count}]")


def _split(total: float | None, index: int, count: int) -> Any:
    if total is None:
        return None
    if isinstance(total, int):
        return total // count + (1 if index < total % count else 0)
    return total / count


async def _simulate(
    args: argparse.Namespace,
    settings: Settings,
    registry: Registry,
    scenarios: ScenarioSet | None,
    on_progress: Callable[[SimStats], None] | None,
    index: int = 0,
    count: int = 1,
) -> SimStats:
    return await simulate(
        settings.mqtt,
        _shard(registry, index, count) if count > 1 else registry,
        seed=args.seed,
        speed=args.speed,
        rate=_split(args.rate, index, count),
        interval=args.interval,
        duration=args.duration,
        messages=_split(args.messages, index, count),
        fmt=args.format,
        qos=args.qos,
        on_progress=on_progress,
        ca_file=settings.mqtt_ca_file,
        protocol=settings.mqtt_protocol,
        scenarios=scenarios,
    )


def _shard_process(
    args: argparse.Namespace, settings: Settings, index: int, counters: Any, results: Any
) -> None:
    """One of --processes N: its share of the stations, of the rate and of the messages."""
    registry, scenarios = _load(args, settings)
    slot = index * 3

    def report(stats: SimStats) -> None:
        counters[slot : slot + 3] = [stats.published, stats.acknowledged, stats.in_flight]

    try:
        stats = asyncio.run(
            _simulate(args, settings, registry, scenarios, report, index, args.processes)
        )
    except Exception as exc:  # the parent reports it; a traceback per child helps nobody
        results.put((index, None, f"{type(exc).__name__}: {exc}"))
        return
    report(stats)
    results.put((index, stats, None))


async def _run_processes(
    args: argparse.Namespace, settings: Settings, printer: _ProgressPrinter
) -> SimStats:
    # spawn, not fork: the parent is inside a running asyncio loop.
    context = multiprocessing.get_context("spawn")
    count = args.processes
    counters = context.Array("d", 3 * count, lock=False)
    results = context.Queue()
    children = [
        context.Process(
            target=_shard_process, args=(args, settings, i, counters, results), daemon=True
        )
        for i in range(count)
    ]
    started = time.monotonic()
    for child in children:
        child.start()
    outcomes: dict[int, tuple[SimStats | None, str | None]] = {}
    last_published = 0.0
    last_at = started
    try:
        while len(outcomes) < count:
            await asyncio.sleep(1.0)
            with contextlib.suppress(queue.Empty):
                while True:
                    index, stats, error = results.get_nowait()
                    outcomes[index] = (stats, error)
            if not any(c.is_alive() for c in children) and results.empty():
                for i in range(count):
                    outcomes.setdefault(i, (None, "process ended without a result"))
            now = time.monotonic()
            published = sum(counters[0::3])
            printer(
                SimStats(
                    int(published),
                    int(sum(counters[1::3])),
                    int(sum(counters[2::3])),
                    0,
                    now - started,
                    (published - last_published) / max(now - last_at, 1e-9),
                    None,
                )
            )
            last_published, last_at = published, now
    finally:
        for child in children:
            child.join(timeout=5)
    errors = [e for _, e in outcomes.values() if e]
    if errors:
        raise OSError("; ".join(sorted(set(errors))))
    finals = [s for s, _ in outcomes.values() if s is not None]
    elapsed = max(s.elapsed_s for s in finals)
    effects: dict[str, int] = {}
    for s in finals:
        for kind, n in s.effects.items():
            effects[kind] = effects.get(kind, 0) + n
    published = sum(s.published for s in finals)
    return SimStats(
        published,
        sum(s.acknowledged for s in finals),
        sum(s.in_flight for s in finals),
        sum(s.lost for s in finals),
        elapsed,
        published / elapsed if elapsed > 0 else 0.0,
        max((s.simulated_time for s in finals if s.simulated_time), default=None),
        effects,
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        registry, scenarios = _load(args, settings)
    except (OSError, CatalogError, RegistryError) as exc:
        print(f"simulate: cannot load the stations: {exc}", file=sys.stderr)
        return 2
    except ScenarioError as exc:
        print(f"simulate: invalid scenario file:\n{exc}", file=sys.stderr)
        return 2
    if args.processes > len(registry.stations):
        print("simulate: --processes cannot exceed the number of stations", file=sys.stderr)
        return 2

    if args.files:
        end = args.to_time or datetime.now(VIETNAM)
        start = args.from_time or end - timedelta(hours=1)
        written = write_files(
            Path(args.files), registry, start, end, seed=args.seed, scenarios=scenarios
        )
        print(
            f"simulate: wrote {len(written):,} files for {len(registry.stations)} stations "
            f"into {args.files}",
            file=sys.stderr,
        )
        return 0

    printer = _ProgressPrinter(sys.stderr)
    try:
        if args.processes > 1:
            stats = await _run_processes(args, settings, printer)
        else:
            stats = await _simulate(args, settings, registry, scenarios, printer)
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
        f"{len(registry.stations)} stations, {args.processes} process(es))",
        file=sys.stderr,
    )
    if scenarios is not None:
        summary = ScenarioSummary(stats.effects).describe()
        print(f"simulate: scenarios from {args.scenario}: {summary}", file=sys.stderr)
    return 0 if stats.in_flight == 0 else 1
