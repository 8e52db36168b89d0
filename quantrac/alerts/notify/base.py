"""What every notification channel shares: the Channel protocol, delivery errors and retries.

The retry decisions (which failures are worth another attempt, how long to wait) are pure and
take their randomness and their sleep as arguments, so tests run them without waiting.
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from quantrac.alerts.model import AlertEvent

Sleep = Callable[[float], Awaitable[None]]
# Called before each wait between attempts: (failed attempt number, error, seconds to wait).
RetryHook = Callable[[int, "DeliveryError", float], None]


@runtime_checkable
class Channel(Protocol):
    """A way to tell the outside world about an alert event.

    ``send`` returns once the event was accepted by the other side and raises (after its own
    retries) when it was not. ``start`` and ``close`` open and release connections.
    """

    name: str

    async def start(self) -> None: ...

    async def send(self, event: AlertEvent) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class ReportsRetries(Protocol):
    """A channel that lets the notifier count its retries (all built-in channels do)."""

    on_retry: RetryHook | None


class DeliveryError(Exception):
    """One failed delivery attempt, or the final failure after the last attempt."""

    def __init__(self, message: str, *, retryable: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits about backoff_s * 2**(n-1)."""

    max_attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    # A server's Retry-After is honoured up to this; a longer one is cut to the cap rather than
    # holding the channel's queue for an hour.
    max_retry_after_s: float = 300.0
    # The wait is drawn from [base * (1 - jitter), base]: spreads retries of many alerts that
    # failed together (one outage) so they do not hit the receiver again at the same instant.
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("backoff times must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def delay_s(self, attempt: int, retry_after_s: float | None = None, rand: float = 0.0) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based); ``rand`` in [0, 1)."""
        base = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
        delay = base * (1 - self.jitter * rand)
        if retry_after_s is not None:
            delay = max(delay, min(max(retry_after_s, 0.0), self.max_retry_after_s))
        return delay


async def deliver_with_retries(
    attempt: Callable[[], Awaitable[None]],
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    on_retry: RetryHook | None = None,
) -> None:
    """Run ``attempt`` until it succeeds, fails for good, or the attempts are used up.

    ``attempt`` raises DeliveryError; anything else is a bug and propagates at once.
    """
    number = 1
    while True:
        try:
            await attempt()
            return
        except DeliveryError as exc:
            if not exc.retryable:
                raise
            if number >= policy.max_attempts:
                raise DeliveryError(
                    f"{exc} (gave up after {number} attempts)",
                    retryable=False,
                    retry_after_s=exc.retry_after_s,
                ) from exc
            delay = policy.delay_s(number, exc.retry_after_s, rand())
            if on_retry is not None:
                on_retry(number, exc, delay)
            await sleep(delay)
            number += 1


def _json_default(value: Any) -> Any:
    # Kind-specific details may carry times, decimals or enums straight from the engine.
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} in an alert event")


def encode_event(event: AlertEvent) -> bytes:
    """The JSON body sent to MQTT and webhooks: UTF-8, Vietnamese text kept readable."""
    return json.dumps(
        event.to_json(), ensure_ascii=False, separators=(",", ":"), default=_json_default
    ).encode("utf-8")
