"""The one MQTT client factory, reconnection policy and PUBACK tracker of quantrac.

Every gmqtt client quantrac runs (ingest, the alert notifier, the simulator, the fuzzer, the demo,
``quantrac check``) is built by :func:`make_client` and connected by :func:`connect`: credentials
from the endpoint (settings or a station's account), TLS with an optional CA file, MQTT 5 or
3.1.1, clean start or a kept session with its expiry, and, for long-running clients,
reconnection forever with a doubling wait.

gmqtt 0.8 has no PUBACK callback and ``Client.publish`` returns nothing. What it does have is a
constructor argument for the store of in-flight QoS 1/2 packets: it ``push_message``-es every
QoS > 0 PUBLISH (synchronously inside ``publish``) and ``remove_message_by_mid``-s it when the
PUBACK arrives, and ``clear``-s it when the broker kept no session across a reconnect.
:class:`InflightTracker` is that store: it counts what is in flight, what was acknowledged and
what was lost, and resolves a waiter per packet, relying on no private attribute of gmqtt.

Modules that take a client take a :data:`ClientFactory` too (default :func:`make_client`), so
unit tests can pass a fake client.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gmqtt import Client, MQTTConnectError
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.storage import PersistentStorage

from quantrac.core.settings import MqttEndpoint

__all__ = [
    "RECONNECT_FIRST_S",
    "RECONNECT_MAX_S",
    "ClientFactory",
    "InflightTracker",
    "MQTTConnectError",
    "SessionLost",
    "back_off",
    "connect",
    "make_client",
    "next_delay",
    "protocol_version",
    "reconnect_forever",
    "reset_backoff",
    "tls_context",
]

_UNLIMITED = -1


# One reconnection policy for every long-running client: retry forever, doubling the wait from
# 1 s up to 30 s, back to 1 s once connected.
RECONNECT_FIRST_S = 1


RECONNECT_MAX_S = 30


def reconnect_forever(client: Any) -> None:
    client.set_config({"reconnect_retries": _UNLIMITED, "reconnect_delay": RECONNECT_FIRST_S})


def reset_backoff(client: Any) -> None:
    client.set_config({"reconnect_delay": RECONNECT_FIRST_S})


def back_off(client: Any) -> float:
    """After a lost connection: double gmqtt's wait before its next attempt; returns it."""
    delay = min(max(RECONNECT_FIRST_S, client.reconnect_delay * 2), RECONNECT_MAX_S)
    client.set_config({"reconnect_delay": delay})
    return float(delay)


def next_delay(delay: float) -> float:
    """The wait after ``delay`` for a first connection that keeps failing."""
    return min(delay * 2, RECONNECT_MAX_S)


class SessionLost(Exception):
    """The broker kept no session across a reconnect: a packet in flight is gone."""


class InflightTracker(PersistentStorage):
    """gmqtt's store of in-flight QoS 1 publishes, counting them and telling who waits.

    ``in_flight`` is what the broker has not acknowledged yet; ``acknowledged`` and ``lost``
    count since creation; ``changed`` is set whenever a packet leaves the store."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: set[int] = set()
        self.acknowledged = 0
        self.lost = 0
        self.last_pushed: int | None = None
        self.changed = asyncio.Event()
        self._waiters: dict[int, asyncio.Future[None]] = {}

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        self.pending.add(mid)
        self.last_pushed = mid

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        if mid in self.pending:
            self.pending.discard(mid)
            self.acknowledged += 1
            self.changed.set()
        waiter = self._waiters.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        # Called when the broker kept no session across a reconnect: those messages are gone.
        super().clear()
        self.lost += len(self.pending)
        self.pending.clear()
        self.changed.set()
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(SessionLost("broker session lost before PUBACK"))

    async def wait_acknowledged(self, mid: int, timeout: float) -> None:
        """Until the broker acknowledges packet ``mid``. Raises TimeoutError, or SessionLost
        when the broker dropped the session first."""
        if mid not in self.pending:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[mid] = waiter
        try:
            await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiters.pop(mid, None)

    async def wait_below(self, limit: int) -> None:
        """Until fewer than ``limit`` packets are in flight."""
        while len(self.pending) >= limit:
            self.changed.clear()
            await self.changed.wait()

    async def wait_all(self, timeout: float) -> bool:
        """Until nothing is in flight (True) or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        while self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=remaining)
            except TimeoutError:
                return False
        return True


# What builds a client: :func:`make_client`'s signature; tests pass one returning a fake.
ClientFactory = Callable[..., Any]


def make_client(
    client_id: str,
    endpoint: MqttEndpoint | None = None,
    *,
    clean_session: bool = True,
    session_expiry_s: int | None = None,
    receive_maximum: int | None = None,
    optimistic_acknowledgement: bool = True,
    tracker: InflightTracker | None = None,
    reconnect: bool = False,
) -> Client:
    """A gmqtt client signed in with ``endpoint``'s account (if it has one).

    ``reconnect``: retry forever with quantrac's backoff (long-running clients); otherwise
    gmqtt's own default. ``tracker``: the store of in-flight QoS 1 publishes (PUBACK tracking)."""
    properties: dict[str, Any] = {}
    if session_expiry_s is not None:
        properties["session_expiry_interval"] = session_expiry_s
    if receive_maximum is not None:
        properties["receive_maximum"] = receive_maximum
    client = Client(
        client_id,
        clean_session=clean_session,
        optimistic_acknowledgement=optimistic_acknowledgement,
        persistent_storage=tracker,
        **properties,
    )
    if endpoint is not None and endpoint.username:
        client.set_auth_credentials(endpoint.username, endpoint.password)
    if reconnect:
        reconnect_forever(client)
    return client


def tls_context(endpoint: MqttEndpoint, ca_file: Path | None = None) -> ssl.SSLContext | bool:
    """What gmqtt's ``connect(ssl=...)`` takes: False for mqtt://, a verifying context for
    mqtts:// (the system's CAs, or ``ca_file``)."""
    if not endpoint.tls:
        return False
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def protocol_version(protocol: str) -> int:
    """gmqtt's version constant for the ``mqtt_protocol`` setting ("5" or "3.1.1")."""
    return int(MQTTv50 if protocol == "5" else MQTTv311)


async def connect(
    client: Any,
    endpoint: MqttEndpoint,
    *,
    ca_file: Path | None = None,
    protocol: str = "5",
    keepalive_s: int = 60,
) -> None:
    """Connect ``client`` to ``endpoint`` (TLS if mqtts://). Raises what gmqtt raises:
    OSError/TimeoutError when unreachable, MQTTConnectError when refused."""
    await client.connect(
        endpoint.host,
        endpoint.port,
        ssl=tls_context(endpoint, ca_file),
        version=protocol_version(protocol),
        keepalive=keepalive_s,
    )
