"""The HTTP API against a real database and broker: roles, one error shape, paging, audit, live
alert events over SSE, acknowledge/resolve, and the registry edited by an admin."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from quantrac.alerts.service import AlertService
from quantrac.api.app import ApiService, FileRegistry, build_api
from quantrac.api.users import add_user, set_disabled
from quantrac.core.catalog import load_catalog
from quantrac.core.contract import Reading, Status
from quantrac.ingest.service import IngestService
from quantrac.web import WebServer
from tests.conftest import CONFIG, TEST_REGISTRY, fetch, publisher, wait_until
from tests.test_alerts_service import an_hour_ago, cod_hour, message

pytestmark = pytest.mark.integration

PASSWORD = "mật-khẩu-thử-1"


@pytest.fixture
async def api(make_settings: Any, database_url: str) -> Any:
    settings = make_settings(alerts_tick_s=3600)
    catalog = load_catalog(CONFIG / "parameters.yaml")
    service = ApiService(settings, catalog, FileRegistry(settings.stations_path, catalog))
    context = await service.start()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for name, role in (("op", "operator"), ("insp", "inspector"), ("root", "admin")):
            await add_user(conn, name, role, PASSWORD, f"Người dùng {name}")
    transport = httpx.ASGITransport(app=build_api(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://quantrac") as client:
        yield client, settings, service
    await service.stop()


async def login(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await client.post("/api/v1/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def an_open_exceedance(settings: Any) -> int:
    alerts = AlertService(settings)
    await alerts.start()
    try:
        readings = [
            Reading("WW1", "COD", t, v, Status.MEASURING)
            for _, v, t, _ in cod_hour(an_hour_ago(), 150.0)
        ]
        [event] = await alerts.process("WW1", readings, datetime.now(UTC))
        return event.alert_id
    finally:
        await alerts.stop()


async def test_everything_but_the_translations_needs_a_signed_in_user(api: Any) -> None:
    client, _, _ = api
    response = await client.get("/api/v1/stations")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    bad = await client.post("/api/v1/login", json={"username": "op", "password": "sai"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "bad_credentials"
    texts = await client.get("/api/v1/i18n", params={"lang": "en"})
    assert texts.status_code == 200 and texts.json()["alert.kind.exceedance"]
    basic = await client.get("/api/v1/me", auth=("insp", PASSWORD))
    assert basic.json() == {
        "username": "insp",
        "display_name": "Người dùng insp",
        "role": "inspector",
        "scope": None,
    }


async def test_stations_list_and_detail_with_limits(api: Any, database_url: str) -> None:
    client, _, _ = api
    headers = await login(client, "insp")
    now = datetime.now(UTC).replace(microsecond=0)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO readings VALUES ('WW1', 'COD', %s, 60.0, 0, %s)", [now, now]
        )
    stations = (await client.get("/api/v1/stations", headers=headers)).json()
    by_id = {s["id"]: s for s in stations["items"]}
    assert set(by_id) == {"AIR1", "WW1"}
    assert by_id["WW1"]["status"] == "online" and by_id["AIR1"]["status"] == "offline"
    detail = (await client.get("/api/v1/stations/WW1", headers=headers)).json()
    cod = next(v for v in detail["values"] if v["param"] == "COD")
    assert cod["value"] == 60.0 and cod["status"] == "00"
    assert cod["limits"][0]["maximum"] == 75.0
    assert cod["limits"][0]["formula"].endswith("= 75 mg/L")
    assert cod["ratio"] == 0.8
    # The regime and the project's design choices (not law), with where to change them.
    (period,) = detail["regime"]
    assert period["regulation"] == "QCVN 40:2011/BTNMT" and period["column"] == "A"
    assert "whether the facility is existing or new" in period["reason_en"]
    choices = {c["key"]: c for c in detail["design_choices"]}
    assert choices["completeness"]["where"] == "config/alerts.yaml: evaluation.min_completeness"
    assert choices["warning"]["value"] == "80 %"
    assert by_id["AIR1"]["aqi_publishable"] is None
    missing = await client.get("/api/v1/stations/NOPE", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_operator_acknowledges_and_resolves_inspector_may_not(
    api: Any, database_url: str
) -> None:
    client, settings, _ = api
    alert_id = await an_open_exceedance(settings)
    inspector = await login(client, "insp")
    operator = await login(client, "op")

    listed = (await client.get("/api/v1/alerts?state=open", headers=inspector)).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == alert_id
    assert listed["items"][0]["details"]["multiple"] == 2.0

    refused = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=inspector)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"

    ack = await client.post(
        f"/api/v1/alerts/{alert_id}/acknowledge", headers=operator, json={"note": "đã gọi"}
    )
    assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"
    again = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=operator)
    assert again.status_code == 409
    done = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve", headers=operator, json={"note": "xong"}
    )
    assert done.json()["state"] == "resolved"

    detail = (await client.get(f"/api/v1/alerts/{alert_id}", headers=inspector)).json()
    assert [(e["event"], e["actor"], e["note"]) for e in detail["events"]] == [
        ("opened", None, None),
        ("acknowledged", "op", "đã gọi"),
        ("resolved", "op", "xong"),
    ]
    audit = await fetch(database_url, "SELECT actor, action, target FROM audit_log ORDER BY id")
    assert ("op", "alert.acknowledged", f"alert:{alert_id}") in audit
    assert ("op", "alert.resolved", f"alert:{alert_id}") in audit


async def test_operator_assigns_an_alert_to_a_user_inspector_may_not(
    api: Any, database_url: str
) -> None:
    client, settings, _ = api
    alert_id = await an_open_exceedance(settings)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await add_user(conn, "op2", "operator", PASSWORD, "Lê Văn Hai")
        await set_disabled(conn, await add_user(conn, "op-off", "operator", PASSWORD, ""), True)
    inspector = await login(client, "insp")
    operator = await login(client, "op")

    # Who it can go to: enabled users who may act on alerts (not the inspector, not op-off).
    refused = await client.get(f"/api/v1/alerts/{alert_id}/assignees", headers=inspector)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    listed = (await client.get(f"/api/v1/alerts/{alert_id}/assignees", headers=operator)).json()
    assert [(u["username"], u["display_name"]) for u in listed["items"]] == [
        ("op", "Người dùng op"),
        ("op2", "Lê Văn Hai"),
        ("root", "Người dùng root"),
    ]

    body = {"assignee": "op2", "note": "anh Hai ra trạm kiểm tra"}
    refused = await client.post(f"/api/v1/alerts/{alert_id}/assign", headers=inspector, json=body)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    for nobody in ("insp", "op-off", "không-có"):
        bad = await client.post(
            f"/api/v1/alerts/{alert_id}/assign", headers=operator, json={"assignee": nobody}
        )
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_assignee"
    missing = await client.post("/api/v1/alerts/999999/assign", headers=operator, json=body)
    assert missing.status_code == 404

    given = await client.post(f"/api/v1/alerts/{alert_id}/assign", headers=operator, json=body)
    assert given.status_code == 200, given.text
    event = given.json()
    assert (event["event"], event["actor"], event["note"]) == (
        "assigned",
        "op",
        "anh Hai ra trạm kiểm tra",
    )
    assert event["details"]["assignee"] == "op2" and event["state"] == "open"
    again = await client.post(f"/api/v1/alerts/{alert_id}/assign", headers=operator, json=body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_assigned"
    moved = await client.post(
        f"/api/v1/alerts/{alert_id}/assign", headers=operator, json={"assignee": "root"}
    )
    assert moved.json()["details"]["previous_assignee"] == "op2"

    # The alert row says who has it; the trail has one row per assignment, who, to whom, when.
    detail = (await client.get(f"/api/v1/alerts/{alert_id}", headers=inspector)).json()
    assert (detail["assigned_to"], detail["assigned_by"]) == ("root", "op")
    assert detail["assigned_at"] == moved.json()["at"]
    rows = await fetch(
        database_url,
        "SELECT event, actor, details->>'assignee', at IS NOT NULL, state FROM alert_events "
        "WHERE alert_id = %s ORDER BY id",
        [alert_id],
    )
    assert rows == [
        ("opened", None, None, True, "open"),
        ("assigned", "op", "op2", True, "open"),
        ("assigned", "op", "root", True, "open"),
    ]
    listed = (await client.get("/api/v1/alerts?state=open", headers=inspector)).json()
    assert listed["items"][0]["assigned_to"] == "root"
    audit = await fetch(database_url, "SELECT actor, action, target FROM audit_log ORDER BY id")
    assert ("op", "alert.assigned", f"alert:{alert_id}") in audit

    # A resolved alert is no one's to take any more.
    await client.post(f"/api/v1/alerts/{alert_id}/resolve", headers=operator, json={"note": "xong"})
    late = await client.post(
        f"/api/v1/alerts/{alert_id}/assign", headers=operator, json={"assignee": "op2"}
    )
    assert late.status_code == 409 and late.json()["error"]["code"] == "conflict"


async def test_bad_parameters_get_the_one_error_shape(api: Any) -> None:
    client, _, _ = api
    headers = await login(client, "insp")
    wrong = await client.get("/api/v1/alerts?state=sleeping", headers=headers)
    assert wrong.status_code == 422
    assert wrong.json()["error"]["code"] == "invalid_parameter"
    paging = await client.get("/api/v1/alerts?limit=0", headers=headers)
    assert paging.status_code == 422 and paging.json()["error"]["code"] == "invalid_request"
    when = await client.get(
        "/api/v1/stations/WW1/readings?param=COD&from=yesterday&to=2026-01-01T00:00Z",
        headers=headers,
    )
    assert when.status_code == 422 and "from" in when.json()["error"]["message"]


async def test_readings_series_hourly_and_raw(api: Any, database_url: str) -> None:
    client, _, _ = api
    headers = await login(client, "insp")
    start = an_hour_ago()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for i in range(12):
            at = start + timedelta(minutes=5 * i)
            await conn.execute(
                "INSERT INTO readings VALUES ('WW1', 'COD', %s, %s, 0, now())", [at, 10.0 + i]
            )
        await conn.execute(
            "INSERT INTO readings_hourly VALUES ('WW1', 'COD', %s, 12, 10, 21, 15.5)", [start]
        )
    span = {"from": (start - timedelta(hours=1)).isoformat(), "to": datetime.now(UTC).isoformat()}
    raw = await client.get(
        "/api/v1/stations/WW1/readings",
        params={**span, "param": "COD", "interval": "raw"},
        headers=headers,
    )
    assert [p["value"] for p in raw.json()["points"]] == [10.0 + i for i in range(12)]
    hourly = await client.get(
        "/api/v1/stations/WW1/readings",
        params={**span, "param": "COD", "interval": "hour"},
        headers=headers,
    )
    body = hourly.json()
    assert body["points"] == [
        {"t": start.isoformat(), "value": 15.5, "min": 10.0, "max": 21.0, "count": 12}
    ]
    assert body["limits"] == [{"averaging": "1h", "maximum": 75.0, "minimum": None}]
    daily = await client.get(
        "/api/v1/stations/WW1/readings",
        params={**span, "param": "COD", "interval": "day"},
        headers=headers,
    )
    local_day = (start + timedelta(hours=7)).date().isoformat()  # Vietnam's calendar day
    assert daily.json()["points"] == [
        {"t": local_day, "value": 15.5, "min": 10.0, "max": 21.0, "count": 12}
    ]


async def test_alert_events_stream_live_over_sse(api: Any, servers: Any) -> None:
    """The board's stream follows alert_events: the engine's events and a person's action."""
    _, settings, service = api
    await asyncio.wait_for(service.events.following.wait(), 10)
    # A real server: an in-memory ASGI transport would hold the stream until it ends.
    web = WebServer(build_api(service.context), "127.0.0.1", 0)
    await web.start()
    alerts = AlertService(settings)
    await alerts.start()
    ingest = IngestService(settings)
    await ingest.start()
    assert ingest.mqtt is not None
    await asyncio.wait_for(ingest.mqtt.connected.wait(), 10)
    received: list[dict[str, Any]] = []
    base = f"http://127.0.0.1:{web.port}"

    async def read_stream(client: httpx.AsyncClient, headers: dict[str, str], n: int) -> None:
        async with client.stream("GET", "/api/v1/alerts/stream", headers=headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    received.append(json.loads(line.removeprefix("data: ")))
                    if len(received) == n:
                        return

    try:
        async with httpx.AsyncClient(base_url=base, timeout=20) as client:
            headers = await login(client, "op")
            reader = asyncio.create_task(read_stream(client, headers, 2))
            await asyncio.sleep(0.5)
            pub = await publisher(servers.mqtt_url)
            pub.publish("stations/WW1/data", message("WW1", cod_hour(an_hour_ago(), 150.0)), qos=1)
            await wait_until(lambda: _async(bool(received)))
            answer = await client.post(
                f"/api/v1/alerts/{received[0]['alert_id']}/acknowledge", headers=headers
            )
            assert answer.status_code == 200
            await asyncio.wait_for(reader, 15)
            await pub.disconnect()
    finally:
        await ingest.stop()
        await alerts.stop()
        await web.stop()
    opened, acknowledged = received
    assert opened["kind"] == "exceedance" and opened["event"] == "opened"
    assert opened["station"] == "WW1"
    assert acknowledged["event"] == "acknowledged" and acknowledged["actor"] == "op"
    assert acknowledged["alert_id"] == opened["alert_id"]


async def _async(value: Any) -> Any:
    return value


async def test_admin_replaces_the_registry_only_when_it_is_valid(
    api: Any, database_url: str
) -> None:
    client, settings, _ = api
    admin = await login(client, "root")
    operator = await login(client, "op")
    path = settings.stations_path
    assert (await client.put("/api/v1/registry", headers=operator, content="x")).status_code == 403
    broken = TEST_REGISTRY.replace("kind: air", "kind: sky")
    refused = await client.put(
        "/api/v1/registry", headers={**admin, "Content-Type": "text/plain"}, content=broken
    )
    assert refused.status_code == 422
    assert any("kind" in d for d in refused.json()["error"]["details"])
    assert path.read_text(encoding="utf-8") == TEST_REGISTRY
    fewer = TEST_REGISTRY[: TEST_REGISTRY.index("  - id: WW1")]
    accepted = await client.put(
        "/api/v1/registry", headers={**admin, "Content-Type": "text/plain"}, content=fewer
    )
    assert accepted.status_code == 200 and accepted.json() == {"stations": 1}
    assert path.read_text(encoding="utf-8") == fewer
    listed = (await client.get("/api/v1/stations", headers=admin)).json()
    assert [s["id"] for s in listed["items"]] == ["AIR1"]  # the API follows the file
    audit = await fetch(
        database_url, "SELECT actor, action FROM audit_log WHERE action LIKE 'registry%'"
    )
    assert audit == [("root", "registry.replace")]


async def test_users_admin_only_and_openapi_documents_the_routes(api: Any) -> None:
    client, _, _ = api
    admin = await login(client, "root")
    created = await client.post(
        "/api/v1/users",
        headers=admin,
        json={"username": "thanh.tra", "role": "inspector", "password": "đủ-dài-rồi"},
    )
    assert created.status_code == 201 and created.json()["role"] == "inspector"
    dup = await client.post(
        "/api/v1/users",
        headers=admin,
        json={"username": "thanh.tra", "role": "inspector", "password": "đủ-dài-rồi"},
    )
    assert (
        dup.status_code == 422 and dup.json()["error"]["message"] == "Người dùng 'thanh.tra' đã có."
    )
    assert dup.json()["error"]["code"] == "invalid_user"
    operator = await login(client, "op")
    assert (await client.get("/api/v1/users", headers=operator)).status_code == 403
    page = (await client.get("/docs")).text
    assert "/docs-assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    asset = await client.get("/docs-assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000
    spec = (await client.get("/openapi.json")).json()
    for path in ("/api/v1/stations", "/api/v1/alerts/{alert_id}/acknowledge", "/api/v1/episodes"):
        assert path in spec["paths"]


async def test_episodes_filtered_by_facility_parameter_and_period(api: Any) -> None:
    client, settings, _ = api
    await an_open_exceedance(settings)
    headers = await login(client, "insp")
    start = an_hour_ago()
    found = await client.get(
        "/api/v1/episodes",
        params={"facility": "KCN Thử", "param": "COD", "from": start.isoformat()},
        headers=headers,
    )
    body = found.json()
    assert body["total"] == 1
    [episode] = body["items"]
    assert (episode["station"], episode["averaging"], episode["duration_minutes"]) == (
        "WW1",
        "1h",
        60,
    )
    assert episode["multiple"] == 2.0 and episode["limit"] == 75.0
    later = await client.get(
        "/api/v1/episodes",
        params={"station": "WW1", "from": (start + timedelta(hours=1)).isoformat()},
        headers=headers,
    )
    assert later.json()["total"] == 0  # the episode ended when that period starts
    other = await client.get("/api/v1/episodes", params={"facility": "Sở TN&MT"}, headers=headers)
    assert other.json()["items"] == []


async def test_regulations_catalog_says_what_is_missing(api: Any) -> None:
    client, _, _ = api
    headers = await login(client, "insp")
    response = await client.get(
        "/api/v1/regulations", params={"id": "QCVN 40:2025/BTNMT"}, headers=headers
    )
    (reg,) = response.json()["items"]
    assert (reg["numbers"], reg["issued_by"]) == (
        "missing",
        "Thông tư 06/2025/TT-BTNMT (28/02/2025)",
    )
    assert reg["transition"]["existing_until"] == "2032-01-01"
    assert "QCVN 40:2011/BTNMT" in reg["transition"]["replaces"]
    assert "Circular 06/2025" in reg["limits_missing"]["en"]
    everything = (await client.get("/api/v1/regulations", headers=headers)).json()["items"]
    by_id = {r["id"]: r for r in everything}
    assert by_id["QCVN 23:2009/BTNMT"]["sector_of"] == "QCVN 19:2009/BTNMT"
    assert by_id["QCVN 40:2011/BTNMT"]["numbers"] == "complete"
