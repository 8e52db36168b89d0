"""MQTT client policy shared by every gmqtt client quantrac runs."""

from __future__ import annotations

from typing import Any

_UNLIMITED = -1


RECONNECT_FIRST_S = 1


RECONNECT_MAX_S = 30


def reconnect_forever(client: Any) -> None:
    client.set_config({"reconnect_retries": _UNLIMITED, "reconnect_delay": RECONNECT_FIRST_S})


def reset_backoff(client: Any) -> None:
    client.set_config({"reconnect_delay": RECONNECT_FIRST_S})


def back_off(client: Any) -> float:
    """After a lost connection: double gmqtt's wait before its next attempt; returns it."""
    delay = min(max(RECONNECT_FIRST_S, client.reconnect_delay * 2), RECONNECT_MAX_S)
    client.set_config({"reconnect_delay": delay})
    return float(delay)


def next_delay(delay: float) -> float:
    """The wait after ``delay`` for a first connection that keeps failing."""
    return min(delay * 2, RECONNECT_MAX_S)
