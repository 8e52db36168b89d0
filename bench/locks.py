"""What the locked-period guard costs ingest: the BatchWriter's rate with and without the
trigger on readings, in one run.

    python bench/locks.py [--batches 20] [--batch-size 5000] [--rounds 3]

Three databases on one private PostgreSQL: (1) no lock (no guard trigger), (2) 20 active locks
on other stations ending before the readings' times (live data: the trigger's WHEN lets every
row through), (3) the same locks ending after them (late data: every row is checked). The same
batches (200 stations × 10 parameters) go to each in turn, round after round, so the machine's
noise falls on all three. Results go to bench/results/locks-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import scratch_folder
from quantrac.core.contract import Reading, Status
from quantrac.evidence import schema as evidence
from quantrac.ingest.schema import StorageOptions, upgrade
from quantrac.ingest.writer import BatchWriter, Item
from quantrac.localservers import PostgresServer

PARAMS = ["COD", "TSS", "pH", "Flow", "Temp", "NH4", "TN", "TP", "Color", "TOC"]
SETUPS = ("no lock", "locks before the readings", "locks after the readings")


def batches(count: int, size: int, start: datetime) -> list[list[Item]]:
    out = []
    per_station = max(1, size // (200 * len(PARAMS)))
    for b in range(count):
        items = []
        for s in range(200):
            readings = [
                Reading(
                    f"S{s:03d}",
                    p,
                    start + timedelta(minutes=5 * (b * per_station + k)),
                    1.5,
                    Status.MEASURING,
                )
                for k in range(per_station)
                for p in PARAMS
            ]
            items.append(Item(start, f"S{s:03d}", "bench", "mqtt", None, "", readings, []))
        out.append(items)
    return out


async def prepare(url: str, setup: str, now: datetime) -> psycopg.AsyncConnection:
    conn = await psycopg.AsyncConnection.connect(url)
    await upgrade(conn, StorageOptions(backend="postgresql"), now)
    await evidence.upgrade(conn)
    if setup != "no lock":
        end = now - timedelta(days=330) if setup == "locks before the readings" else now
        for i in range(20):
            await conn.execute(
                "INSERT INTO locked_periods (station_id, start_at, end_at, reason, locked_by)"
                " VALUES (%s, %s, %s, 'bench', 'bench')",
                [f"OTHER{i}", now - timedelta(days=400), end],
            )
        await evidence.refresh_guard(conn)
    await conn.commit()
    return conn


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = scratch_folder("quantrac-bench-locks-")
    pg = PostgresServer(root / "pg").start()
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        base = pg.url.rsplit("/", 1)[0]
        urls = {}
        with psycopg.connect(pg.url, autocommit=True) as admin:
            for i, setup in enumerate(SETUPS):
                admin.execute(f"CREATE DATABASE bench{i}")
                urls[setup] = f"{base}/bench{i}"
        conns = {s: await prepare(urls[s], s, now) for s in SETUPS}
        writers = {s: BatchWriter(conns[s], "postgresql") for s in SETUPS}
        for w in writers.values():
            await w.prepare()
        seconds = {s: 0.0 for s in SETUPS}
        readings = 0
        for r in range(args.rounds):
            start = now - timedelta(days=300 - 60 * r)
            work = batches(args.batches, args.batch_size, start)
            readings += sum(len(i.readings) for b in work for i in b)
            for setup in SETUPS:
                began = time.perf_counter()
                for batch in work:
                    await writers[setup].write(batch)
                seconds[setup] += time.perf_counter() - began
        rates = {s: readings / seconds[s] for s in SETUPS}
        result = {
            "benchmark": "locks",
            "at": datetime.now(UTC).isoformat(),
            "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
            "readings_per_setup": readings,
            "readings_per_s": {s: round(v) for s, v in rates.items()},
            "ratio_to_no_lock": {s: round(rates[s] / rates["no lock"], 3) for s in SETUPS},
        }
        for conn in conns.values():
            await conn.close()
    finally:
        pg.stop()
    out = Path(__file__).parent / "results" / f"locks-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    print(f"→ {out}")


if __name__ == "__main__":
    asyncio.run(main())
