"""Shared fixtures: real PostgreSQL and Mosquitto servers, started once per test session.

Set QUANTRAC_TEST_DATABASE_URL and QUANTRAC_TEST_MQTT_URL to use servers of your own instead
(the tests that stop and restart a server are then skipped).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from gmqtt import Client

from quantrac.core.catalog import Catalog, load_catalog
from quantrac.core.registry import Registry, registry_from_text
from quantrac.core.settings import Settings, default_config_dir, load_settings
from quantrac.localservers import MosquittoServer, PostgresServer

CONFIG = default_config_dir()


@dataclass
class Servers:
    database_url: str
    mqtt_url: str
    postgres: PostgresServer | None
    mosquitto: MosquittoServer | None


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    db_url = os.environ.get("QUANTRAC_TEST_DATABASE_URL")
    mqtt_url = os.environ.get("QUANTRAC_TEST_MQTT_URL")
    root = Path(tempfile.mkdtemp(prefix="quantrac-test-"))
    postgres = mosquitto = None
    try:
        if not db_url:
            postgres = PostgresServer(root / "pg", durable=False).start()
            db_url = postgres.url
        if not mqtt_url:
            mosquitto = MosquittoServer(root / "mq", persistence=False).start()
            mqtt_url = mosquitto.url
        yield Servers(db_url, mqtt_url, postgres, mosquitto)
    finally:
        if mosquitto:
            mosquitto.stop()
        if postgres:
            postgres.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(servers: Servers) -> Iterator[str]:
    """A fresh, empty database for each test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = servers.database_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    try:
        with psycopg.connect(servers.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.OperationalError:
        pass  # the server was stopped by the test; the database goes with the session


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(CONFIG / "parameters.yaml")


TEST_REGISTRY = """
stations:
  - id: AIR1
    name: "Trạm không khí thử"
    kind: air
    facility: "Sở TN&MT"
    province: "Bắc Ninh"
    location: {lat: 21.27, lon: 106.19}
    parameters:
      - {code: "PM2,5", unit: "µg/m3"}
      - {code: PM10, unit: "µg/m3"}
      - {code: NO2, unit: "µg/m3"}
      - {code: Temp, unit: "°C"}
    regulation: {id: "QCVN 05:2023/BTNMT"}
  - id: WW1
    name: "Trạm nước thải thử"
    kind: wastewater
    facility: "KCN Thử"
    province: "Bắc Ninh"
    location: {lat: 21.25, lon: 106.09}
    ftp_name: "BacGiang_KCNThu_NT01"
    parameters:
      - {code: Flow, unit: "m3/h"}
      - {code: pH, unit: "pH"}
      - {code: COD, unit: "mg/L"}
      - {code: TSS, unit: "mg/L"}
    regulation: {id: "QCVN 40:2011/BTNMT", column: A,
                 coefficients: {receiving_water: river, receiving_flow_m3s: 120,
                                  discharge_m3_per_day: 3000}}
"""

# TEST_REGISTRY grown by a copy of its two stations, AIR2 and WW2: a registry file edited while
# quantrac runs.
TEST_REGISTRY_GROWN = TEST_REGISTRY + TEST_REGISTRY.split("stations:\n", 1)[1].replace(
    "id: AIR1", "id: AIR2"
).replace("id: WW1", "id: WW2").replace("BacGiang_KCNThu_NT01", "BacGiang_KCNThu_NT02")


@pytest.fixture(scope="session")
def registry(catalog: Catalog) -> Registry:
    return registry_from_text(TEST_REGISTRY, catalog, "test-registry.yaml")


@pytest.fixture
def stations_file(tmp_path: Path) -> Path:
    path = tmp_path / "stations.yaml"
    path.write_text(TEST_REGISTRY, encoding="utf-8")
    return path


@pytest.fixture
def make_settings(servers: Servers, database_url: str, stations_file: Path):
    """Settings for one test: its own database, MQTT client id and share group."""
    tag = uuid.uuid4().hex[:8]

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "mqtt_url": servers.mqtt_url,
            "mqtt_client_id": f"quantrac-test-{tag}",
            "mqtt_share_group": f"g{tag}",
            "alerts_share_group": f"a{tag}",
            "mqtt_session_expiry_s": 300,
            "stations_file": stations_file,
            "batch_max_latency_ms": 50,
            "http_port": 0,
            "log_format": "text",
            "rate_limit_per_s": 0,
            # The engine in the test's process (App): tests that want child workers say so.
            "alerts_workers": 0,
        }
        values.update(overrides)
        return load_settings({}, **values)

    return build


@pytest.fixture
def env(make_settings, monkeypatch):
    """One test's settings, also in QUANTRAC_* for the command line (``quantrac.cli.main``)."""
    settings = make_settings()
    monkeypatch.setenv("QUANTRAC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("QUANTRAC_MQTT_URL", settings.mqtt_url)
    monkeypatch.setenv("QUANTRAC_STATIONS_FILE", str(settings.stations_path))
    monkeypatch.setenv("QUANTRAC_LOG_FORMAT", "text")
    return settings


class Subscriber:
    """A plain gmqtt client that records what arrives (for the ack topic)."""

    def __init__(self, url: str):
        self.url = url
        self.messages: list[tuple[str, bytes]] = []
        self.arrived = asyncio.Event()
        self.client = Client(f"observer-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message

    def _on_message(
        self, client: Client, topic: str, payload: bytes, qos: int, properties: Any
    ) -> int:
        self.messages.append((topic, payload))
        self.arrived.set()
        return 0

    async def start(self, *topics: str) -> Subscriber:
        host, port = self.url.removeprefix("mqtt://").split(":")
        await self.client.connect(host, int(port))
        for topic in topics:
            self.client.subscribe(topic, qos=1)
        await asyncio.sleep(0.2)
        return self

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str, bytes]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.messages) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                break
        return self.messages

    async def stop(self) -> None:
        await self.client.disconnect()


async def publisher(url: str, client_id: str | None = None) -> Client:
    host, port = url.removeprefix("mqtt://").split(":")
    client = Client(client_id or f"pub-{uuid.uuid4().hex[:8]}")
    await client.connect(host, int(port))
    return client


async def wait_until(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns a truthy value; fail the test otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value {last!r})")


async def fetch(url: str, query: str, args: Any = None) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(query, args)
        return await cur.fetchall()


@pytest.fixture
async def db_conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        yield conn
