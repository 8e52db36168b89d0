"""Publish a fuzz mix (quantrac.simulator.fuzz) to a broker and collect what quantrac made of it.

The I/O half of the fuzzer: one publisher, one subscriber on every ack topic, then the readings
and rejections tables once everything expected has arrived (or the time is up).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any

import psycopg

from quantrac.core.mqtt import ClientFactory, InflightTracker, connect, make_client
from quantrac.core.settings import MqttEndpoint
from quantrac.ingest.schema import all_rejections, stored_counts
from quantrac.ingest.writer import all_readings
from quantrac.simulator.fuzz import FuzzMessage, FuzzReport, expected_acks, verify


def _endpoint(url: str) -> MqttEndpoint:
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    return MqttEndpoint(host=host, port=int(port), tls=False, username=None, password=None)


class _Acks:
    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []

    def on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        self.received.append((topic, payload))
        return 0


async def _counts(database_url: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        return await stored_counts(conn)


async def run_fuzz(
    stream: Iterable[FuzzMessage],
    *,
    mqtt_url: str,
    database_url: str,
    timeout_s: float = 120.0,
    publish_window: int = 500,
    client_factory: ClientFactory = make_client,
) -> tuple[FuzzReport, dict[str, float]]:
    """Publish ``messages`` (QoS 1, at most ``publish_window`` unacknowledged by the broker),
    wait until every expected reading and ack is in (or ``timeout_s`` of silence), verify."""
    acks = _Acks()
    endpoint = _endpoint(mqtt_url)
    subscriber = client_factory(f"fuzz-acks-{uuid.uuid4().hex[:8]}", endpoint)
    subscriber.on_message = acks.on_message
    await connect(subscriber, endpoint)
    subscriber.subscribe("stations/+/ack", qos=1)
    in_flight = InflightTracker()
    publisher = client_factory(f"fuzz-pub-{uuid.uuid4().hex[:8]}", endpoint, tracker=in_flight)
    await connect(publisher, endpoint)
    await asyncio.sleep(0.3)  # the SUBSCRIBE reaches the broker
    messages: list[FuzzMessage] = []
    started = time.monotonic()
    try:
        for index, message in enumerate(stream):
            publisher.publish(message.topic, message.payload, qos=1)
            message.payload = b""  # sent: only the expectations are kept
            messages.append(message)
            if index % publish_window == publish_window - 1:
                await _drain(in_flight)
        published = time.monotonic()
        want_readings = len({r[:3] for m in messages for r in m.stored})
        want_acks = sum(expected_acks(messages).values())
        last_change, last_state = time.monotonic(), (-1, -1, -1)
        while True:
            readings, rejections = await _counts(database_url)
            state = (readings, rejections, len(acks.received))
            if readings >= want_readings and len(acks.received) >= want_acks:
                await asyncio.sleep(0.5)  # late extras (an ack too many) would show now
                break
            if state != last_state:
                last_change, last_state = time.monotonic(), state
            elif time.monotonic() - last_change > timeout_s:
                break
            await asyncio.sleep(0.2)
        finished = time.monotonic()
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            stored = await all_readings(conn)
            rejections_rows = await all_rejections(conn)
    finally:
        await publisher.disconnect()
        await subscriber.disconnect()
    report = verify(messages, stored, rejections_rows, acks.received)
    timings = {
        "publish_s": published - started,
        "total_s": finished - started,
        "messages_per_s": len(messages) / (finished - started),
    }
    return report, timings


async def _drain(in_flight: InflightTracker) -> None:
    """Wait until the broker has acknowledged what was published (bounded memory)."""
    await in_flight.wait_all(60)
