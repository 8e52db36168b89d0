"""The exceedance history of a station or a facility over a period: what an inspector needs.

- every exceedance episode the alert engine recorded (``exceedance_episodes``), with the
  effective limit it was compared with: regulation and version, column, formula, the
  coefficients (from ``station_limits``) and the unverified mark;
- data completeness per parameter and Vietnamese day (see ``completeness.py``);
- calibration (status 01) and device-fault (status 02) periods: runs of consecutive readings
  with the same status, found in SQL (gaps and islands) over the few readings whose status is
  not 00;
- summaries per parameter and per month, with the hours exceeded.

Hours exceeded: for each station and parameter, the time covered by at least one exceeding
window (1 h, 8 h and 24 h windows overlap; they are counted once), clipped to the period.
Episodes are counted in the month they start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg

from quantrac.alerts.choices import DesignChoice, design_choices
from quantrac.alerts.config import EngineConfig
from quantrac.alerts.maintenance import MaintenanceWindow
from quantrac.alerts.station_log import windows_between
from quantrac.alerts.store import episodes_between
from quantrac.core.i18n import TranslatedError
from quantrac.core.registry import Registry, Station
from quantrac.regulations.limits import EffectiveLimit, Factor, RegimePeriod, station_limits
from quantrac.regulations.tables import PenaltyBand, RegulationCatalog
from quantrac.reports.completeness import (
    CompletenessReport,
    Progress,
    ceil_hour,
    completeness_report,
    floor_hour,
    local_day,
    local_months,
    period_steps,
)

STATUS_KINDS = {1: "calibration", 2: "fault"}


class ReportError(TranslatedError):
    """The request cannot give a report (unknown station or facility, empty period)."""


@dataclass(frozen=True, slots=True)
class ReportEpisode:
    """A stored episode (``quantrac.alerts.store.EpisodeRow``, read by ``episodes_between``)
    with what the report adds: the limit's coefficients and source, the daily discharge and the
    Decree 45/2022 band."""

    station_id: str
    param: str
    averaging: str
    start: datetime
    end: datetime
    windows: int
    maximum: float
    mean: float
    limit_value: float | None
    limit_text: str
    unit: str
    multiple: float | None
    band: str | None
    completeness: float
    regulation_id: str
    column: str | None
    formula: str
    unverified: bool
    ongoing: bool
    factors: tuple[Factor, ...] = ()  # the coefficients of the limit in force at the start
    limit_source: str | None = None  # "regulation" | "permit" | None (limit no longer known)
    # Decree 45/2022 fines are tiered by the daily wastewater volume: the mean flow of the
    # episode's hours, per day, where the station measures flow (None: it does not).
    discharge_m3_day: float | None = None
    penalty: PenaltyBand | None = None  # the band of the multiple, with its article

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class StatusPeriod:
    station_id: str
    param: str
    kind: str  # "calibration" (status 01) | "fault" (status 02)
    start: datetime  # the first reading's measured time
    end: datetime  # the last reading's measured time + one cadence
    readings: int

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class ParamSummary:
    station_id: str
    param: str
    unit: str
    episodes: int
    duration: timedelta  # sum of the episodes' durations
    hours_exceeded: float  # union of the exceeding windows, within the period
    maximum: float | None
    worst_multiple: float | None
    worst_band: str | None
    completeness: float | None  # valid readings / expected over the period


@dataclass(frozen=True, slots=True)
class MonthSummary:
    month: str  # "2026-10", Vietnamese calendar month
    episodes: int  # episodes starting in the month
    hours_exceeded: float
    worst_multiple: float | None
    params: tuple[str, ...]  # parameters with exceeded hours in the month
    completeness: float | None  # every station and parameter together


@dataclass(frozen=True, slots=True)
class LimitInfo:
    station_id: str
    param: str
    averaging: str
    text: str  # "≤ 75 mg/L"
    formula: str
    regulation_id: str
    column: str | None
    factors: tuple[Factor, ...]
    unverified: bool
    source: str  # "regulation" | "permit"
    permit_source: str | None
    valid_from: date | None
    valid_to: date | None  # first day no longer valid
    formula_vi: str = ""  # the formula in Vietnamese (words and decimal comma)

    def formula_text(self, lang: str) -> str:
        return self.formula_vi if lang == "vi" and self.formula_vi else self.formula


@dataclass(frozen=True, slots=True)
class StationInfo:
    id: str
    name: str
    kind: str
    facility: str
    province: str
    cadence_s: int
    regulation_id: str | None
    column: str | None
    limits: tuple[LimitInfo, ...]
    problems: tuple[str, ...]
    # Which regulation applied on the days of the period, and why (the facility's regime).
    regime: tuple[RegimePeriod, ...] = ()
    permit: str | None = None  # the environmental permit's citation
    aqi_publishable: bool | None = None  # ambient stations (Circular 10/2021 Art. 29)


@dataclass
class ExceedanceReport:
    start: datetime
    end: datetime
    generated_at: datetime
    stations: list[StationInfo]
    episodes: list[ReportEpisode]
    completeness: CompletenessReport
    status_periods: list[StatusPeriod]
    by_parameter: list[ParamSummary] = field(default_factory=list)
    by_month: list[MonthSummary] = field(default_factory=list)
    facility: str | None = None
    # Maintenance, repair, replacement and calibration entries of the station log.
    station_log: list[MaintenanceWindow] = field(default_factory=list)
    # Sealed reports (closed periods) carry the digest of the readings they were built from.
    readings_sha256: str | None = None
    readings_count: int | None = None
    # The project's configurable choices the report was computed with (not law).
    design_choices: list[DesignChoice] = field(default_factory=list)
    exported_by: str | None = None  # who asked for it: "Trần Thị Bình (tt.binh)"

    @property
    def title_target(self) -> str:
        if self.facility:
            return self.facility
        return ", ".join(f"{s.name} ({s.id})" for s in self.stations)


# --- choosing stations -----------------------------------------------------------------------


def stations_for(
    registry: Registry, station: str | None = None, facility: str | None = None
) -> list[Station]:
    """One station by id, or every station of a facility (by its name, as in the registry)."""
    if (station is None) == (facility is None):
        raise ReportError("error.report.both")
    if station is not None:
        found = registry.get(station)
        if found is None:
            raise ReportError("error.report.station", station=repr(station))
        return [found]
    chosen = [s for s in registry.stations.values() if s.facility == facility]
    if not chosen:
        raise ReportError("error.report.facility", facility=repr(facility))
    return sorted(chosen, key=lambda s: s.id)


# --- pure parts ------------------------------------------------------------------------------


def _limit_info(limit: EffectiveLimit) -> LimitInfo:
    return LimitInfo(
        station_id=limit.station_id,
        param=limit.param,
        averaging=limit.averaging,
        text=limit.bound_text(),
        formula=limit.formula,
        regulation_id=limit.regulation_id,
        column=limit.column,
        factors=limit.factors,
        unverified=limit.unverified,
        source=limit.source,
        permit_source=limit.provenance.source if limit.source == "permit" else None,
        valid_from=limit.valid_from,
        valid_to=limit.valid_to,
        formula_vi=limit.formula_vi,
    )


def station_info(
    station: Station, regulations: RegulationCatalog, start: datetime, end: datetime
) -> StationInfo:
    """The station and the limits that applied on some day of the period."""
    limits = station_limits(station, regulations)
    first, last = local_day(start), local_day(end - timedelta(microseconds=1))
    order = list(station.parameters)
    chosen = [
        lim
        for lim in limits.limits
        if (lim.valid_from is None or lim.valid_from <= last)
        and (lim.valid_to is None or lim.valid_to > first)
    ]
    chosen.sort(
        key=lambda lim: (
            order.index(lim.param) if lim.param in order else len(order),
            lim.param,
            ("1h", "8h", "24h", "year").index(lim.averaging),
            lim.source,
            lim.valid_from or date.min,
        )
    )
    ref = station.regulation
    return StationInfo(
        id=station.id,
        name=station.name,
        kind=station.kind,
        facility=station.facility,
        province=station.province,
        cadence_s=station.cadence_s,
        regulation_id=ref.id if ref else None,
        column=ref.column if ref else None,
        limits=tuple(_limit_info(lim) for lim in chosen),
        problems=tuple(limits.problems),
        regime=tuple(
            p
            for p in limits.regime
            if (p.valid_from is None or p.valid_from <= last)
            and (p.valid_to is None or p.valid_to > first)
        ),
        permit=station.permit.citation() if station.permit else None,
        aqi_publishable=station.aqi_publishable,
    )


def union_hours(
    intervals: list[tuple[datetime, datetime]], start: datetime, end: datetime
) -> float:
    """Hours covered by at least one interval, within [start, end)."""
    clipped = sorted((max(a, start), min(b, end)) for a, b in intervals if b > start and a < end)
    total = timedelta()
    current: tuple[datetime, datetime] | None = None
    for a, b in clipped:
        if current is None or a > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = (a, b)
        else:
            current = (current[0], max(current[1], b))
    if current is not None:
        total += current[1] - current[0]
    return total.total_seconds() / 3600


def _worst(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def summarise(report: ExceedanceReport) -> None:
    """Fill in the summaries per parameter and per month (pure)."""
    start, end = report.start, report.end
    by_key: dict[tuple[str, str], list[ReportEpisode]] = {}
    for e in report.episodes:
        by_key.setdefault((e.station_id, e.param), []).append(e)
    report.by_parameter = []
    for info in report.stations:
        station = next(s for s in report.completeness.stations if s.id == info.id)
        for param, declared in station.parameters.items():
            rows = by_key.get((info.id, param), [])
            total = report.completeness.total(info.id, param)
            worst = max(
                (e for e in rows if e.multiple is not None),
                key=lambda e: e.multiple or 0.0,
                default=None,
            )
            report.by_parameter.append(
                ParamSummary(
                    station_id=info.id,
                    param=param,
                    unit=rows[0].unit if rows else declared.unit.id,
                    episodes=len(rows),
                    duration=sum((e.duration for e in rows), timedelta()),
                    hours_exceeded=union_hours([(e.start, e.end) for e in rows], start, end),
                    maximum=_worst([e.maximum for e in rows]),
                    worst_multiple=worst.multiple if worst else None,
                    worst_band=worst.band if worst else None,
                    completeness=total.share if total else None,
                )
            )
    report.by_month = []
    for label, lo, hi in local_months(start, end):
        starting = [e for e in report.episodes if lo <= e.start < hi]
        hours = 0.0
        params: list[str] = []
        for (_, param), rows in by_key.items():
            h = union_hours([(e.start, e.end) for e in rows], lo, hi)
            if h > 0:
                hours += h
                if param not in params:
                    params.append(param)
        touching = [e for e in report.episodes if e.start < hi and e.end > lo]
        report.by_month.append(
            MonthSummary(
                month=label,
                episodes=len(starting),
                hours_exceeded=hours,
                worst_multiple=_worst([e.multiple for e in touching]),
                params=tuple(params),
                completeness=report.completeness.share_between(lo, hi),
            )
        )


# --- queries ---------------------------------------------------------------------------------

# Gaps and islands over the readings whose status is not 00 (the partial index
# readings_not_valid keeps this to those few rows): a new period starts when the status
# changes or when more than 1.5 cadences pass since the previous such reading of the parameter.
_STATUS_PERIODS = """
    WITH s(station_id, cadence_s) AS (
        SELECT * FROM unnest(%(stations)s::text[], %(cadences)s::integer[])
    ),
    marked AS (
        SELECT r.station_id, r.param, r.status, r.measured_at, s.cadence_s,
               CASE WHEN lag(r.status) OVER w = r.status
                     AND r.measured_at - lag(r.measured_at) OVER w
                         <= make_interval(secs => s.cadence_s * 1.5)
                    THEN 0 ELSE 1 END AS starts
        FROM readings r JOIN s ON s.station_id = r.station_id
        WHERE r.station_id = ANY(%(stations)s) AND r.status <> 0
          AND r.measured_at >= %(start)s AND r.measured_at < %(end)s
        WINDOW w AS (PARTITION BY r.station_id, r.param ORDER BY r.measured_at)
    ),
    numbered AS (
        SELECT *, sum(starts) OVER (PARTITION BY station_id, param ORDER BY measured_at) AS run
        FROM marked
    )
    SELECT station_id, param, status, min(measured_at), max(measured_at), count(*)::bigint,
           min(cadence_s)
    FROM numbered
    GROUP BY station_id, param, status, run
    ORDER BY min(measured_at), station_id, param
"""


async def fetch_episodes(
    conn: psycopg.AsyncConnection,
    stations: list[Station],
    regulations: RegulationCatalog,
    start: datetime,
    end: datetime,
) -> list[ReportEpisode]:
    stored = await episodes_between(conn, [s.id for s in stations], start, end)
    limits = {s.id: station_limits(s, regulations) for s in stations}
    rows = []
    for r in stored:
        in_force = [
            lim
            for lim in limits[r.station_id].in_force(r.param, r.start_at)
            if lim.averaging == r.averaging and lim.regulation_id == r.regulation_id
        ]
        limit = in_force[0] if in_force else None
        rows.append(
            ReportEpisode(
                station_id=r.station_id,
                param=r.param,
                averaging=r.averaging,
                start=r.start_at,
                end=r.end_at,
                windows=r.windows,
                maximum=r.maximum,
                mean=r.mean,
                limit_value=r.limit_value,
                limit_text=r.limit_text,
                unit=r.unit,
                multiple=r.multiple,
                band=r.band,
                completeness=r.completeness,
                regulation_id=r.regulation_id,
                column=r.column_name,
                formula=r.formula,
                unverified=r.unverified,
                ongoing=r.ongoing,
                factors=limit.factors if limit else (),
                limit_source=limit.source if limit else None,
            )
        )
    return rows


# Flow units of the catalog and their factor to m³/day.
FLOW_PER_DAY = {"m3/h": 24.0, "m3/d": 1.0, "m3/day": 1.0, "m3/s": 86400.0, "L/s": 86.4}
FLOW_PARAMS = ("Flow", "FLOW", "Q")

_MEAN_FLOW = """
    SELECT sum(mean * n) / nullif(sum(n), 0) FROM readings_hourly
    WHERE station_id = %s AND param = %s AND hour >= %s AND hour < %s
"""


def flow_param(station: Station) -> tuple[str, float] | None:
    """The station's flow parameter and its factor to m³/day, if it measures flow."""
    for code in FLOW_PARAMS:
        declared = station.parameters.get(code)
        if declared is not None and declared.unit.id in FLOW_PER_DAY:
            return code, FLOW_PER_DAY[declared.unit.id]
    return None


async def with_evidence(
    conn: psycopg.AsyncConnection,
    stations: list[Station],
    regulations: RegulationCatalog,
    episodes: list[ReportEpisode],
) -> list[ReportEpisode]:
    """Each episode with its Decree 45/2022 band (article, fines) and its daily discharge."""
    by_id = {s.id: s for s in stations}
    out = []
    for e in episodes:
        station = by_id[e.station_id]
        penalty = regulations.band_for(station.kind, e.multiple) if e.multiple is not None else None
        volume = None
        flow = flow_param(station) if station.kind == "wastewater" else None
        if flow is not None:
            # Whole hours: an episode of one window still has its hour of flow.
            lo = e.start.replace(minute=0, second=0, microsecond=0)
            hi = max(e.end, lo + timedelta(hours=1))
            row = await (await conn.execute(_MEAN_FLOW, [station.id, flow[0], lo, hi])).fetchone()
            if row is not None and row[0] is not None:
                volume = round(float(row[0]) * flow[1], 1)
        out.append(dataclasses.replace(e, discharge_m3_day=volume, penalty=penalty))
    return out


async def fetch_status_periods(
    conn: psycopg.AsyncConnection, stations: list[Station], start: datetime, end: datetime
) -> list[StatusPeriod]:
    cur = await conn.execute(
        _STATUS_PERIODS,
        {
            "stations": [s.id for s in stations],
            "cadences": [s.cadence_s for s in stations],
            "start": start,
            "end": end,
        },
    )
    return [
        StatusPeriod(
            station_id=r[0],
            param=r[1],
            kind=STATUS_KINDS.get(int(r[2]), str(r[2])),
            start=r[3],
            end=r[4] + timedelta(seconds=int(r[6])),
            readings=int(r[5]),
        )
        for r in await cur.fetchall()
    ]


async def fetch_station_log(
    conn: psycopg.AsyncConnection, station_ids: list[str], start: datetime, end: datetime
) -> list[MaintenanceWindow]:
    """The station log's entries in the period (none before the log's table exists)."""
    cur = await conn.execute("SELECT to_regclass('station_log') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return []
    return await windows_between(conn, station_ids, start, end)


def holdoff_entries(
    windows: list[MaintenanceWindow], holdoff: timedelta, start: datetime, end: datetime
) -> list[MaintenanceWindow]:
    """The calibration hold-off after each calibration window, as entries of kind ``holdoff``
    (the calibration's id, parameters, reason and author) that overlap [start, end)."""
    if holdoff <= timedelta(0):
        return []
    return [
        dataclasses.replace(w, kind="holdoff", start=w.end, end=w.end + holdoff)
        for w in windows
        if w.kind == "calibration" and w.end < end and w.end + holdoff > start
    ]


async def exceedance_report(
    conn: psycopg.AsyncConnection,
    registry: Registry,
    regulations: RegulationCatalog,
    station_ids: list[str],
    start: datetime,
    end: datetime,
    *,
    progress: Progress | None = None,
    now: datetime | None = None,
    facility: str | None = None,
    engine_config: EngineConfig | None = None,
    exported_by: str | None = None,
    holdoff: timedelta = timedelta(0),
) -> ExceedanceReport:
    """The exceedance history of ``station_ids`` over [start, end) (aware times).

    ``holdoff`` (setting ``alerts_holdoff_minutes``): the station log also lists the hold-off
    after each calibration, and the design choices say it is one.

    ``engine_config`` (config/alerts.yaml; default: its built-in defaults) gives the design
    choices the report lists as such.

    ``progress(done, total, label)`` is called after each month of completeness counts and
    after the episodes and the calibration and fault periods.
    """
    if end <= start:
        raise ReportError("error.report.order")
    stations = []
    for station_id in station_ids:
        station = registry.get(station_id)
        if station is None:
            raise ReportError("error.report.station", station=repr(station_id))
        stations.append(station)
    if not stations:
        raise ReportError("error.report.none")
    now = now or datetime.now(UTC)
    steps = len(period_steps(start, end)) + 2
    episodes = await with_evidence(
        conn, stations, regulations, await fetch_episodes(conn, stations, regulations, start, end)
    )
    if progress is not None:
        progress(1, steps, "episodes")
    completeness = await completeness_report(
        conn,
        stations,
        start,
        end,
        now=now,
        progress=progress,
        steps_before=1,
        steps_total=steps,
    )
    periods = await fetch_status_periods(conn, stations, floor_hour(start), ceil_hour(end))
    if progress is not None:
        progress(steps, steps, "calibration and faults")
    report = ExceedanceReport(
        start=start,
        end=end,
        generated_at=now,
        stations=[station_info(s, regulations, start, end) for s in stations],
        episodes=episodes,
        completeness=completeness,
        status_periods=periods,
        facility=facility,
        design_choices=design_choices(engine_config or EngineConfig(), regulations),
        station_log=await fetch_station_log(conn, [s.id for s in stations], start, end),
        exported_by=exported_by,
    )
    if holdoff > timedelta(0):
        earlier = await fetch_station_log(conn, [s.id for s in stations], start - holdoff, end)
        report.station_log = sorted(
            [*report.station_log, *holdoff_entries(earlier, holdoff, start, end)],
            key=lambda w: (w.start, w.id, w.kind),
        )
        minutes = f"{holdoff.total_seconds() / 60:g} min"
        where = "alerts_holdoff_minutes (QUANTRAC_ALERTS_HOLDOFF_MINUTES)"
        report.design_choices = [*report.design_choices, DesignChoice("holdoff", minutes, where)]
    summarise(report)
    return report
