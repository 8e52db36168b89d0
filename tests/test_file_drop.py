"""Circular 10/2021 files dropped by an FTP server: done/, rejected/, reason files, no doubles."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from quantrac.cli.main import main
from quantrac.ingest.files import ingest_folder
from quantrac.ingest.service import IngestService
from tests.conftest import fetch, wait_until

pytestmark = pytest.mark.integration


def local_stamp(moment: datetime) -> str:
    return (moment + timedelta(hours=7)).strftime("%Y%m%d%H%M%S")


def write(folder: Path, name: str, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path


@pytest.fixture
async def service(make_settings):
    svc = IngestService(make_settings())
    svc.load_configuration()
    await svc.start_without_mqtt()
    yield svc
    await svc.stop()


async def test_files_are_stored_moved_and_never_doubled(service, tmp_path, database_url):
    t = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    stamp = local_stamp(t)
    drop = tmp_path / "ftp"
    good = [
        f"Flow\t120,5\tm3/h\t{stamp}\t00",
        f"pH\t7,2\tpH\t{stamp}\t00",
        f"COD\t61\tmg/L\t{stamp}\t01",
    ]
    write(drop / "2026" / "11", f"BacGiang_KCNThu_NT01_{stamp}.txt", good)
    write(
        drop,
        f"BacGiang_KCNThu_WW1_{stamp[:-2]}01.txt",
        [f"TSS\t15\tmg/L\t{stamp}\t00", "TSS 15", f"Color\t20\tPt/Co\t{stamp}\t00"],
    )
    write(drop, "notes.txt", ["hello"])
    write(drop, f"BacGiang_KCNThu_XX9_{stamp}.txt", good)

    outcomes = await ingest_folder(drop, service.receiver)
    by_name = {o.path.name: o for o in outcomes}
    assert by_name[f"BacGiang_KCNThu_NT01_{stamp}.txt"].stored == 3
    assert (drop / "done" / "2026" / "11" / f"BacGiang_KCNThu_NT01_{stamp}.txt").exists()
    partial = by_name[f"BacGiang_KCNThu_WW1_{stamp[:-2]}01.txt"]
    assert partial.stored == 1 and partial.moved_to.parent == drop / "done"
    reason = json.loads(Path(str(partial.moved_to) + ".reason.json").read_text())
    assert [p["rule"] for p in reason["problems"]] == ["line_syntax", "param_not_declared"]
    assert (drop / "rejected" / "notes.txt").exists()
    assert (
        json.loads((drop / "rejected" / "notes.txt.reason.json").read_text())["problems"][0]["rule"]
        == "file_name"
    )
    unknown = json.loads(
        (drop / "rejected" / f"BacGiang_KCNThu_XX9_{stamp}.txt.reason.json").read_text()
    )
    assert unknown["problems"][0]["rule"] == "station_unknown"

    rows = await fetch(
        database_url, "SELECT param, value, status, measured_at FROM readings ORDER BY param"
    )
    assert rows == [
        ("COD", 61.0, 1, t),
        ("Flow", 120.5, 0, t),
        ("TSS", 15.0, 0, t),
        ("pH", 7.2, 0, t),
    ]

    # The FTP server delivers the first file again: nothing new is stored.
    write(drop, f"BacGiang_KCNThu_NT01_{stamp}.txt", good)
    (again,) = await ingest_folder(drop, service.receiver)
    assert (again.stored, again.duplicates) == (0, 3)
    assert again.moved_to.name == f"BacGiang_KCNThu_NT01_{stamp}.txt"
    assert (await fetch(database_url, "SELECT count(*) FROM readings"))[0][0] == 4
    logged = await fetch(
        database_url,
        "SELECT name, stored, duplicates FROM ingested_files "
        f"WHERE name LIKE '%NT01_{stamp}.txt' ORDER BY id",
    )
    assert [row[1:] for row in logged] == [(3, 0), (0, 3)]


def test_ingest_files_command(make_settings, tmp_path, monkeypatch, capsys):
    settings = make_settings()
    monkeypatch.setenv("QUANTRAC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("QUANTRAC_STATIONS_FILE", str(settings.stations_path))
    stamp = local_stamp(datetime.now(UTC) - timedelta(hours=1))
    drop = tmp_path / "drop"
    write(drop, f"BacGiang_KCNThu_NT01_{stamp}.txt", [f"COD\t50\tmg/L\t{stamp}\t00"])
    assert main(["ingest-files", str(drop)]) == 0
    assert "1 readings stored" in capsys.readouterr().out
    write(drop, "garbage.csv", ["x"])
    assert main(["ingest-files", str(drop)]) == 1
    assert "1 files moved to rejected/" in capsys.readouterr().out


async def test_run_watches_the_drop_folder(make_settings, tmp_path, database_url):
    drop = tmp_path / "ftp-incoming"
    svc = IngestService(make_settings(files_dir=drop, files_poll_s=0.2))
    await svc.start()
    try:
        stamp = local_stamp(datetime.now(UTC) - timedelta(hours=3))
        path = write(
            drop / "BacGiang", f"BacGiang_KCNThu_NT01_{stamp}.txt", [f"TSS\t21\tmg/L\t{stamp}\t00"]
        )
        # The watcher waits until an upload has settled (2 s without changes).
        rows = await wait_until(
            lambda: fetch(database_url, "SELECT param, value FROM readings"), timeout=15
        )
        assert rows == [("TSS", 21.0)]
        assert not path.exists()
        assert (drop / "done" / "BacGiang" / path.name).exists()
    finally:
        await svc.stop()


# --- hostile files (issue 15): each moved with its reason; none stops the folder ---------------

PREFIX = "BacGiang_KCNThu_NT01"


def stamp(hours_ago: float) -> str:
    return local_stamp(datetime.now(UTC) - timedelta(hours=hours_ago))


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
