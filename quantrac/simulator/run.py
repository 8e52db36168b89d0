"""Drive a fleet: live, accelerated (``speed``) or fixed-rate (``rate``) publishing, or TT10 files.

Measured times sit on each station's cadence grid (…:00, …:05 for 300 s), as dataloggers
stamp them, and are never later than the wall clock.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from quantrac.core.contract import data_topic
from quantrac.core.registry import Registry, Station
from quantrac.core.settings import MqttEndpoint
from quantrac.simulator.encode import FORMATS, encode_message, tt10_file_name, write_file_bytes
from quantrac.simulator.publisher import DEFAULT_MAX_IN_FLIGHT, Publisher, StationPublishers
from quantrac.simulator.scenarios import Message, ScenarioPlayer, ScenarioSet, load_scenarios

DEFAULT_SPEED_BACKLOG = timedelta(hours=6)
PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class SimStats:
    published: int
    acknowledged: int
    in_flight: int
    lost: int
    elapsed_s: float
    rate: float  # messages/s since the previous report (the average in the final stats)
    simulated_time: datetime | None  # measured time of the latest message
    effects: dict[str, int] = field(default_factory=dict)  # what the scenarios did, by kind


ProgressCallback = Callable[[SimStats], None]
Sender = Callable[[Station, datetime], Awaitable[None]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def grid_floor(moment: datetime, cadence_s: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % cadence_s, tz=UTC)


def rate_schedule(
    stations: list[Station], messages: int, now: datetime, cadence_s: int | None = None
) -> Iterator[tuple[Station, datetime]]:
    """Round-robin over stations; each station's time advances one cadence per message and
    starts far enough back that its last message is not after ``now``."""
    per_station = math.ceil(messages / len(stations))
    starts = []
    for station in stations:
        cadence = cadence_s or station.cadence_s
        starts.append(
            (
                grid_floor(now, cadence) - timedelta(seconds=(per_station - 1) * cadence),
                timedelta(seconds=cadence),
            )
        )
    for index in range(messages):
        step, position = divmod(index, len(stations))
        first, step_length = starts[position]
        yield stations[position], first + step * step_length


class _Progress:
    def __init__(
        self, publisher: Publisher | StationPublishers, callback: ProgressCallback | None
    ) -> None:
        self.publisher = publisher
        self.player: ScenarioPlayer | None = None
        self.callback = callback
        self.started = time.monotonic()
        self._last_at = self.started
        self._last_count = 0
        self.simulated_time: datetime | None = None

    def snapshot(self, rate: float) -> SimStats:
        s = self.publisher.stats
        return SimStats(
            s.published,
            s.acknowledged,
            s.in_flight,
            s.lost,
            time.monotonic() - self.started,
            rate,
            self.simulated_time,
            dict(self.player.effects) if self.player else {},
        )

    def tick(self) -> None:
        now = time.monotonic()
        if self.callback is None or now - self._last_at < PROGRESS_EVERY_S:
            return
        published = self.publisher.published
        rate = (published - self._last_count) / (now - self._last_at)
        self._last_at, self._last_count = now, published
        self.callback(self.snapshot(rate))

    def final(self) -> SimStats:
        elapsed = time.monotonic() - self.started
        return self.snapshot(self.publisher.published / elapsed if elapsed > 0 else 0.0)


async def simulate(
    endpoint: MqttEndpoint,
    registry: Registry,
    *,
    seed: int = 0,
    speed: float | None = None,
    start: datetime | None = None,
    rate: float | None = None,
    interval: int | None = None,
    duration: float | None = None,
    messages: int | None = None,
    fmt: str = "json",
    qos: int = 1,
    on_progress: ProgressCallback | None = None,
    ca_file: Path | None = None,
    client_id: str | None = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    protocol: str = "5",
    clock: Callable[[], datetime] = _utc_now,
    scenarios: ScenarioSet | None = None,
    credentials: dict[str, str] | None = None,
) -> SimStats:
    """Publish the registry's stations until ``duration`` s or ``messages`` are reached (or
    forever). Live by default; ``speed`` replays from ``start``; ``rate`` sends msg/s.

    ``scenarios`` (times relative to the run's first measured time) change what is sent; the
    messages they hold back (backlog, out-of-order) are sent before the run ends.

    ``credentials`` (station id → secret) makes each station publish on its own connection,
    signed in as itself, as the broker's ACL expects of real stations."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if speed is not None and rate is not None:
        raise ValueError("choose speed or rate, not both")
    if (speed is not None and speed <= 0) or (rate is not None and rate <= 0):
        raise ValueError("speed and rate must be positive")
    if interval is not None and interval < 1:
        raise ValueError("interval must be at least 1 s (TT10 times have whole seconds)")
    stations = list(registry.stations.values())
    if not stations:
        raise ValueError("the registry has no stations")
    if rate is not None and messages is None:
        if duration is None:
            raise ValueError("rate mode needs messages or duration")
        messages = math.ceil(rate * duration)

    options: dict[str, Any] = {
        "qos": qos,
        "client_id": client_id,
        "max_in_flight": max_in_flight,
        "ca_file": ca_file,
        "protocol": protocol,
    }
    publisher: Publisher | StationPublishers = (
        Publisher(endpoint, **options)
        if credentials is None
        else StationPublishers(endpoint, _station_credentials(stations, credentials), **options)
    )
    await publisher.connect()
    progress = _Progress(publisher, on_progress)
    deadline = None if duration is None else progress.started + duration
    sequence: dict[str, int] = {}
    player = None if scenarios is None else ScenarioPlayer(scenarios, seed=seed, fmt=fmt)
    progress.player = player

    def out_of_budget() -> bool:
        return (messages is not None and publisher.published >= messages) or (
            deadline is not None and time.monotonic() >= deadline
        )

    async def send(station: Station, moment: datetime) -> None:
        seq = sequence[station.id] = sequence.get(station.id, 0) + 1
        if player is None:
            payload = encode_message(station, moment, seed=seed, fmt=fmt, seq=seq)
            await publisher.publish(data_topic(station.id), payload)
        else:
            await send_all(player.emit(station, moment, seq))
        progress.simulated_time = moment
        progress.tick()

    async def send_all(batch: list[Message]) -> None:
        for message in batch:
            await publisher.publish(data_topic(message.station.id), message.encode(fmt))

    try:
        if rate is not None:
            assert messages is not None
            begun = time.monotonic()
            for index, (station, moment) in enumerate(
                rate_schedule(stations, messages, clock(), interval)
            ):
                if out_of_budget():
                    break
                ahead = begun + index / rate - time.monotonic()
                if ahead > 0.001:
                    await asyncio.sleep(ahead)
                elif index % 100 == 0:
                    await asyncio.sleep(0)  # let PUBACKs and socket writes through
                await send(station, moment)
        else:
            await _run_clocked(
                stations,
                send,
                out_of_budget,
                progress,
                clock,
                speed=speed or 1.0,
                start=None if speed is None else start or clock() - DEFAULT_SPEED_BACKLOG,
                interval=interval,
            )
        if player is not None:
            await send_all(player.finish())
    finally:
        await publisher.close(timeout=10.0)
    return progress.final()


def _station_credentials(stations: list[Station], credentials: dict[str, str]) -> dict[str, str]:
    missing = [s.id for s in stations if s.id not in credentials]
    if missing:
        raise ValueError(f"no broker credentials for {', '.join(missing)}")
    return {s.id: credentials[s.id] for s in stations}


async def simulate_scenario_file(
    endpoint: MqttEndpoint, registry: Registry, scenario_path: Path | str, **options: Any
) -> SimStats:
    """``simulate`` with the scenarios of a YAML file, checked against ``registry`` first
    (raises ScenarioError naming file, line and field). For the demo: run it live, e.g.
    ``simulate_scenario_file(endpoint, registry, "config/scenarios/demo.yaml", seed=2026,
    interval=10, client_id="quantrac-demo-live")``."""
    return await simulate(
        endpoint, registry, scenarios=load_scenarios(scenario_path, registry), **options
    )


async def _run_clocked(
    stations: list[Station],
    send: Sender,
    out_of_budget: Callable[[], bool],
    progress: _Progress,
    clock: Callable[[], datetime],
    *,
    speed: float,
    start: datetime | None,
    interval: int | None,
) -> None:
    """Each station transmits at its cadence on a simulated clock that runs ``speed``× from
    ``start`` and, once it reaches the wall clock, stays on it (live)."""
    wall_begun = clock()
    origin = start or wall_begun
    queue: list[tuple[datetime, int]] = []
    for index, station in enumerate(stations):
        heapq.heappush(queue, (grid_floor(origin, interval or station.cadence_s), index))
    sent_since_yield = 0
    while not out_of_budget():
        due, index = queue[0]
        wall = clock()
        simulated = min(wall, origin + (wall - wall_begun) * speed)
        if due > simulated:
            pace = 1.0 if simulated == wall else speed
            await asyncio.sleep(min((due - simulated).total_seconds() / pace, PROGRESS_EVERY_S))
            progress.tick()
            continue
        cadence = timedelta(seconds=interval or stations[index].cadence_s)
        heapq.heapreplace(queue, (due + cadence, index))
        await send(stations[index], due)
        sent_since_yield += 1
        if sent_since_yield >= 100:
            sent_since_yield = 0
            await asyncio.sleep(0)  # a fleet's burst must not starve PUBACK handling


RESENT_FOLDER = "resent"


def write_files(
    folder: Path,
    registry: Registry,
    start: datetime,
    end: datetime,
    seed: int = 0,
    scenarios: ScenarioSet | None = None,
) -> list[Path]:
    """One TT10 file per station per cadence step with ``start`` ≤ measured time ≤ ``end``.

    Scenario times count from ``start``. A file sent twice (duplicates) lands again in the
    ``resent/`` subfolder, as an FTP client retrying an upload into another folder would."""
    folder.mkdir(parents=True, exist_ok=True)
    player = ScenarioPlayer(scenarios, seed=seed, origin=start, fmt="tt10")
    written: list[Path] = []
    seen: set[str] = set()

    def write(message: Message) -> None:
        name = tt10_file_name(message.station, message.stamp)
        path = folder / RESENT_FOLDER / name if name in seen else folder / name
        seen.add(name)
        written.append(write_file_bytes(path, message.encode("tt10")))

    for station in registry.stations.values():
        moment = grid_floor(start, station.cadence_s)
        if moment < start:
            moment += timedelta(seconds=station.cadence_s)
        while moment <= end:
            for message in player.emit(station, moment):
                write(message)
            moment += timedelta(seconds=station.cadence_s)
    for message in player.finish():
        write(message)
    return written
