"""Scheduled reports: the schedule file and periods (pure), and the sender against real
PostgreSQL and a real SMTP server (aiosmtpd): sent once per period, across restarts, with
retries and a durable record."""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from quantrac.alerts.notify.config import EmailChannelConfig
from quantrac.alerts.notify.mail import Security
from quantrac.core.contract import Reading, Status
from quantrac.core.registry import Registry
from quantrac.evidence import schema as evidence_schema
from quantrac.evidence.seal import verify_file
from quantrac.ingest.service import upgrade_database
from quantrac.ingest.writer import BatchWriter, Item
from quantrac.regulations.tables import load_regulation_catalog
from quantrac.reports import delivery
from quantrac.reports.delivery import ReportSender, email_channel_spec, list_deliveries
from quantrac.reports.schedule import (
    ReportSchedule,
    ScheduleConfigError,
    latest_due_period,
    load_schedule_config,
    parse_schedule_config,
    period_containing,
    retry_delay,
)
from tests.conftest import CONFIG
from tests.test_notify_channels import Mailbox
from tests.test_notify_channels import smtp_server as smtp  # noqa: F401  (the fixture)

VN = timezone(timedelta(hours=7))


def vn(*args: int) -> datetime:
    return datetime(*args, tzinfo=VN)  # type: ignore[misc]


# --- pure ----------------------------------------------------------------------------------------


def test_periods_follow_the_vietnamese_calendar():
    # 00:30 on 1 November in Hà Nội is still 31 October in UTC.
    moment = vn(2026, 11, 1, 0, 30)
    assert period_containing("daily", moment) == (vn(2026, 11, 1), vn(2026, 11, 2))
    assert period_containing("monthly", moment) == (vn(2026, 11, 1), vn(2026, 12, 1))
    assert period_containing("monthly", vn(2026, 12, 31, 23)) == (vn(2026, 12, 1), vn(2027, 1, 1))
    # 1 November 2026 is a Sunday: its week began on Monday 26 October.
    assert period_containing("weekly", moment) == (vn(2026, 10, 26), vn(2026, 11, 2))


def test_latest_due_period_waits_for_send_at():
    monthly = ReportSchedule("m", "WW1", None, "monthly", "pdf", "vi", ("a@b.vn",), time(7, 30))
    assert latest_due_period(monthly, vn(2026, 11, 1, 7, 29)) == (vn(2026, 9, 1), vn(2026, 10, 1))
    assert latest_due_period(monthly, vn(2026, 11, 1, 7, 30)) == (vn(2026, 10, 1), vn(2026, 11, 1))
    assert latest_due_period(monthly, vn(2026, 11, 20)) == (vn(2026, 10, 1), vn(2026, 11, 1))
    daily = ReportSchedule("d", "WW1", None, "daily", "csv", "en", ("a@b.vn",))
    assert latest_due_period(daily, vn(2026, 11, 5, 6)) == (vn(2026, 11, 3), vn(2026, 11, 4))
    assert latest_due_period(daily, vn(2026, 11, 5, 7)) == (vn(2026, 11, 4), vn(2026, 11, 5))
    assert [retry_delay(n, 60, 600) for n in (1, 2, 3, 4, 5)] == [60, 120, 240, 480, 600]


SCHEDULE = {
    "id": "ww1-monthly",
    "station": "WW1",
    "period": "monthly",
    "format": "json",
    "lang": "vi",
    "recipients": ["thanhtra@stnmt.example"],
    "send_at": "07:30",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "a b"}, "schedules[0].id"),
        ({"facility": "KCN Thử"}, "give a station or a facility"),
        ({"period": "hourly"}, "one of daily, weekly, monthly"),
        ({"format": "doc"}, "one of pdf, xlsx, csv, json"),
        ({"recipients": ["nobody"]}, "not an e-mail address: 'nobody'"),
        ({"recipients": []}, "at least one"),
        ({"send_at": "7h"}, "HH:MM"),
        (
            {"colour": "red"},
            "schedules[0].colour: unknown field (expected one of facility, format, id",
        ),
    ],
)
def test_schedule_errors_name_the_field(change, message):
    with pytest.raises(ScheduleConfigError, match=re.escape(message)):
        parse_schedule_config(
            {"email_channel": "m", "schedules": [{**SCHEDULE, **change}]}, "reports.yaml"
        )


def test_schedule_needs_a_channel_and_unique_ids():
    with pytest.raises(ScheduleConfigError, match="email_channel"):
        parse_schedule_config({"schedules": [SCHEDULE]})
    with pytest.raises(ScheduleConfigError, match="used twice"):
        parse_schedule_config({"email_channel": "m", "schedules": [SCHEDULE, SCHEDULE]})
    assert parse_schedule_config(None).schedules == ()
    shipped = parse_schedule_config({"schedules": []})
    assert shipped.email_channel is None


def test_schedule_file_errors_name_file_and_line(tmp_path):
    path = tmp_path / "reports.yaml"
    path.write_text(
        "email_channel: m\n"
        "schedules:\n"
        "  - id: a\n"
        "    station: WW1\n"
        "    recipients: [a@b.example]\n"
        "  - id: a\n"
        "    station: WW1\n"
        "    recipients: [a@b.example]\n",
        encoding="utf-8",
    )
    with pytest.raises(ScheduleConfigError) as info:
        load_schedule_config(path)
    assert str(info.value) == f"{path}:6: schedules[1].id: 'a' is used twice"
    path.write_text("schedules:\n  - id: a\n    period: hourly\n", encoding="utf-8")
    with pytest.raises(ScheduleConfigError) as info:
        load_schedule_config(path)
    assert str(info.value).splitlines() == [
        f"{path}:2: schedules[0].recipients: required field missing",
        f"{path}:3: schedules[0].period: one of daily, weekly, monthly",
    ]


def test_the_channel_comes_from_the_alert_notifications():
    doc = {
        "channels": [
            {"name": "mqtt", "type": "mqtt"},
            {
                "name": "reports-mail",
                "type": "email",
                "host": "smtp.example",
                "sender": "quantrac@stnmt.example",
                "recipients": ["duty@stnmt.example"],
            },
        ],
        "routes": [{"channels": ["mqtt"]}],
    }
    assert email_channel_spec(doc, "reports-mail", "alerts.yaml").host == "smtp.example"
    with pytest.raises(ScheduleConfigError, match="not of type email"):
        email_channel_spec(doc, "mqtt", "alerts.yaml")
    with pytest.raises(ScheduleConfigError, match="no notification channel named 'x'"):
        email_channel_spec(doc, "x", "alerts.yaml")


# --- with PostgreSQL and an SMTP server ----------------------------------------------------------


async def _store(settings: Any) -> None:
    await upgrade_database(settings)
    readings = [
        Reading("WW1", "COD", vn(2026, 10, 10) + timedelta(minutes=5 * i), 60.0 + i % 5, Status(0))
        for i in range(24)
    ]
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        writer = BatchWriter(conn, "postgresql")
        await writer.prepare()
        await writer.write([Item(datetime.now(UTC), "WW1", "t", "mqtt", None, "", readings, [])])


def _spec(port: int) -> EmailChannelConfig:
    return EmailChannelConfig(
        name="reports-mail",
        host="127.0.0.1",
        port=port,
        security=Security.NONE,
        sender="Quantrac Bắc Ninh <reports@quantrac.example>",
        recipients=("ignored@stnmt.example",),
        username="duty",
        password="mật-khẩu",
        timeout_s=10,
    )


async def _sender(settings: Any, registry: Registry, catalog: Any, port: int) -> ReportSender:
    conn = await psycopg.AsyncConnection.connect(settings.database_url)
    from quantrac.alerts.store import upgrade as upgrade_alerts

    await upgrade_alerts(conn)
    await evidence_schema.upgrade(conn)
    await delivery.upgrade(conn)
    await conn.commit()
    config = parse_schedule_config(
        {"email_channel": "reports-mail", "retry_s": 60, "max_attempts": 3, "schedules": [SCHEDULE]}
    )
    regulations = load_regulation_catalog(CONFIG / "regulations", catalog)
    return ReportSender(conn, config, lambda: registry, regulations, _spec(port), environ={})


@pytest.mark.integration
async def test_a_due_report_is_mailed_once_even_across_restarts(
    make_settings,
    registry,
    catalog,
    smtp,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
):
    settings = make_settings()
    await _store(settings)
    mailbox = Mailbox()
    port = smtp(mailbox)
    sender = await _sender(settings, registry, catalog, port)
    # Before 07:30 on 1 November the October report is not due yet (September's is, empty).
    early = await sender.tick(vn(2026, 11, 1, 7))
    assert [(o[1], o[2]) for o in early] == [(vn(2026, 9, 1), "sent")]
    outcomes = await sender.tick(vn(2026, 11, 1, 7, 31))
    assert outcomes == [("ww1-monthly", vn(2026, 10, 1), "sent")]
    assert await sender.tick(vn(2026, 11, 1, 8)) == []
    await sender.conn.close()
    restarted = await _sender(settings, registry, catalog, port)
    assert await restarted.tick(vn(2026, 11, 2, 8)) == []
    assert len(mailbox.messages) == 2

    mail_from, recipients, raw = mailbox.messages[1]
    assert (mail_from, recipients) == ("reports@quantrac.example", ["thanhtra@stnmt.example"])
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == "[quantrac] Báo cáo vượt quy chuẩn WW1, 01/10/2026 – 31/10/2026"
    report, seal = list(message.iter_attachments())
    assert report.get_filename() == "ww1-monthly_20261001-20261031.json"
    assert seal.get_filename() == "ww1-monthly_20261001-20261031.json.seal.json"
    body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "24 số liệu" in body

    # The attachment is sealed evidence: it verifies against the database.
    saved = tmp_path / report.get_filename()
    saved.write_bytes(report.get_content())
    (tmp_path / seal.get_filename()).write_bytes(seal.get_content())
    verdict = await verify_file(restarted.conn, saved)
    assert verdict.ok and verdict.readings_now is not None and verdict.readings_now.count == 24

    rows = await list_deliveries(restarted.conn)
    assert [(r["schedule"], r["from"], r["state"], r["attempts"]) for r in rows] == [
        ("ww1-monthly", vn(2026, 10, 1), "sent", 1),
        ("ww1-monthly", vn(2026, 9, 1), "sent", 1),
    ]
    await restarted.conn.close()


@pytest.mark.integration
async def test_failed_sends_are_retried_later_then_given_up(
    make_settings,
    registry,
    catalog,
    smtp,  # noqa: F811  (the fixture imported above)
):
    settings = make_settings()
    await _store(settings)
    mailbox = Mailbox(["451 4.3.0 thử lại sau", "451 4.3.0 thử lại sau"])
    port = smtp(mailbox)
    sender = await _sender(settings, registry, catalog, port)
    now = vn(2026, 11, 1, 8)
    assert await sender.tick(now) == [("ww1-monthly", vn(2026, 10, 1), "retry")]
    assert await sender.tick(now + timedelta(seconds=30)) == []  # not before its next attempt
    assert await sender.tick(now + timedelta(minutes=1)) == [
        ("ww1-monthly", vn(2026, 10, 1), "retry")
    ]
    assert await sender.tick(now + timedelta(minutes=4)) == [
        ("ww1-monthly", vn(2026, 10, 1), "sent")
    ]
    assert len(mailbox.messages) == 1 and mailbox.attempts == 3
    [row] = await list_deliveries(sender.conn)
    assert (row["state"], row["attempts"]) == ("sent", 3)
    await sender.conn.close()

    # A permanent refusal, or an unreachable server until max_attempts, ends as failed.
    refusing = Mailbox(["550 5.1.1 no such mailbox"])
    sender = await _sender(settings, registry, catalog, smtp(refusing))
    await sender.conn.execute("DELETE FROM report_deliveries")
    await sender.conn.commit()
    assert await sender.tick(now) == [("ww1-monthly", vn(2026, 10, 1), "failed")]
    [row] = await list_deliveries(sender.conn)
    assert row["state"] == "failed" and "550" in row["last_error"]
    await sender.conn.close()


@pytest.mark.integration
def test_cli_schedule_check(make_settings, monkeypatch, tmp_path: Path, capsys):
    from quantrac.cli.main import main

    settings = make_settings()
    monkeypatch.setenv("QUANTRAC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("QUANTRAC_STATIONS_FILE", str(settings.stations_path))
    assert main(["report", "schedule", "check"]) == 0
    assert "0 schedule(s) OK" in capsys.readouterr().out
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text(
        (CONFIG / "alerts.yaml")
        .read_text(encoding="utf-8")
        .replace(
            "    - {name: mqtt, type: mqtt}",
            "    - {name: mqtt, type: mqtt}\n"
            "    - {name: reports-mail, type: email, host: smtp.example,"
            " sender: q@stnmt.example, recipients: [d@stnmt.example]}",
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("QUANTRAC_ALERTS_FILE", str(alerts))
    schedules = tmp_path / "reports.yaml"
    doc = {"email_channel": "reports-mail", "schedules": [SCHEDULE]}
    schedules.write_text(json.dumps(doc), encoding="utf-8")
    assert main(["report", "schedule", "check", "--schedules", str(schedules)]) == 0
    assert "ww1-monthly: WW1 monthly json/vi → thanhtra@stnmt.example" in capsys.readouterr().out
    doc["schedules"] = [{**SCHEDULE, "station": "NOPE"}]
    schedules.write_text(json.dumps(doc), encoding="utf-8")
    assert main(["report", "schedule", "check", "--schedules", str(schedules)]) == 2
    assert "unknown station 'NOPE'" in capsys.readouterr().err
