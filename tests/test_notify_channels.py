"""Notification channels against real servers: Mosquitto, a local HTTP server, a local SMTP
server (aiosmtpd). Backoffs are tiny; every wait is for an event, not for a duration. Delivery
from the alert_events table (the outbox) has its own tests; here each channel is driven by a
small in-test sender that counts outcomes like the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from prometheus_client import CollectorRegistry

from quantrac.alerts.model import AlertEvent, EventType, Kind, Severity, State
from quantrac.alerts.notify import (
    EmailChannel,
    MqttChannel,
    NotifyMetrics,
    Outcome,
    Route,
    WebhookChannel,
    route,
    verify_signature,
)
from quantrac.core.settings import MqttEndpoint, parse_mqtt_url
from tests.conftest import Subscriber, wait_until

pytestmark = pytest.mark.integration

SECRET = "bí-mật"
T0 = datetime(2025, 3, 1, 7, 0, tzinfo=UTC)


def make_event(**changes: Any) -> AlertEvent:
    event = AlertEvent(
        event_id=501,
        alert_id=42,
        event=EventType.OPENED,
        kind=Kind.EXCEEDANCE,
        severity=Severity.CRITICAL,
        station_id="WW1",
        station_name="Trạm nước thải thử Sông Khê",
        param="COD",
        state=State.OPEN,
        at=T0,
        opened_at=T0,
        details={"value": 182.5, "limit": 75.0, "regulation": "QCVN 40:2011/BTNMT"},
    )
    return replace(event, **changes)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- servers ---------------------------------------------------------------------------


class HookServer:
    """An HTTP server answering the scripted statuses in turn, then 200."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.requests.append((dict(self.headers.items()), body))
                status = owner.statuses.pop(0) if owner.statuses else 200
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/quantrac"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HoldingServer:
    """Accepts connections and never answers; after release() it hangs up on every one."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.accepted = 0
        self.held: list[socket.socket] = []
        self.lock = threading.Lock()
        self.released = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                if self.released:
                    conn.close()
                else:
                    self.held.append(conn)

    def release(self) -> None:
        with self.lock:
            self.released = True
            for conn in self.held:
                conn.close()
            self.held.clear()

    def stop(self) -> None:
        self.release()
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def hook_server() -> Iterator[Any]:
    made: list[HookServer] = []

    def make(statuses: list[int]) -> HookServer:
        server = HookServer(statuses)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def holding_server() -> Iterator[HoldingServer]:
    server = HoldingServer()
    yield server
    server.stop()


def webhook(name: str, url: str, **options: Any) -> WebhookChannel:
    values: dict[str, Any] = {"timeout_s": 10.0, "max_attempts": 3, "backoff_s": 0.01}
    values.update(options)
    return WebhookChannel(name, url, SECRET, **values)


class Sender:
    """Sends each routed event on every channel, one task per channel so that a stuck channel
    holds back only its own events; counts outcomes like the outbox (sent, failed, retried)."""

    def __init__(self, channels: list[Any], routes: list[Route]) -> None:
        self.channels = {c.name: c for c in channels}
        self.routes = routes
        self.metrics = NotifyMetrics(CollectorRegistry())
        self.queues: dict[str, asyncio.Queue[AlertEvent]] = {
            name: asyncio.Queue() for name in self.channels
        }
        self.tasks: list[asyncio.Task[None]] = []
        for name, channel in self.channels.items():
            channel.on_retry = lambda *_, n=name: self.metrics.count(n, Outcome.RETRIED)

    async def start(self) -> None:
        for name, channel in self.channels.items():
            with contextlib.suppress(Exception):  # a failed start fails its sends, counted
                await channel.start()
            self.tasks.append(asyncio.create_task(self._run(name)))

    async def _run(self, name: str) -> None:
        queue = self.queues[name]
        while True:
            event = await queue.get()
            try:
                await self.channels[name].send(event)
            except Exception:
                self.metrics.count(name, Outcome.FAILED)
            else:
                self.metrics.count(name, Outcome.SENT)
            finally:
                queue.task_done()

    def publish(self, event: AlertEvent) -> list[str]:
        names = route(event, self.routes)
        for name in names:
            self.queues[name].put_nowait(event)
        return names

    async def drain(self, timeout: float) -> bool:
        await asyncio.wait_for(asyncio.gather(*(q.join() for q in self.queues.values())), timeout)
        return True

    async def close(self, timeout: float) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for channel in self.channels.values():
            await asyncio.wait_for(channel.close(), timeout)


async def started(channels: list[Any], routes: list[Route]) -> Sender:
    notifier = Sender(channels, routes)
    await notifier.start()
    return notifier


# --- MQTT ------------------------------------------------------------------------------


async def test_mqtt_channel_publishes_event_json_on_the_alert_topic(servers: Any) -> None:
    subscriber = await Subscriber(servers.mqtt_url).start("alerts/#")
    channel = MqttChannel(parse_mqtt_url(servers.mqtt_url), name="ioc-mqtt")
    notifier = await started([channel], [Route(("ioc-mqtt",))])
    try:
        event = make_event()
        notifier.publish(event)
        notifier.publish(make_event(event_id=502, kind=Kind.DATA_LOSS, param=""))
        assert await notifier.drain(20)
        messages = await subscriber.wait_for(2)
    finally:
        await notifier.close(5)
        await subscriber.stop()
    by_topic = {topic: json.loads(payload) for topic, payload in messages}
    assert set(by_topic) == {"alerts/WW1/exceedance", "alerts/WW1/data_loss"}
    assert by_topic["alerts/WW1/exceedance"] == event.to_json()
    assert by_topic["alerts/WW1/exceedance"]["station_name"] == "Trạm nước thải thử Sông Khê"
    assert by_topic["alerts/WW1/data_loss"]["param"] is None
    assert notifier.metrics.outcome("ioc-mqtt", Outcome.SENT) == 2


async def test_unreachable_broker_fails_counted_without_blocking_publish() -> None:
    endpoint = MqttEndpoint("127.0.0.1", free_port(), False, None, None)
    channel = MqttChannel(
        endpoint, name="ioc-mqtt", connect_timeout_s=0.2, max_attempts=2, backoff_s=0.01
    )
    notifier = await started([channel], [Route(("ioc-mqtt",))])
    assert notifier.publish(make_event()) == ["ioc-mqtt"]  # returns at once
    assert await notifier.drain(20)
    await notifier.close(5)
    assert notifier.metrics.outcome("ioc-mqtt", Outcome.FAILED) == 1
    assert notifier.metrics.outcome("ioc-mqtt", Outcome.RETRIED) == 1
    assert notifier.metrics.outcome("ioc-mqtt", Outcome.SENT) == 0


# --- webhooks --------------------------------------------------------------------------


async def test_webhook_retries_503_then_delivers_signed_json(hook_server: Any) -> None:
    server = hook_server([503, 503])
    notifier = await started([webhook("ioc-webhook", server.url)], [Route(("ioc-webhook",))])
    event = make_event()
    notifier.publish(event)
    assert await notifier.drain(20)
    await notifier.close(5)

    assert len(server.requests) == 3
    for headers, body in server.requests:
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Quantrac-Event"] == "opened"
        assert headers["X-Quantrac-Delivery"] == "501"
        assert verify_signature(body, SECRET, headers["X-Quantrac-Signature"])
        assert json.loads(body.decode("utf-8")) == event.to_json()
    metrics = notifier.metrics
    assert metrics.outcome("ioc-webhook", Outcome.RETRIED) == 2
    assert metrics.outcome("ioc-webhook", Outcome.SENT) == 1
    assert metrics.outcome("ioc-webhook", Outcome.FAILED) == 0


async def test_webhook_client_error_is_not_retried(hook_server: Any) -> None:
    server = hook_server([400])
    notifier = await started([webhook("ioc-webhook", server.url)], [Route(("ioc-webhook",))])
    notifier.publish(make_event())
    assert await notifier.drain(20)
    await notifier.close(5)
    assert len(server.requests) == 1
    assert notifier.metrics.outcome("ioc-webhook", Outcome.FAILED) == 1
    assert notifier.metrics.outcome("ioc-webhook", Outcome.RETRIED) == 0


async def test_webhook_that_never_answers_fails_after_max_attempts(
    holding_server: HoldingServer, hook_server: Any
) -> None:
    live = hook_server([])
    dead = webhook("dead", holding_server.url, timeout_s=0.2)
    notifier = await started(
        [dead, webhook("live", live.url)],
        [
            Route(("dead",), kinds=frozenset({Kind.EXCEEDANCE})),
            Route(("live",), kinds=frozenset({Kind.DATA_LOSS})),
        ],
    )
    notifier.publish(make_event())
    notifier.publish(make_event(event_id=502, kind=Kind.DATA_LOSS))
    assert await notifier.drain(30)
    await notifier.close(5)
    assert holding_server.accepted == 3
    assert notifier.metrics.outcome("dead", Outcome.FAILED) == 1
    assert notifier.metrics.outcome("dead", Outcome.RETRIED) == 2
    assert [json.loads(body)["event_id"] for _, body in live.requests] == [502]
    assert notifier.metrics.outcome("live", Outcome.SENT) == 1


async def test_a_stuck_channel_never_blocks_publish_or_other_channels(
    holding_server: HoldingServer, hook_server: Any
) -> None:
    live = hook_server([])
    # A long timeout: the stuck channel cannot finish until the server is released.
    stuck = webhook("stuck", holding_server.url, timeout_s=60)
    notifier = await started([stuck, webhook("live", live.url)], [Route(("stuck", "live"))])
    try:
        notifier.publish(make_event(event_id=1))
        await wait_until(_async(lambda: holding_server.accepted == 1))
        for event_id in (2, 3):
            assert notifier.publish(make_event(event_id=event_id)) == ["stuck", "live"]
        await wait_until(_async(lambda: len(live.requests) == 3))
        # All three reached the live receiver while the stuck one still holds event 1.
        metrics = notifier.metrics
        assert metrics.outcome("stuck", Outcome.SENT) + metrics.outcome("stuck", "failed") == 0
        holding_server.release()  # from now on it hangs up: every attempt fails
        assert await notifier.drain(30)
    finally:
        await notifier.close(5)
    assert metrics.outcome("stuck", Outcome.FAILED) == 3
    assert metrics.outcome("live", Outcome.SENT) == 3


def _async(predicate: Any) -> Any:
    async def check() -> Any:
        return predicate()

    return check


# --- e-mail ----------------------------------------------------------------------------


class Mailbox:
    def __init__(self, replies: list[str] | None = None) -> None:
        self.replies = list(replies or [])
        self.attempts = 0
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.replies:
            return self.replies.pop(0)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def accept_duty_login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = (data.login, data.password) == (b"duty", "mật-khẩu".encode())
    return AuthResult(success=ok, handled=False)  # not handled: the server answers 535 itself


@pytest.fixture
def smtp_server() -> Iterator[Any]:
    controllers: list[Controller] = []

    def make(mailbox: Mailbox) -> int:
        port = free_port()
        controller = Controller(
            mailbox,
            hostname="127.0.0.1",
            port=port,
            authenticator=accept_duty_login,
            auth_require_tls=False,
        )
        controller.start()
        controllers.append(controller)
        return port

    yield make
    for controller in controllers:
        controller.stop()


def mail_channel(port: int, **options: Any) -> EmailChannel:
    values: dict[str, Any] = {
        "security": "none",
        "username": "duty",
        "password": "mật-khẩu",
        "sender": "Quantrac Bắc Ninh <alerts@quantrac.example>",
        "recipients": ["truc-ban@stnmt.example", "ioc@stnmt.example"],
        "lang": "vi",
        "timeout_s": 10.0,
        "max_attempts": 3,
        "backoff_s": 0.01,
    }
    values.update(options)
    return EmailChannel("duty-email", "127.0.0.1", port, **values)


async def test_email_is_delivered_with_vietnamese_subject_and_body(smtp_server: Any) -> None:
    mailbox = Mailbox()
    port = smtp_server(mailbox)
    notifier = await started([mail_channel(port)], [Route(("duty-email",))])
    notifier.publish(make_event())
    notifier.publish(make_event(event_id=502, event=EventType.ESCALATED))
    assert await notifier.drain(30)
    await notifier.close(5)

    assert notifier.metrics.outcome("duty-email", Outcome.SENT) == 2
    (sender, recipients, raw), (_, _, raw_escalated) = mailbox.messages
    assert sender == "alerts@quantrac.example"
    assert recipients == ["truc-ban@stnmt.example", "ioc@stnmt.example"]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == "[quantrac] CRITICAL Vượt quy chuẩn: WW1 COD"
    assert message["From"] == "Quantrac Bắc Ninh <alerts@quantrac.example>"
    body = message.get_body().get_content()  # type: ignore[union-attr]
    assert "Vượt quy chuẩn — mức Nghiêm trọng" in body
    assert "Trạm: Trạm nước thải thử Sông Khê (WW1)" in body
    assert "Quy chuẩn: QCVN 40:2011/BTNMT" in body
    escalated = email.message_from_bytes(raw_escalated, policy=email.policy.default)
    assert escalated["Subject"].endswith("(Chuyển cấp (chưa được xác nhận))")
    assert escalated["In-Reply-To"] == message["Message-ID"]


async def test_email_transient_refusal_is_retried(smtp_server: Any) -> None:
    mailbox = Mailbox(["451 4.3.0 Thử lại sau"])
    port = smtp_server(mailbox)
    notifier = await started([mail_channel(port, lang="en")], [Route(("duty-email",))])
    notifier.publish(make_event())
    assert await notifier.drain(30)
    await notifier.close(5)
    assert mailbox.attempts == 2 and len(mailbox.messages) == 1
    message = email.message_from_bytes(mailbox.messages[0][2], policy=email.policy.default)
    assert message["Subject"] == "[quantrac] CRITICAL Limit exceeded: WW1 COD"
    assert notifier.metrics.outcome("duty-email", Outcome.RETRIED) == 1
    assert notifier.metrics.outcome("duty-email", Outcome.SENT) == 1


async def test_email_wrong_password_fails_without_retry(smtp_server: Any) -> None:
    mailbox = Mailbox()
    port = smtp_server(mailbox)
    channel = mail_channel(port, password="sai")
    notifier = await started([channel], [Route(("duty-email",))])
    notifier.publish(make_event())
    assert await notifier.drain(30)
    await notifier.close(5)
    assert mailbox.messages == []
    assert notifier.metrics.outcome("duty-email", Outcome.FAILED) == 1
    assert notifier.metrics.outcome("duty-email", Outcome.RETRIED) == 0
