"""Sealed evidence: digests of reports/exports and their readings, verify, locked periods, the
audited correction path and readings held back by a lock (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from quantrac.cli.main import main
from quantrac.core.contract import Reading, Status
from quantrac.core.db import connect
from quantrac.evidence import schema
from quantrac.evidence.locks import LockError, check_lock_request
from quantrac.evidence.seal import canonical_line, digest_rows, sidecar_path
from quantrac.ingest.writer import BatchWriter, Item
from quantrac.upgrade import upgrade_all
from tests.conftest import fetch
from tests.test_api import api as api_service  # noqa: F401  (the fixture)
from tests.test_api import login

T0 = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
PERIOD = ["--from", "2026-10-01T07:00+07:00", "--to", "2026-10-02T07:00+07:00"]


# --- pure ----------------------------------------------------------------------------------------


def test_readings_digest_is_canonical_and_sees_every_change():
    rows = [("WW1", "COD", T0, 61.5, 0), ("WW1", "pH", T0, 7.2, 1)]
    same = digest_rows(list(rows))
    assert same == digest_rows(rows) and same.count == 2
    assert canonical_line(*rows[0]) == b"WW1\tCOD\t2026-10-01T00:00:00+00:00\t61.5\t0\n"
    # The same instant written with another offset is the same reading.
    local = T0.astimezone(__import__("datetime").timezone(timedelta(hours=7)))
    assert digest_rows([("WW1", "COD", local, 61.5, 0), rows[1]]) == same
    assert digest_rows([("WW1", "COD", T0, 61.50001, 0), rows[1]]) != same
    assert digest_rows([("WW1", "COD", T0, 61.5, 2), rows[1]]) != same
    assert digest_rows(rows[:1]) != same


def test_lock_requests_are_checked():
    now = datetime(2026, 12, 1, tzinfo=UTC)
    ok = ("WW1", T0, T0 + timedelta(days=1), "monthly report sent", {"WW1"}, now)
    check_lock_request(*ok)
    check_lock_request(None, *ok[1:])  # every station
    with pytest.raises(LockError, match="after its start"):
        check_lock_request("WW1", T0, T0, "x", {"WW1"}, now)
    with pytest.raises(LockError, match="closed period"):
        check_lock_request("WW1", T0, now + timedelta(hours=1), "x", {"WW1"}, now)
    with pytest.raises(LockError, match="unknown station 'NOPE'"):
        check_lock_request("NOPE", T0, T0 + timedelta(days=1), "x", {"WW1"}, now)
    with pytest.raises(LockError, match="reason"):
        check_lock_request("WW1", T0, T0 + timedelta(days=1), " ", {"WW1"}, now)


# --- against PostgreSQL --------------------------------------------------------------------------


async def _store(settings, readings: list[Reading]) -> tuple[int, int]:
    await upgrade_all(settings)  # as `quantrac db upgrade`: reports change no schema
    async with await connect(settings) as conn:
        writer = BatchWriter(conn, "postgresql")
        await writer.prepare()
        item = Item(datetime.now(UTC), "WW1", "t", "mqtt", None, "", readings, [])
        result = await writer.write([item])
        return result.stored, result.duplicates


def _day_of_readings() -> list[Reading]:
    out = []
    for i in range(0, 24 * 12):
        t = T0 + timedelta(minutes=5 * i)
        out.append(Reading("WW1", "COD", t, 60.0 + (i % 7), Status.MEASURING))
        out.append(Reading("WW1", "pH", t, 7.1, Status.CALIBRATING if i < 3 else Status.MEASURING))
    return out


@pytest.mark.integration
def test_sealed_export_and_report_verify_until_the_data_or_the_file_change(
    env, tmp_path: Path, capsys
):
    asyncio.run(_store(env, _day_of_readings()))
    export = tmp_path / "ww1.csv"
    assert main(["export", "readings", "--station", "WW1", *PERIOD, "-o", str(export)]) == 0
    err = capsys.readouterr().err
    assert "576 readings exported" in err and "sealed: file sha256" in err
    seal = json.loads(sidecar_path(export).read_text())
    assert seal["readings"] == 576 and seal["kind"] == "export readings"

    report = tmp_path / "ww1.json"
    args = ["report", "exceedances", "--station", "WW1", *PERIOD, "--format", "json"]
    assert main([*args, "-o", str(report)]) == 0
    doc = json.loads(report.read_text())
    # The report itself carries the digest of its readings; the sidecar that of the file too.
    assert doc["readings_digest"] == {"sha256": seal["readings_sha256"], "readings": 576}
    pdf = tmp_path / "ww1.pdf"
    assert main([*args[:-2], "--format", "pdf", "-o", str(pdf)]) == 0
    assert b"readings-sha256:" + seal["readings_sha256"].encode() in pdf.read_bytes()
    capsys.readouterr()

    for path in (export, report, pdf):
        assert main(["report", "verify", str(path)]) == 0, path
        assert capsys.readouterr().out.startswith("OK: file unchanged")

    # An edited file is caught, whether or not its sidecar is still there.
    export.write_text(export.read_text().replace("61.0", "16.0"))
    assert main(["report", "verify", str(export)]) == 1
    assert "FILE CHANGED" in capsys.readouterr().out
    sidecar_path(export).unlink()
    assert main(["report", "verify", str(export), "--format", "json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["ok"] is False and verdict["seal"] is None

    # Without its sidecar an untouched file is still verified from the database record.
    sidecar_path(report).unlink()
    assert main(["report", "verify", str(report)]) == 0
    capsys.readouterr()

    # A reading changed behind the report's back: the data no longer match.
    async def tamper() -> None:
        async with await psycopg.AsyncConnection.connect(env.database_url) as conn:
            await conn.execute(
                "UPDATE readings SET value = 1 WHERE param = 'COD' AND measured_at = %s", [T0]
            )
            await conn.commit()

    asyncio.run(tamper())
    assert main(["report", "verify", str(report)]) == 1
    out = capsys.readouterr().out
    assert "file unchanged" in out and "STORED READINGS CHANGED" in out


@pytest.mark.integration
def test_open_period_is_not_sealed(env, tmp_path: Path, capsys):
    now = datetime.now(UTC)
    asyncio.run(_store(env, [Reading("WW1", "COD", now - timedelta(minutes=5), 60, Status(0))]))
    out = tmp_path / "now.csv"
    window = [
        "--from",
        (now - timedelta(hours=1)).isoformat(),
        "--to",
        (now + timedelta(hours=1)).isoformat(),
    ]
    assert main(["export", "readings", "--station", "WW1", *window, "-o", str(out)]) == 0
    assert "sealed:" not in capsys.readouterr().err
    assert not sidecar_path(out).exists()
    assert main(["report", "verify", str(out)]) == 1
    assert "no seal" in capsys.readouterr().out


@pytest.mark.integration
def test_locked_period_refuses_silent_changes_and_audits_corrections(env, tmp_path, capsys):
    asyncio.run(_store(env, _day_of_readings()))
    report = tmp_path / "ww1.json"
    args = ["report", "exceedances", "--station", "WW1", *PERIOD, "--format", "json"]
    assert main([*args, "-o", str(report)]) == 0

    assert (
        main(["period", "lock", "--station", "NOPE", *PERIOD, "--reason", "x", "--lang", "en"]) == 2
    )
    assert "unknown station 'NOPE'" in capsys.readouterr().err
    backwards = ["--from", PERIOD[3], "--to", PERIOD[1]]
    assert (
        main(["period", "lock", "--station", "WW1", *backwards, "--reason", "x", "--lang", "en"])
        == 2
    )
    assert "after its start" in capsys.readouterr().err
    assert (
        main(
            [
                "period",
                "lock",
                "--station",
                "WW1",
                *PERIOD,
                "--reason",
                "sent to DONRE",
                "--lang",
                "en",
            ]
        )
        == 0
    )
    assert "lock 1: WW1" in capsys.readouterr().out

    async def silent_changes() -> list[str]:
        errors = []
        async with await psycopg.AsyncConnection.connect(env.database_url) as conn:
            for statement in (
                "UPDATE readings SET value = 1 WHERE param = 'COD'",
                "DELETE FROM readings WHERE param = 'pH'",
            ):
                try:
                    await conn.execute(statement)
                except psycopg.Error as exc:
                    errors.append(exc.sqlstate or "")
                await conn.rollback()
            # Outside the lock, readings change as before.
            await conn.execute(
                "INSERT INTO readings VALUES ('WW1', 'COD', %s, 1, 0, now())",
                [T0 + timedelta(days=3)],
            )
            await conn.execute(
                "DELETE FROM readings WHERE measured_at = %s", [T0 + timedelta(days=3)]
            )
            await conn.commit()
        return errors

    assert asyncio.run(silent_changes()) == [schema.LOCKED_SQLSTATE] * 2

    # A late arrival for the locked period is kept aside, not merged and not lost; the same
    # reading again is not a conflict.
    late = Reading("WW1", "TSS", T0 + timedelta(hours=2), 33.0, Status.MEASURING)
    stored, _ = asyncio.run(_store(env, [late]))
    assert stored == 1
    assert asyncio.run(
        fetch(env.database_url, "SELECT count(*) FROM readings WHERE param = 'TSS'")
    ) == [(0,)]
    assert main(["readings", "held", "--lang", "en"]) == 0
    listing = capsys.readouterr().out
    assert "lock 1  WW1 TSS" in listing and "33" in listing

    assert main(["report", "verify", str(report)]) == 0
    capsys.readouterr()

    # The correction path: audited, and the verify then lists it.
    stamp = (T0 + timedelta(hours=1)).isoformat()
    correct = ["readings", "correct", "--station", "WW1", "--param", "COD", "--time", stamp]
    assert (
        main([*correct, "--value", "64.5", "--reason", "lab re-analysis 12/10", "--lang", "en"])
        == 0
    )
    assert "update: WW1 COD" in capsys.readouterr().out
    assert main([*correct, "--value", "1", "--delete", "--reason", "x"]) == 2
    held_id = str(listing.split()[0])
    assert main(["readings", "held", "--apply", held_id, "--reason", "late file accepted"]) == 0
    assert main(["readings", "held", "--discard", held_id]) == 2
    capsys.readouterr()
    rows = asyncio.run(
        fetch(
            env.database_url,
            "SELECT param, action, old_value, new_value, reason, actor LIKE 'cli%%'"
            " FROM reading_corrections ORDER BY id",
        )
    )
    assert rows == [
        ("COD", "update", 60.0 + 12 % 7, 64.5, "lab re-analysis 12/10", True),
        ("TSS", "insert", None, 33.0, "late file accepted", True),
    ]
    assert main(["report", "verify", str(report)]) == 1
    out = capsys.readouterr().out
    assert "STORED READINGS CHANGED" in out and "2 audited correction(s)" in out
    assert "lab re-analysis" in out

    guards = (
        "SELECT count(DISTINCT tgname) FROM pg_trigger WHERE tgname LIKE 'readings_locked_%%'"
        " AND NOT tgisinternal"
    )
    assert asyncio.run(fetch(env.database_url, guards)) == [(3,)]
    assert main(["period", "unlock", "1"]) == 0
    assert main(["period", "unlock", "1"]) == 2
    # No lock, no trigger: ingest pays nothing.
    assert asyncio.run(fetch(env.database_url, guards)) == [(0,)]
    assert main(["period", "list", "--all", "--lang", "en"]) == 0
    assert "lifted by cli" in capsys.readouterr().out


@pytest.mark.integration
async def test_api_locks_and_corrections_are_admin_only_and_audited(
    api_service,  # noqa: F811  (the fixture imported above)
    database_url,
):
    client, settings, _ = api_service
    await _store(settings, _day_of_readings()[:20])
    admin, operator = await login(client, "root"), await login(client, "op")
    body = {"station": "WW1", "from": PERIOD[1], "to": PERIOD[3], "reason": "quarter closed"}
    assert (await client.post("/api/v1/locks", json=body, headers=operator)).status_code == 403
    bad = await client.post("/api/v1/locks", json={**body, "station": "NOPE"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["message"] == "Không có trạm 'NOPE'."
    english = {**admin, "Accept-Language": "en-GB,en;q=0.9"}
    bad = await client.post("/api/v1/locks", json={**body, "station": "NOPE"}, headers=english)
    assert bad.json()["error"] == {
        "code": "invalid_request",
        "message": "unknown station 'NOPE'",
        "details": None,
    }
    backwards = {**body, "from": PERIOD[3], "to": PERIOD[1]}
    assert (await client.post("/api/v1/locks", json=backwards, headers=admin)).status_code == 422
    created = await client.post("/api/v1/locks", json=body, headers=admin)
    assert created.status_code == 201, created.text
    listed = (await client.get("/api/v1/locks", headers=operator)).json()
    assert [i["station"] for i in listed["items"]] == ["WW1"]

    correction = {
        "station": "WW1",
        "param": "COD",
        "time": T0.isoformat(),
        "value": 58.0,
        "reason": "analyser drift, lab value",
    }
    denied = await client.post("/api/v1/readings/corrections", json=correction, headers=operator)
    assert denied.status_code == 403
    done = await client.post("/api/v1/readings/corrections", json=correction, headers=admin)
    assert done.status_code == 201 and done.json()["action"] == "update"
    assert await fetch(
        database_url, "SELECT value FROM readings WHERE param = 'COD' AND measured_at = %s", [T0]
    ) == [(58.0,)]
    actions = await fetch(database_url, "SELECT action FROM audit_log ORDER BY id")
    assert [a for (a,) in actions if a != "login"] == ["period.lock", "reading.correct"]
    lifted = await client.post(f"/api/v1/locks/{created.json()['id']}/unlock", headers=admin)
    assert lifted.status_code == 200 and lifted.json()["unlocked_by"] == "root"


@pytest.mark.integration
async def test_a_report_downloaded_from_the_api_is_sealed_and_verifies(
    api_service,  # noqa: F811  (the fixture imported above)
    database_url,
    tmp_path: Path,
):
    from quantrac.evidence.seal import verify_file

    client, settings, _ = api_service
    await _store(settings, _day_of_readings())
    inspector = await login(client, "insp")
    query = {"station": "WW1", "from": PERIOD[1], "to": PERIOD[3], "format": "csv"}
    response = await client.get("/api/v1/reports/exceedances", params=query, headers=inspector)
    assert response.status_code == 200, response.text
    assert (
        response.headers["x-quantrac-readings-sha256"]
        == digest_rows(
            [
                (r.station_id, r.param, r.measured_at, r.value, int(r.status))
                for r in sorted(_day_of_readings(), key=lambda r: (r.param, r.measured_at))
            ]
        ).sha256
    )
    saved = tmp_path / "download.csv"
    saved.write_bytes(response.content)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        verdict = await verify_file(conn, saved)
    assert verdict.ok and verdict.file_sha256 == response.headers["x-quantrac-file-sha256"]
    as_json = await client.get(
        "/api/v1/reports/exceedances", params={**query, "format": "json"}, headers=inspector
    )
    assert as_json.json()["readings_digest"]["readings"] == 576
