"""Webhook channel: the event as a signed JSON POST, retried with backoff.

The signature is GitHub-style: ``X-Quantrac-Signature: sha256=<hex HMAC-SHA256 of the exact
body bytes, keyed with the shared secret>``. A receiver recomputes it over the raw body it read
(before any JSON parsing) and compares with ``hmac.compare_digest``; see docs/notifications.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from quantrac.alerts.model import AlertEvent
from quantrac.alerts.notify.base import (
    DeliveryError,
    RetryHook,
    RetryPolicy,
    Sleep,
    deliver_with_retries,
    encode_event,
)

SIGNATURE_HEADER = "X-Quantrac-Signature"
EVENT_HEADER = "X-Quantrac-Event"
DELIVERY_HEADER = "X-Quantrac-Delivery"
USER_AGENT = "quantrac-notify/1"


def sign(body: bytes, secret: str) -> str:
    """The X-Quantrac-Signature value for ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(body: bytes, secret: str, header: str | None) -> bool:
    """What a receiver does: constant-time comparison against the recomputed signature."""
    return header is not None and hmac.compare_digest(sign(body, secret), header)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def classify_response(
    status: int, retry_after: str | None = None, now: datetime | None = None
) -> DeliveryError | None:
    """None for a delivered event, else the error (retryable for 5xx and 429 only)."""
    if 200 <= status < 300:
        return None
    if status == 429 or status >= 500:
        return DeliveryError(
            f"HTTP {status}", retryable=True, retry_after_s=parse_retry_after(retry_after, now)
        )
    # Other 4xx (and unfollowed 3xx) mean the request itself is wrong: repeating it cannot help.
    return DeliveryError(f"HTTP {status}", retryable=False)


def webhook_headers(event: AlertEvent, body: bytes, secret: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event.event.value,
        DELIVERY_HEADER: str(event.event_id),
        SIGNATURE_HEADER: sign(body, secret),
    }


class WebhookChannel:
    def __init__(
        self,
        name: str,
        url: str,
        secret: str,
        *,
        timeout_s: float = 10.0,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        max_retry_after_s: float = 300.0,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a webhook needs a non-empty secret to sign its requests")
        self.name = name
        self.url = url
        self.timeout_s = timeout_s
        self.policy = RetryPolicy(
            max_attempts=max_attempts,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            max_retry_after_s=max_retry_after_s,
        )
        self.on_retry: RetryHook | None = None
        self._secret = secret
        self._sleep = sleep
        self._rand = rand
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:  # never show the secret
        return f"WebhookChannel({self.name!r}, {self.url!r})"

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout_s, transport=self._transport, follow_redirects=False
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, event: AlertEvent) -> None:
        await self.start()
        body = encode_event(event)
        headers = webhook_headers(event, body, self._secret)
        await deliver_with_retries(
            lambda: self._post(body, headers),
            self.policy,
            sleep=self._sleep,
            rand=self._rand,
            on_retry=self.on_retry,
        )

    async def _post(self, body: bytes, headers: dict[str, str]) -> None:
        assert self._client is not None
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"timed out: {type(exc).__name__}", retryable=True) from exc
        except httpx.TransportError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        error = classify_response(response.status_code, response.headers.get("Retry-After"))
        if error is not None:
            raise error
