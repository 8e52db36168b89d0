"""Alert events for live clients: from the ``alert_events`` table to every open SSE stream.

Every API instance follows the table (woken by ``NOTIFY alert_events``, polling as a fallback),
so a board connected to any instance sees every committed event, whichever process wrote it: the
engine, an escalation, or a person acknowledging through any API instance. It starts at the
newest event; a database that is down at start, or goes away, is retried until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from quantrac.alerts import store as alert_store
from quantrac.ingest import stream

log = logging.getLogger(__name__)

_CLIENT_QUEUE = 500
_POLL_S = 2.0
_RETRY_S = (0.5, 10.0)


class EventHub:
    def __init__(self, database_url: str | None, station_names: Callable[[], dict[str, str]]):
        self.database_url = database_url
        self.station_names = station_names
        self.clients: set[asyncio.Queue[dict[str, Any]]] = set()
        self.position: int | None = None  # the newest event sent to the streams
        self.following = asyncio.Event()  # set once the table is followed
        self._task: asyncio.Task[None] | None = None
        self._wakeup: stream.Wakeup | None = None

    async def start(self) -> None:
        if self.database_url is None:
            return
        self._wakeup = stream.Wakeup(self.database_url, alert_store.EVENTS_CHANNEL)
        waiter = self._wakeup.waiter()
        self._wakeup.start()
        self._task = asyncio.create_task(self._follow(waiter), name="quantrac-api-events")

    async def _follow(self, waiter: asyncio.Event) -> None:
        assert self.database_url is not None
        delay = _RETRY_S[0]
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True, application_name="quantrac-api-events"
                ) as conn:
                    if self.position is None:
                        self.position = await alert_store.last_event_id(conn)
                    self.following.set()
                    delay = _RETRY_S[0]
                    while True:
                        events = await alert_store.events_after(
                            conn, self.position, self.station_names()
                        )
                        for event in events:
                            self.broadcast(event.to_json())
                            self.position = event.event_id
                        if not events:
                            await stream.wait(waiter, _POLL_S)
            except (psycopg.Error, OSError) as exc:
                self.following.clear()
                log.warning(
                    "alert stream: database unavailable, retrying in %.1f s: %s",
                    delay,
                    exc,
                    extra={"event": "api_events_retry"},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_S[1])

    def broadcast(self, event: dict[str, Any]) -> None:
        for queue in list(self.clients):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # a slow client loses its oldest event, not the newest
            queue.put_nowait(event)

    def listen(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_CLIENT_QUEUE)
        self.clients.add(queue)
        return queue

    def forget(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.clients.discard(queue)

    async def stop(self) -> None:
        if self._task is not None:
            await stream.stop_task(self._task)
        if self._wakeup is not None:
            await self._wakeup.stop()
