"""The soak benchmark's short variant: real processes killed, PostgreSQL stopped, Mosquitto
restarted, and still nothing lost, changed, repeated or left undelivered."""

from __future__ import annotations

import pytest

from bench.soak import SoakConfig, run_soak

pytestmark = pytest.mark.integration


async def test_soak_with_one_fault_of_each_kind_loses_nothing() -> None:
    config = SoakConfig(
        readings=2400,
        stations=10,
        rate=150.0,
        kill_every_s=8.0,
        postgres_down_s=3.0,
        catch_up_timeout_s=240.0,
    )
    result = await run_soak(config)
    assert result.kills >= 1
    assert any("postgres stopped" in f for f in result.faults)
    assert any("mosquitto restarted" in f for f in result.faults)
    assert result.published == 2400
    assert (result.stored, result.lost, result.changed) == (2400, 0, 0)
    assert result.alerts > 0  # the exceeding hours were judged
    assert result.duplicate_open_alerts == 0
    assert result.undelivered_events == 0 and result.alert_events > 0
