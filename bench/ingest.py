"""Ingest throughput, end to end, against the broker's and PostgreSQL's own rates in one run.

    python bench/ingest.py [--messages 20000] [--stations 200] [--readings 10] [--timescale]
    python bench/ingest.py --process [--messages 30000]

Starts a private Mosquitto and PostgreSQL (as the demo does) and measures, over the same
messages:

1. broker: Mosquitto's QoS 1 delivery to a bare gmqtt subscriber that acknowledges at once and
   does nothing else;
2. quantrac: the ingest service storing them, each message acknowledged only after its batch
   is committed (parse, validate, COPY, INSERT … ON CONFLICT);
3. COPY: PostgreSQL's raw binary COPY of the same rows in batches of the same size.

Rates 1 and 2 are taken twice: draining a backlog queued for an offline persistent session (the
publisher's speed is out of it; this is what follows an ingest restart or a database outage), and
live, while the publisher sends (what a running system sees; bounded by the publisher). Results
go to bench/results/ingest-<timestamp>.json.

``--process`` measures what an installation runs instead: ``quantrac run`` as its own process,
alert engine on, draining a backlog queued for its session, until every reading is stored *and*
judged by the engine: stored by its /metrics (``quantrac_readings_stored_total``), judged when
every alert cursor in ``stream_cursors`` has reached the last committed batch (the engine moves
them in the transaction that stores what a batch raised; this holds for the engine in process
and for ``quantrac alerts`` workers alike). ``--alert-workers N`` sets ``alerts_workers`` (0: the
engine inside ``quantrac run``; default: the setting's own default). Measured in the same run:
the broker's backlog drain to a bare subscriber and PostgreSQL's binary COPY of the same rows.
Results go to bench/results/ingest-process-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from gmqtt import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import scratch_folder
from quantrac.core.settings import load_settings
from quantrac.ingest.service import IngestService, upgrade_database
from quantrac.localservers import MosquittoServer, PostgresServer
from quantrac.simulator.fleet import STANDARD_PARAMETERS

# An ambient-air station's standard parameters, then extras up to 12 readings per message.
PARAMS = [
    *STANDARD_PARAMETERS["air"],
    ("TSP", "µg/m3"),
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


def payloads(
    messages: int, stations: int, readings: int, days_ago: int = 30
) -> list[tuple[str, bytes]]:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=days_ago)
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
    from quantrac.core.settings import parse_mqtt_url
    from quantrac.simulator.publisher import Publisher

    pub = Publisher(parse_mqtt_url(url), client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    await pub.connect()
    started = time.perf_counter()
    for topic, body in items:
        await pub.publish(topic, body)
    await pub.close(timeout=120)
    return time.perf_counter() - started


class BareSubscriber:
    """Acknowledges every message at once and does nothing else: the broker's own rate."""

    def __init__(self, url: str):
        host, port = url.removeprefix("mqtt://").split(":")
        self.host, self.port = host, int(port)
        self.client_id = f"bench-bare-{uuid.uuid4().hex[:6]}"
        self.received = 0
        self.target = 0
        self.done = asyncio.Event()

    def _on_message(self, client: Client, topic: str, payload: bytes, qos: int, p: object) -> int:
        self.received += 1
        if self.received >= self.target:
            self.done.set()
        return 0

    async def connect(self) -> Client:
        client = Client(
            self.client_id,
            clean_session=False,
            session_expiry_interval=3600,
            receive_maximum=20000,
        )
        client.on_message = self._on_message
        await client.connect(self.host, self.port)
        client.subscribe("$share/benchbare/stations/+/data", qos=1)
        await asyncio.sleep(0.3)
        return client

    def expect(self, count: int) -> None:
        self.target = self.received + count
        self.done.clear()


async def broker_rates(url: str, backlog: list, live: list) -> tuple[float, float]:
    """Messages/s a bare subscriber receives: draining a stored backlog, then live."""
    bare = BareSubscriber(url)
    client = await bare.connect()
    await client.disconnect()
    await publish_all(url, backlog)
    bare.expect(len(backlog))
    started = time.perf_counter()
    client = await bare.connect()
    await asyncio.wait_for(bare.done.wait(), 600)
    backlog_rate = len(backlog) / (time.perf_counter() - started)
    if not live:  # and nothing queued for this session from now on
        client.unsubscribe("$share/benchbare/stations/+/data")
        await asyncio.sleep(0.3)
        await client.disconnect()
        return backlog_rate, 0.0

    bare.expect(len(live))
    started = time.perf_counter()
    await publish_all(url, live)
    await asyncio.wait_for(bare.done.wait(), 600)
    live_rate = len(live) / (time.perf_counter() - started)
    await client.disconnect()
    return backlog_rate, live_rate


async def _until_stored(service: IngestService, expected: float) -> None:
    while service.metrics.value("quantrac_readings_stored_total") < expected:
        await asyncio.sleep(0.01)


async def quantrac_rates(
    settings_values: dict, backlog: list, live: list, readings: int, db_url: str
) -> tuple[float, float, dict]:
    """Messages/s quantrac stores and acknowledges: draining a backlog, then live."""
    settings = load_settings({}, **settings_values)
    service = IngestService(settings)
    await service.start()  # creates the persistent session and subscription
    await asyncio.sleep(0.3)
    await service.stop()
    await publish_all(settings.mqtt_url, backlog)
    await upgrade_database(settings)  # schema ready before the clock starts
    service = IngestService(settings)
    started = time.perf_counter()
    await service.start()
    await _until_stored(service, len(backlog) * readings)
    backlog_seconds = time.perf_counter() - started
    m = service.metrics
    detail = {
        "backlog_seconds": backlog_seconds,
        "backlog_batches": m.value("quantrac_batch_readings_count"),
        "backlog_database_seconds": m.value("quantrac_batch_commit_seconds_sum"),
    }
    started = time.perf_counter()
    await publish_all(settings.mqtt_url, live)
    await _until_stored(service, (len(backlog) + len(live)) * readings)
    live_rate = len(live) / (time.perf_counter() - started)
    await service.stop()
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        stored = (await (await conn.execute("SELECT count(*) FROM readings")).fetchone())[0]
    expected = (len(backlog) + len(live)) * readings
    assert stored == expected, (stored, expected)
    detail["stored"] = stored
    return len(backlog) / backlog_seconds, live_rate, detail


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


_JUDGED = """
    SELECT coalesce(min(position), -1) >= (SELECT last_value FROM committed_batches_id_seq)
    FROM stream_cursors WHERE name LIKE 'alerts:%%'"""


async def _all_judged(conn: psycopg.AsyncConnection) -> bool:
    """Every alert cursor has passed the last committed batch."""
    row = await (await conn.execute(_JUDGED)).fetchone()
    return bool(row and row[0])


async def process_rate(
    settings_values: dict, backlog: list, readings: int, workers: int | None
) -> dict[str, float]:
    """`quantrac run` as a process, engine on: seconds to store and judge a queued backlog."""
    import subprocess
    import urllib.request

    from quantrac.localservers import free_port

    settings = load_settings({}, **settings_values)
    service = IngestService(settings)  # the persistent session the backlog is queued for
    await service.start()
    await asyncio.sleep(0.3)
    await service.stop()
    await publish_all(settings.mqtt_url, backlog)
    port = free_port()
    env = {
        **os.environ,
        "QUANTRAC_DATABASE_URL": settings.database_url or "",
        "QUANTRAC_MQTT_URL": settings.mqtt_url,
        "QUANTRAC_STATIONS_FILE": str(settings.stations_path),
        "QUANTRAC_MQTT_CLIENT_ID": settings.mqtt_client_id,
        "QUANTRAC_BATCH_SIZE": str(settings.batch_size),
        "QUANTRAC_RATE_LIMIT_PER_S": "0",
        "QUANTRAC_HTTP_PORT": str(port),
        "QUANTRAC_LOG_LEVEL": "WARNING",
        "QUANTRAC_ROLLUP_INTERVAL_S": "0",
    }
    if workers is not None:
        env["QUANTRAC_ALERTS_WORKERS"] = str(workers)
    subprocess.run(
        [sys.executable, "-m", "quantrac.cli.main", "db", "upgrade"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    expected = len(backlog) * readings
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "quantrac.cli.main", "run"], env=env)
    first_stored = stored_at = None
    stored = 0.0
    assert settings.database_url
    conn = await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True)
    try:
        while True:
            await asyncio.sleep(0.1)
            if process.poll() is not None:
                raise RuntimeError("quantrac run stopped during the benchmark")
            if stored < expected:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                        text = r.read().decode()
                except OSError:
                    continue  # not serving yet
                stored = _metric(text, "quantrac_readings_stored_total")
                if stored and first_stored is None:
                    first_stored = time.perf_counter()
                if stored < expected:
                    continue
                stored_at = time.perf_counter()
            if await _all_judged(conn):
                break
        done = time.perf_counter()
    finally:
        await conn.close()
        process.terminate()
        process.wait(60)
    assert first_stored is not None and stored_at is not None, (stored, expected)
    assert stored == expected, (stored, expected)
    return {
        "readings_per_s_stored": expected / (stored_at - first_stored),
        "process_seconds_from_start": done - started,
        "process_seconds_from_first_stored": done - first_stored,
        "readings": expected,
        "readings_per_s_stored_and_judged": expected / (done - first_stored),
        "readings_per_s_including_start_up": expected / (done - started),
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
    parser.add_argument(
        "--timescale", action="store_true", help="preload TimescaleDB (must be installed)"
    )
    parser.add_argument(
        "--process",
        action="store_true",
        help="`quantrac run` as a process with the alert engine on, stored and judged",
    )
    parser.add_argument(
        "--alert-workers",
        type=int,
        help="with --process: alerts_workers for `quantrac run` (0 = engine in process)",
    )
    args = parser.parse_args()
    if args.process:
        await process_main(args)
        return

    root = scratch_folder("quantrac-bench-")
    pg = PostgresServer(root / "pg", timescale=args.timescale).start()
    mq = MosquittoServer(root / "mq", persistence=False).start()
    try:
        stations_file = root / "stations.yaml"
        stations_file.write_text(registry_yaml(args.stations, args.readings))
        backlog = payloads(args.messages, args.stations, args.readings, days_ago=40)
        live = payloads(args.messages, args.stations, args.readings, days_ago=20)
        backend = "TimescaleDB" if args.timescale else "PostgreSQL"
        print(
            f"{args.messages} messages × {args.readings} readings, {args.stations} stations, "
            f"{backend}"
        )

        broker_backlog, broker_live = await broker_rates(mq.url, backlog, live)
        values = {**bench_settings(pg, mq, stations_file, args), "rollup_interval_s": 0}
        q_backlog, q_live, detail = await quantrac_rates(
            values, backlog, live, args.readings, pg.url
        )
        copy_rows = await copy_rate(pg.url, args.messages * args.readings, args.batch_size)
        n = args.readings
        print(f"{'':28}{'backlog drain':>24}{'live (publisher running)':>28}")
        for name, backlog_rate, live_rate in (
            ("broker → bare subscriber", broker_backlog, broker_live),
            ("quantrac, stored and acked", q_backlog, q_live),
        ):
            print(
                f"{name:28}{backlog_rate:>11,.0f} msg/s{backlog_rate * n:>9,.0f} r/s"
                f"{live_rate:>13,.0f} msg/s{live_rate * n:>9,.0f} r/s"
            )
        print(
            f"{'quantrac / broker':28}{q_backlog / broker_backlog:>24.0%}"
            f"{q_live / broker_live:>28.0%}"
        )
        print(
            f"PostgreSQL binary COPY: {copy_rows:,.0f} rows/s "
            f"(quantrac backlog / COPY: {q_backlog * n / copy_rows:.0%})"
        )
        result = {
            "when": datetime.now(UTC).isoformat(),
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            },
            "args": vars(args),
            "broker_backlog_msgs_per_s": broker_backlog,
            "broker_live_msgs_per_s": broker_live,
            "quantrac_backlog_msgs_per_s": q_backlog,
            "quantrac_live_msgs_per_s": q_live,
            "quantrac_backlog_readings_per_s": q_backlog * n,
            "quantrac_live_readings_per_s": q_live * n,
            "copy_rows_per_s": copy_rows,
            "ratio_backlog": q_backlog / broker_backlog,
            "ratio_live": q_live / broker_live,
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


def bench_settings(
    pg: PostgresServer, mq: MosquittoServer, stations_file: Path, args: argparse.Namespace
) -> dict[str, Any]:
    return {
        "database_url": pg.url,
        "mqtt_url": mq.url,
        "stations_file": stations_file,
        "mqtt_client_id": "bench-quantrac",
        "batch_size": args.batch_size,
        "rate_limit_per_s": 0,
        "http_port": 0,
        "log_level": "WARNING",
    }


async def process_main(args: argparse.Namespace) -> None:
    root = scratch_folder("quantrac-bench-")
    pg = PostgresServer(root / "pg", timescale=args.timescale).start()
    mq = MosquittoServer(root / "mq", persistence=False).start()
    try:
        stations_file = root / "stations.yaml"
        stations_file.write_text(registry_yaml(args.stations, args.readings))
        backlog = payloads(args.messages, args.stations, args.readings, days_ago=40)
        values = bench_settings(pg, mq, stations_file, args)
        broker, _ = await broker_rates(mq.url, backlog, [])
        detail = await process_rate(values, backlog, args.readings, args.alert_workers)
        copy_rows = await copy_rate(pg.url, args.messages * args.readings, args.batch_size)
        rate = detail["readings_per_s_stored_and_judged"]
        workers = "default" if args.alert_workers is None else args.alert_workers
        print(
            f"{args.messages} messages × {args.readings} readings, {args.stations} stations, "
            f"alerts_workers {workers}: `quantrac run` (engine on) stored and judged "
            f"{rate:,.0f} readings/s ({detail['readings_per_s_including_start_up']:,.0f} "
            f"counting its start-up; stored alone {detail['readings_per_s_stored']:,.0f}); "
            f"broker backlog drain {broker * args.readings:,.0f} readings/s; "
            f"binary COPY {copy_rows:,.0f} rows/s; ratio {rate / copy_rows:.0%}"
        )
        detail["broker_backlog_readings_per_s"] = broker * args.readings
        result = {
            "when": datetime.now(UTC).isoformat(),
            "mode": "process",
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            },
            "args": vars(args),
            "copy_rows_per_s": copy_rows,
            "ratio_to_copy": rate / copy_rows,
            **detail,
        }
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        path = out / f"ingest-process-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(result, indent=2))
        print(f"results written to {path}")
    finally:
        mq.stop()
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
