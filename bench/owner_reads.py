"""Two statements reshaped by issue 10 item 4 (one owner per table), before and after.

    python bench/owner_reads.py [--alerts 20000] [--page 500] [--repeat 20]

The alert list's page (GET /api/v1/alerts). Before: one statement with a correlated subquery
on readings per alert (the newest reading it rests on). After: the alert store's page (alerts
only), then the readings owner's ``newest_within`` for the page's alerts in one statement.

Forwarding's due slots. Before: readings joined with forward_log, grouped after the join.
After: the readings owner's ``READING_SLOTS`` subquery joined with forward_log.

Same database, same rows (50 stations x 5 parameters x 2 days at 5 minutes; a quarter of the
slots already forwarded); each pair's answers are checked equal. Results go to
bench/results/owner-reads-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantrac.alerts import store
from quantrac.forward import service as forward
from quantrac.ingest import writer
from quantrac.ingest.schema import POSTGRES, StorageOptions, upgrade
from quantrac.localservers import PostgresServer

_BEFORE = (
    "SELECT a.id, (SELECT count(*) FROM alerts b WHERE b.station_id = a.station_id "
    "AND b.param IS NOT DISTINCT FROM a.param AND b.kind = a.kind AND b.opened_at > %s), "
    "(SELECT max(r.measured_at) FROM readings r WHERE r.station_id = a.station_id "
    "AND (a.param = '' OR r.param = a.param) AND r.measured_at <= a.last_data_at "
    "AND r.measured_at > a.first_data_at - interval '2 days') "
    "FROM alerts a WHERE true ORDER BY a.opened_at DESC, a.id DESC LIMIT %s OFFSET 0"
)

_SLOTS_BEFORE = """
    SELECT r.station_id, r.measured_at, array_agg(r.param ORDER BY r.param),
           array_agg(r.value ORDER BY r.param), array_agg(r.status ORDER BY r.param)
    FROM readings r
    LEFT JOIN forward_log f ON f.target = %s AND f.station_id = r.station_id
                           AND f.measured_at = r.measured_at
    WHERE r.station_id = ANY(%s) AND r.measured_at >= %s AND r.measured_at < %s
    GROUP BY r.station_id, r.measured_at, f.readings
    HAVING f.readings IS NULL OR f.readings < count(*)
    ORDER BY r.measured_at, r.station_id
    LIMIT %s
"""


async def _fill(conn: psycopg.AsyncConnection, n_alerts: int, now: datetime) -> None:
    await upgrade(conn, StorageOptions(backend=POSTGRES))
    await store.upgrade(conn)
    await forward.upgrade(conn)
    stations = [f"S{i:03d}" for i in range(50)]
    params = ["COD", "TSS", "pH", "NH4", "Temp"]
    start = now - timedelta(days=2)
    await conn.execute(
        "INSERT INTO readings (station_id, param, measured_at, value, status, received_at) "
        "SELECT s, p, %s + g * interval '5 minutes', 1.0, 0, now() "
        "FROM unnest(%s::text[]) s, unnest(%s::text[]) p, generate_series(0, 575) g",
        [start, stations, params],
    )
    rng = random.Random(7)
    rows = []
    for _ in range(n_alerts):
        opened = start + timedelta(minutes=rng.randrange(0, 2 * 24 * 60))
        rows.append(
            (
                rng.choice(stations),
                rng.choice([*params, ""]),
                "exceedance",
                "major",
                "resolved",
                opened,
                opened,
                opened,
                opened + timedelta(minutes=30),
            )
        )
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO alerts (station_id, param, kind, severity, state, opened_at, "
            "updated_at, first_data_at, last_data_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    # A quarter of the slots went already (some with fewer readings than now: a late parameter).
    await conn.execute(
        "INSERT INTO forward_log (target, station_id, measured_at, file_name, remote_path, "
        "sha256, readings, sent_at) "
        "SELECT 't', s, %s + g * interval '5 minutes', 'f', 'p', 'x', 4 + (g %% 2), now() "
        "FROM unnest(%s::text[]) s, generate_series(0, 143) g",
        [start, stations],
    )
    await conn.execute("ANALYZE")
    await conn.commit()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=20000)
    parser.add_argument("--page", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="quantrac-bench-") as tmp:
        pg = PostgresServer(Path(tmp) / "pg").start()
        try:
            async with await psycopg.AsyncConnection.connect(pg.url) as conn:
                await _fill(conn, args.alerts, now)
                since = now - timedelta(hours=24)

                async def before() -> list[tuple[int, int, datetime | None]]:
                    cur = await conn.execute(_BEFORE, [since, args.page])
                    return [(r[0], r[1], r[2]) for r in await cur.fetchall()]

                async def after() -> list[tuple[int, int, datetime | None]]:
                    listed = await store.list_alerts(conn, store.AlertQuery(), since, args.page, 0)
                    newest = await writer.newest_within(
                        conn,
                        [
                            (a.station_id, a.param, a.first_data_at, a.last_data_at)
                            for a, _ in listed
                        ],
                    )
                    return [(a.id, n, t) for (a, n), t in zip(listed, newest, strict=True)]

                stations = [f"S{i:03d}" for i in range(50)]
                window = [now - timedelta(days=3), now]

                async def slots_before() -> list[tuple[object, ...]]:
                    cur = await conn.execute(_SLOTS_BEFORE, ["t", stations, *window, args.page])
                    return list(await cur.fetchall())

                async def slots_after() -> list[tuple[object, ...]]:
                    cur = await conn.execute(
                        forward._DUE_SLOTS, [stations, *window, "t", args.page]
                    )
                    return list(await cur.fetchall())

                assert await before() == await after(), "the two alert pages differ"
                assert await slots_before() == await slots_after(), "the due slots differ"
                runs = {
                    "alerts_before": before,
                    "alerts_after": after,
                    "slots_before": slots_before,
                    "slots_after": slots_after,
                }
                times: dict[str, list[float]] = {name: [] for name in runs}
                for _ in range(args.repeat):
                    for name, run in runs.items():
                        t = time.perf_counter()
                        await run()
                        times[name].append(time.perf_counter() - t)
        finally:
            pg.stop()
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "bench": "owner_reads",
        "at": now.isoformat(),
        "host": platform.node(),
        "alerts": args.alerts,
        "page": args.page,
        "repeat": args.repeat,
        "median_s": medians,
        "alerts_after_over_before": medians["alerts_after"] / medians["alerts_before"],
        "slots_after_over_before": medians["slots_after"] / medians["slots_before"],
    }
    out = Path(__file__).parent / "results" / f"owner-reads-{now:%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
