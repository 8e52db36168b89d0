"""Alert latency: from a station's publish to the alert event on MQTT, under background load.

    python bench/alerts.py [--rate 10000] [--seconds 30] [--probes-per-s 10] [--separate]

Starts a private Mosquitto and PostgreSQL, then runs what ``quantrac run`` runs (ingest and the
alert engine in one process, the engine fed each committed batch; ``--separate`` has the
engine follow the committed stream from PostgreSQL, as a separate ``quantrac alerts`` does).

Background: 300 air stations publishing ``--rate`` readings/s (10 readings per message, QoS 1)
stamped with the current time. They declare a 1 s cadence, so the traffic is live and on
cadence (hours fill, windows are evaluated, no station looks silent), as 300,000 stations at
5 minutes would be. Probes: a wastewater station publishes one status-02 reading; the clock
runs from just before that publish to the arrival of its ``alerts/{station}/device_fault``
event on a separate subscriber. Results go to bench/results/alerts-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gmqtt import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import scratch_folder
from quantrac.alerts.service import AlertService
from quantrac.core.settings import load_settings, parse_mqtt_url
from quantrac.ingest.service import IngestService
from quantrac.localservers import MosquittoServer, PostgresServer
from quantrac.simulator.fleet import STANDARD_PARAMETERS
from quantrac.simulator.publisher import Publisher

READINGS_PER_MESSAGE = 10
AIR = [*STANDARD_PARAMETERS["air"], ("TSP", "µg/m3"), ("P", "kPa"), ("WS", "m/s")][:10]


def registry_yaml(background: int, probes: int) -> str:
    air = "\n".join(f'      - {{code: "{c}", unit: "{u}"}}' for c, u in AIR)
    out = ["stations:"]
    for i in range(background):
        out.append(f"""  - id: B{i:04d}
    name: "Bench {i}"
    kind: air
    facility: bench
    province: bench
    location: {{lat: 21.0, lon: 106.0}}
    cadence: 1
    parameters:
{air}
    regulation: {{id: "QCVN 05:2023/BTNMT"}}""")
    for i in range(probes):
        out.append(f"""  - id: P{i:04d}
    name: "Probe {i}"
    kind: wastewater
    facility: bench
    province: bench
    location: {{lat: 21.0, lon: 106.0}}
    parameters:
      - {{code: Flow, unit: "m3/h"}}
      - {{code: COD, unit: "mg/L"}}""")
    return "\n".join(out) + "\n"


def background_message(n: int, stations: int) -> tuple[str, bytes]:
    station = f"B{n % stations:04d}"
    moment = datetime.now(UTC)
    body = {
        "station": station,
        "time": moment.isoformat(),
        "readings": [
            {"param": c, "value": round(20 + (n // stations * 7 + k) % 50 + k / 10, 2), "unit": u}
            for k, (c, u) in enumerate(AIR)
        ],
    }
    return f"stations/{station}/data", json.dumps(body).encode()


class EventWatcher:
    def __init__(self, url: str):
        host, port = url.removeprefix("mqtt://").split(":")
        self.host, self.port = host, int(port)
        self.arrivals: dict[str, float] = {}
        self.client = Client(f"bench-watch-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_message

    def _on_message(self, client: Client, topic: str, payload: bytes, qos: int, p: Any) -> int:
        event = json.loads(payload)
        if event["kind"] == "device_fault" and event["event"] == "opened":
            self.arrivals.setdefault(event["station"], time.perf_counter())
        return 0

    async def start(self) -> None:
        await self.client.connect(self.host, self.port)
        self.client.subscribe("alerts/+/device_fault", qos=1)
        await asyncio.sleep(0.3)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    root = scratch_folder("quantrac-bench-alerts-")
    pg = PostgresServer(root / "pg").start()
    mq = MosquittoServer(root / "mq", persistence=False).start()
    background_stations = 300
    probes_total = int(args.seconds * args.probes_per_s) + 10
    stations_file = root / "stations.yaml"
    stations_file.write_text(registry_yaml(background_stations, probes_total), encoding="utf-8")
    settings = load_settings(
        {},
        database_url=pg.url,
        mqtt_url=mq.url,
        stations_file=stations_file,
        http_port=0,
        rate_limit_per_s=0,
        log_level="WARNING",
        mqtt_client_id="bench-quantrac",
        batch_size=args.batch_size,
    )
    ingest = IngestService(settings)
    alerts = AlertService(settings)
    try:
        await alerts.start()
        await ingest.start()
        assert ingest.pipeline is not None and ingest.mqtt is not None
        if not args.separate:
            ingest.pipeline.subscribe(alerts.accept)
        await asyncio.wait_for(ingest.mqtt.connected.wait(), 10)
        watcher = EventWatcher(mq.url)
        await watcher.start()
        endpoint = parse_mqtt_url(mq.url)
        background = Publisher(endpoint, client_id="bench-background")
        probe_pub = Publisher(endpoint, client_id="bench-probes")
        await background.connect()
        await probe_pub.connect()

        messages_per_s = args.rate / READINGS_PER_MESSAGE
        sent_at: dict[str, float] = {}
        published = 0

        async def load() -> None:
            nonlocal published
            begin = time.perf_counter()
            while time.perf_counter() - begin < args.seconds:
                due = int((time.perf_counter() - begin) * messages_per_s)
                while published < due:
                    topic, body = background_message(published, background_stations)
                    await background.publish(topic, body)
                    published += 1
                await asyncio.sleep(0.005)

        async def probe() -> None:
            await asyncio.sleep(1.0)
            begin = time.perf_counter()
            k = 0
            while time.perf_counter() - begin < args.seconds - 2:
                station = f"P{k:04d}"
                now = datetime.now(UTC).replace(microsecond=0)
                body = {
                    "station": station,
                    "time": now.isoformat(),
                    "readings": [{"param": "Flow", "value": 0, "unit": "m3/h", "status": "02"}],
                }
                sent_at[station] = time.perf_counter()
                await probe_pub.publish(f"stations/{station}/data", json.dumps(body).encode())
                k += 1
                await asyncio.sleep(1 / args.probes_per_s)

        began = time.perf_counter()
        await asyncio.gather(load(), probe())
        elapsed = time.perf_counter() - began
        await asyncio.sleep(3.0)  # let the last probes' events arrive
        latencies = sorted(
            (watcher.arrivals[s] - t) * 1000 for s, t in sent_at.items() if s in watcher.arrivals
        )
        lost = len(sent_at) - len(latencies)
        await background.close(timeout=30)
        await probe_pub.close(timeout=10)
        await watcher.client.disconnect()
    finally:
        await alerts.stop()
        if ingest is not None:
            await ingest.stop()
        mq.stop()
        pg.stop("fast")

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

    return {
        "benchmark": "alerts",
        "started": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "engine_in_process": not args.separate,
        "ingest_batch_size": args.batch_size,
        "target_readings_per_s": args.rate,
        "achieved_readings_per_s": round(published * READINGS_PER_MESSAGE / elapsed),
        "probes": len(sent_at),
        "probes_without_event": lost,
        "latency_ms": {
            "p50": pct(0.50),
            "p90": pct(0.90),
            "p99": pct(0.99),
            "max": round(latencies[-1], 1),
            "mean": round(statistics.fmean(latencies), 1),
        }
        if latencies
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10000, help="background readings/s")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--probes-per-s", type=float, default=10)
    parser.add_argument(
        "--separate", action="store_true", help="engine reads the committed stream from the DB"
    )
    parser.add_argument("--batch-size", type=int, default=5000, help="ingest batch size")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"alerts-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
