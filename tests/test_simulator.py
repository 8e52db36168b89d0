"""The station simulator: values, encodings, schedules and files without a broker; then runs
with scenarios, the command line and several processes against the session's Mosquitto."""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec
import pytest

from quantrac.core.catalog import Catalog, load_catalog
from quantrac.core.contract import JsonPayload
from quantrac.core.registry import Registry, Station, load_registry
from quantrac.core.settings import default_config_dir, parse_mqtt_url
from quantrac.core.time import VIETNAM
from quantrac.ingest.payloads import parse_payload
from quantrac.ingest.tt10 import parse_file_name, parse_lines
from quantrac.ingest.validation import TimeLimits, validate
from quantrac.simulator.encode import encode_message, tt10_file_name
from quantrac.simulator.fleet import STANDARD_PARAMETERS, synthetic_registry
from quantrac.simulator.run import _Progress, _run_clocked, rate_schedule, simulate, write_files
from quantrac.simulator.scenarios import scenarios_from_text
from quantrac.simulator.values import REFERENCE_UNITS, station_readings

DAY = datetime(2025, 3, 3, 17, 0, tzinfo=UTC)  # 00:00 on 4 March in Vietnam
LIMITS = TimeLimits(future_margin=timedelta(seconds=300), retention=timedelta(days=730))

# Plausible ranges, in the units every test station declares; wide on purpose, a model that
# drifts out of them produces data no real station would.
PLAUSIBLE = {
    "air": {
        "PM2,5": (3, 200),
        "PM10": (5, 300),
        "TSP": (8, 500),
        "NO2": (3, 120),
        "SO2": (2, 80),
        "CO": (150, 5000),
        "O3": (3, 200),
        "Temp": (15, 40),
        "RH": (30, 100),
    },
    "wastewater": {
        "Flow": (10, 1000),
        "Temp": (20, 40),
        "pH": (6.9, 7.5),
        "TSS": (3, 100),
        "COD": (10, 150),
        "BOD5": (4, 70),
        "NH4": (0.3, 15),
        "NO3": (0.5, 20),
        "TN": (2, 40),
        "TP": (0.2, 6),
        "PO4": (0.1, 4),
        "Color": (5, 150),
    },
    "emission": {
        "Flow": (20_000, 200_000),
        "Temp": (120, 160),
        "P": (99, 103.5),
        "O2": (6, 10),
        "PM": (30, 120),
        "SO2": (100, 400),
        "NOx": (150, 600),
        "CO": (50, 300),
    },
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(default_config_dir() / "parameters.yaml")


@pytest.fixture(scope="module")
def fleet(catalog: Catalog) -> list[Station]:
    """The shipped registry (TSP, BOD5, NO3, PO4, column A) plus synthetic stations."""
    shipped = load_registry(default_config_dir() / "stations.yaml", catalog)
    stations = list(shipped.stations.values())
    for kind in STANDARD_PARAMETERS:
        stations += synthetic_registry(3, kind, catalog, seed=7).stations.values()
    return stations


def day_of_steps(step_minutes: int = 5) -> list[datetime]:
    return [DAY + timedelta(minutes=m) for m in range(0, 24 * 60, step_minutes)]


def values(station: Station, moment: datetime, seed: int = 1) -> dict[str, float]:
    return {r.param: r.value for r in station_readings(station, moment, seed)}


def test_reference_units_agree_with_the_catalog(catalog: Catalog) -> None:
    for unit_id, (dimension, factor) in REFERENCE_UNITS.items():
        unit = catalog.unit(unit_id)
        assert unit is not None and (unit.dimension, unit.factor) == (dimension, factor)


def test_same_seed_and_time_give_identical_payloads(fleet: list[Station]) -> None:
    moment = DAY + timedelta(hours=8)
    for station in fleet:
        for fmt in ("json", "tt10"):
            first = encode_message(station, moment, seed=42, fmt=fmt, seq=5)
            assert first == encode_message(station, moment, seed=42, fmt=fmt, seq=5)
            assert first != encode_message(station, moment, seed=43, fmt=fmt, seq=5)
            later = moment + timedelta(minutes=5)
            assert first != encode_message(station, later, seed=42, fmt=fmt, seq=5)


def test_every_declared_parameter_stays_plausible_over_a_day(fleet: list[Station]) -> None:
    for station in fleet:
        ranges = PLAUSIBLE[station.kind]
        for moment in day_of_steps():
            readings = station_readings(station, moment, seed=3)
            assert [r.param for r in readings] == list(station.parameters)
            for reading in readings:
                low, high = ranges[reading.param]
                assert low <= reading.value <= high, (station.id, reading, moment)
                assert reading.unit == station.parameters[reading.param].unit.id
                assert reading.status == "00"


def test_no2_is_higher_at_rush_hour_than_at_3am(fleet: list[Station]) -> None:
    air = [s for s in fleet if "NO2" in s.parameters]
    days = [DAY + timedelta(days=d) for d in range(10)]

    def mean_no2(local_hour: int) -> float:
        return statistics.mean(
            values(station, day + timedelta(hours=local_hour, minutes=minute))["NO2"]
            for station in air
            for day in days
            for minute in range(0, 60, 5)
        )

    assert mean_no2(8) > 1.8 * mean_no2(3)
    assert mean_no2(18) > 1.8 * mean_no2(3)


def test_ozone_peaks_in_the_early_afternoon(fleet: list[Station]) -> None:
    air = [s for s in fleet if "O3" in s.parameters]
    by_hour = {
        hour: statistics.mean(
            values(s, DAY + timedelta(hours=hour, minutes=m))["O3"]
            for s in air
            for m in range(0, 60, 5)
        )
        for hour in range(24)
    }
    assert max(by_hour, key=by_hour.__getitem__) in (12, 13, 14, 15)


def test_dust_sizes_stay_ordered(fleet: list[Station]) -> None:
    for station in (s for s in fleet if s.kind == "air"):
        for moment in day_of_steps():
            v = values(station, moment)
            assert v["PM2,5"] < v["PM10"]
            if "TSP" in v:
                assert v["PM10"] < v["TSP"]


def test_wastewater_flow_follows_production_shifts(fleet: list[Station]) -> None:
    station = next(s for s in fleet if s.kind == "wastewater")
    day_flow = statistics.mean(
        values(station, DAY + timedelta(hours=10, minutes=m))["Flow"] for m in range(0, 60, 5)
    )
    night_flow = statistics.mean(
        values(station, DAY + timedelta(hours=2, minutes=m))["Flow"] for m in range(0, 60, 5)
    )
    assert day_flow > 2 * night_flow


def test_tt10_lines_parse_back_to_the_same_readings(fleet: list[Station]) -> None:
    moment = DAY + timedelta(hours=7, minutes=35)
    for station in fleet:
        text = encode_message(station, moment, seed=9, fmt="tt10").decode("utf-8")
        assert text.endswith("\r\n") and "\r\n" in text.rstrip("\r\n")
        assert "20250304073500" in text  # local time, no offset
        parsed, problems = parse_lines(text, VIETNAM)
        assert problems == []
        expected = station_readings(station, moment, seed=9)
        assert [(r.param, r.value, r.unit, r.status, r.time) for r in parsed] == [
            (r.param, r.value, r.unit, r.status, moment) for r in expected
        ]


def test_json_payloads_are_accepted_by_ingest(fleet: list[Station], catalog: Catalog) -> None:
    registry = Registry(stations={s.id: s for s in fleet})
    moment = DAY + timedelta(hours=13)
    for seq, station in enumerate(fleet, start=1):
        raw = encode_message(station, moment, seed=5, fmt="json", seq=seq)
        payload = msgspec.json.decode(raw, type=JsonPayload)
        assert (payload.station, payload.seq) == (station.id, seq)
        assert payload.time == "2025-03-04T13:00:00+07:00"
        for fmt_raw in (raw, encode_message(station, moment, seed=5, fmt="tt10")):
            parsed = parse_payload(fmt_raw, max_bytes=256 * 1024, local=VIETNAM)
            result = validate(
                parsed,
                topic_station=station.id,
                registry=registry,
                catalog=catalog,
                now=moment + timedelta(seconds=2),
                limits=LIMITS,
            )
            assert result.problems == []
            assert len(result.readings) == len(station.parameters)
            assert all(r.measured_at == moment for r in result.readings)


def test_rate_mode_never_stamps_the_future_and_steps_by_cadence(catalog: Catalog) -> None:
    stations = list(synthetic_registry(7, "emission", catalog).stations.values())
    now = datetime(2025, 3, 4, 10, 2, 17, tzinfo=UTC)
    schedule = list(rate_schedule(stations, 100, now))
    assert len(schedule) == 100
    assert [s.id for s, _ in schedule[:8]] == [s.id for s in stations] + [stations[0].id]
    assert max(moment for _, moment in schedule) <= now
    for station in stations:
        times = [moment for s, moment in schedule if s is station]
        assert all(b - a == timedelta(seconds=300) for a, b in pairwise(times))
        assert times[0].timestamp() % 300 == 0
    # 100 messages over 7 stations: 15 steps each, the latest one on the grid just before now.
    assert max(moment for _, moment in schedule) == datetime(2025, 3, 4, 10, 0, tzinfo=UTC)


class _NoPublisher:
    published = 0


async def test_accelerated_clock_catches_up_and_never_runs_ahead(catalog: Catalog) -> None:
    stations = list(synthetic_registry(2, "air", catalog).stations.values())
    wall_begun, monotonic_begun = datetime.now(UTC), time.monotonic()

    def clock() -> datetime:
        return wall_begun + timedelta(seconds=time.monotonic() - monotonic_begun)

    sent: list[tuple[str, datetime, datetime]] = []

    async def send(station: Station, moment: datetime) -> None:
        sent.append((station.id, moment, clock()))

    start = wall_begun - timedelta(hours=1)
    progress = _Progress(_NoPublisher(), None)  # type: ignore[arg-type]
    # 13 grid points per station from floor(start) to floor(now): all replayed, none ahead.
    await _run_clocked(
        stations,
        send,
        lambda: len(sent) >= 26,
        progress,
        clock,
        speed=36_000.0,
        start=start,
        interval=None,
    )
    assert time.monotonic() - monotonic_begun < 5
    assert all(moment <= wall for _, moment, wall in sent)
    for station in stations:
        times = [moment for sid, moment, _ in sent if sid == station.id]
        assert len(times) == 13 and times[0] <= start < times[0] + timedelta(seconds=300)
        assert all(b - a == timedelta(seconds=300) for a, b in pairwise(times))


def test_file_drop_names_match_circular_10(tmp_path: Path, catalog: Catalog) -> None:
    registry = synthetic_registry(2, "wastewater", catalog)
    start = datetime(2025, 3, 4, 8, 0, tzinfo=VIETNAM)
    written = write_files(tmp_path, registry, start, start + timedelta(minutes=30), seed=1)
    assert len(written) == 2 * 7  # 08:00 … 08:30 inclusive, every 5 minutes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    for path in written:
        name = parse_file_name(path.name, VIETNAM)
        station = registry.for_file_prefix(name.prefix, name.station)
        assert station is not None
        assert path.read_bytes() == encode_message(station, name.stamped_at, seed=1, fmt="tt10")
    assert written[0].name == "BacNinh_SIM_WW0001_20250304080000.txt"


def test_file_name_without_ftp_name_still_matches_the_pattern(fleet: list[Station]) -> None:
    station = dataclasses.replace(fleet[0], ftp_name=None)
    name = tt10_file_name(station, DAY)
    assert parse_file_name(name, VIETNAM).stamped_at == DAY


# --- Against the broker ---------------------------------------------------------------------------


async def _record(servers: Any, run: Any, count: int) -> list[tuple[str, bytes]]:
    from tests.conftest import Subscriber

    listener = await Subscriber(servers.mqtt_url).start("stations/+/data")
    try:
        await run()
        return list(await listener.wait_for(count, timeout=20))
    finally:
        await listener.stop()


@pytest.mark.integration
async def test_scenario_runs_over_mqtt_are_repeatable(servers: Any, catalog: Catalog) -> None:
    registry = synthetic_registry(3, "wastewater", catalog)
    scenarios = scenarios_from_text(
        "scenarios:\n"
        "  - {kind: outage, station: SIM_WW_0001, start: 0m, duration: 20m}\n"
        "  - {kind: calibration, station: SIM_WW_0002, param: COD}\n"
        "  - {kind: duplicates, station: SIM_WW_0003, probability: 0.5}\n",
        "t",
        registry,
    )
    endpoint = parse_mqtt_url(servers.mqtt_url)
    now = datetime(2025, 3, 4, 10, 2, tzinfo=UTC)

    async def run() -> None:
        stats = await simulate(
            endpoint,
            registry,
            seed=11,
            rate=5000,
            messages=24,
            scenarios=scenarios,
            clock=lambda: now,
            client_id=f"sim-{uuid.uuid4().hex[:6]}",
        )
        assert stats.in_flight == 0 and stats.effects["outage"] == 4

    first = await _record(servers, run, 24 - 4 + 4)
    second = await _record(servers, run, len(first))
    assert first == second
    by_station: dict[str, list[bytes]] = {}
    for topic, payload in first:
        by_station.setdefault(topic.split("/")[1], []).append(payload)
    assert len(by_station["SIM_WW_0001"]) == 8 - 4  # the first 20 minutes were an outage
    assert all(
        b'"param":"COD","value"' in p and b'"status":"01"' in p for p in by_station["SIM_WW_0002"]
    )
    assert 8 < len(by_station["SIM_WW_0003"]) < 16  # some sent twice


@pytest.mark.integration
async def test_command_line_scenario_errors_exit_2(tmp_path: Path, capsys: Any) -> None:
    from quantrac.cli.main import build_parser
    from quantrac.core.settings import load_settings

    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios:\n  - kind: outage\n    station: NOWHERE\n", encoding="utf-8")
    args = build_parser().parse_args(["simulate", "--scenario", str(bad), "--messages", "1"])
    assert await args.handler(load_settings({}), args) == 2
    assert f"{bad}:3: scenarios[0].station" in capsys.readouterr().err


@pytest.mark.integration
async def test_processes_share_the_stations_and_the_messages(servers: Any, capsys: Any) -> None:
    from quantrac.cli.simulate import add_arguments, run
    from quantrac.core.settings import load_settings

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--stations", "4", "--rate", "1000", "--messages", "41", "--processes", "2"]
    )
    settings = load_settings({}, mqtt_url=servers.mqtt_url)

    async def go() -> None:
        assert await run(args, settings) == 0

    received = await _record(servers, go, 41)
    assert len(received) == 41
    assert len({topic for topic, _ in received}) == 4
    assert "published 41" in capsys.readouterr().err
