"""The board's station log card: operators plan a maintenance window on the station page,
everyone sees the log; headless Chromium against the real service."""

from __future__ import annotations

from typing import Any

from tests.test_board import browser as chromium  # noqa: F401  (the fixture)
from tests.test_board import pytestmark as board_marks
from tests.test_board import running as service  # noqa: F401  (the fixture)
from tests.test_board import sign_in

pytestmark = board_marks


async def test_an_operator_plans_a_window_and_an_inspector_reads_it(
    service: Any,  # noqa: F811  (the fixture imported above)
    chromium: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    _, base = service
    context, page, errors = await sign_in(chromium, base, "op.an")
    await page.goto(f"{base}/board/#/stations/WW1")
    # The log loads after the page: wait for its answer, not for "Đang tải…".
    await page.locator("#station-log", has_text="Không có mục nào").wait_for()
    await page.select_option("#log-kind", "calibration")
    await page.fill("#log-from", "2026-12-03T08:00")
    await page.fill("#log-to", "2026-12-03T07:00")  # before the start: refused, said why
    await page.fill("#log-params", "COD")
    await page.fill("#log-reason", "Hiệu chuẩn COD định kỳ")
    await page.click("#station-log-form button[type=submit]")
    await page.wait_for_selector("#station-log .error:not([hidden])")
    # In the board's language (Vietnamese), not the browser's Accept-Language.
    said = await page.inner_text("#station-log .error")
    assert "Thời điểm kết thúc phải sau thời điểm bắt đầu" in said
    await page.fill("#log-to", "2026-12-03T10:00")
    await page.click("#station-log-form button[type=submit]")
    await page.wait_for_selector("#station-log-table tr[data-kind=calibration]")
    row = await page.inner_text("#station-log-table tr[data-kind=calibration]")
    assert "Hiệu chuẩn" in row and "COD" in row and "op.an" in row
    assert errors == []
    await context.close()

    context, page, errors = await sign_in(chromium, base, "tt.binh")
    await page.goto(f"{base}/board/#/stations/WW1")
    await page.wait_for_selector("#station-log-table tr[data-kind=calibration]")
    assert await page.locator("#station-log-form").count() == 0  # inspectors read only
    assert errors == []
    await context.close()
