"""The engine with the shipped regulation catalog and the demo registry: every station's limits
(coefficients, ranges, limits that change on a date) turn into the right alerts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from quantrac.alerts.config import EngineConfig
from quantrac.alerts.engine import Change, Engine, Transition, catalog_unit_factor
from quantrac.alerts.model import Kind
from quantrac.core.catalog import load_catalog
from quantrac.core.contract import Reading, Status
from quantrac.core.registry import load_registry
from quantrac.core.time import VIETNAM
from quantrac.regulations.limits import station_limits
from quantrac.regulations.tables import load_regulation_catalog
from tests.conftest import CONFIG

CATALOG = load_catalog(CONFIG / "parameters.yaml")
REGISTRY = load_registry(CONFIG / "stations.yaml", CATALOG)
REGULATIONS = load_regulation_catalog(CONFIG / "regulations", CATALOG)
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
CONFIG_NO_STUCK = replace(EngineConfig(), enabled=frozenset(set(Kind) - {Kind.STUCK_VALUE}))


def engine() -> Engine:
    return Engine(
        REGISTRY,
        lambda s: station_limits(s, REGULATIONS),
        CONFIG_NO_STUCK,
        REGULATIONS.band_for,
        T0,
        catalog_unit_factor(CATALOG),
    )


def hour(station: str, param: str, value: float, start: datetime = T0) -> list[Reading]:
    return [
        Reading(station, param, start + timedelta(minutes=5 * i), value, Status.MEASURING)
        for i in range(12)
    ]


def one_hour_limits() -> list[tuple[str, str, Any]]:
    """Every 1 h limit in force at T0 for every demo station."""
    cases = []
    for station in REGISTRY.stations.values():
        limits = station_limits(station, REGULATIONS)
        for param in sorted(limits.params()):
            for limit in limits.in_force(param, T0):
                if limit.averaging == "1h":
                    cases.append((station.id, param, limit))
    return cases


CASES = one_hour_limits()


def test_every_regulation_in_the_demo_registry_gives_one_hour_limits() -> None:
    regulations = {limit.regulation_id for _, _, limit in CASES}
    assert regulations == {
        "QCVN 05:2023/BTNMT",
        "QCVN 40:2011/BTNMT",
        "QCVN 14:2008/BTNMT",
        "QCVN 19:2009/BTNMT",
    }


@pytest.mark.parametrize(("station", "param", "limit"), CASES, ids=lambda c: str(c)[:30])
def test_an_hour_beyond_each_effective_limit_is_an_exceedance_and_within_is_not(
    station: str, param: str, limit: Any
) -> None:
    if limit.maximum is not None:
        beyond, within = limit.maximum * 1.2, limit.maximum * 0.7
    else:
        beyond, within = limit.minimum - 1, limit.minimum + 1
    if limit.minimum is not None and limit.maximum is not None:
        beyond, within = limit.minimum - 0.5, (limit.minimum + limit.maximum) / 2
    e = engine()
    out = e.observe_many(hour(station, param, within), T0 + timedelta(hours=1))
    assert not [o for o in out if isinstance(o, Transition) and o.kind is Kind.EXCEEDANCE]
    e = engine()
    out = e.observe_many(hour(station, param, beyond), T0 + timedelta(hours=1))
    [raised] = [o for o in out if isinstance(o, Transition) and o.kind is Kind.EXCEEDANCE]
    assert raised.change is Change.RAISE
    assert raised.details["limit"] == limit.maximum
    assert raised.details["limit_min"] == limit.minimum
    assert raised.details["regulation"] == limit.regulation_id
    assert raised.details["formula"] == limit.formula
    assert raised.details["formula_vi"] == limit.formula_text("vi")
    assert raised.details["unverified"] == limit.unverified


def test_songkhe_cod_is_judged_against_its_permit_not_the_regulation() -> None:
    # QCVN 40:2011 A: 75 × Kq 1.0 × Kf 0.9 = 67.5 mg/L; the permit says 60.
    e = engine()
    out = e.observe_many(hour("BG_WW_SONGKHE", "COD", 63.0), T0 + timedelta(hours=1))
    [raised] = [o for o in out if isinstance(o, Transition) and o.kind is Kind.EXCEEDANCE]
    assert raised.details["limit"] == 60.0 and raised.details["limit_source"] == "permit"


def test_stack_limits_carry_kp_and_kv() -> None:
    # BG_EM_HABAC_01: QCVN 19:2009 B, SO2 500 × Kp 0.9 (85,000 m3/h) × Kv 0.8 (class 2) = 360.
    e = engine()
    out = e.observe_many(hour("BG_EM_HABAC_01", "SO2", 370.0), T0 + timedelta(hours=1))
    [raised] = [o for o in out if isinstance(o, Transition) and o.kind is Kind.EXCEEDANCE]
    assert raised.details["limit"] == pytest.approx(360.0)
    assert raised.details["band"] is not None  # Decree 45 emission bands (unverified) apply


@pytest.mark.parametrize(
    ("day", "raises"), [(datetime(2025, 12, 31), False), (datetime(2026, 1, 1), True)]
)
def test_pm25_daily_limit_changes_on_1_january_2026(day: datetime, raises: bool) -> None:
    # 48 µg/m³ over a whole local day: within 50 until 2025-12-31, above 45 from 2026-01-01.
    start = day.replace(tzinfo=VIETNAM).astimezone(UTC)
    e = Engine(
        REGISTRY,
        lambda s: station_limits(s, REGULATIONS),
        CONFIG_NO_STUCK,
        REGULATIONS.band_for,
        start,
        catalog_unit_factor(CATALOG),
    )
    readings = [
        Reading("BG_AIR_01", "PM2,5", start + timedelta(minutes=5 * i), 48.0, Status.MEASURING)
        for i in range(288)
    ]
    after = start + timedelta(days=1, minutes=15)
    out = e.observe_many(readings, after)
    out += e.observe_many([Reading("BG_AIR_01", "PM2,5", after, 10.0, Status.MEASURING)], after)
    raised = [
        o
        for o in out
        if isinstance(o, Transition)
        and o.kind is Kind.EXCEEDANCE
        and o.details["averaging"] == "24h"
    ]
    assert bool(raised) is raises
    if raises:
        assert raised[0].details["limit"] == 45.0
