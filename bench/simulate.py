"""Simulator throughput against the broker's own rates, measured in one run.

    python bench/simulate.py [--messages 100000] [--stations 1000]

Starts a private Mosquitto and measures, for the same kind of traffic (ambient-air stations,
8 readings per message, rate mode with no pacing):

1. generation: the simulator building and encoding messages with no MQTT at all (its CPU
   ceiling);
2. mosquitto_pub: the C client publishing the same JSON payloads, one per line of stdin
   (``-l``), QoS 1 — what this broker takes from one fast publisher;
3. the simulator publishing: QoS 1 and QoS 0 JSON, QoS 1 TT10 text, QoS 1 JSON with 17
   readings per message, and ``quantrac simulate --processes 2``.

While each publisher runs, ``mosquitto_sub -q 1`` counts the messages the broker delivers, so
every publishing rate comes with the delivery rate of the same run. readings/s = messages/s ×
readings per message. Results go to bench/results/simulate-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import scratch_folder
from quantrac.core.catalog import Catalog, load_catalog
from quantrac.core.contract import data_topic
from quantrac.core.registry import DeclaredParameter, Registry
from quantrac.core.settings import default_config_dir, parse_mqtt_url
from quantrac.localservers import MosquittoServer
from quantrac.simulator.fleet import synthetic_registry
from quantrac.simulator.run import rate_schedule, simulate
from quantrac.simulator.scenarios import ScenarioPlayer

EXTRA_PARAMETERS = [
    ("TSP", "µg/m3"),
    ("NO", "µg/m3"),
    ("NOx", "µg/m3"),
    ("H2S", "µg/m3"),
    ("P", "kPa"),
    ("WS", "m/s"),
    ("WD", "degree"),
    ("SR", "W/m2"),
    ("Rain", "mm"),
]
UNPACED = 1e12  # messages/s: never wait


def wider(registry: Registry, catalog: Catalog) -> Registry:
    """The same stations with 17 readings per message instead of 8."""
    extra = {}
    for code, unit in EXTRA_PARAMETERS:
        found = catalog.unit(unit)
        assert found is not None
        extra[code] = DeclaredParameter(code, found)
    return Registry(
        {
            sid: dataclasses.replace(s, parameters={**s.parameters, **extra})
            for sid, s in registry.stations.items()
        }
    )


def readings_per_message(registry: Registry) -> int:
    return len(next(iter(registry.stations.values())).parameters)


def generation_rate(registry: Registry, messages: int, fmt: str) -> float:
    stations = list(registry.stations.values())
    player = ScenarioPlayer(None, seed=1, fmt=fmt)
    started = time.perf_counter()
    for station, moment in rate_schedule(stations, messages, datetime.now(UTC)):
        for message in player.emit(station, moment):
            message.encode(fmt)
    return messages / (time.perf_counter() - started)


class Counter:
    """``mosquitto_sub`` counting what the broker delivers (QoS 1), started before a run."""

    def __init__(self, port: int, count: int) -> None:
        self.count = count
        self.process = subprocess.Popen(
            [
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-q",
                "1",
                "-t",
                "stations/+/data",
                "-C",
                str(count),
                "-W",
                "600",
            ],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # subscribed before the first message

    def finish(self, started: float) -> float:
        """Messages/s delivered, from ``started`` until the last one arrived."""
        self.process.wait(timeout=600)
        return self.count / (time.perf_counter() - started)


def json_lines(registry: Registry, messages: int) -> bytes:
    stations = list(registry.stations.values())
    player = ScenarioPlayer(None, seed=1)
    out = []
    for station, moment in rate_schedule(stations, messages, datetime.now(UTC)):
        for message in player.emit(station, moment):
            out.append(message.encode("json"))
    return b"\n".join(out) + b"\n"


def mosquitto_pub_rate(port: int, payloads: bytes, messages: int) -> dict[str, float]:
    counter = Counter(port, messages)
    started = time.perf_counter()
    subprocess.run(
        [
            *("mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-M", "10000"),
            *("-t", data_topic("BENCH"), "-l"),
        ],
        input=payloads,
        check=True,
        timeout=600,
    )
    published = messages / (time.perf_counter() - started)
    return {"published_msg_s": published, "delivered_msg_s": counter.finish(started)}


async def simulator_rate(
    url: str, registry: Registry, messages: int, *, fmt: str, qos: int
) -> dict[str, float]:
    port = parse_mqtt_url(url).port
    counter = Counter(port, messages)
    started = time.perf_counter()
    stats = await simulate(
        parse_mqtt_url(url), registry, rate=UNPACED, messages=messages, fmt=fmt, qos=qos
    )
    published = stats.published / (time.perf_counter() - started)
    delivered = await asyncio.to_thread(counter.finish, started)
    return {"published_msg_s": published, "delivered_msg_s": delivered}


def processes_rate(url: str, stations: int, messages: int, processes: int) -> dict[str, float]:
    counter = Counter(parse_mqtt_url(url).port, messages)
    env = {**os.environ, "QUANTRAC_MQTT_URL": url, "QUANTRAC_LOG_FORMAT": "text"}
    started = time.perf_counter()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "quantrac.cli.main", "simulate", "--stations", str(stations)),
            *("--kind", "air", "--rate", str(UNPACED), "--messages", str(messages)),
            *("--processes", str(processes)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    # The children's own average excludes interpreter start-up (~1 s per spawned process).
    match = re.search(r"average over ([\d.]+) s", done.stderr)
    inner = float(match.group(1)) if match else wall
    return {
        "published_msg_s": messages / inner,
        "published_msg_s_with_startup": messages / wall,
        "delivered_msg_s": counter.finish(started),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--stations", type=int, default=1000)
    args = parser.parse_args()
    if shutil.which("mosquitto_sub") is None or shutil.which("mosquitto_pub") is None:
        sys.exit("bench/simulate.py needs mosquitto_sub and mosquitto_pub (mosquitto-clients)")

    catalog = load_catalog(default_config_dir() / "parameters.yaml")
    registry = synthetic_registry(args.stations, "air", catalog)
    large = wider(registry, catalog)
    n = args.messages
    results: dict[str, Any] = {}

    def record(name: str, reg: Registry, rates: dict[str, float]) -> None:
        per = readings_per_message(reg)
        rates = {**rates, "readings_per_message": per}
        rates["published_readings_s"] = rates["published_msg_s"] * per
        rates["delivered_readings_s"] = rates["delivered_msg_s"] * per
        results[name] = rates
        print(
            f"{name:<34} {rates['published_msg_s']:>9,.0f} msg/s published "
            f"= {rates['published_readings_s']:>9,.0f} readings/s; broker delivered "
            f"{rates['delivered_msg_s']:>9,.0f} msg/s",
            flush=True,
        )

    for name, reg, fmt in (
        ("generation json, 8 readings", registry, "json"),
        ("generation tt10, 8 readings", registry, "tt10"),
        ("generation json, 17 readings", large, "json"),
    ):
        rate = generation_rate(reg, n, fmt)
        per = readings_per_message(reg)
        results[name] = {
            "msg_s": rate,
            "readings_per_message": per,
            "readings_s": rate * per,
        }
        print(f"{name:<34} {rate:>9,.0f} msg/s = {rate * per:>9,.0f} readings/s", flush=True)

    root = scratch_folder("quantrac-bench-sim-")
    broker = MosquittoServer(root / "mq", persistence=False).start()
    try:
        record(
            "mosquitto_pub -l, QoS 1",
            registry,
            mosquitto_pub_rate(broker.port, json_lines(registry, n), n),
        )
        for name, reg, fmt, qos in (
            ("simulate json QoS 1", registry, "json", 1),
            ("simulate json QoS 0", registry, "json", 0),
            ("simulate tt10 QoS 1", registry, "tt10", 1),
            ("simulate json QoS 1, 17 readings", large, "json", 1),
        ):
            record(name, reg, await simulator_rate(broker.url, reg, n, fmt=fmt, qos=qos))
        record(
            "simulate --processes 2, QoS 1",
            registry,
            processes_rate(broker.url, args.stations, n, 2),
        )
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(__file__).resolve().parent / "results" / f"simulate-{stamp}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "when": stamp,
                "messages": n,
                "stations": args.stations,
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                },
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results: {out}")


if __name__ == "__main__":
    asyncio.run(main())
