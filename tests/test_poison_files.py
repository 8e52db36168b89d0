"""Hostile files in the drop folder (issue 15): each is moved with its reason, none stops the
folder, none costs the good files beside it. Real PostgreSQL, the real pipeline."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.files import ingest_folder
from ingest.service import IngestService
from quantrac.cli import main
from tests.conftest import fetch

pytestmark = pytest.mark.integration

PREFIX = "BacGiang_KCNThu_NT01"


def stamp(hours_ago: float) -> str:
    moment = datetime.now(UTC) - timedelta(hours=hours_ago)
    return (moment + timedelta(hours=7)).strftime("%Y%m%d%H%M%S")


def lines(*rows: str) -> str:
    return "".join(row + "\r\n" for row in rows)


def hostile_folder(drop: Path) -> dict[str, Path]:
    """The good file and the hostile ones, by role."""
    drop.mkdir(parents=True, exist_ok=True)
    s1, s2, s3, s4, s5 = (stamp(h) for h in (1, 2, 3, 4, 5))
    files = {
        "good": (f"{PREFIX}_{s1}.txt", lines(f"COD\t50\tmg/L\t{s1}\t00").encode()),
        "utf16_bom": (f"{PREFIX}_{s2}.txt", lines(f"TSS\t21\tmg/L\t{s2}\t00").encode("utf-16")),
        "utf16_no_bom": (
            f"{PREFIX}_{s3}.txt",
            lines(f"TSS\t22\tmg/L\t{s3}\t00").encode("utf-16-le"),
        ),
        "nul": (
            f"{PREFIX}_{s4}.txt",
            lines(f"pH\t7,1\tpH\t{s4}\t00", f"CO\x00D\t5\tmg/L\t{s4}\t00").encode(),
        ),
        "binary": (f"{PREFIX}_{s5}.txt", bytes(range(256)) * 4),
        "too_large": (
            f"{PREFIX}_{stamp(6)}.txt",
            lines(f"COD\t1\tmg/L\t{s5}\t00").encode() * 20_000,
        ),
    }
    paths = {}
    for role, (name, data) in files.items():
        path = drop / name
        path.write_bytes(data)
        paths[role] = path
    # A name that is not UTF-8 (Python hands it over with lone surrogates).
    odd = os.fsencode(drop) + b"/" + PREFIX.encode() + b"_\xff\xfe.txt"
    with open(odd, "wb") as fh:
        fh.write(lines(f"COD\t1\tmg/L\t{s1}\t00").encode())
    paths["odd_name"] = Path(os.fsdecode(odd))
    return paths


@pytest.fixture
async def service(make_settings):
    svc = IngestService(make_settings())
    svc.load_configuration()
    await svc.start_without_mqtt()
    yield svc
    await svc.stop()


def reason_file(moved: Path) -> dict:
    return json.loads(moved.with_name(moved.name + ".reason.json").read_text("utf-8"))


async def test_hostile_files_are_moved_with_reasons_and_good_ones_stored(
    service, tmp_path, database_url
):
    drop = tmp_path / "drop"
    paths = hostile_folder(drop)
    outcomes = {o.path: o for o in await ingest_folder(drop, service.receiver)}
    assert set(outcomes) == set(paths.values())
    assert not [p for p in paths.values() if p.exists()]  # every file moved
    rows = await fetch(database_url, "SELECT param, value FROM readings ORDER BY param")
    assert rows == [("COD", 50.0), ("TSS", 21.0), ("pH", 7.1)]

    by_role = {role: outcomes[path] for role, path in paths.items()}
    assert not by_role["good"].rejected and not by_role["good"].problems
    assert not by_role["utf16_bom"].rejected and not by_role["utf16_bom"].problems
    no_bom = reason_file(by_role["utf16_no_bom"].moved_to)
    assert by_role["utf16_no_bom"].rejected
    assert [p["rule"] for p in no_bom["problems"]] == ["payload_encoding"]
    assert "UTF-16" in no_bom["problems"][0]["detail"]
    nul = by_role["nul"]
    assert not nul.rejected and [p.reason for p in nul.problems] == ["param_unknown"]
    assert by_role["binary"].rejected and by_role["binary"].problems
    too_large = by_role["too_large"]
    assert too_large.rejected and [p.reason for p in too_large.problems] == ["payload_too_large"]
    assert too_large.problems[0].value == f"{too_large.moved_to.stat().st_size} bytes"
    odd = by_role["odd_name"]
    assert odd.rejected and [p.reason for p in odd.problems] == ["file_name"]
    assert "\\udcff" in reason_file(odd.moved_to)["file"]

    stored = await fetch(
        database_url, "SELECT value, topic FROM rejections WHERE value LIKE '%CO%'"
    )
    assert stored == [("CO\\x00D", f"file:{paths['nul'].name}")]
    logged = await fetch(database_url, "SELECT name FROM ingested_files WHERE name LIKE '%udcff%'")
    assert len(logged) == 1


def test_ingest_files_command_does_not_hang_on_hostile_files(
    make_settings, tmp_path, monkeypatch, capsys
):
    settings = make_settings()
    monkeypatch.setenv("QUANTRAC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("QUANTRAC_STATIONS_FILE", str(settings.stations_path))
    drop = tmp_path / "drop"
    paths = hostile_folder(drop)
    assert main(["ingest-files", str(drop)]) == 1  # some files went to rejected/
    out = capsys.readouterr().out
    assert f"{len(paths)} files: 3 readings stored" in out
    assert not [p for p in paths.values() if p.exists()]
