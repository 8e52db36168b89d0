"""Notifications without servers: routing, escalation, configuration, signatures, retries."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import yaml

from quantrac.alerts.model import AlertEvent, EventType, Kind, Severity, State
from quantrac.alerts.notify import (
    DeliveryError,
    EmailChannel,
    EscalationRule,
    MqttChannel,
    OpenAlert,
    RetryPolicy,
    Route,
    WebhookChannel,
    build_channels,
    build_message,
    deliver_with_retries,
    due_escalations,
    email_subject,
    encode_event,
    next_escalation_at,
    parse_notification_config,
    route,
    sign,
    verify_signature,
)
from quantrac.alerts.notify.mail import classify_smtp_error, email_body
from quantrac.alerts.notify.webhook import classify_response, parse_retry_after
from quantrac.core.config_files import ConfigError, load_yaml_with_lines, nearest_line
from quantrac.core.i18n import format_time, zone_text
from quantrac.core.settings import MqttEndpoint

T0 = datetime(2025, 3, 1, 7, 0, tzinfo=UTC)


def make_event(**changes: Any) -> AlertEvent:
    event = AlertEvent(
        event_id=101,
        alert_id=7,
        event=EventType.OPENED,
        kind=Kind.EXCEEDANCE,
        severity=Severity.CRITICAL,
        station_id="BG_WW_SONGKHE",
        station_name="Trạm nước thải KCN Sông Khê",
        param="COD",
        state=State.OPEN,
        at=T0,
        opened_at=T0,
        details={"value": 182.5, "limit": 75.0, "window_start": T0 - timedelta(hours=1)},
    )
    return replace(event, **changes)


class Recorder:
    """A channel that records, and can be told to fail or to wait."""

    def __init__(self, name: str, *, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.sent: list[AlertEvent] = []
        self.gate: asyncio.Event | None = None
        self.started = self.closed = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def send(self, event: AlertEvent) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise DeliveryError("boom", retryable=False)
        self.sent.append(event)


# --- routing -----------------------------------------------------------------------------


def test_routes_match_on_every_given_filter_and_name_each_channel_once() -> None:
    routes = [
        Route(("mqtt",)),
        Route(("hook",), severities=frozenset({Severity.CRITICAL, Severity.MAJOR})),
        Route(("mail", "hook"), kinds=frozenset({Kind.DATA_LOSS})),
        Route(("ops",), events=frozenset({EventType.OPENED}), stations=frozenset({"AIR1"})),
    ]
    assert route(make_event(), routes) == ["mqtt", "hook"]
    assert route(make_event(severity=Severity.MINOR), routes) == ["mqtt"]
    assert route(make_event(kind=Kind.DATA_LOSS, severity=Severity.MAJOR), routes) == [
        "mqtt",
        "hook",
        "mail",
    ]
    assert route(make_event(station_id="AIR1", severity=Severity.INFO), routes) == ["mqtt", "ops"]
    resolved = make_event(station_id="AIR1", event=EventType.RESOLVED, severity=Severity.INFO)
    assert route(resolved, routes) == ["mqtt"]


# --- escalation --------------------------------------------------------------------------

RULES = [
    EscalationRule("duty-30", 30, ("duty-email",), severities=frozenset({Severity.CRITICAL})),
    EscalationRule("boss-120", 120, ("boss-email",)),
    EscalationRule("loss-10", 10, ("sms",), kinds=frozenset({Kind.DATA_LOSS})),
]


def open_alert(alert_id: int = 1, **changes: Any) -> OpenAlert:
    alert = OpenAlert(alert_id, Kind.EXCEEDANCE, Severity.CRITICAL, "WW1", T0)
    return replace(alert, **changes)


def test_escalation_is_due_after_its_delay_and_only_for_matching_alerts() -> None:
    alerts = [open_alert(1), open_alert(2, severity=Severity.MINOR)]
    assert due_escalations(alerts, RULES, T0 + timedelta(minutes=29, seconds=59)) == []
    due = due_escalations(alerts, RULES, T0 + timedelta(minutes=30))
    assert [(d.alert_id, d.rule_id, d.channels) for d in due] == [(1, "duty-30", ("duty-email",))]
    assert due[0].due_at == T0 + timedelta(minutes=30)
    assert due[0].details()["escalation"] == "duty-30"


def test_each_rule_fires_once_per_alert_and_overdue_ones_come_oldest_first() -> None:
    now = T0 + timedelta(hours=3)  # e.g. the service was down
    fresh = open_alert(1)
    due = due_escalations([fresh], RULES, now)
    assert [d.rule_id for d in due] == ["duty-30", "boss-120"]
    done = replace(fresh, escalations_done=frozenset({"duty-30"}))
    assert [d.rule_id for d in due_escalations([done], RULES, now)] == ["boss-120"]
    all_done = replace(fresh, escalations_done=frozenset({"duty-30", "boss-120"}))
    assert due_escalations([all_done], RULES, now) == []


def test_escalation_kind_filter_and_next_due_time() -> None:
    loss = open_alert(3, kind=Kind.DATA_LOSS, severity=Severity.MAJOR)
    assert [d.rule_id for d in due_escalations([loss], RULES, T0 + timedelta(minutes=10))] == [
        "loss-10"
    ]
    assert next_escalation_at([loss], RULES) == T0 + timedelta(minutes=10)
    done = replace(loss, escalations_done=frozenset({"loss-10", "boss-120"}))
    assert next_escalation_at([done], RULES) is None


# --- configuration -----------------------------------------------------------------------

EXAMPLE = """
notifications:
  channels:
    - {name: ioc-mqtt, type: mqtt}
    - {name: ioc-webhook, type: webhook, url: "https://ioc.example/hooks/quantrac",
       secret: "${QUANTRAC_WEBHOOK_SECRET}", max_attempts: 5}
    - {name: duty-email, type: email, host: smtp.example, port: 587, security: starttls,
       username: quantrac, password: "${QUANTRAC_SMTP_PASSWORD}",
       sender: "Quantrac <alerts@example.vn>", recipients: [duty@example.vn], lang: vi}
  routes:
    - {channels: [ioc-mqtt]}
    - {channels: [ioc-webhook], severities: [critical, major]}
  escalations:
    - {after_minutes: 30, channels: [duty-email], severities: [critical]}
"""


LINES = load_yaml_with_lines(EXAMPLE)[1]


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE)["notifications"]


def test_example_configuration_parses_and_builds() -> None:
    config = parse_notification_config(example(), "alerts.yaml")
    assert [c.name for c in config.channels] == ["ioc-mqtt", "ioc-webhook", "duty-email"]
    assert config.routes[1].severities == {Severity.CRITICAL, Severity.MAJOR}
    (rule,) = config.escalations
    assert (rule.after_minutes, rule.channels, rule.rule_id) == (
        30,
        ("duty-email",),
        "after-30m-duty-email",
    )
    endpoint = MqttEndpoint("127.0.0.1", 1883, False, None, None)
    env = {"QUANTRAC_WEBHOOK_SECRET": "s3cret", "QUANTRAC_SMTP_PASSWORD": "pw"}
    channels = {c.name: c for c in build_channels(config, endpoint, environ=env)}
    assert list(channels) == ["ioc-mqtt", "ioc-webhook", "duty-email"]
    assert isinstance(channels["ioc-mqtt"], MqttChannel)
    hook = channels["ioc-webhook"]
    assert isinstance(hook, WebhookChannel)
    assert hook.policy.max_attempts == 5
    assert "s3cret" not in repr(hook) and "s3cret" not in repr(config)
    mail = channels["duty-email"]
    assert isinstance(mail, EmailChannel)
    assert (mail.port, mail.security.value, mail.lang) == (587, "starttls", "vi")


def test_missing_environment_variable_names_channel_and_variable() -> None:
    config = parse_notification_config(example(), "alerts.yaml")
    endpoint = MqttEndpoint("127.0.0.1", 1883, False, None, None)
    with pytest.raises(ConfigError, match=r"'ioc-webhook'.*QUANTRAC_WEBHOOK_SECRET"):
        build_channels(config, endpoint, environ={})


def test_queue_size_of_older_files_still_loads_with_a_deprecation_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = {**example(), "queue_size": 500}
    with caplog.at_level("WARNING", logger="quantrac.alerts.notify.config"):
        config = parse_notification_config(data, "old-alerts.yaml")
    assert config == parse_notification_config(example(), "old-alerts.yaml")
    (record,) = caplog.records
    assert "old-alerts.yaml" in record.getMessage()
    assert "queue_size is deprecated and ignored" in record.getMessage()
    assert record.__dict__["event"] == "notification_config_deprecated"


def test_empty_or_absent_section_means_no_notifications() -> None:
    config = parse_notification_config(None, "alerts.yaml")
    assert config.channels == () and config.routes == ()


def edit(path: str, value: Any) -> dict[str, Any]:
    data = example()
    *parents, last = path.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is DELETE:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return data


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("channels.0.type", "sms", r"channels\[0\]\.type: must be one of: mqtt, webhook, email"),
        ("channels.1.name", "ioc-mqtt", r"channels\[1\]\.name: 'ioc-mqtt' is already used"),
        ("channels.1.url", "ftp://x", r"channels\[1\]\.url: must be an http"),
        ("channels.1.secret", DELETE, r"channels\[1\]\.secret: required"),
        ("channels.1.max_attempts", 0, r"channels\[1\]\.max_attempts: must be between 1"),
        ("channels.1.backoff_s", "fast", r"channels\[1\]\.backoff_s: must be a number"),
        (
            "channels.1.retries",
            3,
            r"channels\[1\]\.retries: unknown field \(expected one of backoff_s, max_attempts, "
            r"max_backoff_s, name, secret, timeout_s, type, url\)",
        ),
        ("channels.2.security", "ssl", r"channels\[2\]\.security: must be one of"),
        ("channels.2.recipients", [], r"channels\[2\]\.recipients: must name at least one"),
        ("channels.2.recipients", ["nobody"], r"recipients: not an e-mail address: 'nobody'"),
        ("channels.2.lang", "fr", r"channels\[2\]\.lang: must be one of: vi, en"),
        ("channels.2.port", 70000, r"channels\[2\]\.port: must be between"),
        ("routes.1.channels", ["nope"], r"routes\[1\]\.channels: no channel named 'nope'"),
        ("routes.1.severities", ["urgent"], r"routes\[1\]\.severities: unknown value 'urgent'"),
        ("routes.0.kinds", ["flood"], r"routes\[0\]\.kinds: unknown value 'flood'"),
        ("routes.0.channels", [], r"routes\[0\]\.channels: must name at least one"),
        ("escalations.0.after_minutes", -5, r"escalations\[0\]\.after_minutes: must be greater"),
        ("escalations.0.after_minutes", DELETE, r"escalations\[0\]\.after_minutes: required"),
        ("escalations.0.channels", ["x"], r"escalations\[0\]\.channels: no channel named 'x'"),
        ("routes", {"channels": ["ioc-mqtt"]}, r"notifications\.routes: expected a list"),
    ],
)
def test_configuration_errors_name_file_and_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_notification_config(edit(path, value), "config/alerts.yaml", LINES)
    (issue,) = caught.value.issues
    assert str(issue) == f"config/alerts.yaml:{issue.line}: {issue.field}: {issue.message}"
    assert issue.field.startswith("notifications")
    # the line of the field, or of the nearest enclosing field the example has
    assert issue.line == nearest_line(LINES, issue.field) > 1


def test_every_problem_is_reported_at_its_line_of_the_file() -> None:
    text = """notifications:
  channels:
    - name: hook
      type: webhook
      url: ftp://x
      secret: s
    - name: mail
      type: email
      host: smtp.example
      sender: a@example.vn
      recipients: [b@example.vn]
      password: pw
  routes:
    - channels: [hook]
      kinds: [flood]
"""
    data, lines = load_yaml_with_lines(text)
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(data["notifications"], "alerts.yaml", lines)
    assert str(caught.value).splitlines() == [
        "alerts.yaml:5: notifications.channels[0].url: must be an http:// or https:// URL,"
        " not 'ftp://x'",
        "alerts.yaml:15: notifications.routes[0].kinds: unknown value 'flood' (one of: "
        + ", ".join(k.value for k in Kind)
        + ")",
    ]
    data["notifications"]["channels"][0]["url"] = "https://ioc.example.vn"
    data["notifications"]["routes"][0]["kinds"] = []
    with pytest.raises(ConfigError) as caught:
        parse_notification_config(data["notifications"], "alerts.yaml", lines)
    assert str(caught.value) == (
        "alerts.yaml:12: notifications.channels[1].password: given without a username"
    )


def test_duplicate_escalation_rules_need_distinct_names() -> None:
    data = example()
    data["escalations"].append(dict(data["escalations"][0]))
    with pytest.raises(ConfigError, match=r"escalations\[1\]\.name: .*defined twice"):
        parse_notification_config(data, "alerts.yaml")
    data["escalations"][1]["name"] = "again"
    assert [r.rule_id for r in parse_notification_config(data, "alerts.yaml").escalations] == [
        "after-30m-duty-email",
        "again",
    ]


# --- signature and payload ---------------------------------------------------------------


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = encode_event(make_event())
    expected = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign(body, "k") == expected
    assert verify_signature(body, "k", expected)
    assert not verify_signature(body + b" ", "k", expected)
    assert not verify_signature(body, "other", expected)
    assert not verify_signature(body, "k", None)


def test_payload_is_utf8_json_with_diacritics_kept() -> None:
    body = encode_event(make_event())
    assert "Trạm nước thải".encode() in body
    data = json.loads(body)
    assert data["station"] == "BG_WW_SONGKHE" and data["kind"] == "exceedance"
    assert data["details"]["window_start"] == "2025-03-01T06:00:00+00:00"


# --- retry decisions ---------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_s=1, max_backoff_s=10, jitter=0.5)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]
    assert policy.delay_s(3, rand=0.999) == pytest.approx(2.002)
    assert policy.delay_s(3, rand=0.5) == 3


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff_s=1, max_retry_after_s=60)
    assert policy.delay_s(1, retry_after_s=20) == 20
    assert policy.delay_s(1, retry_after_s=3600) == 60
    assert policy.delay_s(1, retry_after_s=0) == 1  # never less than our own backoff
    assert parse_retry_after("120") == 120
    now = datetime(2025, 3, 1, 7, 0, tzinfo=UTC)
    assert parse_retry_after("Sat, 01 Mar 2025 07:00:30 GMT", now) == 30
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (429, True), (400, False), (401, False),
     (404, False), (410, False), (301, False)],
)  # fmt: skip
def test_http_status_classification(status: int, retryable: bool) -> None:
    error = classify_response(status, "7")
    assert error is not None and error.retryable is retryable
    assert classify_response(200) is None and classify_response(204) is None
    if status in (429, 503):
        assert error.retry_after_s == 7


def test_smtp_error_classification() -> None:
    import smtplib

    assert classify_smtp_error(smtplib.SMTPDataError(451, b"try later")).retryable
    assert not classify_smtp_error(smtplib.SMTPDataError(554, b"rejected")).retryable
    assert not classify_smtp_error(smtplib.SMTPAuthenticationError(535, b"bad")).retryable
    assert classify_smtp_error(smtplib.SMTPServerDisconnected("gone")).retryable
    assert classify_smtp_error(ConnectionRefusedError()).retryable
    assert classify_smtp_error(TimeoutError()).retryable
    refused = smtplib.SMTPRecipientsRefused({"a@x": (450, b"busy")})
    assert classify_smtp_error(refused).retryable
    refused = smtplib.SMTPRecipientsRefused({"a@x": (550, b"no such user")})
    assert not classify_smtp_error(refused).retryable


class Script:
    """An attempt function failing with the given errors, then succeeding."""

    def __init__(self, *errors: DeliveryError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


async def test_retries_transient_errors_then_succeeds_with_recorded_waits() -> None:
    waits: list[float] = []
    retries: list[int] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    attempt = Script(
        DeliveryError("503", retryable=True),
        DeliveryError("429", retryable=True, retry_after_s=9),
    )
    policy = RetryPolicy(max_attempts=5, backoff_s=2)
    await deliver_with_retries(
        attempt, policy, sleep=sleep, rand=lambda: 0.0, on_retry=lambda n, e, d: retries.append(n)
    )
    assert attempt.calls == 3
    assert waits == [2, 9]
    assert retries == [1, 2]


async def test_gives_up_after_max_attempts_and_never_retries_permanent_errors() -> None:
    async def sleep(seconds: float) -> None:
        pass

    always = Script(*[DeliveryError("timeout", retryable=True)] * 10)
    with pytest.raises(DeliveryError, match="gave up after 3 attempts") as caught:
        await deliver_with_retries(always, RetryPolicy(max_attempts=3), sleep=sleep)
    assert always.calls == 3 and not caught.value.retryable

    permanent = Script(DeliveryError("HTTP 400", retryable=False))
    with pytest.raises(DeliveryError, match="HTTP 400"):
        await deliver_with_retries(permanent, RetryPolicy(max_attempts=3), sleep=sleep)
    assert permanent.calls == 1


async def test_webhook_retries_5xx_counts_retries_and_signs_every_attempt() -> None:
    seen: list[httpx.Request] = []
    statuses = [503, 502, 200]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(statuses[len(seen) - 1])

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    hook = WebhookChannel(
        "hook",
        "https://ioc.example/h",
        "topsecret",
        backoff_s=0.5,
        sleep=sleep,
        rand=lambda: 0.0,
        transport=httpx.MockTransport(handler),
    )
    retries: list[int] = []
    hook.on_retry = lambda attempt, error, delay_s: retries.append(attempt)
    await hook.start()
    await hook.send(make_event())
    await hook.close()
    assert len(seen) == 3 and waits == [0.5, 1.0]
    for request in seen:
        assert request.headers["X-Quantrac-Event"] == "opened"
        assert request.headers["X-Quantrac-Delivery"] == "101"
        assert verify_signature(
            request.content, "topsecret", request.headers["X-Quantrac-Signature"]
        )
    assert retries == [1, 2]  # the hook the outbox counts as quantrac_notifications_total


async def test_webhook_does_not_retry_a_client_error() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(422)

    hook = WebhookChannel("hook", "https://x/h", "k", transport=httpx.MockTransport(handler))
    with pytest.raises(DeliveryError, match="HTTP 422"):
        await hook.send(make_event())
    await hook.close()
    assert calls == 1


# --- e-mail text -------------------------------------------------------------------------


def test_email_subject_and_body_in_both_languages() -> None:
    event = make_event()
    assert email_subject(event, "vi") == "[quantrac] CRITICAL Vượt quy chuẩn: BG_WW_SONGKHE COD"
    assert email_subject(event, "en") == "[quantrac] CRITICAL Limit exceeded: BG_WW_SONGKHE COD"
    silent = make_event(kind=Kind.DATA_LOSS, param="", event=EventType.ESCALATED)
    assert email_subject(silent, "vi") == (
        "[quantrac] CRITICAL Mất dữ liệu: BG_WW_SONGKHE (Chuyển cấp (chưa được xác nhận))"
    )
    raw = build_message(event, "Quantrac <alerts@example.vn>", ["duty@example.vn"], "vi")
    parsed = email.message_from_bytes(raw.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "[quantrac] CRITICAL Vượt quy chuẩn: BG_WW_SONGKHE COD"
    assert parsed["Message-ID"] == "<quantrac-alert-7@example.vn>"
    body = parsed.get_body().get_content()  # type: ignore[union-attr]
    assert "Trạm: Trạm nước thải KCN Sông Khê (BG_WW_SONGKHE)" in body
    assert "Thời điểm: 01/03/2025 14:00" in body  # shown in Vietnam time, day first
    assert "Múi giờ: giờ Việt Nam, UTC+07:00" in body
    assert "Giới hạn: 75" in body
    assert "  Giá trị: 182,5" in body  # the decimal comma in Vietnamese
    assert "182.5" in email_body(make_event(), "en")


def test_email_times_read_day_first_on_the_clock_they_say() -> None:
    """Item 6: no ISO times in the mail; dd/MM/yyyy HH:mm (in English too, as the reports
    write them), the zone said once, and a time the engine gave as text read the same way."""
    event = make_event(
        at=T0 + timedelta(minutes=35, seconds=12),
        details={"last_measured_at": "2025-03-01T06:20:00+00:00", "window_start": T0},
    )
    for lang, zone in (("vi", "Múi giờ: giờ Việt Nam"), ("en", "Time zone: Vietnam time")):
        body = email_body(event, lang)
        assert f"{zone}, UTC+07:00" in body
        assert ": 01/03/2025 14:35\n" in body
        assert ": 01/03/2025 14:00\n" in body  # opened, and the window's start
        assert ": 01/03/2025 13:20\n" in body  # the text time, in Vietnam time
        assert "+07:00\n" not in body.replace("UTC+07:00\n", "")
        assert "2025-03-01" not in body
    # Another clock, if a channel is given one: its own offset, never "Vietnam".
    body = email_body(event, "en", UTC)
    assert "Time zone: UTC+00:00" in body and ": 01/03/2025 07:35\n" in body
    assert "Vietnam" not in body


def test_email_value_and_limit_read_with_the_same_decimals() -> None:
    """Item 6: "153" beside "75,0" read as if measured differently; a value, the maximum and
    the limit share the limit's decimals (75: one, by its 3 significant figures)."""
    details = {"value": 153.0, "limit": 75.0, "maximum": 160.26, "multiple": 2.04, "count": 3}
    vi = email_body(make_event(details=details), "vi")
    assert "  Giá trị: 153,0\n" in vi and "  Giới hạn: 75,0\n" in vi
    assert ": 160,3\n" in vi  # the maximum, rounded to the limit's decimals
    assert ": 2,04\n" in vi and ": 3\n" in vi  # a ratio and a count are not in the unit
    en = email_body(make_event(details=details), "en")
    assert "153.0\n" in en and "75.0\n" in en
    # A range (pH 6–9): two decimals for both bounds and the value.
    ph = email_body(make_event(details={"value": 9.5, "limit": 9, "limit_min": 6}), "vi")
    assert ": 9,50\n" in ph and ": 9,00\n" in ph and ": 6,00\n" in ph
    # No limit (a fault's last value): the value as it is.
    assert ": 30\n" in email_body(make_event(details={"value": 30.0}), "vi")


def test_format_time_and_zone_text() -> None:
    assert format_time(datetime(2026, 12, 31, 17, 5, tzinfo=UTC)) == "01/01/2027 00:05"
    assert format_time(T0, UTC) == "01/03/2025 07:00"
    assert zone_text() == "giờ Việt Nam, UTC+07:00"
    assert zone_text(lang="en") == "Vietnam time, UTC+07:00"
    assert zone_text(timezone(timedelta(hours=-3, minutes=-30)), "vi") == "UTC-03:30"
    assert zone_text(UTC, "en") == "UTC+00:00"


def test_an_assignment_mail_names_who_gave_it_to_whom() -> None:
    event = make_event(
        event=EventType.ASSIGNED,
        actor="op.an",
        note="ra trạm kiểm tra",
        details={"assignee": "op.hai", "previous_assignee": "op.ba"},
    )
    assert email_subject(event, "vi") == (
        "[quantrac] CRITICAL Vượt quy chuẩn: BG_WW_SONGKHE COD (Giao xử lý)"
    )
    assert (
        email_subject(event, "en")
        == "[quantrac] CRITICAL Limit exceeded: BG_WW_SONGKHE COD (Assigned)"
    )
    body = email_body(event, "vi")
    assert "Người thực hiện: op.an" in body and "Ghi chú: ra trạm kiểm tra" in body
    assert "  Giao cho: op.hai" in body and "  Người được giao trước đó: op.ba" in body
    assert "  Assigned to: op.hai" in email_body(event, "en")


def test_every_kind_severity_state_and_event_has_both_translations() -> None:
    from quantrac.alerts.model import Kind as K
    from quantrac.alerts.model import Severity as S
    from quantrac.core.i18n import translate

    for key in (
        [f"alert.kind.{k.value}" for k in K]
        + [f"alert.severity.{s.value}" for s in S]
        + [f"alert.state.{s.value}" for s in State]
        + [f"alert.event.{e.value}" for e in EventType]
    ):
        assert translate(key, "vi") and translate(key, "en")
