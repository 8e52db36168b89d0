"""End to end over a real Mosquitto and a real PostgreSQL: publish → validate → store → ack."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from quantrac.ingest.service import IngestService
from tests.conftest import Subscriber, fetch, publisher, wait_until

pytestmark = pytest.mark.integration


def payload(station: str, moment: datetime, readings: list[dict], seq: int | None = None) -> bytes:
    body: dict = {"station": station, "time": moment.isoformat(), "readings": readings}
    if seq is not None:
        body["seq"] = seq
    return json.dumps(body).encode()


def recent(minutes: int = 10) -> datetime:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).replace(microsecond=0)


@pytest.fixture
async def service(make_settings):
    svc = IngestService(make_settings())
    await svc.start()
    await asyncio.wait_for(svc.mqtt.connected.wait(), 10)
    await asyncio.sleep(0.2)  # let the SUBSCRIBE reach the broker
    yield svc
    await svc.stop()


async def count_readings(url: str) -> int:
    return (await fetch(url, "SELECT count(*) FROM readings"))[0][0]


async def test_published_reading_is_stored_with_unit_conversion(service, servers, database_url):
    pub = await publisher(servers.mqtt_url)
    t = recent()
    pub.publish(
        "stations/AIR1/data",
        payload(
            "AIR1",
            t,
            [
                {"param": "PM2.5", "value": 0.0351, "unit": "mg/m3", "status": "00"},
                {"param": "NO2", "value": 41.5, "unit": "ug/m3", "status": "01"},
            ],
            seq=7,
        ),
        qos=1,
    )
    await wait_until(lambda: count_readings(database_url))
    rows = await fetch(
        database_url,
        "SELECT station_id, param, measured_at, value, status FROM readings ORDER BY param",
    )
    assert rows == [("AIR1", "NO2", t, 41.5, 1), ("AIR1", "PM2,5", t, pytest.approx(35.1), 0)]
    await pub.disconnect()


async def test_same_message_twice_is_stored_once(make_settings, servers, database_url):
    svc = IngestService(make_settings(positive_ack=True))
    await svc.start()
    acks = await Subscriber(servers.mqtt_url).start("stations/+/ack")
    pub = await publisher(servers.mqtt_url)
    message = payload("WW1", recent(), [{"param": "COD", "value": 80, "unit": "mg/L"}], seq=1)
    pub.publish("stations/WW1/data", message, qos=1)
    await acks.wait_for(1)
    pub.publish("stations/WW1/data", message, qos=1)
    received = await acks.wait_for(2)
    await svc.stop()
    bodies = [json.loads(p) for _, p in received]
    assert [(b["accepted"], b["duplicates"], b["status"]) for b in bodies] == [
        (1, 0, "accepted"),
        (0, 1, "accepted"),
    ]
    assert await count_readings(database_url) == 1
    await pub.disconnect()
    await acks.stop()


async def test_conflicting_duplicate_is_rejected_not_overwritten(service, servers, database_url):
    acks = await Subscriber(servers.mqtt_url).start("stations/WW1/ack")
    pub = await publisher(servers.mqtt_url)
    t = recent()
    pub.publish(
        "stations/WW1/data",
        payload("WW1", t, [{"param": "COD", "value": 80, "unit": "mg/L"}]),
        qos=1,
    )
    await wait_until(lambda: count_readings(database_url))
    pub.publish(
        "stations/WW1/data",
        payload("WW1", t, [{"param": "COD", "value": 95, "unit": "mg/L"}], seq=2),
        qos=1,
    )
    ((_topic, body),) = await acks.wait_for(1)
    feedback = json.loads(body)
    assert feedback["status"] == "rejected" and feedback["seq"] == 2
    assert feedback["problems"][0]["rule"] == "conflicting_duplicate"
    assert (await fetch(database_url, "SELECT value FROM readings"))[0][0] == 80.0
    rejections = await fetch(database_url, "SELECT reason, station_id FROM rejections")
    assert rejections == [("conflicting_duplicate", "WW1")]
    await pub.disconnect()
    await acks.stop()


async def test_bad_payloads_are_rejected_with_reasons_and_good_readings_kept(
    service, servers, database_url
):
    acks = await Subscriber(servers.mqtt_url).start("stations/+/ack")
    pub = await publisher(servers.mqtt_url)
    t = recent()
    pub.publish("stations/AIR1/data", b"{not json", qos=1)
    pub.publish(
        "stations/AIR1/data",
        payload("WW1", t, [{"param": "COD", "value": 1, "unit": "mg/L"}]),
        qos=1,
    )
    pub.publish(
        "stations/NOPE/data",
        payload("NOPE", t, [{"param": "COD", "value": 1, "unit": "mg/L"}]),
        qos=1,
    )
    pub.publish(
        "stations/WW1/data",
        payload(
            "WW1",
            t,
            [
                {"param": "COD", "value": 70.5, "unit": "mg/L", "status": "00"},
                {"param": "TSS", "value": 12, "unit": "ppm"},
                {"param": "pH", "value": "7.1", "unit": "pH"},
                {"param": "Flow", "value": 10, "unit": "m3/h", "status": "09"},
                {"param": "BOD5", "value": 10, "unit": "mg/L"},
                {"param": "Unobtainium", "value": 1, "unit": "mg/L"},
                {
                    "param": "COD",
                    "value": 70.5,
                    "unit": "mg/L",
                    "time": (t + timedelta(days=2)).isoformat(),
                },
            ],
            seq=99,
        ),
        qos=1,
    )
    received = await acks.wait_for(4)
    by_topic: dict[str, list[dict]] = {}
    for topic, body in received:
        by_topic.setdefault(topic, []).append(json.loads(body))
    air = by_topic["stations/AIR1/ack"]
    assert sorted(p["rule"] for b in air for p in b["problems"]) == [
        "payload_syntax",
        "station_mismatch",
    ]
    assert by_topic["stations/NOPE/ack"][0]["problems"][0]["rule"] == "station_unknown"
    ww = by_topic["stations/WW1/ack"][0]
    assert ww["status"] == "partial" and ww["accepted"] == 1 and ww["seq"] == 99
    assert {(p["field"], p["rule"]) for p in ww["problems"]} == {
        ("readings[1].unit", "unit_unknown"),
        ("readings[2].value", "value_not_number"),
        ("readings[3].status", "status_invalid"),
        ("readings[4].param", "param_not_declared"),
        ("readings[5].param", "param_unknown"),
        ("readings[6].time", "time_in_future"),
    }
    assert await fetch(database_url, "SELECT param, value FROM readings") == [("COD", 70.5)]
    stored = await fetch(database_url, "SELECT reason, count(*) FROM rejections GROUP BY 1")
    assert dict(stored) == {
        "payload_syntax": 1,
        "station_mismatch": 1,
        "station_unknown": 1,
        "unit_unknown": 1,
        "value_not_number": 1,
        "status_invalid": 1,
        "param_not_declared": 1,
        "param_unknown": 1,
        "time_in_future": 1,
    }
    excerpt = await fetch(
        database_url, "SELECT payload_excerpt FROM rejections WHERE reason = 'payload_syntax'"
    )
    assert excerpt == [("{not json",)]
    metric = service.metrics.value("quantrac_rejections_total", reason="unit_unknown")
    assert metric == 1
    await pub.disconnect()
    await acks.stop()


async def test_tt10_text_payload_is_detected_and_read_as_local_time(service, servers, database_url):
    local = (datetime.now(UTC) + timedelta(hours=7) - timedelta(hours=1)).strftime("%Y%m%d%H")
    text = (
        f"Flow\t12,5\tm3/h\t{local}0500\t00\r\n"
        f"pH 7.05 pH {local}0500 00\r\n"
        f"COD\t88\tmg/L\t{local}0500\t02\r\n"
    ).encode()
    pub = await publisher(servers.mqtt_url)
    pub.publish("stations/WW1/data", text, qos=1)
    await wait_until(lambda: count_readings(database_url))
    await wait_until(lambda: fetch(database_url, "SELECT 1 FROM readings HAVING count(*) = 3"))
    rows = await fetch(
        database_url, "SELECT param, value, status, measured_at FROM readings ORDER BY param"
    )
    expected_time = datetime.strptime(f"{local}0500", "%Y%m%d%H%M%S").replace(
        tzinfo=UTC
    ) - timedelta(hours=7)
    assert rows == [
        ("COD", 88.0, 2, expected_time),
        ("Flow", 12.5, 0, expected_time),
        ("pH", 7.05, 0, expected_time),
    ]
    await pub.disconnect()


async def test_late_and_out_of_order_readings_are_stored_and_rolled_up(
    service, servers, database_url
):
    from quantrac.ingest.rollup import refresh_hourly

    pub = await publisher(servers.mqtt_url)
    base = (datetime.now(UTC) - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    # Newest first, then a backlog two days older, as a station resending after an outage.
    for minutes in (50, 10, 30):
        pub.publish(
            "stations/AIR1/data",
            payload(
                "AIR1",
                base + timedelta(minutes=minutes),
                [{"param": "PM10", "value": float(minutes), "unit": "µg/m3"}],
            ),
            qos=1,
        )
    old = base - timedelta(days=40)
    pub.publish(
        "stations/AIR1/data",
        payload(
            "AIR1",
            old,
            [
                {"param": "PM10", "value": 5.0, "unit": "µg/m3"},
                {"param": "PM2,5", "value": 3.0, "unit": "µg/m3", "status": "01"},
            ],
        ),
        qos=1,
    )
    await wait_until(lambda: fetch(database_url, "SELECT 1 FROM readings HAVING count(*) = 5"))
    async with await __import__("psycopg").AsyncConnection.connect(database_url) as conn:
        assert await refresh_hourly(conn) == 2
    hourly = await fetch(
        database_url, "SELECT param, hour, n, min, max, mean FROM readings_hourly ORDER BY hour"
    )
    assert hourly == [
        ("PM10", old, 1, 5.0, 5.0, 5.0),
        ("PM10", base, 3, 10.0, 50.0, pytest.approx(30.0)),
    ]
    await pub.disconnect()


async def _later(value: bool) -> bool:
    return value


async def test_ingest_reconnects_after_broker_restart(make_settings, servers, database_url):
    if servers.mosquitto is None:
        pytest.skip("needs the broker the test session started")
    svc = IngestService(make_settings())
    await svc.start()
    try:
        await asyncio.wait_for(svc.mqtt.connected.wait(), 10)
        before = svc.mqtt.generation
        servers.mosquitto.restart()
        # A new connection, not the old one's event: Mosquitto 2.0.11 does not restore a
        # `$share` subscription after a restart, so only quantrac's subscribing again on every
        # connect gets later messages delivered (docs/benchmarks.md, "Soak").
        # (generation counts disconnects and connects: +2 is the new connection)
        await wait_until(lambda: _later(svc.mqtt.generation >= before + 2), timeout=20)
        await asyncio.wait_for(svc.mqtt.subscribed.wait(), 20)  # its SUBACK
        assert svc.mqtt.subscription.startswith("$share/")
        pub = await publisher(servers.mqtt_url)
        pub.publish(
            "stations/AIR1/data",
            payload("AIR1", recent(), [{"param": "NO2", "value": 20.0, "unit": "µg/m3"}]),
            qos=1,
        )
        await wait_until(lambda: count_readings(database_url), timeout=20)
        await pub.disconnect()
    finally:
        await svc.stop()


async def test_mqtt_311_client_gets_the_same_guarantees(make_settings, servers, database_url):
    svc = IngestService(make_settings(mqtt_protocol="3.1.1"))
    await svc.start()
    try:
        await asyncio.wait_for(svc.mqtt.connected.wait(), 10)
        await asyncio.sleep(0.2)
        pub = await publisher(servers.mqtt_url)
        message = payload("AIR1", recent(), [{"param": "NO2", "value": 12.5, "unit": "µg/m3"}])
        pub.publish("stations/AIR1/data", message, qos=1)
        pub.publish("stations/AIR1/data", message, qos=1)
        await wait_until(lambda: count_readings(database_url))
        await wait_until(
            lambda: _value_reached(svc.metrics.value("quantrac_readings_duplicate_total"), 1)
        )
        assert await count_readings(database_url) == 1
        await pub.disconnect()
    finally:
        await svc.stop()


async def _value_reached(value: float, target: float) -> bool:
    return value >= target


async def test_rate_limit_and_payload_size_are_enforced_per_station(
    make_settings, servers, database_url
):
    svc = IngestService(
        make_settings(rate_limit_per_s=0.01, rate_limit_burst=2, max_payload_bytes=400)
    )
    await svc.start()
    acks = await Subscriber(servers.mqtt_url).start("stations/+/ack")
    pub = await publisher(servers.mqtt_url)
    try:
        await asyncio.wait_for(svc.mqtt.connected.wait(), 10)
        t = recent()
        # Limited on the station's own clock: four messages stamped in one minute, two allowed.
        for index, param in enumerate(["NO2", "PM10", "PM2.5", "Temp"]):
            unit = "°C" if param == "Temp" else "µg/m3"
            pub.publish(
                "stations/AIR1/data",
                payload(
                    "AIR1",
                    t.replace(second=0) + timedelta(seconds=index),
                    [{"param": param, "value": 10.0, "unit": unit}],
                    seq=index,
                ),
                qos=1,
            )
        big = payload("WW1", t, [{"param": "COD", "value": 1.0, "unit": "mg/L"}] * 20, seq=9)
        assert len(big) > 400
        pub.publish("stations/WW1/data", big, qos=1)
        received = await acks.wait_for(3)
        rules = sorted(
            (json.loads(b)["station"], json.loads(b)["problems"][0]["rule"]) for _, b in received
        )
        assert rules == [
            ("AIR1", "rate_limited"),
            ("AIR1", "rate_limited"),
            ("WW1", "payload_too_large"),
        ]
        assert await count_readings(database_url) == 2
    finally:
        await pub.disconnect()
        await acks.stop()
        await svc.stop()
