"""The alert engine alone on the ingest bench's messages: bulk against reading by reading.

``python bench/engine_messages.py [--messages 20000] [--repeat 5]``

The messages of ``bench/ingest.py --process`` (200 air stations, 10 readings of one measured
time each, status 00, a backlog 40 days old), judged by ``Engine.observe_many`` with the bulk path
on and off, alternately, CPU time of each pass in one process; no database, no limits (the
per-reading conditions and the hourly windows, which is what the bulk path changes). Writes
bench/results/engine-messages-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ingest import PARAMS, registry_yaml
from quantrac.alerts.config import EngineConfig
from quantrac.alerts.engine import Engine
from quantrac.core.catalog import load_catalog
from quantrac.core.contract import Reading, Status
from quantrac.core.registry import registry_from_text

ROOT = Path(__file__).resolve().parents[1]


def messages(count: int, stations: int, readings: int) -> list[tuple[list[Reading], datetime]]:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=40)
    out = []
    for n in range(count):
        station = f"B{n % stations:05d}"
        moment = start + timedelta(minutes=5 * (n // stations))
        out.append(
            (
                [
                    Reading(station, c, moment, round(10 + (n * 7 + k) % 90 + k / 10, 2), Status(0))
                    for k, (c, _) in enumerate(PARAMS[:readings])
                ],
                datetime.now(UTC),
            )
        )
    return out


def one_pass(bulk: bool, data: list[tuple[list[Reading], datetime]], registry: object) -> float:
    started = data[0][1] - timedelta(days=41)
    engine = Engine(registry, lambda s: None, EngineConfig(), lambda k, m: None, started)  # type: ignore[arg-type]
    engine.bulk = bulk
    began = time.process_time()
    for readings, received_at in data:
        engine.observe_many(readings, received_at)
    return time.process_time() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--readings", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    catalog = load_catalog(ROOT / "config" / "parameters.yaml")
    registry = registry_from_text(registry_yaml(args.stations, args.readings), catalog)
    data = messages(args.messages, args.stations, args.readings)
    times: dict[str, list[float]] = {"each": [], "bulk": []}
    for _ in range(args.repeat):
        times["each"].append(one_pass(False, data, registry))
        times["bulk"].append(one_pass(True, data, registry))
    readings = args.messages * args.readings
    best = {k: min(v) for k, v in times.items()}
    ratio = best["each"] / best["bulk"]
    for name, seconds in best.items():
        rate = readings / seconds
        print(f"{name:5} {seconds:.3f} s CPU, {rate:,.0f} readings/s (best of {args.repeat})")
    print(f"bulk speed-up: {ratio:.2f}")
    result = {
        "when": datetime.now(UTC).isoformat(),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "args": vars(args),
        "cpu_seconds": times,
        "readings_per_s": {k: readings / v for k, v in best.items()},
        "speedup_bulk_over_each": ratio,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"engine-messages-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
