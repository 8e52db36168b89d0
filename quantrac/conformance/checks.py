"""Vendor conformance check: does a station's traffic meet the message contract? Pure, no I/O.

``check_station`` takes what was captured (received time, MQTT topic or file name, payload
bytes) and returns a verdict per criterion, each failure with a count, an example and what to
fix. Parsing and validation are ingest's own (``parse_payload``, ``validate``, ``tt10``): a
station passes here exactly when ingest would store its data.

User-facing words are translation keys (``check.*`` in config/messages/check.yaml) with
parameters; the renderers translate them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from itertools import pairwise
from typing import Any

from quantrac.core.catalog import Catalog
from quantrac.core.contract import Problem, Reason, Status, station_from_topic
from quantrac.core.i18n import translate_ack
from quantrac.core.registry import Registry, Station
from quantrac.ingest import tt10
from quantrac.ingest.clock_hint import utc_offset_hint
from quantrac.ingest.payloads import excerpt, parse_payload
from quantrac.ingest.validation import TimeLimits, validate

CRITERIA = (
    "syntax",
    "parameters",
    "units",
    "status",
    "cadence",
    "clock",
    "duplicates",
    "late",
    "values",
    "file_names",
)
PASS, WARN, FAIL, NOT_APPLICABLE = "pass", "warn", "fail", "n/a"
MQTT, FILE = "mqtt", "file"

# Parameters each kind of station must transmit. Wastewater and stack sets follow NĐ 08/2022
# Art. 97/98 and Appendices XXVIII/XXIX as summarised in ../shared/docs/regulations.md §2.1
# (confidence L-M there); ambient air is the VN_AQI set. A tuple means "one of": domestic
# wastewater (QCVN 14) has BOD5 and no COD.
REQUIRED_PARAMETERS: dict[str, tuple[tuple[str, ...], ...]] = {
    "wastewater": (("Flow",), ("Temp",), ("pH",), ("TSS",), ("COD", "BOD5"), ("NH4",)),
    "emission": (
        ("Flow",),
        ("Temp",),
        ("P",),
        ("O2",),
        ("PM",),
        ("SO2",),
        ("NOx",),
        ("CO",),
    ),
    "air": (("PM2,5",), ("PM10",), ("NO2",), ("SO2",), ("CO",), ("O3",)),
}

# Physically possible values (not limits): outside them a sensor or a conversion is broken.
# (low, high, unit) per kind and parameter; converted to the declared unit when exact.
PLAUSIBLE: dict[str, dict[str, tuple[float, float, str]]] = {
    "air": {
        "PM2,5": (0, 1000, "µg/m3"),
        "PM10": (0, 2000, "µg/m3"),
        "TSP": (0, 5000, "µg/m3"),
        "NO2": (0, 2000, "µg/m3"),
        "NO": (0, 2000, "µg/m3"),
        "NOx": (0, 4000, "µg/m3"),
        "SO2": (0, 2000, "µg/m3"),
        "CO": (0, 100_000, "µg/m3"),
        "O3": (0, 1000, "µg/m3"),
        "H2S": (0, 1000, "µg/m3"),
        "Temp": (-10, 50, "°C"),
        "RH": (0, 100, "%"),
        "P": (80, 110, "kPa"),
        "WS": (0, 60, "m/s"),
        "WD": (0, 360, "degree"),
        "SR": (0, 1500, "W/m2"),
        "Rain": (0, 500, "mm"),
    },
    "wastewater": {
        "Flow": (0, 100_000, "m3/h"),
        "Temp": (0, 70, "°C"),
        "pH": (0, 14, "pH"),
        "TSS": (0, 10_000, "mg/L"),
        "COD": (0, 20_000, "mg/L"),
        "BOD5": (0, 10_000, "mg/L"),
        "TOC": (0, 10_000, "mg/L"),
        "NH4": (0, 1000, "mg/L"),
        "NO3": (0, 1000, "mg/L"),
        "TN": (0, 2000, "mg/L"),
        "TP": (0, 500, "mg/L"),
        "PO4": (0, 500, "mg/L"),
        "Color": (0, 5000, "Pt/Co"),
        "DO": (0, 20, "mg/L"),
        "Cl": (0, 50, "mg/L"),
        "Turbidity": (0, 4000, "NTU"),
        "EC": (0, 200_000, "µS/cm"),
        "TDS": (0, 100_000, "mg/L"),
    },
    "emission": {
        "Flow": (0, 5_000_000, "m3/h"),
        "Temp": (0, 1500, "°C"),
        "P": (50, 150, "kPa"),
        "O2": (0, 21, "%"),
        "PM": (0, 10_000, "mg/Nm3"),
        "SO2": (0, 20_000, "mg/Nm3"),
        "NOx": (0, 10_000, "mg/Nm3"),
        "NO": (0, 10_000, "mg/Nm3"),
        "NO2": (0, 10_000, "mg/Nm3"),
        "CO": (0, 50_000, "mg/Nm3"),
        "H2S": (0, 5000, "mg/Nm3"),
    },
}

# Which criterion each of ingest's rejection rules belongs to.
RULE_CRITERION: dict[Reason, str] = {
    Reason.PAYLOAD_TOO_LARGE: "syntax",
    Reason.PAYLOAD_ENCODING: "syntax",
    Reason.PAYLOAD_SYNTAX: "syntax",
    Reason.PAYLOAD_SCHEMA: "syntax",
    Reason.PAYLOAD_EMPTY: "syntax",
    Reason.LINE_SYNTAX: "syntax",
    Reason.STATION_UNKNOWN: "syntax",
    Reason.STATION_MISMATCH: "syntax",
    Reason.VALUE_NOT_NUMBER: "syntax",
    Reason.TIME_INVALID: "syntax",
    Reason.TIME_NO_OFFSET: "syntax",
    Reason.PARAM_UNKNOWN: "parameters",
    Reason.PARAM_NOT_DECLARED: "parameters",
    Reason.UNIT_UNKNOWN: "units",
    Reason.UNIT_MISMATCH: "units",
    Reason.STATUS_INVALID: "status",
    Reason.TIME_IN_FUTURE: "clock",
    Reason.TIME_TOO_OLD: "late",
    Reason.DUPLICATE_IN_MESSAGE: "duplicates",
    Reason.VALUE_NOT_FINITE: "values",
    Reason.FILE_NAME: "file_names",
}


@dataclass(frozen=True, slots=True)
class Captured:
    """One message as it arrived: an MQTT publication or a dropped file."""

    received_at: datetime  # aware
    source: str  # the MQTT topic, or the file's path inside the folder
    payload: bytes
    kind: str = MQTT  # MQTT or FILE


@dataclass(frozen=True, slots=True)
class CheckLimits:
    """Tolerances. Circular 10/2021 fixes the 5-minute cadence; the rest is judgement."""

    max_cadence_s: float = 300.0
    gap_factor: float = 1.5  # an interval beyond this many cadences means lost messages
    slow_factor: float = 1.1  # median interval beyond this many declared cadences: too slow
    jitter_share: float = 0.25  # arrival intervals may stray by this share of the cadence
    clock_ahead_s: float = 60.0  # the station's clock may run this far ahead of ours
    clock_behind_s: float = 60.0  # … and this far behind, plus one cadence (averaging window)
    late_cadences: float = 2.0  # later than usual by this many cadences (+ late_extra_s): late
    late_extra_s: float = 1.0
    duplicate_share: float = 0.02  # exact repeats allowed (QoS 1 redelivery), share of messages
    stuck_messages: int = 6  # identical status-00 values in a row: a stuck sensor
    min_intervals: int = 1  # intervals needed to judge the cadence
    max_examples: int = 3


@dataclass(frozen=True, slots=True)
class Text:
    """A translation key and its parameters."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Example:
    source: str
    received_at: datetime | None
    payload: str  # an excerpt


@dataclass(slots=True)
class Finding:
    severity: str  # FAIL or WARN
    what: Text
    fix: Text | None
    count: int = 1
    examples: list[Example] = field(default_factory=list)


@dataclass(slots=True)
class CriterionResult:
    id: str
    verdict: str
    summary: Text
    findings: list[Finding] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    station_id: str
    station_name: str
    kind: str
    mode: str  # MQTT or FILE
    messages: int
    readings: int  # readings ingest would store
    first_received: datetime | None
    last_received: datetime | None
    criteria: list[CriterionResult]
    ignored: int = 0  # captured messages of other stations
    origin: str = "live"  # "live" (MQTT during the check), "folder" or "capture"
    origin_path: str = ""  # the folder or capture file

    @property
    def verdict(self) -> str:
        if any(c.verdict == FAIL for c in self.criteria):
            return FAIL
        return WARN if any(c.verdict == WARN for c in self.criteria) else PASS

    @property
    def passed(self) -> bool:
        return self.verdict != FAIL

    def criterion(self, criterion_id: str) -> CriterionResult:
        return next(c for c in self.criteria if c.id == criterion_id)


# --- One message, parsed and validated by ingest --------------------------------------------------


@dataclass(slots=True)
class _Message:
    index: int
    captured: Captured
    problems: list[Problem]
    params_sent: set[str]  # catalog codes present, whatever became of them
    readings: list[Any]  # ingest Readings that would be stored
    measured: datetime | None  # newest measured time in the message
    file_name: tt10.FileName | None = None

    @property
    def example(self) -> Example:
        return Example(
            self.captured.source, self.captured.received_at, excerpt(self.captured.payload, 400)
        )


def _examine(
    index: int,
    item: Captured,
    station: Station,
    registry: Registry,
    catalog: Catalog,
    local: tzinfo,
    time_limits: TimeLimits,
    max_payload_bytes: int,
) -> _Message:
    problems: list[Problem] = []
    file_name = None
    if item.kind == FILE:
        name = item.source.replace("\\", "/").rsplit("/", 1)[-1]
        try:
            file_name = tt10.parse_file_name(name, local)
        except ValueError as exc:
            problems.append(Problem(Reason.FILE_NAME, "file", name, str(exc)))
        else:
            owner = registry.for_file_prefix(file_name.prefix, file_name.station)
            if owner is None or owner.id != station.id:
                problems.append(
                    Problem(
                        Reason.FILE_NAME,
                        "file",
                        name,
                        f"{file_name.prefix} is not station {station.id}'s ftp_name "
                        f"({station.ftp_name or station.id})",
                    )
                )
        topic_station: str | None = station.id
    else:
        topic_station = station_from_topic(item.source)
    parsed = parse_payload(item.payload, max_bytes=max_payload_bytes, local=local)
    result = validate(
        parsed,
        topic_station=topic_station,
        registry=registry,
        catalog=catalog,
        now=item.received_at,
        limits=time_limits,
    )
    sent = set()
    for raw in parsed.readings:
        known = catalog.parameter(raw.param) if isinstance(raw.param, str) else None
        sent.add(known.code if known else str(raw.param))
    times = [r.time for r in parsed.readings if isinstance(r.time, datetime)]
    return _Message(
        index=index,
        captured=item,
        problems=problems + result.problems,
        params_sent=sent,
        readings=result.readings,
        measured=max(times) if times else None,
        file_name=file_name,
    )


# --- The criteria ---------------------------------------------------------------------------------


class _Collector:
    """Findings of one criterion, grouped by what went wrong, with a few examples each."""

    def __init__(self, limits: CheckLimits) -> None:
        self.limits = limits
        self.findings: dict[tuple[str, str], Finding] = {}

    def add(
        self,
        group: str,
        severity: str,
        what: Text,
        fix: Text | None,
        example: Example | None,
        count: int = 1,
    ) -> None:
        key = (severity, group)
        finding = self.findings.get(key)
        if finding is None:
            finding = self.findings[key] = Finding(severity, what, fix, 0)
        finding.count += count
        if example is not None and len(finding.examples) < self.limits.max_examples:
            finding.examples.append(example)

    def result(self, criterion: str, passed: Text, failed: Text | None = None) -> CriterionResult:
        findings = sorted(self.findings.values(), key=lambda f: (f.severity != FAIL, -f.count))
        if any(f.severity == FAIL for f in findings):
            verdict = FAIL
        elif findings:
            verdict = WARN
        else:
            verdict = PASS
        summary = failed if verdict == FAIL and failed is not None else passed
        return CriterionResult(criterion, verdict, summary, findings)


def _problem_findings(messages: list[_Message], criterion: str, collector: _Collector) -> set[int]:
    """Ingest's rejections that belong to ``criterion``; the indexes of messages with one."""
    hit = set()
    for message in messages:
        for problem in message.problems:
            if RULE_CRITERION.get(problem.reason) != criterion:
                continue
            hit.add(message.index)
            collector.add(
                problem.reason.value,
                FAIL,
                Text(
                    "check.finding.rule",
                    {
                        "rule": problem.reason.value,
                        "field": problem.field,
                        "value": problem.value,
                        "detail": problem.detail,
                        # What the station's ack says, in each language (config/messages/ack.yaml).
                        "detail_vi": translate_ack(problem, "vi"),
                        "detail_en": translate_ack(problem, "en"),
                    },
                ),
                Text(f"check.fix.{problem.reason.value}"),
                message.example,
            )
    return hit


def _not_applicable(criterion: str, reason: str) -> CriterionResult:
    return CriterionResult(criterion, NOT_APPLICABLE, Text(f"check.na.{reason}"))


def _syntax(messages: list[_Message], limits: CheckLimits) -> CriterionResult:
    collector = _Collector(limits)
    if not messages:
        collector.add(
            "nothing", FAIL, Text("check.finding.nothing"), Text("check.fix.nothing"), None
        )
        return collector.result("syntax", Text("check.ok.syntax"), Text("check.bad.nothing"))
    bad = _problem_findings(messages, "syntax", collector)
    return collector.result(
        "syntax",
        Text("check.ok.syntax", {"messages": len(messages)}),
        Text("check.bad.syntax", {"bad": len(bad), "messages": len(messages)}),
    )


def _required(station: Station) -> list[tuple[str, ...]]:
    """What every message must carry: the kind's required set and what the registry declares."""
    needed = list(REQUIRED_PARAMETERS.get(station.kind, ()))
    covered = {code for options in needed for code in options}
    needed += [(code,) for code in station.parameters if code not in covered]
    return needed


def _parameters(messages: list[_Message], station: Station, limits: CheckLimits) -> CriterionResult:
    collector = _Collector(limits)
    _problem_findings(messages, "parameters", collector)
    needed = _required(station)
    for options in needed:
        if not any(code in station.parameters for code in options):
            collector.add(
                f"undeclared:{options}",
                FAIL,
                Text("check.finding.required_not_declared", {"params": " / ".join(options)}),
                Text("check.fix.required_not_declared", {"station": station.id}),
                None,
            )
    # What the registry does not declare cannot be sent: reported once above, not per message.
    sendable = [opts for opts in needed if any(code in station.parameters for code in opts)]
    for message in (m for m in messages if m.params_sent):
        missing = [o for o in sendable if not any(c in message.params_sent for c in o)]
        if missing:
            names = ", ".join(" / ".join(o) for o in missing)
            collector.add(
                f"missing:{names}",
                FAIL,
                Text("check.finding.missing", {"params": names}),
                Text("check.fix.missing"),
                message.example,
            )
    codes = ", ".join(" / ".join(o) for o in needed)
    return collector.result(
        "parameters",
        Text("check.ok.parameters", {"params": codes}),
        Text("check.bad.parameters", {"params": codes}),
    )


def _by_criterion(messages: list[_Message], criterion: str, limits: CheckLimits) -> CriterionResult:
    collector = _Collector(limits)
    bad = _problem_findings(messages, criterion, collector)
    return collector.result(
        criterion,
        Text(f"check.ok.{criterion}"),
        Text(f"check.bad.{criterion}", {"bad": len(bad), "messages": len(messages)}),
    )


def _status(messages: list[_Message], limits: CheckLimits) -> CriterionResult:
    collector = _Collector(limits)
    bad = _problem_findings(messages, "status", collector)
    for status in (Status.CALIBRATING, Status.FAULT):
        hits = [m for m in messages if any(r.status == status for r in m.readings)]
        if not hits:
            continue
        flagged = [r for m in hits for r in m.readings if r.status == status]
        params = ", ".join(sorted({r.param for r in flagged}))
        collector.add(
            status.code,
            WARN,
            Text(f"check.finding.status_{status.code}", {"count": len(flagged), "params": params}),
            Text(f"check.fix.status_{status.code}"),
            hits[0].example,
            count=len(flagged),
        )
    return collector.result(
        "status",
        Text("check.ok.status"),
        Text("check.bad.status", {"bad": len(bad), "messages": len(messages)}),
    )


def _first_arrivals(messages: list[_Message]) -> list[_Message]:
    """One message per measured time (the first to arrive), in measured-time order."""
    first: dict[datetime, _Message] = {}
    for message in messages:
        if message.measured is not None and message.measured not in first:
            first[message.measured] = message
    return [first[t] for t in sorted(first)]


def _seconds_between(earlier: datetime | None, later: datetime | None) -> float:
    assert earlier is not None and later is not None
    return (later - earlier).total_seconds()


def _cadence(
    messages: list[_Message], station: Station, limits: CheckLimits, mode: str
) -> CriterionResult:
    collector = _Collector(limits)
    declared = float(station.cadence_s)
    ordered = _first_arrivals(messages)
    intervals = [(_seconds_between(a.measured, b.measured), b) for a, b in pairwise(ordered)]
    if len(intervals) < limits.min_intervals:
        collector.add(
            "too_few",
            FAIL,
            Text("check.finding.too_few", {"messages": len(ordered)}),
            Text("check.fix.too_few", {"seconds": int(3 * declared)}),
            None,
        )
        return collector.result("cadence", Text("check.ok.cadence"), Text("check.bad.too_few"))
    median = statistics.median(s for s, _ in intervals)
    if median > limits.max_cadence_s:
        collector.add(
            "slow",
            FAIL,
            Text("check.finding.over_5_minutes", {"seconds": round(median)}),
            Text("check.fix.over_5_minutes"),
            ordered[1].example,
        )
    elif median > declared * limits.slow_factor:
        collector.add(
            "slower",
            FAIL,
            Text("check.finding.slower", {"seconds": round(median), "declared": int(declared)}),
            Text("check.fix.slower", {"declared": int(declared)}),
            ordered[1].example,
        )
    # A gap over which unreadable messages arrived is the syntax criterion's finding.
    unreadable = [m.captured.received_at for m in messages if m.measured is None]
    previous = {id(b): a for a, b in pairwise(ordered)}
    for seconds, message in intervals:
        before = previous[id(message)].captured.received_at
        explained = any(before <= t <= message.captured.received_at for t in unreadable)
        if seconds > limits.gap_factor * declared and not explained:
            collector.add(
                "gap",
                FAIL,
                Text("check.finding.gap", {"missing": round(seconds / declared) - 1}),
                Text("check.fix.gap"),
                message.example,
            )
    if mode == MQTT:
        arrivals = [m for m in messages if m.measured is not None]
        deltas = [
            ((b.captured.received_at - a.captured.received_at).total_seconds(), b)
            for a, b in pairwise(arrivals)
            if b.measured is not None and a.measured is not None and b.measured > a.measured
        ]
        tolerance = limits.jitter_share * declared
        for seconds, message in deltas:
            if abs(seconds - declared) > tolerance and seconds <= limits.gap_factor * declared:
                collector.add(
                    "jitter",
                    WARN,
                    Text("check.finding.jitter", {"tolerance": round(tolerance, 1)}),
                    Text("check.fix.jitter"),
                    message.example,
                )
    # The verdict names the rule and what was seen.
    seen = {
        "seconds": round(median, 1),
        "declared": int(declared),
        "maximum": int(limits.max_cadence_s),
        "intervals": len(intervals),
        "shortest": round(min(s for s, _ in intervals), 1),
        "longest": round(max(s for s, _ in intervals), 1),
    }
    return collector.result(
        "cadence", Text("check.ok.cadence", seen), Text("check.bad.cadence", seen)
    )


def _latencies(messages: list[_Message]) -> list[tuple[float, _Message]]:
    return [
        ((m.captured.received_at - m.measured).total_seconds(), m)
        for m in messages
        if m.measured is not None
    ]


def _clock(
    messages: list[_Message], station: Station, limits: CheckLimits, mode: str
) -> CriterionResult:
    if mode != MQTT:
        return _not_applicable("clock", "files")
    collector = _Collector(limits)
    _problem_findings(messages, "clock", collector)
    latencies = _latencies(_first_arrivals(messages))
    if not latencies:
        if not collector.findings:
            return _not_applicable("clock", "no_times")
        return collector.result("clock", Text("check.ok.clock"), Text("check.bad.clock_future"))
    median = statistics.median(s for s, _ in latencies)
    closest = min(latencies, key=lambda pair: abs(pair[0] - median))[1]
    hint = utc_offset_hint(
        closest.measured or closest.captured.received_at, closest.captured.received_at
    )
    if hint is not None and abs(abs(median) - 7 * 3600) <= 600:
        # Exactly the Vietnamese offset: not a drifting clock but a time zone set wrong.
        collector.add(
            hint,
            FAIL,
            Text(f"check.finding.{hint}", {"seconds": round(median)}),
            Text(f"check.fix.{hint}"),
            closest.example,
        )
    elif median < -limits.clock_ahead_s:
        collector.add(
            "ahead",
            FAIL,
            Text("check.finding.clock_ahead", {"seconds": round(-median)}),
            Text("check.fix.clock"),
            closest.example,
        )
    elif median > station.cadence_s + limits.clock_behind_s:
        collector.add(
            "behind",
            FAIL,
            Text("check.finding.clock_behind", {"seconds": round(median)}),
            Text("check.fix.clock"),
            closest.example,
        )
    return collector.result(
        "clock",
        Text("check.ok.clock", {"seconds": round(median, 1)}),
        Text("check.bad.clock", {"seconds": round(median, 1)}),
    )


def _duplicates(messages: list[_Message], limits: CheckLimits) -> CriterionResult:
    collector = _Collector(limits)
    _problem_findings(messages, "duplicates", collector)
    seen: dict[tuple[str, datetime], tuple[float, int]] = {}
    repeated_messages = 0
    for message in messages:
        if not message.readings:
            continue
        repeats = 0
        for reading in message.readings:
            key = (reading.param, reading.measured_at)
            value = (reading.value, int(reading.status))
            previous = seen.get(key)
            if previous is None:
                seen[key] = value
                continue
            repeats += 1
            if previous != value:
                collector.add(
                    "conflict",
                    FAIL,
                    Text("check.finding.conflict", {"param": reading.param}),
                    Text("check.fix.conflict"),
                    message.example,
                )
        if repeats == len(message.readings):
            repeated_messages += 1
            collector.add(
                "repeat",
                WARN,
                Text("check.finding.repeat"),
                Text("check.fix.repeat"),
                message.example,
            )
    share = repeated_messages / len(messages) if messages else 0.0
    if share > limits.duplicate_share:
        finding = collector.findings.pop((WARN, "repeat"))
        finding.severity = FAIL
        finding.what = Text(
            "check.finding.repeats_many",
            {"percent": round(100 * share, 1), "allowed": round(100 * limits.duplicate_share, 1)},
        )
        collector.findings[(FAIL, "repeat")] = finding
    return collector.result(
        "duplicates",
        Text("check.ok.duplicates"),
        Text("check.bad.duplicates", {"messages": repeated_messages}),
    )


def _late(
    messages: list[_Message], station: Station, limits: CheckLimits, mode: str
) -> CriterionResult:
    if mode != MQTT:
        return _not_applicable("late", "files")
    collector = _Collector(limits)
    _problem_findings(messages, "late", collector)
    firsts = _first_arrivals(messages)
    latencies = _latencies(firsts)
    if latencies:
        usual = statistics.median(s for s, _ in latencies)
        allowed = limits.late_cadences * station.cadence_s + limits.late_extra_s
        for seconds, message in latencies:
            if seconds - usual > allowed:
                collector.add(
                    "late",
                    FAIL,
                    Text("check.finding.late", {"allowed": round(allowed)}),
                    Text("check.fix.late"),
                    message.example,
                )
    newest: datetime | None = None
    first_ids = {id(m) for m in firsts}
    for message in messages:
        if message.measured is None or id(message) not in first_ids:
            continue
        if newest is not None and message.measured < newest:
            collector.add(
                "order",
                WARN,
                Text("check.finding.out_of_order"),
                Text("check.fix.out_of_order"),
                message.example,
            )
        newest = message.measured if newest is None else max(newest, message.measured)
    return collector.result("late", Text("check.ok.late"), Text("check.bad.late"))


def _values(
    messages: list[_Message], station: Station, catalog: Catalog, limits: CheckLimits
) -> CriterionResult:
    collector = _Collector(limits)
    _problem_findings(messages, "values", collector)
    ranges: dict[str, tuple[float, float]] = {}
    for code, declared in station.parameters.items():
        spec = PLAUSIBLE.get(station.kind, {}).get(code)
        unit = catalog.unit(spec[2]) if spec else None
        factor = catalog.conversion_factor(unit, declared.unit) if spec and unit else None
        if spec is not None and factor is not None:
            ranges[code] = (spec[0] * factor, spec[1] * factor)
    runs: dict[str, tuple[float, int]] = {}
    for message in _first_arrivals(messages):
        for reading in message.readings:
            if reading.status != Status.MEASURING:
                runs.pop(reading.param, None)
                continue
            low, high = ranges.get(reading.param, (-math.inf, math.inf))
            unit_id = station.parameters[reading.param].unit.id
            if not low <= reading.value <= high:
                collector.add(
                    f"range:{reading.param}",
                    FAIL,
                    Text(
                        "check.finding.out_of_range",
                        {
                            "param": reading.param,
                            "value": reading.value,
                            "unit": unit_id,
                            "low": round(low, 6),
                            "high": round(high, 6),
                        },
                    ),
                    Text("check.fix.out_of_range"),
                    message.example,
                )
            value, count = runs.get(reading.param, (math.nan, 0))
            count = count + 1 if reading.value == value else 1
            runs[reading.param] = (reading.value, count)
            # A value pinned at a bound (no flow at night, fog at 100 %) is real, not stuck.
            if count == limits.stuck_messages and reading.value not in (low, high, 0.0):
                collector.add(
                    f"stuck:{reading.param}",
                    FAIL,
                    Text(
                        "check.finding.stuck",
                        {
                            "param": reading.param,
                            "value": reading.value,
                            "unit": unit_id,
                            "count": count,
                        },
                    ),
                    Text("check.fix.stuck"),
                    message.example,
                )
    return collector.result("values", Text("check.ok.values"), Text("check.bad.values"))


def _file_names(
    messages: list[_Message], station: Station, limits: CheckLimits, mode: str
) -> CriterionResult:
    if mode != FILE:
        return _not_applicable("file_names", "mqtt")
    collector = _Collector(limits)
    _problem_findings(messages, "file_names", collector)
    for message in messages:
        named, measured = message.file_name, message.measured
        if named is None or measured is None:
            continue
        if abs((named.stamped_at - measured).total_seconds()) > station.cadence_s:
            collector.add(
                "stamp",
                FAIL,
                Text("check.finding.name_time"),
                Text("check.fix.name_time"),
                message.example,
            )
    expected = station.ftp_name or f"Province_Facility_{station.id}"
    return collector.result(
        "file_names",
        Text("check.ok.file_names", {"prefix": expected}),
        Text("check.bad.file_names", {"prefix": expected}),
    )


def _belongs(item: Captured, station: Station, registry: Registry, local: tzinfo) -> bool:
    """Other stations' traffic is left out; a file whose name names no station is kept (and
    fails on its name): it may be this station's, misnamed."""
    if item.kind != FILE:
        return station_from_topic(item.source) in (station.id, None)
    try:
        name = tt10.parse_file_name(item.source.rsplit("/", 1)[-1], local)
    except ValueError:
        return True
    owner = registry.for_file_prefix(name.prefix, name.station)
    return owner is None or owner.id == station.id


def check_station(
    station: Station,
    captured: Sequence[Captured],
    *,
    registry: Registry,
    catalog: Catalog,
    local: tzinfo,
    time_limits: TimeLimits,
    max_payload_bytes: int = 256 * 1024,
    limits: CheckLimits | None = None,
    origin: str = "live",
    origin_path: str = "",
) -> Report:
    """The verdict on ``station``'s captured traffic (all MQTT, or all files), in arrival order.

    Messages on other stations' topics, and files named for other stations, are ignored
    (counted in ``Report.ignored``).
    """
    limits = limits or CheckLimits()
    mode = FILE if captured and all(c.kind == FILE for c in captured) else MQTT
    ordered = sorted(captured, key=lambda c: c.received_at)
    local = station.utc_offset or local
    mine = [c for c in ordered if _belongs(c, station, registry, local)]
    messages = [
        _examine(i, c, station, registry, catalog, local, time_limits, max_payload_bytes)
        for i, c in enumerate(mine)
    ]
    criteria = [
        _syntax(messages, limits),
        _parameters(messages, station, limits),
        _by_criterion(messages, "units", limits),
        _status(messages, limits),
        _cadence(messages, station, limits, mode),
        _clock(messages, station, limits, mode),
        _duplicates(messages, limits),
        _late(messages, station, limits, mode),
        _values(messages, station, catalog, limits),
        _file_names(messages, station, limits, mode),
    ]
    if not messages:
        # Nothing arrived: only the syntax criterion says so; the rest cannot be judged.
        criteria = [criteria[0]] + [
            _not_applicable(c.id, "nothing") for c in criteria[1:] if c.id != "syntax"
        ]
    return Report(
        station_id=station.id,
        station_name=station.name,
        kind=station.kind,
        mode=mode,
        messages=len(messages),
        readings=sum(len(m.readings) for m in messages),
        first_received=mine[0].received_at if mine else None,
        last_received=mine[-1].received_at if mine else None,
        criteria=criteria,
        ignored=len(ordered) - len(mine),
        origin=origin,
        origin_path=origin_path,
    )
