"""The fuzzer in the suite (issue 15): a few thousand mixed good and hostile payloads through a
real Mosquitto into the real ingest service and a real PostgreSQL. 0 crashes, 0 good readings
lost or changed, every rejection stored with its reason and acknowledged once on its station's
topic. ``bench/fuzz.py`` runs the same at >= 100,000 messages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from quantrac.ingest.service import IngestService
from quantrac.simulator.fuzz import POISON, generate
from quantrac.simulator.fuzz_run import run_fuzz

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("seed", [15, 2026])
async def test_fuzzed_traffic_costs_no_good_reading(
    make_settings, servers, database_url, registry, seed
):
    # The shipped rate limit stays on: good traffic must never trip it.
    settings = make_settings(rate_limit_per_s=20, rate_limit_burst=2000, batch_size=500)
    messages = generate(
        registry,
        2500,
        seed=seed,
        start=datetime.now(UTC) - timedelta(days=2),
        max_payload_bytes=settings.max_payload_bytes,
        oversized_every=500,
    )
    kinds = {m.kind for m in messages}
    assert {maker.__name__ for maker in POISON} and len(kinds) >= 20  # the mix is really mixed
    svc = IngestService(settings)
    await svc.start()
    try:
        await asyncio.wait_for(svc.mqtt.connected.wait(), 10)
        await asyncio.sleep(0.2)
        report, _ = await run_fuzz(
            messages, mqtt_url=servers.mqtt_url, database_url=database_url, timeout_s=30
        )
        assert svc.pipeline.healthy  # the writer never died, storage never stuck
    finally:
        await svc.stop()
    summary = report.summary()
    assert report.lost == [] and report.changed_or_unexpected == [], summary
    assert report.ack_mismatches == {}, summary
    assert report.without_reason == 0 and report.internal_errors == 0, summary
    assert report.rejections_stored == report.problems_acked + report.topicless_rejections, summary
    assert report.good_readings > 1000 and report.rejected_messages > 800, summary
