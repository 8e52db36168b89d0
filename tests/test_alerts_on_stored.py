"""Alerts on what was stored, against real PostgreSQL and Mosquitto: every input raises the same
alerts, rejected readings raise none, every alert event reaches the channels (including a
person's acknowledge, and after a kill between the commit and the delivery), and two alert
workers split the stations and survive the loss of one."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from quantrac.alerts.model import EventType, Kind
from quantrac.alerts.service import AlertService
from quantrac.alerts.store import AlertStore
from quantrac.core.contract import Reading, Status
from quantrac.core.time import VIETNAM
from quantrac.ingest import tt10
from quantrac.ingest.files import ingest_folder
from quantrac.ingest.service import IngestService
from tests.conftest import fetch, publisher, wait_until
from tests.test_alerts_service import an_hour_ago, cod_hour, judged, message, store_committed
from tests.test_notify_channels import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]

# An exceeding COD hour, and a Flow analyser reporting faults (status 02) in it.
UNITS = {"COD": "mg/L", "Flow": "m3/h"}


def hour_with_faults(start: datetime) -> list[tuple[str, float, datetime, str]]:
    faults = [("Flow", 0.0, start + timedelta(minutes=5 * i), "02") for i in range(3)]
    return cod_hour(start, 150.0) + faults


def tt10_file(folder: Path, lines: list[tuple[str, float, datetime, str]]) -> Path:
    stamp = tt10.format_timestamp(lines[-1][2], VIETNAM)
    path = folder / f"BacGiang_KCNThu_NT01_{stamp}.txt"
    text = "\r\n".join(tt10.format_line(p, v, UNITS[p], t, s, VIETNAM) for p, v, t, s in lines)
    path.write_text(text + "\r\n", encoding="utf-8")
    return path


async def holds(database_url: str, query: str, args: Any = None) -> bool:
    """The first column of the first row, for queries that ask a yes/no question (no while the
    tables are not created yet)."""
    try:
        return bool((await fetch(database_url, query, args))[0][0])
    except psycopg.errors.UndefinedTable:
        return False


async def alert_kinds(database_url: str) -> set[tuple[str, str]]:
    rows = await fetch(database_url, "SELECT kind, param FROM alerts WHERE station_id = 'WW1'")
    return {(k, p) for k, p in rows}


@pytest.mark.parametrize("source", ["mqtt", "file drop", "ingest-files"])
async def test_every_input_raises_the_same_exceedance_fault_and_data_loss_alerts(
    source: str, make_settings: Any, servers: Any, database_url: str, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    settings = make_settings(alerts_tick_s=3600, files_dir=drop, files_poll_s=0.2)
    alerts = AlertService(settings)
    await alerts.start()
    ingest = IngestService(settings)
    lines = hour_with_faults(an_hour_ago())
    try:
        if source == "ingest-files":
            # Another process's way in: the engine reads its batches back by cursor.
            await ingest.start_without_mqtt()
            assert ingest.receiver is not None
            tt10_file(drop, lines)
            [outcome] = await ingest_folder(drop, ingest.receiver)
            assert outcome.stored == 15 and not outcome.problems
        else:
            await ingest.start()
            assert ingest.pipeline is not None and ingest.mqtt is not None
            ingest.pipeline.subscribe(alerts.accept)
            await asyncio.wait_for(ingest.mqtt.connected.wait(), 10)
            if source == "mqtt":
                pub = await publisher(servers.mqtt_url)
                pub.publish("stations/WW1/data", message("WW1", lines), qos=1)
                await pub.disconnect()
            else:
                tt10_file(drop, lines)
        await wait_until(
            lambda: holds(database_url, "SELECT count(*) = 15 FROM readings"), timeout=20
        )
        await wait_until(lambda: judged(database_url))
        before_clock = await alert_kinds(database_url)
        await alerts.tick()  # the data are an hour old: the station has gone silent since
    finally:
        await ingest.stop()
        await alerts.stop()
    assert before_clock == {("exceedance", "COD"), ("device_fault", "Flow")}
    assert await alert_kinds(database_url) == {
        ("exceedance", "COD"),
        ("device_fault", "Flow"),
        ("data_loss", ""),
    }


async def test_a_rate_limited_message_raises_nothing(
    make_settings: Any, servers: Any, database_url: str
) -> None:
    settings = make_settings(alerts_tick_s=3600, rate_limit_per_s=0.001, rate_limit_burst=1)
    alerts = AlertService(settings)
    await alerts.start()
    ingest = IngestService(settings)
    await ingest.start()
    assert ingest.pipeline is not None and ingest.mqtt is not None
    ingest.pipeline.subscribe(alerts.accept)
    await asyncio.wait_for(ingest.mqtt.connected.wait(), 10)
    try:
        pub = await publisher(servers.mqtt_url)
        # The exceeding hour, one reading per message, all sent at one instant of the station's
        # clock (the limiter counts that clock): only the first is within the limit. Stored
        # together, the twelve would make a complete hour and an exceedance.
        sent_at = an_hour_ago() + timedelta(hours=1, minutes=1)
        for reading in cod_hour(an_hour_ago(), 150.0):
            body = json.loads(message("WW1", [reading]))
            body["time"] = sent_at.isoformat()
            pub.publish("stations/WW1/data", json.dumps(body).encode(), qos=1)
        await wait_until(
            lambda: holds(
                database_url,
                "SELECT count(*) = 11 FROM rejections WHERE reason = 'rate_limited'",
            )
        )
        await pub.disconnect()
        await wait_until(lambda: judged(database_url))
    finally:
        await ingest.stop()
        await alerts.stop()
    assert await fetch(database_url, "SELECT count(*) FROM readings") == [(1,)]
    assert await fetch(database_url, "SELECT count(*) FROM alerts") == [(0,)]
    assert alerts.metrics.readings._value.get() == 1  # the engine saw the stored reading only


class Receiver:
    """A webhook receiver on a chosen port, recording every delivered event."""

    def __init__(self, port: int) -> None:
        self.events: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.events.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seen(self) -> list[tuple[int, str]]:
        return [(e["alert_id"], e["event"]) for e in self.events]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def webhook_alerts_file(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(
        f"""
notifications:
  channels:
    - {{name: hook, type: webhook, url: "http://127.0.0.1:{port}/hook", secret: test-secret,
       max_attempts: 2, backoff_s: 0.05}}
  routes:
    - {{channels: [hook]}}
""",
        encoding="utf-8",
    )
    return path


async def test_an_acknowledge_or_assign_made_anywhere_reaches_the_webhook(
    make_settings: Any, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    receiver = Receiver(port)
    settings = make_settings(alerts_tick_s=3600, alerts_file=webhook_alerts_file(tmp_path, port))
    svc = AlertService(settings)
    await svc.start()
    try:
        readings = [
            Reading("WW1", "COD", t, v, Status.MEASURING)
            for _, v, t, _ in cod_hour(an_hour_ago(), 150.0)
        ]
        [opened] = await svc.process("WW1", readings, datetime.now(UTC))
        # As the API does it: its own connection, straight to the store.
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await AlertStore(conn, {}).act(
                opened.alert_id, EventType.ACKNOWLEDGED, "op.an", "đã gọi", datetime.now(UTC)
            )
            await AlertStore(conn, {}).assign(
                opened.alert_id, "op.an", "op.hai", "ra trạm", datetime.now(UTC)
            )
        await wait_until(lambda: _value(len(receiver.events) == 3))
    finally:
        await svc.stop()
        receiver.stop()
    assert receiver.seen() == [
        (opened.alert_id, "opened"),
        (opened.alert_id, "acknowledged"),
        (opened.alert_id, "assigned"),
    ]
    assert receiver.events[1]["actor"] == "op.an" and receiver.events[1]["note"] == "đã gọi"
    assigned = receiver.events[2]
    assert (assigned["actor"], assigned["note"]) == ("op.an", "ra trạm")
    assert (assigned["details"]["assignee"], assigned["state"]) == ("op.hai", "acknowledged")


async def _value(value: Any) -> Any:
    return value


async def _when(report: Any, test: Any) -> Any:
    """The awaited report if ``test`` holds for it, else None (for wait_until)."""
    value = await report
    return value if test(value) else None


def alerts_process(settings: Any, alerts_file: Path | None, client_id: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "QUANTRAC_DATABASE_URL": settings.database_url,
        "QUANTRAC_MQTT_URL": settings.mqtt_url,
        "QUANTRAC_STATIONS_FILE": str(settings.stations_path),
        "QUANTRAC_MQTT_CLIENT_ID": client_id,
        "QUANTRAC_HTTP_PORT": "0",
        "QUANTRAC_ALERTS_TICK_S": "3600",
        "QUANTRAC_ALERTS_LEASE_S": "2",
        "QUANTRAC_ALERTS_PARTITIONS": "8",
        "QUANTRAC_LOG_LEVEL": "WARNING",
    }
    if alerts_file is not None:
        env["QUANTRAC_ALERTS_FILE"] = str(alerts_file)
    return subprocess.Popen(
        [sys.executable, "-m", "quantrac.cli.main", "alerts"], cwd=ROOT, env=env
    )


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


async def test_a_kill_between_commit_and_delivery_still_delivers(
    make_settings: Any, database_url: str, tmp_path: Path
) -> None:
    port = free_port()  # nobody listens yet: the delivery cannot happen before the kill
    settings = make_settings(alerts_tick_s=3600)
    alerts_file = webhook_alerts_file(tmp_path, port)
    worker = alerts_process(settings, alerts_file, "kill-test")
    try:
        await wait_until(
            lambda: holds(database_url, "SELECT count(*) > 0 FROM stream_workers"), timeout=30
        )
        readings = [
            Reading("WW1", "COD", t, v, Status.MEASURING)
            for _, v, t, _ in cod_hour(an_hour_ago(), 150.0)
        ]
        await store_committed(database_url, readings)
        await wait_until(lambda: holds(database_url, "SELECT count(*) = 1 FROM alert_events"))
    finally:
        kill(worker)
    [(alert_id,)] = await fetch(database_url, "SELECT id FROM alerts")
    receiver = Receiver(port)
    again = alerts_process(settings, alerts_file, "kill-test")
    try:
        await wait_until(lambda: _value(receiver.seen()), timeout=30)
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(20)
        receiver.stop()
    assert receiver.seen()[0] == (alert_id, "opened")
    assert await fetch(database_url, "SELECT count(*) FROM alert_events") == [(1,)]


async def test_two_workers_split_the_stations_and_survive_the_loss_of_one(
    make_settings: Any, servers: Any, database_url: str
) -> None:
    settings = make_settings(alerts_tick_s=3600, alerts_partitions=8)
    first = alerts_process(settings, None, "worker-a")
    second = alerts_process(settings, None, "worker-b")
    ingest = IngestService(settings)
    workers = {"worker-a-alerts": first, "worker-b-alerts": second}

    async def split() -> list[tuple[str, int]]:
        if not await holds(database_url, "SELECT to_regclass('stream_cursors') IS NOT NULL"):
            return []
        rows = await fetch(
            database_url,
            "SELECT owner, count(*) FROM stream_cursors WHERE name LIKE 'alerts:%%' "
            "AND lease_until > now() GROUP BY owner ORDER BY owner",
        )
        return rows if [n for _, n in rows] == [4, 4] else []

    try:
        assert await wait_until(split, timeout=40) == [
            ("worker-a-alerts", 4),
            ("worker-b-alerts", 4),
        ]
        await ingest.start()
        assert ingest.mqtt is not None
        await asyncio.wait_for(ingest.mqtt.connected.wait(), 10)
        pub = await publisher(servers.mqtt_url)
        start = an_hour_ago()
        pub.publish("stations/WW1/data", message("WW1", cod_hour(start, 150.0)), qos=1)
        await wait_until(lambda: holds(database_url, "SELECT count(*) = 1 FROM alerts"))
        # The worker holding WW1's partition is lost; the other takes its partitions over.
        owner = await ww1_owner(database_url)
        kill(workers.pop(owner))
        [(survivor, _)] = workers.items()
        await wait_until(
            lambda: holds(
                database_url,
                "SELECT count(*) = 8 FROM stream_cursors WHERE name LIKE 'alerts:%%' "
                "AND owner = %s",
                [survivor],
            ),
            timeout=40,
        )
        # The next hour exceeds again: the survivor knows the alert is open (counts a repeat),
        # and a fault opens a new one.
        later = cod_hour(start + timedelta(hours=1), 160.0)
        faults = [("Flow", 0.0, start + timedelta(hours=1), "02")]
        pub.publish("stations/WW1/data", message("WW1", later + faults), qos=1)
        await wait_until(
            lambda: holds(
                database_url,
                "SELECT count(*) = 2 FROM alerts WHERE station_id = 'WW1'",
            ),
            timeout=30,
        )
        await wait_until(
            lambda: holds(database_url, "SELECT count = 2 FROM alerts WHERE kind = 'exceedance'")
        )
        await pub.disconnect()
    finally:
        await ingest.stop()
        for process in workers.values():
            process.send_signal(signal.SIGTERM)
            process.wait(20)
    rows = await fetch(database_url, "SELECT kind, param, state, count FROM alerts ORDER BY kind")
    assert rows == [("device_fault", "Flow", "open", 1), ("exceedance", "COD", "open", 2)]
    assert Kind.EXCEEDANCE.value == "exceedance"


async def ww1_owner(database_url: str) -> str:
    from quantrac.alerts.partitions import cursor_name, partition_of

    [(owner,)] = await fetch(
        database_url,
        "SELECT owner FROM stream_cursors WHERE name = %s",
        [cursor_name(partition_of("WW1", 8), 8)],
    )
    return str(owner)


async def test_a_tt10_fault_line_without_value_is_stored_and_raises_a_device_fault(
    make_settings: Any, database_url: str, tmp_path: Path
) -> None:
    """`TSS<TAB><TAB>mg/L<TAB>…<TAB>02`: the analyser's fault, kept and alerted; the same empty
    value with status 00 stays a rejection with its reason."""
    drop = tmp_path / "drop"
    drop.mkdir()
    settings = make_settings(alerts_tick_s=3600)
    alerts = AlertService(settings)
    await alerts.start()
    ingest = IngestService(settings)
    await ingest.start_without_mqtt()
    assert ingest.pipeline is not None and ingest.receiver is not None
    ingest.pipeline.subscribe(alerts.accept)
    at = an_hour_ago()
    stamp = tt10.format_timestamp(at, VIETNAM)
    later = tt10.format_timestamp(at + timedelta(minutes=5), VIETNAM)
    (drop / f"BacGiang_KCNThu_NT01_{stamp}.txt").write_text(
        f"TSS\t\tmg/L\t{stamp}\t02\r\nCOD\t\tmg/L\t{stamp}\t00\r\nTSS\t\tmg/L\t{later}\t01\r\n",
        encoding="utf-8",
    )
    try:
        [outcome] = await ingest_folder(drop, ingest.receiver)
        await wait_until(lambda: judged(database_url))
        # Delivered twice: the status records are duplicates, nothing is stored twice.
        [again] = [
            await _redelivered(drop, ingest, outcome.moved_to, f"BacGiang_KCNThu_NT01_{later}.txt")
        ]
    finally:
        await ingest.stop()
        await alerts.stop()
    assert outcome.stored == 2
    assert [(p.reason.value, p.field) for p in outcome.problems] == [
        ("value_not_number", "line 2.value")
    ]
    assert "status" in outcome.problems[0].detail
    assert (again.stored, again.duplicates) == (0, 2)
    assert await fetch(
        database_url, "SELECT param, measured_at, status FROM instrument_status ORDER BY status"
    ) == [("TSS", at + timedelta(minutes=5), 1), ("TSS", at, 2)]
    assert await fetch(database_url, "SELECT count(*) FROM readings") == [(0,)]
    assert await alert_kinds(database_url) == {("device_fault", "TSS")}


async def _redelivered(drop: Path, ingest: IngestService, done: Path, name: str) -> Any:
    assert ingest.receiver is not None
    (drop / name).write_bytes(done.read_bytes())
    [outcome] = await ingest_folder(drop, ingest.receiver)
    return outcome


async def test_a_failing_consumer_never_blocks_storage_and_is_retried_from_its_cursor(
    make_settings: Any, servers: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`quantrac run` in process: while the alert engine raises on every batch, readings are
    stored all the same, the lag gauge rises and /healthz says degraded; once the fault is gone
    the batch is judged from the cursor (its alert raised once) and health recovers."""
    import httpx

    from quantrac.alerts import service as alert_service
    from quantrac.app import App

    broken = True
    real = alert_service.mark_historical_outputs

    def failing(*args: Any, **kwargs: Any) -> Any:
        if broken:
            raise RuntimeError("injected consumer fault")
        return real(*args, **kwargs)

    monkeypatch.setattr(alert_service, "mark_historical_outputs", failing)
    port = free_port()
    app = App(
        make_settings(http_port=port, alerts_tick_s=3600, alerts_lease_s=1.5, alerts_max_lag_s=0.5)
    )
    await app.start()
    base = f"http://127.0.0.1:{port}"

    async def health() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            answer = await client.get("/healthz")
            return dict(answer.json())

    async def lag_batches() -> float:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            text = (await client.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith("quantrac_alerts_lag_batches "):
                return float(line.split()[1])
        raise AssertionError("quantrac_alerts_lag_batches not in /metrics")

    try:
        assert app.service.mqtt is not None and app.alerts is not None
        await asyncio.wait_for(app.service.mqtt.connected.wait(), 10)
        pub = await publisher(servers.mqtt_url)
        pub.publish("stations/WW1/data", message("WW1", cod_hour(an_hour_ago(), 150.0)), qos=1)
        await pub.disconnect()
        await wait_until(
            lambda: holds(database_url, "SELECT count(*) = 12 FROM readings"), timeout=20
        )
        registry = app.service.metrics.registry
        await wait_until(
            lambda: _value(registry.get_sample_value("quantrac_alerts_errors_total")), timeout=20
        )
        assert await wait_until(lag_batches, timeout=20) >= 1
        degraded = await wait_until(
            lambda: _when(health(), lambda r: r["alerts_lagging"]), timeout=20
        )
        assert not await judged(database_url)
        assert await alert_kinds(database_url) == set()
        broken = False
        await wait_until(lambda: judged(database_url), timeout=30)
        recovered = await wait_until(
            lambda: _when(health(), lambda r: not r["alerts_lagging"]), timeout=20
        )
        assert await lag_batches() == 0
    finally:
        await app.stop()
    assert await alert_kinds(database_url) == {("exceedance", "COD")}
    assert degraded["status"] == "degraded" and degraded["alerts_lagging"] is True
    assert recovered["status"] == "ok" and recovered["alerts_lagging"] is False
    rows = await fetch(database_url, "SELECT count(*) FROM alerts WHERE station_id = 'WW1'")
    assert rows[0][0] == 1
