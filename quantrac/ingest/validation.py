"""Validate a parsed payload against the registry and catalog. Pure: the clock is an argument.

Good readings of a message are kept when others in it are rejected; each rejection names the
field, the value and the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from quantrac.core.catalog import Catalog
from quantrac.core.contract import STATUS_BY_CODE, ParsedPayload, Problem, Reading, Reason, Status
from quantrac.core.registry import Registry, Station
from quantrac.ingest.clock_hint import LOCAL_MARKED_UTC, utc_offset_hint
from quantrac.ingest.storable import describe


@dataclass(frozen=True, slots=True)
class TimeLimits:
    future_margin: timedelta
    retention: timedelta


@dataclass(slots=True)
class Validated:
    station: Station | None
    readings: list[Reading] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    duplicates: int = 0  # exact repeats inside the message, dropped without loss


def _short(value: object) -> str:
    text = describe(value)
    return text if len(text) <= 120 else text[:120] + "…"


def resolve_station(
    parsed: ParsedPayload, topic_station: str | None, registry: Registry
) -> tuple[Station | None, Problem | None]:
    claimed = parsed.station if parsed.station is not None else topic_station
    if claimed is None:
        return None, Problem(Reason.PAYLOAD_SCHEMA, "station", "", "no station named")
    if topic_station is not None and parsed.station is not None and parsed.station != topic_station:
        return None, Problem(
            Reason.STATION_MISMATCH,
            "station",
            _short(parsed.station),
            f"payload names station {parsed.station!r} but was published on "
            f"the topic of station {topic_station!r}",
        )
    station = registry.get(claimed)
    if station is None:
        return None, Problem(
            Reason.STATION_UNKNOWN,
            "station",
            _short(claimed),
            f"station {claimed!r} is not in the registry",
        )
    return station, None


def validate(
    parsed: ParsedPayload,
    *,
    topic_station: str | None,
    registry: Registry,
    catalog: Catalog,
    now: datetime,
    limits: TimeLimits,
) -> Validated:
    result = Validated(station=None, problems=list(parsed.problems))
    if not parsed.readings:
        if not result.problems:
            result.problems.append(Problem(Reason.PAYLOAD_EMPTY, "readings", "", "no readings"))
        station, _ = resolve_station(parsed, topic_station, registry)
        result.station = station
        return result

    station, problem = resolve_station(parsed, topic_station, registry)
    if problem is not None:
        result.problems.append(problem)
        return result
    assert station is not None
    result.station = station

    oldest = now - limits.retention
    newest = now + limits.future_margin
    seen: dict[tuple[str, datetime], tuple[float | None, int]] = {}

    for raw in parsed.readings:
        where = raw.field
        param = catalog.parameter(raw.param)
        if param is None:
            result.problems.append(
                Problem(
                    Reason.PARAM_UNKNOWN,
                    f"{where}.param",
                    _short(raw.param),
                    "not a known parameter code",
                )
            )
            continue
        declared = station.parameters.get(param.code)
        if declared is None:
            result.problems.append(
                Problem(
                    Reason.PARAM_NOT_DECLARED,
                    f"{where}.param",
                    _short(raw.param),
                    f"{param.code} is not declared for station {station.id} in the registry",
                    {"param": param.code, "station": station.id},
                )
            )
            continue
        unit = catalog.unit(raw.unit) if isinstance(raw.unit, str) else None
        if unit is None:
            result.problems.append(
                Problem(
                    Reason.UNIT_UNKNOWN,
                    f"{where}.unit",
                    _short(raw.unit),
                    f"not a known unit; {param.code} is registered in {declared.unit.id}: "
                    f'write "{declared.unit.id}"',
                    {"param": param.code, "declared": declared.unit.id},
                )
            )
            continue
        factor = catalog.conversion_factor(unit, declared.unit)
        if factor is None:
            result.problems.append(
                Problem(
                    Reason.UNIT_MISMATCH,
                    f"{where}.unit",
                    _short(raw.unit),
                    f"{param.code} is declared in {declared.unit.id}; "
                    f'{unit.id} cannot be converted to it exactly: send "{declared.unit.id}"',
                    {"param": param.code, "declared": declared.unit.id},
                )
            )
            continue
        value = raw.value
        status = STATUS_BY_CODE.get(raw.status) if isinstance(raw.status, str) else None
        converted: float | None
        if value is None and status in (Status.CALIBRATING, Status.FAULT):
            converted = None  # the instrument's status alone, stored without a value
        elif value is None:
            result.problems.append(
                Problem(
                    Reason.VALUE_NOT_NUMBER,
                    f"{where}.value",
                    _short(value),
                    'value is empty; an empty value is accepted only with status "01" '
                    '(calibration) or "02" (fault)',
                )
            )
            continue
        elif isinstance(value, bool) or not isinstance(value, int | float):
            result.problems.append(
                Problem(
                    Reason.VALUE_NOT_NUMBER,
                    f"{where}.value",
                    _short(value),
                    "value must be a number, e.g. 12.5",
                )
            )
            continue
        else:
            try:
                converted = float(value) * factor
            except OverflowError:  # a JSON integer beyond any double
                converted = math.inf
        if converted is not None and not math.isfinite(converted):
            result.problems.append(
                Problem(
                    Reason.VALUE_NOT_FINITE,
                    f"{where}.value",
                    _short(value),
                    "value must be finite in the declared unit",
                )
            )
            continue
        if status is None:
            result.problems.append(
                Problem(
                    Reason.STATUS_INVALID,
                    f"{where}.status",
                    _short(raw.status),
                    'status must be "00", "01" or "02"',
                )
            )
            continue
        moment = raw.time
        if not isinstance(moment, datetime):
            result.problems.append(
                Problem(
                    Reason.TIME_INVALID,
                    f"{where}.time",
                    _short(moment),
                    "time did not parse; expected ISO 8601 with an offset, "
                    "e.g. 2026-12-02T14:05:00+07:00",
                )
            )
            continue
        if moment > newest:
            hint = utc_offset_hint(moment, now)
            detail = (
                f"more than {int(limits.future_margin.total_seconds())} s ahead of the server "
                f"clock ({now.isoformat()}); check the datalogger's clock"
            )
            if hint == LOCAL_MARKED_UTC:
                detail += "; exactly 7 h ahead: local time marked as UTC, write +07:00"
            params = {"seconds": str(round((moment - now).total_seconds()))}
            if hint:
                params["clock_hint"] = hint
            result.problems.append(
                Problem(Reason.TIME_IN_FUTURE, f"{where}.time", moment.isoformat(), detail, params)
            )
            continue
        if moment < oldest:
            result.problems.append(
                Problem(
                    Reason.TIME_TOO_OLD,
                    f"{where}.time",
                    moment.isoformat(),
                    f"older than the retention of {limits.retention.days} days",
                    {"days": str(limits.retention.days)},
                )
            )
            continue
        key = (param.code, moment)
        previous = seen.get(key)
        if previous is not None:
            if previous == (converted, int(status)):
                result.duplicates += 1
            else:
                result.problems.append(
                    Problem(
                        Reason.DUPLICATE_IN_MESSAGE,
                        where,
                        _short(value),
                        f"a different {param.code} value for {moment.isoformat()} appears earlier "
                        "in the same message; the first one was kept",
                        {"param": param.code, "time": moment.isoformat()},
                    )
                )
            continue
        seen[key] = (converted, int(status))
        result.readings.append(Reading(station.id, param.code, moment, converted, status))
    return result
