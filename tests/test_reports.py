"""Inspector reports against a real database: readings stored with COPY, episodes made by the
real alert engine, then the report, its files, the API over HTTP, the CLI and the indicators.

WW1 answers to QCVN 40:2011 column A on a river of 120 m3/s (Kq = 1.0) discharging 3000 m3/day
(Kf = 1.0): COD Cmax = 75 mg/L. Cadence 300 s: 288 readings a day. The period is the two
Vietnamese days 2026-10-31 and 2026-11-01:

- COD, 31/10: 288 valid readings; hours 10:00 and 11:00 at 150 and 200 mg/L (episode A), hour
  23:00 at 120 and, on 01/11, hour 00:00 at 90 (episode B, across the month boundary);
- COD, 01/11: 200 valid readings (00:00–16:35, 69.4 %), hour 08:00 at 100 (episode C), then
  12 calibrating readings 17:00–17:55;
- pH: every reading of both days, six of them (01/11 03:00–03:25) with status 02;
- Flow: every reading of 31/10 only; TSS: nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from openpyxl import load_workbook

from quantrac.alerts.service import AlertService
from quantrac.api import schema as api_schema
from quantrac.api.app import ApiService, build_api
from quantrac.api.users import add_user
from quantrac.cli.main import main
from quantrac.core.catalog import load_catalog
from quantrac.core.contract import Reading, Status
from quantrac.core.registry import Registry, registry_from_text
from quantrac.core.settings import Settings, load_settings
from quantrac.ingest.rollup import refresh_hourly
from quantrac.regulations.tables import load_regulation_catalog
from quantrac.reports.exceedances import exceedance_report
from quantrac.reports.indicators import compute_indicators, indicators_json, parse_indicator_config
from quantrac.reports.writers import exceedance_csv, exceedance_pdf, exceedance_xlsx
from quantrac.upgrade import upgrade_all
from tests.conftest import CONFIG, TEST_REGISTRY

pytestmark = pytest.mark.integration

VN = timezone(timedelta(hours=7))
START = datetime(2026, 10, 31, tzinfo=VN)
END = datetime(2026, 11, 2, tzinfo=VN)
Q = {"from": START.isoformat(), "to": END.isoformat()}

REGISTRY = (
    TEST_REGISTRY
    + """
  - id: EM1
    name: "Ống khói thử"
    kind: emission
    facility: "Nhà máy Xi măng Thử"
    province: "Bắc Ninh"
    location: {lat: 21.3, lon: 106.2}
    parameters:
      - {code: SO2, unit: "mg/Nm3"}
  - id: AIR2
    name: "Trạm không khí Thái Nguyên"
    kind: air
    facility: "Sở Thái Nguyên"
    province: "Thái Nguyên"
    location: {lat: 21.18, lon: 106.07}
    parameters:
      - {code: PM10, unit: "µg/m3"}
    regulation: {id: "QCVN 05:2023/BTNMT"}
"""
)

INDICATORS = {
    "indicator_22": {
        "urban_population": [
            {"province": "Bắc Ninh", "population": 200000, "year": 2024, "source": "test"},
            {"province": "Thái Nguyên", "population": 400000, "year": 2024, "source": "test"},
        ]
    }
}


def at(day: int, hour: int, minute: int = 0) -> datetime:
    month = 10 if day == 31 else 11
    return datetime(2026, month, day, hour, minute, tzinfo=VN).astimezone(UTC)


def cod_value(t: datetime, i: int) -> float:
    local = t.astimezone(VN)
    hours = {(31, 10): 150.0, (31, 11): 200.0, (31, 23): 120.0, (1, 0): 90.0, (1, 8): 100.0}
    mean = hours.get((local.day, local.hour), 20.0)
    return mean + (10 if i % 2 else -10)  # alternating: hourly means exact, never stuck


def readings() -> list[Reading]:
    out: list[Reading] = []
    step = timedelta(minutes=5)
    day1, day2 = at(31, 0), at(1, 0)
    for i in range(288):
        t = day1 + i * step
        out.append(Reading("WW1", "COD", t, cod_value(t, i), Status.MEASURING))
        out.append(Reading("WW1", "pH", t, 7.0 + (0.1 if i % 2 else -0.1), Status.MEASURING))
        out.append(Reading("WW1", "Flow", t, 100.0 + (5 if i % 2 else -5), Status.MEASURING))
    for i in range(200):
        t = day2 + i * step
        out.append(Reading("WW1", "COD", t, cod_value(t, i), Status.MEASURING))
    for i in range(12):
        out.append(Reading("WW1", "COD", at(1, 17) + i * step, 50.0 + i, Status.CALIBRATING))
    for i in range(288):
        t = day2 + i * step
        fault = at(1, 3) <= t < at(1, 3, 30)
        value = 7.0 + (0.1 if i % 2 else -0.1)
        out.append(Reading("WW1", "pH", t, value, Status.FAULT if fault else Status.MEASURING))
    for i in range(12):
        out.append(Reading("AIR1", "PM10", at(31, 9) + i * step, 40.0 + i, Status.MEASURING))
    # NO2 every 30 s for one hour, at a registered 5 minutes: that hour owes 12, no more.
    for i in range(120):
        t = at(31, 10) + i * timedelta(seconds=30)
        out.append(Reading("AIR1", "NO2", t, 20.0 + (1 if i % 2 else -1), Status.MEASURING))
    # NO2 every 10 s for three minutes: 18 readings, more than an hour owes, in one slot.
    for i in range(18):
        t = at(1, 12) + i * timedelta(seconds=10)
        out.append(Reading("AIR1", "NO2", t, 20.0, Status.MEASURING))
    return out


@dataclass
class World:
    url: str
    settings: Settings
    registry: Registry
    stations_file: Path
    readings: list[Reading]


@pytest.fixture(scope="module")
async def world(servers: Any, tmp_path_factory: Any) -> AsyncIterator[World]:
    name = f"r_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(servers.database_url, autocommit=True) as c:
        await c.execute(f'CREATE DATABASE "{name}"')
    url = f"{servers.database_url.rsplit('/', 1)[0]}/{name}"
    folder = tmp_path_factory.mktemp("reports")
    stations_file = folder / "stations.yaml"
    stations_file.write_text(REGISTRY, encoding="utf-8")
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        {},
        database_url=url,
        mqtt_url=servers.mqtt_url,
        mqtt_client_id=f"quantrac-test-{tag}",
        mqtt_share_group=f"g{tag}",
        alerts_share_group=f"a{tag}",
        stations_file=stations_file,
        alerts_tick_s=3600,
        http_port=0,
        log_format="text",
    )
    registry = registry_from_text(REGISTRY, load_catalog(CONFIG / "parameters.yaml"), "r.yaml")
    data = readings()
    await upgrade_all(settings)  # as `quantrac db upgrade`: reports change no schema
    svc = AlertService(settings)
    await svc.start()
    try:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            async with conn.cursor() as cur:
                async with cur.copy(
                    "COPY readings (station_id, param, measured_at, value, status, received_at)"
                    " FROM STDIN"
                ) as copy:
                    for r in data:
                        await copy.write_row(
                            (
                                r.station_id,
                                r.param,
                                r.measured_at,
                                r.value,
                                int(r.status),
                                r.measured_at,
                            )
                        )
                hours = sorted({r.measured_at.replace(minute=0, second=0) for r in data})
                await cur.execute(
                    "INSERT INTO rollup_dirty (hour) SELECT unnest(%s::timestamptz[])", [hours]
                )
            await conn.commit()
            assert await refresh_hourly(conn) > 0
        for station in ("WW1", "AIR1"):
            batch = [r for r in data if r.station_id == station]
            await svc.process(station, batch, datetime.now(UTC))
    finally:
        await svc.stop()
    yield World(url, settings, registry, stations_file, data)
    async with await psycopg.AsyncConnection.connect(servers.database_url, autocommit=True) as c:
        await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def report_of(world: World, station_ids: list[str] | None = None, **kw: Any) -> Any:
    regulations = load_regulation_catalog(
        world.settings.regulations_path, load_catalog(CONFIG / "parameters.yaml")
    )
    async with await psycopg.AsyncConnection.connect(world.url) as conn:
        return await exceedance_report(
            conn, world.registry, regulations, station_ids or ["WW1"], START, END, **kw
        )


# --- the report ------------------------------------------------------------------------------


async def test_episodes_come_from_the_engine_with_their_limit_and_coefficients(
    world: World,
) -> None:
    steps: list[tuple[int, int, str]] = []
    report = await report_of(world, progress=lambda d, t, label: steps.append((d, t, label)))
    got = [
        (e.param, e.averaging, e.start, e.end, e.windows, e.maximum, e.mean, e.band)
        for e in report.episodes
    ]
    assert got == [
        ("COD", "1h", at(31, 10), at(31, 12), 2, 200.0, 175.0, "1.5–<3"),
        ("COD", "1h", at(31, 23), at(1, 1), 2, 120.0, 105.0, "1.5–<3"),
        ("COD", "1h", at(1, 8), at(1, 9), 1, 100.0, 100.0, "1.1–<1.5"),
    ]
    a = report.episodes[0]
    assert a.multiple == pytest.approx(200 / 75, abs=1e-4) and a.limit_value == 75.0
    assert a.regulation_id == "QCVN 40:2011/BTNMT" and a.column == "A"
    assert a.formula.startswith("C × Kq × Kf = 75 × 1.0 × 1.0 = 75 mg/L")
    assert [f.name for f in a.factors] == ["Kq", "Kf"] and a.limit_source == "regulation"
    assert a.duration == timedelta(hours=2) and not a.unverified and not a.ongoing
    # Progress: episodes, then the two months, then the calibration and fault periods.
    assert [s[:2] for s in steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    [info] = report.stations
    cod = [lim for lim in info.limits if lim.param == "COD"]
    assert [(lim.averaging, lim.text) for lim in cod] == [("1h", "≤ 75 mg/L")]


async def test_completeness_per_day_and_parameter(world: World) -> None:
    report = await report_of(world)
    c = report.completeness
    cod1 = c.day("WW1", "COD", date(2026, 11, 1))
    assert (cod1.received, cod1.expected, cod1.calibrating) == (200, 288, 12)
    assert round(100 * cod1.share, 1) == 69.4
    assert c.day("WW1", "COD", date(2026, 10, 31)).share == 1.0
    ph1 = c.day("WW1", "pH", date(2026, 11, 1))
    assert (ph1.received, ph1.faulty) == (282, 6)
    assert c.day("WW1", "TSS", date(2026, 10, 31)).received == 0
    # The whole station: 4 parameters × 288 expected a day.
    whole = c.day("WW1", None, date(2026, 10, 31))
    assert (whole.received, whole.expected) == (864, 1152) and whole.share == 0.75
    assert c.day("WW1", None, date(2026, 11, 1)).received == 200 + 282
    assert c.total("WW1", "COD").received == 488
    # Sending faster than the registered cadence does not fill a day: 120 readings in one
    # hour count as that hour's 12.
    air = (await report_of(world, ["AIR1"])).completeness
    assert air.day("AIR1", "NO2", date(2026, 10, 31)).received == 12
    # Nor can a burst make an hour complete: 18 readings in three minutes are one 5-minute
    # slot of the twelve (the hour used to count 12 of 12).
    assert air.day("AIR1", "NO2", date(2026, 11, 1)).received == 1


async def test_calibration_and_fault_periods(world: World) -> None:
    report = await report_of(world)
    got = [(p.param, p.kind, p.start, p.end, p.readings) for p in report.status_periods]
    assert got == [
        ("pH", "fault", at(1, 3), at(1, 3, 30), 6),
        ("COD", "calibration", at(1, 17), at(1, 18), 12),
    ]


async def test_summaries_per_parameter_and_month(world: World) -> None:
    report = await report_of(world)
    cod = next(s for s in report.by_parameter if s.param == "COD")
    assert (cod.episodes, cod.duration, cod.hours_exceeded) == (3, timedelta(hours=5), 5.0)
    assert cod.worst_multiple == pytest.approx(200 / 75, abs=1e-4) and cod.worst_band == "1.5–<3"
    assert cod.completeness == pytest.approx(488 / 576)
    ph = next(s for s in report.by_parameter if s.param == "pH")
    assert (ph.episodes, ph.hours_exceeded, ph.worst_multiple) == (0, 0.0, None)
    months = [(m.month, m.episodes, m.hours_exceeded, m.params) for m in report.by_month]
    # Episode B starts in October; its hour after midnight counts for November.
    assert months == [("2026-10", 2, 3.0, ("COD",)), ("2026-11", 1, 2.0, ("COD",))]
    assert report.by_month[0].completeness == 0.75
    assert report.by_month[1].completeness == pytest.approx(482 / 1152)


async def test_a_facility_report_covers_its_stations(world: World) -> None:
    report = await report_of(world, ["WW1"], facility="KCN Thử")
    assert report.title_target == "KCN Thử" and len(report.episodes) == 3


# --- files -------------------------------------------------------------------------------------


_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("f"): 12}


def _literal_string(s: bytes, i: int) -> tuple[bytes, int]:
    """The PDF literal string opening at s[i] == "(", and the index after its closing ")".

    Scanned byte by byte (escapes, octal codes, balanced parentheses): glyph codes of a font
    subset are arbitrary bytes, so a regex on parentheses misreads strings whose codes happen
    to contain a backslash or a parenthesis (which codes they hold depends on the text drawn).
    """
    out, depth, i = bytearray(), 1, i + 1
    while True:
        ch = s[i]
        if ch == 0x5C:
            nxt = s[i + 1]
            digits = re.match(rb"[0-7]{1,3}", s[i + 1 : i + 4])
            if digits is not None:
                out.append(int(digits.group(0), 8) & 0xFF)
                i += 1 + len(digits.group(0))
            else:
                if nxt not in (0x0A, 0x0D):  # a backslash before a line end continues the line
                    out.append(_ESCAPES.get(nxt, nxt))
                i += 2
            continue
        if ch == 0x28:
            depth += 1
        elif ch == 0x29:
            depth -= 1
            if depth == 0:
                return bytes(out), i + 1
        out.append(ch)
        i += 1


def _shown_strings(stream: bytes) -> list[bytes]:
    """The strings a content stream shows with Tj, and each TJ array's strings joined."""
    shown: list[bytes] = []
    pending: list[bytes] = []  # strings since the last operator
    in_array = False
    i = 0
    while i < len(stream):
        ch = stream[i]
        if ch == 0x28:
            try:
                text, i = _literal_string(stream, i)
            except IndexError:  # not a content stream (a font program is binary)
                return shown
            pending.append(text)
            continue
        if ch == 0x5B:
            in_array, pending = True, []
        elif ch == 0x5D:
            in_array = False
        elif not in_array and (m := re.match(rb"[A-Za-z'\"*]+", stream[i:])):
            if m.group(0) in (b"Tj", b"TJ", b"'", b'"'):
                shown.append(b"".join(pending))
            pending = []
            i += len(m.group(0))
            continue
        i += 1
    return shown


def pdf_texts(data: bytes) -> list[str]:
    """The text strings of a PDF written by fpdf2, decoded with each font's ToUnicode map."""
    streams = []
    # Each stream sliced by its dictionary's /Length: compressed bytes may end in "\r" or hold
    # "endstream", so a search for the keyword cuts some of them short.
    for m in re.finditer(rb"/Length (\d+)[^>]*>>\s*stream\r?\n", data):
        raw = data[m.end() : m.end() + int(m.group(1))]
        try:
            streams.append(zlib.decompress(raw))
        except zlib.error:
            streams.append(raw)
    maps: list[dict[int, str]] = []
    for s in streams:
        if b"begincmap" not in s:
            continue
        cmap: dict[int, str] = {}
        for block in re.findall(rb"beginbfchar(.*?)endbfchar", s, re.S):
            for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                cmap[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
        for block in re.findall(rb"beginbfrange(.*?)endbfrange", s, re.S):
            for lo, hi, dst in re.findall(
                rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block
            ):
                first = ord(bytes.fromhex(dst.decode()).decode("utf-16-be"))
                for k in range(int(lo, 16), int(hi, 16) + 1):
                    cmap[k] = chr(first + k - int(lo, 16))
        maps.append(cmap)
    strings = [shown for stream in streams for shown in _shown_strings(stream)]
    texts = []
    for cmap in maps:
        for b in strings:
            codes = [int.from_bytes(b[k : k + 2], "big") for k in range(0, len(b) - 1, 2)]
            texts.append("".join(cmap.get(c, "\ufffd") for c in codes))
    return texts


async def test_csv_xlsx_and_pdf(world: World) -> None:
    report = await report_of(world)
    data = exceedance_csv(report, "en")
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [r["Start"] for r in rows] == [
        "2026-10-31T10:00:00+07:00",
        "2026-10-31T23:00:00+07:00",
        "2026-11-01T08:00:00+07:00",
    ]
    assert rows[0]["Maximum"] == "200.0" and rows[0]["Multiple of limit"] == "2.667"
    assert rows[0]["Duration (h)"] == "2.0" and rows[0]["Decree 45/2022 band"] == "1.5–<3"
    assert "Kq = 1.0" in rows[0]["Coefficients"]
    vi = exceedance_csv(report, "vi", "completeness").decode("utf-8-sig")
    assert "Thông số" in vi and "toàn trạm" in vi
    day = next(
        r
        for r in csv.DictReader(io.StringIO(vi))
        if r["Thông số"] == "COD" and r["Ngày"] == "2026-11-01"
    )
    assert (day["Số giá trị hợp lệ"], day["Số giá trị phải có"], day["Tỷ lệ (%)"]) == (
        "200",
        "288",
        "69.4",
    )

    book = load_workbook(io.BytesIO(exceedance_xlsx(report, "en")))
    assert book.sheetnames == [
        "Report",
        "Episodes",
        "Completeness",
        "Calibration & faults",
        "Summary by parameter",
        "Summary by month",
        "Station log",
    ]
    episodes = list(book["Episodes"].iter_rows(values_only=True))
    assert episodes[0][:4] == ("Station", "Parameter", "Averaging", "Start")
    assert episodes[1][3] == datetime(2026, 10, 31, 10, 0) and episodes[1][7] == 200.0
    months = list(book["Summary by month"].iter_rows(values_only=True))
    assert months[1][:3] == ("2026-10", 2, 3.0) and months[2][:3] == ("2026-11", 1, 2.0)
    assert len(book["Summary by month"]._charts) == 1
    assert book["Report"]["A1"].value == "Exceedance history report"

    pdf = exceedance_pdf(report, "vi")
    assert pdf.startswith(b"%PDF")
    assert b"DejaVuSans" in pdf and b"/FontFile2" in pdf
    # Lines wrap wherever they must: compare without white space.
    joined = "".join("".join(t.split()) for t in pdf_texts(pdf))
    for expected in (
        "Báo cáo lịch sử vượt quy chuẩn",
        "Trạm nước thải thử",
        "Các đợt vượt quy chuẩn",
        "Giai đoạn hiệu chuẩn và lỗi thiết bị",
        "C × Kq × Kf = 75 × 1,0 × 1,0 = 75 mg/L",
        "Trang 1/",
    ):
        assert "".join(expected.split()) in joined, expected


# --- API -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def api(world: World) -> AsyncIterator[httpx.AsyncClient]:
    catalog = load_catalog(CONFIG / "parameters.yaml")
    service = ApiService(world.settings, catalog, lambda: world.registry)
    context = await service.start()
    async with context.pool.connection() as conn:
        await api_schema.upgrade(conn)
        await add_user(conn, "op", "operator", "operator-pw")
        await add_user(conn, "insp", "inspector", "inspector-pw")
    transport = httpx.ASGITransport(app=build_api(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await service.stop()


OPERATOR = ("op", "operator-pw")
INSPECTOR = ("insp", "inspector-pw")


async def test_api_json_for_readers_files_for_inspectors(
    api: httpx.AsyncClient, world: World
) -> None:
    url = "/api/v1/reports/exceedances"
    r = await api.get(url, params={**Q, "station": "WW1"}, auth=OPERATOR)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["episodes"][0]["start"] == "2026-10-31T10:00:00+07:00"
    assert body["episodes"][0]["factors"][0]["name"] == "Kq"
    assert body["by_month"][0] == {
        "month": "2026-10",
        "episodes": 2,
        "hours_exceeded": 3.0,
        "worst_multiple": 2.6667,
        "params": ["COD"],
        "completeness": 0.75,
    }

    r = await api.get(url, params={**Q, "station": "WW1", "format": "pdf"}, auth=OPERATOR)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = await api.get(url, params={**Q, "station": "WW1", "format": "pdf"}, auth=INSPECTOR)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF") and "attachment" in r.headers["content-disposition"]
    r = await api.get(
        url, params={**Q, "facility": "KCN Thử", "format": "xlsx", "lang": "en"}, auth=INSPECTOR
    )
    assert r.status_code == 200
    assert "Episodes" in load_workbook(io.BytesIO(r.content)).sheetnames
    r = await api.get(
        url,
        params={**Q, "station": "WW1", "format": "csv", "section": "status", "lang": "en"},
        auth=INSPECTOR,
    )
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [(x["Parameter"], x["Readings"]) for x in rows] == [("pH", "6"), ("COD", "12")]

    async with await psycopg.AsyncConnection.connect(world.url) as conn:
        cur = await conn.execute(
            "SELECT actor, target, details->>'format' FROM audit_log "
            "WHERE action = 'report.export' ORDER BY id"
        )
        assert await cur.fetchall() == [
            ("insp", "station:WW1", "pdf"),
            ("insp", "facility:KCN Thử", "xlsx"),
            ("insp", "station:WW1", "csv"),
        ]

    r = await api.get(url, params={**Q, "station": "NOPE"}, auth=OPERATOR)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await api.get(
        url, params={**Q, "station": "WW1", "to": "2026-10-30T00:00+07:00"}, auth=OPERATOR
    )
    assert r.status_code == 422
    r = await api.get(url, params={**Q, "station": "WW1"})
    assert r.status_code == 401


async def test_api_completeness_and_indicators(
    api: httpx.AsyncClient, world: World, tmp_path: Path, monkeypatch: Any
) -> None:
    r = await api.get("/api/v1/reports/completeness", params={**Q, "station": "WW1"}, auth=OPERATOR)
    assert r.status_code == 200
    cod = next(d for d in r.json()["days"] if d["param"] == "COD" and d["day"] == "2026-11-01")
    assert (cod["received"], cod["expected"], cod["share"]) == (200, 288, 0.6944)
    choices = {c["key"]: c["where"] for c in r.json()["design_choices"]}
    assert choices["completeness"] == "config/alerts.yaml: evaluation.min_completeness"
    r = await api.get(
        "/api/v1/reports/completeness",
        params={**Q, "station": "WW1", "format": "csv"},
        auth=OPERATOR,
    )
    assert r.status_code == 403

    inputs = tmp_path / "indicators.yaml"
    inputs.write_text(json.dumps(INDICATORS, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("QUANTRAC_INDICATORS_FILE", str(inputs))
    r = await api.get("/api/v1/indicators", params=Q, auth=OPERATOR)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["indicator_23"]["value"] == 0.5
    assert (doc["indicator_23"]["required"], doc["indicator_23"]["transmitted"]) == (2, 1)
    facilities = {f["facility"]: f for f in doc["indicator_23"]["facilities"]}
    assert facilities["KCN Thử"]["transmitted"] is True
    assert facilities["KCN Thử"]["completeness"] == round(1346 / 2304, 4)
    assert facilities["Nhà máy Xi măng Thử"] == {
        "facility": "Nhà máy Xi măng Thử",
        "province": "Bắc Ninh",
        "stations": ["EM1"],
        "transmitted": False,
        "completeness": 0.0,
    }
    i22 = {i["province"]: i for i in doc["indicator_22"]}
    assert (i22["Bắc Ninh"]["air_stations"], i22["Bắc Ninh"]["per_100k"]) == (1, 0.5)
    assert i22["Bắc Ninh"]["air_stations_transmitting"] == 1
    assert (i22["Thái Nguyên"]["air_stations"], i22["Thái Nguyên"]["per_100k"]) == (1, 0.25)
    assert doc["indicator_22_overall"]["per_100k"] == round(2 / 600000 * 100000, 4)


async def test_indicators_with_a_listed_facility_missing_from_the_registry(world: World) -> None:
    config = parse_indicator_config(
        {
            **INDICATORS,
            "indicator_23": {
                "required_facilities": [
                    "KCN Thử",
                    {"facility": "Nhà máy Chưa Lắp", "province": "Bắc Ninh"},
                    {"facility": "Sở TN&MT", "province": "Bắc Ninh"},
                ]
            },
        }
    )
    async with await psycopg.AsyncConnection.connect(world.url) as conn:
        result = await compute_indicators(conn, world.registry, config, START, END)
    doc = indicators_json(result)
    assert [(f["facility"], f["transmitted"]) for f in doc["indicator_23"]["facilities"]] == [
        ("KCN Thử", True),
        ("Nhà máy Chưa Lắp", False),
        ("Sở TN&MT", True),
    ]
    assert doc["indicator_23"]["value"] == round(2 / 3, 4)


# --- CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def env(world: World, monkeypatch: Any) -> World:
    monkeypatch.setenv("QUANTRAC_DATABASE_URL", world.url)
    monkeypatch.setenv("QUANTRAC_MQTT_URL", world.settings.mqtt_url)
    monkeypatch.setenv("QUANTRAC_STATIONS_FILE", str(world.stations_file))
    monkeypatch.setenv("QUANTRAC_LOG_FORMAT", "text")
    return world


def test_cli_report_exceedances_pdf_csv_and_progress(
    env: World, tmp_path: Path, capsys: Any
) -> None:
    period = ["--from", START.isoformat(), "--to", END.isoformat()]
    out = tmp_path / "ww1.pdf"
    assert main(["report", "exceedances", "--station", "WW1", *period, "-o", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF")
    assert "3 episode(s), 2 calibration/fault period(s)" in capsys.readouterr().err

    # Two months: a progress bar on standard error.
    long_period = ["--from", "2026-10-01T00:00+07:00", "--to", "2026-12-01T00:00+07:00"]
    target = tmp_path / "ww1.csv"
    args = ["report", "exceedances", "--facility", "KCN Thử", *long_period]
    assert main([*args, "--format", "csv", "--lang", "en", "-o", str(target)]) == 0
    err = capsys.readouterr().err
    assert "[" in err and "4/4" in err and "calibration and faults" in err
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8-sig"))))
    assert len(rows) == 3 and rows[2]["Decree 45/2022 band"] == "1.1–<1.5"

    assert main(["report", "exceedances", "--station", "WW1", *period, "--format", "xlsx"]) == 2
    assert main(["report", "exceedances", "--station", "NOPE", *period, "-o", str(out)]) == 2
    assert "Danh mục không có trạm 'NOPE'." in capsys.readouterr().err  # --lang vi, the default
    en = ["--station", "NOPE", *period, "-o", str(out), "--lang", "en"]
    assert main(["report", "exceedances", *en]) == 2
    assert "no station 'NOPE' in the registry" in capsys.readouterr().err


def test_cli_completeness_and_indicators(env: World, tmp_path: Path, capsys: Any) -> None:
    period = ["--from", START.isoformat(), "--to", END.isoformat()]
    assert main(["report", "completeness", "--station", "WW1", *period, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    total = next(t for t in doc["totals"] if t["param"] is None)
    assert (total["received"], total["expected"]) == (1346, 2304)

    inputs = tmp_path / "indicators.yaml"
    inputs.write_text(json.dumps(INDICATORS, ensure_ascii=False), encoding="utf-8")
    assert main(["indicators", *period, "--inputs", str(inputs), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["indicator_23"]["value"] == 0.5
    assert main(["indicators", *period, "--inputs", str(inputs), "--lang", "vi"]) == 0
    table = capsys.readouterr().out
    # Vietnamese numbers: decimal comma, a dot between thousands; the population's source shown.
    assert "Chỉ tiêu 23" in table and "1/2 = 50 %" in table and "→ 0,5 trạm" in table
    assert "/ 200.000 →" in table and "Nguồn số liệu dân số (năm 2024): test" in table
    assert main(["indicators", *period, "--inputs", str(inputs), "--lang", "en"]) == 0
    table = capsys.readouterr().out
    assert "Indicator 23" in table and "/ 200,000 →" in table and "→ 0.5 stations" in table
    assert "Population source (2024): test" in table


# --- evidence an inspector can file (issue 13, items 4, 6, 7) ---------------------------------


async def test_episodes_carry_their_discharge_and_penalty_basis(world: World) -> None:
    report = await report_of(world)
    first = report.episodes[0]  # 31/10 10:00, COD ×2.67 while Flow was 100 m³/h
    assert first.discharge_m3_day == 2400.0
    assert first.penalty is not None and first.penalty.article == "Điều 18"
    rows = list(csv.DictReader(io.StringIO(exceedance_csv(report, "vi").decode("utf-8-sig"))))
    assert rows[0]["Lưu lượng xả (m³/ngày)"] == "2400.0"
    assert rows[0]["Căn cứ xử phạt (NĐ 45/2022)"].startswith(
        "Nghị định 45/2022/NĐ-CP Điều 18, khoản chưa xác minh: Phạt tiền mức cao hơn"
    )
    # The 01/11 episode came after the flow stopped being sent: no volume, and it says so.
    assert report.episodes[-1].discharge_m3_day is None


async def test_the_pdf_reads_as_a_vietnamese_document(world: World) -> None:
    report = dataclasses.replace(await report_of(world), exported_by="Trần Thị Bình (tt.binh)")
    joined = "".join("".join(t.split()) for t in pdf_texts(exceedance_pdf(report, "vi")))
    for expected in (
        "Xuất lúc",
        "bởi Trần Thị Bình (tt.binh) (quantrac)",
        "31/10/2026 10:00",  # dd/MM/yyyy HH:mm, Vietnam time
        "2,67",  # the multiple, with a decimal comma
        "200 mg/L",
        "2.400",  # m³/day, thousands with a dot
        "Điều 18, khoản chưa xác minh",
    ):
        assert "".join(expected.split()) in joined, expected
    assert "2026-10-31 10:00" not in joined


async def test_an_ongoing_episode_has_no_end_but_says_ongoing(world: World) -> None:
    report = await report_of(world)
    going = dataclasses.replace(
        report, episodes=[dataclasses.replace(report.episodes[0], ongoing=True)]
    )
    rows = list(csv.DictReader(io.StringIO(exceedance_csv(going, "en").decode("utf-8-sig"))))
    assert rows[0]["End"] == "" and rows[0]["Ongoing"] == "yes"
    joined = "".join("".join(t.split()) for t in pdf_texts(exceedance_pdf(going, "vi")))
    assert "đangdiễnra" in joined


async def test_project_choices_are_flagged_in_every_format(world: World) -> None:
    """The completeness a window needed and the average compared are quantrac's choices, not
    law: every episode row of the CSV and the XLSX says so, and the PDF lists them."""
    report = await report_of(world)
    rows = list(csv.DictReader(io.StringIO(exceedance_csv(report, "vi").decode("utf-8-sig"))))
    assert rows and all(
        r["Lựa chọn thiết kế (không phải quy định)"] == "ngưỡng đủ dữ liệu 75 %; so sánh TB 1 giờ"
        for r in rows
    )
    book = load_workbook(io.BytesIO(exceedance_xlsx(report, "en")))
    episodes = list(book["Episodes"].iter_rows(values_only=True))
    assert episodes[0][-1] == "Design choices (not law)"
    assert episodes[1][-1] == "completeness needed 75 %; compares the 1-hour mean"
    overview = [row[0] for row in book["Report"].iter_rows(values_only=True) if row[0]]
    assert "quantrac's design choices (configurable, not law)" in overview
    joined = "".join("".join(t.split()) for t in pdf_texts(exceedance_pdf(report, "vi")))
    for expected in (
        "Lựa chọn thiết kế của quantrac (có thể cấu hình, không phải quy định pháp luật)",
        "Ngưỡng đủ dữ liệu của một cửa sổ trung bình: 75 %",
    ):
        assert "".join(expected.split()) in joined, expected


async def test_an_export_names_who_made_it(api: httpx.AsyncClient) -> None:
    r = await api.get(
        "/api/v1/reports/exceedances",
        params={**Q, "station": "WW1", "format": "xlsx"},
        auth=INSPECTOR,
    )
    book = load_workbook(io.BytesIO(r.content))
    cells = [c for row in book["Báo cáo"].iter_rows(values_only=True) for c in row if c]
    assert any(str(c).startswith("Xuất lúc") and "bởi insp (quantrac)" in str(c) for c in cells)
    # Named by the local days of the period, the last one included.
    assert "exceedances-WW1-2026-10-31-2026-11-01.xlsx" in r.headers["content-disposition"]
