"""Ingest throughput, end to end, against the broker's and PostgreSQL's own rates in one run.

    python bench/ingest.py [--messages 20000] [--stations 200] [--readings 10]

Starts a private Mosquitto and PostgreSQL (as the demo does), then measures three rates over the
same messages:

1. broker: Mosquitto delivering a stored QoS 1 backlog to a bare gmqtt subscriber that
   acknowledges at once (the ceiling any MQTT consumer written with this client can reach);
2. quantrac: the ingest service draining the same backlog into PostgreSQL, acknowledging each
   message only after its batch is committed (parse, validate, COPY, INSERT … ON CONFLICT);
3. COPY: PostgreSQL's raw binary COPY of the same rows in batches of the same size.

A backlog (messages queued for an offline persistent session) is used so the publisher's own
speed is out of the measurement. Results go to bench/results/ingest-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from gmqtt import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.service import IngestService, upgrade_database
from ingest.settings import load_settings
from quantrac.localservers import MosquittoServer, PostgresServer

PARAMS = [
    ("PM2,5", "µg/m3"),
    ("PM10", "µg/m3"),
    ("TSP", "µg/m3"),
    ("NO2", "µg/m3"),
    ("SO2", "µg/m3"),
    ("CO", "µg/m3"),
    ("O3", "µg/m3"),
    ("Temp", "°C"),
    ("RH", "%"),
    ("P", "kPa"),
    ("NO", "µg/m3"),
    ("WS", "m/s"),
]


def registry_yaml(stations: int, readings: int) -> str:
    params = "\n".join(f'      - {{code: "{c}", unit: "{u}"}}' for c, u in PARAMS[:readings])
    entries = []
    for i in range(stations):
        entries.append(f"""  - id: B{i:05d}
    name: "Bench {i}"
    kind: air
    facility: bench
    province: bench
    location: {{lat: 21.0, lon: 106.0}}
    parameters:
{params}""")
    return "stations:\n" + "\n".join(entries) + "\n"


def payloads(messages: int, stations: int, readings: int) -> list[tuple[str, bytes]]:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=30)
    out = []
    for n in range(messages):
        station = f"B{n % stations:05d}"
        moment = start + timedelta(minutes=5 * (n // stations))
        body = {
            "station": station,
            "time": moment.isoformat(),
            "seq": n,
            "readings": [
                {
                    "param": c,
                    "value": round(10 + (n * 7 + k) % 90 + k / 10, 2),
                    "unit": u,
                    "status": "00",
                }
                for k, (c, u) in enumerate(PARAMS[:readings])
            ],
        }
        out.append((f"stations/{station}/data", json.dumps(body).encode()))
    return out


async def publish_all(url: str, items: list[tuple[str, bytes]]) -> float:
    from ingest.settings import parse_mqtt_url
    from simulator.publisher import Publisher

    pub = Publisher(parse_mqtt_url(url), client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    await pub.connect()
    started = time.perf_counter()
    for topic, body in items:
        await pub.publish(topic, body)
    await pub.close(timeout=120)
    return time.perf_counter() - started


async def bare_subscriber_rate(url: str, items: list[tuple[str, bytes]]) -> float:
    host, port = url.removeprefix("mqtt://").split(":")
    client_id = f"bench-bare-{uuid.uuid4().hex[:6]}"
    received = 0
    done = asyncio.Event()
    total = len(items)

    def on_message(client: Client, topic: str, payload: bytes, qos: int, props: object) -> int:
        nonlocal received
        received += 1
        if received >= total:
            done.set()
        return 0

    client = Client(
        client_id, clean_session=False, session_expiry_interval=3600, receive_maximum=20000
    )
    client.on_message = on_message
    await client.connect(host, int(port))
    client.subscribe("$share/benchbare/stations/+/data", qos=1)
    await asyncio.sleep(0.3)
    await client.disconnect()
    await publish_all(url, items)
    client = Client(
        client_id, clean_session=False, session_expiry_interval=3600, receive_maximum=20000
    )
    client.on_message = on_message
    started = time.perf_counter()
    await client.connect(host, int(port))
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    await client.disconnect()
    return total / elapsed


async def quantrac_rate(
    settings_values: dict, items: list[tuple[str, bytes]], readings: int, db_url: str
) -> tuple[float, dict]:
    settings = load_settings({}, **settings_values)
    service = IngestService(settings)
    await service.start()  # creates the persistent session and subscription
    await asyncio.sleep(0.3)
    await service.stop()
    await publish_all(settings.mqtt_url, items)
    expected = len(items) * readings
    await upgrade_database(settings)  # schema ready before the clock starts
    service = IngestService(settings)
    started = time.perf_counter()
    await service.start()
    while service.metrics.value("quantrac_readings_stored_total") < expected:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    batches = service.metrics.value("quantrac_batch_readings_sum")
    await service.stop()
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        stored = (await (await conn.execute("SELECT count(*) FROM readings")).fetchone())[0]
    assert stored == expected, (stored, expected)
    return len(items) / elapsed, {
        "stored": stored,
        "seconds": elapsed,
        "readings_in_batches": batches,
    }


async def copy_rate(db_url: str, rows: int, batch: int) -> float:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await conn.execute(
            "CREATE TABLE copy_bench (station_id text, param text, "
            "measured_at timestamptz, value float8, status int2, "
            "received_at timestamptz, PRIMARY KEY (station_id, param, "
            "measured_at))"
        )
        await conn.commit()
        start = datetime.now(UTC) - timedelta(days=30)
        now = datetime.now(UTC)
        data = [
            (f"B{n % 200:05d}", PARAMS[n % 10][0], start + timedelta(seconds=n), 1.5, 0, now)
            for n in range(rows)
        ]
        began = time.perf_counter()
        for offset in range(0, rows, batch):
            async with (
                conn.cursor() as cur,
                cur.copy("COPY copy_bench FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.set_types(["text", "text", "timestamptz", "float8", "int2", "timestamptz"])
                for row in data[offset : offset + batch]:
                    await copy.write_row(row)
            await conn.commit()
        return rows / (time.perf_counter() - began)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--readings", type=int, default=10, choices=range(1, len(PARAMS) + 1))
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="quantrac-bench-"))
    pg = PostgresServer(root / "pg").start()
    mq = MosquittoServer(root / "mq", persistence=False).start()
    try:
        stations_file = root / "stations.yaml"
        stations_file.write_text(registry_yaml(args.stations, args.readings))
        items = payloads(args.messages, args.stations, args.readings)
        print(f"{args.messages} messages × {args.readings} readings, {args.stations} stations")

        broker_msgs = await bare_subscriber_rate(mq.url, items)
        print(
            f"broker → bare subscriber: {broker_msgs:,.0f} msg/s "
            f"({broker_msgs * args.readings:,.0f} readings/s)"
        )

        values = {
            "database_url": pg.url,
            "mqtt_url": mq.url,
            "stations_file": stations_file,
            "mqtt_client_id": "bench-quantrac",
            "batch_size": args.batch_size,
            "rate_limit_per_s": 0,
            "http_port": 0,
            "log_level": "WARNING",
            "rollup_interval_s": 0,
        }
        q_msgs, detail = await quantrac_rate(values, items, args.readings, pg.url)
        print(
            f"quantrac end to end:      {q_msgs:,.0f} msg/s "
            f"({q_msgs * args.readings:,.0f} readings/s stored)"
        )

        copy_rows = await copy_rate(pg.url, args.messages * args.readings, args.batch_size)
        print(f"PostgreSQL binary COPY:   {copy_rows:,.0f} rows/s")
        ratio_broker = q_msgs / broker_msgs
        ratio_copy = q_msgs * args.readings / copy_rows
        print(
            f"quantrac / broker delivery: {ratio_broker:.0%};  "
            f"quantrac / raw COPY: {ratio_copy:.0%}"
        )
        result = {
            "when": datetime.now(UTC).isoformat(),
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": __import__("os").cpu_count(),
            },
            "args": vars(args),
            "broker_msgs_per_s": broker_msgs,
            "quantrac_msgs_per_s": q_msgs,
            "quantrac_readings_per_s": q_msgs * args.readings,
            "copy_rows_per_s": copy_rows,
            "ratio_quantrac_to_broker": ratio_broker,
            "ratio_quantrac_to_copy": ratio_copy,
            "detail": detail,
        }
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        path = out / f"ingest-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(result, indent=2))
        print(f"results written to {path}")
    finally:
        mq.stop()
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
