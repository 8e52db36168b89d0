"""What stands between the network and the routes: sign-in throttling, security headers,
cross-site request refusal, and hostile request parameters turned into clear 4xx answers.

The throttle is per process (one API instance per host is what compose runs); several instances
each keep their own count, which still bounds guessing to a small multiple.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from quantrac.core.i18n import pick_language, translate

# Failed sign-ins allowed per window, for one account and for one address.
ACCOUNT_FAILURES = 5
ADDRESS_FAILURES = 20
WINDOW_S = 15 * 60.0
MAX_QUERY_BYTES = 8192
MAX_PATH_BYTES = 2048


@dataclass
class LoginThrottle:
    """Sliding windows of failed sign-ins per account and per client address.

    Past the limit, sign-in is refused (429) without checking the password until the oldest
    failure leaves the window, so a guesser gets ``ACCOUNT_FAILURES`` tries per account and
    ``ADDRESS_FAILURES`` per address every 15 minutes. A success clears the account's count.
    """

    account_limit: int = ACCOUNT_FAILURES
    address_limit: int = ADDRESS_FAILURES
    window_s: float = WINDOW_S
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, account: str, address: str) -> float:
        """Seconds until another attempt is allowed; 0 when it is allowed now."""
        now = self.clock()
        waits = [
            self._wait(f"account:{account.lower()}", self.account_limit, now),
            self._wait(f"address:{address}", self.address_limit, now),
        ]
        return max(waits)

    def failed(self, account: str, address: str) -> None:
        now = self.clock()
        for key in (f"account:{account.lower()}", f"address:{address}"):
            self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > 100_000:  # forget the oldest keys rather than grow forever
            for key in list(self._failures)[:50_000]:
                del self._failures[key]

    def succeeded(self, account: str) -> None:
        self._failures.pop(f"account:{account.lower()}", None)

    def _wait(self, key: str, limit: int, now: float) -> float:
        times = self._failures.get(key)
        if not times:
            return 0.0
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        if len(times) < limit:
            return 0.0
        return times[-limit] + self.window_s - now


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


# The board and the API docs page load only their own files; nothing may frame them.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI starts itself with one inline script (fastapi's get_swagger_ui_html).
_CSP_DOCS = _CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def scope_language(scope: Scope) -> str:
    """The language a request asks for (``?lang=``, then ``Accept-Language``, else vi), read
    from the raw scope so that even a refused request is answered in it."""
    query = scope.get("query_string", b"")[:MAX_QUERY_BYTES].decode("utf-8", "replace")
    wanted = parse_qs(query).get("lang", [None])[0]
    accept = None
    for key, value in scope.get("headers", []):
        if key.lower() == b"accept-language":
            accept = value.decode("latin-1")
            break
    return pick_language(wanted, accept)


def request_language(request: Request) -> str:
    return scope_language(request.scope)


def _error(scope: Scope, status: int, code: str, key: str, /, **params: Any) -> JSONResponse:
    message = translate(key, scope_language(scope), **params)
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": None}}, status_code=status
    )


def request_problem(scope: Scope) -> JSONResponse | None:
    """A 4xx for a path or query no route should see: too long, NUL, not UTF-8."""
    raw_path: bytes = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "replace")
    query: bytes = scope.get("query_string", b"")
    if len(raw_path) > MAX_PATH_BYTES:
        return _error(scope, 414, "uri_too_long", "api.msg.path_too_long", limit=MAX_PATH_BYTES)
    if len(query) > MAX_QUERY_BYTES:
        return _error(scope, 414, "uri_too_long", "api.msg.query_too_long", limit=MAX_QUERY_BYTES)
    for part, name in ((raw_path, "path"), (query.replace(b"+", b" "), "query")):
        decoded = unquote_to_bytes(part)
        if b"\x00" in decoded:
            return _error(scope, 422, "invalid_parameter", f"api.msg.{name}_nul")
        try:
            decoded.decode("utf-8")
        except UnicodeDecodeError:
            return _error(scope, 422, "invalid_parameter", f"api.msg.{name}_utf8")
    return None


class SecurityMiddleware:
    """Pure ASGI (streams pass through untouched): refuses hostile paths and queries and
    cross-site state changes, and adds the security headers to every response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = request_problem(scope) or _cross_site(scope)
        path: str = scope.get("path", "")
        csp = _CSP_DOCS if path == "/docs" else _CSP

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = {**_HEADERS, "Content-Security-Policy": csp}
                if path.startswith("/api/"):
                    extra["Cache-Control"] = "no-store"
                for key, value in extra.items():
                    if key.lower().encode() not in present:
                        headers.append((key.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        if problem is not None:
            await problem(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def _cross_site(scope: Scope) -> Response | None:
    """quantrac has no cookie session (Bearer tokens), but browsers replay HTTP Basic
    credentials by themselves: a state change sent from another site's page is refused."""
    if scope.get("method") not in _UNSAFE_METHODS:
        return None
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    if headers.get("sec-fetch-site") == "cross-site":
        return _error(scope, 403, "cross_site", "api.msg.cross_site")
    origin = headers.get("origin")
    if origin and origin != "null":
        host = headers.get("host", "")
        if urlsplit(origin).netloc != host:
            return _error(scope, 403, "cross_site", "api.msg.cross_site")
    elif origin == "null":
        return _error(scope, 403, "cross_site", "api.msg.cross_site")
    return None
