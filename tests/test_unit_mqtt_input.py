"""Unit tests of the MQTT side without a broker: core's client factory and PUBACK tracker, the
ingest input (message → stored batch → PUBACK and ack; reconnects), the simulator publisher and
the alert notifier, each given a small fake client through its ``client_factory``.

The same paths over the real Mosquitto and PostgreSQL are in tests/test_ingest_mqtt.py,
tests/test_notify_channels.py and tests/test_simulator.py."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from gmqtt.mqtt.constants import MQTTv50, MQTTv311

from quantrac.alerts.model import AlertEvent, EventType, Kind, Severity, State
from quantrac.alerts.notify.base import DeliveryError
from quantrac.alerts.notify.mqtt import MqttChannel
from quantrac.core.catalog import Catalog
from quantrac.core.contract import Feedback, Reason
from quantrac.core.mqtt import (
    InflightTracker,
    MQTTConnectError,
    SessionLost,
    make_client,
    protocol_version,
    tls_context,
)
from quantrac.core.registry import Registry
from quantrac.core.settings import MqttEndpoint, Settings, load_settings
from quantrac.ingest import mqtt as ingest_mqtt
from quantrac.ingest.metrics import IngestMetrics
from quantrac.ingest.mqtt import MqttInput, StaleDelivery
from quantrac.ingest.pipeline import Pipeline, PipelineOptions
from quantrac.ingest.ratelimit import RateLimiter
from quantrac.ingest.receiver import Receiver
from quantrac.ingest.service import IngestService
from quantrac.ingest.validation import TimeLimits
from quantrac.ingest.writer import BatchResult, Item
from quantrac.simulator.publisher import Publisher

ENDPOINT = MqttEndpoint("broker.test", 1883, tls=False, username="WW1", password="s3cret")


class FakeClient:
    """What quantrac uses of gmqtt's Client, in memory. QoS 1 publishes go into the tracker the
    factory was given, as gmqtt does; the test plays the broker (``puback``, ``drop``,
    ``reconnect``, ``deliver``)."""

    def __init__(
        self, client_id: str, endpoint: MqttEndpoint | None = None, **options: Any
    ) -> None:
        self.client_id = client_id
        self.endpoint = endpoint
        self.tracker: InflightTracker = options.pop("tracker", None) or InflightTracker()
        self.options = options
        self.config: dict[str, Any] = {}
        self.reconnect_delay: float = 6
        self.connects: list[dict[str, Any]] = []
        self.refuse: BaseException | None = None
        self.subscriptions: list[tuple[str, int]] = []
        self.published: list[tuple[str, bytes, int]] = []
        self.disconnected = 0
        self._connected = False
        self._mid = 0
        self.on_connect: Any = None
        self.on_disconnect: Any = None
        self.on_subscribe: Any = None
        self.on_message: Any = None
        self.log: list[tuple[str, Any]] | None = None

    def set_config(self, config: dict[str, Any]) -> None:
        self.config.update(config)
        if "reconnect_delay" in config:
            self.reconnect_delay = config["reconnect_delay"]

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self, host: str, port: int, **kwargs: Any) -> None:
        self.connects.append({"host": host, "port": port, **kwargs})
        if self.refuse is not None:
            raise self.refuse
        self._connected = True
        if self.on_connect is not None:
            self.on_connect(self, 0, 0, {})

    async def disconnect(self) -> None:
        self.disconnected += 1
        was_connected, self._connected = self._connected, False
        if was_connected and self.on_disconnect is not None:
            self.on_disconnect(self, None)

    def subscribe(self, topic: str, qos: int = 0) -> None:
        self.subscriptions.append((topic, qos))
        if self.on_subscribe is not None:
            self.on_subscribe(self, len(self.subscriptions), (qos,), {})

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.published.append((topic, payload, qos))
        if self.log is not None:
            self.log.append(("published", topic))
        if qos:
            self._mid += 1
            self.tracker.push_message(self._mid, payload)

    # The broker's side.
    def puback(self, mid: int) -> None:
        self.tracker.remove_message_by_mid(mid)

    def drop(self) -> None:
        self._connected = False
        self.on_disconnect(self, None)

    def reconnect(self, *, session_present: bool = True) -> None:
        self._connected = True
        if not session_present:
            self.tracker.clear()
        self.on_connect(self, int(session_present), 0, {})

    async def deliver(self, topic: str, payload: bytes) -> int:
        result: int = await self.on_message(self, topic, payload, 1, {})
        return result


class FakeFactory:
    def __init__(self) -> None:
        self.clients: list[FakeClient] = []

    def __call__(self, client_id: str, endpoint: MqttEndpoint | None = None, **options: Any):
        client = FakeClient(client_id, endpoint, **options)
        self.clients.append(client)
        return client


class _Conn:
    closed = False
    broken = False

    async def close(self) -> None:
        self.closed = True


class MemoryWriter:
    """An in-memory sink in place of BatchWriter: records each batch, stores every reading."""

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.conn = _Conn()
        self.log = log
        self.batches: list[list[Item]] = []

    async def write(self, items: Sequence[Item]) -> BatchResult:
        self.batches.append(list(items))
        for item in items:
            item.stored = len(item.readings)
            self.log.append(("stored", item.topic))
        return BatchResult(
            stored=sum(len(i.readings) for i in items),
            duplicates=0,
            conflicts=0,
            rejections=sum(len(i.problems) for i in items),
        )


def recent() -> datetime:
    return (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)


def reading_payload(station: str, moment: datetime, seq: int = 1) -> bytes:
    body = {
        "station": station,
        "time": moment.isoformat(),
        "seq": seq,
        "readings": [{"param": "COD", "value": 80, "unit": "mg/L", "status": "00"}],
    }
    return json.dumps(body).encode()


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mqtt_url": "mqtt://WW1:s3cret@broker.test:1883",
        "mqtt_client_id": "quantrac-unit-1",
        "mqtt_share_group": "unit",
        "mqtt_session_expiry_s": 300,
        "mqtt_receive_maximum": 100,
        "rate_limit_per_s": 0,
    }
    values.update(overrides)
    return load_settings({}, **values)


class Ingest:
    """MQTT input → receiver → pipeline → in-memory writer, wired as IngestService does."""

    def __init__(self, s: Settings, catalog: Catalog, registry: Registry) -> None:
        self.log: list[tuple[str, Any]] = []
        self.writer = MemoryWriter(self.log)
        self.metrics = IngestMetrics()
        self.pipeline = Pipeline(
            self._writer_factory, self.metrics, PipelineOptions(batch_size=1, max_latency_s=0)
        )
        receiver = Receiver(
            self.pipeline,
            lambda: registry,
            catalog,
            self.metrics,
            limits=TimeLimits(
                future_margin=timedelta(seconds=s.future_margin_s), retention=s.retention
            ),
            max_payload_bytes=s.max_payload_bytes,
            local=s.tt10_timezone,
            rate_limiter=RateLimiter(s.rate_limit_per_s, s.rate_limit_burst),
        )
        # The service's own handler: which feedback becomes an ack is its decision.
        self.service = IngestService(s, metrics=self.metrics, receiver=receiver)
        self.factory = FakeFactory()
        self.input = MqttInput(
            s, self.service._handle_mqtt, self.metrics, client_factory=self.factory
        )
        self.client = self.factory.clients[0]
        self.client.log = self.log

    async def _writer_factory(self) -> Any:
        return self.writer

    async def __aenter__(self) -> Ingest:
        self.pipeline.start()
        await self.input.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.input.stop(timeout=5)
        await self.pipeline.close(timeout=5)


# --- core: the factory ----------------------------------------------------------------------------


def test_make_client_signs_in_keeps_the_session_and_reconnects_forever() -> None:
    tracker = InflightTracker()
    client = make_client(
        "quantrac-ingest-1",
        ENDPOINT,
        clean_session=False,
        session_expiry_s=300,
        receive_maximum=100,
        optimistic_acknowledgement=False,
        tracker=tracker,
        reconnect=True,
    )
    assert client._client_id == "quantrac-ingest-1"
    assert client._username == b"WW1"
    assert client._password == b"s3cret"
    assert client._clean_session is False
    assert client._persistent_storage is tracker
    assert client._connect_properties == {"session_expiry_interval": 300, "receive_maximum": 100}
    assert client.reconnect_retries == -1
    assert client.reconnect_delay == 1


def test_make_client_defaults_are_gmqtts_own() -> None:
    client = make_client("quantrac-check-1", dataclass_replace(ENDPOINT, username=None))
    assert client._username is None
    assert client._clean_session is True
    assert client._connect_properties == {}
    assert client._will_message is None


def dataclass_replace(endpoint: MqttEndpoint, **changes: Any) -> MqttEndpoint:
    import dataclasses

    return dataclasses.replace(endpoint, **changes)


def test_tls_only_for_mqtts_and_protocol_constants(tmp_path: Path) -> None:
    assert tls_context(ENDPOINT) is False
    context = tls_context(dataclass_replace(ENDPOINT, tls=True))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert protocol_version("5") == MQTTv50
    assert protocol_version("3.1.1") == MQTTv311


# --- core: the PUBACK tracker ---------------------------------------------------------------------


async def test_tracker_counts_in_flight_and_releases_on_puback() -> None:
    tracker = InflightTracker()
    tracker.push_message(1, b"a")
    tracker.push_message(2, b"b")
    assert (tracker.in_flight, tracker.acknowledged, tracker.last_pushed) == (2, 0, 2)
    waiter = asyncio.create_task(tracker.wait_acknowledged(2, timeout=5))
    below = asyncio.create_task(tracker.wait_below(2))
    await asyncio.sleep(0)
    assert not waiter.done() and not below.done()
    tracker.remove_message_by_mid(1)
    await below
    assert not waiter.done()
    tracker.remove_message_by_mid(2)
    await waiter
    assert (tracker.in_flight, tracker.acknowledged, tracker.lost) == (0, 2, 0)
    assert tracker.is_empty
    assert await tracker.wait_all(timeout=0)
    # An unknown or repeated PUBACK changes nothing.
    tracker.remove_message_by_mid(2)
    tracker.remove_message_by_mid(99)
    assert tracker.acknowledged == 2


async def test_tracker_session_lost_counts_lost_and_fails_waiters() -> None:
    tracker = InflightTracker()
    tracker.push_message(5, b"a")
    tracker.push_message(6, b"b")
    waiter = asyncio.create_task(tracker.wait_acknowledged(5, timeout=5))
    await asyncio.sleep(0)
    tracker.clear()
    with pytest.raises(SessionLost):
        await waiter
    assert (tracker.in_flight, tracker.acknowledged, tracker.lost) == (0, 0, 2)


async def test_tracker_wait_times_out() -> None:
    tracker = InflightTracker()
    tracker.push_message(1, b"a")
    assert not await tracker.wait_all(timeout=0.01)
    with pytest.raises(TimeoutError):
        await tracker.wait_acknowledged(1, timeout=0.01)
    assert tracker.in_flight == 1
    await tracker.wait_acknowledged(2, timeout=0.01)  # not in flight: nothing to wait for


# --- ingest: the MQTT input -----------------------------------------------------------------------


async def test_input_builds_its_client_from_settings() -> None:
    factory = FakeFactory()
    s = settings(mqtt_protocol="3.1.1", mqtt_keepalive_s=45)
    mqtt = MqttInput(s, _never_called, IngestMetrics(), client_factory=factory)
    client = factory.clients[0]
    assert client is mqtt.client
    assert client.client_id == "quantrac-unit-1"
    assert client.endpoint == s.mqtt
    assert client.tracker is mqtt.acks_in_flight
    assert client.options == {
        "clean_session": False,
        "optimistic_acknowledgement": False,
        "session_expiry_s": 300,
        "receive_maximum": 100,
        "reconnect": True,
    }
    await mqtt.start()
    assert client.connects == [
        {"host": "broker.test", "port": 1883, "ssl": False, "version": MQTTv311, "keepalive": 45}
    ]
    assert client.subscriptions == [("$share/unit/stations/+/data", 1)]
    assert mqtt.connected.is_set() and mqtt.subscribed.is_set()
    await mqtt.stop()
    assert client.disconnected == 1


async def _never_called(topic: str, payload: bytes) -> Feedback | None:
    raise AssertionError("no message expected")


async def test_a_message_is_stored_then_acknowledged(catalog: Catalog, registry: Registry) -> None:
    async with Ingest(settings(positive_ack=True), catalog, registry) as ingest:
        t = recent()
        rc = await ingest.client.deliver("stations/WW1/data", reading_payload("WW1", t, seq=3))
        # PUBACK "success" (gmqtt sends it when on_message returns): after the commit and the ack.
        assert rc == 0
        assert ingest.log == [("stored", "stations/WW1/data"), ("published", "stations/WW1/ack")]
        [[item]] = ingest.writer.batches
        assert [(r.param, r.measured_at, r.value) for r in item.readings] == [("COD", t, 80)]
        [(topic, body, qos)] = ingest.client.published
        assert (topic, qos) == ("stations/WW1/ack", 1)
        ack = json.loads(body)
        assert (ack["station"], ack["seq"], ack["status"], ack["accepted"]) == (
            "WW1",
            3,
            "accepted",
            1,
        )
        assert ingest.input.acks_in_flight.in_flight == 1
        ingest.client.puback(1)
        assert ingest.input.acks_in_flight.in_flight == 0


async def test_accepted_data_get_no_ack_without_positive_ack(
    catalog: Catalog, registry: Registry
) -> None:
    async with Ingest(settings(), catalog, registry) as ingest:
        rc = await ingest.client.deliver("stations/WW1/data", reading_payload("WW1", recent()))
        assert rc == 0
        assert ingest.log == [("stored", "stations/WW1/data")]
        assert ingest.client.published == []


async def test_a_malformed_payload_is_kept_and_gets_a_rejection_ack(
    catalog: Catalog, registry: Registry
) -> None:
    async with Ingest(settings(), catalog, registry) as ingest:
        rc = await ingest.client.deliver("stations/WW1/data", b'{"station": "WW1", "readings": [')
        assert rc == 0
        [[item]] = ingest.writer.batches
        assert item.readings == [] and item.problems
        assert item.problems[0].reason == Reason.PAYLOAD_SYNTAX
        [(topic, body, qos)] = ingest.client.published
        assert (topic, qos) == ("stations/WW1/ack", 1)
        ack = json.loads(body)
        assert (ack["status"], ack["accepted"], ack["rejected"]) == ("rejected", 0, 1)
        assert ack["problems"][0]["rule"] == Reason.PAYLOAD_SYNTAX.value


async def test_a_topic_without_a_station_is_stored_but_not_answered(
    catalog: Catalog, registry: Registry
) -> None:
    async with Ingest(settings(), catalog, registry) as ingest:
        assert await ingest.client.deliver("stations/data", b"{}") == 0
        [[item]] = ingest.writer.batches
        assert item.problems[0].reason == Reason.TOPIC_INVALID
        assert ingest.client.published == []


async def test_disconnect_then_reconnect_subscribes_again_with_backoff() -> None:
    metrics = IngestMetrics()
    factory = FakeFactory()
    mqtt = MqttInput(settings(), _never_called, metrics, client_factory=factory)
    client = factory.clients[0]
    await mqtt.start()
    assert client.reconnect_delay == 1
    assert metrics.broker_up._value.get() == 1
    client.drop()
    assert not mqtt.connected.is_set() and not mqtt.subscribed.is_set()
    assert metrics.broker_up._value.get() == 0
    assert client.reconnect_delay == 2
    client.drop()
    assert client.reconnect_delay == 4
    client.reconnect(session_present=False)
    assert mqtt.connected.is_set() and mqtt.subscribed.is_set()
    assert client.reconnect_delay == 1
    assert metrics.broker_up._value.get() == 1
    assert client.subscriptions == [("$share/unit/stations/+/data", 1)] * 2
    await mqtt.stop()


async def test_a_message_whose_connection_dropped_gets_no_puback() -> None:
    release = asyncio.Event()

    async def handler(topic: str, payload: bytes) -> Feedback | None:
        await release.wait()
        return None

    factory = FakeFactory()
    mqtt = MqttInput(settings(), handler, IngestMetrics(), client_factory=factory)
    client = factory.clients[0]
    await mqtt.start()
    delivery = asyncio.create_task(client.deliver("stations/WW1/data", b"{}"))
    await asyncio.sleep(0)
    client.drop()
    client.reconnect()
    release.set()
    # The broker redelivers it on the new connection; a late PUBACK could ack another message.
    with pytest.raises(StaleDelivery):
        await delivery
    await mqtt.stop()


async def test_a_refused_connection_says_which_account() -> None:
    factory = FakeFactory()
    mqtt = MqttInput(settings(), _never_called, IngestMetrics(), client_factory=factory)
    factory.clients[0].refuse = MQTTConnectError(5)
    with pytest.raises(RuntimeError, match="refused quantrac \\('WW1'\\)"):
        await mqtt.start()
    assert factory.clients[0].disconnected == 1


async def test_acks_wait_while_the_broker_holds_a_full_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest_mqtt, "_ACK_WINDOW", 1)
    factory = FakeFactory()
    feedback = Feedback("WW1", 1, None, datetime.now(UTC), 0, 0, [])

    async def handler(topic: str, payload: bytes) -> Feedback | None:
        return feedback

    mqtt = MqttInput(settings(), handler, IngestMetrics(), client_factory=factory)
    client = factory.clients[0]
    await mqtt.start()
    assert await client.deliver("stations/WW1/data", b"{}") == 0
    assert mqtt.acks_in_flight.in_flight == 1
    second = asyncio.create_task(client.deliver("stations/WW1/data", b"{}"))
    for _ in range(5):
        await asyncio.sleep(0.01)
    assert not second.done()
    assert len(client.published) == 1
    client.puback(1)
    assert await second == 0
    assert len(client.published) == 2
    await mqtt.stop()


# --- simulator publisher and notifier: the same tracker -------------------------------------------


async def test_publisher_bounds_its_unacknowledged_messages() -> None:
    factory = FakeFactory()
    publisher = Publisher(ENDPOINT, client_id="sim-1", max_in_flight=2, client_factory=factory)
    client = factory.clients[0]
    assert client.options == {"session_expiry_s": 300}
    await publisher.connect()
    await publisher.publish("stations/WW1/data", b"1")
    await publisher.publish("stations/WW1/data", b"2")
    third = asyncio.create_task(publisher.publish("stations/WW1/data", b"3"))
    await asyncio.sleep(0)
    assert not third.done()
    assert publisher.stats.in_flight == 2
    client.puback(1)
    await third
    assert (publisher.published, publisher.stats.acknowledged, publisher.stats.in_flight) == (
        3,
        1,
        2,
    )
    client.reconnect(session_present=False)
    assert publisher.stats.lost == 2 and publisher.stats.in_flight == 0
    assert await publisher.close(timeout=1)


def alert_event() -> AlertEvent:
    t0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    return AlertEvent(
        event_id=1,
        alert_id=1,
        event=EventType.OPENED,
        kind=Kind.EXCEEDANCE,
        severity=Severity.CRITICAL,
        station_id="WW1",
        station_name="Trạm nước thải thử",
        param="COD",
        state=State.OPEN,
        at=t0,
        opened_at=t0,
    )


async def _until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never met")


async def test_notifier_send_completes_on_puback_and_retries_a_lost_session() -> None:
    factory = FakeFactory()
    channel = MqttChannel(
        ENDPOINT, client_id="notify-1", client_factory=factory, backoff_s=0, sleep=_no_sleep
    )
    client = factory.clients[0]
    assert client.options == {"clean_session": False, "session_expiry_s": 300, "reconnect": True}
    event = alert_event()
    send = asyncio.create_task(channel.send(event))
    await _until(lambda: client.published)
    assert not send.done()
    [(topic, _, qos)] = client.published
    assert (topic, qos) == (event.topic, 1)
    client.puback(1)
    await send
    # The broker lost the session before the PUBACK: sent again (retryable), then acknowledged.
    send = asyncio.create_task(channel.send(event))
    await _until(lambda: len(client.published) == 2)
    client.reconnect(session_present=False)
    await _until(lambda: len(client.published) == 3)
    client.puback(3)
    await send
    await channel.close()


async def test_notifier_without_puback_gives_up_without_duplicating() -> None:
    factory = FakeFactory()
    channel = MqttChannel(
        ENDPOINT, client_factory=factory, ack_timeout_s=0.01, sleep=_no_sleep, max_attempts=3
    )
    with pytest.raises(DeliveryError, match="no PUBACK"):
        await channel.send(alert_event())
    assert len(factory.clients[0].published) == 1
    await channel.close()


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)
