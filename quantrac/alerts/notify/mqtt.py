"""MQTT channel: each event as JSON on ``alerts/{station_id}/{kind}``, QoS 1, not retained.

gmqtt 0.8 gives no PUBACK callback; core's in-flight tracker (quantrac/core/mqtt.py) is the hook:
gmqtt pushes every QoS 1 PUBLISH into it (synchronously inside ``publish``) and removes it when
the PUBACK arrives, so a send completes only once the broker has the event.

Connecting happens in the background: a broker that is down at start-up delays alert messages,
never the service. gmqtt reconnects by itself and, the session being kept, replays unacknowledged
packets on the new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantrac.alerts.model import AlertEvent
from quantrac.alerts.notify.base import (
    DeliveryError,
    RetryHook,
    RetryPolicy,
    Sleep,
    deliver_with_retries,
    encode_event,
)
from quantrac.core.mqtt import (
    RECONNECT_FIRST_S,
    ClientFactory,
    InflightTracker,
    SessionLost,
    back_off,
    connect,
    make_client,
    next_delay,
    reset_backoff,
)
from quantrac.core.settings import MqttEndpoint

log = logging.getLogger(__name__)

# Kept briefly so a packet in flight during a reconnect is replayed rather than lost.
_SESSION_EXPIRY_S = 300


class MqttChannel:
    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        name: str = "mqtt",
        client_id: str | None = None,
        ca_file: Path | None = None,
        protocol: str = "5",
        keepalive_s: int = 30,
        connect_timeout_s: float = 30.0,
        ack_timeout_s: float = 30.0,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        client_factory: ClientFactory = make_client,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.client_id = client_id or f"quantrac-notify-{uuid.uuid4().hex[:12]}"
        self.connect_timeout_s = connect_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.policy = RetryPolicy(
            max_attempts=max_attempts, backoff_s=backoff_s, max_backoff_s=max_backoff_s
        )
        self.on_retry: RetryHook | None = None
        self.connected = asyncio.Event()
        self._ca_file = ca_file
        self._protocol = protocol
        self._keepalive = keepalive_s
        self._sleep = sleep
        self._rand = rand
        self._closing = False
        self._connector: asyncio.Task[None] | None = None
        self._storage = InflightTracker()
        self._client = client_factory(
            self.client_id,
            endpoint,
            clean_session=False,
            session_expiry_s=_SESSION_EXPIRY_S,
            tracker=self._storage,
            reconnect=True,
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    def __repr__(self) -> str:
        return f"MqttChannel({self.name!r}, {self.endpoint.host}:{self.endpoint.port})"

    def _on_connect(self, client: Any, flags: int, rc: int, properties: Any) -> None:
        reset_backoff(client)
        self.connected.set()
        log.info(
            "alert publisher connected to broker",
            extra={"event": "notify_broker_connected", "channel": self.name},
        )

    def _on_disconnect(self, client: Any, packet: Any, exc: BaseException | None = None) -> None:
        self.connected.clear()
        if self._closing:
            return
        back_off(client)
        log.warning(
            "alert publisher disconnected from broker; reconnecting",
            extra={"event": "notify_broker_disconnected", "channel": self.name},
        )

    async def start(self) -> None:
        if self._connector is None:
            self._connector = asyncio.create_task(self._connect(), name=f"notify-{self.name}")

    async def _connect(self) -> None:
        delay: float = RECONNECT_FIRST_S
        while not self._closing:
            try:
                await connect(
                    self._client,
                    self.endpoint,
                    ca_file=self._ca_file,
                    protocol=self._protocol,
                    keepalive_s=self._keepalive,
                )
                return
            except Exception as exc:
                # A refused CONNACK leaves gmqtt retrying in the background; we retry here.
                with contextlib.suppress(Exception):
                    await self._client.disconnect()
                log.warning(
                    "alert publisher cannot reach the broker, retrying in %d s: %s",
                    delay,
                    exc,
                    extra={"event": "notify_broker_retry", "channel": self.name},
                )
                await self._sleep(delay)
                delay = next_delay(delay)

    async def close(self) -> None:
        self._closing = True
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connector
            self._connector = None
        with contextlib.suppress(Exception):
            await self._client.disconnect()
        self.connected.clear()

    async def send(self, event: AlertEvent) -> None:
        await self.start()
        payload = encode_event(event)
        await deliver_with_retries(
            lambda: self._publish(event.topic, payload),
            self.policy,
            sleep=self._sleep,
            rand=self._rand,
            on_retry=self.on_retry,
        )

    async def _publish(self, topic: str, payload: bytes) -> None:
        if not self._client.is_connected:
            try:
                await asyncio.wait_for(self.connected.wait(), self.connect_timeout_s)
            except TimeoutError:
                raise DeliveryError(
                    f"not connected to the broker within {self.connect_timeout_s:g} s",
                    retryable=True,
                ) from None
        self._storage.last_pushed = None
        self._client.publish(topic, payload, qos=1, retain=False)
        mid = self._storage.last_pushed
        if mid is None:  # cannot happen with gmqtt 0.8's QoS 1 path; never wait for nothing
            raise DeliveryError("gmqtt stored no in-flight packet", retryable=False)
        try:
            await self._storage.wait_acknowledged(mid, self.ack_timeout_s)
        except SessionLost as exc:
            # The broker kept no session across a reconnect: what was in flight is gone.
            raise DeliveryError(str(exc), retryable=True) from None
        except TimeoutError:
            # gmqtt keeps the packet and replays it after a reconnect; publishing it again
            # here would only make a duplicate.
            raise DeliveryError(
                f"no PUBACK within {self.ack_timeout_s:g} s", retryable=False
            ) from None
