"""Alert events for live clients: from the broker's ``alerts/#`` to every open SSE stream.

Every API instance subscribes (plainly, not shared) to the alert topics the engine publishes on,
so a board connected to any instance sees every event, whichever process raised it. Events a
person causes through the API (acknowledge, resolve) are published there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from gmqtt import Client

from alerts.model import AlertEvent
from ingest.settings import MqttEndpoint

log = logging.getLogger(__name__)

_CLIENT_QUEUE = 500


class EventHub:
    def __init__(self, endpoint: MqttEndpoint | None):
        self.endpoint = endpoint
        self.clients: set[asyncio.Queue[dict[str, Any]]] = set()
        self.client: Client | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        if self.endpoint is None:
            return
        client = Client(f"quantrac-api-{uuid.uuid4().hex[:8]}")
        if self.endpoint.username:
            client.set_auth_credentials(self.endpoint.username, self.endpoint.password)
        client.on_message = self._on_message
        client.on_connect = self._on_connect
        self.client = client
        try:
            await client.connect(self.endpoint.host, self.endpoint.port, ssl=self.endpoint.tls)
        except OSError as exc:
            log.warning("alert stream: broker unreachable: %s", exc, extra={"event": "api_mqtt"})

    def _on_connect(self, client: Client, flags: int, rc: int, properties: Any) -> None:
        # Subscribed on every (re)connect: a lost broker must not leave the board silent.
        client.subscribe("alerts/#", qos=1)
        self.connected.set()

    def _on_message(self, client: Client, topic: str, payload: bytes, qos: int, props: Any) -> int:
        try:
            event = json.loads(payload)
        except ValueError:
            return 0
        self.broadcast(event)
        return 0

    def broadcast(self, event: dict[str, Any]) -> None:
        for queue in list(self.clients):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # a slow client loses its oldest event, not the newest
            queue.put_nowait(event)

    def publish(self, event: AlertEvent) -> None:
        """Tell every board about a change a person made through this API."""
        body = event.to_json()
        if self.client is not None and self.client.is_connected:
            self.client.publish(event.topic, json.dumps(body, ensure_ascii=False), qos=1)
        else:
            self.broadcast(body)

    def listen(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_CLIENT_QUEUE)
        self.clients.add(queue)
        return queue

    def forget(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.clients.discard(queue)

    async def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.disconnect()
