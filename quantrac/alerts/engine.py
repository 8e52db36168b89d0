"""The alert engine: readings in, alert transitions and exceedance episodes out. Pure.

Time comes in only as arguments: ``observe(reading, received_at)`` for each validated reading and
``tick(now)`` for what depends on the clock (silent stations, incomplete hours). The live service
feeds it from MQTT and the wall clock; ``replay`` feeds it from a CSV file and the data's own
times, so both give the same answers for the same data.

What it decides, per station and parameter:
- averaging windows (1 h, 8 h rolling, local 24 h) compared with the effective limits in force
  at the window's time; a window below the completeness threshold is "insufficient" and neither
  raises nor clears anything;
- exceedance and warning conditions with hysteresis (clear below ``clear_ratio`` x limit for at
  least ``min_clear``), and exceedance episodes (runs of consecutive exceeding windows);
- per-reading conditions: device fault (status 02), calibration too long (status 01), stuck
  value, physically impossible value, clock drift; and data loss from the clock.

A late reading re-evaluates the windows it falls in; a new exceedance found that way is still
raised (then cleared at once if newer windows are clean), so nothing found late goes unseen.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, Protocol

from quantrac.alerts.config import EngineConfig
from quantrac.alerts.model import STATION_WIDE, Kind
from quantrac.core.catalog import Catalog
from quantrac.core.contract import Reading, Status
from quantrac.core.registry import Registry, Station
from quantrac.regulations.windows import (
    DAILY,
    EIGHT_HOURS,
    HOUR,
    ONE_HOUR,
    SeriesWindows,
    Window,
    hour_floor,
    hour_place,
    local_date,
    local_day_bounds,
    windows_containing,
)


class LimitLike(Protocol):
    """What the engine needs of an effective limit (quantrac.regulations.limits.EffectiveLimit)."""

    @property
    def param(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def averaging(self) -> str: ...
    @property
    def regulation_id(self) -> str: ...
    @property
    def regulation_kind(self) -> str: ...
    @property
    def column(self) -> str | None: ...
    @property
    def maximum(self) -> float | None: ...
    @property
    def minimum(self) -> float | None: ...
    @property
    def formula(self) -> str: ...
    @property
    def formula_vi(self) -> str: ...
    @property
    def unverified(self) -> bool: ...
    @property
    def source(self) -> str: ...
    def exceeds(self, value: float) -> bool: ...
    def multiple(self, value: float) -> float | None: ...
    def excess(self, value: float) -> float: ...


class LimitsLike(Protocol):
    def in_force(self, param: str, at: datetime) -> Sequence[LimitLike]: ...
    def params(self) -> set[str]: ...


class BandLike(Protocol):
    @property
    def label(self) -> str: ...


LimitsFor = Callable[[Station], LimitsLike | None]
BandFor = Callable[[str, float], BandLike | None]


class Change(enum.StrEnum):
    RAISE = "raise"
    UPDATE = "update"
    REVISE = "revise"  # the same window, re-evaluated with more readings: evidence, not a repeat
    CLEAR = "clear"


@dataclass(frozen=True, slots=True)
class Transition:
    """A condition started, repeated or cleared. The store turns these into alert events."""

    change: Change
    kind: Kind
    station_id: str
    param: str
    at: datetime  # the data time the decision rests on (window end, reading time, clock)
    value: float | None
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Episode:
    """A run of consecutive exceeding windows of one averaging period: inspectors' evidence."""

    station_id: str
    param: str
    averaging: str
    start: datetime
    end: datetime
    windows: int
    maximum: float
    mean: float
    limit: float | None  # the maximum limit (None for a range limit)
    limit_text: str
    unit: str
    multiple: float | None  # maximum / limit
    band: str | None
    completeness: float  # mean completeness of the windows
    regulation_id: str
    column: str | None
    formula: str
    unverified: bool
    ongoing: bool  # the latest evaluated window of this series is part of it
    # It starts with the oldest window the engine still holds: after a restart it may be the
    # tail of an episode stored before, which the store then extends instead of duplicating.
    continues_earlier: bool = False

    @property
    def key(self) -> tuple[str, str, str, datetime]:
        return (self.station_id, self.param, self.averaging, self.start)


@dataclass(frozen=True, slots=True)
class EpisodeChange:
    upserts: tuple[Episode, ...]
    deletes: tuple[tuple[str, str, str, datetime], ...]  # keys of episodes that merged away


@dataclass(frozen=True, slots=True)
class WindowEvaluated:
    """A window's verdict (re)computed; the service keeps AQI and board views from these."""

    station_id: str
    param: str
    window: Window
    verdict: str


Output = Transition | EpisodeChange | WindowEvaluated


class Verdict(enum.StrEnum):
    EXCEED = "exceed"
    WARN = "warn"
    OK = "ok"
    INSUFFICIENT = "insufficient"
    NO_LIMIT = "no_limit"


@dataclass(frozen=True, slots=True)
class Evaluation:
    window: Window
    limit: LimitLike | None
    verdict: Verdict


@dataclass(slots=True)
class Series:
    """Everything the engine remembers about one (station, parameter)."""

    windows: SeriesWindows
    results: dict[tuple[str, datetime], Evaluation] = field(default_factory=dict)
    episodes: dict[str, dict[datetime, Episode]] = field(default_factory=dict)
    newest: datetime | None = None  # newest measured time of any status
    last_value: float | None = None
    same_count: int = 0
    calibrating_since: datetime | None = None
    # Normal readings since the last clock drift, device fault, out-of-range value (each clears
    # after ``clear_after_readings``). Plain ints: a dict keyed by Kind hashes an enum in Python.
    drift_streak: int = 0
    fault_streak: int = 0
    range_streak: int = 0


@dataclass(slots=True)
class StationState:
    station: Station
    limits: LimitsLike | None
    series: dict[str, Series] = field(default_factory=dict)
    newest: datetime | None = None
    closed_until: datetime | None = None  # hours starting before this are closed
    last_received: datetime | None = None


_READING_KINDS = (Kind.DEVICE_FAULT, Kind.OUT_OF_RANGE)


class ActiveSet(set[tuple[str, str, Kind]]):
    """The conditions currently on, plus how many are on per (station, parameter): the bulk
    path asks that first, as a tuple of two strings hashes in C while one with a Kind calls
    the enum's ``__hash__`` in Python."""

    def __init__(self, keys: Iterable[tuple[str, str, Kind]] = ()):
        super().__init__()
        self.series: dict[tuple[str, str], int] = {}
        self.update(keys)

    def add(self, key: tuple[str, str, Kind]) -> None:
        if key not in self:
            super().add(key)
            pair = (key[0], key[1])
            self.series[pair] = self.series.get(pair, 0) + 1

    def discard(self, key: object) -> None:
        if key in self:
            super().discard(key)
            assert isinstance(key, tuple)
            pair = (key[0], key[1])
            left = self.series[pair] - 1
            if left:
                self.series[pair] = left
            else:
                del self.series[pair]

    def remove(self, key: tuple[str, str, Kind]) -> None:
        if key not in self:
            raise KeyError(key)
        self.discard(key)

    def update(self, *others: Iterable[tuple[str, str, Kind]]) -> None:
        for keys in others:
            for key in keys:
                self.add(key)

    def clear(self) -> None:
        super().clear()
        self.series.clear()

    def pop(self) -> tuple[str, str, Kind]:
        key = next(iter(self))
        self.discard(key)
        return key

    def __ior__(self, other: Any) -> ActiveSet:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __isub__(self, other: Any) -> ActiveSet:  # type: ignore[misc]
        for key in list(other):
            self.discard(key)
        return self

    def __iand__(self, other: Any) -> ActiveSet:  # type: ignore[misc]
        keep = set(other)
        for key in [k for k in self if k not in keep]:
            self.discard(key)
        return self

    def __ixor__(self, other: Any) -> ActiveSet:  # type: ignore[override,misc]
        for key in set(other):
            if key in self:
                self.discard(key)
            else:
                self.add(key)
        return self

    def difference_update(self, *others: Iterable[Any]) -> None:
        for keys in others:
            self -= keys

    def intersection_update(self, *others: Iterable[Any]) -> None:
        for keys in others:
            self &= keys

    def symmetric_difference_update(self, other: Iterable[Any]) -> None:
        self ^= other


_measured_at = attrgetter("measured_at")


class Engine:
    def __init__(
        self,
        registry: Registry,
        limits_for: LimitsFor,
        config: EngineConfig,
        band_for: BandFor,
        started_at: datetime,
        unit_factor: Callable[[str, str], float | None] | None = None,
    ):
        self.config = config
        # Converts a station's declared unit to a limit's unit (exactly, or None).
        self.unit_factor = unit_factor
        self.limits_for = limits_for
        self.band_for = band_for
        self.started_at = started_at
        self.stations: dict[str, StationState] = {}
        # Conditions currently on, by (station, parameter, kind). Counts and maxima are the
        # store's business (the alert row); the engine only needs to know raise from repeat.
        self._active = ActiveSet()
        # Per parameter, its physical range and whether it can be stuck, for this config.
        self._checks: (
            tuple[EngineConfig, dict[str, tuple[float | None, float | None, bool]]] | None
        ) = None
        # Judge the common message in bulk (False: reading by reading, as the equivalence
        # test compares).
        self.bulk = True
        self.set_registry(registry)

    @property
    def active(self) -> ActiveSet:
        return self._active

    @active.setter
    def active(self, keys: Iterable[tuple[str, str, Kind]]) -> None:
        self._active = ActiveSet(keys)

    # --- configuration ---------------------------------------------------------------------

    def set_registry(self, registry: Registry) -> None:
        """Adopt a (reloaded) registry; the windows of stations that stay are kept."""
        stations: dict[str, StationState] = {}
        for station in registry.stations.values():
            old = self.stations.get(station.id)
            state = StationState(station, self.limits_for(station))
            if old is not None and old.station.cadence_s == station.cadence_s:
                state.series = old.series
                state.newest = old.newest
                state.closed_until = old.closed_until
            stations[station.id] = state
        self.stations = stations

    def restore(self, active: Iterable[tuple[str, str, Kind]]) -> None:
        """Mark conditions the database holds open alerts for, before rebuilding from data."""
        self.active.update(active)

    # --- input -----------------------------------------------------------------------------

    def observe(self, reading: Reading, received_at: datetime) -> list[Output]:
        return self.observe_many([reading], received_at)

    def observe_many(self, readings: Iterable[Reading], received_at: datetime) -> list[Output]:
        """The readings of one message (or file), in measured-time order.

        Per-reading conditions are checked reading by reading; windows once per message, so a
        message carrying a whole hour is judged on the whole hour.

        The common message (one station, status 00, values in range, no clock drift, nothing
        open that a reading could clear, no value repeating towards a stuck alert) is judged in
        bulk per parameter (:meth:`_observe_bulk`): it can raise or clear nothing per reading,
        so only the series' counters and windows move. Any other message goes reading by
        reading (:meth:`_observe_each`); both give the same outputs in the same order.
        """
        ordered = sorted(readings, key=_measured_at)
        if self.bulk and ordered:
            out = self._observe_bulk(ordered, received_at)
            if out is not None:
                return out
        return self._observe_each(ordered, received_at)

    def _observe_each(self, ordered: list[Reading], received_at: datetime) -> list[Output]:
        """Reading by reading: every per-reading condition as it comes."""
        out: list[Output] = []
        touched: dict[tuple[str, str], set[datetime]] = {}
        # Measured time → its hour and seconds into it (a message has few distinct times).
        hour_of: dict[datetime, tuple[datetime, float]] = {}
        stations = self.stations
        for reading in ordered:
            state = stations.get(reading.station_id)
            if state is None:
                continue
            self._observe_one(state, reading, received_at, touched, out, hour_of)
        self._judge_touched(touched, out)
        return out

    def _judge_touched(
        self, touched: dict[tuple[str, str], set[datetime]], out: list[Output]
    ) -> None:
        """The windows of a message: its complete (or late) hours, then the hours it closed."""
        stations = self.stations
        for (station_id, param), hours in touched.items():
            state = stations[station_id]
            series = state.series[param]
            closed_until = state.closed_until
            slots, full = series.windows.slots, series.windows.full
            for hour in sorted(hours) if len(hours) > 1 else hours:
                # Late (its hour closed already), or complete: no waiting.
                if (closed_until is not None and hour < closed_until) or len(
                    slots.get(hour, ())
                ) >= full:
                    self._evaluate_hour(state, param, series, hour, out)
        for station_id in {sid for sid, _ in touched}:
            state = self.stations[station_id]
            assert state.newest is not None
            self._close_until(state, hour_floor(state.newest - self.config.window_grace), out)

    def _observe_bulk(self, ordered: list[Reading], received_at: datetime) -> list[Output] | None:
        """One station's message judged per parameter, or None when a per-reading condition
        could fire (or the message is not one station's): then :meth:`_observe_each` judges it.

        First a check over every parameter's readings that changes nothing (locals only), then,
        if nothing can fire, the counters as the reading-by-reading path leaves them: each
        "normal readings since" streak grows by the readings that path counts, the stuck-value
        run and the calibration start are those after the last reading, the windows get every
        valid value.
        """
        sid = ordered[0].station_id
        state = self.stations.get(sid)
        if state is None:
            return None
        cfg = self.config
        active = self._active
        held = active.series  # (station, parameter) with an open condition
        station_held = (sid, STATION_WIDE) in held
        if ordered[-1].measured_at - received_at > cfg.clock_drift_tolerance or (
            station_held and (sid, STATION_WIDE, Kind.CLOCK_DRIFT) in active
        ):
            return None
        # Data loss clears once data is current again. Reading by reading, the station's
        # newest time only grows through the message, so it clears within the message exactly
        # if it would with the message's newest time (a backlog of old readings does not).
        silence = self._silence_limit(state.station)
        last_at = ordered[-1].measured_at
        station_newest = last_at if state.newest is None or last_at > state.newest else state.newest
        if (
            station_held
            and (sid, STATION_WIDE, Kind.DATA_LOSS) in active
            and received_at - station_newest <= silence
        ):
            return None
        groups: dict[str, list[Reading]] = {}
        measuring = Status.MEASURING
        for reading in ordered:
            if reading.station_id != sid or reading.status is not measuring:
                return None
            group = groups.get(reading.param)
            if group is None:
                groups[reading.param] = [reading]
            else:
                group.append(reading)
        # The check: what every group would leave, or None as soon as anything could fire.
        stuck_after = cfg.stuck_readings
        checks = self._checks
        if checks is None or checks[0] is not cfg:
            checks = self._checks = (cfg, {})
        check_of = checks[1]
        series_of = state.series
        plans: list[tuple[Series, list[Reading], datetime | None, int, int, float | None, int]] = []
        for param, group in groups.items():
            if (sid, param) in held and (
                (sid, param, Kind.DEVICE_FAULT) in active
                or (sid, param, Kind.OUT_OF_RANGE) in active
                or (sid, param, Kind.CALIBRATION) in active
            ):
                return None
            series = series_of.get(param)
            if series is None:
                series = self._series(state, param)
            check = check_of.get(param)
            if check is None:
                rng = cfg.physical_range(param)
                check = check_of[param] = (rng.minimum, rng.maximum, param not in cfg.stuck_exempt)
            low, high, stuck = check
            newest = series.newest
            last_value = series.last_value
            same = series.same_count
            in_order_count = 0  # streaks of clock drift and device fault
            valued_in_order = 0  # streak of out-of-range
            for reading in group:
                at = reading.measured_at
                in_order = newest is None or at > newest
                if in_order:
                    newest = at
                    in_order_count += 1
                value = reading.value
                if value is None:
                    continue
                if (low is not None and value < low) or (high is not None and not value <= high):
                    return None  # out of range: raised reading by reading
                if not in_order:
                    continue
                valued_in_order += 1
                if stuck:
                    if last_value is not None and value == last_value:
                        same += 1
                    else:
                        if same >= stuck_after:
                            return None  # a stuck value may clear
                        same = 1
                    last_value = value
                    if same >= stuck_after:
                        return None  # a stuck value may be raised
            if (
                (sid, param) in held
                and (sid, param, Kind.DATA_LOSS) in active
                and newest is not None
                and received_at - newest <= silence
            ):
                return None  # the parameter's data loss clears (its newest time only grows)
            if stuck and valued_in_order:
                plans.append(
                    (series, group, newest, in_order_count, valued_in_order, last_value, same)
                )
            else:
                plans.append((series, group, newest, in_order_count, valued_in_order, None, -1))
        # Nothing can fire: move the state as reading by reading would have.
        if state.last_received is None or received_at > state.last_received:
            state.last_received = received_at
        state.newest = station_newest
        touched: dict[tuple[str, str], set[datetime]] = {}
        late_first: list[tuple[str, Reading]] = []  # groups whose first reading touched nothing
        hour_of: dict[datetime, tuple[datetime, float]] = {}
        for series, group, newest, in_order_count, valued, last_value, same in plans:
            series.newest = newest
            if in_order_count:
                series.drift_streak += in_order_count
                series.fault_streak += in_order_count
                series.calibrating_since = None
            if valued:
                series.range_streak += valued
                if same >= 0:
                    series.last_value = last_value
                    series.same_count = same
            add = series.windows.add
            hours: set[datetime] | None = None
            first_touch: Reading | None = None
            for reading in group:
                value = reading.value
                if value is None:
                    continue
                at = reading.measured_at
                place = hour_of.get(at)
                if place is None:
                    place = hour_of[at] = hour_place(at)
                if add(at, value, place) is not None:
                    if hours is None:
                        hours = set()
                        first_touch = reading
                    hours.add(place[0])
            if hours is not None:
                assert first_touch is not None
                param = group[0].param
                touched[(sid, param)] = hours
                if first_touch is not group[0]:
                    late_first.append((param, first_touch))
        if late_first:
            # Reading by reading, a parameter's windows are judged in the order of the first
            # reading that touched them: restore it where that was not the group's first.
            position: dict[int, int] = {}
            for i, reading in enumerate(ordered):
                position.setdefault(id(reading), i)  # a reading sent twice: its first place
            firsts = {param: group[0] for param, group in groups.items()}
            firsts.update(late_first)
            touched = dict(
                sorted(touched.items(), key=lambda item: position[id(firsts[item[0][1]])])
            )
        out: list[Output] = []
        self._judge_touched(touched, out)
        return out

    def _observe_one(
        self,
        state: StationState,
        reading: Reading,
        received_at: datetime,
        touched: dict[tuple[str, str], set[datetime]],
        out: list[Output],
        hour_of: dict[datetime, tuple[datetime, float]],
    ) -> None:
        param = reading.param
        series = self._series(state, param)
        at = reading.measured_at
        in_order = series.newest is None or at > series.newest
        if in_order:
            series.newest = at
        if state.last_received is None or received_at > state.last_received:
            state.last_received = received_at
        if state.newest is None or at > state.newest:
            state.newest = at

        self._reading_conditions(state, series, reading, received_at, in_order, out)

        # Data loss clears once data is current again (a backlog of old readings is not enough).
        # Checked against the open alerts first: the common case (none open) costs a set look-up.
        sid = reading.station_id
        active = self.active
        if (sid, STATION_WIDE, Kind.DATA_LOSS) in active or (sid, param, Kind.DATA_LOSS) in active:
            limit = self._silence_limit(state.station)
            if state.newest is not None and received_at - state.newest <= limit:
                self._clear(out, sid, STATION_WIDE, Kind.DATA_LOSS, at, None, {})
            if series.newest is not None and received_at - series.newest <= limit:
                self._clear(out, sid, param, Kind.DATA_LOSS, at, None, {})

        value = reading.value
        if reading.status is Status.MEASURING and value is not None:
            place = hour_of.get(at)
            if place is None:
                place = hour_of[at] = hour_place(at)
            if series.windows.add(at, value, place) is not None:
                touched.setdefault((state.station.id, param), set()).add(place[0])

    def tick(self, now: datetime) -> list[Output]:
        """Clock-driven checks: silent stations and parameters, and hours nobody completed."""
        out: list[Output] = []
        cfg = self.config
        for state in self.stations.values():
            # Hours close with the station's own data while it streams (a backlog replays its
            # past in order); the clock closes them only once the station has gone quiet.
            quiet = state.last_received is not None and now - state.last_received > cfg.window_grace
            if quiet:
                self._close_until(state, hour_floor(now - cfg.window_grace), out)
            if Kind.DATA_LOSS not in cfg.enabled:
                continue
            limit = self._silence_limit(state.station)
            sid = state.station.id
            last = state.newest or self.started_at
            if now - last > limit:
                self._raise(
                    out,
                    sid,
                    STATION_WIDE,
                    Kind.DATA_LOSS,
                    now,
                    None,
                    {
                        "last_measured_at": _iso(state.newest),
                        "silent_minutes": round((now - last).total_seconds() / 60),
                        "threshold_minutes": round(limit.total_seconds() / 60),
                    },
                    repeat=False,
                )
                continue
            if not cfg.data_loss_per_parameter:
                continue
            for param in state.station.parameters:
                series = state.series.get(param)
                plast = (series.newest if series else None) or self.started_at
                if now - plast > limit:
                    self._raise(
                        out,
                        sid,
                        param,
                        Kind.DATA_LOSS,
                        now,
                        None,
                        {
                            "last_measured_at": _iso(series.newest if series else None),
                            "silent_minutes": round((now - plast).total_seconds() / 60),
                            "threshold_minutes": round(limit.total_seconds() / 60),
                        },
                        repeat=False,
                    )
        return out

    def close_windows(self, until: datetime) -> list[Output]:
        """Evaluate every hour (and day) ending by ``until``, without any clock checks.

        For offline replays, whose data simply ends: the last hours still get their verdict.
        """
        out: list[Output] = []
        for state in self.stations.values():
            self._close_until(state, hour_floor(until), out)
        return out

    def prune(self, now: datetime) -> None:
        """Forget windows older than the rebuild horizon (the database keeps everything)."""
        keep = hour_floor(now) - timedelta(hours=self.config.rebuild_hours + 24)
        for state in self.stations.values():
            for series in state.series.values():
                series.windows.prune(keep)
                for key in [k for k in series.results if k[1] < keep]:
                    del series.results[key]
                for episodes in series.episodes.values():
                    for start in [s for s, e in episodes.items() if e.end < keep]:
                        del episodes[start]

    # --- per-reading conditions --------------------------------------------------------------

    def _reading_conditions(
        self,
        state: StationState,
        series: Series,
        reading: Reading,
        received_at: datetime,
        in_order: bool,
        out: list[Output],
    ) -> None:
        cfg = self.config
        sid, param, at, value = (
            reading.station_id,
            reading.param,
            reading.measured_at,
            reading.value,
        )
        status = reading.status

        drift = at - received_at
        if drift > cfg.clock_drift_tolerance:
            self._raise(
                out,
                sid,
                STATION_WIDE,
                Kind.CLOCK_DRIFT,
                at,
                None,
                {"ahead_seconds": round(drift.total_seconds()), "received_at": _iso(received_at)},
            )
            self._streak(series, Kind.CLOCK_DRIFT, reset=True)
        elif in_order and self._streak(series, Kind.CLOCK_DRIFT) >= cfg.clear_after_readings:
            self._clear(out, sid, STATION_WIDE, Kind.CLOCK_DRIFT, at, None, {})

        if status is Status.FAULT:
            self._raise(out, sid, param, Kind.DEVICE_FAULT, at, value, {"status": "02"})
            self._streak(series, Kind.DEVICE_FAULT, reset=True)
        elif (
            in_order
            and status is Status.MEASURING
            and self._streak(series, Kind.DEVICE_FAULT) >= cfg.clear_after_readings
        ):
            self._clear(out, sid, param, Kind.DEVICE_FAULT, at, value, {})

        if in_order:
            if status is Status.CALIBRATING:
                if series.calibrating_since is None:
                    series.calibrating_since = at
                lasted = at - series.calibrating_since + timedelta(seconds=state.station.cadence_s)
                if lasted > cfg.calibration_max:
                    self._raise(
                        out,
                        sid,
                        param,
                        Kind.CALIBRATION,
                        at,
                        value,
                        {
                            "since": _iso(series.calibrating_since),
                            "minutes": round(lasted.total_seconds() / 60),
                            "allowed_minutes": round(cfg.calibration_max.total_seconds() / 60),
                        },
                        repeat=False,
                    )
            else:
                series.calibrating_since = None
                if (sid, param, Kind.CALIBRATION) in self.active:  # else nothing to clear
                    self._clear(out, sid, param, Kind.CALIBRATION, at, value, {})

        if status is not Status.MEASURING or value is None:
            return
        rng = cfg.physical_range(param)
        if not rng.contains(value):
            self._raise(
                out,
                sid,
                param,
                Kind.OUT_OF_RANGE,
                at,
                value,
                {"minimum": rng.minimum, "maximum": rng.maximum, "unit": _unit(state, param)},
            )
            self._streak(series, Kind.OUT_OF_RANGE, reset=True)
        elif in_order and self._streak(series, Kind.OUT_OF_RANGE) >= cfg.clear_after_readings:
            self._clear(out, sid, param, Kind.OUT_OF_RANGE, at, value, {})

        if in_order and param not in cfg.stuck_exempt:
            if series.last_value is not None and value == series.last_value:
                series.same_count += 1
            else:
                if series.same_count >= cfg.stuck_readings:
                    self._clear(out, sid, param, Kind.STUCK_VALUE, at, value, {})
                series.same_count = 1
            series.last_value = value
            if series.same_count >= cfg.stuck_readings:
                self._raise(
                    out,
                    sid,
                    param,
                    Kind.STUCK_VALUE,
                    at,
                    value,
                    {"identical_readings": series.same_count},
                    repeat=False,
                )

    def _streak(self, series: Series, kind: Kind, *, reset: bool = False) -> int:
        if kind is Kind.CLOCK_DRIFT:
            count = series.drift_streak = 0 if reset else series.drift_streak + 1
        elif kind is Kind.DEVICE_FAULT:
            count = series.fault_streak = 0 if reset else series.fault_streak + 1
        else:
            assert kind is Kind.OUT_OF_RANGE
            count = series.range_streak = 0 if reset else series.range_streak + 1
        return count

    # --- windows -----------------------------------------------------------------------------

    def _close_until(self, state: StationState, until: datetime, out: list[Output]) -> None:
        """Evaluate every hour (and the 8 h and daily windows ending there) that just closed."""
        previous = state.closed_until
        if previous is not None and until <= previous:
            return
        state.closed_until = until
        if previous is None:
            # First time: only the hours we hold data for can have anything to say.
            hours = sorted({h for s in state.series.values() for h in s.windows.hours if h < until})
        else:
            hours = []
            hour = previous
            while hour < until:
                hours.append(hour)
                hour += HOUR
        for hour in hours:
            for param, series in state.series.items():
                if hour in series.windows.hours or self._has_8h_data(series, hour):
                    self._evaluate_hour(state, param, series, hour, out)
            # A local day closes with its last hour.
            day_start, day_end = local_day_bounds(
                local_date(hour, self.config.local_tz), self.config.local_tz
            )
            if hour + HOUR == day_end:
                for param, series in state.series.items():
                    self._evaluate(state, param, series, DAILY, day_start, out)

    @staticmethod
    def _has_8h_data(series: Series, hour: datetime) -> bool:
        return any(hour - i * HOUR in series.windows.hours for i in range(8))

    def _evaluate_hour(
        self, state: StationState, param: str, series: Series, hour: datetime, out: list[Output]
    ) -> None:
        closed_until = state.closed_until
        averagings = self._averagings(state, param)
        for averaging in averagings:
            for start in windows_containing(averaging, hour, self.config.local_tz):
                window_end = start + (8 * HOUR if averaging == EIGHT_HOURS else HOUR)
                if averaging == DAILY:
                    window_end = local_day_bounds(
                        local_date(start, self.config.local_tz), self.config.local_tz
                    )[1]
                    if closed_until is None or window_end > closed_until:
                        continue
                elif averaging == EIGHT_HOURS:
                    last_hour = window_end - HOUR
                    is_closed = closed_until is not None and last_hour < closed_until
                    if not is_closed and not (last_hour == hour and series.windows.is_full(hour)):
                        continue
                self._evaluate(state, param, series, averaging, start, out)

    def _averagings(self, state: StationState, param: str) -> set[str]:
        if state.limits is None:
            return {ONE_HOUR}
        now = state.newest or self.started_at
        found = {limit.averaging for limit in state.limits.in_force(param, now)}
        # Hourly means are always kept: the AQI and the board use them even without a 1 h limit.
        return (found & {EIGHT_HOURS, DAILY}) | {ONE_HOUR}

    def _limit(
        self, state: StationState, param: str, averaging: str, at: datetime
    ) -> LimitLike | None:
        if state.limits is None:
            return None
        for limit in state.limits.in_force(param, at):
            if limit.averaging == averaging:
                return limit
        return None

    def _evaluate(
        self,
        state: StationState,
        param: str,
        series: Series,
        averaging: str,
        start: datetime,
        out: list[Output],
    ) -> None:
        window = series.windows.window(averaging, start)
        limit = self._limit(state, param, averaging, start)
        declared = _unit(state, param)
        if limit is not None and declared is not None and declared != limit.unit:
            factor = self.unit_factor(declared, limit.unit) if self.unit_factor else None
            if factor is None:
                limit = None  # not comparable: reported by the limits check, never guessed
            elif window.mean is not None and window.maximum is not None:
                window = dataclasses.replace(
                    window, mean=window.mean * factor, maximum=window.maximum * factor
                )
        verdict = self._verdict(window, limit)
        key = (averaging, start)
        previous = series.results.get(key)
        if previous is not None and previous.verdict == verdict and previous.window == window:
            return
        evaluation = Evaluation(window, limit, verdict)
        series.results[key] = evaluation
        out.append(WindowEvaluated(state.station.id, param, window, verdict.value))
        if limit is None:
            return
        sid = state.station.id
        for kind, trigger in ((Kind.EXCEEDANCE, Verdict.EXCEED), (Kind.WARNING, Verdict.WARN)):
            if kind not in self.config.enabled:
                continue
            if verdict is trigger and (previous is None or previous.verdict is not trigger):
                evidence = self._evidence(state, evaluation)
                self._raise(out, sid, param, kind, window.end, window.mean, evidence)
            elif verdict is trigger and previous is not None and previous.window != window:
                self._revise(out, sid, param, kind, window.end, window.mean, evaluation, state)
            if not self._active_after(series, trigger):
                self._clear(out, sid, param, kind, window.end, window.mean, {})
        if Kind.EXCEEDANCE in self.config.enabled:
            self._episodes(state, param, series, averaging, out)

    def _verdict(self, window: Window, limit: LimitLike | None) -> Verdict:
        if limit is None:
            return Verdict.NO_LIMIT
        if window.mean is None:
            return Verdict.INSUFFICIENT
        if limit.exceeds(window.mean):
            return Verdict.EXCEED
        is_ceiling = limit.maximum is not None and limit.minimum is None
        if is_ceiling and window.mean > self.config.warning_share * limit.maximum:  # type: ignore[operator]
            return Verdict.WARN
        return Verdict.OK

    def _clear_level_met(self, evaluation: Evaluation, trigger: Verdict) -> bool:
        limit, mean = evaluation.limit, evaluation.window.mean
        assert limit is not None and mean is not None
        ratio = self.config.clear_ratio
        if limit.maximum is None or limit.minimum is not None:
            return not limit.exceeds(mean)  # a range: back inside it
        level = (
            limit.maximum
            if trigger is Verdict.EXCEED
            else self.config.warning_share * limit.maximum
        )
        return mean <= ratio * level

    def _active_after(self, series: Series, trigger: Verdict) -> bool:
        """Is a condition of this trigger still on, per averaging period, given hysteresis?"""
        by_averaging: dict[str, list[Evaluation]] = {}
        for (averaging, _), evaluation in series.results.items():
            by_averaging.setdefault(averaging, []).append(evaluation)
        for evaluations in by_averaging.values():
            evaluations.sort(key=lambda e: e.window.start)
            last = max((i for i, e in enumerate(evaluations) if e.verdict is trigger), default=None)
            if last is None:
                continue
            run_start: datetime | None = None
            run_end: datetime | None = None
            superseded = False
            for evaluation in evaluations[last + 1 :]:
                if evaluation.verdict in (Verdict.INSUFFICIENT, Verdict.NO_LIMIT):
                    continue  # no data decides nothing
                if trigger is Verdict.WARN and evaluation.verdict is Verdict.EXCEED:
                    superseded = True  # the exceedance alert takes over
                    break
                if self._clear_level_met(evaluation, trigger):
                    run_start = run_start or evaluation.window.start
                    run_end = evaluation.window.end
                else:
                    run_start = run_end = None  # between the clear level and the limit
            if superseded:
                continue
            if run_start is None or run_end is None or run_end - run_start < self.config.min_clear:
                return True
        return False

    def _evidence(self, state: StationState, evaluation: Evaluation) -> dict[str, Any]:
        window, limit = evaluation.window, evaluation.limit
        assert limit is not None and window.mean is not None
        multiple = limit.multiple(window.mean)
        band = self.band_for(limit.regulation_kind, multiple) if multiple is not None else None
        return {
            "averaging": window.averaging,
            "window_start": _iso(window.start),
            "window_end": _iso(window.end),
            "value": round(window.mean, 6),
            "unit": limit.unit,
            "limit": limit.maximum,
            "limit_min": limit.minimum,
            "multiple": None if multiple is None else round(multiple, 4),
            "excess": round(limit.excess(window.mean), 6),
            "band": band.label if band else None,
            "regulation": limit.regulation_id,
            "column": limit.column,
            "formula": limit.formula,
            "formula_vi": limit.formula_vi,
            "limit_source": limit.source,
            "unverified": limit.unverified,
            "completeness": round(window.completeness, 4),
        }

    def _episodes(
        self, state: StationState, param: str, series: Series, averaging: str, out: list[Output]
    ) -> None:
        evaluations = sorted(
            (e for (a, _), e in series.results.items() if a == averaging),
            key=lambda e: e.window.start,
        )
        if not evaluations:
            return
        latest_start = evaluations[-1].window.start
        runs: list[list[Evaluation]] = []
        for evaluation in evaluations:
            if evaluation.verdict is not Verdict.EXCEED:
                continue
            if runs and _adjacent(runs[-1][-1].window, evaluation.window):
                runs[-1].append(evaluation)
            else:
                runs.append([evaluation])
        fresh: dict[datetime, Episode] = {}
        for run in runs:
            episode = self._episode(state, param, averaging, run, latest_start)
            if run[0] is evaluations[0]:
                episode = dataclasses.replace(episode, continues_earlier=True)
            fresh[episode.start] = episode
        old = series.episodes.get(averaging, {})
        upserts = tuple(e for s, e in fresh.items() if old.get(s) != e)
        oldest_kept = evaluations[0].window.start
        deletes = tuple(e.key for s, e in old.items() if s not in fresh and s >= oldest_kept)
        series.episodes[averaging] = {**{s: e for s, e in old.items() if s < oldest_kept}, **fresh}
        if upserts or deletes:
            out.append(EpisodeChange(upserts, deletes))

    def _episode(
        self,
        state: StationState,
        param: str,
        averaging: str,
        run: list[Evaluation],
        latest_start: datetime,
    ) -> Episode:
        means = [e.window.mean for e in run if e.window.mean is not None]
        worst = max(
            run,
            key=lambda e: (
                e.limit.excess(e.window.mean) if e.limit and e.window.mean is not None else 0.0
            ),
        )
        limit = worst.limit
        assert limit is not None and worst.window.mean is not None
        maximum = max(means)
        multiple = limit.multiple(maximum) if limit.minimum is None else None
        band = self.band_for(limit.regulation_kind, multiple) if multiple is not None else None
        return Episode(
            station_id=state.station.id,
            param=param,
            averaging=averaging,
            start=run[0].window.start,
            end=run[-1].window.end,
            windows=len(run),
            maximum=maximum if limit.minimum is None else worst.window.mean,
            mean=math.fsum(means) / len(means),
            limit=limit.maximum if limit.minimum is None else None,
            limit_text=_limit_text(limit),
            unit=limit.unit,
            multiple=None if multiple is None else round(multiple, 4),
            band=band.label if band else None,
            completeness=round(math.fsum(e.window.completeness for e in run) / len(run), 4),
            regulation_id=limit.regulation_id,
            column=limit.column,
            formula=limit.formula,
            unverified=limit.unverified,
            ongoing=run[-1].window.start == latest_start,
        )

    # --- conditions ----------------------------------------------------------------------------

    def _series(self, state: StationState, param: str) -> Series:
        series = state.series.get(param)
        if series is None:
            series = state.series[param] = Series(
                SeriesWindows(
                    state.station.cadence_s, self.config.local_tz, self.config.min_completeness
                )
            )
        return series

    def _silence_limit(self, station: Station) -> timedelta:
        return timedelta(seconds=station.cadence_s * self.config.data_loss_cadences)

    def _raise(
        self,
        out: list[Output],
        station_id: str,
        param: str,
        kind: Kind,
        at: datetime,
        value: float | None,
        details: dict[str, Any],
        *,
        repeat: bool = True,
    ) -> None:
        if kind not in self.config.enabled:
            return
        key = (station_id, param, kind)
        if key in self.active and not repeat:
            return
        change = Change.UPDATE if key in self.active else Change.RAISE
        self.active.add(key)
        out.append(Transition(change, kind, station_id, param, at, value, details))

    def _revise(
        self,
        out: list[Output],
        station_id: str,
        param: str,
        kind: Kind,
        at: datetime,
        value: float | None,
        evaluation: Evaluation,
        state: StationState,
    ) -> None:
        if (station_id, param, kind) not in self.active:
            return
        evidence = self._evidence(state, evaluation)
        out.append(Transition(Change.REVISE, kind, station_id, param, at, value, evidence))

    def _clear(
        self,
        out: list[Output],
        station_id: str,
        param: str,
        kind: Kind,
        at: datetime,
        value: float | None,
        details: dict[str, Any],
    ) -> None:
        key = (station_id, param, kind)
        if key not in self.active:
            return
        self.active.discard(key)
        out.append(Transition(Change.CLEAR, kind, station_id, param, at, value, details))


def catalog_unit_factor(catalog: Catalog) -> Callable[[str, str], float | None]:
    def factor(from_unit: str, to_unit: str) -> float | None:
        source, target = catalog.unit(from_unit), catalog.unit(to_unit)
        if source is None or target is None:
            return None
        return catalog.conversion_factor(source, target)

    return factor


def _adjacent(previous: Window, following: Window) -> bool:
    if previous.averaging == EIGHT_HOURS:
        return following.start - previous.start == HOUR
    return following.start == previous.end


def _limit_text(limit: LimitLike) -> str:
    if limit.minimum is not None and limit.maximum is not None:
        return f"{limit.minimum:g}–{limit.maximum:g} {limit.unit}"
    if limit.maximum is not None:
        return f"≤ {limit.maximum:g} {limit.unit}"
    return f"≥ {limit.minimum:g} {limit.unit}"


def _unit(state: StationState, param: str) -> str | None:
    declared = state.station.parameters.get(param)
    return declared.unit.id if declared else None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
