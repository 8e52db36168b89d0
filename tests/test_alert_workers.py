"""`quantrac run` with its alert engine in child processes (``alerts_workers``), against real
PostgreSQL and Mosquitto: a reading stored by the parent raises its alert in the child; a child
killed is restarted and neither loses nor repeats an alert; the children stop with the parent,
even a parent killed outright."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry

from quantrac.app import AlertWorkers, App, alert_workers
from tests.conftest import TEST_REGISTRY_GROWN, fetch, publisher, wait_until
from tests.test_alerts_service import an_hour_ago, cod_hour, judged, message
from tests.test_notify_channels import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


async def leased_by(database_url: str, owner: str, count: int) -> bool:
    rows = await fetch(
        database_url,
        "SELECT count(*) FROM stream_cursors WHERE name LIKE 'alerts:%%' AND owner = %s "
        "AND lease_until > now()",
        [owner],
    )
    return rows[0][0] == count


def children_of(pid: int) -> list[int]:
    """Alert workers started by ``pid`` (``quantrac alerts --parent pid``), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"alerts" in argv and b"--parent" in argv and str(pid).encode() in argv:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_the_default_is_one_worker_on_two_cores(make_settings: Any) -> None:
    expected = 1 if (os.cpu_count() or 1) >= 2 else 0
    assert alert_workers(make_settings(alerts_workers=None)) == expected
    assert alert_workers(make_settings(alerts_workers=3)) == 3
    assert alert_workers(make_settings(alerts_workers=3, alerts_enabled=False)) == 0


def test_a_worker_runs_with_the_parents_settings(make_settings: Any) -> None:
    from quantrac.core.settings import load_settings

    settings = make_settings(alerts_workers=2, alerts_partitions=4)
    workers = AlertWorkers(settings, 2, CollectorRegistry())
    argv, env = workers.command(0)
    child = load_settings({k: v for k, v in env.items() if k.startswith("QUANTRAC_")})
    assert argv == [
        sys.executable,
        "-m",
        "quantrac.cli.main",
        "alerts",
        "--parent",
        str(os.getpid()),
    ]
    assert child.database_url == settings.database_url
    assert child.alerts_partitions == 4 and child.stations_path == settings.stations_path
    assert child.http_port == 0 and child.https_port == 0
    assert child.mqtt_client_id == settings.mqtt_client_id  # the in-process engine's owner
    _, second = workers.command(1)
    assert second["QUANTRAC_MQTT_CLIENT_ID"] == f"{settings.mqtt_client_id}-w2"


async def test_a_child_worker_judges_what_the_parent_stored_and_survives_a_kill(
    make_settings: Any, servers: Any, database_url: str
) -> None:
    port = free_port()
    settings = make_settings(alerts_workers=1, alerts_tick_s=3600, http_port=port)
    owner = f"{settings.mqtt_client_id}-alerts"
    app = App(settings)
    assert app.alerts is None and app.workers is not None
    await app.start()
    base = f"http://127.0.0.1:{port}"
    try:
        assert app.service.mqtt is not None
        await asyncio.wait_for(app.service.mqtt.connected.wait(), 10)
        await wait_until(lambda: leased_by(database_url, owner, 16), timeout=40)
        pub = await publisher(servers.mqtt_url)
        start = an_hour_ago()
        pub.publish("stations/WW1/data", message("WW1", cod_hour(start, 150.0)), qos=1)
        await wait_until(lambda: _rows(database_url, "SELECT count(*) = 1 FROM alerts"), timeout=30)
        # The child dies; what the parent stores meanwhile waits for it at its cursor.
        first = app.workers.processes[0]
        assert first is not None
        first.send_signal(signal.SIGKILL)
        await first.wait()
        later = cod_hour(start + timedelta(hours=1), 160.0)
        pub.publish("stations/WW1/data", message("WW1", later), qos=1)
        await pub.disconnect()
        await wait_until(
            lambda: _rows(database_url, "SELECT count(*) = 24 FROM readings"), timeout=20
        )
        await wait_until(
            lambda: _rows(database_url, "SELECT count = 2 FROM alerts WHERE kind = 'exceedance'"),
            timeout=60,
        )
        await wait_until(lambda: judged(database_url), timeout=30)
        second = app.workers.processes[0]
        assert second is not None and second.pid != first.pid and second.returncode is None
        registry = app.service.metrics.registry
        assert registry.get_sample_value("quantrac_alerts_worker_restarts_total") == 1
        assert registry.get_sample_value("quantrac_alerts_workers_running") == 1

        async def caught_up() -> dict[str, Any] | None:
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                report = dict((await client.get("/healthz")).json())
                text = (await client.get("/metrics")).text
            lag = [x for x in text.splitlines() if x.startswith("quantrac_alerts_lag_batches ")]
            return report if lag == ["quantrac_alerts_lag_batches 0.0"] else None

        report = await wait_until(caught_up, timeout=20)
        assert report["alerts_workers_running"] == 1 and report["alerts_lagging"] is False
    finally:
        await app.stop()
    assert all(p is None or p.returncode is not None for p in app.workers.processes)
    rows = await fetch(database_url, "SELECT kind, param, state, count FROM alerts")
    assert rows == [("exceedance", "COD", "open", 2)]
    # Opened once, its repeat counted once: nothing lost with the killed child, nothing twice.
    events = await fetch(
        database_url, "SELECT event, count(*) FROM alert_events GROUP BY event ORDER BY event"
    )
    assert events == [("opened", 1), ("updated", 1)]


async def test_a_reloaded_registry_restarts_the_workers_with_it(
    make_settings: Any, servers: Any, database_url: str
) -> None:
    settings = make_settings(alerts_workers=1, alerts_tick_s=3600, registry_reload_s=1)
    owner = f"{settings.mqtt_client_id}-alerts"
    app = App(settings)
    assert app.workers is not None
    await app.start()
    try:
        await wait_until(lambda: leased_by(database_url, owner, 16), timeout=40)
        first = app.workers.processes[0]
        assert first is not None
        # A station is added to the file; ingest reloads it and tells the workers.
        path = settings.stations_path
        path.write_text(TEST_REGISTRY_GROWN)
        os.utime(path, (1, 1))
        assert app.service.reload_registry_if_changed()

        async def restarted() -> bool:
            now = app.workers.processes[0] if app.workers else None
            return now is not None and now.pid != first.pid and now.returncode is None

        await wait_until(restarted, timeout=30)
        assert first.returncode == 0  # stopped cleanly, asked to
        registry = app.service.metrics.registry
        # A restart asked for is not a death.
        assert registry.get_sample_value("quantrac_alerts_worker_restarts_total") == 0
        await wait_until(lambda: leased_by(database_url, owner, 16), timeout=40)
        # The new worker knows the new station: its exceedance is raised.
        pub = await publisher(servers.mqtt_url)
        pub.publish("stations/WW2/data", message("WW2", cod_hour(an_hour_ago(), 150.0)), qos=1)
        await pub.disconnect()
        await wait_until(
            lambda: _rows(
                database_url,
                "SELECT count(*) = 1 FROM alerts WHERE station_id = 'WW2' AND kind = 'exceedance'",
            ),
            timeout=60,
        )
    finally:
        await app.stop()


async def test_the_workers_stop_when_quantrac_run_is_killed(
    make_settings: Any, database_url: str
) -> None:
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("reads child processes from /proc")
    settings = make_settings(alerts_workers=2, alerts_tick_s=3600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTRAC_")}
    env.update(
        {
            "QUANTRAC_DATABASE_URL": settings.database_url or "",
            "QUANTRAC_MQTT_URL": settings.mqtt_url,
            "QUANTRAC_MQTT_CLIENT_ID": settings.mqtt_client_id,
            "QUANTRAC_MQTT_SHARE_GROUP": settings.mqtt_share_group,
            "QUANTRAC_STATIONS_FILE": str(settings.stations_path),
            "QUANTRAC_HTTP_PORT": "0",
            "QUANTRAC_LOG_FORMAT": "text",
            "QUANTRAC_ALERTS_WORKERS": "2",
            "QUANTRAC_ALERTS_TICK_S": "3600",
        }
    )
    parent = subprocess.Popen([sys.executable, "-m", "quantrac.cli.main", "run"], cwd=ROOT, env=env)
    try:

        async def two_children() -> list[int]:
            found = children_of(parent.pid)
            return found if len(found) == 2 else []

        children = await wait_until(two_children, timeout=40)
        # Both lease their share once started.
        await wait_until(
            lambda: _rows(
                database_url,
                "SELECT count(DISTINCT owner) = 2 FROM stream_cursors "
                "WHERE name LIKE 'alerts:%%' AND lease_until > now()",
            ),
            timeout=40,
        )
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)

    async def gone() -> bool:
        return not any(alive(pid) for pid in children)

    await wait_until(gone, timeout=30)


async def _rows(database_url: str, query: str) -> bool:
    """A yes/no query (no while the tables are not created yet)."""
    try:
        return bool((await fetch(database_url, query))[0][0])
    except psycopg.errors.UndefinedTable:
        return False
