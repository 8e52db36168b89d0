"""The production store: alert engine, API series and inspector reports on TimescaleDB, where
``readings`` is a hypertable and ``readings_hourly`` a real-time continuous aggregate.

Skipped where the extension is not installed (it is not on Debian's or PyPI's registries)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from quantrac.alerts.service import AlertService
from quantrac.api.app import ApiService, build_api
from quantrac.api.users import add_user
from quantrac.core.catalog import load_catalog
from quantrac.core.contract import Reading, Status
from quantrac.core.registry import load_registry
from quantrac.core.settings import load_settings
from quantrac.core.time import VIETNAM
from quantrac.ingest.service import upgrade_database
from quantrac.localservers import PostgresServer, find_postgres_bindir
from quantrac.regulations.tables import load_regulation_catalog
from quantrac.reports.exceedances import exceedance_report
from tests.conftest import CONFIG

pytestmark = pytest.mark.integration

# One Vietnam day: 2026-03-10 00:00 +07:00. COD at WW1 (QCVN 40:2011 A, Cmax 75 mg/L):
# hour 0 at a mean of 150, hours 1-23 at 20 with hour 5 missing; Flow in status 02 for 30 min.
DAY = datetime(2026, 3, 10, tzinfo=VIETNAM)


@pytest.fixture(scope="module")
def timescale_server() -> Iterator[str]:
    bindir = find_postgres_bindir()
    server = PostgresServer(
        Path(tempfile.mkdtemp(prefix="quantrac-ts-")), timescale=True, durable=False, bindir=bindir
    )
    if bindir is None or not server.timescale_available():
        pytest.skip("TimescaleDB extension not installed on this machine")
    server.start()
    yield server.url
    server.stop("immediate")


@pytest.fixture
def settings(timescale_server: str, servers: Any, stations_file: Path) -> Any:
    name = f"ts_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(timescale_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    tag = uuid.uuid4().hex[:8]
    return load_settings(
        {},
        database_url=f"{timescale_server.rsplit('/', 1)[0]}/{name}",
        mqtt_url=servers.mqtt_url,
        mqtt_client_id=f"ts-{tag}",
        mqtt_share_group=f"g{tag}",
        alerts_share_group=f"a{tag}",
        stations_file=stations_file,
        storage_backend="timescaledb",
        alerts_tick_s=3600,
        http_port=0,
    )


def day_of_readings() -> list[Reading]:
    readings = []
    for hour in range(24):
        if hour == 5:
            continue
        mean = 150.0 if hour == 0 else 20.0
        for i in range(12):
            at = (DAY + timedelta(hours=hour, minutes=5 * i)).astimezone(UTC)
            wobble = 1.0 if i % 2 else -1.0
            readings.append(Reading("WW1", "COD", at, mean + wobble, Status.MEASURING))
    for i in range(6):
        at = (DAY + timedelta(hours=3, minutes=5 * i)).astimezone(UTC)
        readings.append(Reading("WW1", "Flow", at, 0.0, Status.FAULT))
    return readings


async def store(settings: Any, readings: list[Reading]) -> None:
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        async with conn.cursor().copy(
            "COPY readings (station_id, param, measured_at, value, status, received_at) FROM STDIN"
        ) as copy:
            for r in readings:
                await copy.write_row(
                    (r.station_id, r.param, r.measured_at, r.value, int(r.status), r.measured_at)
                )
        await conn.commit()


async def test_engine_api_and_report_on_timescaledb(settings: Any) -> None:
    backend, _ = await upgrade_database(settings)
    assert backend == "timescaledb"
    readings = day_of_readings()
    await store(settings, readings)

    # The engine, fed the day as one message, stores its episode next to the hypertable.
    engine = AlertService(settings)
    await engine.start()
    try:
        await engine.process("WW1", readings, datetime.now(UTC))
    finally:
        await engine.stop()

    catalog = load_catalog(CONFIG / "parameters.yaml")
    registry = load_registry(settings.stations_path, catalog)
    regulations = load_regulation_catalog(CONFIG / "regulations", catalog)
    start, end = DAY.astimezone(UTC), (DAY + timedelta(days=1)).astimezone(UTC)
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        report = await exceedance_report(conn, registry, regulations, ["WW1"], start, end)
    [episode] = report.episodes
    assert (episode.start, episode.end) == (start, start + timedelta(hours=1))
    assert episode.maximum == pytest.approx(150.0) and episode.limit_value == 75.0
    cod = report.completeness.day("WW1", "COD", date(2026, 3, 10))
    assert cod is not None and (cod.received, cod.expected) == (23 * 12, 288)
    [fault] = report.status_periods
    assert (fault.param, fault.kind, fault.readings) == ("Flow", "fault", 6)

    # The API's daily series reads the continuous aggregate (real time: no refresh needed).
    api = ApiService(settings, catalog, lambda: registry)
    context = await api.start()
    try:
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True
        ) as conn:
            await add_user(conn, "insp", "inspector", "mật-khẩu-đủ-dài")
        transport = httpx.ASGITransport(app=build_api(context))
        async with httpx.AsyncClient(transport=transport, base_url="http://ts") as client:
            response = await client.get(
                "/api/v1/stations/WW1/readings",
                params={
                    "param": "COD",
                    "from": start.isoformat(),
                    "to": end.isoformat(),
                    "interval": "day",
                },
                auth=("insp", "mật-khẩu-đủ-dài"),
            )
    finally:
        await api.stop()
    [point] = response.json()["points"]
    assert point["t"] == "2026-03-10" and point["count"] == 23 * 12
    assert point["value"] == pytest.approx((150.0 + 22 * 20.0) / 23)
