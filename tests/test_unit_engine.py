"""The alert engine on hand-computed scenarios: one kind of alert per test, times explicit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from quantrac.alerts.config import EngineConfig, PhysicalRange
from quantrac.alerts.engine import Change, Engine, EpisodeChange, Transition, WindowEvaluated
from quantrac.alerts.model import STATION_WIDE, Kind
from quantrac.core.catalog import load_catalog
from quantrac.core.contract import Reading, Status
from quantrac.core.registry import registry_from_text
from quantrac.core.time import VIETNAM
from tests.conftest import CONFIG

CATALOG = load_catalog(CONFIG / "parameters.yaml")
REGISTRY = registry_from_text(
    """
stations:
  - id: WW
    name: "Trạm nước thải"
    kind: wastewater
    facility: F
    province: P
    location: {lat: 21, lon: 106}
    cadence: 300
    parameters:
      - {code: COD, unit: "mg/L"}
      - {code: pH, unit: "pH"}
      - {code: Flow, unit: "m3/h"}
  - id: AIR
    name: "Trạm không khí"
    kind: air
    facility: F
    province: P
    location: {lat: 21, lon: 106}
    cadence: 300
    parameters:
      - {code: SO2, unit: "µg/m3"}
""",
    CATALOG,
)


@dataclass(frozen=True)
class Limit:
    """A stand-in for quantrac.regulations.limits.EffectiveLimit with the same arithmetic."""

    param: str
    averaging: str
    maximum: float | None
    minimum: float | None = None
    unit: str = "mg/L"
    regulation_id: str = "QCVN 40:2011/BTNMT"
    regulation_kind: str = "wastewater"
    column: str | None = "A"
    formula: str = "C × Kq × Kf"
    formula_vi: str = "C × Kq × Kf"
    unverified: bool = False
    source: str = "regulation"
    valid_from: date | None = None

    def exceeds(self, value: float) -> bool:
        if self.maximum is not None and value > self.maximum:
            return True
        return self.minimum is not None and value < self.minimum

    def multiple(self, value: float) -> float | None:
        if self.minimum is not None or not self.maximum:
            return None
        return value / self.maximum

    def excess(self, value: float) -> float:
        if self.maximum is not None and value > self.maximum:
            return value - self.maximum
        if self.minimum is not None and value < self.minimum:
            return self.minimum - value
        return 0.0


@dataclass
class Limits:
    limits: list[Limit]

    def in_force(self, param: str, at: datetime) -> list[Limit]:
        local_day = at.astimezone(VIETNAM).date()
        chosen: dict[str, Limit] = {}
        for limit in self.limits:
            if limit.param == param and (limit.valid_from is None or local_day >= limit.valid_from):
                chosen[limit.averaging] = limit  # the later entry wins, as a newer value would
        return list(chosen.values())

    def params(self) -> set[str]:
        return {limit.param for limit in self.limits}


@dataclass(frozen=True)
class Band:
    label: str


def band_for(kind: str, multiple: float) -> Band | None:
    if kind != "wastewater":
        return None
    return Band("<1.1") if multiple < 1.1 else Band("1.1–<1.5") if multiple < 1.5 else Band(">=1.5")


LIMITS = {
    "WW": Limits([Limit("COD", "1h", 75.0), Limit("pH", "1h", 9.0, 6.0, unit="pH")]),
    "AIR": Limits(
        [
            Limit("SO2", "1h", 350.0, unit="µg/m3", regulation_kind="air"),
            Limit("SO2", "24h", 125.0, unit="µg/m3", regulation_kind="air"),
        ]
    ),
}

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # 07:00 in Vietnam
STEP = timedelta(minutes=5)


def make_engine(**overrides: Any) -> Engine:
    config = replace(EngineConfig(), **overrides)
    return Engine(REGISTRY, lambda s: LIMITS.get(s.id), config, band_for, started_at=T0)


def feed(
    engine: Engine,
    station: str,
    param: str,
    values: list[float],
    start: datetime = T0,
    status: Status = Status.MEASURING,
    received_delay: timedelta = timedelta(seconds=5),
) -> list[Any]:
    out: list[Any] = []
    for i, value in enumerate(values):
        at = start + i * STEP
        out += engine.observe(Reading(station, param, at, value, status), at + received_delay)
    return out


def transitions(outputs: list[Any], kind: Kind | None = None) -> list[Transition]:
    return [o for o in outputs if isinstance(o, Transition) and (kind is None or o.kind is kind)]


def episodes(outputs: list[Any]) -> list[Any]:
    return [e for o in outputs if isinstance(o, EpisodeChange) for e in o.upserts]


# --- exceedance on 1 h means ---------------------------------------------------------------------


def test_a_full_hour_above_the_limit_raises_when_its_last_reading_arrives() -> None:
    engine = make_engine()
    out = feed(engine, "WW", "COD", [150.0] * 11)
    assert transitions(out, Kind.EXCEEDANCE) == []  # 11 of 12: the hour is not complete yet
    out = feed(engine, "WW", "COD", [150.0], start=T0 + 11 * STEP)
    [raised] = transitions(out, Kind.EXCEEDANCE)
    assert raised.change is Change.RAISE
    assert raised.param == "COD"
    assert raised.value == pytest.approx(150.0)
    d = raised.details
    assert d["averaging"] == "1h"
    assert d["limit"] == 75.0
    assert d["multiple"] == pytest.approx(2.0)
    assert d["band"] == ">=1.5"
    assert d["regulation"] == "QCVN 40:2011/BTNMT" and d["column"] == "A"
    assert d["completeness"] == 1.0
    assert d["window_start"] == T0.isoformat()
    assert d["window_end"] == (T0 + timedelta(hours=1)).isoformat()


def test_the_mean_decides_not_single_readings() -> None:
    engine = make_engine()
    # Six readings at 140 and six at 0: mean 70 ≤ 75 although half the readings exceed.
    out = feed(engine, "WW", "COD", [140.0] * 6 + [0.0] * 6)
    assert transitions(out, Kind.EXCEEDANCE) == []
    [evaluated] = [o for o in out if isinstance(o, WindowEvaluated) and o.param == "COD"]
    assert evaluated.window.mean == pytest.approx(70.0)
    assert evaluated.verdict == "warn"  # 70 > 0.8 × 75 = 60


def test_an_hour_below_75_percent_complete_is_insufficient_never_an_exceedance() -> None:
    engine = make_engine()
    # 8 of 12 readings (67 %) at twice the limit, then the next hour's data closes the hour.
    out = feed(engine, "WW", "COD", [150.0] * 8)
    out += feed(engine, "WW", "COD", [10.0] * 3, start=T0 + timedelta(hours=1, minutes=15))
    assert transitions(out, Kind.EXCEEDANCE) == []
    first_hour = [
        o
        for o in out
        if isinstance(o, WindowEvaluated) and o.window.start == T0 and o.param == "COD"
    ]
    assert first_hour and first_hour[-1].verdict == "insufficient"
    assert first_hour[-1].window.completeness == pytest.approx(8 / 12)


def test_nine_of_twelve_is_exactly_enough() -> None:
    engine = make_engine()
    out = feed(engine, "WW", "COD", [150.0] * 9)
    out += feed(engine, "WW", "COD", [10.0], start=T0 + timedelta(hours=1, minutes=15))
    [raised] = transitions(out, Kind.EXCEEDANCE)
    assert raised.details["completeness"] == 0.75


def test_status_01_and_02_readings_do_not_count_towards_a_mean() -> None:
    engine = make_engine()
    out = feed(engine, "WW", "COD", [150.0] * 6)
    out += feed(engine, "WW", "COD", [150.0] * 6, start=T0 + 6 * STEP, status=Status.CALIBRATING)
    out += feed(engine, "WW", "COD", [10.0], start=T0 + timedelta(hours=1, minutes=15))
    assert transitions(out, Kind.EXCEEDANCE) == []


def test_repeats_update_the_alert_and_hysteresis_holds_it_until_clean_for_an_hour() -> None:
    engine = make_engine()
    out = feed(engine, "WW", "COD", [150.0] * 12)  # hour 0: 150 → raise
    out += feed(engine, "WW", "COD", [100.0] * 12, start=T0 + timedelta(hours=1))  # still above
    out += feed(
        engine, "WW", "COD", [70.0] * 12, start=T0 + timedelta(hours=2)
    )  # below the limit, above 90 %
    out += feed(engine, "WW", "COD", [60.0] * 12, start=T0 + timedelta(hours=3))  # ≤ 67.5: clean
    changes = [(t.change, t.at) for t in transitions(out, Kind.EXCEEDANCE)]
    assert changes == [
        (Change.RAISE, T0 + timedelta(hours=1)),
        (Change.UPDATE, T0 + timedelta(hours=2)),
        (Change.CLEAR, T0 + timedelta(hours=4)),
    ]


def test_min_clear_longer_than_one_window_needs_two_clean_hours() -> None:
    engine = make_engine(min_clear=timedelta(hours=2))
    out = feed(engine, "WW", "COD", [150.0] * 12)
    out += feed(engine, "WW", "COD", [10.0] * 12, start=T0 + timedelta(hours=1))
    assert [t.change for t in transitions(out, Kind.EXCEEDANCE)] == [Change.RAISE]
    out = feed(engine, "WW", "COD", [10.0] * 12, start=T0 + timedelta(hours=2))
    assert [t.change for t in transitions(out, Kind.EXCEEDANCE)] == [Change.CLEAR]


def test_an_episode_spans_consecutive_exceeding_hours_with_max_mean_and_band() -> None:
    engine = make_engine()
    out = feed(engine, "WW", "COD", [90.0] * 12)
    out += feed(engine, "WW", "COD", [120.0] * 12, start=T0 + timedelta(hours=1))
    out += feed(engine, "WW", "COD", [10.0] * 12, start=T0 + timedelta(hours=2))
    final = episodes(out)[-1]
    assert (final.start, final.end) == (T0, T0 + timedelta(hours=2))
    assert final.windows == 2
    assert final.maximum == pytest.approx(120.0)
    assert final.mean == pytest.approx(105.0)
    assert final.multiple == pytest.approx(1.6)
    assert final.band == ">=1.5"
    assert final.limit == 75.0 and final.limit_text == "≤ 75 mg/L"
    assert final.ongoing is False  # the clean hour after it was evaluated


def test_a_late_reading_raises_then_clears_because_later_hours_are_clean() -> None:
    engine = make_engine()
    values = [150.0] * 12
    del values[5]  # one reading of hour 0 missing: 11 of 12 ≥ 75 %, but the hour waits
    out = feed(engine, "WW", "COD", values[:5])
    out += feed(engine, "WW", "COD", values[5:], start=T0 + 6 * STEP)
    # The hour closes with the next hours' data (which are clean) and exceeds on 11 readings.
    out += feed(engine, "WW", "COD", [10.0] * 24, start=T0 + timedelta(hours=1))
    assert [t.change for t in transitions(out, Kind.EXCEEDANCE)] == [Change.RAISE, Change.CLEAR]
    # Now the missing reading arrives late: the hour is re-evaluated, the episode updated.
    late = engine.observe(
        Reading("WW", "COD", T0 + 5 * STEP, 300.0, Status.MEASURING), T0 + timedelta(hours=3)
    )
    [episode] = episodes(late)
    assert episode.maximum == pytest.approx((150.0 * 11 + 300.0) / 12)
    # The hour was already an exceedance (alerted and cleared): its evidence changes, not the
    # alert count.
    assert transitions(late, Kind.EXCEEDANCE) == []


def test_a_late_reading_that_turns_an_old_hour_into_an_exceedance_raises_then_clears() -> None:
    engine = make_engine()
    out = feed(engine, "WW", "COD", [74.0] * 11)  # hour 0 at 74: below 75
    out += feed(engine, "WW", "COD", [10.0] * 24, start=T0 + timedelta(hours=1))
    assert transitions(out, Kind.EXCEEDANCE) == []
    late = engine.observe(
        Reading("WW", "COD", T0 + 11 * STEP, 200.0, Status.MEASURING), T0 + timedelta(hours=3)
    )
    assert [t.change for t in transitions(late, Kind.EXCEEDANCE)] == [Change.RAISE, Change.CLEAR]
    [episode] = episodes(late)
    assert episode.maximum == pytest.approx((74.0 * 11 + 200.0) / 12)


def test_a_redelivered_reading_counts_once() -> None:
    engine = make_engine()
    feed(engine, "WW", "COD", [150.0] * 6)
    out = feed(engine, "WW", "COD", [150.0] * 6)  # the same six again (broker redelivery)
    assert transitions(out, Kind.EXCEEDANCE) == []  # still 6 of 12, the hour is not complete


def test_ph_outside_its_range_exceeds_without_a_multiple() -> None:
    engine = make_engine()
    out = feed(engine, "WW", "pH", [5.0] * 12)
    [raised] = transitions(out, Kind.EXCEEDANCE)
    assert raised.details["multiple"] is None
    assert raised.details["excess"] == pytest.approx(1.0)
    assert raised.details["band"] is None
    assert transitions(out, Kind.WARNING) == []
    out = feed(engine, "WW", "pH", [7.0] * 12, start=T0 + timedelta(hours=1))
    assert [t.change for t in transitions(out, Kind.EXCEEDANCE)] == [Change.CLEAR]


def test_a_warning_above_80_percent_clears_when_an_exceedance_takes_over() -> None:
    engine = make_engine()
    out = feed(engine, "WW", "COD", [65.0] * 12)  # 65 > 60: warning
    assert [t.change for t in transitions(out, Kind.WARNING)] == [Change.RAISE]
    out = feed(engine, "WW", "COD", [80.0] * 12, start=T0 + timedelta(hours=1))
    assert [t.change for t in transitions(out, Kind.EXCEEDANCE)] == [Change.RAISE]
    assert [t.change for t in transitions(out, Kind.WARNING)] == [Change.CLEAR]


# --- 24 h means over the local day -------------------------------------------------------------


def test_daily_mean_is_over_the_vietnam_calendar_day_and_waits_for_the_day_to_end() -> None:
    engine = make_engine()
    day_start = datetime(2026, 3, 2, tzinfo=VIETNAM).astimezone(UTC)  # 17:00 UTC
    out = feed(engine, "AIR", "SO2", [150.0] * 288, start=day_start)  # 150 > 125, < 350
    assert transitions(out, Kind.EXCEEDANCE) == []  # the day is not over
    out = feed(engine, "AIR", "SO2", [10.0] * 3, start=day_start + timedelta(days=1, minutes=10))
    [raised] = transitions(out, Kind.EXCEEDANCE)
    assert raised.details["averaging"] == "24h"
    assert raised.details["window_start"] == day_start.isoformat()
    assert raised.value == pytest.approx(150.0)
    assert raised.details["band"] is None  # no penalty bands for ambient air


# --- per-reading conditions ----------------------------------------------------------------------


def test_device_fault_raises_on_status_02_and_clears_after_three_normal_readings() -> None:
    engine = make_engine()
    out = feed(engine, "WW", "COD", [0.0] * 2, status=Status.FAULT)
    assert [t.change for t in transitions(out, Kind.DEVICE_FAULT)] == [Change.RAISE, Change.UPDATE]
    out = feed(engine, "WW", "COD", [50.0, 51.0], start=T0 + 2 * STEP)
    assert transitions(out, Kind.DEVICE_FAULT) == []
    out = feed(engine, "WW", "COD", [52.0], start=T0 + 4 * STEP)
    assert [t.change for t in transitions(out, Kind.DEVICE_FAULT)] == [Change.CLEAR]


def test_calibration_longer_than_allowed() -> None:
    engine = make_engine(calibration_max=timedelta(minutes=30))
    out = feed(engine, "WW", "pH", [7.0] * 6, status=Status.CALIBRATING)  # 30 min: allowed
    assert transitions(out, Kind.CALIBRATION) == []
    out = feed(engine, "WW", "pH", [7.0], start=T0 + 6 * STEP, status=Status.CALIBRATING)
    [raised] = transitions(out, Kind.CALIBRATION)
    assert raised.details["minutes"] == 35
    out = feed(engine, "WW", "pH", [7.1], start=T0 + 7 * STEP)
    assert [t.change for t in transitions(out, Kind.CALIBRATION)] == [Change.CLEAR]


def test_stuck_value_after_n_identical_readings_clears_when_it_moves() -> None:
    engine = make_engine(stuck_readings=4)
    out = feed(engine, "WW", "Flow", [12.5] * 3)
    assert transitions(out, Kind.STUCK_VALUE) == []
    out = feed(engine, "WW", "Flow", [12.5, 12.5], start=T0 + 3 * STEP)
    assert [t.change for t in transitions(out, Kind.STUCK_VALUE)] == [Change.RAISE]
    out = feed(engine, "WW", "Flow", [12.6], start=T0 + 5 * STEP)
    assert [t.change for t in transitions(out, Kind.STUCK_VALUE)] == [Change.CLEAR]


def test_out_of_range_values_are_physically_impossible() -> None:
    engine = make_engine(physical_ranges={"pH": PhysicalRange(0, 14)})
    out = feed(engine, "WW", "pH", [15.2])
    [raised] = transitions(out, Kind.OUT_OF_RANGE)
    assert raised.details["maximum"] == 14 and raised.value == 15.2
    out = feed(engine, "WW", "COD", [-3.0])  # the default range: never negative
    assert [t.change for t in transitions(out, Kind.OUT_OF_RANGE)] == [Change.RAISE]


def test_clock_drift_when_measured_time_is_ahead_of_arrival() -> None:
    engine = make_engine()
    out = feed(engine, "WW", "COD", [50.0], received_delay=timedelta(minutes=-10))
    [raised] = transitions(out, Kind.CLOCK_DRIFT)
    assert raised.param == STATION_WIDE
    assert raised.details["ahead_seconds"] == 600
    out = feed(engine, "WW", "COD", [50.0, 51.0, 52.0], start=T0 + STEP)
    assert [t.change for t in transitions(out, Kind.CLOCK_DRIFT)] == [Change.CLEAR]


def test_data_loss_for_a_silent_station_and_for_a_silent_parameter() -> None:
    engine = make_engine()
    feed(engine, "WW", "COD", [50.0] * 4)
    feed(engine, "WW", "pH", [7.0] * 4)
    feed(engine, "WW", "Flow", [10.0])
    # Flow stopped after the first reading: 20 min > 3 × 5 min for Flow only.
    out = engine.tick(T0 + timedelta(minutes=20))
    lost = {(t.station_id, t.param) for t in transitions(out, Kind.DATA_LOSS)}
    assert ("WW", "Flow") in lost and ("WW", STATION_WIDE) not in lost
    # AIR never sent anything since the engine started at T0.
    assert ("AIR", STATION_WIDE) in lost
    # Everything silent at 40 min: the station-wide alert, raised once.
    out = engine.tick(T0 + timedelta(minutes=40))
    assert ("WW", STATION_WIDE) in {
        (t.station_id, t.param) for t in transitions(out, Kind.DATA_LOSS)
    }
    assert transitions(engine.tick(T0 + timedelta(minutes=45)), Kind.DATA_LOSS) == []
    # Data again: the station-wide condition clears.
    out = feed(engine, "WW", "COD", [50.0], start=T0 + timedelta(minutes=45))
    assert (Change.CLEAR, STATION_WIDE) in {
        (t.change, t.param) for t in transitions(out, Kind.DATA_LOSS)
    }


def test_a_backlog_of_old_readings_does_not_clear_data_loss() -> None:
    engine = make_engine()
    engine.tick(T0 + timedelta(hours=2))
    old = Reading("WW", "COD", T0 + timedelta(minutes=30), 50.0, Status.MEASURING)
    out = engine.observe(old, T0 + timedelta(hours=2, minutes=1))
    assert all(t.param != STATION_WIDE for t in transitions(out, Kind.DATA_LOSS))


def test_a_silent_station_s_incomplete_hour_is_evaluated_by_the_clock() -> None:
    engine = make_engine()
    out = feed(engine, "WW", "COD", [150.0] * 10)  # 10 of 12, then silence
    assert transitions(out, Kind.EXCEEDANCE) == []
    out = engine.tick(T0 + timedelta(hours=1, minutes=11))
    assert [t.change for t in transitions(out, Kind.EXCEEDANCE)] == [Change.RAISE]


def test_restored_open_alerts_are_updated_not_raised_again() -> None:
    engine = make_engine()
    engine.restore([("WW", "COD", Kind.EXCEEDANCE)])
    out = feed(engine, "WW", "COD", [150.0] * 12)
    assert [t.change for t in transitions(out, Kind.EXCEEDANCE)] == [Change.UPDATE]


def test_disabled_kinds_raise_nothing() -> None:
    engine = make_engine(enabled=frozenset(set(Kind) - {Kind.DEVICE_FAULT}))
    out = feed(engine, "WW", "COD", [0.0], status=Status.FAULT)
    assert transitions(out, Kind.DEVICE_FAULT) == []


def test_limit_that_changes_on_a_date_applies_by_window_time() -> None:
    limits = Limits(
        [
            Limit("SO2", "1h", 350.0, unit="µg/m3", regulation_kind="air"),
            Limit(
                "SO2", "1h", 100.0, unit="µg/m3", regulation_kind="air", valid_from=date(2026, 3, 3)
            ),
        ]
    )
    engine = Engine(
        REGISTRY, lambda s: limits if s.id == "AIR" else None, EngineConfig(), band_for, T0
    )
    out = feed(engine, "AIR", "SO2", [200.0] * 12)  # 2 March: limit 350
    assert transitions(out, Kind.EXCEEDANCE) == []
    later = datetime(2026, 3, 3, tzinfo=VIETNAM).astimezone(UTC)
    out = feed(engine, "AIR", "SO2", [200.0] * 12, start=later)  # 3 March: limit 100
    [raised] = transitions(out, Kind.EXCEEDANCE)
    assert raised.details["limit"] == 100.0


def test_more_readings_in_an_exceeding_hour_revise_its_evidence_without_a_repeat() -> None:
    engine = make_engine()
    out = feed(engine, "WW", "COD", [150.0] * 12)  # complete at 12: raised at once
    assert [t.change for t in transitions(out, Kind.EXCEEDANCE)] == [Change.RAISE]
    # A datalogger sending more often than its declared cadence: six more readings at 300.
    extra = feed(engine, "WW", "COD", [300.0] * 6, start=T0 + timedelta(minutes=2, seconds=30))
    revisions = transitions(extra, Kind.EXCEEDANCE)
    assert {t.change for t in revisions} == {Change.REVISE}  # one per reading fed here
    revised = revisions[-1]
    assert revised.value == pytest.approx((150 * 12 + 300 * 6) / 18)
    assert revised.details["multiple"] == pytest.approx(200 / 75, abs=1e-3)
