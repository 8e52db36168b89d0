"""The operator board in real headless Chromium (Debian's), against the whole running service.

An operator signs in, sees the stations, watches an exceedance arrive live over the alert stream
(no reload), acknowledges it with a note in the page, and the API then reports it acknowledged
by that operator with that note. The board switches to English; an inspector gets no action
buttons; the station page draws the limit line; the indicators page copes with a missing route.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from quantrac.api.users import add_user
from quantrac.app import App
from quantrac.localservers import free_port
from tests.conftest import publisher
from tests.test_alerts_service import an_hour_ago, cod_hour, message

async_playwright: Any
try:
    from playwright.async_api import async_playwright
except ImportError:  # pragma: no cover - the board tests need the playwright package
    async_playwright = None

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(async_playwright is None, reason="the playwright package is not installed"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]

PASSWORD = "mat-khau-thu-1"
TIMEOUT_MS = 15_000

INDICATORS = {
    "period": {"from": "2026-01-01T00:00:00+07:00", "to": "2026-12-31T00:00:00+07:00"},
    "indicator_23": {
        "value": 0.5,
        "required": 2,
        "transmitted": 1,
        "by_province": [{"province": "Bắc Ninh", "value": 0.5, "required": 2, "transmitted": 1}],
        "facilities": [
            {
                "facility": "KCN Thử",
                "province": "Bắc Ninh",
                "stations": 1,
                "transmitted": True,
                "completeness": 0.93,
            },
            {
                "facility": "Nhà máy Chưa Truyền",
                "province": "Bắc Ninh",
                "stations": 1,
                "transmitted": False,
                "completeness": 0.0,
            },
        ],
    },
    "indicator_22": [
        {
            "province": "Bắc Ninh",
            "urban_population": 420000,
            "air_stations": 1,
            "per_100k": 0.238,
            "illustrative": True,
        }
    ],
}


@pytest.fixture
async def running(make_settings: Any, database_url: str) -> AsyncIterator[tuple[App, str]]:
    port = free_port()
    app = App(make_settings(http_port=port))
    await app.start()
    try:
        assert app.service.mqtt is not None and app.alerts is not None and app.api is not None
        await asyncio.wait_for(app.service.mqtt.connected.wait(), 10)
        await asyncio.wait_for(app.api.events.following.wait(), 10)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await add_user(conn, "op.an", "operator", PASSWORD, "Nguyễn Văn An")
            await add_user(conn, "tt.binh", "inspector", PASSWORD, "Trần Thị Bình")
        yield app, f"http://127.0.0.1:{port}"
    finally:
        await app.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def sign_in(browser: Any, base: str, username: str) -> tuple[Any, Any, list[str]]:
    context = await browser.new_context(viewport={"width": 1366, "height": 768})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The board runs under its Content-Security-Policy (no inline script): nothing it does may
    # be blocked by it.
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    await page.goto(f"{base}/")  # redirected to /board/
    await page.wait_for_selector("#login-form")
    assert await page.get_attribute("html", "lang") == "vi"
    assert await page.inner_text("label[for=login-username]") == "Tên đăng nhập"
    await page.fill("#login-username", username)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#alerts-table")
    await page.wait_for_selector("#stream-state[data-state=live]")
    return context, page, errors


async def test_operator_sees_a_new_alert_live_and_acknowledges_it(
    running: tuple[App, str], browser: Any, servers: Any
) -> None:
    _, base = running
    context, page, errors = await sign_in(browser, base, "op.an")
    assert "Nguyễn Văn An" in await page.inner_text("#who")

    # The station board: schematic map from the coordinates, and the table.
    await page.click("a[data-nav=stations]")
    await page.wait_for_selector("svg.map a[data-station=WW1]")
    await page.wait_for_selector("svg.map a[data-station=AIR1]")
    assert await page.inner_text("#stations-body tr[data-station=WW1] a") == "Trạm nước thải thử"
    await page.wait_for_selector("#stations-body tr[data-station=WW1] .chip[data-param=COD]")

    # Back to the alert list; the page is not reloaded from here on.
    await page.click("a[data-nav=alerts]")
    await page.wait_for_selector("#alerts-summary:not(:empty)")
    await page.evaluate("window.__same_page = true")
    await page.check("#sound-toggle")  # the beep path runs too (no sound card needed)

    pub = await publisher(servers.mqtt_url)
    pub.publish("stations/WW1/data", message("WW1", cod_hour(an_hour_ago(), 150.0)), qos=1)
    row = "#alerts-body tr[data-kind=exceedance]"
    await page.wait_for_selector(f"{row}[data-state=open][data-severity=critical]")
    await pub.disconnect()
    assert await page.evaluate("window.__same_page") is True
    banner = page.locator("#critical-banner")
    await banner.wait_for(state="visible")
    assert "Vượt quy chuẩn" in await banner.inner_text()
    alert_id = int(await page.get_attribute(row, "data-alert-id") or 0)
    assert "75" in await page.inner_text(f"{row} td.num")  # value / limit evidence

    # Acknowledge with a note through the dialog.
    note = "Đã gọi điện cho nhà máy, đang kiểm tra hệ thống xử lý"
    await page.click(f"{row} button[data-action=acknowledge]")
    await page.wait_for_selector("#act-dialog[open]")
    await page.fill("#act-note", note)
    await page.click("#act-submit")
    await page.wait_for_selector(f"{row}[data-state=acknowledged]")
    await page.wait_for_selector("#act-dialog", state="hidden")
    assert await page.locator(f"{row} button[data-action=acknowledge]").count() == 0
    assert await banner.is_hidden()

    # The API agrees, for the operator's own token.
    token = await page.evaluate("sessionStorage.getItem('quantrac.token')")
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}
    ) as api:
        response = await api.get(f"/api/v1/alerts/{alert_id}")
        assert response.status_code == 200
        alert = response.json()
        assert alert["state"] == "acknowledged"
        assert alert["acknowledged_by"] == "op.an" and alert["note"] == note
        assert [(e["event"], e["actor"], e["note"]) for e in alert["events"]][-1] == (
            "acknowledged",
            "op.an",
            note,
        )

    # The alert's page: evidence and its trail.
    await page.click(f"{row} a[href='#/alerts/{alert_id}']")
    await page.wait_for_selector("dd[data-field=regulation]")
    assert await page.inner_text("dd[data-field=regulation]") == "QCVN 40:2011/BTNMT"
    assert await page.inner_text("dd[data-field=column]") == "A"
    assert await page.inner_text("dd[data-field=multiple]") == "×2"
    assert await page.inner_text("dd[data-field=completeness]") == "100%"
    formula = await page.inner_text("dd[data-field=formula]")
    assert "= 75 mg/L" in formula
    assert not re.search(r"\d\.\d", formula), formula  # the Vietnamese board: decimal comma
    await page.wait_for_selector("table.trail tr[data-event=acknowledged]")

    # English: the labels change, the data stays.
    await page.click("button[data-lang=en]")
    await page.wait_for_selector("html[lang=en]")
    assert await page.inner_text("a[data-nav=alerts]") == "Alerts"
    assert await page.inner_text("table.trail tr[data-event=acknowledged] td:nth-child(2)") == (
        "Acknowledged"
    )
    await page.click("a[data-nav=alerts]")
    await page.wait_for_selector(f"{row}[data-state=acknowledged]")
    assert "Limit exceeded" in await page.inner_text(row)
    assert "Acknowledged" in await page.inner_text(f"{row} .badge.state")
    assert "Severity" in await page.inner_text("#alerts-table thead")

    # The station page: latest values against limits, charts with the limit line dashed.
    await page.goto(f"{base}/board/#/stations/WW1")
    await page.wait_for_selector("#values-table tr[data-param=COD]")
    await page.select_option("#chart-param", "COD")
    for span in ("24h", "7d"):
        line = page.locator(f"#chart-{span} .limit-line[data-value='75'] line")
        await line.wait_for(state="attached")
        assert await line.get_attribute("stroke-dasharray")
    assert "1-hour limit: 75 mg/L" in await page.inner_text("#chart-24h")
    # Which regulation applies and why, and the design choices labelled as not law.
    assert "QCVN 40:2011/BTNMT" in await page.inner_text("#regime")
    await page.click("#design-choices summary")
    choices = await page.inner_text("#design-choices")
    assert "quantrac's design choices (configurable, not law)" in choices
    assert "config/alerts.yaml: evaluation.min_completeness" in choices

    # The indicators page: a clear message while the route is missing, the figures once it is.
    await page.route(
        "**/api/v1/indicators?*",
        lambda route: route.fulfill(
            status=404, content_type="application/json", body='{"detail": "Not Found"}'
        ),
    )
    await page.click("a[data-nav=indicators]")
    await page.wait_for_selector("#indicators-missing")
    await page.unroute("**/api/v1/indicators?*")
    await page.route(
        "**/api/v1/indicators?*",
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(INDICATORS)
        ),
    )
    await page.click("form.filters button[type=submit]")
    await page.wait_for_selector("#indicator-23")
    assert "50%" in await page.inner_text("#indicator-23 .big-number")
    assert "Nhà máy Chưa Truyền" in await page.inner_text("#indicator-23")
    assert "0.238" in await page.inner_text("#indicator-22")
    assert "[illustrative figure]" in await page.inner_text("#indicator-22")
    assert "1 of 2" in await page.inner_text("#indicator-23-provinces")
    assert errors == []
    await context.close()


async def test_an_inspector_reads_but_cannot_act(
    running: tuple[App, str], browser: Any, servers: Any
) -> None:
    _, base = running
    context, page, errors = await sign_in(browser, base, "tt.binh")
    assert "Thanh tra" in await page.inner_text("#who")
    await page.wait_for_selector("#read-only-note")
    pub = await publisher(servers.mqtt_url)
    pub.publish("stations/WW1/data", message("WW1", cod_hour(an_hour_ago(), 150.0)), qos=1)
    row = "#alerts-body tr[data-kind=exceedance][data-state=open]"
    await page.wait_for_selector(row)
    await pub.disconnect()
    assert await page.locator("#alerts-body button[data-action]").count() == 0
    alert_id = await page.get_attribute(row, "data-alert-id")
    await page.click(f"{row} a[href='#/alerts/{alert_id}']")
    await page.wait_for_selector("dd[data-field=regulation]")
    assert await page.locator("button[data-action], #note-text").count() == 0

    token = await page.evaluate("sessionStorage.getItem('quantrac.token')")
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}
    ) as api:
        refused = await api.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"note": "x"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
    assert errors == []
    await context.close()


async def test_the_api_reference_renders_in_a_browser(
    running: tuple[App, str], browser: Any
) -> None:
    """/docs draws every operation of /openapi.json (OpenAPI 3.1), under the page's CSP."""
    _, base = running
    async with httpx.AsyncClient(base_url=base) as client:
        spec = (await client.get("/openapi.json")).json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await page.goto(f"{base}/docs")
    await page.wait_for_selector(".opblock", timeout=TIMEOUT_MS)
    assert await page.locator(".opblock").count() == operations
    assert await page.locator("text=Unable to render this definition").count() == 0
    assert spec["openapi"].startswith("3.1") and "quantrac API" in await page.title()
    assert errors == []
    await page.close()
