"""The engine's bulk path (a message judged per parameter) against reading by reading.

Random messages (mostly clean, some with faults, calibrations, repeated values, impossible
values, clock drift, late and redelivered readings, other stations, open alerts to clear, clock
ticks) go through two engines, one with ``bulk`` off: every output, in the same order, must be
the same, and so must what each engine remembers.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from quantrac.alerts.config import EngineConfig, PhysicalRange
from quantrac.alerts.engine import Engine, Output
from quantrac.alerts.model import STATION_WIDE, Kind
from quantrac.core.contract import Reading, Status
from tests.test_unit_engine import LIMITS, REGISTRY, STEP, T0, band_for

PARAMS = {"WW": ("COD", "pH", "Flow"), "AIR": ("SO2",)}


def engines(**overrides: Any) -> tuple[Engine, Engine]:
    config = replace(
        EngineConfig(),
        stuck_readings=4,
        physical_ranges={"pH": PhysicalRange(0.0, 14.0)},
        stuck_exempt=frozenset({"Flow"}),
        **overrides,
    )
    made = [
        Engine(REGISTRY, lambda s: LIMITS.get(s.id), config, band_for, started_at=T0)
        for _ in range(2)
    ]
    made[1].bulk = False
    return made[0], made[1]


def value_for(rnd: random.Random, param: str, previous: float | None) -> float:
    roll = rnd.random()
    if previous is not None and roll < 0.25:
        return previous  # towards a stuck value
    if roll < 0.27:
        return -1.0  # physically impossible
    if roll < 0.28:
        return float("nan")
    if param == "pH":
        return round(rnd.uniform(5.0, 10.0), 1)
    return round(rnd.uniform(20.0, 140.0), 0)


def message(
    rnd: random.Random, station: str, slot: int, last: dict[tuple[str, str], float]
) -> tuple[list[Reading], datetime]:
    """One message of a few slots of a station's parameters, maybe with trouble in it."""
    readings: list[Reading] = []
    slots = rnd.choice((1, 1, 2, 3, 12))
    for i in range(slots):
        at = T0 + (slot + i) * STEP
        for param in PARAMS[station]:
            if rnd.random() < 0.1:
                continue  # a parameter missing from this slot
            roll = rnd.random()
            status = (
                Status.FAULT
                if roll < 0.03
                else Status.CALIBRATING
                if roll < 0.06
                else Status.MEASURING
            )
            value: float | None = value_for(rnd, param, last.get((station, param)))
            if status is not Status.MEASURING and rnd.random() < 0.5:
                value = None  # a TT10 fault line without a value
            if value is not None:
                last[(station, param)] = value
            readings.append(Reading(station, param, at, value, status))
    rnd.shuffle(readings)  # the engine sorts by measured time
    if readings and rnd.random() < 0.05:
        readings.append(readings[0])  # redelivered within the message
    if rnd.random() < 0.03:
        other = "AIR" if station == "WW" else "WW"
        readings.append(Reading(other, PARAMS[other][0], T0 + slot * STEP, 80.0, Status.MEASURING))
    if rnd.random() < 0.02:
        readings.append(Reading("NOWHERE", "COD", T0 + slot * STEP, 80.0, Status.MEASURING))
    newest = T0 + (slot + slots - 1) * STEP
    delay = timedelta(seconds=rnd.choice((5, 30, 90)))
    if rnd.random() < 0.2:
        delay = timedelta(
            minutes=rnd.choice((14, 15, 15, 15, 16, 60, 300))
        )  # a backlog drained late
    if rnd.random() < 0.04:
        delay = -timedelta(minutes=5)  # the station's clock is ahead
    return readings, newest + delay


def state_of(engine: Engine) -> Any:
    assert engine.active.series == {
        pair: sum(1 for k in engine.active if k[:2] == pair)
        for pair in {k[:2] for k in engine.active}
    }
    return (
        sorted(engine.active),
        {
            sid: (
                state.newest,
                state.last_received,
                state.closed_until,
                {
                    param: (
                        series.newest,
                        series.last_value if series.last_value == series.last_value else "nan",
                        series.same_count,
                        series.calibrating_since,
                        (series.drift_streak, series.fault_streak, series.range_streak),
                        {h: dict(v) for h, v in series.windows.hours.items()},
                        dict(series.results),
                    )
                    for param, series in state.series.items()
                },
            )
            for sid, state in engine.stations.items()
        },
    )


def same(a: list[Output], b: list[Output]) -> bool:
    # NaN is never equal to itself: compare the reprs, which keep every field and the order.
    return repr(a) == repr(b)


def compare(seed: int, messages: int = 60, **overrides: Any) -> int:
    """Both engines fed the same random history; every output and the state must agree.
    Returns how many messages the bulk path judged."""
    rnd = random.Random(seed)
    bulk, each = engines(**overrides)
    if rnd.random() < 0.3:
        opened = [
            ("WW", "COD", Kind.DEVICE_FAULT),
            ("WW", STATION_WIDE, Kind.DATA_LOSS),
            ("WW", "pH", Kind.STUCK_VALUE),
            ("AIR", STATION_WIDE, Kind.CLOCK_DRIFT),
            ("AIR", "SO2", Kind.CALIBRATION),
            ("WW", "Flow", Kind.OUT_OF_RANGE),
            ("WW", "COD", Kind.DATA_LOSS),
            ("AIR", "SO2", Kind.DATA_LOSS),
        ]
        restored = rnd.sample(opened, rnd.randint(1, len(opened)))
        bulk.restore(restored)
        each.restore(restored)
    slot = {"WW": 0, "AIR": 0}
    last: dict[tuple[str, str], float] = {}
    judged_in_bulk = 0
    real_bulk = Engine._observe_bulk

    def counting(self: Engine, ordered: list[Reading], received_at: datetime) -> Any:
        nonlocal judged_in_bulk
        result = real_bulk(self, ordered, received_at)
        judged_in_bulk += result is not None
        return result

    bulk._observe_bulk = counting.__get__(bulk)  # type: ignore[method-assign]
    for _ in range(messages):
        station = rnd.choice(("WW", "WW", "AIR"))
        if rnd.random() < 0.08:
            at_slot = max(0, slot[station] - rnd.randint(1, 20))  # a late message
        else:
            at_slot = slot[station]
            slot[station] += rnd.choice((1, 1, 1, 2, 3, 12))
        readings, received_at = message(rnd, station, at_slot, last)
        a = bulk.observe_many(readings, received_at)
        b = each.observe_many(readings, received_at)
        assert same(a, b), (seed, readings, received_at)
        if rnd.random() < 0.1:
            now = received_at + timedelta(minutes=rnd.choice((1, 20, 90)))
            assert same(bulk.tick(now), each.tick(now)), (seed, now)
    assert repr(state_of(bulk)) == repr(state_of(each))
    return judged_in_bulk


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_bulk_and_reading_by_reading_give_the_same_outputs_in_the_same_order(seed: int) -> None:
    compare(seed)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_the_same_with_every_kind_off_but_a_few(seed: int) -> None:
    compare(seed, enabled=frozenset({Kind.EXCEEDANCE, Kind.STUCK_VALUE, Kind.DATA_LOSS}))


def test_both_paths_are_exercised() -> None:
    judged = [compare(seed, messages=80) for seed in range(30)]
    assert sum(judged) > 300  # most messages are clean and go in bulk ...
    assert sum(judged) < 30 * 80  # ... and the others reading by reading


def test_a_clean_message_goes_in_bulk_and_one_with_a_fault_does_not() -> None:
    engine, _ = engines()
    clean = [Reading("WW", "COD", T0 + i * STEP, 50.0 + i, Status.MEASURING) for i in range(12)]
    assert engine._observe_bulk(clean, T0 + 12 * STEP) is not None
    fault = [Reading("WW", "COD", T0 + 13 * STEP, None, Status.FAULT)]
    assert engine._observe_bulk(fault, T0 + 13 * STEP) is None
    impossible = [Reading("WW", "COD", T0 + 14 * STEP, -5.0, Status.MEASURING)]
    assert engine._observe_bulk(impossible, T0 + 14 * STEP) is None
    ahead = [Reading("WW", "COD", T0 + 15 * STEP, 60.0, Status.MEASURING)]
    assert engine._observe_bulk(ahead, T0 + 15 * STEP - timedelta(minutes=3)) is None


def test_the_open_conditions_count_per_station_and_parameter_through_every_change() -> None:
    engine, _ = engines()
    fault, loss = ("WW", "COD", Kind.DEVICE_FAULT), ("WW", "COD", Kind.DATA_LOSS)
    engine.restore([fault, loss, ("AIR", STATION_WIDE, Kind.CLOCK_DRIFT)])
    assert engine.active.series == {("WW", "COD"): 2, ("AIR", STATION_WIDE): 1}
    engine.active.discard(fault)
    engine.active.discard(fault)
    assert engine.active.series == {("WW", "COD"): 1, ("AIR", STATION_WIDE): 1}
    engine.active -= {loss}
    engine.active |= {fault}
    assert engine.active.series == {("WW", "COD"): 1, ("AIR", STATION_WIDE): 1}
    engine.active &= {fault}
    assert engine.active.series == {("WW", "COD"): 1}
    engine.active ^= {fault, loss}
    assert engine.active.series == {("WW", "COD"): 1} and engine.active == {loss}
    engine.active = {k for k in engine.active if k[0] != "WW"}  # as the service reassigns it
    assert engine.active.series == {} and not engine.active
    engine.active.add(fault)
    assert engine.active.pop() == fault and engine.active.series == {}
    engine.active.update([fault, loss])
    engine.active.remove(fault)
    engine.active.symmetric_difference_update({fault})
    engine.active.intersection_update({fault})
    assert engine.active.series == {("WW", "COD"): 1} and engine.active == {fault}
    engine.active.difference_update({fault})
    assert engine.active.series == {} and not engine.active
