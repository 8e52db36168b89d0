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
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from quantrac.alerts.model import EventType, Kind, Severity
from quantrac.alerts.notify.base import Channel
from quantrac.alerts.notify.escalation import EscalationRule
from quantrac.alerts.notify.mail import DEFAULT_PORTS, EmailChannel, Security
from quantrac.alerts.notify.mqtt import MqttChannel
from quantrac.alerts.notify.notifier import Route
from quantrac.alerts.notify.webhook import WebhookChannel
from quantrac.core.config_files import ConfigError, ConfigModel, FieldError, validate
from quantrac.core.i18n import LANGUAGES
from quantrac.core.settings import MqttEndpoint

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$|^[^<>]*<[^@\s<>]+@[^@\s<>]+>$")

E = TypeVar("E", Kind, Severity, EventType)


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


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


def _number(positive: bool) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, not {value!r}")
        if value < 0 or (positive and value == 0):
            raise ValueError("must be greater than 0" if positive else "must not be negative")
        return float(value)

    return check


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, not {value!r}")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return check


def _strings(required: bool) -> Callable[[Any], tuple[str, ...]]:
    def check(value: Any) -> tuple[str, ...]:
        if value is None:
            if required:
                raise ValueError("required")
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(
            isinstance(item, str) and item.strip() for item in value
        ):
            raise ValueError("must be a list of non-empty strings")
        if required and not value:
            raise ValueError("must name at least one")
        return tuple(item.strip() for item in value)

    return check


def _enums(enum_type: type[E]) -> Callable[[Any], frozenset[E]]:
    def check(value: Any) -> frozenset[E]:
        members: set[E] = set()
        for item in _strings(False)(value):
            try:
                members.add(enum_type(item.lower()))
            except ValueError:
                choices = ", ".join(member.value for member in enum_type)
                raise ValueError(f"unknown value {item!r} (one of: {choices})") from None
        return frozenset(members)

    return check


def _name(value: Any) -> str:
    name = _text(value)
    if not _NAME.match(name):
        raise ValueError("letters, digits, '-', '_' and '.' only")
    return name


def _address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"not an e-mail address: {value!r}")
    return value


def _addresses(value: tuple[str, ...]) -> tuple[str, ...]:
    for address in value:
        _address(address)
    return value


def _security(value: Any) -> Security:
    try:
        return Security(_text(value).lower())
    except ValueError:
        raise ValueError("must be one of: none, starttls, tls") from None


def _lang(value: Any) -> str:
    lang = _text(value)
    if lang not in LANGUAGES:
        raise ValueError(f"must be one of: {', '.join(LANGUAGES)}")
    return lang


def _url(value: Any) -> str:
    url = _text(value)
    if "${" not in url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL, not {url!r}")
    return url


Text = Annotated[str, BeforeValidator(_text)]
Positive = Annotated[float, BeforeValidator(_number(True))]
NonNegative = Annotated[float, BeforeValidator(_number(False))]
Attempts = Annotated[int, BeforeValidator(_integer(1, 100))]
Strings = Annotated[tuple[str, ...], BeforeValidator(_strings(False))]
ChannelNames = Annotated[tuple[str, ...], BeforeValidator(_strings(True))]


class _Channel(ConfigModel):
    name: Annotated[str, BeforeValidator(_name)]
    max_attempts: Attempts = 5


class _Mqtt(_Channel):
    type: Literal["mqtt"]
    ack_timeout_s: Positive = 30.0
    backoff_s: NonNegative = 1.0


class _Webhook(_Channel):
    type: Literal["webhook"]
    url: Annotated[str, BeforeValidator(_url)]
    secret: Text = Field(repr=False)
    timeout_s: Positive = 10.0
    backoff_s: NonNegative = 1.0
    max_backoff_s: NonNegative = 60.0


class _Email(_Channel):
    type: Literal["email"]
    host: Text
    port: Annotated[int, BeforeValidator(_integer(1, 65535))] | None = None
    security: Annotated[Security, BeforeValidator(_security)] = Security.STARTTLS
    username: Text | None = None
    password: Text | None = Field(default=None, repr=False)
    sender: Annotated[str, BeforeValidator(_text), AfterValidator(_address)]
    recipients: Annotated[
        tuple[str, ...], BeforeValidator(_strings(True)), AfterValidator(_addresses)
    ]
    lang: Annotated[str, BeforeValidator(_lang)] = "vi"
    timeout_s: Positive = 30.0
    backoff_s: NonNegative = 5.0


_CHANNEL_TYPES = {"mqtt": _Mqtt, "webhook": _Webhook, "email": _Email}


def _mapping(value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping")
    return value


def _channel_type(value: Any) -> Any:
    if _mapping(value).get("type") not in _CHANNEL_TYPES:
        raise FieldError(
            "type",
            f"must be one of: {', '.join(_CHANNEL_TYPES)} (got {value.get('type')!r})",
        )
    return value


_AnyChannel = Annotated[
    Annotated[_Mqtt | _Webhook | _Email, Field(discriminator="type")],
    BeforeValidator(_channel_type),
]


class _Route(ConfigModel):
    channels: ChannelNames
    kinds: Annotated[frozenset[Kind], BeforeValidator(_enums(Kind))] = frozenset()
    severities: Annotated[frozenset[Severity], BeforeValidator(_enums(Severity))] = frozenset()
    events: Annotated[frozenset[EventType], BeforeValidator(_enums(EventType))] = frozenset()
    stations: Strings = ()


class _Escalation(ConfigModel):
    name: Text | None = None
    after_minutes: Positive
    channels: ChannelNames
    severities: Annotated[frozenset[Severity], BeforeValidator(_enums(Severity))] = frozenset()
    kinds: Annotated[frozenset[Kind], BeforeValidator(_enums(Kind))] = frozenset()
    stations: Strings = ()


def _list(value: Any) -> Any:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError("expected a list")
    return tuple(value)


class _Notifications(ConfigModel):
    channels: Annotated[tuple[_AnyChannel, ...], BeforeValidator(_list)] = ()
    routes: Annotated[
        tuple[Annotated[_Route, BeforeValidator(_mapping)], ...], BeforeValidator(_list)
    ] = ()
    escalations: Annotated[
        tuple[Annotated[_Escalation, BeforeValidator(_mapping)], ...], BeforeValidator(_list)
    ] = ()
    queue_size: Any = None  # deprecated, ignored (see parse_notification_config)

    @model_validator(mode="after")
    def _references(self) -> _Notifications:
        names: set[str] = set()
        for index, channel in enumerate(self.channels):
            if channel.name in names:
                raise FieldError(f"channels[{index}].name", f"{channel.name!r} is already used")
            names.add(channel.name)
            if isinstance(channel, _Email) and channel.password and not channel.username:
                raise FieldError(f"channels[{index}].password", "given without a username")
        listed = ", ".join(c.name for c in self.channels) or "none defined"
        sections: tuple[tuple[str, tuple[_Route | _Escalation, ...]], ...] = (
            ("routes", self.routes),
            ("escalations", self.escalations),
        )
        for section, items in sections:
            for index, item in enumerate(items):
                for name in item.channels:
                    if name not in names:
                        raise FieldError(
                            f"{section}[{index}].channels",
                            f"no channel named {name!r} (channels: {listed})",
                        )
        ids: set[str] = set()
        for index, rule in enumerate(self.escalations):
            rule_id = rule.name or _escalation_id(rule.after_minutes, _unique(rule.channels))
            if rule_id in ids:
                raise FieldError(
                    f"escalations[{index}].name",
                    f"escalation {rule_id!r} is defined twice; give one of them a distinct name",
                )
            ids.add(rule_id)
        return self


def _unique(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def _escalation_id(after_minutes: float, channels: tuple[str, ...]) -> str:
    return f"after-{after_minutes:g}m-{'+'.join(channels)}"


def _channel_config(c: _Mqtt | _Webhook | _Email) -> ChannelConfig:
    if isinstance(c, _Mqtt):
        return MqttChannelConfig(c.name, c.ack_timeout_s, c.max_attempts, c.backoff_s)
    if isinstance(c, _Webhook):
        return WebhookChannelConfig(
            c.name, c.url, c.secret, c.timeout_s, c.max_attempts, c.backoff_s, c.max_backoff_s
        )
    return EmailChannelConfig(
        name=c.name,
        host=c.host,
        port=c.port or DEFAULT_PORTS[c.security],
        security=c.security,
        sender=c.sender,
        recipients=c.recipients,
        username=c.username,
        password=c.password,
        lang=c.lang,
        timeout_s=c.timeout_s,
        max_attempts=c.max_attempts,
        backoff_s=c.backoff_s,
    )


def parse_notification_config(
    data: Any, source: str, lines: Mapping[str, int] | None = None
) -> NotificationConfig:
    """Check the value of the ``notifications:`` key (None: no notifications).

    Raises ConfigError, each issue as ``file:line: notifications.field: reason`` (``lines``:
    the line of each field of the whole file, from read_yaml_file).
    """
    if data is None:
        return NotificationConfig()
    if not isinstance(data, Mapping):
        raise ConfigError.at(source, lines or {}, "notifications", "expected a mapping")
    doc = validate(_Notifications, data, source, lines, prefix="notifications")
    if doc.queue_size is not None or "queue_size" in data:
        # The in-memory queues it sized are gone (the outbox delivers from alert_events); an
        # older file still loads, and says once what to do.
        log.warning(
            "%s: notifications.queue_size is deprecated and ignored: events wait in the "
            "alert_events table until delivered; remove the key",
            source,
            extra={"event": "notification_config_deprecated", "field": "queue_size"},
        )
    routes = tuple(
        Route(_unique(r.channels), r.kinds, r.severities, r.events, frozenset(r.stations))
        for r in doc.routes
    )
    escalations = tuple(
        EscalationRule(
            rule_id=e.name or _escalation_id(e.after_minutes, _unique(e.channels)),
            after_minutes=e.after_minutes,
            channels=_unique(e.channels),
            severities=e.severities,
            kinds=e.kinds,
            stations=frozenset(e.stations),
        )
        for e in doc.escalations
    )
    return NotificationConfig(tuple(_channel_config(c) for c in doc.channels), routes, escalations)


def resolve_env(value: str, field_name: str, environ: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` references; a variable that is not set is an error naming it."""

    def substitute(match: re.Match[str]) -> str:
        variable = match.group(1)
        if variable not in environ:
            raise ConfigError(f"{field_name}: environment variable {variable} is not set")
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
                raise ConfigError(f"{where}: type mqtt needs the service's broker")
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
                raise ConfigError(f"{where}: url: must be an http(s) URL")
            secret = resolve_env(spec.secret, f"{where}: secret", env)
            if not secret:
                raise ConfigError(f"{where}: secret: is empty")
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
