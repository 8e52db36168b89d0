"""An asyncio MQTT publisher (gmqtt 0.8.0) that bounds its unacknowledged QoS 1 messages.

gmqtt has no PUBACK callback and ``Client.publish`` returns nothing. What it does have is a
constructor argument for the store of in-flight QoS 1/2 packets: it ``push_message``-es every
QoS > 0 PUBLISH and ``remove_message_by_mid``-s it when the PUBACK arrives. A store that counts
those calls is the smallest hook into acknowledgements that relies on no private attribute.

Bounding matters: gmqtt's packet-id pool raises OverflowError once the broker's Receive
Maximum (at most 65,535) is reached, and an unbounded backlog only grows memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.storage import PersistentStorage

from quantrac.core.settings import MqttEndpoint

DEFAULT_MAX_IN_FLIGHT = 10_000


class _AckCountingStorage(PersistentStorage):
    def __init__(self, on_change: Any) -> None:
        super().__init__()
        self.pending: set[int] = set()
        self.acknowledged = 0
        self.lost = 0
        self._on_change = on_change

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        self.pending.add(mid)

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        if mid in self.pending:
            self.pending.discard(mid)
            self.acknowledged += 1
            self._on_change()

    def clear(self) -> None:
        # Called when the broker kept no session across a reconnect: those messages are gone.
        super().clear()
        self.lost += len(self.pending)
        self.pending.clear()
        self._on_change()


@dataclass(frozen=True, slots=True)
class PublisherStats:
    published: int
    acknowledged: int
    in_flight: int
    lost: int


class Publisher:
    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        qos: int = 1,
        client_id: str | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        ca_file: Path | None = None,
        protocol: str = "5",
        keepalive_s: int = 30,
    ) -> None:
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        self.endpoint = endpoint
        self.qos = qos
        self.published = 0
        self._window = max_in_flight
        self._ca_file = ca_file
        self._version = MQTTv50 if protocol == "5" else MQTTv311
        self._keepalive = keepalive_s
        self._changed = asyncio.Event()
        self._storage = _AckCountingStorage(self._changed.set)
        self._client = gmqtt.Client(
            client_id or f"quantrac-sim-{uuid.uuid4().hex[:12]}",
            persistent_storage=self._storage,
            # Keep the session briefly so in-flight messages are resent after a reconnect.
            session_expiry_interval=300,
        )
        self._client.on_connect = self._on_connect
        if endpoint.username:
            self._client.set_auth_credentials(endpoint.username, endpoint.password)

    def _on_connect(self, client: Any, flags: int, rc: int, properties: dict[str, Any]) -> None:
        # gmqtt's id pool holds Receive Maximum − 1 ids; never ask for more than that.
        receive_maximum = properties.get("receive_maximum") or [65535]
        self._window = min(self._window, int(receive_maximum[0]) - 1)

    @property
    def connected(self) -> bool:
        return bool(self._client.is_connected)

    @property
    def stats(self) -> PublisherStats:
        return PublisherStats(
            self.published,
            self._storage.acknowledged,
            len(self._storage.pending),
            self._storage.lost,
        )

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.endpoint.tls:
            return False
        return ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)

    async def connect(self) -> None:
        try:
            await self._client.connect(
                self.endpoint.host,
                self.endpoint.port,
                ssl=self._ssl(),
                keepalive=self._keepalive,
                version=self._version,
            )
        except BaseException:
            # A refused CONNACK leaves gmqtt retrying in the background; stop it.
            with contextlib.suppress(Exception):
                await self._client.disconnect()
            raise

    async def publish(self, topic: str, payload: bytes) -> None:
        """Send one message; waits while the window of unacknowledged messages is full."""
        while self.qos and len(self._storage.pending) >= self._window:
            self._changed.clear()
            await self._changed.wait()
        # While gmqtt reconnects, writes go nowhere; wait rather than drop QoS 0 silently.
        while not self._client.is_connected:
            await asyncio.sleep(0.1)
        self._client.publish(topic, payload, qos=self.qos)
        self.published += 1

    async def wait_acknowledged(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._storage.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=remaining)
            except TimeoutError:
                return False
        return True

    async def close(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` s for outstanding PUBACKs, then disconnect. True if all came."""
        try:
            complete = await self.wait_acknowledged(timeout)
        finally:
            await self._client.disconnect()
        return complete


class StationPublishers:
    """One connection per station, each signed in with that station's own account, as real
    stations are: the broker lets each publish only on its own topic. Same interface as
    :class:`Publisher`; a message goes out on the connection of the station its topic names."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        credentials: dict[str, str],
        *,
        client_id: str | None = None,
        **options: Any,
    ) -> None:
        prefix = client_id or f"quantrac-sim-{uuid.uuid4().hex[:8]}"
        self._publishers = {
            station_id: Publisher(
                dataclasses.replace(endpoint, username=station_id, password=secret),
                client_id=f"{prefix}-{station_id}",
                **options,
            )
            for station_id, secret in credentials.items()
        }

    @property
    def published(self) -> int:
        return sum(p.published for p in self._publishers.values())

    @property
    def stats(self) -> PublisherStats:
        parts = [p.stats for p in self._publishers.values()]
        return PublisherStats(
            sum(s.published for s in parts),
            sum(s.acknowledged for s in parts),
            sum(s.in_flight for s in parts),
            sum(s.lost for s in parts),
        )

    async def connect(self) -> None:
        try:
            await asyncio.gather(*(p.connect() for p in self._publishers.values()))
        except BaseException:
            await self.close(timeout=0)
            raise

    async def publish(self, topic: str, payload: bytes) -> None:
        station_id = topic.split("/")[1]
        publisher = self._publishers.get(station_id)
        if publisher is None:
            raise KeyError(f"no credentials for station {station_id!r}")
        await publisher.publish(topic, payload)

    async def close(self, timeout: float = 10.0) -> bool:
        results = await asyncio.gather(
            *(p.close(timeout) for p in self._publishers.values()), return_exceptions=True
        )
        return all(r is True for r in results)
