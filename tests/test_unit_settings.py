"""Unit tests of quantrac.core.settings: defaults, TOML, environment, validation messages."""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path

import pytest

from quantrac.core.settings import (
    MqttEndpoint,
    Settings,
    SettingsError,
    default_config_dir,
    load_settings,
    parse_mqtt_url,
    settings_environment,
)


@pytest.fixture(autouse=True)
def _no_local_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_settings reads ./quantrac.toml when present: run from an empty directory.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "quantrac-test.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    s = load_settings({})
    assert s == Settings()
    assert s.database_url is None
    assert s.mqtt_url == "mqtt://127.0.0.1:1883"
    assert s.mqtt == MqttEndpoint("127.0.0.1", 1883, False, None, None)
    assert s.batch_size == 5000
    assert s.mqtt_receive_maximum == 20000
    assert s.rate_limit_per_s == 20.0
    assert s.rate_limit_burst == 2000.0
    assert s.retention == timedelta(days=730)
    assert s.future_margin_s == 300
    assert s.max_payload_bytes == 256 * 1024
    assert s.tt10_timezone == timezone(timedelta(hours=7))
    assert s.positive_ack is False
    assert s.config_dir == default_config_dir()
    assert s.stations_path == default_config_dir() / "stations.yaml"
    assert s.catalog_path == default_config_dir() / "parameters.yaml"
    assert s.safe_database_url == ""


def test_toml_overrides_defaults_and_env_overrides_toml(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        'batch_size = 100\nlog_level = "DEBUG"\npositive_ack = true\n'
        'stations_file = "/srv/st.yaml"\nrate_limit_per_s = 2.5\n',
    )
    s = load_settings({}, config_file=path)
    assert (s.batch_size, s.log_level, s.positive_ack, s.rate_limit_per_s) == (
        100,
        "DEBUG",
        True,
        2.5,
    )
    assert s.stations_path == Path("/srv/st.yaml")
    env = {"QUANTRAC_BATCH_SIZE": " 7 ", "QUANTRAC_POSITIVE_ACK": "off"}
    s = load_settings(env, config_file=path)
    assert (s.batch_size, s.log_level, s.positive_ack) == (7, "DEBUG", False)
    # Keyword overrides (the command line) beat the environment.
    s = load_settings(env, config_file=path, batch_size=3, log_level=None)
    assert (s.batch_size, s.log_level) == (3, "DEBUG")


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = toml(tmp_path, "batch_size = 11\n")
    assert load_settings({"QUANTRAC_CONFIG_FILE": str(path)}).batch_size == 11


def test_quantrac_toml_in_working_directory_is_read() -> None:
    Path("quantrac.toml").write_text("batch_size = 12\n", encoding="utf-8")
    assert load_settings({}).batch_size == 12


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("QUANTRAC_BATCH_SIZE", "0", "must be a positive integer"),
        ("QUANTRAC_BATCH_SIZE", "ten", "must be an integer"),
        ("QUANTRAC_BATCH_SIZE", "1.5", "must be an integer"),
        ("QUANTRAC_REGISTRY_RELOAD_S", "-1", "must be zero or a positive integer"),
        ("QUANTRAC_RATE_LIMIT_PER_S", "-0.1", "must be zero or a positive number"),
        ("QUANTRAC_RATE_LIMIT_PER_S", "nan", "must be zero or a positive number"),
        ("QUANTRAC_RATE_LIMIT_BURST", "lots", "must be a number"),
        ("QUANTRAC_POSITIVE_ACK", "maybe", "must be true or false"),
        ("QUANTRAC_LOG_LEVEL", "debug", "must be one of DEBUG, INFO, WARNING, ERROR"),
        ("QUANTRAC_MQTT_PROTOCOL", "4", "must be one of 5, 3.1.1"),
        ("QUANTRAC_MQTT_CLIENT_ID", "   ", "must not be empty"),
        ("QUANTRAC_MQTT_RECEIVE_MAXIMUM", "65536", "must be at most 65535 (MQTT limit)"),
        ("QUANTRAC_MQTT_URL", "http://broker", "scheme must be mqtt:// or mqtts://"),
        ("QUANTRAC_MQTT_URL", "mqtt://", "no host"),
        ("QUANTRAC_MQTT_URL", "mqtt://h:99999", "invalid port"),
        ("QUANTRAC_DATABASE_URL", "mysql://x", "must be a postgresql:// URL"),
        ("QUANTRAC_TT10_UTC_OFFSET", "+7", "UTC offset must look like +07:00"),
        ("QUANTRAC_STORAGE_BACKEND", "sqlite", "must be one of auto, postgresql, timescaledb"),
    ],
)
def test_invalid_env_value_names_the_variable(env: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({env: value})
    message = str(info.value)
    assert message.startswith(f"{env}: ")
    assert fragment in message
    assert message.endswith(f"(got {value!r})")


def test_batch_size_message_exactly() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"QUANTRAC_BATCH_SIZE": "-3"})
    assert str(info.value) == "QUANTRAC_BATCH_SIZE: must be a positive integer (got '-3')"


@pytest.mark.parametrize(
    ("line", "key", "fragment"),
    [
        ("batch_size = 0", "batch_size", "must be a positive integer"),
        ("batch_size = true", "batch_size", "must be an integer"),
        ("batch_size = 2.0", "batch_size", "must be an integer"),
        ('positive_ack = "perhaps"', "positive_ack", "must be true or false"),
        ("mqtt_receive_maximum = 70000", "mqtt_receive_maximum", "at most 65535"),
        ('mqtt_url = "ftp://x"', "mqtt_url", "scheme must be mqtt:// or mqtts://"),
    ],
)
def test_invalid_toml_value_names_file_and_key(
    tmp_path: Path, line: str, key: str, fragment: str
) -> None:
    path = toml(tmp_path, line + "\n")
    with pytest.raises(SettingsError) as info:
        load_settings({}, config_file=path)
    assert str(info.value).startswith(f"{path}: {key}: ")
    assert fragment in str(info.value)


def test_env_value_is_checked_even_when_toml_is_valid(tmp_path: Path) -> None:
    path = toml(tmp_path, "batch_size = 5\n")
    with pytest.raises(SettingsError, match=r"^QUANTRAC_BATCH_SIZE: "):
        load_settings({"QUANTRAC_BATCH_SIZE": "x"}, config_file=path)


def test_override_error_names_option() -> None:
    with pytest.raises(SettingsError, match=r"^--batch-size: must be a positive integer"):
        load_settings({}, batch_size=0)


def test_unknown_toml_key(tmp_path: Path) -> None:
    path = toml(tmp_path, "batch_sise = 5\n")
    with pytest.raises(SettingsError) as info:
        load_settings({}, config_file=path)
    assert str(info.value) == f"{path}: unknown setting 'batch_sise'"


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    path = toml(tmp_path, "batch_size = \n")
    with pytest.raises(SettingsError, match="invalid TOML"):
        load_settings({}, config_file=path)
    missing = tmp_path / "missing.toml"
    with pytest.raises(SettingsError, match="cannot read the configuration file"):
        load_settings({}, config_file=missing)


def test_unknown_environment_variables_are_ignored() -> None:
    assert load_settings({"QUANTRAC_NOT_A_SETTING": "x", "BATCH_SIZE": "1"}) == Settings()


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("mqtt://broker", MqttEndpoint("broker", 1883, False, None, None)),
        ("tcp://broker:1884", MqttEndpoint("broker", 1884, False, None, None)),
        ("mqtts://broker", MqttEndpoint("broker", 8883, True, None, None)),
        ("ssl://broker:9999", MqttEndpoint("broker", 9999, True, None, None)),
        ("mqtt://user:pa%40ss@broker:1883", MqttEndpoint("broker", 1883, False, "user", "pa@ss")),
        ("mqtts://only-user@broker", MqttEndpoint("broker", 8883, True, "only-user", None)),
        ("mqtt://[::1]:1883", MqttEndpoint("::1", 1883, False, None, None)),
    ],
)
def test_parse_mqtt_url(url: str, endpoint: MqttEndpoint) -> None:
    assert parse_mqtt_url(url) == endpoint


@pytest.mark.parametrize("url", ["http://b", "broker:1883", "mqtt:///x", "mqtt://b:port"])
def test_parse_mqtt_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        parse_mqtt_url(url)


def test_mqtt_username_password_settings_override_url() -> None:
    s = load_settings(
        {
            "QUANTRAC_MQTT_URL": "mqtts://u:p@broker",
            "QUANTRAC_MQTT_USERNAME": "other",
        }
    )
    assert s.mqtt == MqttEndpoint("broker", 8883, True, "other", "p")
    s = load_settings({"QUANTRAC_MQTT_URL": "mqtt://broker", "QUANTRAC_MQTT_PASSWORD": "pw"})
    assert s.mqtt == MqttEndpoint("broker", 1883, False, None, "pw")


def test_receive_maximum_boundary() -> None:
    assert load_settings({"QUANTRAC_MQTT_RECEIVE_MAXIMUM": "65535"}).mqtt_receive_maximum == 65535
    with pytest.raises(SettingsError, match="QUANTRAC_MQTT_RECEIVE_MAXIMUM"):
        load_settings({"QUANTRAC_MQTT_RECEIVE_MAXIMUM": "0"})


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("postgresql://quantrac:s3cret@db:5432/q", "postgresql://quantrac:***@db:5432/q"),
        ("postgres://:pw@db/q", "postgres://:***@db/q"),
        ("postgresql://quantrac@db/q", "postgresql://quantrac@db/q"),
        ("postgresql://db/q", "postgresql://db/q"),
    ],
)
def test_safe_database_url_masks_password(url: str, safe: str) -> None:
    s = load_settings({"QUANTRAC_DATABASE_URL": url})
    assert s.database_url == url
    assert s.safe_database_url == safe


def test_safe_database_url_masks_libpq_password() -> None:
    s = load_settings({"QUANTRAC_DATABASE_URL": "host=db user=q password=s3cret"})
    assert "s3cret" not in s.safe_database_url


def test_http_port_above_65535_rejected() -> None:
    with pytest.raises(SettingsError, match="QUANTRAC_HTTP_PORT"):
        load_settings({"QUANTRAC_HTTP_PORT": "70000"})


def test_empty_optional_values() -> None:
    s = load_settings(
        {
            "QUANTRAC_DATABASE_URL": "  ",
            "QUANTRAC_MQTT_USERNAME": "",
            "QUANTRAC_FILES_DIR": "",
        }
    )
    assert (s.database_url, s.mqtt_username, s.files_dir) == (None, None, None)


def test_paths_and_floats_from_env(tmp_path: Path) -> None:
    s = load_settings(
        {
            "QUANTRAC_CONFIG_DIR": str(tmp_path),
            "QUANTRAC_FILES_POLL_S": "0",
            "QUANTRAC_RATE_LIMIT_PER_S": "0",
            "QUANTRAC_TT10_UTC_OFFSET": "+08:00",
        }
    )
    assert s.config_dir == tmp_path
    assert s.stations_path == tmp_path / "stations.yaml"
    assert (s.files_poll_s, s.rate_limit_per_s) == (0.0, 0.0)
    assert s.tt10_timezone == timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    ("env", "value", "source"),
    [
        ("QUANTRAC_DATABASE_URL", "postgresql://quantrac:change-me@db/quantrac", "DATABASE_URL"),
        ("QUANTRAC_MQTT_URL", "mqtt://ingest:changeme@broker:1883", "MQTT_URL"),
        ("QUANTRAC_MQTT_PASSWORD", "Change-Me-Too", "MQTT_PASSWORD"),
    ],
)
def test_placeholder_passwords_stop_start_up(env: str, value: str, source: str) -> None:
    with pytest.raises(SettingsError, match=f"QUANTRAC_{source}: a placeholder password"):
        load_settings({env: value})
    assert load_settings({env: value.replace("hange", "x-hange-not")}).mqtt


def test_https_needs_its_certificate_and_key() -> None:
    with pytest.raises(SettingsError, match="HTTPS needs https_cert_file"):
        load_settings({"QUANTRAC_HTTPS_PORT": "8443"})
    settings = load_settings(
        {
            "QUANTRAC_HTTPS_PORT": "8443",
            "QUANTRAC_HTTPS_CERT_FILE": "/tls/server.pem",
            "QUANTRAC_HTTPS_KEY_FILE": "/tls/server.key",
        }
    )
    assert settings.https_port == 8443 and settings.https_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("QUANTRAC_DATABASE_URL", "mysql://q:topsecret@db/q"),
        ("QUANTRAC_MQTT_URL", "http://q:topsecret@broker"),
        ("QUANTRAC_MQTT_URL", "mqtt://q:topsecret@broker:99999"),
        ("QUANTRAC_MQTT_URL", "mqtt://q:changeme-topsecret@broker"),
    ],
)
def test_errors_never_echo_a_password(env: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({env: value})
    assert str(info.value).startswith(f"{env}: ")
    assert "topsecret" not in str(info.value)


def test_every_invalid_setting_is_named_at_once(tmp_path: Path) -> None:
    path = toml(tmp_path, "http_port = 70000\n")
    with pytest.raises(SettingsError) as info:
        load_settings({"QUANTRAC_BATCH_SIZE": "0"}, config_file=path)
    assert str(info.value).splitlines() == [
        "QUANTRAC_BATCH_SIZE: must be a positive integer (got '0')",
        f"{path}: http_port: must be a TCP port, 0 to 65535 (got 70000)",
    ]


def test_settings_alone_are_the_defaults_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUANTRAC_BATCH_SIZE", "9")
    monkeypatch.setenv("quantrac_log_level", "DEBUG")
    assert Settings().batch_size == 5000
    settings = load_settings()
    assert settings.batch_size == 9
    assert settings.log_level == "INFO"  # variable names are exact: upper case
    assert settings.model_copy(update={"batch_size": 3}).batch_size == 3


@pytest.mark.parametrize(("text", "expected"), [("auto", None), ("", None), ("0", 0), ("3", 3)])
def test_alert_workers_are_auto_or_a_count(text: str, expected: int | None) -> None:
    assert load_settings({"QUANTRAC_ALERTS_WORKERS": text}).alerts_workers == expected


def test_alert_workers_must_be_a_count() -> None:
    with pytest.raises(SettingsError, match="QUANTRAC_ALERTS_WORKERS: must be auto or a number"):
        load_settings({"QUANTRAC_ALERTS_WORKERS": "-1"})


def test_settings_as_environment_give_the_same_settings(tmp_path: Path) -> None:
    """What `quantrac run` hands its alert workers: every setting, read back unchanged."""
    settings = load_settings(
        {"QUANTRAC_LOG_LEVEL": "DEBUG"},
        config_file=toml(tmp_path, 'mqtt_client_id = "site-a"\nalerts_partitions = 4\n'),
        database_url="postgresql://q:s3cr3t-value@db/quantrac",
        alerts_enabled=False,
        files_dir=tmp_path,
    )
    environment = settings_environment(settings)
    assert set(environment) == {"QUANTRAC_" + n.upper() for n in Settings.model_fields}
    assert load_settings(environment) == settings
