"""Fuzz the running ingest at scale: hostile payloads interleaved with known good readings.

    python bench/fuzz.py [--messages 105000] [--seed 15] [--good-share 0.5]

Starts a private Mosquitto and PostgreSQL (as the demo does) and the real ingest service with
its shipped settings (rate limit on) and the shipped station registry, publishes the mix of
``quantrac.simulator.fuzz`` over MQTT (QoS 1) and checks what came of it: 0 crashes (the service's
writer alive, no internal_error), 0 good readings lost or changed, every rejection stored with
its reason and acknowledged once on its station's topic. The same check as tests/test_fuzz.py,
at >= 100,000 messages. Results go to bench/results/fuzz-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import scratch_folder
from quantrac.core.catalog import load_catalog
from quantrac.core.registry import load_registry
from quantrac.core.settings import default_config_dir, load_settings
from quantrac.ingest.service import IngestService
from quantrac.localservers import MosquittoServer, PostgresServer
from quantrac.simulator.fuzz import iter_messages
from quantrac.simulator.fuzz_run import run_fuzz


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=105_000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--good-share", type=float, default=0.5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # one warning per rejected message otherwise

    config = default_config_dir()
    stations_file = config / "stations.yaml"
    registry = load_registry(stations_file, load_catalog(config / "parameters.yaml"))
    root = scratch_folder("quantrac-fuzz-")
    pg = PostgresServer(root / "pg").start()
    mq = MosquittoServer(root / "mq", persistence=False).start()
    try:
        settings = load_settings(
            {},
            database_url=pg.url,
            mqtt_url=mq.url,
            stations_file=stations_file,
            mqtt_client_id="fuzz-quantrac",
            http_port=0,
            log_level="ERROR",
        )
        print(
            f"{args.messages:,} messages (seed {args.seed}, {args.good_share:.0%} good) to "
            f"{len(registry.stations)} stations; rate limit {settings.rate_limit_per_s:g}/s "
            f"burst {settings.rate_limit_burst:g}"
        )
        service = IngestService(settings)
        await service.start()
        assert service.mqtt is not None and service.pipeline is not None
        await asyncio.wait_for(service.mqtt.connected.wait(), 30)
        await asyncio.sleep(0.3)
        stream = iter_messages(
            registry,
            args.messages,
            seed=args.seed,
            start=datetime.now(UTC) - timedelta(days=3),
            max_payload_bytes=settings.max_payload_bytes,
            good_share=args.good_share,
        )
        cpu_before = time.process_time()
        try:
            report, timings = await run_fuzz(
                stream, mqtt_url=mq.url, database_url=pg.url, timeout_s=120
            )
            healthy = service.pipeline.healthy
            writer_alive = service.pipeline.writer_failed is None
            stuck_since = service.pipeline.stuck_since
        finally:
            await service.stop()
        summary = report.summary()
        result = {
            "when": datetime.now(UTC).isoformat(),
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            },
            "args": vars(args),
            "stations": len(registry.stations),
            **summary,
            "service_healthy_at_end": healthy,
            "writer_alive": writer_alive,
            "storage_stuck_since": stuck_since,
            "timings": timings,
            "cpu_s_this_process": time.process_time() - cpu_before,
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "first_lost": [str(r) for r in report.lost[:5]],
            "first_changed": [str(r) for r in report.changed_or_unexpected[:5]],
            "ack_mismatch_examples": dict(list(report.ack_mismatches.items())[:5]),
        }
        ok = report.ok and healthy and writer_alive
        result["ok"] = ok
        print(
            f"good readings {report.good_readings:,}: stored {report.stored_readings:,}, "
            f"lost {len(report.lost)}, changed/unexpected {len(report.changed_or_unexpected)}"
        )
        print(
            f"rejected messages {report.rejected_messages:,} ({report.topicless_rejections} on "
            f"a topic without station): acks {report.acks:,}, per-topic mismatches "
            f"{len(report.ack_mismatches)}; rejections stored {report.rejections_stored:,} = "
            f"problems acked {report.problems_acked:,} + topicless "
            f"{report.topicless_rejections}; without reason {report.without_reason}; "
            f"internal errors {report.internal_errors}"
        )
        print(
            f"writer alive {writer_alive}, healthy {healthy}; "
            f"{timings['messages_per_s']:,.0f} msg/s end to end ({timings['total_s']:.1f} s)"
        )
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        path = out / f"fuzz-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(result, indent=2, default=str))
        print(f"{'OK' if ok else 'FAILED'}; results written to {path}")
        return 0 if ok else 1
    finally:
        mq.stop()
        pg.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
