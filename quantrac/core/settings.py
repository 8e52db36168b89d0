"""Settings: defaults, then ``quantrac.toml``, then ``QUANTRAC_*`` environment variables.

Every value is checked at start-up; an invalid one stops the program with a message naming the
setting and where it came from.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from quantrac.core.time import parse_utc_offset

ENV_PREFIX = "QUANTRAC_"
CONFIG_FILE_ENV = "QUANTRAC_CONFIG_FILE"


class SettingsError(ValueError):
    pass


def default_config_dir() -> Path:
    """The repository's config/ when running from a checkout, else the copy in the wheel."""
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent / "config"
    if checkout.is_dir():
        return checkout
    return package / "default_config"


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_mqtt_url(url: str) -> MqttEndpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError("scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError("no host")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ValueError("invalid port") from None
    return MqttEndpoint(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _positive_int(value: Any) -> int:
    number = _int(value)
    if number <= 0:
        raise ValueError("must be a positive integer")
    return number


def _non_negative_int(value: Any) -> int:
    number = _int(value)
    if number < 0:
        raise ValueError("must be zero or a positive integer")
    return number


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError("must be an integer") from None


def _port(value: Any) -> int:
    number = _non_negative_int(value)
    if number > 65535:
        raise ValueError("must be a TCP port, 0 to 65535")
    return number


def _non_negative_float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a number") from None
    if not number >= 0:
        raise ValueError("must be zero or a positive number")
    return number


def _positive_float(value: Any) -> float:
    number = _non_negative_float(value)
    if number == 0:
        raise ValueError("must be a positive number")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _text(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _optional_text(value: Any) -> str | None:
    text = str(value).strip()
    return text or None


def _path(value: Any) -> Path:
    return Path(_text(value)).expanduser()


def _optional_path(value: Any) -> Path | None:
    text = str(value).strip()
    return Path(text).expanduser() if text else None


def _mqtt_url(value: Any) -> str:
    text = _text(value)
    parse_mqtt_url(text)
    return text


def _database_url(value: Any) -> str | None:
    text = str(value).strip()
    if text and not text.startswith(("postgresql://", "postgres://", "host=", "dbname=")):
        raise ValueError("must be a postgresql:// URL or a libpq key=value string")
    return text or None


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = str(value).strip()
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return text

    return check


def _receive_maximum(value: Any) -> int:
    number = _positive_int(value)
    if number > 65535:
        raise ValueError("must be at most 65535 (MQTT limit)")
    return number


def _workers(value: Any) -> int | None:
    """A number of worker processes, or ``auto`` (None)."""
    if value is None or str(value).strip().lower() in ("", "auto"):
        return None
    try:
        return _non_negative_int(value)
    except ValueError:
        raise ValueError("must be auto or a number of processes (0 or more)") from None


def _utc_offset(value: Any) -> str:
    text = _text(value)
    parse_utc_offset(text)
    return text


def Parse(check: Callable[[Any], Any]) -> BeforeValidator:
    """The setting's check, run on the raw value (TOML value or environment text)."""
    return BeforeValidator(check)


class Settings(BaseSettings):
    """Every setting, with its default and its check; build it with :func:`load_settings`.

    ``Settings()`` is the defaults alone; :func:`load_settings` adds ``quantrac.toml``, the
    ``QUANTRAC_*`` environment variables and the command line, in that order of precedence.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=False
    )

    database_url: Annotated[str | None, Parse(_database_url)] = None
    mqtt_url: Annotated[str, Parse(_mqtt_url)] = "mqtt://127.0.0.1:1883"
    mqtt_username: Annotated[str | None, Parse(_optional_text)] = None
    mqtt_password: Annotated[str | None, Parse(_optional_text)] = None
    mqtt_client_id: Annotated[str, Parse(_text)] = "quantrac-ingest-1"
    mqtt_ca_file: Annotated[Path | None, Parse(_optional_path)] = None
    mqtt_protocol: Annotated[str, Parse(_choice("5", "3.1.1"))] = "5"
    mqtt_session_expiry_s: Annotated[int, Parse(_positive_int)] = 7 * 86400
    mqtt_receive_maximum: Annotated[int, Parse(_receive_maximum)] = 20000
    mqtt_share_group: Annotated[str, Parse(_text)] = "quantrac-ingest"
    mqtt_keepalive_s: Annotated[int, Parse(_positive_int)] = 30
    positive_ack: Annotated[bool, Parse(_bool)] = False
    config_dir: Annotated[Path, Parse(_path)] = Field(default_factory=default_config_dir)
    stations_file: Annotated[Path | None, Parse(_optional_path)] = None
    catalog_file: Annotated[Path | None, Parse(_optional_path)] = None
    registry_reload_s: Annotated[int, Parse(_non_negative_int)] = 10
    batch_size: Annotated[int, Parse(_positive_int)] = 5000
    batch_max_latency_ms: Annotated[int, Parse(_positive_int)] = 200
    max_pending_readings: Annotated[int, Parse(_positive_int)] = 200_000
    retention_days: Annotated[int, Parse(_positive_int)] = 730
    future_margin_s: Annotated[int, Parse(_non_negative_int)] = 300
    max_payload_bytes: Annotated[int, Parse(_positive_int)] = 256 * 1024
    rate_limit_per_s: Annotated[float, Parse(_non_negative_float)] = 20.0
    rate_limit_burst: Annotated[float, Parse(_non_negative_float)] = 2000.0
    tt10_utc_offset: Annotated[str, Parse(_utc_offset)] = "+07:00"
    files_dir: Annotated[Path | None, Parse(_optional_path)] = None
    files_poll_s: Annotated[float, Parse(_non_negative_float)] = 5.0
    http_host: Annotated[str, Parse(_text)] = "127.0.0.1"
    http_port: Annotated[int, Parse(_port)] = 8080
    # HTTPS beside plain HTTP (same API and board), with a certificate and its key.
    https_host: Annotated[str, Parse(_text)] = "127.0.0.1"
    https_port: Annotated[int, Parse(_port)] = 0
    https_cert_file: Annotated[Path | None, Parse(_optional_path)] = None
    https_key_file: Annotated[Path | None, Parse(_optional_path)] = None
    storage_backend: Annotated[str, Parse(_choice("auto", "postgresql", "timescaledb"))] = "auto"
    compression_after_days: Annotated[int, Parse(_positive_int)] = 7
    chunk_interval_days: Annotated[int, Parse(_positive_int)] = 1
    partitions_ahead_months: Annotated[int, Parse(_positive_int)] = 3
    rollup_interval_s: Annotated[float, Parse(_non_negative_float)] = 30.0
    # The alert engine runs beside ingest as its own shared-subscription group.
    alerts_enabled: Annotated[bool, Parse(_bool)] = True
    alerts_share_group: Annotated[str, Parse(_text)] = "quantrac-alerts"
    alerts_file: Annotated[Path | None, Parse(_optional_path)] = None
    regulations_dir: Annotated[Path | None, Parse(_optional_path)] = None
    alerts_tick_s: Annotated[float, Parse(_positive_float)] = 5.0
    # Backfill (docs/maintenance.md): an alert resting on readings measured this long before
    # they arrived is historical, recorded and never sent or escalated (0 = off). A choice.
    alerts_historical_after_s: Annotated[float, Parse(_non_negative_float)] = 86400.0
    # Calibration hold-off (docs/maintenance.md): minutes after a calibration window during
    # which readings do not count for exceedances / compliance, flagged `holdoff` (0 = off).
    # A project choice, not law.
    alerts_holdoff_minutes: Annotated[float, Parse(_non_negative_float)] = 0.0
    # Written by `quantrac stations credentials`: broker accounts (hashes) and ACLs.
    broker_auth_dir: Annotated[Path | None, Parse(_optional_path)] = None
    # Alert workers split the stations into this many partitions, leased in PostgreSQL.
    alerts_partitions: Annotated[int, Parse(_positive_int)] = 16
    alerts_lease_s: Annotated[float, Parse(_positive_float)] = 15.0
    # /healthz says degraded when the engine is this far behind storage.
    alerts_max_lag_s: Annotated[float, Parse(_positive_float)] = 300.0
    # `quantrac run`: the alert engine in this many child processes (`quantrac alerts`, by
    # cursor), 0 = in the ingest process; auto (None) = 1 on a machine with 2 cores or more.
    alerts_workers: Annotated[int | None, Parse(_workers)] = None
    log_level: Annotated[str, Parse(_choice("DEBUG", "INFO", "WARNING", "ERROR"))] = "INFO"
    log_format: Annotated[str, Parse(_choice("json", "text"))] = "json"

    # Derived values, computed once.
    @property
    def mqtt(self) -> MqttEndpoint:
        endpoint = parse_mqtt_url(self.mqtt_url)
        return dataclasses.replace(
            endpoint,
            username=self.mqtt_username or endpoint.username,
            password=self.mqtt_password or endpoint.password,
        )

    @property
    def stations_path(self) -> Path:
        return self.stations_file or self.config_dir / "stations.yaml"

    @property
    def catalog_path(self) -> Path:
        return self.catalog_file or self.config_dir / "parameters.yaml"

    @property
    def alerts_path(self) -> Path:
        return self.alerts_file or self.config_dir / "alerts.yaml"

    @property
    def regulations_path(self) -> Path:
        return self.regulations_dir or self.config_dir / "regulations"

    @property
    def broker_auth_path(self) -> Path:
        return self.broker_auth_dir or self.config_dir / "mosquitto" / "auth"

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)

    @property
    def tt10_timezone(self) -> tzinfo:
        return parse_utc_offset(self.tt10_utc_offset)

    @property
    def safe_database_url(self) -> str:
        """The database URL with any password masked, for logs."""
        return mask_password(self.database_url or "")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return _settings_sources(settings_cls, init_settings)


class _Environment(EnvSettingsSource):
    """The ``QUANTRAC_*`` variables of the mapping load_settings was given, exact names only."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._given = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        names = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
        return {k.lower(): v for k, v in self._given.items() if k in names}


# (environment, TOML document) while load_settings builds a Settings; unset, Settings() is
# the defaults and whatever it is given.
_SOURCES: ContextVar[tuple[Mapping[str, str], dict[str, Any]] | None] = ContextVar(
    "quantrac_settings_sources", default=None
)


def _settings_sources(
    settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource
) -> tuple[PydanticBaseSettingsSource, ...]:
    given = _SOURCES.get()
    if given is None:
        return (init_settings,)
    environ, toml_doc = given
    return (
        init_settings,
        _Environment(settings_cls, environ),
        InitSettingsSource(settings_cls, init_kwargs=toml_doc),
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the configuration file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML ({exc})") from None
    for key in doc:
        if key not in Settings.model_fields:
            raise SettingsError(f"{path}: unknown setting {key!r}")
    return doc


# Settings that may hold a password: their value is shown with it masked, or not at all.
_SECRET_SETTINGS = frozenset({"database_url", "mqtt_url", "mqtt_password"})


def _shown(name: str, value: Any) -> str:
    if name == "mqtt_password":
        return "'***'"
    if name in _SECRET_SETTINGS:
        return repr(mask_password(str(value)))
    return repr(value)


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: Path | None = None, **overrides: Any
) -> Settings:
    """Build settings; raise SettingsError naming each invalid setting and its source."""
    environ = os.environ if environ is None else environ
    path = config_file or (Path(environ[CONFIG_FILE_ENV]) if CONFIG_FILE_ENV in environ else None)
    if path is None and Path("quantrac.toml").is_file():
        path = Path("quantrac.toml")
    toml_doc = _read_toml(path) if path is not None else {}
    given = {name: value for name, value in overrides.items() if value is not None}

    def source(name: str) -> tuple[str, Any]:
        env_name = ENV_PREFIX + name.upper()
        if name in given:
            return f"--{name.replace('_', '-')}", given[name]
        if env_name in environ:
            return env_name, environ[env_name]
        return f"{path}: {name}", toml_doc.get(name)

    token = _SOURCES.set((environ, toml_doc))
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            name = str(err["loc"][0]) if err["loc"] else "?"
            cause = (err.get("ctx") or {}).get("error")
            reason = str(cause) if cause is not None else err["msg"]
            where, value = source(name)
            problems.append(f"{where}: {reason} (got {_shown(name, value)})")
        raise SettingsError("\n".join(problems)) from None
    finally:
        _SOURCES.reset(token)
    sources = {name: source(name)[0] for name in {*given, *toml_doc}}
    sources.update(
        {
            name: ENV_PREFIX + name.upper()
            for name in Settings.model_fields
            if ENV_PREFIX + name.upper() in environ and name not in given
        }
    )
    _check_together(settings, sources)
    return settings


def mask_password(url: str) -> str:
    """A database or broker URL with any password masked, for logs and error messages."""
    if "://" not in url:
        return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", url)
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        return url.replace(f":{password}@", ":***@", 1)
    return url


# Placeholders that documentation and examples use; a service started with one is open to anyone
# who read the same page.
_PLACEHOLDER_PASSWORDS = re.compile(r"change-?me|changeit|^password$|^secret$|^public$", re.I)


def _check_together(settings: Settings, sources: dict[str, str]) -> None:
    if settings.https_port and not (settings.https_cert_file and settings.https_key_file):
        raise SettingsError(
            f"{sources.get('https_port', 'https_port')}: HTTPS needs https_cert_file and "
            "https_key_file"
        )
    passwords = {
        "database_url": urlsplit(settings.database_url).password
        if settings.database_url and "://" in settings.database_url
        else None,
        "mqtt_url": parse_mqtt_url(settings.mqtt_url).password,
        "mqtt_password": settings.mqtt_password,
    }
    for name, password in passwords.items():
        if password and _PLACEHOLDER_PASSWORDS.search(password):
            raise SettingsError(
                f"{sources.get(name, name)}: a placeholder password; set a real one "
                "(docs/deploy.md, Credentials)"
            )


def settings_environment(settings: Settings) -> dict[str, str]:
    """Every setting as the ``QUANTRAC_*`` variable that gives it back to :func:`load_settings`
    (a child process started with these runs with exactly this configuration)."""
    out = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        out[ENV_PREFIX + name.upper()] = text
    return out
