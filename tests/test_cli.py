"""The `quantrac` command: each subcommand against the real servers, and `run` as a process."""

from __future__ import annotations

import asyncio
import csv
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from quantrac.app import App
from quantrac.cli.main import main
from quantrac.core.contract import Reading, Status
from quantrac.core.db import connect
from quantrac.ingest.service import IngestService, upgrade_database
from quantrac.ingest.writer import BatchWriter, Item
from quantrac.localservers import free_port
from tests.conftest import CONFIG, TEST_REGISTRY, TEST_REGISTRY_GROWN, fetch, publisher, wait_until

pytestmark = pytest.mark.integration


def test_invalid_setting_stops_start_up_naming_it(monkeypatch, capsys):
    monkeypatch.setenv("QUANTRAC_BATCH_SIZE", "many")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "QUANTRAC_BATCH_SIZE" in err and "must be an integer" in err and "'many'" in err


def test_db_upgrade_is_idempotent(env, capsys):
    assert main(["db", "upgrade"]) == 0
    out = capsys.readouterr().out
    # Every component, through the one runner and version table.
    assert "migrations applied: ingest 1, 2, 3, 4, 5, 6" in out and "alerts 1, 2, 3" in out
    assert "evidence 1" in out and "report_delivery 1" in out
    assert main(["db", "upgrade"]) == 0
    assert "none (already up to date)" in capsys.readouterr().out


def test_a_report_on_a_schema_not_upgraded_asks_for_db_upgrade_and_changes_nothing(env, capsys):
    asyncio.run(upgrade_database(env))  # the core only, as an older release left it
    period = ["--from", "2026-11-01T00:00+07:00", "--to", "2026-11-02T00:00+07:00"]
    assert main(["report", "completeness", "--station", "WW1", *period]) == 1
    assert "quantrac db upgrade" in capsys.readouterr().err
    with psycopg.connect(env.database_url) as conn:
        created = conn.execute("SELECT to_regclass('alerts') IS NOT NULL").fetchone()
    assert created == (False,)


def test_older_version_tables_are_folded_into_one(env, capsys):
    from quantrac.api import schema as api_schema

    async def previous_release() -> None:
        # What a database of the previous release held: one version table per component.
        async with await psycopg.AsyncConnection.connect(env.database_url) as conn:
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute(
                "CREATE TABLE api_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await api_schema.MIGRATIONS[0][2](conn)
            await conn.execute("INSERT INTO api_migrations (version, name) VALUES (1, 'users')")
            await conn.commit()

    asyncio.run(previous_release())
    assert main(["db", "upgrade"]) == 0
    out = capsys.readouterr().out
    assert "api 1" not in out  # known as applied, not run again
    with psycopg.connect(env.database_url) as conn:
        rows = conn.execute(
            "SELECT component, version FROM schema_migrations WHERE component = 'api'"
        ).fetchall()
        left = conn.execute("SELECT to_regclass('api_migrations')").fetchone()
    assert rows[0] == ("api", 1) and left == (None,)


def test_stations_check(tmp_path, capsys):
    assert main(["stations", "check", str(CONFIG / "stations.yaml")]) == 0
    assert "9 stations OK (3 air, 2 emission, 4 wastewater)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEST_REGISTRY.replace("kind: wastewater", "kind: sewage"))
    assert main(["stations", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "stations[1].kind: must be one of air, wastewater, emission" in err


async def _store(settings, readings: list[Reading]) -> None:
    await upgrade_database(settings)
    async with await connect(settings) as conn:
        writer = BatchWriter(conn, "postgresql")
        await writer.prepare()
        item = Item(datetime.now(UTC), "WW1", "t", "mqtt", None, "", readings, [])
        await writer.write([item])


def test_export_readings_csv_and_json(env, tmp_path, capsys):
    t = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    asyncio.run(
        _store(
            env,
            [
                Reading("WW1", "COD", t, 61.5, Status.MEASURING),
                Reading("WW1", "pH", t, 7.2, Status.CALIBRATING),
                Reading("WW1", "COD", t + timedelta(days=2), 70.0, Status.MEASURING),
            ],
        )
    )
    window = [
        "--station",
        "WW1",
        "--from",
        "2026-11-20T08:00:00+07:00",
        "--to",
        "2026-11-21T00:00:00Z",
    ]
    assert main(["export", "readings", *window]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["param"], r["time"], r["value"], r["status"]) for r in rows] == [
        ("COD", "2026-11-20T03:00:00+00:00", "61.5", "00"),
        ("pH", "2026-11-20T03:00:00+00:00", "7.2", "01"),
    ]
    assert "2 readings exported" in err
    target = tmp_path / "out.jsonl"
    assert (
        main(
            ["export", "readings", *window, "--param", "pH", "--format", "json", "-o", str(target)]
        )
        == 0
    )
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(x["param"], x["value"], x["status"]) for x in lines] == [("pH", 7.2, "01")]


async def test_metrics_and_health_endpoints(make_settings, servers):
    port = free_port()
    app = App(make_settings(http_port=port))
    await app.start()
    try:
        pub = await publisher(servers.mqtt_url)
        moment = (datetime.now(UTC) - timedelta(minutes=3)).isoformat()
        pub.publish(
            "stations/AIR1/data",
            json.dumps(
                {
                    "station": "AIR1",
                    "time": moment,
                    "readings": [
                        {"param": "PM10", "value": 31, "unit": "µg/m3"},
                        {"param": "PM10x", "value": 1, "unit": "µg/m3"},
                    ],
                }
            ).encode(),
            qos=1,
        )

        def get(path: str) -> tuple[int, str]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as response:
                return response.status, response.read().decode()

        def get_direct(path: str) -> tuple[int, str]:
            # No redirect followed: Prometheus scrapes /metrics itself.
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                return response.status, response.read().decode()
            finally:
                conn.close()

        async def stored() -> bool:
            _, text = await asyncio.to_thread(get_direct, "/metrics")
            return "quantrac_readings_stored_total 1.0" in text

        await wait_until(stored)
        status, text = await asyncio.to_thread(get_direct, "/metrics")
        assert status == 200
        assert 'quantrac_rejections_total{reason="param_unknown"} 1.0' in text
        assert (
            'quantrac_station_rejections_total{reason="param_unknown",station="AIR1"} 1.0' in text
        )
        # Every kind and severity of open alert is there, zero included (Alertmanager pages on
        # quantrac_alerts_open{kind="exceedance"} > 0).
        assert 'quantrac_alerts_open{kind="exceedance",severity="critical"} 0.0' in text
        assert 'quantrac_alerts_open{kind="data_loss",severity="info"} 0.0' in text
        assert 'quantrac_station_last_reading_timestamp_seconds{station="AIR1"}' in text
        status, body = await asyncio.to_thread(get, "/healthz")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok" and health["broker_connected"]
        assert health["storage_backend"] == "postgresql" and health["stations"] == 2
        await pub.disconnect()
    finally:
        await app.stop()


async def test_registry_reloads_when_the_file_changes(make_settings, database_url):
    settings = make_settings(registry_reload_s=1)
    service = IngestService(settings)
    service.load_configuration()
    await service.start_without_mqtt()
    try:
        path = settings.stations_path
        path.write_text(TEST_REGISTRY_GROWN)
        os.utime(path, (1, 1))
        assert service.reload_registry_if_changed()
        assert set(service.current_registry().stations) == {"AIR1", "WW1", "AIR2", "WW2"}
        await wait_until(lambda: fetch(database_url, "SELECT 1 FROM stations HAVING count(*) = 4"))
        path.write_text("stations: [{id: broken}]\n")
        os.utime(path, (2, 2))
        assert not service.reload_registry_if_changed()
        assert "AIR2" in service.current_registry().stations
    finally:
        await service.stop()


def test_run_flushes_and_acknowledges_on_sigterm(env, servers):
    """`quantrac run` as a real process: SIGTERM with messages in flight loses none."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantrac.cli.main", "run"],
        env={
            **os.environ,
            "QUANTRAC_HTTP_PORT": str(port),
            "QUANTRAC_BATCH_MAX_LATENCY_MS": "2000",
            "QUANTRAC_BATCH_SIZE": "100000",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).parents[1],
    )
    try:

        async def scenario() -> None:
            async def ready() -> bool:
                # Its MQTT session and subscription in place: /healthz says so.
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as r:
                        return bool(json.loads(r.read())["broker_connected"])
                except OSError:
                    return False

            await wait_until(ready, timeout=60)
            pub = await publisher(servers.mqtt_url)
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
            for i in range(50):
                pub.publish(
                    "stations/AIR1/data",
                    json.dumps(
                        {
                            "station": "AIR1",
                            "time": (start + timedelta(minutes=i)).isoformat(),
                            "readings": [{"param": "NO2", "value": i, "unit": "µg/m3"}],
                        }
                    ).encode(),
                    qos=1,
                )
            await asyncio.sleep(0.5)  # received, waiting in the 2-second batch window
            assert (await fetch(env.database_url, "SELECT count(*) FROM readings"))[0][0] == 0
            proc.send_signal(signal.SIGTERM)
            await pub.disconnect()

        asyncio.run(scenario())
        assert proc.wait(30) == 0
        count = asyncio.run(fetch(env.database_url, "SELECT count(*) FROM readings"))
        assert count == [(50,)]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# --- the admin commands in the reader's language (issue 13 item 6) --------------------------


def test_admin_commands_speak_vietnamese_by_default_and_english_on_request(
    env, monkeypatch, capsys
):
    """`period`, `readings`, `maintenance` and `users` say their summaries and refusals in
    `--lang vi|en` (default vi, as `check` and `report`), times dd/MM/yyyy HH:mm with the zone."""
    period = ["--from", "2026-10-01T07:00+07:00", "--to", "2026-10-02T07:00+07:00"]
    lock = ["period", "lock", "--station", "WW1", *period, "--reason", "đã gửi Sở"]

    def said(argv: list[str], code: int = 0) -> tuple[str, str]:
        assert main(argv) == code, argv
        out, err = capsys.readouterr()
        # stderr also carries the log (migrations applied): the refusal is its last line.
        return out.strip(), (err.strip().splitlines() or [""])[-1]

    assert said(["period", "lock", "--station", "NOPE", *period, "--reason", "x"], 2)[1] == (
        "quantrac period lock: Không có trạm 'NOPE'."
    )
    assert said([*lock[:2], "--station", "NOPE", *period, "--reason", "x", "--lang", "en"], 2)[
        1
    ] == ("quantrac period lock: unknown station 'NOPE'")
    assert said(lock)[0] == (
        "Khóa 1: WW1, 01/10/2026 07:00 – 02/10/2026 07:00 (giờ Việt Nam, UTC+07:00) đã được khóa."
    )
    assert "đang khóa" in said(["period", "list"])[0]
    assert "  active  " in said(["period", "list", "--lang", "en"])[0]
    assert said(["readings", "held"])[0] == "Không có số liệu nào bị giữ lại do khóa kỳ."
    assert said(["readings", "held", "--lang", "en"])[0] == "no readings held back by a lock"
    correct = ["readings", "correct", "--station", "WW1", "--param", "COD"]
    correct += ["--time", "2026-10-01T08:00+07:00"]
    refused = said([*correct, "--value", "1", "--delete", "--reason", "x"], 2)[1]
    assert refused == "quantrac readings correct: Hãy chọn --value (kèm --status) hoặc --delete."
    assert said([*correct, "--value", "64.5", "--reason", "phân tích lại"])[0] == (
        "Đã thêm số liệu WW1 COD lúc 01/10/2026 08:00 (giờ Việt Nam, UTC+07:00), có ghi vết."
    )
    assert said([*correct, "--value", "65", "--reason", "again", "--lang", "en"])[0] == (
        "update: WW1 COD 01/10/2026 08:00 (Vietnam time, UTC+07:00) (audited)"
    )
    assert said(["period", "unlock", "1"])[0] == "Đã gỡ khóa 1 (việc gỡ được ghi lại)."
    assert said(["period", "unlock", "1"], 2)[1] == (
        "quantrac period unlock: Không có khóa nào đang hiệu lực với số 1."
    )
    assert said(["period", "list", "--lang", "en"])[0] == "no locks"

    window = ["--from", "2026-12-03T08:00+07:00", "--to", "2026-12-03T10:00+07:00"]
    add = ["maintenance", "add", "--station", "WW1", "--kind", "calibration", "--param", "COD"]
    assert said([*add, *window, "--reason", "hiệu chuẩn COD"])[0] == (
        "Mục nhật ký 1: hiệu chuẩn trạm WW1 (COD), 03/12/2026 08:00 – 03/12/2026 10:00"
        " (giờ Việt Nam, UTC+07:00)."
    )
    backwards = ["--from", window[3], "--to", window[1]]
    assert said([*add, *backwards, "--reason", "x"], 2)[1] == (
        "quantrac maintenance add: Thời điểm kết thúc phải sau thời điểm bắt đầu."
    )
    assert said([*add, *backwards, "--reason", "x", "--lang", "en"], 2)[1] == (
        "quantrac maintenance add: the end of the window must be after its start"
    )
    assert said(["maintenance", "cancel", "1"])[0] == (
        "Đã hủy mục nhật ký 1 (vẫn giữ trong nhật ký, có đánh dấu)."
    )
    assert said(["maintenance", "cancel", "1", "--lang", "en"], 2)[1] == (
        "quantrac maintenance cancel: no log entry 1 (or it is cancelled already)"
    )
    empty = ["maintenance", "list", "--from", "2026-01-01T00:00+07:00"]
    empty += ["--to", "2026-01-02T00:00+07:00"]
    assert said(empty)[0] == "Không có mục nhật ký nào trong khoảng thời gian này."
    assert said(["maintenance", "list", "--station", "NOPE"], 2)[1] == (
        "quantrac maintenance list: Không có trạm 'NOPE'."
    )

    monkeypatch.delenv("QUANTRAC_NEW_PASSWORD", raising=False)
    assert said(["users", "add", "an", "--role", "operator"], 2)[1] == (
        "Hãy nhập mật khẩu qua đầu vào chuẩn (--password-stdin) hoặc biến môi trường"
        " QUANTRAC_NEW_PASSWORD."
    )
    monkeypatch.setenv("QUANTRAC_NEW_PASSWORD", "mat-khau-thu-1")
    assert said(["users", "add", "an", "--role", "operator"])[0] == (
        "Đã thêm người dùng an, vai trò operator."
    )
    assert said(["users", "disable", "an"])[0] == "Người dùng an: đã khóa tài khoản."
    assert "đã khóa" in said(["users", "list"])[0] and "mọi trạm" in said(["users", "list"])[0]
    assert said(["users", "enable", "an", "--lang", "en"])[0] == "user an: enabled"
    assert said(["users", "revoke", "an"])[0] == (
        "Người dùng an: đã thu hồi 0 phiên đăng nhập (token)."
    )
    assert said(["users", "revoke", "nobody"], 2)[1] == (
        "quantrac users revoke: Không có người dùng 'nobody'."
    )
    assert said(["users", "scope", "an", "--unrestricted"])[0] == (
        "Người dùng an: phạm vi: mọi trạm."
    )
