"""The API against hostile and curious clients, with a real database: scoped users see only
their stations (lists, details, alerts, stream, episodes, AQI, reports, indicators); sign-in is
throttled per account and address and audited; tokens expire and are revoked; users are
disabled and passwords changed; security headers; cross-site changes refused; hostile
parameters get a clear 4xx, never a 500."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest

from quantrac.api import users as users_module
from quantrac.api.app import build_api
from quantrac.api.security import LoginThrottle
from quantrac.api.users import Scope, add_user, authenticate
from quantrac.cli.main import main
from quantrac.web import WebServer
from tests.conftest import fetch, wait_until
from tests.test_api import PASSWORD, an_open_exceedance

# test_api's fixture, which `secured` builds on.
from tests.test_api import api as api

pytestmark = pytest.mark.integration

WW1_FACILITY = "KCN Thử"


@pytest.fixture
async def secured(api: Any, database_url: str) -> Any:
    """test_api's API and users (op, insp, root), plus two scoped users, seen from one client
    address."""
    _, settings, service = api
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        facility = Scope(facilities=frozenset([WW1_FACILITY]))
        await add_user(conn, "kcn", "facility", PASSWORD, "Chủ KCN", facility)
        await add_user(
            conn, "air-op", "operator", PASSWORD, "", Scope(stations=frozenset(["AIR1"]))
        )
    transport = httpx.ASGITransport(app=build_api(service.context), client=("203.0.113.7", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://quantrac") as client:
        yield client, service.context, settings


async def token(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> dict[str, str]:
    response = await client.post("/api/v1/login", json={"username": name, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


# --- scope -------------------------------------------------------------------------------------


async def test_a_facility_user_reads_only_its_own_stations_and_reports(secured: Any) -> None:
    client, _, settings = secured
    alert_id = await an_open_exceedance(settings)  # at WW1, the facility's station
    kcn = await token(client, "kcn")
    me = (await client.get("/api/v1/me", headers=kcn)).json()
    assert me["role"] == "facility" and me["scope"]["facilities"] == [WW1_FACILITY]
    listed = (await client.get("/api/v1/stations", headers=kcn)).json()
    assert [s["id"] for s in listed["items"]] == ["WW1"]
    assert (await client.get("/api/v1/stations/WW1", headers=kcn)).status_code == 200
    other = await client.get("/api/v1/stations/AIR1", headers=kcn)
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    series = await client.get(
        "/api/v1/stations/AIR1/readings",
        params={"param": "PM10", "from": "2026-01-01T00:00Z", "to": "2026-01-02T00:00Z"},
        headers=kcn,
    )
    assert series.status_code == 404
    assert (await client.get(f"/api/v1/alerts/{alert_id}", headers=kcn)).status_code == 200
    # A facility reads; it does not act on alerts.
    ack = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=kcn)
    assert ack.status_code == 403
    period = {"from": "2020-01-01T00:00Z", "to": "2020-12-31T00:00Z"}
    own = await client.get(
        "/api/v1/reports/exceedances",
        params={**period, "facility": WW1_FACILITY, "format": "csv"},
        headers=kcn,
    )
    assert own.status_code == 200 and own.headers["content-type"].startswith("text/csv")
    for params in ({"station": "AIR1"}, {"facility": "Sở TN&MT"}):
        refused = await client.get(
            "/api/v1/reports/exceedances", params={**period, **params}, headers=kcn
        )
        assert refused.status_code == 404, params
        refused = await client.get(
            "/api/v1/reports/completeness", params={**period, **params}, headers=kcn
        )
        assert refused.status_code == 404, params
    episodes = (await client.get("/api/v1/episodes", headers=kcn)).json()
    assert {e["station"] for e in episodes["items"]} <= {"WW1"}
    history = await client.get(
        "/api/v1/aqi/history", params={"station": "AIR1", **period}, headers=kcn
    )
    assert history.status_code == 404
    assert (await client.get("/api/v1/users", headers=kcn)).status_code == 403
    assert (await client.get("/api/v1/stations/WW1/log", headers=kcn)).status_code == 200
    assert (await client.get("/api/v1/stations/AIR1/log", headers=kcn)).status_code == 404


async def test_a_scoped_operator_sees_and_acts_on_its_stations_only(secured: Any) -> None:
    client, _, settings = secured
    alert_id = await an_open_exceedance(settings)  # WW1: not in air-op's scope
    air = await token(client, "air-op")
    op = await token(client, "op")
    assert (await client.get("/api/v1/alerts", headers=air)).json()["total"] == 0
    assert (await client.get("/api/v1/alerts", headers=op)).json()["total"] == 1
    assert (await client.get(f"/api/v1/alerts/{alert_id}", headers=air)).status_code == 404
    refused = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=air)
    assert refused.status_code == 404
    done = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=op)
    assert done.status_code == 200
    stations = (await client.get("/api/v1/stations", headers=air)).json()
    assert [s["id"] for s in stations["items"]] == ["AIR1"]
    window = {
        "kind": "maintenance",
        "from": "2030-01-01T08:00+07:00",
        "to": "2030-01-01T10:00+07:00",
        "reason": "thay bơm",
    }
    elsewhere = await client.post("/api/v1/stations/WW1/log", json=window, headers=air)
    assert elsewhere.status_code == 404
    planned = await client.post("/api/v1/stations/WW1/log", json=window, headers=op)
    assert planned.status_code == 201, planned.text
    entry = planned.json()["id"]
    assert (await client.post(f"/api/v1/log/{entry}/cancel", headers=air)).status_code == 404
    assert (await client.post(f"/api/v1/log/{entry}/cancel", headers=op)).status_code == 200
    indicators = await client.get(
        "/api/v1/indicators",
        params={"from": "2026-01-01T00:00Z", "to": "2026-01-02T00:00Z"},
        headers=air,
    )
    assert indicators.status_code == 200


async def test_the_live_stream_carries_only_the_users_stations(secured: Any) -> None:
    client, context, _ = secured
    air = await token(client, "air-op")
    op = await token(client, "op")
    received: dict[str, list[dict[str, Any]]] = {"air": [], "op": []}
    connected: dict[str, asyncio.Event] = {"air": asyncio.Event(), "op": asyncio.Event()}
    # A real server: an in-memory ASGI transport would hold the stream until it ends.
    web = WebServer(build_api(context), "127.0.0.1", 0)
    await web.start()
    live = httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}", timeout=10)

    async def listen(who: str, headers: dict[str, str]) -> None:
        async with live.stream("GET", "/api/v1/alerts/stream", headers=headers) as stream:
            async for line in stream.aiter_lines():
                if line.startswith(": connected"):
                    connected[who].set()  # the server listens to the hub from here on
                elif line.startswith("data:"):
                    received[who].append(json.loads(line[5:]))

    async def subscribed() -> bool:
        return all(event.is_set() for event in connected.values())

    async def delivered() -> bool:
        return len(received["op"]) == 2 and len(received["air"]) >= 1

    tasks = [asyncio.create_task(listen("air", air)), asyncio.create_task(listen("op", op))]
    try:
        # Broadcast only once both streams are subscribed: an event sent earlier is not theirs.
        await wait_until(subscribed)
        for station in ("WW1", "AIR1"):
            context.events.broadcast({"event": "opened", "station": station, "kind": "exceedance"})
        # Each stream gets its events in order: once AIR1 has arrived, the WW1 before it has
        # been delivered or filtered out.
        await wait_until(delivered)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await live.aclose()
        await web.stop()
    assert [e["station"] for e in received["op"]] == ["WW1", "AIR1"]
    assert [e["station"] for e in received["air"]] == ["AIR1"]


async def test_scopes_are_checked_when_users_are_made(secured: Any) -> None:
    client, _, _ = secured
    root = await token(client, "root")
    for body, vi, en in (
        (
            {"role": "facility"},
            "Phạm vi: tài khoản cơ sở cần nêu cơ sở hoặc trạm của mình.",
            "scope: a facility user needs its facilities or stations",
        ),
        (
            {"role": "admin", "scope": {"provinces": ["Bắc Ninh"]}},
            "Phạm vi: quản trị viên xem được mọi trạm; chỉ giao phạm vi cho các vai trò khác.",
            "scope: an admin sees every station; give a scope to other roles",
        ),
        (
            {"role": "operator", "scope": {}},
            "Phạm vi: hãy nêu tỉnh, cơ sở hoặc trạm (hoặc bỏ trống phạm vi).",
            "scope: name provinces, facilities or stations (or give none)",
        ),
    ):
        for lang, message in (("vi", vi), ("en", en)):
            made = await client.post(
                f"/api/v1/users?lang={lang}",
                json={"username": "x1", "password": PASSWORD, **body},
                headers=root,
            )
            assert made.status_code == 422, body
            assert made.json()["error"] == {
                "code": "invalid_user",
                "message": message,
                "details": None,
            }, body
    made = await client.post(
        "/api/v1/users",
        json={
            "username": "bg",
            "password": PASSWORD,
            "role": "inspector",
            "scope": {"provinces": ["Bắc Ninh"]},
        },
        headers=root,
    )
    assert made.status_code == 201 and made.json()["scope"]["provinces"] == ["Bắc Ninh"]


# --- sign-in -----------------------------------------------------------------------------------


async def test_wrong_passwords_are_throttled_per_account_and_audited(
    secured: Any, database_url: str
) -> None:
    client, _, _ = secured
    for _ in range(5):
        bad = await client.post("/api/v1/login", json={"username": "op", "password": "sai-roi-1"})
        assert bad.status_code == 401
    # Now even the right password waits: the guesser cannot tell.
    held = await client.post("/api/v1/login", json={"username": "op", "password": PASSWORD})
    assert held.status_code == 429 and held.json()["error"]["code"] == "too_many_attempts"
    assert int(held.headers["retry-after"]) > 0
    basic = await client.get("/api/v1/me", auth=("op", PASSWORD))
    assert basic.status_code == 429
    # Another account from the same address still signs in.
    assert (
        await client.post("/api/v1/login", json={"username": "root", "password": PASSWORD})
    ).status_code == 200
    rows = await fetch(
        database_url,
        "SELECT actor, action, details->>'address' FROM audit_log "
        "WHERE action LIKE 'login.%%' ORDER BY id",
    )
    assert rows.count(("op", "login.failed", "203.0.113.7")) == 5
    assert ("op", "login.throttled", "203.0.113.7") in rows


def test_the_throttle_counts_accounts_and_addresses_in_a_sliding_window() -> None:
    now = [0.0]
    throttle = LoginThrottle(account_limit=3, address_limit=5, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("An", "1.1.1.1") == 0
        throttle.failed("an", "1.1.1.1")
    assert throttle.retry_after("AN", "2.2.2.2") == 60  # the account, from anywhere
    for name in ("b", "c"):
        throttle.failed(name, "1.1.1.1")
    assert throttle.retry_after("d", "1.1.1.1") == 60  # the address, for any account
    now[0] = 61.0
    assert throttle.retry_after("an", "1.1.1.1") == 0
    throttle.failed("e", "3.3.3.3")
    throttle.succeeded("e")
    assert throttle.retry_after("e", "9.9.9.9") == 0


async def test_unknown_users_cost_a_hash_like_known_ones(
    db_conn: psycopg.AsyncConnection, monkeypatch: Any
) -> None:
    from quantrac.api import schema

    await schema.upgrade(db_conn)
    await add_user(db_conn, "known", "operator", PASSWORD)
    threads: list[str] = []
    real = users_module.check_password

    def spy(password: str, stored: str) -> bool:
        threads.append(threading.current_thread().name)
        return real(password, stored)

    monkeypatch.setattr(users_module, "check_password", spy)
    assert await authenticate(db_conn, "known", "wrong-password") is None
    assert await authenticate(db_conn, "nobody-here", "wrong-password") is None
    await db_conn.execute("UPDATE users SET disabled = true WHERE username = 'known'")
    assert await authenticate(db_conn, "known", PASSWORD) is None
    # One Argon2id verification each, none on the event loop's thread.
    assert len(threads) == 3
    assert all(t.startswith("quantrac-password") for t in threads)


async def test_an_old_scrypt_hash_still_signs_in_and_is_replaced(
    db_conn: psycopg.AsyncConnection,
) -> None:
    import base64
    import hashlib

    from quantrac.api import schema

    await schema.upgrade(db_conn)
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    old = f"scrypt$16384${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    await db_conn.execute(
        "INSERT INTO users (username, display_name, role, password_hash) "
        "VALUES ('old', 'old', 'operator', %s)",
        [old],
    )
    assert await authenticate(db_conn, "old", PASSWORD) is not None
    row = await (await db_conn.execute("SELECT password_hash FROM users")).fetchone()
    assert row is not None and row[0].startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_tokens_expire_are_revoked_and_die_with_a_new_password(secured: Any) -> None:
    client, context, _ = secured
    op = await token(client, "op")
    assert (await client.get("/api/v1/me", headers=op)).status_code == 200
    out = await client.post("/api/v1/logout", headers=op)
    assert out.json() == {"revoked": True}
    assert (await client.get("/api/v1/me", headers=op)).status_code == 401
    op = await token(client, "op")
    real_clock = context.clock
    context.clock = lambda: real_clock() + timedelta(hours=12, seconds=1)
    assert (await client.get("/api/v1/me", headers=op)).status_code == 401
    context.clock = real_clock
    op, other_session = await token(client, "op"), await token(client, "op")
    wrong = await client.post(
        "/api/v1/me/password",
        json={"current_password": "not-it-at-all", "new_password": "mới-mới-mới-2"},
        headers=op,
    )
    assert wrong.status_code == 403
    changed = await client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "mới-mới-mới-2"},
        headers=op,
    )
    assert changed.status_code == 200
    assert (await client.get("/api/v1/me", headers=other_session)).status_code == 401
    await token(client, "op", "mới-mới-mới-2")


async def test_an_admin_disables_and_re_enables_a_user(secured: Any) -> None:
    client, _, _ = secured
    root, op = await token(client, "root"), await token(client, "op")
    off = await client.patch("/api/v1/users/op", json={"disabled": True}, headers=root)
    assert off.status_code == 200 and off.json()["disabled"] is True
    assert (await client.get("/api/v1/me", headers=op)).status_code == 401
    refused = await client.post("/api/v1/login", json={"username": "op", "password": PASSWORD})
    assert refused.status_code == 401
    self_off = await client.patch("/api/v1/users/root", json={"disabled": True}, headers=root)
    assert self_off.status_code == 422
    on = await client.patch(
        "/api/v1/users/op",
        json={"disabled": False, "scope": {"stations": ["AIR1"]}},
        headers=root,
    )
    assert on.json()["scope"]["stations"] == ["AIR1"]
    op = await token(client, "op")
    assert [
        s["id"] for s in (await client.get("/api/v1/stations", headers=op)).json()["items"]
    ] == ["AIR1"]
    listed = (await client.get("/api/v1/users", headers=root)).json()["items"]
    assert {u["username"] for u in listed} >= {"op", "root", "kcn"}


# --- headers, cross-site, hostile input ------------------------------------------------------


async def test_security_headers(secured: Any) -> None:
    client, _, _ = secured
    for path in ("/board/", "/api/v1/i18n", "/healthz", "/docs"):
        response = await client.get(path)
        headers = response.headers
        assert headers["x-frame-options"] == "DENY", path
        assert headers["x-content-type-options"] == "nosniff", path
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
        script = next(d for d in csp.split("; ") if d.startswith("script-src"))
        assert ("'unsafe-inline'" in script) == (path == "/docs"), path
    assert (await client.get("/api/v1/i18n")).headers["cache-control"] == "no-store"


async def test_cross_site_changes_are_refused(secured: Any) -> None:
    client, _, _ = secured
    evil = {"Origin": "https://evil.example"}
    refused = await client.post(
        "/api/v1/login", json={"username": "op", "password": PASSWORD}, headers=evil
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "cross_site"
    fetched = await client.post(
        "/api/v1/login",
        json={"username": "op", "password": PASSWORD},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert fetched.status_code == 403
    same = await client.post(
        "/api/v1/login",
        json={"username": "op", "password": PASSWORD},
        headers={"Origin": "http://quantrac"},
    )
    assert same.status_code == 200


HOSTILE = [
    ("/api/v1/alerts?station=%00", 422),
    ("/api/v1/alerts?station=WW1%00", 422),
    ("/api/v1/alerts?station=%FF%FE", 422),
    ("/api/v1/stations/%00", 422),
    ("/api/v1/stations/%C3%28", 422),
    ("/api/v1/alerts?offset=9223372036854775808", 422),
    ("/api/v1/alerts?offset=99999999999999999999999", 422),
    ("/api/v1/episodes?offset=9223372036854775807", 200),
    ("/api/v1/alerts?from=0001-01-01T00:00:00%2B07:00", 422),
    ("/api/v1/alerts?from=0001-01-01T00:00:00Z", 422),
    ("/api/v1/alerts?from=9999-12-31T23:59:59Z", 422),
    ("/api/v1/alerts?to=not-a-date", 422),
    ("/api/v1/alerts/99999999999999999999999", 404),
    ("/api/v1/stations/..%2F..%2Fetc%2Fpasswd", 404),
    ("/api/v1/stations/'%20OR%20'1'='1", 404),
    ("/api/v1/alerts?station='%3B%20DROP%20TABLE%20alerts%3B--", 200),
    ("/api/v1/alerts?kind=exceedance'--", 422),
    ("/api/v1/alerts?station=" + "A" * 9000, 414),
    (
        "/api/v1/reports/exceedances?from=2020-01-01T00:00Z&to=2020-02-01T00:00Z"
        "&station=..%2F..%2Fetc",
        404,
    ),
    (
        "/api/v1/reports/exceedances?from=0001-01-01T00:00Z&to=2020-02-01T00:00Z&station=WW1",
        422,
    ),
    ("/api/v1/aqi/history?station=AIR1%00&from=2020-01-01T00:00Z&to=2020-01-02T00:00Z", 422),
]


async def test_hostile_parameters_get_a_clear_4xx(secured: Any) -> None:
    client, _, _ = secured
    root = await token(client, "root")
    wrong = []
    for path, status in HOSTILE:
        response = await client.get(path, headers=root)
        if response.status_code != status or (
            status != 200 and not response.json()["error"]["code"]
        ):
            wrong.append((path, status, response.status_code, response.text[:200]))
    assert wrong == []


async def test_hostile_bodies_get_a_clear_4xx(secured: Any) -> None:
    client, _, settings = secured
    alert_id = await an_open_exceedance(settings)
    root = await token(client, "root")
    nul = await client.post(
        f"/api/v1/alerts/{alert_id}/note", json={"note": "a\u0000b"}, headers=root
    )
    assert nul.status_code == 422, nul.text
    huge_name = await client.post(
        "/api/v1/login", json={"username": "x" * 100_000, "password": "y"}
    )
    assert huge_name.status_code == 422


async def test_report_file_names_stay_plain(secured: Any) -> None:
    client, _, _ = secured
    root = await token(client, "root")
    response = await client.get(
        "/api/v1/reports/exceedances",
        params={
            "from": "2020-01-01T00:00Z",
            "to": "2020-02-01T00:00Z",
            "facility": WW1_FACILITY,
            "format": "csv",
        },
        headers=root,
    )
    disposition = response.headers["content-disposition"]
    ascii_name = disposition.split('filename="')[1].split('"')[0]
    assert "/" not in ascii_name and ".." not in ascii_name.removesuffix(".csv")
    assert ascii_name.startswith("exceedances-KCN-Th")


# --- the users command ---------------------------------------------------------------------------


def test_users_command_disables_changes_passwords_and_scopes(
    make_settings: Any, database_url: str, monkeypatch: Any, capsys: Any
) -> None:
    monkeypatch.setenv("QUANTRAC_DATABASE_URL", database_url)
    monkeypatch.setenv("QUANTRAC_NEW_PASSWORD", PASSWORD)
    assert main(["users", "add", "an", "--role", "facility", "--lang", "en"]) == 2
    assert "facility user needs" in capsys.readouterr().err
    assert main(["users", "add", "an", "--role", "facility", "--facility", WW1_FACILITY]) == 0
    assert main(["users", "disable", "an"]) == 0
    assert main(["users", "list", "--lang", "en"]) == 0
    listed = capsys.readouterr().out
    assert "an" in listed and "disabled" in listed and WW1_FACILITY in listed
    monkeypatch.setenv("QUANTRAC_NEW_PASSWORD", "một-mật-khẩu-mới")
    assert main(["users", "passwd", "an"]) == 0
    assert main(["users", "enable", "an"]) == 0
    assert main(["users", "scope", "an", "--role", "inspector", "--unrestricted"]) == 0
    assert main(["users", "revoke", "nobody"]) == 2

    async def check() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            user = await authenticate(conn, "an", "một-mật-khẩu-mới")
            assert user is not None and user.role == "inspector" and user.scope is None
            assert await authenticate(conn, "an", PASSWORD) is None

    asyncio.run(check())
    rows = asyncio.run(
        fetch(database_url, "SELECT action FROM audit_log WHERE actor = 'cli' ORDER BY id")
    )
    assert [r[0] for r in rows] == [
        "user.add",
        "user.disable",
        "user.passwd",
        "user.enable",
        "user.scope",
    ]


async def test_the_board_and_the_docs_page_run_under_their_csp(secured: Any) -> None:
    """In Chromium, with the headers as sent: the board's sign-in page and Swagger UI load and
    nothing they do is blocked by their Content-Security-Policy."""
    import shutil
    from pathlib import Path

    playwright = pytest.importorskip("playwright.async_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian's chromium is not installed")
    _, context, _ = secured
    web = WebServer(build_api(context), "127.0.0.1", 0)
    await web.start()
    blocked: list[str] = []
    try:
        async with playwright.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, headless=True)
            page = await (await browser.new_context()).new_page()
            page.on(
                "console",
                lambda msg: (
                    blocked.append(msg.text) if "Content Security Policy" in msg.text else None
                ),
            )
            await page.goto(f"http://127.0.0.1:{web.port}/board/")
            await page.wait_for_selector("#login-form")
            await page.goto(f"http://127.0.0.1:{web.port}/docs")
            # Swagger UI ran (its inline start-up script was allowed). The bundled Swagger UI
            # reads OpenAPI 3.0 only and says so for FastAPI's 3.1 document (.version-pragma):
            # a problem of its own, not of the policy.
            await page.wait_for_selector(
                ".swagger-ui .opblock, .swagger-ui .version-pragma", timeout=15_000
            )
            await browser.close()
    finally:
        await web.stop()
    assert blocked == []
