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
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

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


def _utc_offset(value: Any) -> str:
    text = _text(value)
    parse_utc_offset(text)
    return text


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = field(default=None, metadata={"parse": _database_url})
    mqtt_url: str = field(default="mqtt://127.0.0.1:1883", metadata={"parse": _mqtt_url})
    mqtt_username: str | None = field(default=None, metadata={"parse": _optional_text})
    mqtt_password: str | None = field(default=None, metadata={"parse": _optional_text})
    mqtt_client_id: str = field(default="quantrac-ingest-1", metadata={"parse": _text})
    mqtt_ca_file: Path | None = field(default=None, metadata={"parse": _optional_path})
    mqtt_protocol: str = field(default="5", metadata={"parse": _choice("5", "3.1.1")})
    mqtt_session_expiry_s: int = field(default=7 * 86400, metadata={"parse": _positive_int})
    mqtt_receive_maximum: int = field(default=20000, metadata={"parse": _receive_maximum})
    mqtt_share_group: str = field(default="quantrac-ingest", metadata={"parse": _text})
    mqtt_keepalive_s: int = field(default=30, metadata={"parse": _positive_int})
    positive_ack: bool = field(default=False, metadata={"parse": _bool})
    config_dir: Path = field(default_factory=default_config_dir, metadata={"parse": _path})
    stations_file: Path | None = field(default=None, metadata={"parse": _optional_path})
    catalog_file: Path | None = field(default=None, metadata={"parse": _optional_path})
    registry_reload_s: int = field(default=10, metadata={"parse": _non_negative_int})
    batch_size: int = field(default=5000, metadata={"parse": _positive_int})
    batch_max_latency_ms: int = field(default=200, metadata={"parse": _positive_int})
    max_pending_readings: int = field(default=200_000, metadata={"parse": _positive_int})
    retention_days: int = field(default=730, metadata={"parse": _positive_int})
    future_margin_s: int = field(default=300, metadata={"parse": _non_negative_int})
    max_payload_bytes: int = field(default=256 * 1024, metadata={"parse": _positive_int})
    rate_limit_per_s: float = field(default=20.0, metadata={"parse": _non_negative_float})
    rate_limit_burst: float = field(default=2000.0, metadata={"parse": _non_negative_float})
    tt10_utc_offset: str = field(default="+07:00", metadata={"parse": _utc_offset})
    files_dir: Path | None = field(default=None, metadata={"parse": _optional_path})
    files_poll_s: float = field(default=5.0, metadata={"parse": _non_negative_float})
    http_host: str = field(default="127.0.0.1", metadata={"parse": _text})
    http_port: int = field(default=8080, metadata={"parse": _port})
    # HTTPS beside plain HTTP (same API and board), with a certificate and its key.
    https_host: str = field(default="127.0.0.1", metadata={"parse": _text})
    https_port: int = field(default=0, metadata={"parse": _port})
    https_cert_file: Path | None = field(default=None, metadata={"parse": _optional_path})
    https_key_file: Path | None = field(default=None, metadata={"parse": _optional_path})
    storage_backend: str = field(
        default="auto", metadata={"parse": _choice("auto", "postgresql", "timescaledb")}
    )
    compression_after_days: int = field(default=7, metadata={"parse": _positive_int})
    chunk_interval_days: int = field(default=1, metadata={"parse": _positive_int})
    partitions_ahead_months: int = field(default=3, metadata={"parse": _positive_int})
    rollup_interval_s: float = field(default=30.0, metadata={"parse": _non_negative_float})
    # The alert engine runs beside ingest as its own shared-subscription group.
    alerts_enabled: bool = field(default=True, metadata={"parse": _bool})
    alerts_share_group: str = field(default="quantrac-alerts", metadata={"parse": _text})
    alerts_file: Path | None = field(default=None, metadata={"parse": _optional_path})
    regulations_dir: Path | None = field(default=None, metadata={"parse": _optional_path})
    alerts_tick_s: float = field(default=5.0, metadata={"parse": _positive_float})
    # Backfill (docs/maintenance.md): an alert resting on readings measured this long before
    # they arrived is historical, recorded and never sent or escalated (0 = off). A choice.
    alerts_historical_after_s: float = field(
        default=86400.0, metadata={"parse": _non_negative_float}
    )
    # Calibration hold-off (docs/maintenance.md): minutes after a calibration window during
    # which readings do not count for exceedances / compliance, flagged `holdoff` (0 = off).
    # A project choice, not law.
    alerts_holdoff_minutes: float = field(default=0.0, metadata={"parse": _non_negative_float})
    # Written by `quantrac stations credentials`: broker accounts (hashes) and ACLs.
    broker_auth_dir: Path | None = field(default=None, metadata={"parse": _optional_path})
    # Alert workers split the stations into this many partitions, leased in PostgreSQL.
    alerts_partitions: int = field(default=16, metadata={"parse": _positive_int})
    alerts_lease_s: float = field(default=15.0, metadata={"parse": _positive_float})
    # /healthz says degraded when the engine is this far behind storage.
    alerts_max_lag_s: float = field(default=300.0, metadata={"parse": _positive_float})
    log_level: str = field(
        default="INFO", metadata={"parse": _choice("DEBUG", "INFO", "WARNING", "ERROR")}
    )
    log_format: str = field(default="json", metadata={"parse": _choice("json", "text")})

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
        url = self.database_url or ""
        if "://" not in url:
            return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", url)
        parts = urlsplit(url)
        if parts.password:
            return url.replace(f":{parts.password}@", ":***@", 1)
        return url


def _fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(Settings)}


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: Path | None = None, **overrides: Any
) -> Settings:
    """Build settings; raise SettingsError naming the first invalid setting and its source."""
    environ = os.environ if environ is None else environ
    fields = _fields()
    raw: dict[str, tuple[Any, str]] = {}

    path = config_file or (Path(environ[CONFIG_FILE_ENV]) if CONFIG_FILE_ENV in environ else None)
    if path is None and Path("quantrac.toml").is_file():
        path = Path("quantrac.toml")
    if path is not None:
        try:
            with path.open("rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise SettingsError(f"{path}: cannot read the configuration file ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path}: invalid TOML ({exc})") from None
        for key, value in doc.items():
            if key not in fields:
                raise SettingsError(f"{path}: unknown setting {key!r}")
            raw[key] = (value, f"{path}: {key}")

    for name in fields:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            raw[name] = (environ[env_name], env_name)

    for name, value in overrides.items():
        if value is not None:
            raw[name] = (value, f"--{name.replace('_', '-')}")

    values: dict[str, Any] = {}
    for name, (value, source) in raw.items():
        parse = fields[name].metadata["parse"]
        try:
            values[name] = parse(value)
        except ValueError as exc:
            raise SettingsError(f"{source}: {exc} (got {value!r})") from None
    settings = Settings(**values)
    _check_together(settings, {name: source for name, (_, source) in raw.items()})
    return settings


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
                f"{sources.get(name, name)}: a placeholder password ({password!r}); set a real "
                "one (docs/deploy.md, Credentials)"
            )
