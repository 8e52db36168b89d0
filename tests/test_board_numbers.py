"""Numbers written the same on the board and in what the server writes (reports, e-mails,
``quantrac check``): the board formats with the browser's ``Intl.NumberFormat`` (board.js,
``fmtValue``/``fmtNumber``), the server with ``quantrac.core.i18n.format_number``. Compared in
Debian's Chromium on ties, where rounding rules differ, and on ordinary readings."""

from __future__ import annotations

import random
import re
from pathlib import Path

from playwright.async_api import async_playwright

from quantrac.core.i18n import format_number, limit_digits
from tests.test_board import CHROMIUM

# What board.js asks of Intl: exactly ``digits`` decimals (fixed) or at most ``digits``.
_INTL = """(cases) => cases.map(([value, digits, lang, fixed]) =>
  new Intl.NumberFormat(lang === 'vi' ? 'vi-VN' : 'en-GB',
    fixed ? { minimumFractionDigits: digits, maximumFractionDigits: digits }
          : { maximumFractionDigits: digits }).format(value))"""


def _cases() -> list[tuple[float, int, str, bool]]:
    rng = random.Random(20261204)
    values = [k / 8 for k in range(-40, 41)]  # exact ties at 0, 1 and 2 decimals
    values += [12.5, 148.5, 0.125, 1.005, 2.675, 1234.5, 99.95, 1234567.25, 0.0004, 2.0**100, 1e-7]
    values += [round(rng.uniform(0, 500), rng.randint(0, 4)) for _ in range(150)]
    values += [rng.uniform(-50, 5000) for _ in range(100)]
    return [
        (value, digits, lang, fixed)
        for value in values
        for digits in (0, 1, 2, 3)
        for lang in ("vi", "en")
        for fixed in (True, False)
    ]


async def test_the_board_and_the_server_write_every_number_alike() -> None:
    cases = _cases()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page()
            written = await page.evaluate(_INTL, [list(c) for c in cases])
        finally:
            await browser.close()
    differ = []
    for (value, digits, lang, fixed), board in zip(cases, written, strict=True):
        server = format_number(value, lang, digits, fixed=fixed)
        # The board writes a negative zero as "-0"; the server drops the sign.
        if board != server and board.lstrip("-") != server:
            differ.append((value, digits, lang, fixed, board, server))
    assert differ == [], differ[:10]


def _board_function(name: str) -> str:
    """A top-level function of board.js, as its source text (board.js is a module that starts
    the board when loaded, so its helpers are taken out one by one)."""
    source = (Path(__file__).resolve().parents[1] / "quantrac/board/board.js").read_text()
    found = re.search(rf"^function {name}\(.*?^}}\n", source, re.S | re.M)
    assert found, name
    return found.group(0)


async def test_the_board_and_the_server_give_a_limit_the_same_decimals() -> None:
    rng = random.Random(4)
    limits = [75, 75.0, 0.05, 6.5, 8.5, 150, 1000, 0.3, 2.25, 0.0015, 1e-7, 12.345678, 99.99, 5]
    limits += [round(rng.uniform(0, 2000), rng.randint(0, 5)) for _ in range(200)]
    pairs = [[a, None] for a in limits]
    pairs += [[a, b] for a, b in zip(limits, reversed(limits), strict=True)]
    script = (
        _board_function("writtenDecimals")
        + _board_function("limitDigits")
        + "return pairs.map(([a, b]) => limitDigits(a, b));"
    )
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page()
            board = await page.evaluate(f"(pairs) => {{ {script} }}", pairs)
        finally:
            await browser.close()
    server = [limit_digits(a, b) for a, b in pairs]
    differ = [(p, b, s) for p, b, s in zip(pairs, board, server, strict=True) if b != s]
    assert differ == []
