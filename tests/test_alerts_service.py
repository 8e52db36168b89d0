"""The alert service against real Mosquitto and PostgreSQL: publish → stored → alert event,
lifecycle, one open alert per condition under concurrency, and recovery after a restart from the
committed stream's cursors."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from quantrac.alerts.engine import Change, Transition
from quantrac.alerts.model import EventType, Kind, Severity
from quantrac.alerts.service import AlertService
from quantrac.alerts.store import AlertStore
from quantrac.core.contract import Reading, Status
from quantrac.ingest.schema import POSTGRES
from quantrac.ingest.service import IngestService
from quantrac.ingest.writer import BatchWriter, Item
from tests.conftest import Subscriber, fetch, publisher, wait_until

pytestmark = pytest.mark.integration

# WW1 answers to QCVN 40:2011 column A on a river of 120 m3/s (Kq = 1.0) discharging 3000 m3/day
# (Kf = 1.0): COD Cmax = 75 mg/L.


def an_hour_ago() -> datetime:
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def message(station: str, readings: list[tuple[str, float, datetime, str]]) -> bytes:
    body = {
        "station": station,
        "time": readings[-1][2].isoformat(),
        "readings": [
            {"param": p, "value": v, "unit": u, "time": t.isoformat(), "status": s}
            for p, v, t, s in [(r[0], r[1], r[2], r[3]) for r in readings]
            for u in [{"COD": "mg/L", "Flow": "m3/h", "pH": "pH", "TSS": "mg/L"}[p]]
        ],
    }
    return json.dumps(body).encode()


def cod_hour(
    start: datetime, value: float, status: str = "00"
) -> list[tuple[str, float, datetime, str]]:
    """Twelve readings whose mean is ``value`` (alternating ±10, so never a stuck sensor)."""
    return [
        ("COD", value + (10 if i % 2 else -10), start + timedelta(minutes=5 * i), status)
        for i in range(12)
    ]


async def store_committed(database_url: str, readings: list[Reading]) -> None:
    """What ingest does with accepted readings: one batch through the writer, so the readings
    and their committed batch are stored together."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        writer = BatchWriter(conn, POSTGRES)
        await writer.prepare()
        station = readings[0].station_id
        await writer.write(
            [
                Item(
                    datetime.now(UTC),
                    station,
                    f"stations/{station}/data",
                    "mqtt",
                    None,
                    "{}",
                    readings,
                    [],
                )
            ]
        )


async def judged(database_url: str) -> bool:
    """Every committed batch has been judged by every alert cursor."""
    rows = await fetch(
        database_url,
        "SELECT (SELECT coalesce(max(id), 0) FROM committed_batches) <= "
        "coalesce((SELECT min(position) FROM stream_cursors WHERE name LIKE 'alerts:%'), -1)",
    )
    return bool(rows[0][0])


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
async def alert_service(make_settings: Any):
    """`quantrac run`'s arrangement: ingest, and the engine fed by its committed batches."""
    clock = Clock()
    settings = make_settings(alerts_tick_s=3600)
    svc = AlertService(settings, clock=clock)
    await svc.start()
    ingest = IngestService(settings)
    await ingest.start()
    assert ingest.pipeline is not None and ingest.mqtt is not None
    ingest.pipeline.subscribe(svc.accept)
    await asyncio.wait_for(ingest.mqtt.connected.wait(), 10)
    yield svc, clock
    await ingest.stop()
    await svc.stop()


async def test_an_hour_above_the_limit_gives_one_alert_event_on_mqtt_and_an_episode(
    alert_service: Any, servers: Any, database_url: str
) -> None:
    watcher = await Subscriber(servers.mqtt_url).start("alerts/#")
    pub = await publisher(servers.mqtt_url)
    start = an_hour_ago()
    pub.publish("stations/WW1/data", message("WW1", cod_hour(start, 150.0)), qos=1)
    [(topic, body)] = await watcher.wait_for(1)
    assert topic == "alerts/WW1/exceedance"
    event = json.loads(body)
    assert event["event"] == "opened" and event["kind"] == "exceedance"
    assert event["severity"] == "critical"
    assert event["station"] == "WW1" and event["param"] == "COD"
    assert event["station_name"] == "Trạm nước thải thử"
    d = event["details"]
    assert d["averaging"] == "1h" and d["regulation"] == "QCVN 40:2011/BTNMT" and d["column"] == "A"
    assert d["value"] == pytest.approx(150.0)
    assert d["limit"] == 75.0 and d["multiple"] == pytest.approx(2.0)
    assert d["formula"].endswith("= 75 mg/L") and d["band"] == "1.5–<3"
    assert d["completeness"] == 1.0

    rows = await fetch(
        database_url, "SELECT kind, param, state, count, max_value FROM alerts ORDER BY id"
    )
    assert rows == [("exceedance", "COD", "open", 1, 150.0)]  # the maximum hourly mean
    episodes = await fetch(
        database_url, "SELECT param, averaging, start_at, end_at, maximum FROM exceedance_episodes"
    )
    assert episodes == [("COD", "1h", start, start + timedelta(hours=1), 150.0)]
    await watcher.stop()
    await pub.disconnect()


async def test_two_messages_of_one_station_at_once_give_one_alert(
    alert_service: Any, servers: Any, database_url: str
) -> None:
    start = an_hour_ago()
    faults = [("Flow", 0.0, start + timedelta(minutes=5 * i), "02") for i in range(4)]
    pub = await publisher(servers.mqtt_url)
    # Both halves of a faulty, exceeding hour, published back to back, and each with faults.
    first = cod_hour(start, 150.0)[:6] + faults[:2]
    second = cod_hour(start, 150.0)[6:] + faults[2:]
    pub.publish("stations/WW1/data", message("WW1", first), qos=1)
    pub.publish("stations/WW1/data", message("WW1", second), qos=1)

    async def settled() -> list[tuple[Any, ...]]:
        rows = await fetch(database_url, "SELECT kind, param, count FROM alerts ORDER BY kind")
        return rows if len(rows) == 2 and rows[0][2] == 4 else []

    rows = await wait_until(settled)
    assert rows == [("device_fault", "Flow", 4), ("exceedance", "COD", 1)]
    await pub.disconnect()


async def test_concurrent_raises_in_the_database_keep_one_open_alert(
    database_url: str, alert_service: Any
) -> None:
    now = datetime.now(UTC)
    t = Transition(Change.RAISE, Kind.DATA_LOSS, "WW1", "", now, None, {})

    async def raise_once() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await AlertStore(conn, {}).apply([t], lambda k: Severity.MAJOR, now)

    await asyncio.gather(*(raise_once() for _ in range(8)))
    rows = await fetch(
        database_url, "SELECT count(*), sum(count) FROM alerts WHERE kind = 'data_loss'"
    )
    assert rows == [(1, 8)]
    events = await fetch(
        database_url, "SELECT event, count(*) FROM alert_events GROUP BY event ORDER BY event"
    )
    assert events == [("opened", 1), ("updated", 7)]


async def test_acknowledge_and_resolve_are_audited_and_a_new_exceedance_opens_a_new_alert(
    alert_service: Any, database_url: str
) -> None:
    svc, _ = alert_service
    start = an_hour_ago()
    received = datetime.now(UTC)
    readings = [
        Reading("WW1", "COD", t, v, Status.MEASURING) for _, v, t, _ in cod_hour(start, 150.0)
    ]
    [opened] = await svc.process("WW1", readings, received)
    assert opened.event is EventType.OPENED

    ack = await svc.act(opened.alert_id, EventType.ACKNOWLEDGED, "operator.an", "đã gọi nhà máy")
    assert ack.state.value == "acknowledged" and ack.actor == "operator.an"
    with pytest.raises(ValueError, match="already acknowledged"):
        await svc.act(opened.alert_id, EventType.ACKNOWLEDGED, "operator.an", None)
    done = await svc.act(opened.alert_id, EventType.RESOLVED, "operator.binh", "xử lý xong")
    assert done.state.value == "resolved"
    with pytest.raises(LookupError):
        await svc.act(999999, EventType.ACKNOWLEDGED, "x", None)

    # The condition is still on: the next exceeding hour opens a fresh alert.
    later = [
        Reading("WW1", "COD", t, v, Status.MEASURING)
        for _, v, t, _ in cod_hour(start + timedelta(hours=1), 140.0)
    ]
    [again] = await svc.process("WW1", later, received)
    assert again.event is EventType.OPENED and again.alert_id != opened.alert_id

    trail = await fetch(
        database_url,
        "SELECT event, actor, note FROM alert_events WHERE alert_id = %s ORDER BY id",
        [opened.alert_id],
    )
    assert trail == [
        ("opened", None, None),
        ("acknowledged", "operator.an", "đã gọi nhà máy"),
        ("resolved", "operator.binh", "xử lý xong"),
    ]


async def test_silent_station_raises_data_loss_from_the_clock(
    alert_service: Any, database_url: str
) -> None:
    svc, clock = alert_service
    clock.offset = timedelta(minutes=16)  # cadence 300 s × 3 = 15 min of silence
    events = await svc.tick()
    lost = {(e.station_id, e.param) for e in events if e.kind is Kind.DATA_LOSS}
    assert lost == {("AIR1", ""), ("WW1", "")}
    assert await svc.tick() == []  # raised once, not every tick


async def test_restart_resumes_at_the_cursor_and_resolves_what_cleared_meanwhile(
    make_settings: Any, database_url: str
) -> None:
    settings = make_settings(alerts_tick_s=3600)
    start = an_hour_ago() - timedelta(hours=1)
    first = AlertService(settings)
    await first.start()
    readings = [
        Reading("WW1", "COD", t, v, Status.MEASURING) for _, v, t, _ in cod_hour(start, 150.0)
    ]
    await store_committed(database_url, readings)
    await wait_until(lambda: judged(database_url))
    [(opened,)] = await fetch(database_url, "SELECT id FROM alerts WHERE kind = 'exceedance'")
    await first.stop()

    # While the engine was down, ingest stored two clean hours.
    for h in (1, 2):
        clean = [
            Reading("WW1", "COD", t, v, Status.MEASURING)
            for _, v, t, _ in cod_hour(start + timedelta(hours=h), 20.0)
        ]
        await store_committed(database_url, clean)

    second = AlertService(settings)
    await second.start()
    await wait_until(lambda: judged(database_url))
    await second.stop()
    state = await fetch(
        database_url, "SELECT state, resolution FROM alerts WHERE id = %s", [opened]
    )
    assert state == [("resolved", "auto")]
    events = await fetch(
        database_url, "SELECT event FROM alert_events WHERE alert_id = %s ORDER BY id", [opened]
    )
    assert events == [("opened",), ("auto_resolved",)]
    episodes = await fetch(
        database_url, "SELECT start_at, end_at, ongoing FROM exceedance_episodes"
    )
    assert episodes == [(start, start + timedelta(hours=1), False)]


async def test_restart_keeps_an_open_alert_without_repeating_it(
    make_settings: Any, database_url: str
) -> None:
    settings = make_settings(alerts_tick_s=3600)
    start = an_hour_ago()
    first = AlertService(settings)
    await first.start()
    readings = [
        Reading("WW1", "COD", t, v, Status.MEASURING) for _, v, t, _ in cod_hour(start, 150.0)
    ]
    await store_committed(database_url, readings)
    await wait_until(lambda: judged(database_url))
    await first.stop()
    second = AlertService(settings)
    await second.start()
    await wait_until(lambda: judged(database_url))
    await second.stop()
    rows = await fetch(database_url, "SELECT state, count FROM alerts WHERE kind = 'exceedance'")
    assert rows == [("open", 1)]
    events = await fetch(database_url, "SELECT count(*) FROM alert_events")
    assert events == [(1,)]


async def test_a_separate_engine_follows_what_ingest_stored(
    make_settings: Any, servers: Any, database_url: str
) -> None:
    """`quantrac alerts` beside `quantrac run`: no MQTT of its own, the stored stream only."""
    settings = make_settings(alerts_tick_s=3600)
    ingest = IngestService(settings)
    await ingest.start()
    alerts = AlertService(settings)
    await alerts.start()
    assert ingest.mqtt is not None
    await asyncio.wait_for(ingest.mqtt.connected.wait(), 10)
    try:
        pub = await publisher(servers.mqtt_url)
        pub.publish("stations/WW1/data", message("WW1", cod_hour(an_hour_ago(), 150.0)), qos=1)

        async def both() -> bool:
            stored = (await fetch(database_url, "SELECT count(*) FROM readings"))[0][0]
            opened = (await fetch(database_url, "SELECT count(*) FROM alerts"))[0][0]
            return stored == 12 and opened == 1

        await wait_until(both)
        await pub.disconnect()
    finally:
        await alerts.stop()
        await ingest.stop()


ESCALATING = """
rules:
  stuck_value: {enabled: false}
notifications:
  channels:
    - {name: feed, type: mqtt}
    - {name: duty, type: mqtt}
  routes:
    - {channels: [feed]}
  escalations:
    - {name: duty-after-30, after_minutes: 30, channels: [duty], severities: [critical]}
"""


async def test_an_unacknowledged_critical_alert_escalates_once(
    make_settings: Any, tmp_path: Any, database_url: str
) -> None:
    alerts_file = tmp_path / "alerts.yaml"
    alerts_file.write_text(ESCALATING, encoding="utf-8")
    clock = Clock()
    svc = AlertService(make_settings(alerts_tick_s=3600, alerts_file=alerts_file), clock=clock)
    await svc.start()
    try:
        start = an_hour_ago()
        critical = [
            Reading("WW1", "COD", t, v, Status.MEASURING) for _, v, t, _ in cod_hour(start, 150.0)
        ]
        [exceedance] = await svc.process("WW1", critical, datetime.now(UTC))
        fault = Reading("WW1", "Flow", start, 0.0, Status.FAULT)
        [device] = await svc.process("WW1", [fault], datetime.now(UTC))
        assert await svc.escalate() == []  # not yet 30 minutes
        clock.offset = timedelta(minutes=31)
        [escalated] = await svc.escalate()
        assert escalated.event is EventType.ESCALATED
        assert escalated.alert_id == exceedance.alert_id  # the major device fault is not routed
        assert escalated.details["escalation"] == "duty-after-30"
        assert escalated.details["channels"] == ["duty"]
        assert await svc.escalate() == []  # once per rule and alert
        assert device.severity is Severity.MAJOR
    finally:
        await svc.stop()
    rows = await fetch(
        database_url, "SELECT alert_id, event FROM alert_events WHERE event = 'escalated'"
    )
    assert rows == [(exceedance.alert_id, "escalated")]


async def test_hourly_aqi_is_kept_for_air_stations(make_settings: Any, database_url: str) -> None:
    svc = AlertService(make_settings(alerts_tick_s=3600))
    await svc.start()
    try:
        start = an_hour_ago() - timedelta(hours=1)
        for hour in (0, 1):
            readings = []
            for i in range(12):
                at = start + timedelta(hours=hour, minutes=5 * i)
                wobble = 1 if i % 2 else -1  # means stay exact, values never stuck
                readings += [
                    Reading("AIR1", "PM2,5", at, 30.0 + wobble, Status.MEASURING),
                    Reading("AIR1", "PM10", at, 40.0 + wobble, Status.MEASURING),
                    Reading("AIR1", "NO2", at, 50.0 + wobble, Status.MEASURING),
                ]
            await svc.process("AIR1", readings, datetime.now(UTC))
    finally:
        await svc.stop()
    rows = await fetch(
        database_url,
        "SELECT hour_start, aqi, category, dominant, sub_indices FROM aqi_hourly "
        "WHERE station_id = 'AIR1' ORDER BY hour_start",
    )
    # Hour 0 has only c1 for the NowCast: no PM sub-index, so no AQI. Hour 1: NowCast of a
    # steady 30 µg/m³ is 30 → 50 + (100 − 50) / (50 − 25) × (30 − 25) = 60 (PM2.5);
    # PM10 40 → 40; NO2 50 → 25. AQI 60, moderate, PM2.5 dominant.
    assert rows == [
        (
            start + timedelta(hours=1),
            60,
            "moderate",
            ["PM2,5"],
            {"PM2,5": 60, "PM10": 40, "NO2": 25},
        )
    ]


def test_quantrac_alerts_runs_alone(make_settings: Any, monkeypatch: Any, capsys: Any) -> None:
    from quantrac.cli.main import main

    settings = make_settings()
    monkeypatch.setenv("QUANTRAC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("QUANTRAC_MQTT_URL", settings.mqtt_url)
    monkeypatch.setenv("QUANTRAC_STATIONS_FILE", str(settings.stations_path))
    monkeypatch.setenv("QUANTRAC_ALERTS_SHARE_GROUP", settings.alerts_share_group)
    monkeypatch.setenv("QUANTRAC_MQTT_CLIENT_ID", settings.mqtt_client_id)
    monkeypatch.setenv("QUANTRAC_HTTP_PORT", "0")
    assert main(["alerts", "--duration", "0.5"]) == 0
    import psycopg as pg

    with pg.connect(settings.database_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN "
            "('alerts', 'alert_events', 'exceedance_episodes', 'aqi_hourly')"
        ).fetchone()
    assert tables == (4,)


async def test_what_a_failed_commit_held_is_stored_by_the_next_one(
    make_settings: Any, database_url: str
) -> None:
    from psycopg_pool import AsyncConnectionPool

    svc = AlertService(make_settings(alerts_tick_s=3600))
    await svc.start()
    try:
        assert svc.pool is not None
        await svc.pool.close()  # the database goes away under the engine
        readings = [
            Reading("WW1", "COD", t, v, Status.MEASURING)
            for _, v, t, _ in cod_hour(an_hour_ago(), 150.0)
        ]
        with pytest.raises(Exception):  # noqa: B017 - any failure of the pool will do
            await svc.process("WW1", readings, datetime.now(UTC))
        svc.pool = AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False)
        await svc.pool.open(wait=True)
        # The broker redelivers the unacknowledged message. It changes no window any more, so
        # the engine decides nothing new: the exceedance comes from what the failed commit held.
        events = await svc.process("WW1", readings, datetime.now(UTC))
        assert [(e.kind, e.event) for e in events if e.kind is Kind.EXCEEDANCE] == [
            (Kind.EXCEEDANCE, EventType.OPENED)
        ]
    finally:
        await svc.stop()
    rows = await fetch(
        database_url, "SELECT kind, param, count FROM alerts WHERE kind = 'exceedance'"
    )
    assert rows == [("exceedance", "COD", 1)]


async def test_revised_evidence_updates_the_alert_without_counting_a_repeat(
    make_settings: Any, database_url: str
) -> None:
    svc = AlertService(make_settings(alerts_tick_s=3600))
    await svc.start()
    try:
        start = an_hour_ago()
        hour = [
            Reading("WW1", "COD", t, v, Status.MEASURING) for _, v, t, _ in cod_hour(start, 150.0)
        ]
        [opened] = await svc.process("WW1", hour, datetime.now(UTC))
        extra = [
            Reading("WW1", "COD", start + timedelta(minutes=5 * i + 2), 300.0, Status.MEASURING)
            for i in range(6)
        ]
        events = await svc.process("WW1", extra, datetime.now(UTC))
        assert [(e.kind, e.event) for e in events] == [(Kind.EXCEEDANCE, EventType.REVISED)], [
            (e.kind, e.event, e.param) for e in events
        ]
        assert events[0].alert_id == opened.alert_id
    finally:
        await svc.stop()
    rows = await fetch(database_url, "SELECT count, max_value, details->>'value' FROM alerts")
    assert rows == [(1, 200.0, "200.0")]
