"""Nothing acknowledged is lost: PostgreSQL outages, shutdown with messages in flight."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from quantrac.ingest.service import IngestService
from quantrac.web import ingest_health
from tests.conftest import fetch, publisher, wait_until

pytestmark = pytest.mark.integration

STATION_PARAMS = [("PM2,5", "µg/m3"), ("PM10", "µg/m3"), ("NO2", "µg/m3"), ("Temp", "°C")]


def message(index: int, start: datetime) -> bytes:
    moment = start + timedelta(minutes=index)
    return json.dumps(
        {
            "station": "AIR1",
            "time": moment.isoformat(),
            "seq": index,
            "readings": [
                {"param": p, "value": index + k / 10, "unit": u}
                for k, (p, u) in enumerate(STATION_PARAMS)
            ],
        }
    ).encode()


async def count(url: str) -> int:
    return (await fetch(url, "SELECT count(*) FROM readings"))[0][0]


async def test_postgres_down_mid_stream_loses_nothing(make_settings, servers, database_url):
    if servers.postgres is None:
        pytest.skip("needs the PostgreSQL server the test session started")
    total = 400
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    svc = IngestService(make_settings(batch_size=50, max_pending_readings=400))
    await svc.start()
    pub = await publisher(servers.mqtt_url)
    try:
        for i in range(150):
            pub.publish("stations/AIR1/data", message(i, start), qos=1)
        await wait_until(lambda: count(database_url), timeout=20)

        servers.postgres.stop("fast")
        for i in range(150, total):
            pub.publish("stations/AIR1/data", message(i, start), qos=1)
            await asyncio.sleep(0.002)
        await asyncio.sleep(1.5)
        assert not svc.pipeline.database_ok
        # Stuck storage shows: /healthz is not ok, a metric says since when.
        health = ingest_health(svc)
        assert health["status"] == "degraded" and health["storage_stuck_since"] is not None
        since = svc.metrics.value("quantrac_storage_stuck_since_timestamp_seconds")
        assert 0 < since <= datetime.now(UTC).timestamp()
        # Backpressure: the pipeline holds a bounded amount, the rest waits at the broker.
        assert svc.pipeline.pending <= 400 + len(STATION_PARAMS)
        servers.postgres.start()

        expected = total * len(STATION_PARAMS)
        await wait_until(lambda: _equals(count(database_url), expected), timeout=60)
        assert svc.pipeline.database_ok
        assert ingest_health(svc)["storage_stuck_since"] is None
        assert svc.metrics.value("quantrac_storage_stuck_since_timestamp_seconds") == 0
        seqs = await fetch(database_url, "SELECT count(DISTINCT measured_at) FROM readings")
        assert seqs == [(total,)]
    finally:
        await pub.disconnect()
        await svc.stop()


async def _equals(value_coro, expected: int) -> bool:
    return (await value_coro) == expected


async def test_restart_of_ingest_mid_stream_loses_nothing(make_settings, servers, database_url):
    """Stop (as on SIGTERM) with messages in flight; a new worker with the same client id takes
    the persistent session and the broker redelivers whatever was not acknowledged."""
    total = 600
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    settings = make_settings(batch_size=40, batch_max_latency_ms=20)
    first = IngestService(settings)
    await first.start()
    pub = await publisher(servers.mqtt_url)
    for i in range(total):
        pub.publish("stations/AIR1/data", message(i, start), qos=1)
        if i == total // 3:
            await wait_until(lambda: count(database_url), timeout=20)
            await first.stop()
    second = IngestService(settings)
    await second.start()
    try:
        expected = total * len(STATION_PARAMS)
        await wait_until(lambda: _equals(count(database_url), expected), timeout=60)
        stored_first = first.metrics.value("quantrac_readings_stored_total")
        stored_second = second.metrics.value("quantrac_readings_stored_total")
        assert stored_first > 0 and stored_second > 0
        assert stored_first + stored_second == expected
    finally:
        await pub.disconnect()
        await second.stop()
