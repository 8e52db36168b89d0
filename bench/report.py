"""Inspector report speed: the exceedance history of one station over one year of 1-minute data.

    python bench/report.py [--days 365] [--runs 5] [--keep DIR]

Starts a private PostgreSQL (plain PostgreSQL backend, as the demo does), loads one wastewater
station × 10 parameters × one year at a 1-minute cadence (5,256,000 readings) with binary COPY,
builds ``readings_hourly`` with one INSERT … SELECT (what ``quantrac.ingest.rollup`` computes hour
by hour), and writes exceedance episodes **derived from that data**: every run of consecutive
complete hours (≥ 75 % of 60 valid readings) whose mean is above the station's effective 1 h limit
(QCVN 40:2011 column B, Kq = Kf = 1.0), with the maximum, mean, multiple, Decree 45 band and formula
the engine would store. (Running the alert engine itself over 5 M readings in Python would take many
minutes and produce the same rows for these windows.) The data has daily 10-min
auto-calibrations (status 01) of five analysers and random device faults (status 02).

Then it times ``exceedance_report`` for the whole year: cold (first call after a PostgreSQL
restart: empty shared buffers, the OS page cache may still hold the files) and warm (median of
``--runs``), with EXPLAIN ANALYZE of each query, and the file writers. Results go to
bench/results/report-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import scratch_folder
from quantrac.alerts.store import EpisodeRow
from quantrac.alerts.store import upgrade as upgrade_alerts
from quantrac.core.catalog import load_catalog
from quantrac.core.registry import registry_from_text
from quantrac.core.settings import default_config_dir, load_settings
from quantrac.ingest.service import upgrade_database
from quantrac.localservers import PostgresServer
from quantrac.regulations.limits import station_limits
from quantrac.regulations.tables import load_regulation_catalog
from quantrac.reports import completeness as completeness_module
from quantrac.reports import exceedances as exceedances_module
from quantrac.reports.exceedances import exceedance_report
from quantrac.reports.writers import exceedance_file

VN = timezone(timedelta(hours=7))
STATION = "BENCH_WW"
CADENCE_S = 60
PARAMS = [
    ("Flow", "m3/h"),
    ("Temp", "°C"),
    ("pH", "pH"),
    ("TSS", "mg/L"),
    ("COD", "mg/L"),
    ("NH4", "mg/L"),
    ("TN", "mg/L"),
    ("TP", "mg/L"),
    ("Color", "Pt/Co"),
    ("TOC", "mg/L"),
]
CALIBRATED = ("COD", "NH4", "TN", "TP", "TOC")  # analysers with a daily auto-calibration
BURSTS = {"COD": 40, "TSS": 30, "NH4": 30, "TN": 10, "TP": 10, "Color": 8}
EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)

REGISTRY = (
    f"""
stations:
  - id: {STATION}
    name: "Trạm nước thải đo thử tốc độ"
    kind: wastewater
    facility: "KCN Đo Thử"
    province: "Bắc Giang"
    location: {{lat: 21.25, lon: 106.1}}
    cadence: {CADENCE_S}
    parameters:
"""
    + "".join(f'      - {{code: {c}, unit: "{u}"}}\n' for c, u in PARAMS)
    + """
    regulation:
      id: "QCVN 40:2011/BTNMT"
      column: B
      coefficients: {receiving_water: river, receiving_flow_m3s: 120, discharge_m3_per_day: 4000}
"""
)


def series(
    param: str, limit: float | None, n: int, start: datetime, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Values and statuses of one parameter, minute by minute."""
    minute = np.arange(n)
    if param == "pH":
        values = 7.2 + 0.15 * np.sin(minute / 720) + rng.normal(0, 0.05, n)
    elif param == "Flow":
        values = 170 + 40 * np.sin(2 * np.pi * minute / 1440) + rng.normal(0, 5, n)
    elif param == "Temp":
        values = 29 + 3 * np.sin(2 * np.pi * minute / 1440) + rng.normal(0, 0.3, n)
    elif limit is None:
        values = 30 + rng.normal(0, 3, n)
    else:
        values = limit * (0.45 + 0.1 * np.sin(2 * np.pi * minute / 1440)) + rng.normal(
            0, 0.04 * limit, n
        )
        for _ in range(BURSTS.get(param, 0)):
            first = int(rng.integers(0, n - 600))
            length = int(rng.integers(60, 8 * 60))
            values[first : first + length] = limit * rng.uniform(1.15, 3.5) + rng.normal(
                0, 0.03 * limit, length
            )
    values = np.maximum(values, 0.0)
    status = np.zeros(n, dtype=np.int16)
    if param in CALIBRATED:
        # 02:00–02:09 local every day: zero and span check
        offset = int((start.astimezone(VN).replace(hour=2, minute=0) - start).total_seconds() // 60)
        for day in range(n // 1440 + 1):
            first = offset + day * 1440
            if 0 <= first < n:
                status[first : first + 10] = 1
    for _ in range(15):
        first = int(rng.integers(0, n - 200))
        status[first : first + int(rng.integers(20, 180))] = 2
    return values, status


def copy_payload(param: str, values: np.ndarray, status: np.ndarray, start: datetime) -> bytes:
    """PostgreSQL binary COPY of (station_id, param, measured_at, value, status, received_at)."""
    s, p = STATION.encode(), param.encode()
    dtype = np.dtype(
        [
            ("fields", ">i2"),
            ("l1", ">i4"),
            ("station", f"S{len(s)}"),
            ("l2", ">i4"),
            ("param", f"S{len(p)}"),
            ("l3", ">i4"),
            ("measured", ">i8"),
            ("l4", ">i4"),
            ("value", ">f8"),
            ("l5", ">i4"),
            ("status", ">i2"),
            ("l6", ">i4"),
            ("received", ">i8"),
        ]
    )
    n = len(values)
    rows = np.zeros(n, dtype=dtype)
    first = int((start - EPOCH_2000).total_seconds() * 1_000_000)
    measured = first + np.arange(n, dtype=np.int64) * CADENCE_S * 1_000_000
    rows["fields"] = 6
    rows["l1"], rows["station"] = len(s), s
    rows["l2"], rows["param"] = len(p), p
    rows["l3"], rows["measured"] = 8, measured
    rows["l4"], rows["value"] = 8, values
    rows["l5"], rows["status"] = 2, status
    rows["l6"], rows["received"] = 8, measured + 20_000_000
    header = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
    return header + rows.tobytes() + b"\xff\xff"


def episodes_from_hours(
    hourly: dict[str, list[tuple[datetime, int, float, float]]],
    limits: dict[str, Any],
    band_for: Any,
) -> list[dict[str, Any]]:
    """Runs of consecutive complete (≥ 45 of 60) hours whose mean exceeds the 1 h limit."""
    out = []
    for param, rows in hourly.items():
        limit = limits.get(param)
        if limit is None or limit.maximum is None or limit.minimum is not None:
            continue
        run: list[tuple[datetime, int, float, float]] = []

        def close(
            run: list[tuple[datetime, int, float, float]], param: str = param, limit: Any = limit
        ) -> None:
            if not run:
                return
            maximum = max(r[3] for r in run)
            multiple = round(maximum / limit.maximum, 4)
            band = band_for("wastewater", multiple)
            out.append(
                {
                    "station_id": STATION,
                    "param": param,
                    "averaging": "1h",
                    "start": run[0][0],
                    "end": run[-1][0] + timedelta(hours=1),
                    "windows": len(run),
                    "maximum": maximum,
                    "mean": sum(r[3] for r in run) / len(run),
                    "limit": limit.maximum,
                    "limit_text": limit.bound_text(),
                    "unit": limit.unit,
                    "multiple": multiple,
                    "band": band.label if band else None,
                    "completeness": sum(min(1.0, r[1] / 60) for r in run) / len(run),
                    "regulation_id": limit.regulation_id,
                    "column": limit.column,
                    "formula": limit.formula,
                    "unverified": limit.unverified,
                }
            )

        previous: datetime | None = None
        for hour, n, _, mean in rows:
            exceeding = n >= 45 and mean > limit.maximum
            contiguous = previous is not None and hour - previous == timedelta(hours=1)
            if exceeding and run and contiguous:
                run.append((hour, n, mean, mean))
            else:
                close(run)
                run = [(hour, n, mean, mean)] if exceeding else []
            previous = hour
        close(run)
    return out


async def load(url: str, settings: Any, days: int, start: datetime) -> dict[str, Any]:
    catalog = load_catalog(default_config_dir() / "parameters.yaml")
    registry = registry_from_text(REGISTRY, catalog, "bench")
    regulations = load_regulation_catalog(settings.regulations_path, catalog)
    station = registry.stations[STATION]
    limits = {
        lim.param: lim
        for lim in station_limits(station, regulations).limits
        if lim.averaging == "1h" and lim.source == "regulation"
    }
    n = days * 1440
    rng = np.random.default_rng(20261121)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    status_rows = 0
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for param, _ in PARAMS:
            lim = limits.get(param)
            values, status = series(
                param, lim.maximum if lim and lim.minimum is None else None, n, start, rng
            )
            status_rows += int((status != 0).sum())
            payload = copy_payload(param, values, status, start)
            async with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY readings (station_id, param, measured_at, value, status, received_at)"
                    " FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                for k in range(0, len(payload), 1 << 24):
                    await copy.write(payload[k : k + (1 << 24)])
            await conn.commit()
        timings["copy_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        await conn.execute(
            "INSERT INTO readings_hourly (station_id, param, hour, n, min, max, mean) "
            "SELECT station_id, param, date_trunc('hour', measured_at), count(*), min(value), "
            "max(value), avg(value) FROM readings WHERE status = 0 GROUP BY 1, 2, 3"
        )
        await conn.commit()
        timings["rollup_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        cur = await conn.execute(
            "SELECT param, hour, n, mean FROM readings_hourly WHERE station_id = %s "
            "ORDER BY param, hour",
            [STATION],
        )
        hourly: dict[str, list[tuple[datetime, int, float, float]]] = {}
        for param, hour, count, mean in await cur.fetchall():
            hourly.setdefault(param, []).append((hour, count, mean, mean))
        episodes = episodes_from_hours(hourly, limits, regulations.band_for)
        async with conn.cursor() as c:
            await c.executemany(
                """INSERT INTO exceedance_episodes (station_id, param, averaging, start_at,
                       end_at, windows, maximum, mean, limit_value, limit_text, unit, multiple,
                       band, completeness, regulation_id, column_name, formula, unverified,
                       ongoing)
                   VALUES (%(station_id)s, %(param)s, %(averaging)s, %(start)s, %(end)s,
                       %(windows)s, %(maximum)s, %(mean)s, %(limit)s, %(limit_text)s, %(unit)s,
                       %(multiple)s, %(band)s, %(completeness)s, %(regulation_id)s, %(column)s,
                       %(formula)s, %(unverified)s, false)""",
                episodes,
            )
        await conn.commit()
        timings["episodes_s"] = time.perf_counter() - t2
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        t3 = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        timings["vacuum_analyze_s"] = time.perf_counter() - t3
    return {
        "readings": n * len(PARAMS),
        "status_01_02_readings": status_rows,
        "episodes": len(episodes),
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "registry": registry,
        "regulations": regulations,
    }


async def explain(url: str, start: datetime, end: datetime) -> dict[str, str]:
    """EXPLAIN ANALYZE of each report query over the whole period."""
    queries = {
        # The alert store's episodes_between, with named parameters.
        "episodes": (
            f"SELECT {', '.join(EpisodeRow._fields)} FROM exceedance_episodes"
            " WHERE station_id = ANY(%(stations)s) AND start_at < %(end)s AND end_at > %(start)s"
            " ORDER BY start_at, station_id, param, averaging",
            {"stations": [STATION]},
        ),
        "received_per_day": (
            completeness_module._RECEIVED,
            {"stations": [STATION], "per_hour": [completeness_module.owed_per_hour(CADENCE_S)]},
        ),
        "fast_series": (
            completeness_module._FAST_SERIES,
            {"stations": [STATION], "per_hour": [completeness_module.owed_per_hour(CADENCE_S)]},
        ),
        "status_per_day": (completeness_module._NOT_VALID, {"stations": [STATION]}),
        "status_periods": (
            exceedances_module._STATUS_PERIODS,
            {"stations": [STATION], "cadences": [CADENCE_S]},
        ),
    }
    plans = {}
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for name, (query, extra) in queries.items():
            cur = await conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS) " + query, {**extra, "start": start, "end": end}
            )
            plans[name] = "\n".join(r[0] for r in await cur.fetchall())
    return plans


async def time_report(
    url: str, registry: Any, regulations: Any, start: datetime, end: datetime
) -> tuple[float, Any]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        t = time.perf_counter()
        report = await exceedance_report(conn, registry, regulations, [STATION], start, end)
        return time.perf_counter() - t, report


async def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.keep) if args.keep else scratch_folder("quantrac-bench-")
    server = PostgresServer(root / "pg", durable=False).start()
    try:
        end = datetime(2026, 11, 1, tzinfo=VN)
        start = end - timedelta(days=args.days)
        settings = load_settings({}, database_url=server.url, log_format="text")
        await upgrade_database(settings)
        async with await psycopg.AsyncConnection.connect(server.url) as conn:
            await upgrade_alerts(conn)
            await conn.commit()
        print(f"loading {args.days} days × {len(PARAMS)} parameters at 1 min …", flush=True)
        loaded = await load(server.url, settings, args.days, start)
        registry, regulations = loaded.pop("registry"), loaded.pop("regulations")
        print(f"loaded: {loaded}", flush=True)

        server.stop()
        server.start()
        cold, report = await time_report(server.url, registry, regulations, start, end)
        warm = []
        for _ in range(args.runs):
            seconds, report = await time_report(server.url, registry, regulations, start, end)
            warm.append(seconds)
        plans = await explain(server.url, start, end)
        writers = {}
        for fmt in ("json", "csv", "xlsx", "pdf"):
            t = time.perf_counter()
            data = exceedance_file(report, fmt, "vi")
            writers[fmt] = {"seconds": round(time.perf_counter() - t, 3), "bytes": len(data)}
        async with await psycopg.AsyncConnection.connect(server.url) as conn:
            cur = await conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('readings_not_valid')), "
                "(SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c "
                " JOIN pg_inherits i ON i.inhrelid = c.oid "
                " WHERE i.inhparent = 'readings'::regclass)"
            )
            sizes = await cur.fetchone()
        result = {
            "bench": "report",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": __import__("os").cpu_count(),
            },
            "period": {"from": start.isoformat(), "to": end.isoformat()},
            "station": STATION,
            "parameters": [p for p, _ in PARAMS],
            "cadence_s": CADENCE_S,
            **loaded,
            "report": {
                "episodes": len(report.episodes),
                "status_periods": len(report.status_periods),
                "completeness_rows": len(report.completeness.days),
                "months": len(report.by_month),
            },
            "cold_ms": round(cold * 1000, 1),
            "warm_ms": [round(s * 1000, 1) for s in warm],
            "warm_median_ms": round(statistics.median(warm) * 1000, 1),
            "target_ms": 500,
            "writers": writers,
            "sizes": {
                "readings_not_valid_index": sizes[0] if sizes else None,
                "readings": sizes[1] if sizes else None,
            },
            "plans": plans,
        }
        return result
    finally:
        server.stop("immediate")
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", help="keep the database in this folder")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"report-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    summary = {k: result[k] for k in ("readings", "episodes", "cold_ms", "warm_median_ms")}
    print(json.dumps({**summary, "report": result["report"], "writers": result["writers"]}))
    print(f"→ {path}")


if __name__ == "__main__":
    main()
