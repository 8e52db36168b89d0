"""API errors in the request's language: Vietnamese by default, English by ?lang=en or
Accept-Language; the code stays the same machine-readable English word. And no module of
quantrac/api says an error in a bare English literal."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import httpx
import pytest

from quantrac.api.app import build_api
from quantrac.api.deps import ApiError
from quantrac.api.security import MAX_PATH_BYTES
from quantrac.api.users import PERMISSIONS
from quantrac.core.i18n import TranslatedError, default_messages, pick_language, translate
from tests.test_api import an_open_exceedance, api, login  # noqa: F401  (api: the fixture)

API = Path(__file__).parents[1] / "quantrac" / "api"

# --- Choosing the language ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "accept", "lang"),
    [
        (None, None, "vi"),
        (None, "", "vi"),
        ("en", None, "en"),
        ("vi", "en", "vi"),  # ?lang= wins over the header
        ("fr", "en", "en"),  # an unknown ?lang= is ignored
        (None, "en-US,en;q=0.9", "en"),
        (None, "vi-VN,vi;q=0.9,en;q=0.8", "vi"),
        (None, "en;q=0.5,vi;q=0.8", "vi"),  # by q-value, not by order
        (None, "fr-FR,de;q=0.9", "vi"),  # neither language: the default
        (None, "en;q=0", "vi"),  # q=0 means "not this one"
        (None, "en;q=abc", "vi"),  # a broken q-value counts as 0
        (None, "EN-gb", "en"),
        (None, "vi;q=0.5,en;q=0.5", "vi"),  # a tie: the first named
        (None, "x" * 10_000 + ",en", "vi"),  # only the first 512 characters are read
    ],
)
def test_the_language_a_request_asks_for(query: str | None, accept: str | None, lang: str) -> None:
    assert pick_language(query, accept) == lang


def test_an_api_error_is_said_in_both_languages_and_logged_in_english() -> None:
    error = ApiError(404, "not_found", "api.msg.no_alert", id=7)
    assert error.code == "not_found" and error.status_code == 404
    assert error.message == error.detail == "no alert 7"
    assert error.text("vi") == "Không có cảnh báo số 7." and error.text("en") == "no alert 7"
    wrapped = ApiError(422, "invalid_user", TranslatedError("error.user.role", roles="a, b"))
    assert wrapped.text("vi") == "Vai trò phải là một trong: a, b."
    assert wrapped.text("en") == "role: one of a, b"


def test_an_unknown_key_fails_when_the_error_is_made() -> None:
    with pytest.raises(KeyError):
        ApiError(404, "not_found", "no station X")


# --- Refusals answered before any route (no database needed) ---------------------------------


@pytest.fixture
async def bare() -> Any:
    transport = httpx.ASGITransport(app=build_api(None))
    async with httpx.AsyncClient(transport=transport, base_url="http://quantrac") as client:
        yield client


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


async def test_no_such_path_in_vietnamese_by_default_and_english_on_request(bare: Any) -> None:
    assert _error(await bare.get("/nowhere")) == (404, "not_found", "Không tìm thấy địa chỉ này.")
    english = (404, "not_found", "Not Found")
    assert _error(await bare.get("/nowhere?lang=en")) == english
    assert _error(await bare.get("/nowhere", headers={"Accept-Language": "en-GB"})) == english
    both = {"Accept-Language": "en-GB"}
    said = await bare.get("/nowhere?lang=vi", headers=both)
    assert _error(said) == (404, "not_found", "Không tìm thấy địa chỉ này.")


async def test_a_wrong_method_names_it_in_vietnamese(bare: Any) -> None:
    said = await bare.delete("/healthz", headers={"Origin": "http://quantrac"})
    assert _error(said) == (
        405,
        "method_not_allowed",
        "Địa chỉ này không nhận phương thức DELETE.",
    )
    said = await bare.delete("/healthz?lang=en", headers={"Origin": "http://quantrac"})
    assert _error(said) == (405, "method_not_allowed", "Method Not Allowed")


async def test_hostile_requests_are_refused_in_the_asked_language(bare: Any) -> None:
    long_path = "/" + "a" * (MAX_PATH_BYTES + 1)
    assert _error(await bare.get(long_path)) == (
        414,
        "uri_too_long",
        f"Đường dẫn dài hơn {MAX_PATH_BYTES} byte.",
    )
    english = await bare.get(long_path, headers={"Accept-Language": "en"})
    assert _error(english)[2] == f"the path is longer than {MAX_PATH_BYTES} bytes"
    assert _error(await bare.get("/healthz?x=%00")) == (
        422,
        "invalid_parameter",
        "Chuỗi truy vấn chứa ký tự NUL.",
    )
    # The language is read from the query even when the rest of the query is refused.
    nul = await bare.get("/healthz?x=%00&lang=en")
    assert _error(nul)[2] == "the query contains a NUL character"
    assert _error(await bare.get("/healthz?x=%ff"))[2] == "Chuỗi truy vấn không phải UTF-8 hợp lệ."
    cross = {"Origin": "https://elsewhere.example"}
    assert _error(await bare.post("/healthz", headers=cross)) == (
        403,
        "cross_site",
        "Yêu cầu gửi từ trang web khác không được thay đổi dữ liệu.",
    )
    cross_en = await bare.post("/healthz?lang=en", headers=cross)
    assert _error(cross_en)[2] == "cross-site requests may not change anything"


# --- Refusals of the routes (real database) -------------------------------------------------------


@pytest.mark.integration
async def test_route_errors_in_vietnamese_and_english(api: Any) -> None:  # noqa: F811
    client, settings, _ = api
    operator, inspector = await login(client, "op"), await login(client, "insp")
    english = {"Accept-Language": "en"}
    cases: list[tuple[str, str, dict[str, str], Any, int, str, str, str]] = [
        (
            "GET",
            "/api/v1/stations",
            {},
            None,
            401,
            "unauthenticated",
            "Chưa đăng nhập: cần mã truy cập (Bearer) hoặc HTTP Basic.",
            "sign in: Bearer token or HTTP Basic",
        ),
        (
            "POST",
            "/api/v1/login",
            {},
            {"username": "op", "password": "sai-mật-khẩu-rồi"},
            401,
            "bad_credentials",
            "Sai tên đăng nhập hoặc mật khẩu.",
            "wrong username or password",
        ),
        (
            "GET",
            "/api/v1/users",
            operator,
            None,
            403,
            "forbidden",
            "Vai trò “trực vận hành” không có quyền quản trị (người dùng, danh mục trạm).",
            "the role 'operator' may not do this (admin)",
        ),
        (
            "GET",
            "/api/v1/stations/NOPE",
            inspector,
            None,
            404,
            "not_found",
            "Không có trạm 'NOPE'.",
            "no station 'NOPE'",
        ),
        (
            "GET",
            "/api/v1/stations/WW1/readings?param=COD&from=yesterday&to=2026-01-01T00:00Z",
            inspector,
            None,
            422,
            "invalid_parameter",
            "Tham số from: không đọc được thời điểm; cần dạng ISO 8601 có múi giờ, "
            "ví dụ 2026-12-03T08:00+07:00.",
            "from: ",  # English keeps the parser's own reason after the name
        ),
        (
            "GET",
            "/api/v1/alerts?limit=0",
            inspector,
            None,
            422,
            "invalid_request",
            "Yêu cầu không hợp lệ: xem từng trường trong details.",
            "the request is not valid",
        ),
        (
            "GET",
            "/api/v1/alerts/999999",
            inspector,
            None,
            404,
            "not_found",
            "Không có cảnh báo số 999999.",
            "no alert 999999",
        ),
    ]
    for method, url, headers, body, status, code, vi, en in cases:
        for lang_headers, expected in (({}, vi), (english, en)):
            said = await client.request(method, url, headers={**headers, **lang_headers}, json=body)
            assert said.status_code == status, (url, said.text)
            error = said.json()["error"]
            assert error["code"] == code, url
            if expected.endswith(": "):
                assert error["message"].startswith(expected), (url, error["message"])
            else:
                assert error["message"] == expected, (url, error["message"])

    alert_id = await an_open_exceedance(settings)
    url = f"/api/v1/alerts/{alert_id}/acknowledge"
    assert (await client.post(url, headers=operator)).status_code == 200
    again = await client.post(url, headers=operator)
    assert _error(again) == (409, "conflict", f"Cảnh báo số {alert_id} đã được xác nhận.")
    again = await client.post(url + "?lang=en", headers=operator)
    assert _error(again)[2] == f"alert {alert_id} is already acknowledged"
    resolve = f"/api/v1/alerts/{alert_id}/resolve"
    bare_resolve = await client.post(resolve, headers=operator, json={})
    assert _error(bare_resolve) == (
        422,
        "note_required",
        "Cần ghi chú khi đóng cảnh báo: đã xử lý thế nào.",
    )
    validation = (await client.get("/api/v1/alerts?limit=0", headers=inspector)).json()
    [field] = validation["error"]["details"]
    assert field["field"] == "query.limit" and field["type"]


# --- No bare English in quantrac/api ------------------------------------------------------------


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    found = []
    for path in sorted(API.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if called == name:
                    found.append((path, node))
    return found


def test_every_api_error_says_a_key_of_the_table_not_english() -> None:
    """ApiError's message is a key of config/messages (or a TranslatedError passed on): an
    f-string or a sentence there would reach a Vietnamese user in English."""
    table = default_messages()
    calls = _calls("ApiError")
    assert len(calls) > 30
    wrong = []
    for path, call in calls:
        message = call.args[2] if len(call.args) > 2 else None
        if isinstance(message, ast.Constant) and message.value in table:
            continue
        if isinstance(message, ast.Name):  # an exception: a TranslatedError (mypy checks)
            continue
        if isinstance(message, ast.JoinedStr) and isinstance(message.values[0], ast.Constant):
            prefix = str(message.values[0].value)  # a family of keys, e.g. api.msg.may_not.{…}
            if prefix.startswith("api.msg.") and any(k.startswith(prefix) for k in table):
                continue
        wrong.append(f"{path.name}:{call.lineno}: {ast.unparse(message) if message else None}")
    assert wrong == []


def test_every_permission_has_its_refusal() -> None:
    table = default_messages()
    assert {f"api.msg.may_not.{p}" for p in PERMISSIONS} <= set(table)


def test_every_security_refusal_and_handler_says_a_key() -> None:
    table = default_messages()
    keys = []
    for path, call in _calls("_error"):
        arg = call.args[3]
        if isinstance(arg, ast.JoinedStr):  # api.msg.{path|query}_…: both spelt out
            prefix = ast.unparse(arg).strip("f'\"").split("{")[0]
            keys += [k for k in table if k.startswith(prefix)]
            continue
        assert isinstance(arg, ast.Constant), f"{path.name}:{call.lineno}"
        keys.append(arg.value)
    for _, call in _calls("said"):
        assert isinstance(call.args[1], ast.Constant)
        keys.append(call.args[1].value)
    assert len(keys) > 10 and set(keys) <= set(table), set(keys) - set(table)
    for _, call in _calls("error_body"):
        assert not isinstance(call.args[1], ast.Constant), ast.unparse(call)


def test_every_message_key_has_vietnamese_and_english_with_the_same_meaning_placeholders() -> None:
    """Both texts of every key are there and fill in; the Vietnamese uses only the facts the
    caller gives (every placeholder of vi is one the English also knows, or a plain fact)."""
    for key, entry in default_messages().items():
        assert entry["vi"].strip() and entry["en"].strip(), key
    for key in (k for k in default_messages() if k.startswith(("api.msg.", "error."))):
        vi, en = (default_messages()[key][lang] for lang in ("vi", "en"))
        params = {name: "x" for name in _placeholders(vi) | _placeholders(en)}
        assert translate(key, "vi", **params) and translate(key, "en", **params)


def _placeholders(text: str) -> set[str]:
    import string

    return {name for _, name, _, _ in string.Formatter().parse(text) if name}
