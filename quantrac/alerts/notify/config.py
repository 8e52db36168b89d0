"""The ``notifications:`` section of config/alerts.yaml: parsing (pure) and building the notifier.

Secrets are better kept out of the file: ``url``, ``secret``, ``username`` and ``password`` may
contain ``${ENV_VAR}`` references, resolved from the environment when the notifier is built.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from quantrac.alerts.model import EventType, Kind, Severity
from quantrac.alerts.notify.base import Channel
from quantrac.alerts.notify.escalation import EscalationRule
from quantrac.alerts.notify.mail import DEFAULT_PORTS, EmailChannel, Security
from quantrac.alerts.notify.mqtt import MqttChannel
from quantrac.alerts.notify.notifier import Route
from quantrac.alerts.notify.webhook import WebhookChannel
from quantrac.core.i18n import LANGUAGES
from quantrac.core.settings import MqttEndpoint

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$|^[^<>]*<[^@\s<>]+@[^@\s<>]+>$")

E = TypeVar("E", Kind, Severity, EventType)


class NotificationConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class MqttChannelConfig:
    name: str
    ack_timeout_s: float = 30.0
    max_attempts: int = 5
    backoff_s: float = 1.0


@dataclass(frozen=True, slots=True)
class WebhookChannelConfig:
    name: str
    url: str  # may hold ${ENV_VAR} references
    secret: str = field(repr=False)  # may hold ${ENV_VAR} references
    timeout_s: float = 10.0
    max_attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0


@dataclass(frozen=True, slots=True)
class EmailChannelConfig:
    name: str
    host: str
    port: int
    security: Security
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    lang: str = "vi"
    timeout_s: float = 30.0
    max_attempts: int = 5
    backoff_s: float = 5.0


ChannelConfig = MqttChannelConfig | WebhookChannelConfig | EmailChannelConfig


@dataclass(frozen=True, slots=True)
class NotificationConfig:
    channels: tuple[ChannelConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    escalations: tuple[EscalationRule, ...] = ()


class _Fields:
    """Reads one mapping of the section, naming the field in every error."""

    def __init__(self, data: Any, where: str, source: str, allowed: set[str]) -> None:
        if not isinstance(data, Mapping):
            raise NotificationConfigError(f"{source}: {where}: expected a mapping")
        unknown = set(map(str, data)) - allowed
        if unknown:
            raise NotificationConfigError(
                f"{source}: {where}: unknown field(s) {', '.join(sorted(unknown))}"
                f" (allowed: {', '.join(sorted(allowed))})"
            )
        self.data = data
        self.where = where
        self.source = source

    def error(self, key: str, message: str) -> NotificationConfigError:
        return NotificationConfigError(f"{self.source}: {self.where}.{key}: {message}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise self.error(key, "required")
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "must be a non-empty string")
        return value.strip()

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if self.has(key) else None

    def number(self, key: str, default: float, *, positive: bool = True) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {value!r}")
        if value < 0 or (positive and value == 0):
            raise self.error(key, "must be greater than 0" if positive else "must not be negative")
        return float(value)

    def integer(self, key: str, default: int, *, low: int = 1, high: int = 65535) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, not {value!r}")
        if not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}")
        return value

    def strings(self, key: str, *, required: bool = False) -> list[str]:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(key, "required")
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(
            isinstance(item, str) and item.strip() for item in value
        ):
            raise self.error(key, "must be a list of non-empty strings")
        if required and not value:
            raise self.error(key, "must name at least one")
        return [item.strip() for item in value]

    def enums(self, key: str, enum_type: type[E]) -> frozenset[E]:
        members: set[E] = set()
        for item in self.strings(key):
            try:
                members.add(enum_type(item.lower()))
            except ValueError:
                choices = ", ".join(member.value for member in enum_type)
                raise self.error(key, f"unknown value {item!r} (one of: {choices})") from None
        return frozenset(members)

    def channel_names(self, key: str, known: Mapping[str, ChannelConfig]) -> tuple[str, ...]:
        names = self.strings(key, required=True)
        for name in names:
            if name not in known:
                listed = ", ".join(known) or "none defined"
                raise self.error(key, f"no channel named {name!r} (channels: {listed})")
        return tuple(dict.fromkeys(names))


_COMMON = {"name", "type"}
_RETRY = {"max_attempts", "backoff_s"}


def _mqtt(f: _Fields, name: str) -> MqttChannelConfig:
    return MqttChannelConfig(
        name=name,
        ack_timeout_s=f.number("ack_timeout_s", 30.0),
        max_attempts=f.integer("max_attempts", 5, high=100),
        backoff_s=f.number("backoff_s", 1.0, positive=False),
    )


def _webhook(f: _Fields, name: str) -> WebhookChannelConfig:
    url = f.text("url")
    if "${" not in url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise f.error("url", f"must be an http:// or https:// URL, not {url!r}")
    return WebhookChannelConfig(
        name=name,
        url=url,
        secret=f.text("secret"),
        timeout_s=f.number("timeout_s", 10.0),
        max_attempts=f.integer("max_attempts", 5, high=100),
        backoff_s=f.number("backoff_s", 1.0, positive=False),
        max_backoff_s=f.number("max_backoff_s", 60.0, positive=False),
    )


def _email(f: _Fields, name: str) -> EmailChannelConfig:
    raw_security = f.text("security", Security.STARTTLS.value).lower()
    try:
        security = Security(raw_security)
    except ValueError:
        raise f.error("security", "must be one of: none, starttls, tls") from None
    port = f.integer("port", 0, low=0) if f.has("port") else 0
    if f.has("port") and port == 0:
        raise f.error("port", "must be between 1 and 65535")
    sender = f.text("sender")
    if not _ADDRESS.match(sender):
        raise f.error("sender", f"not an e-mail address: {sender!r}")
    recipients = f.strings("recipients", required=True)
    for address in recipients:
        if not _ADDRESS.match(address):
            raise f.error("recipients", f"not an e-mail address: {address!r}")
    username = f.optional_text("username")
    password = f.optional_text("password")
    if password and not username:
        raise f.error("password", "given without a username")
    lang = f.text("lang", "vi")
    if lang not in LANGUAGES:
        raise f.error("lang", f"must be one of: {', '.join(LANGUAGES)}")
    return EmailChannelConfig(
        name=name,
        host=f.text("host"),
        port=port or DEFAULT_PORTS[security],
        security=security,
        sender=sender,
        recipients=tuple(recipients),
        username=username,
        password=password,
        lang=lang,
        timeout_s=f.number("timeout_s", 30.0),
        max_attempts=f.integer("max_attempts", 5, high=100),
        backoff_s=f.number("backoff_s", 5.0, positive=False),
    )


_CHANNEL_TYPES: dict[str, tuple[set[str], Callable[[_Fields, str], ChannelConfig]]] = {
    "mqtt": ({"ack_timeout_s", *_RETRY}, _mqtt),
    "webhook": ({"url", "secret", "timeout_s", "max_backoff_s", *_RETRY}, _webhook),
    "email": (
        {
            "host",
            "port",
            "security",
            "username",
            "password",
            "sender",
            "recipients",
            "lang",
            "timeout_s",
            *_RETRY,
        },
        _email,
    ),
}


def _list(data: Mapping[str, Any], key: str, source: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise NotificationConfigError(f"{source}: notifications.{key}: expected a list")
    return value


def _channel(item: Any, where: str, source: str) -> ChannelConfig:
    if not isinstance(item, Mapping):
        raise NotificationConfigError(f"{source}: {where}: expected a mapping")
    kind = item.get("type")
    if kind not in _CHANNEL_TYPES:
        raise NotificationConfigError(
            f"{source}: {where}.type: must be one of: {', '.join(_CHANNEL_TYPES)} (got {kind!r})"
        )
    allowed, parse = _CHANNEL_TYPES[kind]
    f = _Fields(item, where, source, _COMMON | allowed)
    name = f.text("name")
    if not _NAME.match(name):
        raise f.error("name", "letters, digits, '-', '_' and '.' only")
    return parse(f, name)


def _escalation_id(after_minutes: float, channels: tuple[str, ...]) -> str:
    return f"after-{after_minutes:g}m-{'+'.join(channels)}"


def parse_notification_config(data: Any, source: str) -> NotificationConfig:
    """Check the value of the ``notifications:`` key (None: no notifications).

    Raises NotificationConfigError naming the file and the field.
    """
    if data is None:
        return NotificationConfig()
    _Fields(data, "notifications", source, {"channels", "routes", "escalations", "queue_size"})
    channels: dict[str, ChannelConfig] = {}
    for index, item in enumerate(_list(data, "channels", source)):
        channel = _channel(item, f"notifications.channels[{index}]", source)
        if channel.name in channels:
            raise NotificationConfigError(
                f"{source}: notifications.channels[{index}].name: {channel.name!r} is already used"
            )
        channels[channel.name] = channel

    routes = []
    for index, item in enumerate(_list(data, "routes", source)):
        f = _Fields(
            item,
            f"notifications.routes[{index}]",
            source,
            {"channels", "kinds", "severities", "events", "stations"},
        )
        routes.append(
            Route(
                channels=f.channel_names("channels", channels),
                kinds=f.enums("kinds", Kind),
                severities=f.enums("severities", Severity),
                events=f.enums("events", EventType),
                stations=frozenset(f.strings("stations")),
            )
        )

    escalations: list[EscalationRule] = []
    for index, item in enumerate(_list(data, "escalations", source)):
        where = f"notifications.escalations[{index}]"
        f = _Fields(
            item,
            where,
            source,
            {"name", "after_minutes", "channels", "severities", "kinds", "stations"},
        )
        if not f.has("after_minutes"):
            raise f.error("after_minutes", "required")
        after = f.number("after_minutes", 0)
        targets = f.channel_names("channels", channels)
        rule_id = f.text("name") if f.has("name") else _escalation_id(after, targets)
        if any(rule.rule_id == rule_id for rule in escalations):
            raise f.error(
                "name",
                f"escalation {rule_id!r} is defined twice; give one of them a distinct name",
            )
        escalations.append(
            EscalationRule(
                rule_id=rule_id,
                after_minutes=after,
                channels=targets,
                severities=f.enums("severities", Severity),
                kinds=f.enums("kinds", Kind),
                stations=frozenset(f.strings("stations")),
            )
        )

    if "queue_size" in data:
        # The in-memory queues it sized are gone (the outbox delivers from alert_events); an
        # older file still loads, and says once what to do.
        log.warning(
            "%s: notifications.queue_size is deprecated and ignored: events wait in the "
            "alert_events table until delivered; remove the key",
            source,
            extra={"event": "notification_config_deprecated", "field": "queue_size"},
        )
    return NotificationConfig(tuple(channels.values()), tuple(routes), tuple(escalations))


def resolve_env(value: str, field_name: str, environ: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` references; a variable that is not set is an error naming it."""

    def substitute(match: re.Match[str]) -> str:
        variable = match.group(1)
        if variable not in environ:
            raise NotificationConfigError(
                f"{field_name}: environment variable {variable} is not set"
            )
        return environ[variable]

    return _ENV_REF.sub(substitute, value)


def build_channels(
    config: NotificationConfig,
    mqtt_endpoint: MqttEndpoint | None,
    *,
    environ: Mapping[str, str] | None = None,
    mqtt_client_id: str | None = None,
    mqtt_ca_file: Path | None = None,
    mqtt_protocol: str = "5",
) -> list[Channel]:
    """The channels of ``config`` (credentials resolved), for the delivery outbox.

    ``mqtt_endpoint`` is the service's broker (``settings.mqtt``); None only if no channel is
    of type mqtt.
    """
    env = os.environ if environ is None else environ
    channels: list[Channel] = []
    for spec in config.channels:
        where = f"notifications channel {spec.name!r}"
        if isinstance(spec, MqttChannelConfig):
            if mqtt_endpoint is None:
                raise NotificationConfigError(f"{where}: type mqtt needs the service's broker")
            channels.append(
                MqttChannel(
                    mqtt_endpoint,
                    name=spec.name,
                    client_id=mqtt_client_id,
                    ca_file=mqtt_ca_file,
                    protocol=mqtt_protocol,
                    ack_timeout_s=spec.ack_timeout_s,
                    max_attempts=spec.max_attempts,
                    backoff_s=spec.backoff_s,
                )
            )
        elif isinstance(spec, WebhookChannelConfig):
            url = resolve_env(spec.url, f"{where}: url", env)
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise NotificationConfigError(f"{where}: url: must be an http(s) URL")
            secret = resolve_env(spec.secret, f"{where}: secret", env)
            if not secret:
                raise NotificationConfigError(f"{where}: secret: is empty")
            channels.append(
                WebhookChannel(
                    spec.name,
                    url,
                    secret,
                    timeout_s=spec.timeout_s,
                    max_attempts=spec.max_attempts,
                    backoff_s=spec.backoff_s,
                    max_backoff_s=spec.max_backoff_s,
                )
            )
        else:
            channels.append(build_email_channel(spec, env))
    return channels


def build_email_channel(
    spec: EmailChannelConfig,
    environ: Mapping[str, str],
    recipients: tuple[str, ...] | None = None,
) -> EmailChannel:
    """The channel of ``spec`` (credentials resolved), optionally to other recipients (the
    scheduled reports use an alert channel's server for their own recipients)."""
    where = f"notifications channel {spec.name!r}"
    username = spec.username and resolve_env(spec.username, f"{where}: username", environ)
    password = spec.password and resolve_env(spec.password, f"{where}: password", environ)
    return EmailChannel(
        spec.name,
        spec.host,
        spec.port,
        security=spec.security,
        username=username or None,
        password=password or None,
        sender=spec.sender,
        recipients=recipients or spec.recipients,
        lang=spec.lang,
        timeout_s=spec.timeout_s,
        max_attempts=spec.max_attempts,
        backoff_s=spec.backoff_s,
    )
