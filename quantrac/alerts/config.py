"""Alert engine settings, from ``config/alerts.yaml``: thresholds, hysteresis, severities.

Every number the engine decides with lives here as data (none of them is law: Circular 10/2021
sets no completeness rule and no hysteresis; see docs/alerts.md), so a department can tune them
without a code change. The ``notifications`` section is parsed by ``quantrac.alerts.notify``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from quantrac.alerts.model import Kind, Severity
from quantrac.core.config_files import (
    ConfigError,
    ConfigModel,
    FieldError,
    read_yaml_file,
    validate,
)
from quantrac.core.time import parse_utc_offset


class AlertConfigError(ConfigError):
    """alerts.yaml is invalid; each issue names file, line and field."""


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
    lines: Mapping[str, int] | None = None  # line of each field, for the notify section's errors


Number = Annotated[float, Field(allow_inf_nan=False)]
_SEVERITY = Literal["critical", "major", "minor", "info"]


def _between(low: float, high: float) -> Any:
    return Field(default=None, ge=low, le=high, allow_inf_nan=False)


class _Evaluation(ConfigModel):
    min_completeness: float | None = _between(0.01, 1)
    local_utc_offset: str | None = None
    window_grace_minutes: float | None = _between(0, 1440)
    warning_share: float | None = _between(0.01, 1)
    clear_ratio: float | None = _between(0.01, 1)
    min_clear_minutes: float | None = _between(0, 10080)
    rebuild_hours: float | None = _between(9, 24 * 31)

    @field_validator("local_utc_offset")
    @classmethod
    def _offset(cls, value: str | None) -> str | None:
        if value is not None:
            parse_utc_offset(value)
        return value


class _Rule(ConfigModel):
    severity: _SEVERITY | None = None
    enabled: bool | None = None


class _DataLossRule(_Rule):
    after_cadences: float | None = _between(1, 1000)
    per_parameter: bool | None = None


class _CalibrationRule(_Rule):
    max_minutes: float | None = _between(1, 10080)


class _StuckRule(_Rule):
    readings: float | None = _between(2, 100000)
    exempt: list[str] | None = None


class _ClockRule(_Rule):
    tolerance_s: float | None = _between(0, 86400)


class _FaultRule(_Rule):
    clear_after_readings: float | None = _between(1, 10000)


class _Rules(ConfigModel):
    exceedance: _Rule | None = None
    warning: _Rule | None = None
    data_loss: _DataLossRule | None = None
    device_fault: _FaultRule | None = None
    calibration: _CalibrationRule | None = None
    stuck_value: _StuckRule | None = None
    out_of_range: _Rule | None = None
    clock_drift: _ClockRule | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_kinds(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name in value:
                if name not in {k.value for k in Kind}:
                    raise FieldError(
                        name,
                        f"unknown alert kind (expected one of {', '.join(k.value for k in Kind)})",
                    )
        return value


class _Range(ConfigModel):
    min: Number | None = None
    max: Number | None = None

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self


class _AlertsFile(ConfigModel):
    evaluation: _Evaluation | None = None
    rules: _Rules | None = None
    physical_ranges: dict[str, _Range] | None = None
    notifications: Any = None


def config_from_dict(
    data: Any, source: str = "<memory>", lines: dict[str, int] | None = None
) -> AlertsConfig:
    """The alert engine's settings; every problem is an AlertConfigError naming file:line:
    field (the ``notifications`` section is kept as written for quantrac.alerts.notify)."""
    doc = validate(_AlertsFile, {} if data is None else data, source, lines, AlertConfigError)
    kwargs: dict[str, Any] = {}
    ev = doc.evaluation or _Evaluation()
    if ev.min_completeness is not None:
        kwargs["min_completeness"] = ev.min_completeness
    if ev.local_utc_offset is not None:
        kwargs["local_tz"] = parse_utc_offset(ev.local_utc_offset)
    if ev.window_grace_minutes is not None:
        kwargs["window_grace"] = timedelta(minutes=ev.window_grace_minutes)
    if ev.warning_share is not None:
        kwargs["warning_share"] = ev.warning_share
    if ev.clear_ratio is not None:
        kwargs["clear_ratio"] = ev.clear_ratio
    if ev.min_clear_minutes is not None:
        kwargs["min_clear"] = timedelta(minutes=ev.min_clear_minutes)
    if ev.rebuild_hours is not None:
        kwargs["rebuild_hours"] = int(ev.rebuild_hours)

    severities = dict(DEFAULT_SEVERITIES)
    enabled = set(Kind)
    rules = doc.rules or _Rules()
    for kind in Kind:
        rule = getattr(rules, kind.value)
        if rule is None:
            continue
        if rule.severity is not None:
            severities[kind] = Severity(rule.severity)
        if rule.enabled is False:
            enabled.discard(kind)
    if rules.data_loss is not None:
        if rules.data_loss.after_cadences is not None:
            kwargs["data_loss_cadences"] = rules.data_loss.after_cadences
        if rules.data_loss.per_parameter is not None:
            kwargs["data_loss_per_parameter"] = rules.data_loss.per_parameter
    if rules.calibration is not None and rules.calibration.max_minutes is not None:
        kwargs["calibration_max"] = timedelta(minutes=rules.calibration.max_minutes)
    if rules.stuck_value is not None:
        if rules.stuck_value.readings is not None:
            kwargs["stuck_readings"] = int(rules.stuck_value.readings)
        if rules.stuck_value.exempt is not None:
            kwargs["stuck_exempt"] = frozenset(rules.stuck_value.exempt)
    if rules.clock_drift is not None and rules.clock_drift.tolerance_s is not None:
        kwargs["clock_drift_tolerance"] = timedelta(seconds=rules.clock_drift.tolerance_s)
    if rules.device_fault is not None and rules.device_fault.clear_after_readings is not None:
        kwargs["clear_after_readings"] = int(rules.device_fault.clear_after_readings)

    physical = {}
    for param, rng in (doc.physical_ranges or {}).items():
        value = PhysicalRange(rng.min, rng.max)
        if param == "default":
            kwargs["default_physical_range"] = value
        else:
            physical[param] = value
    engine = EngineConfig(
        physical_ranges=physical, severities=severities, enabled=frozenset(enabled), **kwargs
    )
    return AlertsConfig(engine=engine, notifications=doc.notifications, source=source, lines=lines)


def load_alerts_config(path: Path) -> AlertsConfig:
    data, lines = read_yaml_file(path, AlertConfigError)
    return config_from_dict(data, str(path), lines)
