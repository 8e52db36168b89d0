"""MQTT input: a persistent QoS 1 session whose PUBACKs wait for the database commit.

Built on gmqtt with ``optimistic_acknowledgement=False``: gmqtt sends a message's PUBACK when our
async ``on_message`` returns, and we return only after the batch holding the message committed.
(aiomqtt 2.x acknowledges before user code sees the message; see docs/architecture.md for the
measured choice.) MQTT v5's Receive Maximum caps the unacknowledged messages the broker sends
us, which bounds memory while the database is down.

A PUBACK is sent only on the connection that delivered the message: after a reconnect the broker
redelivers unacknowledged messages itself, and a late PUBACK with an old packet id could
otherwise acknowledge a different, newer message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from quantrac.core.contract import Feedback, ack_topic, shared_subscription
from quantrac.core.mqtt import (
    RECONNECT_FIRST_S,
    ClientFactory,
    InflightTracker,
    MQTTConnectError,
    back_off,
    connect,
    make_client,
    next_delay,
    reset_backoff,
)
from quantrac.core.settings import Settings
from quantrac.ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[Feedback | None]]

# Acks published and not yet acknowledged by the broker, at most (then _send_ack waits):
# below gmqtt's 65,535 packet ids and Mosquitto's receive maximum (max_inflight_messages,
# 20,000 in the shipped configuration). Reached only in bursts of rejections.
_ACK_WINDOW = 15000
_ACK_WAIT_S = 0.005
_ACK_WAIT_STEPS = 6000  # 30 s


class StaleDelivery(Exception):
    """The connection that delivered this message is gone; the broker will redeliver it."""


class MqttInput:
    """The ingest subscription. ``client_factory`` builds the client (default
    :func:`quantrac.core.mqtt.make_client`); unit tests pass one returning a fake."""

    def __init__(
        self,
        settings: Settings,
        handler: Handler,
        metrics: IngestMetrics,
        *,
        client_factory: ClientFactory = make_client,
    ):
        self.settings = settings
        self.handler = handler
        self.metrics = metrics
        self.endpoint = settings.mqtt
        self.generation = 0
        self.connected = asyncio.Event()
        # Set when the broker has acknowledged this connection's subscription (SUBACK): only
        # from then on are messages routed to us (a `$share` one is not restored by Mosquitto
        # after a broker restart, so every connection subscribes again).
        self.subscribed = asyncio.Event()
        self._closing = False
        self._inflight: set[asyncio.Task[Any]] = set()
        self._ack_gate = asyncio.Lock()
        # The acks published (QoS 1) and not yet acknowledged by the broker.
        self.acks_in_flight = InflightTracker()
        self.client = self._make_client(client_factory)

    def _make_client(self, factory: ClientFactory) -> Any:
        s = self.settings
        client = factory(
            s.mqtt_client_id,
            self.endpoint,
            clean_session=False,
            optimistic_acknowledgement=False,
            session_expiry_s=s.mqtt_session_expiry_s,
            receive_maximum=s.mqtt_receive_maximum,
            tracker=self.acks_in_flight,
            reconnect=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    @property
    def subscription(self) -> str:
        return shared_subscription(self.settings.mqtt_share_group)

    async def start(self) -> None:
        """Connect, retrying with backoff until the broker answers (or stop() is called)."""
        delay: float = RECONNECT_FIRST_S
        s = self.settings
        while not self._closing:
            try:
                await connect(
                    self.client,
                    self.endpoint,
                    ca_file=s.mqtt_ca_file,
                    protocol=s.mqtt_protocol,
                    keepalive_s=s.mqtt_keepalive_s,
                )
                return
            except (TimeoutError, OSError) as exc:
                log.warning(
                    "broker unreachable, retrying in %d s: %s",
                    delay,
                    exc,
                    extra={"event": "broker_retry", "host": self.endpoint.host},
                )
                await asyncio.sleep(delay)
                delay = next_delay(delay)
            except MQTTConnectError as exc:
                # Refused (wrong account, or not allowed): retrying changes nothing.
                with contextlib.suppress(Exception):
                    await self.client.disconnect()
                who = repr(self.endpoint.username) if self.endpoint.username else "anonymous"
                raise RuntimeError(
                    f"the broker at {self.endpoint.host}:{self.endpoint.port} refused quantrac "
                    f"({who}): {exc}; check mqtt_username and mqtt_password (the secrets of "
                    "`quantrac stations credentials`)"
                ) from None

    def _on_connect(self, client: Any, flags: int, rc: int, properties: Any) -> None:
        self.generation += 1
        self.metrics.broker_up.set(1)
        reset_backoff(client)
        # Subscribing again on every connection covers a broker that lost our session.
        client.subscribe(self.subscription, qos=1)
        self.connected.set()
        log.info(
            "connected to broker",
            extra={
                "event": "broker_connected",
                "session_present": bool(flags),
                "subscription": self.subscription,
            },
        )

    def _on_subscribe(self, client: Any, mid: int, qos: Any, properties: Any) -> None:
        self.subscribed.set()

    def _on_disconnect(self, client: Any, packet: Any, exc: BaseException | None = None) -> None:
        self.generation += 1
        self.metrics.broker_up.set(0)
        self.connected.clear()
        self.subscribed.clear()
        if self._closing:
            return
        delay = back_off(client)
        log.warning(
            "disconnected from broker; reconnecting",
            extra={"event": "broker_disconnected", "reconnect_delay_s": delay},
        )

    async def _on_message(
        self, client: Any, topic: str, payload: bytes, qos: int, properties: Any
    ) -> int:
        generation = self.generation
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            feedback = await self.handler(topic, payload)
        finally:
            if task is not None:
                self._inflight.discard(task)
        if generation != self.generation:
            raise StaleDelivery(topic)
        if feedback is not None:
            await self._send_ack(client, feedback)
        return 0  # PUBACK "success", sent by gmqtt now that the data are committed

    async def _send_ack(self, client: Any, feedback: Feedback) -> None:
        """Publish the ack (QoS 1) once the broker has taken enough of the earlier ones.

        Packet ids are finite (65,535, or fewer if the broker says so): a burst of rejections,
        say a backlog of junk, would otherwise use them all up, and the failing publish would
        leave the data message without its PUBACK, stalling the session. Waiting here slows
        ingest to what the broker accepts. A publish that fails anyway is logged and counted;
        the data are committed, so their PUBACK still goes out."""
        try:
            # One waiter polls; the others queue on the lock, costing nothing.
            async with self._ack_gate:
                for _ in range(_ACK_WAIT_STEPS):
                    if self.acks_in_flight.in_flight < _ACK_WINDOW or self._closing:
                        break
                    await asyncio.sleep(_ACK_WAIT_S)
                client.publish(ack_topic(feedback.station), feedback.to_json(), qos=1)
        except Exception as exc:
            self.metrics.acks_failed.inc()
            log.error(
                "ack not sent: %s",
                exc,
                extra={"event": "ack_failed", "station": feedback.station, "seq": feedback.seq},
            )

    async def stop(self, timeout: float = 30.0) -> None:
        """Let messages already handed to the pipeline finish (and be acknowledged), then
        disconnect."""
        self._closing = True
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)
        # Give gmqtt's done-callbacks a turn to write the PUBACKs before the socket closes.
        await asyncio.sleep(0.05)
        with contextlib.suppress(Exception):
            await self.client.disconnect()
        self.metrics.broker_up.set(0)
