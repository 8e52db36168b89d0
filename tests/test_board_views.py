"""What operators, inspectors and vendors see on the board (issue 13), in Debian's Chromium.

Alerts are put in place through the alert store (as the engine would), readings and AQI rows as
ingest and the AQI job store them; the board then runs against the real API on a desktop
(1280×800) and a phone (390×844) viewport: every item that is about what the board shows runs on
both, and every Vietnamese page visited is checked for stray values, dot decimals and "1h".

Items of issue 13 here: 1 reports page and role badge; 2 worst-alert colours, severity-then-time
order, flap counter, stale AQI; 3 one limit per colour; 4 latest data is the newest reading;
5 the audit trail, resolving with a note, who closed it, assigning; 9 flagged readings and the
chart on the alert's parameter; 10 the phone; 11 the open-alerts gauge. The rest: reports in
tests/test_reports.py and tests/test_unit_reports.py (4, 7), ack texts and `quantrac check` in
tests/test_unit_validation.py and tests/test_unit_check.py (8), tests/test_cli.py (11, rejections),
tests/test_unit_registry.py (12).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from quantrac.alerts.engine import Change, Transition
from quantrac.alerts.model import Kind, Severity
from quantrac.alerts.store import AlertStore
from quantrac.api.users import add_user
from quantrac.app import App
from quantrac.ingest.rollup import refresh_hourly
from quantrac.localservers import free_port
from tests import test_board
from tests.test_board import CHROMIUM, PASSWORD, TIMEOUT_MS, async_playwright

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(async_playwright is None, reason="the playwright package is not installed"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Debian's Chromium, headless: tests/test_board.py's browser fixture, here named chromium.
chromium = test_board.browser
NAMES = {"WW1": "Trạm nước thải thử", "AIR1": "Trạm không khí thử"}
SEVERITY = {
    Kind.EXCEEDANCE: Severity.CRITICAL,
    Kind.WARNING: Severity.MINOR,
    Kind.DATA_LOSS: Severity.MAJOR,
    Kind.DEVICE_FAULT: Severity.MAJOR,
}


@pytest.fixture
async def board(make_settings: Any, database_url: str) -> AsyncIterator[tuple[str, str]]:
    """The API and board alone (no alert engine: the test decides which alerts exist)."""
    port = free_port()
    app = App(make_settings(http_port=port, alerts_enabled=False))
    await app.start()
    try:
        assert app.api is not None
        await asyncio.wait_for(app.api.events.following.wait(), 10)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await add_user(conn, "op.an", "operator", PASSWORD, "Nguyễn Văn An")
            await add_user(conn, "tt.binh", "inspector", PASSWORD, "Trần Thị Bình")
        yield f"http://127.0.0.1:{port}", database_url
    finally:
        await app.stop()


async def sign_in(browser: Any, base: str, username: str, viewport: dict[str, int]) -> Any:
    # A Vietnamese operator's browser (navigator.language, Intl). Chromium's own date fields
    # follow its interface language, not this: they still read mm/dd/yyyy here.
    context = await browser.new_context(viewport=viewport, accept_downloads=True, locale="vi-VN")
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    await page.goto(f"{base}/board/")
    await page.fill("#login-username", username)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#alerts-table")
    return page


def transition(
    change: Change, kind: Kind, station: str, param: str, at: datetime, **details: Any
) -> Transition:
    return Transition(change, kind, station, param, at, details.get("value"), details)


async def apply(database_url: str, transitions: list[Transition], now: datetime) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await AlertStore(conn, NAMES).apply(transitions, lambda k: SEVERITY[k], now)
        await conn.commit()


async def store_readings(
    database_url: str, rows: list[tuple[str, str, datetime, float, int]]
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        for station, param, at, value, status in rows:
            await conn.execute(
                "INSERT INTO readings (station_id, param, measured_at, value, status, received_at)"
                " VALUES (%s, %s, %s, %s, %s, now())",
                [station, param, at, value, status],
            )
        await conn.commit()


VIEWPORTS = pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])


async def no_stray_text(page: Any) -> None:
    """No value the page failed to fill shows through as a programmer's word."""
    text = await page.inner_text("body")
    assert not re.search(r"\b(null|undefined|NaN|\[object Object\])\b", text), text
    if await page.get_attribute("html", "lang") == "vi":
        # Vietnamese numbers: the decimal comma, and hours in words ("1 giờ", not "1h").
        assert not re.findall(r"\b\d+\.\d+\b", text), re.findall(r".{20}\b\d+\.\d+\b.{10}", text)
        assert not re.findall(r"\b\d+h\b", text), re.findall(r".{20}\b\d+h\b.{10}", text)


async def no_sideways_scroll(page: Any, viewport: dict[str, int] = PHONE) -> None:
    width = await page.evaluate("document.scrollingElement.scrollWidth")
    wide = await page.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > "
        f"{viewport['width']} + 1).slice(-3).map(e => e.tagName + '#' + e.id + '.' + e.className)"
    )
    assert width <= viewport["width"], f"{page.url} is {width} px wide at {viewport}: {wide}"


# --- 1. inspectors export from the board ------------------------------------------------------


@VIEWPORTS
async def test_an_inspector_exports_reports_from_the_board(
    board: Any, chromium: Any, viewport: dict[str, int]
) -> None:
    base, database_url = board
    now = datetime.now(UTC)
    await store_readings(
        database_url, [("WW1", "COD", now - timedelta(minutes=5 * i), 40.0, 0) for i in range(6)]
    )
    page = await sign_in(chromium, base, "tt.binh", viewport)
    assert "xem và xuất báo cáo" in await page.inner_text("#who")
    assert "chỉ xem" not in await page.inner_text("#who")
    await page.click("a[data-nav=reports]")
    await page.wait_for_selector("#report-form option[value='station:WW1']", state="attached")
    assert await page.inner_text("a[data-nav=reports]") == "Báo cáo"
    await no_sideways_scroll(page, viewport)
    await no_stray_text(page)
    box = await page.locator("#report-submit").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    await page.select_option("#report-target", "station:WW1")
    await page.fill("#report-from", "2026-01-01")
    await page.fill("#report-to", "2026-01-31")

    # The PDF: named after the station and the local days chosen (both included).
    await page.select_option("#report-format", "pdf")
    async with page.expect_download() as info:
        await page.click("#report-submit")
    download = await info.value
    assert download.suggested_filename == "exceedances-WW1-2026-01-01-2026-01-31.pdf"
    assert Path(await download.path()).read_bytes()[:5] == b"%PDF-"
    await page.wait_for_selector("#report-file")
    assert "exceedances-WW1-2026-01-01-2026-01-31.pdf" in await page.inner_text("#report-status")

    # Completeness, as CSV.
    await page.select_option("#report-kind", "completeness")
    async with page.expect_download() as info:
        await page.click("#report-submit")
    download = await info.value
    assert download.suggested_filename == "completeness-WW1-2026-01-01-2026-01-31.csv"
    text = Path(await download.path()).read_text(encoding="utf-8-sig")
    assert next(csv.reader(io.StringIO(text)))[:3] == ["Trạm", "Thông số", "Ngày"]

    # The provincial indicators, as CSV, in English: no station to choose.
    await page.select_option("#report-kind", "indicators")
    assert await page.is_hidden("#report-target-field")
    await page.select_option("#report-lang", "en")
    async with page.expect_download() as info:
        await page.click("#report-submit")
    download = await info.value
    assert download.suggested_filename == "indicators-2026-01-01-2026-01-31.csv"
    rows = list(csv.reader(io.StringIO(Path(await download.path()).read_text("utf-8-sig"))))
    assert rows[0][0] == "Indicator"
    assert {r[0] for r in rows[1:]} == {"23", "22"}
    assert any(r[2] == "KCN Thử" for r in rows)

    # Every export is in the audit log, under the inspector's name.
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT details->>'report' FROM audit_log WHERE actor = 'tt.binh' "
            "AND action = 'report.export' ORDER BY id"
        )
        assert [r[0] for r in await cur.fetchall()] == [
            "exceedances",
            "completeness",
            "indicators",
        ]
    assert page.errors == []


async def test_an_operator_sees_reports_but_may_not_download(board: Any, chromium: Any) -> None:
    base, _ = board
    page = await sign_in(chromium, base, "op.an", DESKTOP)
    await page.click("a[data-nav=reports]")
    await page.wait_for_selector("#report-no-export")
    assert await page.is_disabled("#report-submit")
    assert page.errors == []


# --- 2. trouble at a glance -------------------------------------------------------------------


async def trouble(database_url: str) -> datetime:
    """WW1: a COD exceedance and a flapping TSS warning; AIR1: data loss while it transmits."""
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    await store_readings(
        database_url,
        [("AIR1", "PM10", now - timedelta(minutes=2), 60.0, 0)]
        + [("WW1", "COD", now - timedelta(minutes=5 * i), 150.0, 0) for i in range(3)],
    )
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        # An AQI from three hours ago is not today's air.
        await AlertStore(conn, NAMES).save_aqi(
            [
                {
                    "station_id": "AIR1",
                    "hour_start": hour - timedelta(hours=2),
                    "aqi": 87,
                    "category": "moderate",
                    "dominant": ["PM10"],
                    "sub_indices": {"PM10": 87},
                    "inputs": {},
                }
            ]
        )
        await conn.commit()
    # The warning opens and clears three times; the third is still open.
    for i in range(3):
        at = now - timedelta(minutes=50 - 10 * i)
        await apply(
            database_url,
            [transition(Change.RAISE, Kind.WARNING, "WW1", "TSS", at, value=45.0, limit=50.0)],
            at,
        )
        if i < 2:
            await apply(
                database_url,
                [transition(Change.CLEAR, Kind.WARNING, "WW1", "TSS", at + timedelta(minutes=5))],
                at + timedelta(minutes=5),
            )
    await apply(
        database_url,
        [
            transition(
                Change.RAISE,
                Kind.EXCEEDANCE,
                "WW1",
                "COD",
                now - timedelta(minutes=40),
                value=150.0,
                limit=75.0,
                unit="mg/L",
                multiple=2.0,
                averaging="1h",
            ),
            transition(
                Change.RAISE,
                Kind.DATA_LOSS,
                "AIR1",
                "NO2",
                now - timedelta(minutes=1),
                silent_minutes=35,
                threshold_minutes=30,
            ),
        ],
        now,
    )
    return now


@VIEWPORTS
async def test_trouble_at_a_glance(board: Any, chromium: Any, viewport: dict[str, int]) -> None:
    base, database_url = board
    await trouble(database_url)
    page = await sign_in(chromium, base, "op.an", viewport)

    # The list: worst first, and the flapping warning is one row with its counter.
    await page.wait_for_selector("#alerts-body tr[data-kind=data_loss]")
    severities = await page.eval_on_selector_all(
        "#alerts-body tr[data-alert-id]", "rows => rows.map(r => r.dataset.severity)"
    )
    assert severities == ["critical", "major", "minor"]
    await page.select_option("#filter-state", "")
    # A locator, not wait_for_function: the board's CSP forbids the eval that one uses.
    await page.locator("#alerts-summary", has_text="3 / 5").wait_for()
    warnings = page.locator("#alerts-body tr[data-kind=warning]")
    assert await warnings.count() == 1
    assert "lặp lại 3 lần trong 24 giờ" in await warnings.inner_text()
    # The warning's evidence has no unit of its own: the parameter's registered one is shown.
    assert "45,0 / 50,0 mg/L" in await warnings.inner_text()

    # The stations: the worst open alert colours the marker and the row; data loss is not
    # "transmitting", and the old AQI says it is old.
    await page.click("a[data-nav=stations]")
    await page.wait_for_selector("svg.map a[data-station=WW1][data-trouble=exceedance]")
    ww1 = page.locator("svg.map a[data-station=WW1] .marker")
    assert await ww1.get_attribute("fill") == "#c62828"
    air = page.locator("#stations-body tr[data-station=AIR1]")
    assert await air.get_attribute("data-status") == "data_loss"
    assert await air.get_attribute("data-trouble") == "data_loss"
    assert "Đang truyền" not in await air.inner_text()
    assert "Mất dữ liệu" in await air.inner_text()
    assert await page.locator("#stations-body tr[data-station=AIR1] .aqi[data-stale=true]").count()
    assert "cũ" in await air.locator(".aqi").inner_text()
    assert await page.get_attribute("#stations-body tr[data-station=WW1]", "class") == (
        "trouble trouble-exceedance"
    )
    summary = await page.inner_text("#stations-summary")
    # WW1 transmits (with an exceedance); AIR1 does not count as transmitting.
    assert "1 đang truyền" in summary and "1 mất dữ liệu" in summary
    assert "1 Vượt quy chuẩn" in summary and "1 Mất dữ liệu" in summary
    # The header's counts carry their tier's colour too.
    badges = await page.eval_on_selector_all(
        "#stations-summary .trouble-badge", "bs => bs.map(b => b.dataset.trouble)"
    )
    assert badges == ["exceedance", "data_loss"]
    await no_sideways_scroll(page, viewport)
    await no_stray_text(page)
    assert page.errors == []


async def test_the_alert_list_sorts_by_severity_then_time(board: Any, chromium: Any) -> None:
    base, database_url = board
    now = datetime.now(UTC).replace(microsecond=0)
    older, newer, oldest = (now - timedelta(minutes=m) for m in (40, 10, 50))
    await apply(
        database_url,
        [
            transition(Change.RAISE, Kind.WARNING, "WW1", "TSS", older, value=45.0, limit=50.0),
            transition(Change.RAISE, Kind.WARNING, "AIR1", "PM10", newer, value=45.0, limit=50.0),
            transition(Change.RAISE, Kind.EXCEEDANCE, "WW1", "COD", oldest, value=150.0),
        ],
        now,
    )
    page = await sign_in(chromium, base, "op.an", DESKTOP)
    await page.locator("#alerts-body tr[data-alert-id]").nth(2).wait_for()
    order = await page.eval_on_selector_all(
        "#alerts-body tr[data-alert-id]",
        "rows => rows.map(r => [r.dataset.severity, r.querySelector('td:nth-child(3)').innerText])",
    )
    # Worst first, however old; within one severity, the newest first.
    assert [severity for severity, _ in order] == ["critical", "minor", "minor"]
    assert "AIR1" in order[1][1] or NAMES["AIR1"] in order[1][1]
    assert "WW1" in order[2][1] or NAMES["WW1"] in order[2][1]
    assert page.errors == []


# --- 3. one limit per colour ------------------------------------------------------------------


@VIEWPORTS
async def test_a_live_value_is_coloured_against_the_limit_its_percentage_uses(
    board: Any, chromium: Any, viewport: dict[str, int]
) -> None:
    base, database_url = board
    now = datetime.now(UTC)
    # NO2 150 µg/m³: over the 24-hour (100) and annual (40) means, but a live value is compared
    # with the 1-hour limit (200): 75 %, not red. PM10 has 24-hour and annual limits only.
    await store_readings(
        database_url,
        [
            ("AIR1", "NO2", now - timedelta(minutes=1), 150.0, 0),
            ("AIR1", "PM10", now - timedelta(minutes=1), 120.0, 0),
        ],
    )
    page = await sign_in(chromium, base, "op.an", viewport)
    await page.goto(f"{base}/board/#/stations/AIR1")
    row = page.locator("#values-table tr[data-param=NO2]")
    await row.wait_for()
    assert await row.get_attribute("data-level") == "ok"
    text = await row.inner_text()
    assert "75%" in text and "so với giới hạn trung bình 1 giờ ≤ 200" in text
    pm10 = page.locator("#values-table tr[data-param=PM10]")
    assert await pm10.get_attribute("data-level") == "over"
    assert "120%" in await pm10.inner_text() and "24 giờ" in await pm10.inner_text()
    # With the decimal comma, latitude and longitude are apart by a semicolon.
    assert "21,27; 106,19" in await page.inner_text("main")
    await no_sideways_scroll(page, viewport)
    await no_stray_text(page)
    assert page.errors == []


# --- 10. phone --------------------------------------------------------------------------------


async def test_the_board_on_a_phone(board: Any, chromium: Any) -> None:
    base, database_url = board
    await trouble(database_url)
    page = await sign_in(chromium, base, "op.an", PHONE)
    row = page.locator("#alerts-body tr[data-kind=exceedance]")
    await row.wait_for()
    await no_sideways_scroll(page)
    await no_stray_text(page)
    # Cards: every cell names its column; the buttons are on screen, big enough to tap.
    assert await row.locator("td[data-label='Mức độ']").count() == 1
    for action in ("acknowledge", "resolve"):
        box = await row.locator(f"button[data-action={action}]").bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert box["height"] >= 36
    await row.locator("button[data-action=acknowledge]").click()
    await page.wait_for_selector("#act-dialog[open]")
    await page.fill("#act-note", "Đã gọi nhà máy")
    await page.click("#act-submit")
    await page.wait_for_selector("#alerts-body tr[data-kind=exceedance][data-state=acknowledged]")
    await no_sideways_scroll(page)
    await no_stray_text(page)
    # Resolving, from the same card: a note is asked for, then the alert leaves the list.
    warning = page.locator("#alerts-body tr[data-kind=warning]")
    resolve = warning.locator("button[data-action=resolve]")
    await resolve.scroll_into_view_if_needed()
    box = await resolve.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    await resolve.click()
    await page.wait_for_selector("#act-dialog[open]")
    dialog = await page.locator("#act-dialog").bounding_box()
    assert dialog is not None and dialog["x"] >= 0 and dialog["x"] + dialog["width"] <= 390
    await page.fill("#act-note", "Đã hiệu chỉnh lại cảm biến TSS")
    await page.click("#act-submit")
    await page.wait_for_selector("#act-dialog", state="hidden")
    await warning.wait_for(state="detached")
    await no_sideways_scroll(page)
    await no_stray_text(page)

    await page.click("a[data-nav=stations]")
    await page.wait_for_selector("#stations-body tr[data-station=WW1] .chip[data-param=COD]")
    # Stations are cards too: each cell says which column it is.
    labels = await page.eval_on_selector_all(
        "#stations-body tr[data-station=WW1] td", "tds => tds.map(td => td.dataset.label || '')"
    )
    assert labels and all(labels), labels
    await no_sideways_scroll(page)
    await no_stray_text(page)
    await page.goto(f"{base}/board/#/stations/WW1")
    await page.wait_for_selector("#chart-24h svg")
    await no_sideways_scroll(page)
    await no_stray_text(page)
    alert_id = await page.evaluate(
        "fetch('/api/v1/alerts?kind=exceedance', {headers: {Authorization: "
        "'Bearer ' + sessionStorage.getItem('quantrac.token')}}).then(r => r.json())"
        ".then(d => d.items[0].id)"
    )
    await page.goto(f"{base}/board/#/alerts/{alert_id}")
    await page.wait_for_selector("table.trail")
    await no_sideways_scroll(page)
    await no_stray_text(page)
    await page.click("a[data-nav=reports]")
    await page.wait_for_selector("#report-form")
    await no_sideways_scroll(page)
    await no_stray_text(page)
    assert page.errors == []


# --- 4, 5. true times and a readable audit trail ------------------------------------------------


def local_hm(at: datetime) -> str:
    return (at + timedelta(hours=7)).strftime("%H:%M")


@VIEWPORTS
async def test_the_audit_trail_and_true_times(
    board: Any, chromium: Any, viewport: dict[str, int]
) -> None:
    base, database_url = board
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    window_end = now.replace(minute=0) - timedelta(hours=1)
    newest = window_end - timedelta(minutes=5)
    await store_readings(
        database_url,
        [("WW1", "COD", newest - timedelta(minutes=5 * i), 150.0, 0) for i in range(12)]
        + [("AIR1", "NO2", now - timedelta(minutes=47), 30.0, 0)],
    )
    raise_ = transition(
        Change.RAISE,
        Kind.EXCEEDANCE,
        "WW1",
        "COD",
        window_end,
        value=150.0,
        limit=75.0,
        unit="mg/L",
        averaging="1h",
    )
    await apply(database_url, [raise_], now - timedelta(minutes=30))
    for i in range(5):  # late readings revised the evidence five times
        revise = transition(
            Change.REVISE, Kind.EXCEEDANCE, "WW1", "COD", window_end, value=151.0 + i, limit=75.0
        )
        await apply(database_url, [revise], now - timedelta(minutes=25 - i))
    await apply(
        database_url,
        [
            transition(
                Change.RAISE,
                Kind.DATA_LOSS,
                "AIR1",
                "",
                now - timedelta(minutes=10),
                last_measured_at=(now - timedelta(minutes=47)).isoformat(),
                silent_minutes=37,
            )
        ],
        now - timedelta(minutes=10),
    )
    page = await sign_in(chromium, base, "op.an", viewport)
    row = page.locator("#alerts-body tr[data-kind=exceedance]")
    await row.wait_for()
    # Latest data: the newest reading, not the end of the window.
    assert local_hm(newest) in await row.locator("td").nth(5).inner_text()
    silent = await page.inner_text("#alerts-body tr[data-kind=data_loss] .silent-since")
    assert silent.startswith("mất tín hiệu từ ") and local_hm(now - timedelta(minutes=47)) in silent
    assert "(47 phút)" in silent or "(48 phút)" in silent  # counted from the last reading
    # Still open: no end, so the page keeps counting (an absent value is no attribute).
    since = page.locator("#alerts-body tr[data-kind=data_loss] .silent-since")
    assert await since.get_attribute("data-until") is None

    # Resolving needs a note: the dialog says so, and so does the API.
    await row.locator("button[data-action=resolve]").click()
    await page.wait_for_selector("#act-dialog[open]")
    assert "bắt buộc" in await page.inner_text("label[for=act-note]")
    await page.click("#act-submit")
    assert "Cần ghi chú khi đóng" in await page.inner_text("#act-error")
    token = await page.evaluate("sessionStorage.getItem('quantrac.token')")
    alert_id = int(await row.get_attribute("data-alert-id") or 0)
    refused = await page.evaluate(
        f"fetch('/api/v1/alerts/{alert_id}/resolve', {{method: 'POST', headers: "
        f"{{Authorization: 'Bearer {token}', 'Content-Type': 'application/json'}}, "
        "body: JSON.stringify({note: '  '})})"
        ".then(async r => [r.status, (await r.json()).error.code])"
    )
    assert refused == [422, "note_required"]
    await page.fill("#act-note", "Nhà máy đã dừng xả, kiểm tra lại bể lắng")
    await page.click("#act-submit")
    await page.wait_for_selector("#act-dialog", state="hidden")

    # The trail: the five revisions are one line, the people's actions stand out, and the
    # closed alert says who closed it.
    await page.goto(f"{base}/board/#/alerts/{alert_id}")
    await page.wait_for_selector("table.trail tr[data-event=resolved]")
    assert local_hm(newest) in await page.inner_text("#alert-newest")
    revised = page.locator("table.trail tr[data-event=revised]")
    assert await revised.count() == 1
    assert await revised.get_attribute("data-folded") == "5"
    assert "× 5 lần" in await revised.inner_text()
    # The revisions carried no unit: the evidence still reads in the parameter's unit.
    assert await page.inner_text("dd[data-field=limit]") == "75,0 mg/L"
    await no_stray_text(page)
    assert await page.get_attribute("table.trail tr[data-event=resolved]", "class") == "human"
    assert await revised.get_attribute("class") == "machine"
    assert (
        await page.inner_text("#closed-by")
        == f"đóng bởi op.an · {await page.inner_text('#closed-by time')}"
    )
    await no_sideways_scroll(page, viewport)
    assert page.errors == []


async def test_a_value_and_its_limit_read_with_the_same_decimals(board: Any, chromium: Any) -> None:
    """Item 6: "153 mg/L" beside "75,0 mg/L" read as if measured differently; the value, the
    maximum and the limit of an alert, and a station value and its limits, share the limit's
    decimals (3 significant figures of 75: one), with the decimal comma in Vietnamese."""
    base, database_url = board
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    await store_readings(database_url, [("WW1", "COD", now - timedelta(minutes=2), 153.0, 0)])
    raise_ = transition(
        Change.RAISE,
        Kind.EXCEEDANCE,
        "WW1",
        "COD",
        now - timedelta(minutes=5),
        value=153.0,
        limit=75.0,
        maximum=153.0,
        unit="mg/L",
        averaging="1h",
    )
    await apply(database_url, [raise_], now - timedelta(minutes=5))
    page = await sign_in(chromium, base, "op.an", DESKTOP)
    row = page.locator("#alerts-body tr[data-kind=exceedance]")
    await row.wait_for()
    assert "153,0 / 75,0 mg/L" in await row.inner_text()
    alert_id = await row.get_attribute("data-alert-id")
    await page.goto(f"{base}/board/#/alerts/{alert_id}")
    await page.wait_for_selector("dd[data-field=limit]")

    def decimals(text: str, mark: str) -> int:
        number = re.match(r"[\d.,]+", text)
        assert number, text
        return len(number.group().rpartition(mark)[2]) if mark in number.group() else 0

    shown = {
        field: await page.inner_text(f"dd[data-field={field}]")
        for field in ("value", "limit", "maximum")
    }
    assert shown == {"value": "153,0 mg/L", "limit": "75,0 mg/L", "maximum": "153,0 mg/L"}
    assert await page.inner_text("#alert-last-value") == "153,0 mg/L"
    assert len({decimals(text, ",") for text in shown.values()}) == 1
    await no_stray_text(page)

    # The station page: the value and the limits it is read against, alike.
    await page.goto(f"{base}/board/#/stations/WW1")
    cod = page.locator("#values-table tr[data-param=COD]")
    await cod.wait_for()
    value = await cod.locator("td.num").inner_text()
    assert value == "153,0 mg/L"
    limits = await cod.locator("td .limit").all_inner_texts()
    assert limits, limits
    for text in limits:
        bound = re.search(r"[≤≥] ([\d.,]+) mg/L", text)
        assert bound and decimals(bound.group(1), ",") == 1, text
    await no_stray_text(page)

    # In English: the same decimals, with the decimal point.
    await page.click("button[data-lang=en]")
    await page.wait_for_selector("html[lang=en]")
    await page.goto(f"{base}/board/#/alerts/{alert_id}")
    await page.wait_for_selector("dd[data-field=limit]")
    assert await page.inner_text("dd[data-field=value]") == "153.0 mg/L"
    assert await page.inner_text("dd[data-field=limit]") == "75.0 mg/L"
    assert page.errors == []


async def test_repeats_and_revisions_fold_between_peoples_actions(
    board: Any, chromium: Any
) -> None:
    base, database_url = board
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    end = now.replace(minute=0) - timedelta(hours=1)

    def cod(change: Change, value: float) -> Transition:
        return transition(change, Kind.EXCEEDANCE, "WW1", "COD", end, value=value, limit=75.0)

    # The engine interleaves an hour's repeat with late readings' revisions: 3 revised and
    # 2 updated, then a person's note, then 2 more revisions.
    steps = [Change.RAISE, Change.REVISE, Change.RAISE, Change.REVISE, Change.RAISE]
    steps += [Change.REVISE]
    for i, change in enumerate(steps):
        await apply(database_url, [cod(change, 150.0 + i)], now - timedelta(minutes=40 - i))
    page = await sign_in(chromium, base, "op.an", DESKTOP)
    row = page.locator("#alerts-body tr[data-kind=exceedance]")
    await row.wait_for()
    alert_id = await row.get_attribute("data-alert-id")
    token = await page.evaluate("sessionStorage.getItem('quantrac.token')")
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
        noted = await c.post(f"/api/v1/alerts/{alert_id}/note", json={"note": "đang theo dõi"})
        assert noted.status_code == 200
    for i in range(2):
        await apply(database_url, [cod(Change.REVISE, 160.0 + i)], now - timedelta(minutes=5 - i))
    await page.goto(f"{base}/board/#/alerts/{alert_id}")
    await page.wait_for_selector("table.trail tr[data-event=noted]")
    lines = await page.eval_on_selector_all(
        "table.trail tbody tr", "rs => rs.map(r => [r.dataset.event, r.dataset.folded || '1'])"
    )
    assert lines == [
        ["opened", "1"],
        ["revised", "3"],
        ["updated", "2"],
        ["noted", "1"],
        ["revised", "2"],
    ]
    assert await page.locator("table.trail tr.human").count() == 1
    assert page.errors == []


async def test_an_alert_the_engine_cleared_says_so(board: Any, chromium: Any) -> None:
    base, database_url = board
    now = datetime.now(UTC)
    at = now - timedelta(minutes=30)
    await apply(
        database_url, [transition(Change.RAISE, Kind.WARNING, "WW1", "TSS", at, value=45.0)], at
    )
    await apply(database_url, [transition(Change.CLEAR, Kind.WARNING, "WW1", "TSS", now)], now)
    page = await sign_in(chromium, base, "op.an", DESKTOP)
    # Filters changed quickly: the earlier list (active alerts) answers after the later one
    # (resolved). The later choice is what the table shows, not whichever answer came last.
    answered = asyncio.Event()
    page.on("response", lambda r: answered.set() if "state=resolved" in r.url else None)

    async def late_for_active(route: Any) -> None:
        if "state=open%2Cacknowledged" in route.request.url:
            await asyncio.wait_for(answered.wait(), TIMEOUT_MS / 1000)
        await route.continue_()

    await page.route("**/api/v1/alerts?*", late_for_active)
    await page.select_option("#filter-state", "open")
    await page.select_option("#filter-state", "open,acknowledged")
    await page.select_option("#filter-state", "resolved")
    row = page.locator("#alerts-body tr[data-kind=warning][data-state=resolved]")
    await row.wait_for()
    assert "tự đóng: điều kiện đã hết" in await row.locator(".closed-by").inner_text()
    assert page.errors == []


async def assign_in_dialog(page: Any, row: Any, username: str, note: str) -> None:
    await row.locator("button[data-action=assign]").click()
    await page.wait_for_selector("#act-dialog[open] #act-assignee-field:not([hidden])")
    await page.wait_for_selector(f"#act-assignee option[value='{username}']", state="attached")
    await page.select_option("#act-assignee", username)
    await page.fill("#act-note", note)
    await page.click("#act-submit")
    await page.wait_for_selector("#act-dialog", state="hidden")


@VIEWPORTS
async def test_an_operator_assigns_an_alert_and_the_trail_shows_it(
    board: Any, chromium: Any, viewport: dict[str, int]
) -> None:
    base, database_url = board
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await add_user(conn, "op.hai", "operator", PASSWORD, "Lê Văn Hai")
    now = datetime.now(UTC)
    at = now - timedelta(minutes=20)
    raise_ = transition(
        Change.RAISE, Kind.EXCEEDANCE, "WW1", "COD", at, value=150.0, limit=75.0, unit="mg/L"
    )
    await apply(database_url, [raise_], at)
    page = await sign_in(chromium, base, "op.an", viewport)
    row = page.locator("#alerts-body tr[data-kind=exceedance]")
    await row.wait_for()
    button = row.locator("button[data-action=assign]")
    assert await button.inner_text() == "Giao cho…"
    box = await button.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]

    # The dialog lists the users who may act on alerts (not the inspector); nobody chosen yet.
    await button.click()
    await page.wait_for_selector("#act-assignee option[value='op.hai']", state="attached")
    options = await page.eval_on_selector_all("#act-assignee option", "os => os.map(o => o.value)")
    assert options == ["", "op.an", "op.hai"]
    assert "Lê Văn Hai (op.hai)" in await page.inner_text("#act-assignee")
    assert await page.inner_text("#act-submit") == "Giao"
    await page.click("#act-submit")
    assert await page.inner_text("#act-error") == "Chọn người được giao."
    await page.click("#act-cancel")
    if viewport is PHONE:
        await no_sideways_scroll(page)
        await no_stray_text(page)
    await no_stray_text(page)

    await assign_in_dialog(page, row, "op.hai", "Anh Hai ra trạm kiểm tra bơm")
    assignee = row.locator(".assignee")
    await assignee.wait_for()
    assert await assignee.inner_text() == "giao: op.hai"
    assert await row.get_attribute("data-state") == "open"  # assigning is not acknowledging

    # The alert's page: who has it, and the assignment stands out in the trail as a person's.
    alert_id = await row.get_attribute("data-alert-id")
    await page.goto(f"{base}/board/#/alerts/{alert_id}")
    await page.wait_for_selector("table.trail tr[data-event=assigned]")
    assert (await page.inner_text("#assigned-to")).startswith("op.hai · giao bởi op.an · ")
    trail = page.locator("table.trail tr[data-event=assigned]")
    assert await trail.get_attribute("class") == "human"
    cells = await trail.locator("td").all_inner_texts()
    assert cells[1:] == ["Giao xử lý", "op.an", "→ op.hai Anh Hai ra trạm kiểm tra bơm"]
    if viewport is PHONE:
        await no_sideways_scroll(page)
        await no_stray_text(page)
    await no_stray_text(page)

    # Given back on the alert's own page; the trail keeps both, newest assignee shown.
    await assign_in_dialog(page, page.locator(".actions.big"), "op.an", "")
    await page.wait_for_selector("table.trail tr[data-event=assigned] >> nth=1")
    assert (await page.inner_text("#assigned-to")).startswith("op.an · ")
    assert await page.locator("table.trail tr[data-event=assigned].human").count() == 2

    # In English.
    await page.click("[data-lang=en]")
    # The page is drawn again in English: wait for it (the Vietnamese trail matches at once).
    await page.wait_for_selector("button[data-action=assign]:text-is('Assign to…')")
    await page.wait_for_selector("table.trail tr[data-event=assigned]")
    assert "Assigned" in await trail.first.inner_text()
    assert page.errors == []


async def test_an_inspector_is_not_offered_assign(board: Any, chromium: Any) -> None:
    base, database_url = board
    at = datetime.now(UTC) - timedelta(minutes=20)
    await apply(
        database_url, [transition(Change.RAISE, Kind.WARNING, "WW1", "TSS", at, value=45.0)], at
    )
    page = await sign_in(chromium, base, "tt.binh", DESKTOP)
    row = page.locator("#alerts-body tr[data-kind=warning]")
    await row.wait_for()
    assert await row.locator("button[data-action=assign]").count() == 0
    token = await page.evaluate("sessionStorage.getItem('quantrac.token')")
    alert_id = await row.get_attribute("data-alert-id")
    refused = await page.evaluate(
        f"fetch('/api/v1/alerts/{alert_id}/assign', {{method: 'POST', headers: "
        f"{{Authorization: 'Bearer {token}', 'Content-Type': 'application/json'}}, "
        "body: JSON.stringify({assignee: 'op.an'})})"
        ".then(async r => [r.status, (await r.json()).error.code])"
    )
    assert refused == [403, "forbidden"]
    assert page.errors == []


# How many pairs of a chart's text labels overlap (by their boxes on screen).
OVERLAPPING_LABELS = """svg => {
  const boxes = [...svg.querySelectorAll('text')].map((t) => t.getBoundingClientRect())
    .filter((b) => b.width > 0);
  let n = 0;
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const [a, b] = [boxes[i], boxes[j]];
      const apart = a.right - 0.5 <= b.left || b.right - 0.5 <= a.left
        || a.bottom - 0.5 <= b.top || b.bottom - 0.5 <= a.top;
      if (!apart) n++;
    }
  }
  return n;
}"""


# --- 9. flagged data looks flagged ------------------------------------------------------------


@VIEWPORTS
async def test_flagged_readings_look_flagged_and_charts_open_on_the_alert(
    board: Any, chromium: Any, viewport: dict[str, int]
) -> None:
    base, database_url = board
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    rows = [("WW1", "COD", now - timedelta(minutes=5 * i), 40.0, 0) for i in range(12, 60)]
    # TSS: faulty (02) for the last hour, calibrating (01) for half an hour before that.
    rows += [
        ("WW1", "TSS", now - timedelta(minutes=5 * i), 30.0, 2 if i < 12 else 1 if i < 18 else 0)
        for i in range(60)
    ]
    await store_readings(database_url, rows)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO rollup_dirty (hour) SELECT generate_series("
            "date_trunc('hour', now()) - interval '6 hours', now(), interval '1 hour')"
        )
        await refresh_hourly(conn)
    await apply(
        database_url,
        [
            transition(
                Change.RAISE,
                Kind.DEVICE_FAULT,
                "WW1",
                "TSS",
                now,
                value=30.0,
                status="02",
                since=(now - timedelta(minutes=55)).isoformat(),
            )
        ],
        now,
    )
    page = await sign_in(chromium, base, "op.an", viewport)
    row = page.locator("#alerts-body tr[data-kind=device_fault]")
    await row.wait_for()
    assert (
        await row.locator(".reading-status[data-status='02']").inner_text() == "02 · Lỗi thiết bị"
    )
    # The value in the list carries the parameter's registered unit (the engine's fault
    # evidence has none of its own).
    assert "30 mg/L" in await row.inner_text()

    # The station link of the alert opens the page on TSS, not on the first parameter.
    await row.locator("td:nth-child(3) a").click()
    await page.wait_for_url("**/#/stations/WW1/TSS")
    await page.wait_for_selector("#chart-24h svg")
    assert await page.input_value("#chart-param") == "TSS"
    tss = page.locator("#values-table tr[data-param=TSS]")
    assert await tss.get_attribute("data-level") == "status-02"
    assert await tss.locator(".ratio-fill").count() == 0  # no green bar for a faulty reading
    assert "Lỗi thiết bị" in await tss.inner_text()
    await page.wait_for_selector("#chart-24h rect.status-02")
    assert await page.locator("#chart-24h rect.status-01").count() >= 1
    legend = await page.inner_text("#chart-24h .flagged-legend")
    assert "02 · Lỗi thiết bị" in legend and "01 · Đang hiệu chuẩn" in legend

    # No two labels of a chart overlap.
    for chart in ("#chart-24h", "#chart-7d"):
        overlaps = await page.eval_on_selector(f"{chart} svg", OVERLAPPING_LABELS)
        assert overlaps == 0, chart
    await no_sideways_scroll(page, viewport)
    await no_stray_text(page)
    assert page.errors == []


# --- 11. Prometheus ---------------------------------------------------------------------------


async def test_open_alerts_by_kind_and_severity_on_metrics(board: Any) -> None:
    base, database_url = board
    await trouble(database_url)
    async with httpx.AsyncClient(base_url=base, follow_redirects=False) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200  # answered directly, no redirect
    text = response.text
    assert 'quantrac_alerts_open{kind="exceedance",severity="critical"} 1.0' in text
    assert 'quantrac_alerts_open{kind="warning",severity="minor"} 1.0' in text  # 2 cleared
    assert 'quantrac_alerts_open{kind="data_loss",severity="major"} 1.0' in text
    assert 'quantrac_alerts_open{kind="device_fault",severity="major"} 0.0' in text


# --- the screenshots in docs/img ----------------------------------------------------------------

SHOTS = os.environ.get("QUANTRAC_SCREENSHOTS")


@pytest.mark.skipif(not SHOTS, reason="set QUANTRAC_SCREENSHOTS=docs/img to remake the screenshots")
async def test_make_the_screenshots(board: Any, chromium: Any) -> None:
    """QUANTRAC_SCREENSHOTS=docs/img pytest tests/test_board_views.py -k screenshots"""
    base, database_url = board
    folder = Path(SHOTS or ".")
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    rows = []
    for i in range(12 * 30):
        at = now - timedelta(minutes=5 * i)
        wave = 40 + 25 * ((i // 12) % 6 == 0) + (i % 7)
        rows.append(("WW1", "COD", at, 150.0 if i < 14 else float(wave), 0))
        rows.append(("WW1", "Flow", at, 95.0 + (i % 5), 0))
        rows.append(("WW1", "TSS", at, 30.0 + (i % 4), 2 if 40 <= i < 52 else 0))
        rows.append(("WW1", "pH", at, 7.1 + 0.05 * (i % 3), 1 if 80 <= i < 86 else 0))
    await store_readings(database_url, rows)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO rollup_dirty (hour) SELECT generate_series(date_trunc('hour', now()) "
            "- interval '32 hours', now(), interval '1 hour')"
        )
        await refresh_hourly(conn)
    await trouble(database_url)
    desktop = await sign_in(chromium, base, "op.an", DESKTOP)
    await desktop.wait_for_selector("#alerts-body tr[data-kind=data_loss]")
    await desktop.screenshot(path=str(folder / "board-alerts.png"))
    await desktop.click("a[data-nav=stations]")
    await desktop.wait_for_selector("#stations-body tr[data-station=WW1] .chip[data-param=COD]")
    await desktop.screenshot(path=str(folder / "board-stations.png"))
    await desktop.goto(f"{base}/board/#/stations/WW1/TSS")
    await desktop.wait_for_selector("#chart-24h rect.status-02")
    await desktop.wait_for_selector("#chart-7d svg")
    await desktop.screenshot(path=str(folder / "board-station.png"), full_page=True)
    alert_id = await desktop.evaluate(
        "fetch('/api/v1/alerts?kind=exceedance', {headers: {Authorization: "
        "'Bearer ' + sessionStorage.getItem('quantrac.token')}}).then(r => r.json())"
        ".then(d => d.items[0].id)"
    )
    window_end = now.replace(minute=0)
    for i in range(4):
        revise = transition(
            Change.REVISE, Kind.EXCEEDANCE, "WW1", "COD", window_end, value=150.0 + i, limit=75.0
        )
        await apply(database_url, [revise], now + timedelta(seconds=i))
    token = await desktop.evaluate("sessionStorage.getItem('quantrac.token')")
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        await client.post(
            f"/api/v1/alerts/{alert_id}/acknowledge",
            json={"note": "Đã gọi điện cho nhà máy, đang kiểm tra hệ thống xử lý"},
        )
        await client.post(
            f"/api/v1/alerts/{alert_id}/assign",
            json={"assignee": "op.an", "note": "Ra trạm lấy mẫu đối chứng"},
        )
    await desktop.goto(f"{base}/board/#/alerts/{alert_id}")
    await desktop.wait_for_selector("table.trail tr[data-event=assigned]")
    await desktop.screenshot(path=str(folder / "board-alert.png"), full_page=True)
    inspector = await sign_in(chromium, base, "tt.binh", DESKTOP)
    await inspector.click("a[data-nav=reports]")
    await inspector.wait_for_selector("#report-form option[value='station:WW1']", state="attached")
    await inspector.screenshot(path=str(folder / "board-reports.png"))
    phone = await sign_in(chromium, base, "op.an", PHONE)
    await phone.wait_for_selector("#alerts-body tr[data-kind=exceedance]")
    await phone.screenshot(path=str(folder / "board-phone.png"), full_page=True)
    for shot in folder.glob("board-*.png"):
        assert shot.stat().st_size < 400_000, shot
