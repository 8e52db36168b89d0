"""An asyncio MQTT publisher (gmqtt 0.8.0) that bounds its unacknowledged QoS 1 messages.

gmqtt has no PUBACK callback and ``Client.publish`` returns nothing; core's in-flight tracker
(:class:`quantrac.core.mqtt.InflightTracker`, the store gmqtt pushes every QoS 1 PUBLISH into
and removes it from on its PUBACK) counts what the broker has not acknowledged yet.

Bounding matters: gmqtt's packet-id pool raises OverflowError once the broker's Receive
Maximum (at most 65,535) is reached, and an unbounded backlog only grows memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantrac.core.mqtt import ClientFactory, InflightTracker, connect, make_client
from quantrac.core.settings import MqttEndpoint

DEFAULT_MAX_IN_FLIGHT = 10_000


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
        client_factory: ClientFactory = make_client,
    ) -> None:
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        self.endpoint = endpoint
        self.qos = qos
        self.published = 0
        self._window = max_in_flight
        self._ca_file = ca_file
        self._protocol = protocol
        self._keepalive = keepalive_s
        self._storage = InflightTracker()
        self._client = client_factory(
            client_id or f"quantrac-sim-{uuid.uuid4().hex[:12]}",
            endpoint,
            tracker=self._storage,
            # Keep the session briefly so in-flight messages are resent after a reconnect.
            session_expiry_s=300,
        )
        self._client.on_connect = self._on_connect

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
            self._storage.in_flight,
            self._storage.lost,
        )

    async def connect(self) -> None:
        try:
            await connect(
                self._client,
                self.endpoint,
                ca_file=self._ca_file,
                protocol=self._protocol,
                keepalive_s=self._keepalive,
            )
        except BaseException:
            # A refused CONNACK leaves gmqtt retrying in the background; stop it.
            with contextlib.suppress(Exception):
                await self._client.disconnect()
            raise

    async def publish(self, topic: str, payload: bytes) -> None:
        """Send one message; waits while the window of unacknowledged messages is full."""
        if self.qos:
            await self._storage.wait_below(self._window)
        # While gmqtt reconnects, writes go nowhere; wait rather than drop QoS 0 silently.
        while not self._client.is_connected:
            await asyncio.sleep(0.1)
        self._client.publish(topic, payload, qos=self.qos)
        self.published += 1

    async def wait_acknowledged(self, timeout: float) -> bool:
        return await self._storage.wait_all(timeout)

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
