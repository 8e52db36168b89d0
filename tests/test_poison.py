"""Poison payloads never cost good data (issue 15): each case found by the fuzzer, over a real
Mosquitto into the real service and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from quantrac.core.contract import Reading, Status
from quantrac.ingest.service import IngestService
from quantrac.ingest.writer import Item
from tests.conftest import Subscriber, fetch, publisher, wait_until

pytestmark = pytest.mark.integration


def recent(minutes: int = 30) -> datetime:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).replace(microsecond=0)


def good(station: str, moment: datetime, value: float, seq: int | None = None) -> bytes:
    body: dict = {
        "station": station,
        "time": moment.isoformat(),
        "readings": [
            {
                "param": "COD" if station == "WW1" else "NO2",
                "value": value,
                "unit": "mg/L" if station == "WW1" else "µg/m3",
            }
        ],
    }
    if seq is not None:
        body["seq"] = seq
    return json.dumps(body, ensure_ascii=False).encode()


@pytest.fixture
async def service(make_settings):
    svc = IngestService(make_settings())
    await svc.start()
    await asyncio.wait_for(svc.mqtt.connected.wait(), 10)
    await asyncio.sleep(0.2)
    yield svc
    await svc.stop()


async def readings(url: str) -> list[tuple]:
    return await fetch(url, "SELECT station_id, measured_at, value FROM readings ORDER BY 2")


async def rejection_count(url: str) -> int:
    return (await fetch(url, "SELECT count(*) FROM rejections"))[0][0]


async def test_nul_characters_in_json_strings_cost_no_good_reading(service, servers, database_url):
    acks = await Subscriber(servers.mqtt_url).start("stations/WW1/ack")
    pub = await publisher(servers.mqtt_url)
    start = recent(60)
    for i in range(20):
        moment = start + timedelta(minutes=i)
        pub.publish("stations/WW1/data", good("WW1", moment, 50 + i), qos=1)
        poison = {
            "station": "WW1",
            "time": moment.isoformat(),
            "seq": i,
            "readings": [{"param": "CO\u0000D", "value": 1, "unit": "mg\u0000/L"}],
        }
        pub.publish("stations/WW1/data", json.dumps(poison).encode(), qos=1)
    await wait_until(lambda: _at_least(rejection_count(database_url), 20))
    stored = await readings(database_url)
    assert [(s, v) for s, _, v in stored] == [("WW1", 50.0 + i) for i in range(20)]
    values = await fetch(database_url, "SELECT DISTINCT reason, value FROM rejections")
    assert values == [("param_unknown", "CO\\x00D")]  # escaped visibly, not dropped
    received = await acks.wait_for(20)
    assert len(received) == 20
    assert {json.loads(body)["problems"][0]["rule"] for _, body in received} == {"param_unknown"}
    assert service.pipeline.healthy
    await pub.disconnect()
    await acks.stop()


async def _at_least(value_coro, expected: int) -> bool:
    return (await value_coro) >= expected


async def test_raw_nul_bytes_in_text_payload(service, servers, database_url):
    pub = await publisher(servers.mqtt_url)
    local = (datetime.now(UTC) + timedelta(hours=7) - timedelta(hours=1)).strftime("%Y%m%d%H")
    poison = f"COD\t6\x001\tmg/L\t{local}0000\t00\r\nTSS\x00\t5\tmg/L\t{local}0000\t00\r\n"
    pub.publish("stations/WW1/data", poison.encode(), qos=1)
    pub.publish("stations/WW1/data", good("WW1", recent(), 42.0), qos=1)
    await wait_until(lambda: _at_least(rejection_count(database_url), 2))
    await wait_until(lambda: readings(database_url))
    assert [v for _, _, v in await readings(database_url)] == [42.0]
    rows = await fetch(database_url, "SELECT reason, value FROM rejections ORDER BY field")
    assert rows == [("value_not_number", "6\\x001"), ("param_unknown", "TSS\\x00")]
    await pub.disconnect()


async def test_utf16_payloads_are_decoded_by_their_mark_or_refused(service, servers, database_url):
    acks = await Subscriber(servers.mqtt_url).start("stations/AIR1/ack")
    pub = await publisher(servers.mqtt_url)
    body = good("AIR1", recent(), 17.5).decode()
    pub.publish("stations/AIR1/data", body.encode("utf-16"), qos=1)  # with its byte-order mark
    pub.publish("stations/AIR1/data", body.encode("utf-16-le"), qos=1)  # without
    pub.publish("stations/AIR1/data", good("AIR1", recent(20), 18.5), qos=1)
    await wait_until(lambda: _at_least(rejection_count(database_url), 1))
    await wait_until(lambda: _length(readings(database_url), 2))
    assert sorted(v for _, _, v in await readings(database_url)) == [17.5, 18.5]
    ((_topic, ack),) = await acks.wait_for(1)
    problem = json.loads(ack)["problems"][0]
    assert problem["rule"] == "payload_encoding" and "UTF-16" in problem["detail"]
    (excerpt,) = (await fetch(database_url, "SELECT payload_excerpt FROM rejections"))[0]
    assert "\\x00" in excerpt and "\x00" not in excerpt
    await pub.disconnect()
    await acks.stop()


async def _length(rows_coro, expected: int) -> bool:
    return len(await rows_coro) >= expected


async def test_seq_beyond_64_bits_is_rejected_with_a_reason(service, servers, database_url):
    acks = await Subscriber(servers.mqtt_url).start("stations/WW1/ack")
    pub = await publisher(servers.mqtt_url)
    huge = 2**64 + 1
    body = good("WW1", recent(), 3.0).replace(b"{", b'{"seq": %d, ' % huge, 1)
    pub.publish("stations/WW1/data", body, qos=1)
    pub.publish("stations/WW1/data", good("WW1", recent(10), 4.0, seq=2**63 - 1), qos=1)
    await wait_until(lambda: rejection_count(database_url))
    await wait_until(lambda: readings(database_url))
    assert [v for _, _, v in await readings(database_url)] == [4.0]
    rows = await fetch(database_url, "SELECT reason, field, value, seq FROM rejections")
    assert rows == [("payload_schema", "seq", str(huge), None)]
    ((_, ack),) = await acks.wait_for(1)
    assert json.loads(ack)["problems"][0]["field"] == "seq"
    await pub.disconnect()
    await acks.stop()


async def test_a_huge_unknown_station_claim_is_stored_bounded(service, servers, database_url):
    pub = await publisher(servers.mqtt_url)
    claim = "X" * 200_000
    body = json.dumps(
        {
            "station": claim,
            "time": recent().isoformat(),
            "readings": [{"param": "COD", "value": 1, "unit": "mg/L"}],
        }
    ).encode()
    pub.publish(f"stations/{'Y' * 5000}/data", body, qos=1)
    pub.publish("stations/WW1/data", good("WW1", recent(), 5.0), qos=1)
    await wait_until(lambda: rejection_count(database_url))
    await wait_until(lambda: readings(database_url))
    (row,) = await fetch(
        database_url,
        "SELECT reason, length(station_id), length(topic), length(detail) FROM rejections",
    )
    assert row[0] == "station_mismatch"
    assert row[1] <= 257 and row[2] <= 257 and row[3] <= 1001
    await pub.disconnect()


async def test_a_batch_the_database_refuses_commits_the_rest_and_rejects_the_culprit(
    service, database_url
):
    """Past the sanitising: an item the database still refuses is isolated and rejected as
    storage_refused, the others in its batch commit, and nothing is retried forever."""
    now = recent()

    def item(station: str, value: float, status: int, **kw) -> Item:
        reading = Reading(station, "COD", now + timedelta(seconds=value), value, status)  # type: ignore[arg-type]
        return Item(
            now, station, "stations/WW1/data", kw.get("source", "mqtt"), 7, "{}", [reading], []
        )

    good_items = [item("WW1", float(i), Status.MEASURING) for i in range(6)]
    refused = item("WW1", 100.0, 9)  # the CHECK constraint on status refuses it
    unstorable = item("WW1", 200.0, 9, source="mqtt\x00")  # not even a rejection fits
    results = await asyncio.gather(
        *(
            service.pipeline.submit(it)
            for it in [*good_items[:3], refused, unstorable, *good_items[3:]]
        )
    )
    assert sorted(v for _, _, v in await readings(database_url)) == [float(i) for i in range(6)]
    assert all(r.stored == 1 for r in results if r in good_items)
    assert [p.reason for p in refused.problems] == ["storage_refused"]
    assert "CheckViolation" in refused.problems[0].detail
    assert [p.reason for p in unstorable.problems] == ["storage_refused"]
    stored = await fetch(database_url, "SELECT reason, field, value FROM rejections")
    assert stored == [
        ("storage_refused", f"COD@{(now + timedelta(seconds=100)).isoformat()}", "100.0")
    ]
    assert service.metrics.value("quantrac_unstorable_payloads_total") == 1
    assert service.pipeline.healthy and service.pipeline.database_ok


# --- rate limiting never rejects what the broker holds for us; topics without a station -------

LIMITED = {"rate_limit_per_s": 0.5, "rate_limit_burst": 10}  # 40 messages per minute of own time


async def test_a_backlog_replayed_after_a_restart_is_not_rate_limited(
    make_settings, servers, database_url
):
    settings = make_settings(**LIMITED)
    svc = IngestService(settings)
    await svc.start()
    await asyncio.wait_for(svc.mqtt.connected.wait(), 10)
    await asyncio.sleep(0.2)
    await svc.stop()  # the broker keeps the session and queues for it
    pub = await publisher(servers.mqtt_url)
    start = recent(24 * 60)
    total = 200
    for i in range(total):  # sent every 5 s while quantrac was down
        pub.publish("stations/WW1/data", good("WW1", start + timedelta(seconds=5 * i), i), qos=1)
    await asyncio.sleep(0.5)
    svc = IngestService(settings)
    await svc.start()
    try:
        await wait_until(lambda: _length(readings(database_url), total), timeout=30)
        assert len(await readings(database_url)) == total
        assert await rejection_count(database_url) == 0
    finally:
        await svc.stop()
        await pub.disconnect()


async def test_a_flood_of_junk_does_not_use_up_a_stations_limit(
    make_settings, servers, database_url
):
    svc = IngestService(make_settings(**LIMITED))
    await svc.start()
    await asyncio.wait_for(svc.mqtt.connected.wait(), 10)
    await asyncio.sleep(0.2)
    pub = await publisher(servers.mqtt_url)
    try:
        for i in range(300):
            pub.publish("stations/WW1/data", b'{"station": "WW1", "readings": [' + b"x" * i, qos=1)
        start = recent()
        for i in range(10):
            pub.publish("stations/WW1/data", good("WW1", start + timedelta(seconds=i), i), qos=1)
        await wait_until(lambda: _length(readings(database_url), 10), timeout=30)
        await wait_until(lambda: _at_least(rejection_count(database_url), 300), timeout=30)
        reasons = await fetch(database_url, "SELECT reason, count(*) FROM rejections GROUP BY 1")
        assert reasons == [("payload_syntax", 300)]
        # Real readings beyond the limit, stamped in one minute, are limited; junk never was.
        minute = recent(5).replace(second=0)
        for i in range(45):
            pub.publish("stations/WW1/data", good("WW1", minute + timedelta(seconds=i), i), qos=1)
        await wait_until(lambda: _at_least(rejection_count(database_url), 305), timeout=30)
        limited = await fetch(
            database_url, "SELECT count(*) FROM rejections WHERE reason = 'rate_limited'"
        )
        assert limited == [(5,)]
    finally:
        await svc.stop()
        await pub.disconnect()


async def test_a_topic_without_a_station_is_rejected_counted_and_never_stored_as_the_claim(
    service, servers, database_url
):
    acks = await Subscriber(servers.mqtt_url).start("stations/+/ack")
    pub = await publisher(servers.mqtt_url)
    pub.publish("stations//data", good("WW1", recent(), 1.0, seq=1), qos=1)
    # On another station's topic: stored and acknowledged as the publisher's, once.
    pub.publish("stations/AIR1/data", good("WW1", recent(), 2.0, seq=2), qos=1)
    pub.publish("stations/WW1/data", good("WW1", recent(3), 3.0, seq=3), qos=1)
    await wait_until(lambda: readings(database_url))
    await wait_until(lambda: _at_least(rejection_count(database_url), 2))
    received = await acks.wait_for(1)
    await asyncio.sleep(0.5)  # an extra ack would arrive by now
    assert [(topic, json.loads(body)["seq"]) for topic, body in acks.messages] == [
        ("stations/AIR1/ack", 2)
    ]
    assert received
    assert [v for _, _, v in await readings(database_url)] == [3.0]
    rows = await fetch(
        database_url,
        "SELECT station_id, topic, reason, seq FROM rejections ORDER BY seq NULLS FIRST",
    )
    assert rows == [
        (None, "stations//data", "topic_invalid", None),
        ("AIR1", "stations/AIR1/data", "station_mismatch", 2),
    ]
    assert service.metrics.value("quantrac_rejections_total", reason="topic_invalid") == 1
    await pub.disconnect()
    await acks.stop()


async def test_a_burst_of_rejections_gets_every_ack(make_settings, servers, monkeypatch):
    """Found by bench/fuzz.py: 50,000 rejections in a burst used up the client's packet ids,
    5,771 acks were lost and their data messages left without a PUBACK. Acks now wait for the
    broker to take the earlier ones (a small window here, to make the wait happen)."""
    monkeypatch.setattr("quantrac.ingest.mqtt._ACK_WINDOW", 3)
    svc = IngestService(make_settings(batch_size=1000, batch_max_latency_ms=200))
    await svc.start()
    acks = await Subscriber(servers.mqtt_url).start("stations/WW1/ack")
    pub = await publisher(servers.mqtt_url)
    try:
        await asyncio.wait_for(svc.mqtt.connected.wait(), 10)
        for i in range(300):
            pub.publish("stations/WW1/data", b"{junk %d" % i, qos=1)
        received = await acks.wait_for(300, timeout=60)
        assert len(received) == 300
        assert svc.metrics.value("quantrac_acks_failed_total") == 0
    finally:
        await pub.disconnect()
        await acks.stop()
        await svc.stop()
