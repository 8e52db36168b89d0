"""docker-compose.yml and the files it mounts, checked without Docker.

The structure of the compose file (images, mounts, ports, dependencies, profiles), quantrac's
own settings in each container (read by the real settings loader), the scale-out workers and
their MQTT identities, Prometheus' scrape targets, Grafana's provisioning and dashboard. The
dashboard's PromQL may only name metrics quantrac exports, and its SQL runs (EXPLAIN, then for
real) against a PostgreSQL holding quantrac's schema, as the read-only role Grafana uses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from quantrac.alerts import store as alert_store
from quantrac.alerts.notify.notifier import NotifyMetrics
from quantrac.alerts.service import AlertMetrics
from quantrac.core.settings import Settings, load_settings
from quantrac.ingest.metrics import IngestMetrics
from quantrac.ingest.service import upgrade_database
from quantrac.localservers import PostgresServer, find_postgres_bindir

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROMETHEUS_FILE = ROOT / "config/prometheus/prometheus.yml"
GRAFANA_PROVISIONING = ROOT / "config/grafana/provisioning"
DASHBOARD_FILE = ROOT / "config/grafana/dashboards/quantrac.json"
READER_SCRIPT = ROOT / "config/timescaledb/initdb/10-grafana-reader.sh"

DATABASE_SERVICE = "timescaledb"
BROKERS = {"mosquitto", "emqx"}
MQTT_PORT = 1883
PG_PORT = 5432
PROMETHEUS_PORT = 9090


# --- compose: loading, interpolation, profiles -------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable syntax: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, $$."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("plain")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        if op == ":-" and not value:
            return arg
        if op == "-" and value is None:
            return arg
        if op in (":?", "?") and not value:
            raise AssertionError(f"compose needs ${name}: {arg}")
        return value or ""

    return _VARIABLE.sub(replace, text)


def _resolve(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _resolve(value, env) for key, value in node.items()}
    return node


def parse_env_file(text: str, *, uncomment: bool = False) -> dict[str, str]:
    """KEY=VALUE lines; with uncomment, also the commented-out `#KEY=VALUE` lines (later wins)."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if uncomment and re.match(r"#[A-Z_][A-Z0-9_]*=", line):
            line = line[1:]
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        env[key.strip()] = value.strip()
    return env


def raw_compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def compose(env: dict[str, str]) -> dict[str, Any]:
    return _resolve(raw_compose(), env)


# The two ways the stack is run: no .env at all (compose's own defaults), and .env.example's
# scale-out block switched on.
# Compose has no default for any password: the operator sets them in .env.
PASSWORDS = {
    "QUANTRAC_DB_PASSWORD": "db-Secret-1",
    "GRAFANA_DB_PASSWORD": "reader-Secret-2",
    "GRAFANA_ADMIN_PASSWORD": "admin-Secret-3",
    "EMQX_DASHBOARD_PASSWORD": "emqx-Secret-4",
    "QUANTRAC_MQTT_INGEST_PASSWORD": "ingest-Secret-5",
    "QUANTRAC_MQTT_ALERTS_PASSWORD": "alerts-Secret-6",
}
SINGLE: dict[str, str] = dict(PASSWORDS)
SCALE_OUT = {
    **parse_env_file(ENV_EXAMPLE.read_text(encoding="utf-8"), uncomment=True),
    **PASSWORDS,
}
SETUPS = {"single": SINGLE, "scale-out": SCALE_OUT}


def active_services(doc: dict[str, Any], env: dict[str, str]) -> dict[str, dict[str, Any]]:
    profiles = {p for p in env.get("COMPOSE_PROFILES", "").split(",") if p}
    return {
        name: svc
        for name, svc in doc["services"].items()
        if not svc.get("profiles") or profiles & set(svc["profiles"])
    }


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def depends_on(svc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def is_quantrac(svc: dict[str, Any]) -> bool:
    return "build" in svc and str(svc.get("image", "quantrac:")).startswith("quantrac:")


def quantrac_settings(svc: dict[str, Any]) -> Settings:
    """What quantrac itself makes of the container's environment (fails as quantrac would)."""
    env = {k: v for k, v in environment(svc).items() if k.startswith("QUANTRAC_")}
    return load_settings(env)


def command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command") or ["run"]
    return cmd.split() if isinstance(cmd, str) else list(cmd)


def runs_alert_engine(svc: dict[str, Any]) -> bool:
    return command(svc)[0] == "alerts" or (
        command(svc)[0] == "run" and quantrac_settings(svc).alerts_enabled
    )


def mqtt_client_ids(svc: dict[str, Any]) -> list[str]:
    """Every MQTT client id the container connects with (the alert service adds suffixes)."""
    base = quantrac_settings(svc).mqtt_client_id
    ids = [base] if command(svc)[0] == "run" else []
    if runs_alert_engine(svc):
        ids += [f"{base}-alerts", f"{base}-notify"]
    return ids


def bind_mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in svc.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def named_volumes(svc: dict[str, Any]) -> list[str]:
    names = []
    for volume in svc.get("volumes") or []:
        source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
        if source and not source.startswith((".", "/")):
            names.append(source)
    return names


def host_file(source: str) -> Path:
    return (COMPOSE_FILE.parent / source).resolve()


def mounted_host_path(svc: dict[str, Any], container_path: str) -> Path | None:
    """The host file behind a path inside the container, through the service's bind mounts."""
    for source, target in bind_mounts(svc):
        if container_path == target:
            return host_file(source)
        if container_path.startswith(target.rstrip("/") + "/"):
            return host_file(source) / container_path[len(target.rstrip("/")) + 1 :]
    return None


def published_ports(svc: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port."""
    ports = []
    for spec in svc.get("ports") or []:
        if isinstance(spec, dict):
            ports.append((spec.get("host_ip", "0.0.0.0"), int(spec["published"]), spec["target"]))
            continue
        parts = str(spec).split("/")[0].split(":")
        assert len(parts) in (2, 3), f"publish host and container port explicitly: {spec!r}"
        address = parts[0] if len(parts) == 3 else "0.0.0.0"
        ports.append((address, int(parts[-2]), int(parts[-1])))
    return ports


def healthcheck_url_port(svc: dict[str, Any]) -> int | None:
    test = (svc.get("healthcheck") or {}).get("test") or []
    text = " ".join(test) if isinstance(test, list) else test
    match = re.search(r"http://127\.0\.0\.1:(\d+)/healthz", text)
    return int(match.group(1)) if match else None


# --- compose: structure ------------------------------------------------------------------------


def test_compose_file_is_a_mapping_of_known_top_level_keys():
    doc = raw_compose()
    assert set(doc) <= {"name", "services", "volumes", "networks", "configs", "secrets"} | {
        key for key in doc if key.startswith("x-")
    }
    assert "version" not in doc  # obsolete in the Compose Specification
    assert {"timescaledb", "mosquitto", "quantrac", "prometheus", "grafana"} <= set(doc["services"])
    assert {"emqx", "quantrac-alerts"} <= set(doc["services"])


def test_every_service_has_a_pinned_image_or_the_repository_build():
    for name, svc in raw_compose()["services"].items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            context = svc["build"] if isinstance(svc["build"], str) else svc["build"]["context"]
            dockerfile = "Dockerfile"
            if isinstance(svc["build"], dict):
                dockerfile = svc["build"].get("dockerfile", dockerfile)
            assert (host_file(context) / dockerfile).is_file(), name
        else:
            image = svc["image"]
            assert ":" in image.rsplit("/", 1)[-1], f"{name}: pin a tag ({image})"
            assert not image.endswith((":latest", ":main")), f"{name}: pin a version ({image})"


def test_expected_images():
    services = raw_compose()["services"]
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert services["timescaledb"]["image"].endswith("-pg15")
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert services["emqx"]["image"].startswith("emqx/emqx:5.")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


@pytest.mark.parametrize("setup", SETUPS)
def test_mounted_host_paths_exist_and_named_volumes_are_declared(setup):
    doc = compose(SETUPS[setup])
    declared = set(doc.get("volumes") or {})
    used: set[str] = set()
    for name, svc in doc["services"].items():
        for source, target in bind_mounts(svc):
            assert source.startswith("./"), f"{name}: mount repository paths relatively ({source})"
            assert host_file(source).exists(), f"{name}: {source} does not exist"
            assert host_file(source).is_relative_to(ROOT), f"{name}: {source} is outside the repo"
            assert target.startswith("/"), f"{name}: {target}"
        for volume in named_volumes(svc):
            assert volume in declared, f"{name}: volume {volume} is not declared"
            used.add(volume)
    assert used == declared, f"declared but unused volumes: {declared - used}"


def test_data_lives_in_named_volumes():
    services = raw_compose()["services"]
    expected = {
        "timescaledb": "/var/lib/postgresql/data",
        "mosquitto": "/mosquitto/data",
        "prometheus": "/prometheus",
        "grafana": "/var/lib/grafana",
        "emqx": "/opt/emqx/data",
    }
    for name, path in expected.items():
        targets = [v.split(":")[1] for v in services[name]["volumes"] if not v.startswith(".")]
        assert path in targets, f"{name}: {path} is not on a named volume"


def test_initdb_script_is_executable():
    # The postgres entrypoint runs executable *.sh files and sources the others.
    assert os.access(READER_SCRIPT, os.X_OK)
    assert READER_SCRIPT.read_text().startswith("#!/bin/bash\n")


@pytest.mark.parametrize("setup", SETUPS)
def test_published_ports_do_not_collide(setup):
    services = active_services(compose(SETUPS[setup]), SETUPS[setup])
    seen: dict[int, str] = {}
    for name, svc in services.items():
        for address, host_port, _ in published_ports(svc):
            assert 0 < host_port < 65536, f"{name}: {host_port}"
            assert host_port not in seen, f"{name} and {seen.get(host_port)} publish {host_port}"
            seen[host_port] = f"{name} ({address})"
    # Stations reach the broker over TLS only; plain MQTT stays inside the compose network.
    assert 8883 in seen and seen[8883].startswith("emqx" if setup == "scale-out" else "mosquitto")
    assert 1883 not in seen and 8080 not in seen, seen


def test_consoles_without_their_own_access_control_stay_on_loopback():
    services = compose(SINGLE)["services"]
    for name, container_port in (("prometheus", 9090), ("emqx", 18083)):
        addresses = [a for a, _, c in published_ports(services[name]) if c == container_port]
        assert addresses == ["127.0.0.1"], name
    assert not services["timescaledb"].get("ports"), "keep the database off the host network"


@pytest.mark.parametrize("setup", SETUPS)
def test_depends_on_targets_exist_and_are_started_with_the_dependent(setup):
    doc = compose(SETUPS[setup])
    everything = doc["services"]
    active = active_services(doc, SETUPS[setup])
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name, svc in everything.items():
        for target, spec in depends_on(svc).items():
            assert target in everything, f"{name} depends on unknown service {target}"
            assert target != name
            if name in active:
                assert target in active, f"{name} is started without {target} ({setup})"
            condition = spec.get("condition", "service_started")
            assert condition in (
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            )
            if condition == "service_healthy":
                dep = everything[target]
                has_check = "healthcheck" in dep and not dep["healthcheck"].get("disable")
                has_check = has_check or ("build" in dep and "HEALTHCHECK" in dockerfile)
                assert has_check, f"{name} waits for {target} to be healthy; it has no check"


def test_quantrac_waits_for_a_healthy_database():
    for name, svc in raw_compose()["services"].items():
        if is_quantrac(svc):
            assert depends_on(svc)["timescaledb"]["condition"] == "service_healthy", name


# --- compose: quantrac's own settings ----------------------------------------------------------


@pytest.mark.parametrize("setup", SETUPS)
def test_quantrac_services_resolve_to_compose_services(setup):
    doc = compose(SETUPS[setup])
    services = active_services(doc, SETUPS[setup])
    db_env = environment(doc["services"][DATABASE_SERVICE])
    quantrac = {name: svc for name, svc in services.items() if is_quantrac(svc)}
    assert "quantrac" in quantrac
    for name, svc in quantrac.items():
        settings = quantrac_settings(svc)
        assert command(svc)[0] in ("run", "alerts"), name
        db = urlsplit(settings.database_url or "")
        assert (db.hostname, db.port) == (DATABASE_SERVICE, PG_PORT), name
        assert db.username == db_env["POSTGRES_USER"], name
        assert db.password == db_env["POSTGRES_PASSWORD"], name
        assert db.path.lstrip("/") == db_env["POSTGRES_DB"], name
        assert settings.storage_backend == "timescaledb"
        mqtt = settings.mqtt
        assert mqtt.host in services and mqtt.host in BROKERS, f"{name}: broker {mqtt.host}"
        assert (mqtt.port, mqtt.tls) == (MQTT_PORT, False), name
        assert settings.stations_path == Path("/app/config/stations.yaml")
        assert mounted_host_path(svc, str(settings.stations_path)) == ROOT / "config/stations.yaml"
        assert mounted_host_path(svc, str(settings.alerts_path)) == ROOT / "config/alerts.yaml"
        # `run` and `alerts` both serve /metrics and /healthz on http_port.
        assert settings.http_host == "0.0.0.0", f"{name}: unreachable from Prometheus"
        assert settings.http_port > 0
        assert healthcheck_url_port(svc) == settings.http_port, name
        for _, _, container_port in published_ports(svc):
            # Only the HTTPS listener is published, with its certificate mounted.
            assert container_port == settings.https_port, name
            assert settings.https_cert_file and settings.https_key_file
            cert = mounted_host_path(svc, str(settings.https_cert_file))
            assert cert == ROOT / "config/tls/server.pem", name
        # quantrac signs in to the broker with its own account.
        assert mqtt.username == (
            "quantrac-alerts" if command(svc)[0] == "alerts" else "quantrac-ingest"
        )
        assert mqtt.password, name


@pytest.mark.parametrize("setup", SETUPS)
def test_one_broker_one_ingest_group_one_alert_engine(setup):
    services = active_services(compose(SETUPS[setup]), SETUPS[setup])
    quantrac = {name: svc for name, svc in services.items() if is_quantrac(svc)}
    ingest = {n: s for n, s in quantrac.items() if command(s)[0] == "run"}
    engines = [n for n, s in quantrac.items() if runs_alert_engine(s)]
    brokers = {quantrac_settings(s).mqtt.host for s in quantrac.values()}
    assert brokers == ({"emqx"} if setup == "scale-out" else {"mosquitto"})
    assert {quantrac_settings(s).mqtt_share_group for s in ingest.values()} == {"quantrac-ingest"}
    groups = {quantrac_settings(s).alerts_share_group for s in quantrac.values()}
    assert groups == {"quantrac-alerts"}
    # One engine: with Mosquitto it must be one; on EMQX one is what docs/deploy.md describes.
    assert engines == (["quantrac-alerts"] if setup == "scale-out" else ["quantrac"])
    assert len(ingest) == (3 if setup == "scale-out" else 1)
    client_ids = [cid for svc in quantrac.values() for cid in mqtt_client_ids(svc)]
    assert len(client_ids) == len(set(client_ids)), client_ids


def test_scale_out_workers_share_one_subscription_on_emqx():
    doc = compose(SCALE_OUT)
    workers = {
        name: svc for name, svc in doc["services"].items() if name.startswith("quantrac-ingest-")
    }
    assert len(workers) >= 2
    for name, svc in workers.items():
        assert svc["profiles"] == ["scale-out"]
        settings = quantrac_settings(svc)
        assert settings.mqtt_client_id == name, "client id = service name, stable over restarts"
        assert settings.mqtt.host == "emqx"
        assert not settings.alerts_enabled
    ids = [quantrac_settings(s).mqtt_client_id for s in workers.values()]
    assert len(set(ids)) == len(ids)
    assert len({quantrac_settings(s).mqtt_share_group for s in workers.values()}) == 1


def test_emqx_is_configured_as_its_documentation_says():
    emqx = raw_compose()["services"]["emqx"]
    env = environment(emqx)
    # EMQX_<config path in upper case, "." written "__">: mqtt.shared_subscription_strategy ...
    assert env["EMQX_MQTT__SHARED_SUBSCRIPTION_STRATEGY"] == "hash_topic"
    assert int(env["EMQX_MQTT__MAX_MQUEUE_LEN"]) >= 100_000  # default 1000 drops silently
    assert 1 <= int(env["EMQX_MQTT__MAX_INFLIGHT"]) <= 65535
    for key in env:
        assert re.fullmatch(r"EMQX_(NODE_NAME|[A-Z0-9]+(__[A-Z0-9_]+)+)", key), key
    # Long node names: emqx@<host with a dot>, the container's hostname (EMQX's Docker guide).
    node, host = env["EMQX_NODE_NAME"].split("@")
    assert node == "emqx" and "." in host and emqx["hostname"] == host
    assert emqx["healthcheck"]["test"] == ["CMD", "/opt/emqx/bin/emqx_ctl", "status"]
    assert [c for _, _, c in published_ports(compose(SINGLE)["services"]["emqx"])] == [
        8883,
        18083,
    ]
    # Accounts and ACL from `quantrac stations credentials`, refused when nothing matches.
    assert env["EMQX_AUTHENTICATION__1__BACKEND"] == "built_in_database"
    assert env["EMQX_AUTHORIZATION__NO_MATCH"] == "deny"
    for key in ("EMQX_AUTHENTICATION__1__BOOTSTRAP_FILE", "EMQX_AUTHORIZATION__SOURCES__1__PATH"):
        assert mounted_host_path(emqx, env[key]).parent == ROOT / "config/mosquitto/auth"


def test_mosquitto_config_matches_the_compose_service():
    svc = raw_compose()["services"]["mosquitto"]
    conf_path = mounted_host_path(svc, "/mosquitto/config/mosquitto.conf")
    assert conf_path == ROOT / "config/mosquitto/mosquitto.conf"
    lines = [line.split() for line in conf_path.read_text().splitlines() if line.strip()]
    settings = {words[0]: words[1:] for words in lines if not words[0].startswith("#")}
    listeners = [words[1] for words in lines if words[0] == "listener"]
    assert listeners == [str(MQTT_PORT), "8883"]
    assert settings["allow_anonymous"] == ["false"]
    assert settings["persistence"] == ["true"]
    for key in ("certfile", "keyfile", "plugin_opt_config_file"):
        assert mounted_host_path(svc, settings[key][0]) is not None, key
        assert mounted_host_path(svc, settings[key][0]).parent.is_dir(), key
    data = settings["persistence_location"][0].rstrip("/")
    assert data in [v.split(":")[1] for v in svc["volumes"] if not v.startswith(".")]


def test_env_example_documents_every_variable_with_the_compose_default():
    documented = parse_env_file(ENV_EXAMPLE.read_text(encoding="utf-8"))
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    used = {}
    for match in _VARIABLE.finditer(text):
        name = match.group("braced") or match.group("plain")
        if name:
            used[name] = match.group("arg") or ""
    assert set(used) <= set(documented), f"undocumented: {set(used) - set(documented)}"
    for name, default in used.items():
        if name in PASSWORDS:
            continue
        assert documented[name] == default, f"{name}: .env.example {documented[name]!r}"
    # Copying .env.example and setting its passwords gives the same stack as compose's defaults.
    assert compose({**documented, **PASSWORDS}) == compose(SINGLE)


def test_no_password_has_a_default():
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    documented = parse_env_file(ENV_EXAMPLE.read_text(encoding="utf-8"), uncomment=True)
    for match in _VARIABLE.finditer(text):
        name = match.group("braced") or match.group("plain") or ""
        if "PASSWORD" in name:
            assert match.group("op") == ":?", f"{name} must be required, without a default"
            assert name in PASSWORDS and documented[name] == "", name
    assert "change-me" not in text.lower()
    # Without them compose stops instead of starting with a guessable password.
    with pytest.raises(AssertionError, match="compose needs"):
        compose({})


# --- Prometheus --------------------------------------------------------------------------------


def prometheus_config() -> dict[str, Any]:
    svc = raw_compose()["services"]["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in svc["command"]
    assert "--storage.tsdb.path=/prometheus" in svc["command"]
    path = mounted_host_path(svc, "/etc/prometheus/prometheus.yml")
    assert path == PROMETHEUS_FILE
    doc = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def test_prometheus_scrapes_every_quantrac_worker():
    doc = prometheus_config()
    jobs = doc["scrape_configs"]
    assert len({job["job_name"] for job in jobs}) == len(jobs)
    services = compose(SCALE_OUT)["services"]
    targets: dict[str, int] = {}
    for job in jobs:
        assert set(job) <= {
            "job_name",
            "metrics_path",
            "static_configs",
            "dns_sd_configs",
            "relabel_configs",
            "scrape_interval",
        }, job["job_name"]
        if job["job_name"] == "prometheus":
            continue
        # quantrac answers /metrics itself (no redirect).
        assert job["metrics_path"] == "/metrics"
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets[host] = int(port)
        for dns in job.get("dns_sd_configs", []):
            assert dns["type"] == "A"
            for host in dns["names"]:
                targets[host] = int(dns["port"])
    http_services = {
        name: quantrac_settings(svc).http_port
        for name, svc in services.items()
        if is_quantrac(svc) and quantrac_settings(svc).http_port
    }
    assert targets == http_services
    assert targets["quantrac"] == 8080


def test_prometheus_global_settings():
    doc = prometheus_config()
    assert re.fullmatch(r"\d+s", doc["global"]["scrape_interval"])
    datasources = grafana_datasources()
    prom = next(d for d in datasources if d["type"] == "prometheus")
    assert prom["jsonData"]["timeInterval"] == doc["global"]["scrape_interval"]


# --- Grafana -----------------------------------------------------------------------------------


def grafana_service() -> dict[str, Any]:
    return compose(SINGLE)["services"]["grafana"]


def grafana_datasources() -> list[dict[str, Any]]:
    svc = grafana_service()
    folder = mounted_host_path(svc, "/etc/grafana/provisioning/datasources")
    assert folder is not None and folder.is_dir()
    assert folder == GRAFANA_PROVISIONING / "datasources"
    sources = []
    for path in sorted(folder.glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc["apiVersion"] == 1, path
        sources += doc["datasources"]
    return sources


def test_grafana_datasources_point_at_the_compose_services():
    svc = grafana_service()
    env = environment(svc)
    sources = grafana_datasources()
    uids = [s["uid"] for s in sources]
    assert len(uids) == len(set(uids)) and all(uids)
    assert sum(bool(s.get("isDefault")) for s in sources) == 1
    by_type = {s["type"]: s for s in sources}
    assert set(by_type) == {"prometheus", "grafana-postgresql-datasource"}

    prom = urlsplit(by_type["prometheus"]["url"])
    assert (prom.hostname, prom.port) == ("prometheus", PROMETHEUS_PORT)
    assert "prometheus" in depends_on(svc)

    pg = by_type["grafana-postgresql-datasource"]
    host, port = pg["url"].split(":")
    assert (host, int(port)) == (DATABASE_SERVICE, PG_PORT)
    assert DATABASE_SERVICE in depends_on(svc)
    db_env = environment(compose(SINGLE)["services"][DATABASE_SERVICE])
    assert pg["jsonData"]["database"] == db_env["POSTGRES_DB"]
    assert pg["jsonData"]["sslmode"] in ("disable", "require", "verify-ca", "verify-full")
    # $VARS in provisioning are Grafana's environment; the role is the init script's.
    for value in (pg["user"], pg["secureJsonData"]["password"]):
        name = value.lstrip("$").strip("{}")
        assert name in env, f"grafana's environment lacks {name}"
        assert env[name] == db_env[name], f"{name} differs between grafana and timescaledb"
    assert (
        mounted_host_path(
            compose(SINGLE)["services"][DATABASE_SERVICE],
            "/docker-entrypoint-initdb.d/10-grafana-reader.sh",
        )
        == READER_SCRIPT
    )


def test_grafana_dashboard_provider_loads_the_dashboard_folder():
    svc = grafana_service()
    folder = mounted_host_path(svc, "/etc/grafana/provisioning/dashboards")
    assert folder == GRAFANA_PROVISIONING / "dashboards"
    providers = []
    for path in sorted(folder.glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc["apiVersion"] == 1, path
        providers += doc["providers"]
    assert len(providers) == 1
    provider = providers[0]
    assert provider["type"] == "file"
    dashboards = mounted_host_path(svc, provider["options"]["path"])
    assert dashboards == DASHBOARD_FILE.parent
    assert sorted(dashboards.glob("*.json")) == [DASHBOARD_FILE]
    home = environment(svc)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounted_host_path(svc, home) == DASHBOARD_FILE
    assert environment(svc)["GF_SECURITY_ADMIN_PASSWORD"]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))


def panels() -> list[dict[str, Any]]:
    result = []
    for panel in dashboard()["panels"]:
        result.append(panel)
        result += panel.get("panels", [])  # collapsed rows
    return result


def targets(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (panel["title"], target)
        for panel in panels()
        for target in panel.get("targets", [])
        if target["datasource"]["type"] == kind
    ]


def test_dashboard_model():
    board = dashboard()
    assert board["uid"] and len(board["uid"]) <= 40
    assert 36 <= board["schemaVersion"] <= 41
    assert board["title"]
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_datasources_are_the_provisioned_ones():
    provisioned = {s["uid"]: s["type"] for s in grafana_datasources()}
    for panel in panels():
        if panel["type"] == "row":
            continue
        refs = [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]
        for ref in refs:
            assert ref["uid"] in provisioned, f"{panel['title']}: unknown uid {ref['uid']}"
            assert provisioned[ref["uid"]] == ref["type"], panel["title"]


def test_dashboard_has_the_panels_the_issue_asks_for():
    titles = {p["title"] for p in panels()}
    for wanted in (
        "Ingest rate",
        "Rejections by reason",
        "Lag: received − measured",
        "Open alerts by kind",
        "Last reading per station",
        "Alert events by kind",
        "Notifications by channel and outcome",
    ):
        assert wanted in titles


# --- the dashboard's PromQL against what quantrac exports --------------------------------------


def exported_metrics() -> dict[str, set[str]]:
    """Sample name → label names, for every metric `quantrac run` registers."""
    registry = CollectorRegistry()
    collectors = [IngestMetrics(registry), AlertMetrics(registry), NotifyMetrics(registry)]
    labels_by_base: dict[str, set[str]] = {}
    for collector in collectors:
        for value in vars(collector).values():
            if isinstance(value, MetricWrapperBase):
                labels_by_base[value._name] = set(value._labelnames)
    text = generate_latest(registry).decode()
    names: dict[str, set[str]] = {}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        base = name.removesuffix("_total")
        labels = labels_by_base.get(base, set())
        if kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        elif not name.endswith("_created"):
            names[name] = labels
    for line in text.splitlines():  # and every sample actually present
        if line and not line.startswith("#"):
            sample = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
            assert sample is not None
            names.setdefault(sample.group(0), set())
    return names


def test_exported_metric_names_are_known():
    names = exported_metrics()
    for name in (
        "quantrac_readings_stored_total",
        "quantrac_rejections_total",
        "quantrac_reading_lag_seconds_bucket",
        "quantrac_alert_events_total",
        "quantrac_notifications_total",
    ):
        assert name in names
    assert names["quantrac_rejections_total"] == {"reason"}


def test_dashboard_promql_uses_only_exported_metrics_and_labels():
    exported = exported_metrics()
    queries = targets("prometheus")
    assert len(queries) >= 10
    scraped_labels = {"instance", "job"}
    for title, target in queries:
        expr = target["expr"]
        used = set(re.findall(r"\bquantrac_[a-zA-Z0-9_]+\b", expr))
        assert used, f"{title}: {expr}"
        for name in used:
            assert name in exported, f"{title}: {name} is not exported by quantrac"
        available = set().union(*(exported[name] for name in used)) | scraped_labels
        grouped: set[str] = set()
        for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            labels = {label.strip() for label in clause.split(",") if label.strip()}
            assert labels <= available, f"{title}: {labels - available} not on {used}"
            grouped |= labels
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
            assert label in (grouped or available), f"{title}: legend {{{{{label}}}}}"
        for label in re.findall(r"[{,]\s*(\w+)\s*=~?", expr):
            assert label in available, f"{title}: matcher on {label}"
        assert "$__rate_interval" in expr or "rate(" not in expr, title
        assert expr.count("(") == expr.count(")"), title


# --- the dashboard's SQL against quantrac's schema ---------------------------------------------

_WINDOW = "interval '6 hours'"
_MACROS = [
    (r"\$__timeFilter\(\s*([^)]+?)\s*\)", rf"\1 BETWEEN now() - {_WINDOW} AND now()"),
    (r"\$__timeFrom\(\)", f"(now() - {_WINDOW})"),
    (r"\$__timeTo\(\)", "now()"),
    (r"\$__timeGroupAlias\(\s*([^,]+?)\s*,[^)]*\)", r"date_trunc('hour', \1) AS \"time\""),
    (r"\$__timeGroup\(\s*([^,]+?)\s*,[^)]*\)", r"date_trunc('hour', \1)"),
]


def grafana_sql(text: str) -> str:
    """A dashboard query as PostgreSQL receives it, Grafana's macros expanded."""
    for pattern, replacement in _MACROS:
        text = re.sub(pattern, replacement, text)
    assert "$" not in text, f"unexpanded macro or variable in {text!r}"
    return text


def test_sql_macros_expand():
    assert grafana_sql("WHERE $__timeFilter(measured_at)") == (
        f"WHERE measured_at BETWEEN now() - {_WINDOW} AND now()"
    )
    with pytest.raises(AssertionError):
        grafana_sql("WHERE station_id = '$station'")


@pytest.fixture(scope="module")
def timescale_url() -> Iterator[str]:
    bindir = find_postgres_bindir()
    server = PostgresServer(
        Path(tempfile.mkdtemp(prefix="quantrac-compose-ts-")),
        timescale=True,
        durable=False,
        bindir=bindir,
    )
    if bindir is None or not server.timescale_available():
        pytest.skip("TimescaleDB extension not installed on this machine")
    server.start()
    yield server.url
    server.stop("immediate")


def create_reader(database_url: str) -> tuple[str, str]:
    """Run config/timescaledb/initdb/10-grafana-reader.sh as the postgres image would."""
    bindir = find_postgres_bindir()
    if bindir is None or not (bindir / "psql").exists():
        pytest.skip("psql not installed")
    url = urlsplit(database_url)
    role, password = f"grafana_reader_{uuid.uuid4().hex[:8]}", "s3cret'pass"
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ.get('PATH', '')}",
        "PGHOST": url.hostname or "127.0.0.1",
        "PGPORT": str(url.port or PG_PORT),
        "PGPASSWORD": url.password or "",
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_DB": url.path.lstrip("/"),
        "GRAFANA_DB_USER": role,
        "GRAFANA_DB_PASSWORD": password,
    }
    result = subprocess.run(
        ["bash", str(READER_SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return role, password


def _as(database_url: str, user: str, password: str) -> str:
    url = urlsplit(database_url)
    return f"postgresql://{user}:{password}@{url.hostname}:{url.port}{url.path}"


async def seed(conn: psycopg.AsyncConnection) -> None:
    """Two stations, a few readings, open and resolved alerts."""
    for station in ("AIR1", "WW1"):
        await conn.execute(
            "INSERT INTO stations (id, name, kind, facility, province, lat, lon, cadence_s,"
            " parameters) VALUES (%s, %s, 'air', 'f', 'Bắc Ninh', 21.2, 106.1, 300, '[]')",
            [station, f"Trạm {station}"],
        )
    await conn.execute(
        "INSERT INTO readings (station_id, param, measured_at, value, status, received_at)"
        " SELECT 'AIR1', 'PM10', now() - make_interval(mins => 5 * i), 40 + i, 0, now()"
        " FROM generate_series(1, 12) AS i"
    )
    for kind, state in (
        ("exceedance", "open"),
        ("exceedance", "acknowledged"),
        ("data_loss", "open"),
        ("warning", "resolved"),
    ):
        await conn.execute(
            "INSERT INTO alerts (station_id, param, kind, severity, state, opened_at, updated_at,"
            " first_data_at, last_data_at) VALUES"
            " (%s, 'PM10', %s, 'major', %s, now(), now(), now(), now())",
            ["AIR1" if state != "acknowledged" else "WW1", kind, state],
        )
    await conn.commit()


async def check_dashboard_sql(database_url: str, admin_url: str, backend: str) -> None:
    settings = load_settings({}, database_url=database_url, storage_backend=backend)
    assert (await upgrade_database(settings))[0] == backend
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await alert_store.upgrade(conn)
        await conn.commit()
        await seed(conn)
    role, password = create_reader(database_url)
    try:
        queries = targets("grafana-postgresql-datasource")
        assert len(queries) >= 3
        results: dict[str, list[tuple[Any, ...]]] = {}
        async with await psycopg.AsyncConnection.connect(
            _as(database_url, role, password)
        ) as reader:
            for title, target in queries:
                assert target["rawQuery"] and target["format"] in ("table", "time_series")
                query = grafana_sql(target["rawSql"])
                await reader.execute(f"EXPLAIN {query}")
                cursor = await reader.execute(query)
                results[title] = await cursor.fetchall()
                await reader.rollback()
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                await reader.execute("DELETE FROM alerts")
    finally:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    assert results["Open alerts"] and len(results["Open alerts"]) == 3
    assert results["Open alerts by kind"] == [("exceedance", 2), ("data_loss", 1)]
    last = {row[0]: row[4] for row in results["Last reading per station"]}
    assert last["WW1"] is None and last["AIR1"] is not None
    assert results["Open alerts"][0][1] in ("AIR1", "WW1")


@pytest.mark.integration
async def test_dashboard_sql_runs_on_postgresql(database_url, servers):
    await check_dashboard_sql(database_url, servers.database_url, "postgresql")


@pytest.mark.integration
async def test_dashboard_sql_runs_on_timescaledb(timescale_url):
    name = f"t_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(timescale_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    await check_dashboard_sql(
        timescale_url.rsplit("/", 1)[0] + f"/{name}", timescale_url, "timescaledb"
    )
