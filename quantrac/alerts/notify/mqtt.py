"""MQTT channel: each event as JSON on ``alerts/{station_id}/{kind}``, QoS 1, not retained.

gmqtt 0.8 gives no PUBACK callback; as in quantrac/simulator/publisher.py, a store of in-flight
packets is the hook: gmqtt pushes every QoS 1 PUBLISH into it (synchronously inside ``publish``) and
removes it when the PUBACK arrives, so a send completes only once the broker has the event.

Connecting happens in the background: a broker that is down at start-up delays alert messages,
never the service. gmqtt reconnects by itself and, the session being kept, replays unacknowledged
packets on the new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.storage import PersistentStorage

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
    back_off,
    next_delay,
    reconnect_forever,
    reset_backoff,
)
from quantrac.core.settings import MqttEndpoint

log = logging.getLogger(__name__)

# Kept briefly so a packet in flight during a reconnect is replayed rather than lost.
_SESSION_EXPIRY_S = 300


class _AckStorage(PersistentStorage):
    def __init__(self) -> None:
        super().__init__()
        self.last_pushed: int | None = None
        self.waiters: dict[int, asyncio.Future[None]] = {}

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        self.last_pushed = mid

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        waiter = self.waiters.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        # The broker kept no session across a reconnect: what was in flight is gone.
        super().clear()
        waiters, self.waiters = self.waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(
                    DeliveryError("broker session lost before PUBACK", retryable=True)
                )


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
        self._version = MQTTv50 if protocol == "5" else MQTTv311
        self._keepalive = keepalive_s
        self._sleep = sleep
        self._rand = rand
        self._closing = False
        self._connector: asyncio.Task[None] | None = None
        self._storage = _AckStorage()
        self._client = gmqtt.Client(
            self.client_id,
            clean_session=False,
            persistent_storage=self._storage,
            session_expiry_interval=_SESSION_EXPIRY_S,
        )
        if endpoint.username:
            self._client.set_auth_credentials(endpoint.username, endpoint.password)
        reconnect_forever(self._client)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    def __repr__(self) -> str:
        return f"MqttChannel({self.name!r}, {self.endpoint.host}:{self.endpoint.port})"

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.endpoint.tls:
            return False
        return ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)

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
                await self._client.connect(
                    self.endpoint.host,
                    self.endpoint.port,
                    ssl=self._ssl(),
                    version=self._version,
                    keepalive=self._keepalive,
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
        waiter = asyncio.get_running_loop().create_future()
        self._storage.waiters[mid] = waiter
        try:
            await asyncio.wait_for(waiter, self.ack_timeout_s)
        except TimeoutError:
            # gmqtt keeps the packet and replays it after a reconnect; publishing it again
            # here would only make a duplicate.
            raise DeliveryError(
                f"no PUBACK within {self.ack_timeout_s:g} s", retryable=False
            ) from None
        finally:
            self._storage.waiters.pop(mid, None)
