"""Sending scheduled reports: a durable record per (schedule, period), built and mailed once.

``report_deliveries`` (owner module) holds one row per schedule and period: pending, sent or
failed, with its attempts, last error, next attempt, the file's SHA-256 and the Message-ID.

A delivery is claimed with ``FOR UPDATE SKIP LOCKED`` in one REPEATABLE READ transaction that
builds the report, computes its seal, sends it and marks it sent; so two senders never send one
period, and a restart never sends again what was committed as sent. The one window left is a
crash after the SMTP server accepted the message and before the commit: the period is then sent
again, with the same Message-ID (mail clients show one message).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

import psycopg

from quantrac.alerts.config import EngineConfig
from quantrac.alerts.notify.base import DeliveryError
from quantrac.alerts.notify.config import (
    EmailChannelConfig,
    build_email_channel,
    parse_notification_config,
)
from quantrac.alerts.notify.mail import EmailChannel, classify_smtp_error
from quantrac.core.i18n import translate
from quantrac.core.migrations import apply_component_migrations
from quantrac.core.registry import Registry
from quantrac.core.time import VIETNAM
from quantrac.evidence.seal import readings_digest, record_seal, seal_for, seal_json
from quantrac.regulations.tables import RegulationCatalog
from quantrac.reports.exceedances import ReportError, exceedance_report, stations_for
from quantrac.reports.schedule import (
    ReportSchedule,
    ScheduleConfig,
    ScheduleConfigError,
    latest_due_period,
    retry_delay,
)
from quantrac.reports.writers import MEDIA_TYPES, exceedance_file

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x71727074  # "qrpt"


async def _v1(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("""
        CREATE TABLE report_deliveries (
            schedule_id     text NOT NULL,
            period_start    timestamptz NOT NULL,
            period_end      timestamptz NOT NULL,
            state           text NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
            recipients      text[] NOT NULL,
            attempts        integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL,
            last_error      text,
            created_at      timestamptz NOT NULL DEFAULT now(),
            sent_at         timestamptz,
            file_name       text,
            file_sha256     text,
            message_id      text,
            PRIMARY KEY (schedule_id, period_start)
        );
        CREATE INDEX report_deliveries_pending ON report_deliveries (next_attempt_at)
            WHERE state = 'pending';
    """)


MIGRATIONS = [(1, "report deliveries", _v1)]


async def upgrade(conn: psycopg.AsyncConnection) -> list[int]:
    return await apply_component_migrations(
        conn, "report_delivery_migrations", _MIGRATION_LOCK, MIGRATIONS
    )


def email_channel_spec(
    alerts_doc: Any, name: str, source: str, lines: Mapping[str, int] | None = None
) -> EmailChannelConfig:
    """The e-mail channel ``name`` of config/alerts.yaml's notifications section."""
    config = parse_notification_config(alerts_doc, source, lines)
    for channel in config.channels:
        if channel.name == name:
            if not isinstance(channel, EmailChannelConfig):
                raise ScheduleConfigError(f"{source}: channel {name!r} is not of type email")
            return channel
    raise ScheduleConfigError(f"{source}: no notification channel named {name!r}")


@dataclass
class Delivery:
    schedule_id: str
    start: datetime
    end: datetime
    attempts: int


def file_name(schedule: ReportSchedule, start: datetime, end: datetime) -> str:
    last_day = (end - timedelta(seconds=1)).astimezone(VIETNAM)
    first = start.astimezone(VIETNAM)
    return f"{schedule.id}_{first:%Y%m%d}-{last_day:%Y%m%d}.{schedule.format}"


def build_email(
    schedule: ReportSchedule,
    sender: str,
    start: datetime,
    end: datetime,
    data: bytes,
    name: str,
    seal_text: str,
    readings: int,
    file_digest: str,
    now: datetime,
) -> EmailMessage:
    lang = schedule.lang
    last_day = (end - timedelta(seconds=1)).astimezone(VIETNAM)
    period = f"{start.astimezone(VIETNAM):%d/%m/%Y} – {last_day:%d/%m/%Y}"
    message = EmailMessage()
    message["Subject"] = translate(
        "schedule.email.subject", lang, target=schedule.target, period=period
    )
    message["From"] = sender
    message["To"] = ", ".join(schedule.recipients)
    message["Date"] = format_datetime(now.astimezone(UTC))
    domain = parseaddr(sender)[1].rpartition("@")[2] or "quantrac.invalid"
    message["Message-ID"] = f"<quantrac-report-{schedule.id}-{start:%Y%m%dT%H%M}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Quantrac-Schedule"] = schedule.id
    body = translate(
        "schedule.email.body",
        lang,
        target=schedule.target,
        period=period,
        file=name,
        sha256=file_digest,
        readings=readings,
    )
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    maintype, _, rest = MEDIA_TYPES[schedule.format].partition("/")
    subtype = rest.split(";")[0]
    message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    message.add_attachment(
        seal_text.encode(), maintype="application", subtype="json", filename=name + ".seal.json"
    )
    return message


class ReportSender:
    """Enqueue due periods and send pending deliveries; ``tick(now)`` does one round."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection,
        config: ScheduleConfig,
        registry: Callable[[], Registry],
        regulations: RegulationCatalog,
        channel_spec: EmailChannelConfig | None,
        environ: Mapping[str, str] | None = None,
        engine_config: EngineConfig | None = None,
        holdoff: timedelta = timedelta(0),
    ) -> None:
        self.conn = conn
        self.holdoff = holdoff  # the calibration hold-off the reports list (a project choice)
        self.engine_config = engine_config  # the design choices the reports list
        self.config = config
        self.registry = registry
        self.regulations = regulations
        self.channel_spec = channel_spec
        self.environ = os.environ if environ is None else environ
        self.schedules = {s.id: s for s in config.schedules}

    def channel(self, schedule: ReportSchedule) -> EmailChannel:
        assert self.channel_spec is not None
        return build_email_channel(self.channel_spec, self.environ, schedule.recipients)

    async def enqueue_due(self, now: datetime) -> int:
        added = 0
        for schedule in self.config.schedules:
            start, end = latest_due_period(schedule, now)
            cur = await self.conn.execute(
                "INSERT INTO report_deliveries (schedule_id, period_start, period_end, state,"
                " recipients, next_attempt_at) VALUES (%s, %s, %s, 'pending', %s, %s)"
                " ON CONFLICT DO NOTHING",
                [schedule.id, start, end, list(schedule.recipients), now],
            )
            added += cur.rowcount
        await self.conn.commit()
        return added

    async def tick(self, now: datetime) -> list[tuple[str, datetime, str]]:
        """Enqueue what is due, then try every pending delivery whose time has come.
        Returns (schedule, period start, outcome) for each attempt."""
        await self.enqueue_due(now)
        outcomes: list[tuple[str, datetime, str]] = []
        while True:
            outcome = await self._send_next(now)
            if outcome is None:
                return outcomes
            outcomes.append(outcome)

    async def _send_next(self, now: datetime) -> tuple[str, datetime, str] | None:
        conn = self.conn
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur = await conn.execute(
            "SELECT schedule_id, period_start, period_end, attempts FROM report_deliveries"
            " WHERE state = 'pending' AND next_attempt_at <= %s AND schedule_id = ANY(%s)"
            " ORDER BY period_start, schedule_id LIMIT 1 FOR UPDATE SKIP LOCKED",
            [now, list(self.schedules)],
        )
        row = await cur.fetchone()
        if row is None:
            await conn.rollback()
            return None
        delivery = Delivery(*row)
        schedule = self.schedules[delivery.schedule_id]
        try:
            name, digest = await self._build_and_send(schedule, delivery, now)
        except DeliveryError as exc:
            await conn.rollback()
            return await self._record_failure(delivery, exc, now)
        await conn.execute(
            "UPDATE report_deliveries SET state = 'sent', attempts = attempts + 1, sent_at = %s,"
            " file_name = %s, file_sha256 = %s, message_id = %s, last_error = NULL"
            " WHERE schedule_id = %s AND period_start = %s",
            [now, name, digest[0], digest[1], delivery.schedule_id, delivery.start],
        )
        await conn.commit()
        log.info(
            "scheduled report sent",
            extra={"event": "report_sent", "schedule": schedule.id, "file": name},
        )
        return (schedule.id, delivery.start, "sent")

    async def _build_and_send(
        self, schedule: ReportSchedule, delivery: Delivery, now: datetime
    ) -> tuple[str, tuple[str, str]]:
        registry = self.registry()
        try:
            stations = stations_for(registry, schedule.station, schedule.facility)
        except ReportError as exc:
            raise DeliveryError(str(exc), retryable=False) from None
        ids = [s.id for s in stations]
        report = await exceedance_report(
            self.conn,
            registry,
            self.regulations,
            ids,
            delivery.start,
            delivery.end,
            now=now,
            facility=schedule.facility,
            engine_config=self.engine_config,
            holdoff=self.holdoff,
            exported_by=f"quantrac (lịch gửi {schedule.id})",
        )
        digest = await readings_digest(self.conn, ids, delivery.start, delivery.end)
        report.readings_sha256, report.readings_count = digest.sha256, digest.count
        try:
            data = await asyncio.to_thread(exceedance_file, report, schedule.format, schedule.lang)
        except Exception as exc:  # a missing PDF font: configuration, said in the record
            raise DeliveryError(f"report not built: {exc}", retryable=False) from exc
        name = file_name(schedule, delivery.start, delivery.end)
        seal = seal_for(
            data,
            name,
            kind="report exceedances",
            request={
                "format": schedule.format,
                "lang": schedule.lang,
                "section": "episodes",
                "facility": schedule.facility,
                "schedule": schedule.id,
            },
            stations=ids,
            start=delivery.start,
            end=delivery.end,
            readings=digest,
            now=now,
            actor=f"schedule:{schedule.id}",
        )
        await record_seal(self.conn, seal)
        channel = self.channel(schedule)
        message = build_email(
            schedule,
            channel.sender,
            delivery.start,
            delivery.end,
            data,
            name,
            seal_json(seal),
            digest.count,
            seal.file_sha256,
            now,
        )
        try:
            await channel.send_once(message)
        except DeliveryError:
            raise
        except Exception as exc:
            raise classify_smtp_error(exc) from exc
        return name, (seal.file_sha256, str(message["Message-ID"]))

    async def _record_failure(
        self, delivery: Delivery, exc: DeliveryError, now: datetime
    ) -> tuple[str, datetime, str]:
        attempts = delivery.attempts + 1
        final = not exc.retryable or attempts >= self.config.max_attempts
        # At least a second: the failed delivery is not tried again within this tick.
        delay = max(1.0, retry_delay(attempts, self.config.retry_s, self.config.max_retry_s))
        await self.conn.execute(
            "UPDATE report_deliveries SET attempts = %s, last_error = %s, state = %s,"
            " next_attempt_at = %s WHERE schedule_id = %s AND period_start = %s",
            [
                attempts,
                str(exc)[:2000],
                "failed" if final else "pending",
                now + timedelta(seconds=delay),
                delivery.schedule_id,
                delivery.start,
            ],
        )
        await self.conn.commit()
        log.warning(
            "scheduled report not sent",
            extra={
                "event": "report_failed" if final else "report_retry",
                "schedule": delivery.schedule_id,
                "attempts": attempts,
                "error": str(exc),
            },
        )
        return (delivery.schedule_id, delivery.start, "failed" if final else "retry")


async def list_deliveries(conn: psycopg.AsyncConnection, limit: int = 100) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT schedule_id, period_start, period_end, state, attempts, last_error, sent_at,"
        " file_name, file_sha256, next_attempt_at FROM report_deliveries"
        " ORDER BY period_start DESC, schedule_id LIMIT %s",
        [limit],
    )
    keys = (
        "schedule",
        "from",
        "to",
        "state",
        "attempts",
        "last_error",
        "sent_at",
        "file",
        "file_sha256",
        "next_attempt_at",
    )
    return [dict(zip(keys, row, strict=True)) for row in await cur.fetchall()]


async def run_sender(
    sender: ReportSender, stop: asyncio.Event, clock: Callable[[], datetime]
) -> None:
    while not stop.is_set():
        try:
            await sender.tick(clock())
        except psycopg.Error as exc:
            log.error("report sender: %s", exc, extra={"event": "report_sender_error"})
            with contextlib.suppress(psycopg.Error):
                await sender.conn.rollback()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), sender.config.poll_s)
