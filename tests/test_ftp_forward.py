"""FTP in and files out: a real FTP/FTPS server (Debian's pure-ftpd, one account per station)
writing into the watched folder, and `quantrac forward` sending stored readings upstream as
Circular 10/2021 files over FTPS or into a folder, resumable, recorded, retried."""

from __future__ import annotations

import errno
import ftplib
import io
import json
import os
import re
import shutil
import ssl
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from quantrac.cli.main import main
from quantrac.core.contract import Reading, Status
from quantrac.core.registry import Registry
from quantrac.evidence import schema as evidence_schema
from quantrac.evidence.locks import Correction, correct_reading, lock_period
from quantrac.forward import service as forward_service
from quantrac.forward.config import parse_forward_config
from quantrac.forward.files import ForwardError, Line, build_file, check_layout, decimal_text
from quantrac.forward.service import forward_once
from quantrac.forward.targets import FtpTarget, _os_error, target_from_url
from quantrac.ingest import tt10
from quantrac.ingest.files import ingest_folder
from quantrac.ingest.service import IngestService, upgrade_database
from quantrac.ingest.writer import BatchWriter, Item
from quantrac.localservers import FtpAccount, PureFtpdServer, find_pure_ftpd
from tests.conftest import fetch

VN = timezone(timedelta(hours=7))
T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # 10:00 in Hà Nội

# --- pure ----------------------------------------------------------------------------------------


def test_values_are_written_as_exact_decimals_without_exponents():
    assert decimal_text(61.5) == "61.5"
    assert decimal_text(7.0) == "7"
    assert decimal_text(1234567.0) == "1234567"
    assert decimal_text(0.0000001) == "0.0000001"
    assert decimal_text(-0.0) == "0"
    assert decimal_text(0.1 + 0.2) == "0.30000000000000004"  # read back, it is the same float
    with pytest.raises(ForwardError):
        decimal_text(float("nan"))


def test_a_file_is_named_laid_out_and_written_as_the_circular_says():
    lines = [
        Line("pH", 7.2, "pH", 1),
        Line("COD", 61.5, "mg/L", 0),
        Line("Flow", 120.25, "m3/h", 0),
    ]
    item = build_file("WW1", "BacGiang_KCNThu_NT01", T0, lines, VN)
    assert item.name == "BacGiang_KCNThu_NT01_20261120100000.txt"
    assert item.folder == "NT01/2026/11/20"
    assert item.content == (
        b"COD\t61.5\tmg/L\t20261120100000\t00\r\n"
        b"Flow\t120.25\tm3/h\t20261120100000\t00\r\n"
        b"pH\t7.2\tpH\t20261120100000\t01\r\n"
    )
    # What we write, our own ingest (and any TT10 reader) reads back exactly.
    name = tt10.parse_file_name(item.name, VN)
    assert (name.prefix, name.stamped_at) == ("BacGiang_KCNThu_NT01", T0)
    readings, problems = tt10.parse_lines(item.content.decode(), VN)
    assert problems == []
    assert [(r.param, r.value, r.unit, r.status, r.time) for r in readings] == [
        ("COD", 61.5, "mg/L", "00", T0),
        ("Flow", 120.25, "m3/h", "00", T0),
        ("pH", 7.2, "pH", "01", T0),
    ]
    flat = build_file("WW1", "BacGiang_KCNThu_NT01", T0, lines, VN, "")
    assert flat.folder == "" and flat.path == flat.name
    other = build_file("WW1", "BacGiang_KCNThu_NT01", T0, lines, VN, "{province}/{station_id}/{HH}")
    assert other.folder == "BacGiang/WW1/10"


def test_bad_layouts_names_and_urls_are_refused():
    for layout, message in (
        ("{station}/{year}", "{year} is not one of"),
        ("/abs/{station}", "relative path"),
        ("../{station}", "without '..'"),
    ):
        with pytest.raises(ForwardError, match=re.escape(message)):
            check_layout(layout)
    with pytest.raises(ForwardError, match="three parts"):
        build_file("WW1", "KCNThu_NT01", T0, [Line("COD", 1, "mg/L", 0)], VN)
    with pytest.raises(ForwardError, match="scheme must be ftp, ftps or file"):
        target_from_url("sftp://u@h/x")
    with pytest.raises(ForwardError, match="no user name"):
        target_from_url("ftp://host/x")
    ftps = target_from_url("ftps://bac%40giang:p%C3%A1ss@ftp.example.vn:2121/upload/bg")
    assert isinstance(ftps, FtpTarget) and ftps.tls and ftps.port == 2121
    assert (ftps.username, ftps.password, ftps.base) == ("bac@giang", "páss", "upload/bg")
    assert "páss" not in ftps.description and "p%C3" not in repr(ftps)
    full = _os_error(OSError(errno.ENOSPC, "No space left on device"), Path("/outbox/x.txt"))
    assert full.retryable and "disk full" in str(full)
    assert not _os_error(OSError(errno.EACCES, "Permission denied"), Path("/x")).retryable


def test_forward_config_errors_name_the_field():
    good = {"name": "bo", "url": "file:///tmp/out", "since": "2026-11-01T00:00+07:00"}
    [target] = parse_forward_config({"targets": [good]}, "forward.yaml", {"WW1"})
    assert target.stations is None and target.layout == "{station}/{yyyy}/{MM}/{dd}"
    for change, message in (
        ({"stations": ["NOPE"]}, "unknown station(s): NOPE"),
        ({"since": "yesterday"}, "targets[0].since"),
        ({"layout": "{x}"}, "targets[0].layout"),
        ({"retries": 3}, "targets[0].retries: unknown field (expected one of backoff_s, ca_file"),
        (
            {"max_attempts": 0},
            "targets[0].max_attempts: input should be greater than or equal to 1",
        ),
    ):
        with pytest.raises(ForwardError, match=re.escape(message)):
            parse_forward_config({"targets": [{**good, **change}]}, "forward.yaml", {"WW1"})
    assert parse_forward_config({"targets": []}) == []


# --- real servers --------------------------------------------------------------------------------

needs_ftp = pytest.mark.skipif(
    find_pure_ftpd() is None or os.geteuid() != 0 or shutil.which("openssl") is None,
    reason="needs Debian's pure-ftpd (./quickstart test installs it), root and openssl",
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (PEM with cert and key, CA file for clients)."""
    folder = tmp_path_factory.mktemp("ftps")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key)),
            *("-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    both = folder / "server.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    both.chmod(0o600)
    return both, cert


@pytest.fixture
def ftp_servers(tmp_path: Path):
    started: list[PureFtpdServer] = []

    def start(root: Path, accounts: list[FtpAccount], **options: Any) -> PureFtpdServer:
        server = PureFtpdServer(root, accounts, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _upload(port: int, user: str, password: str, path: str, data: bytes, ca: Path | None) -> None:
    if ca is None:
        ftp: ftplib.FTP = ftplib.FTP(timeout=20)
    else:
        ftp = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=str(ca)), timeout=20)
    ftp.encoding = "utf-8"
    ftp.connect("127.0.0.1", port)
    ftp.login(user, password)
    if isinstance(ftp, ftplib.FTP_TLS):
        ftp.prot_p()
    folder = path.rpartition("/")[0]
    if folder:
        ftp.mkd(folder)
    ftp.storbinary(f"STOR {path}", io.BytesIO(data))
    ftp.quit()


@needs_ftp
@pytest.mark.integration
async def test_stations_upload_over_ftp_and_ftps_into_the_watched_folder(
    make_settings, tmp_path: Path, ftp_servers, certificate, database_url
):
    incoming = tmp_path / "incoming"
    accounts = [
        FtpAccount("WW1", "mật-khẩu-WW1", incoming / "WW1"),
        FtpAccount("AIR1", "khác-hẳn", incoming / "AIR1"),
    ]
    server = ftp_servers(tmp_path / "ftp", accounts, tls=1, certfile=certificate[0])
    stamp = tt10.format_timestamp(T0, VN)
    content = f"COD\t61,5\tmg/L\t{stamp}\t00\r\npH\t7.2\tpH\t{stamp}\t00\r\n".encode()
    name = f"BacGiang_KCNThu_NT01_{stamp}.txt"
    _upload(server.port, "WW1", "mật-khẩu-WW1", f"2026/{name}", content, ca=None)
    later = tt10.format_timestamp(T0 + timedelta(minutes=5), VN)
    _upload(
        server.port,
        "WW1",
        "mật-khẩu-WW1",
        f"BacGiang_KCNThu_NT01_{later}.txt",
        f"COD\t62\tmg/L\t{later}\t00\r\n".encode(),
        ca=certificate[1],  # FTPS, the data channel encrypted too
    )
    # Each account is chrooted to its own folder, and a wrong password gets nowhere.
    ftp = ftplib.FTP(timeout=20)
    ftp.connect("127.0.0.1", server.port)
    ftp.login("AIR1", "khác-hẳn")
    ftp.cwd("..")
    assert ftp.pwd() == "/" and sorted(ftp.nlst()) == [".", ".."]
    ftp.quit()
    with pytest.raises(ftplib.error_perm):
        _upload(server.port, "WW1", "sai", "x.txt", b"", ca=None)
    with pytest.raises(ftplib.error_perm):
        ftp = ftplib.FTP(timeout=20)
        ftp.connect("127.0.0.1", server.port)
        ftp.login()  # anonymous

    # WW1's file delivered with AIR1's account: refused with the reason, kept in rejected/.
    stray = f"BacGiang_KCNThu_NT01_{tt10.format_timestamp(T0 + timedelta(minutes=10), VN)}.txt"
    _upload(server.port, "AIR1", "khác-hẳn", stray, b"COD\t63\tmg/L\t" + stamp.encode(), ca=None)

    ingest = IngestService(make_settings())
    ingest.load_configuration()
    await ingest.start_without_mqtt()
    try:
        assert ingest.receiver is not None
        outcomes = await ingest_folder(incoming, ingest.receiver)
    finally:
        await ingest.stop()
    assert sorted(o.stored for o in outcomes) == [0, 1, 2]
    assert (incoming / "done" / "WW1" / "2026" / name).exists()
    kept = incoming / "rejected" / "AIR1" / stray
    assert kept.exists()
    reason = json.loads(kept.with_name(stray + ".reason.json").read_text(encoding="utf-8"))
    [problem] = reason["problems"]
    assert problem["rule"] == "station_mismatch"
    assert "station WW1" in problem["detail"] and "station AIR1" in problem["detail"]
    assert "tài khoản FTP (thư mục) của trạm AIR1" in problem["detail_vi"]
    rows = await fetch(
        database_url, "SELECT param, value FROM readings ORDER BY measured_at, param"
    )
    assert rows == [("COD", 61.5), ("pH", 7.2), ("COD", 62.0)]


async def _store(settings: Any, readings: list[Reading]) -> None:
    await upgrade_database(settings)
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        writer = BatchWriter(conn, "postgresql")
        await writer.prepare()
        await writer.write([Item(datetime.now(UTC), "WW1", "t", "mqtt", None, "", readings, [])])


def _hour_of_readings(start: datetime = T0) -> list[Reading]:
    out = []
    for i in range(12):
        t = start + timedelta(minutes=5 * i)
        out.append(Reading("WW1", "COD", t, 60.0 + i / 4, Status.MEASURING))
        out.append(Reading("WW1", "pH", t, 7.25, Status.CALIBRATING if i == 0 else Status(0)))
    return out


async def _forward_conn(settings: Any) -> psycopg.AsyncConnection:
    conn = await psycopg.AsyncConnection.connect(settings.database_url)
    await forward_service.upgrade(conn)
    await conn.commit()
    return conn


async def _no_wait(_: float) -> None:
    return None


@pytest.mark.integration
async def test_forward_into_a_folder_once_then_only_what_changed(
    make_settings, registry: Registry, tmp_path: Path
):
    settings = make_settings()
    await _store(settings, _hour_of_readings())
    outbox = tmp_path / "outbox"
    [target] = parse_forward_config(
        {
            "targets": [
                {
                    "name": "so",
                    "url": f"file://{outbox}",
                    "stations": ["WW1"],
                    "since": "2026-11-20T10:30+07:00",
                }
            ]
        }
    )
    conn = await _forward_conn(settings)
    now = T0 + timedelta(hours=2)
    result = await forward_once(conn, target, registry, now, environ={})
    assert (result.sent, result.error) == (6, None)  # 10:30 … 10:55
    files = sorted(p.relative_to(outbox).as_posix() for p in outbox.rglob("*.txt"))
    assert files[0] == "NT01/2026/11/20/BacGiang_KCNThu_NT01_20261120103000.txt"
    assert len(files) == 6 and not list(outbox.rglob(".*"))
    assert (outbox / files[0]).read_bytes() == (
        b"COD\t61.5\tmg/L\t20261120103000\t00\r\npH\t7.25\tpH\t20261120103000\t00\r\n"
    )
    again = await forward_once(conn, target, registry, now, environ={})
    assert again.sent == 0

    # A parameter that arrives late for 10:30: that file is sent again, whole, same name.
    await _store(settings, [Reading("WW1", "TSS", T0 + timedelta(minutes=30), 20.0, Status(0))])
    late = await forward_once(conn, target, registry, now, environ={})
    assert (late.sent, late.resent) == (1, 1)
    assert b"TSS\t20\tmg/L" in (outbox / files[0]).read_bytes()
    log = await (await conn.execute("SELECT count(*), sum(sends) FROM forward_log")).fetchone()
    assert log == (6, 7)
    await conn.close()


@needs_ftp
@pytest.mark.integration
async def test_forward_over_ftps_retries_and_resumes_where_it_stopped(
    make_settings, registry: Registry, tmp_path: Path, ftp_servers, certificate
):
    settings = make_settings()
    await _store(settings, _hour_of_readings())
    upstream = tmp_path / "upstream"
    account = FtpAccount("bacgiang", "mật khẩu tỉnh", upstream / "bacgiang")
    server = ftp_servers(tmp_path / "ftp", [account], tls=2, certfile=certificate[0])
    config = {
        "name": "bo",
        "url": f"ftps://bacgiang:${{FWD_PASSWORD}}@127.0.0.1:{server.port}/upload",
        "stations": ["WW1"],
        "since": "2026-11-20T10:00+07:00",
        "ca_file": str(certificate[1]),
        "max_attempts": 2,
        "backoff_s": 0.01,
        "timeout_s": 60,  # a pure-ftpd login hashes its password for seconds, more under load
    }
    [target] = parse_forward_config({"targets": [config]})
    conn = await _forward_conn(settings)
    now = T0 + timedelta(hours=2)
    env = {"FWD_PASSWORD": "mật khẩu tỉnh"}
    with pytest.raises(ForwardError, match="FWD_PASSWORD is not set"):
        await forward_once(conn, target, registry, now, environ={})

    first = await forward_once(conn, target, registry, now, environ=env, max_files=5)
    assert (first.sent, first.error) == (5, None)

    # The upstream server goes away: the run stops with the reason, after its retries.
    server.stop()
    down = await forward_once(conn, target, registry, now, environ=env, sleep=_no_wait)
    assert down.sent == 0 and down.error is not None and "connect" in down.error
    status = await (await conn.execute("SELECT last_error FROM forward_state")).fetchone()
    assert status is not None and status[0] == down.error

    # Its disk is full (pure-ftpd's own check): nothing is recorded as sent.
    full = ftp_servers(
        tmp_path / "ftp-full", [account], tls=2, certfile=certificate[0], max_disk_usage_pct=1
    )
    full_target = parse_forward_config(
        {"targets": [{**config, "url": config["url"].replace(str(server.port), str(full.port))}]}
    )[0]
    refused = await forward_once(conn, full_target, registry, now, environ=env, sleep=_no_wait)
    assert refused.sent == 0 and "552" in str(refused.error)
    full.stop()

    # Back: the next run sends the 7 files left, none twice.
    back = ftp_servers(tmp_path / "ftp-back", [account], tls=2, certfile=certificate[0])
    back_target = parse_forward_config(
        {"targets": [{**config, "url": config["url"].replace(str(server.port), str(back.port))}]}
    )[0]
    resumed = await forward_once(conn, back_target, registry, now, environ=env)
    assert (resumed.sent, resumed.error) == (7, None)
    arrived = sorted(p.name for p in upstream.rglob("*.txt"))
    assert len(arrived) == 12 and arrived[0] == "BacGiang_KCNThu_NT01_20261120100000.txt"
    assert (upstream / "bacgiang" / "upload" / "NT01" / "2026" / "11" / "20").is_dir()
    sends = await (await conn.execute("SELECT max(sends), count(*) FROM forward_log")).fetchone()
    assert sends == (1, 12)
    await conn.close()


@pytest.mark.integration
def test_cli_forward_to_a_folder_and_status(make_settings, monkeypatch, tmp_path: Path, capsys):
    import asyncio

    settings = make_settings()
    asyncio.run(_store(settings, _hour_of_readings()))
    monkeypatch.setenv("QUANTRAC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("QUANTRAC_STATIONS_FILE", str(settings.stations_path))
    targets = tmp_path / "forward.yaml"
    outbox = tmp_path / "out"
    targets.write_text(
        f'targets:\n  - {{name: so, url: "file://{outbox}", since: "2026-11-20T10:00+07:00"}}\n',
        encoding="utf-8",
    )
    assert main(["forward", "--targets", str(targets)]) == 0
    assert "so: 12 file(s) sent" in capsys.readouterr().out
    assert main(["forward", "--targets", str(targets), "--status"]) == 0
    assert "so: 12 file(s) sent; last run" in capsys.readouterr().out
    # A station without an ftp_name cannot be named upstream: said before anything is sent.
    targets.write_text(
        f'targets:\n  - {{name: so, url: "file://{outbox}", stations: [AIR1],'
        f' since: "2026-11-20T10:00+07:00"}}\n',
        encoding="utf-8",
    )
    assert main(["forward", "--targets", str(targets)]) == 2
    assert "without an ftp_name" in capsys.readouterr().err
    assert main(["forward", "--targets", str(targets), "--target", "nope"]) == 2


def test_compose_ftp_service_writes_into_the_folder_quantrac_watches():
    import yaml

    from quantrac.cli.main import build_parser

    root = Path(__file__).resolve().parent.parent
    services = yaml.safe_load((root / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    ftp, quantrac = services["ftp"], services["quantrac"]
    assert ftp["build"] == "./config/ftp" and ftp["profiles"] == ["ftp"]
    dockerfile = (root / "config/ftp/Dockerfile").read_text(encoding="utf-8")
    assert "apt-get install" in dockerfile and "pure-ftpd" in dockerfile
    assert "--uid 10001" in dockerfile  # the quantrac image's user owns the uploads
    assert "ftp-incoming:/srv/incoming" in ftp["volumes"]
    assert "ftp-incoming:/srv/incoming" in quantrac["volumes"]
    assert quantrac["environment"]["QUANTRAC_FILES_DIR"] == "/srv/incoming"
    for script in ("entrypoint.sh", "add-station.sh"):
        assert os.access(root / "config/ftp" / script, os.X_OK), script
    entry = (root / "config/ftp/entrypoint.sh").read_text(encoding="utf-8")
    start = entry[entry.index("exec pure-ftpd") :]
    for flag in (" -E ", " -A ", " -k 95 ", "-p 30000:30009", "-Y "):
        assert flag in start, flag  # no anonymous, chroot, disk guard, passive ports, TLS
    # The reports and forward services run commands quantrac knows.
    parser = build_parser()
    for name in ("quantrac-reports", "quantrac-forward"):
        parser.parse_args(services[name]["command"])


@pytest.mark.integration
async def test_each_run_looks_back_late_days_not_at_the_whole_history(
    make_settings, registry: Registry, tmp_path: Path
):
    settings = make_settings()
    await _store(settings, _hour_of_readings())
    outbox = tmp_path / "outbox"
    config = {
        "name": "so",
        "url": f"file://{outbox}",
        "stations": ["WW1"],
        "since": "2026-11-20T10:00+07:00",
        "late_days": 1 / 16,  # 90 minutes
    }
    [target] = parse_forward_config({"targets": [config]})
    conn = await _forward_conn(settings)
    now = T0 + timedelta(hours=2)
    assert (await forward_once(conn, target, registry, now, environ={})).sent == 12
    state = await (await conn.execute("SELECT scanned_until FROM forward_state")).fetchone()
    assert state == (now - timedelta(seconds=300),)
    # A parameter arriving for 10:50 (within 90 minutes of what was scanned) goes; one for 10:05
    # (far older) is stored but no longer forwarded.
    await _store(
        settings,
        [
            Reading("WW1", "TSS", T0 + timedelta(minutes=50), 20.0, Status(0)),
            Reading("WW1", "TSS", T0 + timedelta(minutes=5), 21.0, Status(0)),
        ],
    )
    later = await forward_once(conn, target, registry, now + timedelta(minutes=5), environ={})
    assert (later.sent, later.resent) == (1, 1) and later.paths[0].endswith("105000.txt")
    await conn.close()


@pytest.mark.integration
async def test_a_correction_after_the_send_sends_that_file_again(
    make_settings, registry: Registry, tmp_path: Path
):
    settings = make_settings()
    await _store(settings, _hour_of_readings())
    outbox = tmp_path / "outbox"
    config = {
        "name": "so",
        "url": f"file://{outbox}",
        "stations": ["WW1"],
        "since": "2026-11-20T10:00+07:00",
        "late_days": 1 / 16,  # 90 minutes: the corrected slot is outside the late window
    }
    [target] = parse_forward_config({"targets": [config]})
    conn = await _forward_conn(settings)
    # Before evidence's tables exist, there is no correction to look for.
    now = T0 + timedelta(hours=2)
    assert (await forward_once(conn, target, registry, now, environ={})).sent == 12
    await evidence_schema.upgrade(conn)
    await conn.commit()
    later = now + timedelta(days=3)
    assert (await forward_once(conn, target, registry, later, environ={})).sent == 0

    # The hour is sealed, then 10:05's COD is corrected and 10:10's pH deleted (audited).
    await lock_period(conn, "WW1", T0, T0 + timedelta(hours=1), "monthly report", "admin")
    t5, t10 = T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)
    await correct_reading(
        conn, Correction("WW1", "COD", t5, 55.0, Status(0), "sensor drift"), "admin"
    )
    await correct_reading(conn, Correction("WW1", "pH", t10, None, None, "probe out"), "admin")
    await conn.commit()
    resent = await forward_once(conn, target, registry, later, environ={})
    assert (resent.sent, resent.resent, resent.error) == (2, 2, None)
    assert [Path(p).name for p in resent.paths] == [
        "BacGiang_KCNThu_NT01_20261120100500.txt",
        "BacGiang_KCNThu_NT01_20261120101000.txt",
    ]
    day = outbox / "NT01/2026/11/20"
    assert (day / "BacGiang_KCNThu_NT01_20261120100500.txt").read_bytes() == (
        b"COD\t55\tmg/L\t20261120100500\t00\r\npH\t7.25\tpH\t20261120100500\t00\r\n"
    )
    assert (day / "BacGiang_KCNThu_NT01_20261120101000.txt").read_bytes() == (
        b"COD\t60.5\tmg/L\t20261120101000\t00\r\n"
    )
    cur = await conn.execute(
        "SELECT measured_at, readings, sends FROM forward_log WHERE sends > 1 ORDER BY 1"
    )
    assert await cur.fetchall() == [(t5, 2, 2), (t10, 1, 2)]
    # Sent again once: the next run has nothing to do.
    assert (await forward_once(conn, target, registry, later, environ={})).sent == 0
    await conn.close()
