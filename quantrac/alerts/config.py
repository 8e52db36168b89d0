"""Alert engine settings, from ``config/alerts.yaml``: thresholds, hysteresis, severities.

Every number the engine decides with lives here as data (none of them is law: Circular 10/2021
sets no completeness rule and no hysteresis; see docs/alerts.md), so a department can tune them
without a code change. The ``notifications`` section is parsed by ``quantrac.alerts.notify``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Any

import yaml

from quantrac.alerts.model import Kind, Severity
from quantrac.core.time import parse_utc_offset


class AlertConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PhysicalRange:
    minimum: float | None = None
    maximum: float | None = None

    def contains(self, value: float) -> bool:
        if self.minimum is not None and value < self.minimum:
            return False
        return self.maximum is None or value <= self.maximum


DEFAULT_SEVERITIES = {
    Kind.EXCEEDANCE: Severity.CRITICAL,
    Kind.WARNING: Severity.MINOR,
    Kind.DATA_LOSS: Severity.MAJOR,
    Kind.DEVICE_FAULT: Severity.MAJOR,
    Kind.CALIBRATION: Severity.MINOR,
    Kind.STUCK_VALUE: Severity.MINOR,
    Kind.OUT_OF_RANGE: Severity.MAJOR,
    Kind.CLOCK_DRIFT: Severity.MINOR,
}


@dataclass(frozen=True, slots=True)
class EngineConfig:
    min_completeness: float = 0.75
    local_tz: tzinfo = field(default_factory=lambda: parse_utc_offset("+07:00"))
    # An hour is evaluated early once it holds every expected reading; otherwise when the
    # station's data (or the clock, for a silent station) has moved this far past its end.
    window_grace: timedelta = timedelta(minutes=10)
    warning_share: float = 0.8  # a warning above this share of the limit
    clear_ratio: float = 0.9  # an exceedance clears below this share of the limit ...
    min_clear: timedelta = timedelta(hours=1)  # ... held for at least this long
    data_loss_cadences: float = 3.0  # silent for N x cadence
    data_loss_per_parameter: bool = True
    calibration_max: timedelta = timedelta(hours=2)
    stuck_readings: int = 12  # identical consecutive valid readings
    stuck_exempt: frozenset[str] = frozenset({"Rain"})
    clock_drift_tolerance: timedelta = timedelta(minutes=2)
    clear_after_readings: int = 3  # fault, out of range, clock drift: normal readings to clear
    physical_ranges: dict[str, PhysicalRange] = field(default_factory=dict)
    default_physical_range: PhysicalRange = PhysicalRange(minimum=0.0)
    severities: dict[Kind, Severity] = field(default_factory=lambda: dict(DEFAULT_SEVERITIES))
    enabled: frozenset[Kind] = frozenset(Kind)
    rebuild_hours: int = 34  # readings reloaded at start: a local day, an 8 h window, margin

    def physical_range(self, param: str) -> PhysicalRange:
        return self.physical_ranges.get(param, self.default_physical_range)

    def severity(self, kind: Kind) -> Severity:
        return self.severities.get(kind, Severity.MAJOR)


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    engine: EngineConfig
    notifications: Any  # the raw section; quantrac.alerts.notify parses it
    source: str


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AlertConfigError(f"{where}: must be a number (got {value!r})")
    if not low <= value <= high:
        raise AlertConfigError(f"{where}: must be between {low:g} and {high:g} (got {value!r})")
    return float(value)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AlertConfigError(f"{where}: must be a mapping")
    return value


def _known(section: dict[str, Any], keys: set[str], where: str) -> None:
    for key in section:
        if key not in keys:
            raise AlertConfigError(
                f"{where}.{key}: unknown setting (expected one of {', '.join(sorted(keys))})"
            )


def _range(value: Any, where: str) -> PhysicalRange:
    section = _mapping(value, where)
    _known(section, {"min", "max"}, where)
    low = section.get("min")
    high = section.get("max")
    minimum = None if low is None else _number(low, f"{where}.min", -math.inf, math.inf)
    maximum = None if high is None else _number(high, f"{where}.max", -math.inf, math.inf)
    if minimum is not None and maximum is not None and minimum > maximum:
        raise AlertConfigError(f"{where}: min is above max")
    return PhysicalRange(minimum, maximum)


def config_from_dict(data: Any, source: str = "<memory>") -> AlertsConfig:
    doc = _mapping(data, source)
    _known(doc, {"evaluation", "rules", "physical_ranges", "notifications"}, source)
    ev = _mapping(doc.get("evaluation"), f"{source}: evaluation")
    where = f"{source}: evaluation"
    _known(
        ev,
        {
            "min_completeness",
            "local_utc_offset",
            "window_grace_minutes",
            "warning_share",
            "clear_ratio",
            "min_clear_minutes",
            "rebuild_hours",
        },
        where,
    )
    kwargs: dict[str, Any] = {}
    if "min_completeness" in ev:
        kwargs["min_completeness"] = _number(
            ev["min_completeness"], f"{where}.min_completeness", 0.01, 1
        )
    if "local_utc_offset" in ev:
        try:
            kwargs["local_tz"] = parse_utc_offset(str(ev["local_utc_offset"]))
        except ValueError as exc:
            raise AlertConfigError(f"{where}.local_utc_offset: {exc}") from None
    if "window_grace_minutes" in ev:
        minutes = _number(ev["window_grace_minutes"], f"{where}.window_grace_minutes", 0, 1440)
        kwargs["window_grace"] = timedelta(minutes=minutes)
    if "warning_share" in ev:
        kwargs["warning_share"] = _number(ev["warning_share"], f"{where}.warning_share", 0.01, 1)
    if "clear_ratio" in ev:
        kwargs["clear_ratio"] = _number(ev["clear_ratio"], f"{where}.clear_ratio", 0.01, 1)
    if "min_clear_minutes" in ev:
        minutes = _number(ev["min_clear_minutes"], f"{where}.min_clear_minutes", 0, 10080)
        kwargs["min_clear"] = timedelta(minutes=minutes)
    if "rebuild_hours" in ev:
        kwargs["rebuild_hours"] = int(
            _number(ev["rebuild_hours"], f"{where}.rebuild_hours", 9, 24 * 31)
        )

    rules = _mapping(doc.get("rules"), f"{source}: rules")
    severities = dict(DEFAULT_SEVERITIES)
    enabled = set(Kind)
    for name, raw in rules.items():
        rwhere = f"{source}: rules.{name}"
        try:
            kind = Kind(name)
        except ValueError:
            raise AlertConfigError(
                f"{rwhere}: unknown alert kind (expected one of {', '.join(k.value for k in Kind)})"
            ) from None
        rule = _mapping(raw, rwhere)
        extra = {
            Kind.DATA_LOSS: {"after_cadences", "per_parameter"},
            Kind.CALIBRATION: {"max_minutes"},
            Kind.STUCK_VALUE: {"readings", "exempt"},
            Kind.CLOCK_DRIFT: {"tolerance_s"},
            Kind.DEVICE_FAULT: {"clear_after_readings"},
        }.get(kind, set())
        _known(rule, {"severity", "enabled", *extra}, rwhere)
        if "severity" in rule:
            try:
                severities[kind] = Severity(rule["severity"])
            except ValueError:
                raise AlertConfigError(
                    f"{rwhere}.severity: one of {', '.join(s.value for s in Severity)}"
                ) from None
        if rule.get("enabled") is False:
            enabled.discard(kind)
        if "after_cadences" in rule:
            kwargs["data_loss_cadences"] = _number(
                rule["after_cadences"], f"{rwhere}.after_cadences", 1, 1000
            )
        if "per_parameter" in rule:
            kwargs["data_loss_per_parameter"] = bool(rule["per_parameter"])
        if "max_minutes" in rule:
            minutes = _number(rule["max_minutes"], f"{rwhere}.max_minutes", 1, 10080)
            kwargs["calibration_max"] = timedelta(minutes=minutes)
        if "readings" in rule:
            kwargs["stuck_readings"] = int(
                _number(rule["readings"], f"{rwhere}.readings", 2, 100000)
            )
        if "exempt" in rule:
            exempt = rule["exempt"]
            if not isinstance(exempt, list) or not all(isinstance(p, str) for p in exempt):
                raise AlertConfigError(f"{rwhere}.exempt: a list of parameter codes")
            kwargs["stuck_exempt"] = frozenset(exempt)
        if "tolerance_s" in rule:
            seconds = _number(rule["tolerance_s"], f"{rwhere}.tolerance_s", 0, 86400)
            kwargs["clock_drift_tolerance"] = timedelta(seconds=seconds)
        if "clear_after_readings" in rule:
            kwargs["clear_after_readings"] = int(
                _number(rule["clear_after_readings"], f"{rwhere}.clear_after_readings", 1, 10000)
            )

    ranges = _mapping(doc.get("physical_ranges"), f"{source}: physical_ranges")
    physical = {}
    for param, raw in ranges.items():
        rng = _range(raw, f"{source}: physical_ranges.{param}")
        if param == "default":
            kwargs["default_physical_range"] = rng
        else:
            physical[str(param)] = rng
    engine = EngineConfig(
        physical_ranges=physical, severities=severities, enabled=frozenset(enabled), **kwargs
    )
    return AlertsConfig(engine=engine, notifications=doc.get("notifications"), source=source)


def load_alerts_config(path: Path) -> AlertsConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AlertConfigError(f"{path}: cannot read ({exc})") from None
    except yaml.YAMLError as exc:
        raise AlertConfigError(f"{path}: invalid YAML ({exc})") from None
    return config_from_dict(data, str(path))
