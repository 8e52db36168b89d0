"""Maintenance windows and the station log: suppression rules, flags, hold-off and historical
readings (pure), the CLI and the API against real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from quantrac.alerts.maintenance import (
    SUPPRESSED_KINDS,
    MaintenanceWindow,
    WindowError,
    check_window,
    in_holdoff,
    is_historical,
    reading_flag,
    suppressed,
)
from quantrac.alerts.model import STATION_WIDE, Kind
from quantrac.cli.main import main
from tests.conftest import fetch
from tests.test_api import api as api_service  # noqa: F401  (the fixture)
from tests.test_api import login

T0 = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)  # 08:00 in Hà Nội
HOUR = timedelta(hours=1)
WHOLE = MaintenanceWindow(1, "WW1", "maintenance", T0, T0 + 2 * HOUR, "thay bơm", "op")
COD_CAL = MaintenanceWindow(
    2, "WW1", "calibration", T0, T0 + HOUR, "hiệu chuẩn COD", "op", frozenset({"COD"})
)
DECLARED = {"WW1": ["Flow", "pH", "COD", "TSS"], "AIR1": ["PM10"]}


def test_windows_suppress_fault_calibration_and_data_loss_only():
    assert {Kind.DEVICE_FAULT, Kind.CALIBRATION, Kind.DATA_LOSS} == SUPPRESSED_KINDS
    inside = T0 + 30 * timedelta(minutes=1)
    for kind in SUPPRESSED_KINDS:
        assert suppressed([WHOLE], "WW1", "pH", kind, inside) == WHOLE
    # Planned work does not excuse an exceedance, nor a stuck or impossible value.
    for kind in (Kind.EXCEEDANCE, Kind.WARNING, Kind.STUCK_VALUE, Kind.OUT_OF_RANGE):
        assert suppressed([WHOLE], "WW1", "pH", kind, inside) is None
    # Edges: start included, end excluded; another station is not covered.
    assert suppressed([WHOLE], "WW1", "pH", Kind.DEVICE_FAULT, T0) == WHOLE
    assert suppressed([WHOLE], "WW1", "pH", Kind.DEVICE_FAULT, T0 + 2 * HOUR) is None
    assert suppressed([WHOLE], "AIR1", "PM10", Kind.DATA_LOSS, inside) is None
    # A window of some parameters covers those only, and never a station-wide silence.
    assert suppressed([COD_CAL], "WW1", "COD", Kind.CALIBRATION, inside) == COD_CAL
    assert suppressed([COD_CAL], "WW1", "pH", Kind.CALIBRATION, inside) is None
    assert suppressed([COD_CAL], "WW1", STATION_WIDE, Kind.DATA_LOSS, inside) is None
    assert suppressed([WHOLE], "WW1", STATION_WIDE, Kind.DATA_LOSS, inside) == WHOLE


def test_readings_are_flagged_and_held_off_after_calibration():
    ten = timedelta(minutes=10)
    assert reading_flag([WHOLE, COD_CAL], "WW1", "COD", T0) == "maintenance"
    assert reading_flag([COD_CAL], "WW1", "COD", T0 + 5 * ten) == "calibration"
    assert reading_flag([COD_CAL], "WW1", "COD", T0 + HOUR) is None  # no hold-off configured
    assert reading_flag([COD_CAL], "WW1", "COD", T0 + HOUR, holdoff=3 * ten) == "holdoff"
    assert reading_flag([COD_CAL], "WW1", "COD", T0 + HOUR + 3 * ten, holdoff=3 * ten) is None
    assert reading_flag([COD_CAL], "WW1", "pH", T0 + HOUR, holdoff=3 * ten) is None
    # A hold-off also follows the analyser's own status-01 readings, window or not.
    last_01 = T0 + 4 * HOUR
    assert in_holdoff([], "WW1", "TSS", last_01 + ten, 3 * ten, last_calibration_reading=last_01)
    assert not in_holdoff([], "WW1", "TSS", last_01 + 4 * ten, 3 * ten, last_01)
    assert not in_holdoff([COD_CAL], "WW1", "COD", T0 + HOUR, timedelta(0))


def test_historical_readings():
    day = timedelta(days=1)
    assert is_historical(T0 - 3 * day, T0, after=2 * day)
    assert not is_historical(T0 - day, T0, after=2 * day)
    assert not is_historical(T0 - 30 * day, T0, after=None)
    assert is_historical(T0, T0, after=None, marked=True)  # ingest-files --historical


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"station_id": "NOPE"}, "unknown station 'NOPE'"),
        ({"end": T0 - HOUR}, "end of the window must be after its start"),
        ({"end": T0}, "end of the window must be after its start"),
        ({"end": T0 + timedelta(days=40)}, "at most 31 days"),
        ({"params": ["NH4"]}, "station WW1 has no parameter NH4"),
        ({"kind": "party"}, "kind must be one of"),
        ({"reason": "  "}, "give a reason"),
        ({"start": datetime(2026, 12, 3, 8)}, "with their offset"),
    ],
)
def test_bad_windows_are_refused_with_the_reason(change, message):
    values = {
        "station_id": "WW1",
        "kind": "maintenance",
        "start": T0,
        "end": T0 + HOUR,
        "params": ["COD"],
        "reason": "thay màng lọc",
        "stations": DECLARED,
    }
    values.update(change)
    with pytest.raises(WindowError, match=message):
        check_window(**values)  # type: ignore[arg-type]


@pytest.mark.integration
def test_cli_plans_lists_and_cancels_windows(env, capsys):
    window = ["--from", "2026-12-03T08:00+07:00", "--to", "2026-12-03T10:00+07:00"]
    add = ["maintenance", "add", "--lang", "en", "--station", "WW1", *window]
    assert main([*add, "--param", "COD", "--kind", "calibration", "--reason", "hiệu chuẩn"]) == 0
    assert "log entry 1: calibration of WW1 (COD)" in capsys.readouterr().out
    assert main([*add, "--reason", "thay bơm"]) == 0
    capsys.readouterr()
    backwards = ["--from", window[3], "--to", window[1]]
    assert main([*add[:4], "--station", "WW1", *backwards, "--reason", "x"]) == 2
    assert "after its start" in capsys.readouterr().err
    assert main([*add[:4], "--station", "NOPE", *window, "--reason", "x"]) == 2
    assert "unknown station 'NOPE'" in capsys.readouterr().err
    span = ["--from", "2026-12-01T00:00+07:00", "--to", "2026-12-05T00:00+07:00"]
    assert main(["maintenance", "list", "--station", "WW1", *span]) == 0
    out = capsys.readouterr().out
    assert "calibration  COD" in out and "maintenance  *" in out and "thay bơm" in out
    assert main(["maintenance", "cancel", "2"]) == 0
    assert main(["maintenance", "cancel", "2"]) == 2
    capsys.readouterr()
    assert main(["maintenance", "list", *span]) == 0
    assert "thay bơm" not in capsys.readouterr().out
    rows = asyncio.run(
        fetch(env.database_url, "SELECT id, cancelled_by LIKE 'cli%%' FROM station_log ORDER BY id")
    )
    assert rows == [(1, None), (2, True)]


@pytest.mark.integration
async def test_api_station_log(api_service, database_url):  # noqa: F811  (the fixture)
    client, _, _ = api_service
    operator, inspector = await login(client, "op"), await login(client, "insp")
    body = {
        "kind": "repair",
        "from": "2026-12-03T08:00+07:00",
        "to": "2026-12-03T09:30+07:00",
        "params": ["pH"],
        "reason": "thay điện cực pH",
    }
    url = "/api/v1/stations/WW1/log"
    assert (await client.post(url, json=body, headers=inspector)).status_code == 403
    created = await client.post(url, json=body, headers=operator)
    assert created.status_code == 201, created.text
    assert created.json()["params"] == ["pH"] and created.json()["by"] == "op"
    bad = await client.post(url, json={**body, "to": body["from"]}, headers=operator)
    vi = "Thời điểm kết thúc phải sau thời điểm bắt đầu."
    assert bad.status_code == 422 and bad.json()["error"]["message"] == vi
    bad = await client.post(
        url, params={"lang": "en"}, json={**body, "to": body["from"]}, headers=operator
    )
    assert bad.json()["error"]["message"] == "the end of the window must be after its start"
    missing = await client.post("/api/v1/stations/NOPE/log", json=body, headers=operator)
    assert missing.status_code == 404
    listed = await client.get(
        url,
        params={"start": "2026-12-03T00:00+07:00", "end": "2026-12-04T00:00+07:00"},
        headers=inspector,
    )
    assert [e["kind"] for e in listed.json()["items"]] == ["repair"]
    entry = created.json()["id"]
    assert (await client.post(f"/api/v1/log/{entry}/cancel", headers=operator)).status_code == 200
    assert (await client.post(f"/api/v1/log/{entry}/cancel", headers=operator)).status_code == 404
    actions = await fetch(
        database_url, "SELECT action FROM audit_log WHERE action LIKE 'station%%'"
    )
    assert [a for (a,) in actions] == ["station_log.add", "station_log.cancel"]


@pytest.mark.integration
def test_the_inspector_report_shows_the_station_log(env, tmp_path, capsys):
    import csv
    import io
    import json

    assert main(["db", "upgrade"]) == 0  # a report changes no schema
    window = ["--from", "2026-12-03T08:00+07:00", "--to", "2026-12-03T10:00+07:00"]
    base = ["maintenance", "add", "--station", "WW1", *window]
    assert main([*base, "--kind", "replacement", "--param", "pH", "--reason", "điện cực mới"]) == 0
    capsys.readouterr()
    period = ["--from", "2026-12-01T00:00+07:00", "--to", "2026-12-04T00:00+07:00"]
    report = ["report", "exceedances", "--station", "WW1", *period]
    assert main([*report, "--format", "json", "-o", str(tmp_path / "r.json")]) == 0
    doc = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    [entry] = doc["station_log"]
    assert (entry["kind"], entry["params"], entry["reason"]) == (
        "replacement",
        ["pH"],
        "điện cực mới",
    )
    assert entry["from"] == "2026-12-03T08:00:00+07:00"
    assert main([*report, "--format", "csv", "--section", "log", "--lang", "en"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out.lstrip("\ufeff"))))
    assert [(r["Kind"], r["Parameters"], r["Reason"]) for r in rows] == [
        ("Replacement", "pH", "điện cực mới")
    ]
    assert main([*report, "--format", "pdf", "-o", str(tmp_path / "r.pdf")]) == 0
    assert main([*report, "--format", "xlsx", "-o", str(tmp_path / "r.xlsx")]) == 0
    from openpyxl import load_workbook

    sheet = load_workbook(tmp_path / "r.xlsx")["Nhật ký trạm"]
    assert [c.value for c in sheet[2]][1:3] == ["Thay thế thiết bị", "pH"]


def test_transitions_inside_a_window_are_dropped_and_backfill_is_marked_historical():
    from quantrac.alerts.engine import Change, Transition
    from quantrac.alerts.maintenance import apply_windows, mark_historical

    def t(change: Change, kind: Kind, param: str, at: datetime) -> Transition:
        return Transition(change, kind, "WW1", param, at, 1.0, {})

    inside, after = T0 + timedelta(minutes=20), T0 + 3 * HOUR
    batch = [
        t(Change.RAISE, Kind.DEVICE_FAULT, "pH", inside),
        t(Change.RAISE, Kind.EXCEEDANCE, "COD", inside),
        t(Change.CLEAR, Kind.CALIBRATION, "COD", inside),
        t(Change.UPDATE, Kind.DEVICE_FAULT, "pH", after),
    ]
    kept, dropped = apply_windows(batch, [WHOLE])
    assert [(x.kind, x.change) for x in kept] == [
        (Kind.EXCEEDANCE, Change.RAISE),
        (Kind.CALIBRATION, Change.CLEAR),
        (Kind.DEVICE_FAULT, Change.UPDATE),  # the fault still there after the window opens then
    ]
    assert [(x.kind, w.id) for x, w in dropped] == [(Kind.DEVICE_FAULT, 1)]

    old = t(Change.RAISE, Kind.EXCEEDANCE, "COD", T0 - timedelta(days=10))
    fresh = t(Change.RAISE, Kind.EXCEEDANCE, "COD", T0 - timedelta(minutes=5))
    clear = t(Change.CLEAR, Kind.EXCEEDANCE, "COD", T0 - timedelta(days=10))
    marked = mark_historical([old, fresh, clear], T0, after=timedelta(days=2))
    assert [x.details.get("historical") for x in marked] == [True, None, None]
    flagged = mark_historical([fresh], T0, after=None, marked=True)
    assert flagged[0].details == {"historical": True}

    from quantrac.alerts.engine import WindowEvaluated
    from quantrac.alerts.maintenance import mark_historical_outputs

    window = object.__new__(WindowEvaluated)  # passes through untouched, whatever it holds
    mixed = mark_historical_outputs([old, window, fresh], T0, timedelta(days=2))
    assert mixed[1] is window
    assert [m.details.get("historical") for m in (mixed[0], mixed[2])] == [True, None]


def test_exceedances_in_the_calibration_hold_off_are_dropped():
    from quantrac.alerts.engine import Change, Transition
    from quantrac.alerts.maintenance import apply_holdoff

    def t(change: Change, kind: Kind, param: str, at: datetime) -> Transition:
        return Transition(change, kind, "WW1", param, at, 1.0, {})

    settling, settled = T0 + HOUR + timedelta(minutes=10), T0 + HOUR + timedelta(minutes=30)
    batch = [
        t(Change.RAISE, Kind.EXCEEDANCE, "COD", settling),
        t(Change.UPDATE, Kind.WARNING, "COD", settling),
        t(Change.CLEAR, Kind.EXCEEDANCE, "COD", settling),  # a clear always passes
        t(Change.RAISE, Kind.EXCEEDANCE, "pH", settling),  # pH was not calibrated
        t(Change.RAISE, Kind.DEVICE_FAULT, "COD", settling),  # faults are not held off
        t(Change.RAISE, Kind.EXCEEDANCE, "COD", T0 + timedelta(minutes=30)),  # in the window
        t(Change.UPDATE, Kind.EXCEEDANCE, "COD", settled),  # the hold-off is over
    ]
    holdoff = timedelta(minutes=30)
    kept, held = apply_holdoff(batch, [COD_CAL, WHOLE], holdoff)
    assert held == batch[:2]
    assert kept == batch[2:]
    assert apply_holdoff(batch, [COD_CAL], timedelta(0)) == (batch, [])
    # A maintenance window (not a calibration) has no hold-off.
    assert apply_holdoff(batch, [WHOLE], holdoff) == (batch, [])


@pytest.mark.integration
def test_ingest_files_historical_marks_the_committed_batch(env, tmp_path, capsys):
    from quantrac.ingest import stream, tt10
    from quantrac.ingest.files import HISTORICAL_SOURCE

    old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
    stamp = tt10.format_timestamp(old, timezone(timedelta(hours=7)))
    folder = tmp_path / "backlog"
    folder.mkdir()
    (folder / f"BacGiang_KCNThu_NT01_{stamp}.txt").write_bytes(
        f"COD\t160\tmg/L\t{stamp}\t00\r\n".encode()
    )
    assert main(["ingest-files", str(folder), "--historical"]) == 0
    assert "1 readings stored" in capsys.readouterr().out
    [(payload,)] = asyncio.run(fetch(env.database_url, "SELECT payload FROM committed_batches"))
    [item] = stream.decode(1, bytes(payload)).items
    assert item.source == HISTORICAL_SOURCE and item.readings[0].measured_at == old


@pytest.mark.integration
def test_readings_in_a_window_are_exported_flagged_not_hidden(env, capsys, monkeypatch):
    import csv
    import io

    from quantrac.core.contract import Reading, Status
    from quantrac.core.db import connect
    from quantrac.ingest.service import upgrade_database
    from quantrac.ingest.writer import BatchWriter, Item

    async def store() -> None:
        await upgrade_database(env)
        async with await connect(env) as conn:
            writer = BatchWriter(conn, "postgresql")
            await writer.prepare()
            readings = [
                Reading("WW1", p, T0 + timedelta(minutes=m), 7.0, Status(s))
                for m, s in ((-5, 0), (5, 1), (125, 0))
                for p in ("COD", "pH")
            ]
            await writer.write(
                [Item(datetime.now(UTC), "WW1", "t", "mqtt", None, "", readings, [])]
            )

    asyncio.run(store())
    window = ["--from", "2026-12-03T08:00+07:00", "--to", "2026-12-03T10:00+07:00"]
    base = ["maintenance", "add", "--station", "WW1", *window, "--reason", "hiệu chuẩn"]
    assert main([*base, "--kind", "calibration", "--param", "COD"]) == 0
    capsys.readouterr()
    span = ["--from", "2026-12-03T07:00+07:00", "--to", "2026-12-03T11:00+07:00"]
    assert main(["export", "readings", "--station", "WW1", *span]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["param"], r["time"][11:16], r["status"], r["flag"]) for r in rows] == [
        ("COD", "00:55", "00", ""),
        ("pH", "00:55", "00", ""),
        ("COD", "01:05", "01", "calibration"),
        ("pH", "01:05", "01", ""),
        ("COD", "03:05", "00", ""),
        ("pH", "03:05", "00", ""),
    ]
    # With a 30-minute calibration hold-off, COD five minutes after the window is flagged so.
    monkeypatch.setenv("QUANTRAC_ALERTS_HOLDOFF_MINUTES", "30")
    assert main(["export", "readings", "--station", "WW1", *span]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["flag"] for r in rows if r["time"][11:16] == "03:05"] == ["holdoff", ""]
    # A span that starts inside the hold-off still sees the calibration that caused it.
    late = ["--from", "2026-12-03T10:01+07:00", "--to", "2026-12-03T11:00+07:00"]
    assert main(["export", "readings", "--station", "WW1", *late]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["param"], r["flag"]) for r in rows] == [("COD", "holdoff"), ("pH", "")]


@pytest.mark.integration
async def test_the_alert_service_skips_planned_faults_and_marks_backfill_historical(
    make_settings, database_url
):
    from quantrac.alerts import station_log
    from quantrac.alerts.model import EventType
    from quantrac.alerts.notify.outbox import targets
    from quantrac.alerts.service import AlertService
    from quantrac.core.contract import Reading, Status
    from tests.test_alerts_service import cod_hour

    settings = make_settings(alerts_tick_s=3600)
    svc = AlertService(settings)
    await svc.start()
    try:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        start = now - timedelta(hours=1)
        async with await psycopg_connect(database_url) as conn:
            await station_log.upgrade(conn)
            await station_log.add_entry(
                conn, "WW1", "repair", start, now, ["pH"], "thay điện cực", "op"
            )
            await conn.commit()
        faulty = [
            Reading("WW1", "pH", start + timedelta(minutes=5 * i), 7.0, Status.FAULT)
            for i in range(3)
        ]
        assert await svc.process("WW1", faulty, now) == []  # planned: no fault alert
        # The same fault on a parameter the window does not cover opens its alert.
        tss = [Reading("WW1", "TSS", r.measured_at, 10.0, Status.FAULT) for r in faulty]
        events = await svc.process("WW1", tss, now)
        assert {(e.kind, e.param) for e in events} == {(Kind.DEVICE_FAULT, "TSS")}
        assert events[0].event is EventType.OPENED

        # Three-day-old readings above the limit: recorded as historical, sent nowhere.
        old = now.replace(minute=0) - timedelta(days=3)
        backlog = [
            Reading("WW1", "COD", t, v, Status.MEASURING) for _, v, t, _ in cod_hour(old, 150.0)
        ]
        opened = [e for e in await svc.process("WW1", backlog, now) if e.kind is Kind.EXCEEDANCE]
        assert opened and all(e.details.get("historical") for e in opened)
        assert svc.outbox is not None
        assert all(targets(e, svc.outbox.routes) == [] for e in opened)
        assert targets(events[0], svc.outbox.routes) != []  # a live alert still goes out
    finally:
        await svc.stop()


async def psycopg_connect(url: str):
    import psycopg

    return await psycopg.AsyncConnection.connect(url)


@pytest.mark.integration
async def test_the_alert_service_holds_off_exceedances_after_a_calibration(
    make_settings, database_url
):
    from quantrac.alerts import station_log
    from quantrac.alerts.model import EventType
    from quantrac.alerts.service import AlertService
    from quantrac.core.contract import Reading, Status
    from tests.test_alerts_service import cod_hour

    settings = make_settings(alerts_tick_s=3600, alerts_holdoff_minutes=90)
    svc = AlertService(settings)
    await svc.start()
    try:
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        calibrated = now - 4 * HOUR  # the calibration window ends on the hour
        async with await psycopg_connect(database_url) as conn:
            await station_log.upgrade(conn)
            await station_log.add_entry(
                conn, "WW1", "calibration", calibrated - HOUR, calibrated, ["COD"], "chuẩn", "op"
            )
            await conn.commit()

        def hour(start: datetime) -> list[Reading]:
            return [
                Reading("WW1", "COD", t, v, Status.MEASURING)
                for _, v, t, _ in cod_hour(start, 150.0)
            ]

        # The first hour after the calibration is inside the 90-minute hold-off: no alert.
        settling = await svc.process("WW1", hour(calibrated), now)
        assert [e for e in settling if e.kind is Kind.EXCEEDANCE] == []
        # Two hours later the analyser has settled: the same discharge opens its alert.
        events = await svc.process("WW1", hour(calibrated + 2 * HOUR), now)
        opened = [e for e in events if e.kind is Kind.EXCEEDANCE]
        assert [e.event for e in opened] == [EventType.OPENED]
        assert opened[0].param == "COD"
    finally:
        await svc.stop()


@pytest.mark.integration
async def test_the_board_shades_the_calibration_hold_off(make_settings, database_url):
    import httpx

    from quantrac.alerts import station_log
    from quantrac.api.app import ApiService, FileRegistry, build_api
    from quantrac.api.users import add_user
    from quantrac.core.catalog import load_catalog
    from quantrac.core.contract import Reading, Status
    from quantrac.ingest.schema import POSTGRES
    from quantrac.ingest.writer import BatchWriter, Item
    from tests.conftest import CONFIG
    from tests.test_api import PASSWORD

    settings = make_settings(alerts_tick_s=3600, alerts_holdoff_minutes=30)
    catalog = load_catalog(CONFIG / "parameters.yaml")
    service = ApiService(settings, catalog, FileRegistry(settings.stations_path, catalog))
    context = await service.start()
    try:
        async with await psycopg_connect(database_url) as conn:
            await add_user(conn, "insp", "inspector", PASSWORD, "Thanh tra")
            await station_log.upgrade(conn)
            await station_log.add_entry(
                conn, "WW1", "calibration", T0, T0 + HOUR, ["COD"], "hiệu chuẩn", "op"
            )
            writer = BatchWriter(conn, POSTGRES)
            await writer.prepare()
            readings = [
                Reading("WW1", p, T0 + HOUR + timedelta(minutes=m), 50.0, Status.MEASURING)
                for m in (5, 10, 40)
                for p in ("COD", "pH")
            ]
            await writer.write(
                [Item(datetime.now(UTC), "WW1", "t", "mqtt", None, "", readings, [])]
            )
            await conn.commit()
        transport = httpx.ASGITransport(app=build_api(context))
        async with httpx.AsyncClient(transport=transport, base_url="http://quantrac") as client:
            headers = await login(client, "insp")
            span = {"from": T0.isoformat(), "to": (T0 + 3 * HOUR).isoformat()}

            async def flagged(param: str) -> list[dict[str, object]]:
                response = await client.get(
                    "/api/v1/stations/WW1/readings",
                    params={**span, "param": param, "interval": "raw"},
                    headers=headers,
                )
                assert response.status_code == 200, response.text
                return [r for r in response.json()["flagged"] if r["status"] == "holdoff"]

            [run] = await flagged("COD")
            assert run["count"] == 2  # 5 and 10 minutes after; 40 minutes is past the hold-off
            assert run["start"] == (T0 + HOUR).isoformat()
            assert run["end"] == (T0 + HOUR + timedelta(minutes=30)).isoformat()
            assert await flagged("pH") == []  # only COD was calibrated
    finally:
        await service.stop()


def test_the_hold_off_after_each_calibration_is_a_log_entry():
    from quantrac.reports.exceedances import holdoff_entries

    half = timedelta(minutes=30)
    [entry] = holdoff_entries([WHOLE, COD_CAL], half, T0, T0 + 3 * HOUR)
    assert (entry.kind, entry.start, entry.end) == ("holdoff", T0 + HOUR, T0 + HOUR + half)
    assert (entry.id, entry.params, entry.reason) == (COD_CAL.id, COD_CAL.params, COD_CAL.reason)
    assert holdoff_entries([COD_CAL], timedelta(0), T0, T0 + 3 * HOUR) == []
    # A period that starts inside the hold-off still lists it; one that starts after does not.
    assert len(holdoff_entries([COD_CAL], half, T0 + HOUR + HOUR / 4, T0 + 3 * HOUR)) == 1
    assert holdoff_entries([COD_CAL], half, T0 + 2 * HOUR, T0 + 3 * HOUR) == []


@pytest.mark.integration
def test_the_inspector_report_shows_the_calibration_hold_off(env, tmp_path, capsys, monkeypatch):
    import csv
    import io
    import json

    monkeypatch.setenv("QUANTRAC_ALERTS_HOLDOFF_MINUTES", "45")
    assert main(["db", "upgrade"]) == 0
    window = ["--from", "2026-12-03T08:00+07:00", "--to", "2026-12-03T09:00+07:00"]
    base = ["maintenance", "add", "--station", "WW1", *window, "--param", "COD"]
    assert main([*base, "--kind", "calibration", "--reason", "hiệu chuẩn COD"]) == 0
    capsys.readouterr()
    period = ["--from", "2026-12-01T00:00+07:00", "--to", "2026-12-04T00:00+07:00"]
    report = ["report", "exceedances", "--station", "WW1", *period]
    assert main([*report, "--format", "json", "-o", str(tmp_path / "r.json")]) == 0
    doc = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert [(e["kind"], e["from"], e["to"]) for e in doc["station_log"]] == [
        ("calibration", "2026-12-03T08:00:00+07:00", "2026-12-03T09:00:00+07:00"),
        ("holdoff", "2026-12-03T09:00:00+07:00", "2026-12-03T09:45:00+07:00"),
    ]
    [choice] = [c for c in doc["design_choices"] if c["key"] == "holdoff"]
    assert choice["value"] == "45 min"
    assert "QUANTRAC_ALERTS_HOLDOFF_MINUTES" in choice["where"]
    assert main([*report, "--format", "csv", "--section", "log", "--lang", "en"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out.lstrip("\ufeff"))))
    assert [r["Kind"] for r in rows] == [
        "Calibration",
        "Hold-off after calibration (readings not counted for exceedances)",
    ]
    assert main([*report, "--format", "pdf", "-o", str(tmp_path / "r.pdf")]) == 0
    assert main([*report, "--format", "xlsx", "-o", str(tmp_path / "r.xlsx")]) == 0
