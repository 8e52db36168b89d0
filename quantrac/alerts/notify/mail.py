"""E-mail channel: a plain-text message per alert event, over SMTP.

The text comes from the translation table (``alert.*`` keys in config/messages/alerts.yaml).
stdlib smtplib is blocking, so each delivery runs in a worker thread; one SMTP session per
event keeps it simple and correct for the low rate of alert mail.

Messages of one alert form a thread in mail clients: the ``opened`` event's Message-ID is
derived from the alert id and later events refer to it.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import random
import re
import smtplib
import ssl
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from quantrac.alerts.model import AlertEvent, EventType
from quantrac.alerts.notify.base import (
    DeliveryError,
    RetryHook,
    RetryPolicy,
    Sleep,
    deliver_with_retries,
)
from quantrac.core.i18n import (
    default_messages,
    format_number,
    format_time,
    limit_digits,
    translate,
    zone_text,
)
from quantrac.core.time import VIETNAM

log = logging.getLogger(__name__)


class Security(enum.StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"  # implicit TLS, usually port 465


DEFAULT_PORTS = {Security.NONE: 25, Security.STARTTLS: 587, Security.TLS: 465}


# A time the engine put in the details as text (ISO 8601 with its offset).
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})")


# Details measured in the alert's unit: written with the limit's decimals (limit_digits).
_IN_UNIT = frozenset({"value", "limit", "limit_min", "excess", "maximum", "minimum"})


def _format_value(value: Any, tz: tzinfo, lang: str = "en", digits: int | None = None) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool) and digits is not None:
        return format_number(value, lang, digits, fixed=True)
    if isinstance(value, str) and _ISO_TIME.fullmatch(value):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return format_time(value, tz)  # 01/03/2025 14:00, the zone said once in the mail
    if isinstance(value, float):
        return format_number(value, lang, 4)  # 2,5 in Vietnamese, 2.5 in English
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_format_value(item, tz, lang) for item in value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def _detail_label(key: str, lang: str) -> str:
    table_key = f"alert.detail.{key}"
    # Details are open-ended: a key without a translation is shown as it is.
    return translate(table_key, lang) if table_key in default_messages() else key


def target_text(event: AlertEvent) -> str:
    """What the alert is about, e.g. ``BG_WW_SONGKHE COD`` (station alone if station-wide)."""
    return f"{event.station_id} {event.param}" if event.param else event.station_id


def email_subject(event: AlertEvent, lang: str) -> str:
    params = {
        "severity": event.severity.value.upper(),
        "kind": translate(f"alert.kind.{event.kind.value}", lang),
        "target": target_text(event),
    }
    if event.event is EventType.OPENED:
        return translate("alert.email.subject", lang, **params)
    event_text = translate(f"alert.event.{event.event.value}", lang)
    return translate("alert.email.subject_event", lang, event=event_text, **params)


def email_body(event: AlertEvent, lang: str, tz: tzinfo = VIETNAM) -> str:
    def t(key: str, **params: Any) -> str:
        return translate(key, lang, **params)

    param = event.param or t("alert.station_wide")
    lines = [
        t(
            "alert.email.heading",
            kind=t(f"alert.kind.{event.kind.value}"),
            severity=t(f"alert.severity.{event.severity.value}"),
        ),
        "",
        f"{t('alert.email.station')}: {event.station_name} ({event.station_id})",
        f"{t('alert.email.param')}: {param}",
        f"{t('alert.email.event')}: {t(f'alert.event.{event.event.value}')}",
        f"{t('alert.email.state')}: {t(f'alert.state.{event.state.value}')}",
        f"{t('alert.email.at')}: {format_time(event.at, tz)}",
        f"{t('alert.email.opened_at')}: {format_time(event.opened_at, tz)}",
        f"{t('alert.email.times')}: {zone_text(tz, lang)}",
    ]
    if event.actor:
        lines.append(f"{t('alert.email.actor')}: {event.actor}")
    if event.note:
        lines.append(f"{t('alert.email.note')}: {event.note}")
    if event.details:
        digits = limit_digits(
            *(
                bound
                for bound in (event.details.get("limit"), event.details.get("limit_min"))
                if isinstance(bound, float | int)
            )
        )
        lines += ["", f"{t('alert.email.details')}:"]
        lines += [
            f"  {_detail_label(key, lang)}: "
            f"{_format_value(value, tz, lang, digits if key in _IN_UNIT else None)}"
            for key, value in event.details.items()
        ]
    lines += [
        "",
        t("alert.email.reference", alert_id=event.alert_id, event_id=event.event_id),
        "-- ",  # the usual signature separator: mail clients fold what follows
        t("alert.email.footer"),
    ]
    return "\n".join(lines) + "\n"


def _domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "quantrac.invalid"


def build_message(
    event: AlertEvent,
    sender: str,
    recipients: Sequence[str],
    lang: str,
    tz: tzinfo = VIETNAM,
) -> EmailMessage:
    message = EmailMessage()  # policy "default": RFC 2047-encodes the Vietnamese subject
    message["Subject"] = email_subject(event, lang)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(event.at.astimezone(UTC))
    domain = _domain(sender)
    thread_id = f"<quantrac-alert-{event.alert_id}@{domain}>"
    if event.event is EventType.OPENED:
        message["Message-ID"] = thread_id
    else:
        message["Message-ID"] = f"<quantrac-alert-{event.alert_id}-{event.event_id}@{domain}>"
        message["In-Reply-To"] = thread_id
        message["References"] = thread_id
    # RFC 3834: keeps out-of-office responders from answering the duty mailbox.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Quantrac-Event"] = event.event.value
    message["X-Quantrac-Delivery"] = str(event.event_id)
    # Quoted-printable keeps the message 7-bit clean for any relay, diacritics included.
    message.set_content(email_body(event, lang, tz), charset="utf-8", cte="quoted-printable")
    return message


def classify_smtp_error(exc: BaseException) -> DeliveryError:
    """4xx replies, dropped connections and network errors are retried; 5xx replies are not."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        transient = bool(codes) and all(400 <= code < 500 for code in codes)
        return DeliveryError(f"recipients refused: {exc.recipients}", retryable=transient)
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        return DeliveryError(
            f"SMTP {exc.smtp_code} {text}".strip(), retryable=400 <= exc.smtp_code < 500
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return DeliveryError(f"server disconnected: {exc}", retryable=True)
    if isinstance(exc, smtplib.SMTPException | ssl.SSLCertVerificationError):
        # Missing STARTTLS or AUTH support, a bad certificate: configuration, not weather.
        return DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False)
    if isinstance(exc, OSError):  # refused, reset, timed out, DNS
        return DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True)
    return DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False)


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    if (username + password).isascii():
        smtp.login(username, password)
        return
    # smtplib encodes credentials as ASCII; RFC 4616 PLAIN carries UTF-8, which a password
    # with Vietnamese diacritics needs.
    smtp.ehlo_or_helo_if_needed()
    if "plain" not in smtp.esmtp_features.get("auth", "").lower().split():
        raise smtplib.SMTPException("non-ASCII credentials need AUTH PLAIN, not offered")
    token = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
    code, reply = smtp.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


class EmailChannel:
    def __init__(
        self,
        name: str,
        host: str,
        port: int | None = None,
        *,
        security: Security | str = Security.STARTTLS,
        username: str | None = None,
        password: str | None = None,
        sender: str,
        recipients: Sequence[str],
        lang: str = "vi",
        timeout_s: float = 30.0,
        max_attempts: int = 5,
        backoff_s: float = 5.0,
        max_backoff_s: float = 300.0,
        tz: tzinfo = VIETNAM,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not recipients:
            raise ValueError("an e-mail channel needs at least one recipient")
        self.name = name
        self.host = host
        self.security = Security(security)
        self.port = port or DEFAULT_PORTS[self.security]
        self.username = username
        self.sender = sender
        self.recipients = tuple(recipients)
        self.lang = lang
        self.timeout_s = timeout_s
        self.tz = tz
        self.policy = RetryPolicy(
            max_attempts=max_attempts, backoff_s=backoff_s, max_backoff_s=max_backoff_s
        )
        self.on_retry: RetryHook | None = None
        self._password = password
        self._ssl_context = ssl_context
        self._sleep = sleep
        self._rand = rand

    def __repr__(self) -> str:  # never show the password
        return f"EmailChannel({self.name!r}, {self.host}:{self.port}, {self.security.value})"

    async def start(self) -> None:
        pass  # a session per message: nothing to keep open

    async def close(self) -> None:
        pass

    async def send(self, event: AlertEvent) -> None:
        message = build_message(event, self.sender, self.recipients, self.lang, self.tz)
        await deliver_with_retries(
            lambda: self._attempt(message),
            self.policy,
            sleep=self._sleep,
            rand=self._rand,
            on_retry=self.on_retry,
        )

    async def send_once(self, message: EmailMessage) -> None:
        """One attempt to deliver a ready message, for callers that keep their own durable
        retries (scheduled reports). Raises DeliveryError."""
        await self._attempt(message)

    async def _attempt(self, message: EmailMessage) -> None:
        try:
            refused = await asyncio.to_thread(self._send_blocking, message)
        except Exception as exc:
            raise classify_smtp_error(exc) from exc
        if refused:
            # Some recipients have it; sending again would duplicate it for them.
            log.warning(
                "e-mail notification refused for some recipients",
                extra={
                    "event": "notification_partly_refused",
                    "channel": self.name,
                    "refused": sorted(refused),
                },
            )

    def _send_blocking(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        context = self._ssl_context or ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security is Security.TLS:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with smtp:
            if self.security is Security.STARTTLS:
                smtp.starttls(context=context)
            if self.username:
                _login(smtp, self.username, self._password or "")
            return smtp.send_message(
                message,
                from_addr=parseaddr(self.sender)[1],
                to_addrs=[parseaddr(address)[1] for address in self.recipients],
            )
