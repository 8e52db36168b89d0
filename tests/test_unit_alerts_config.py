"""Unit tests of quantrac.alerts.config: alerts.yaml to EngineConfig, errors as file:line: field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from quantrac.alerts.config import AlertConfigError, config_from_dict, load_alerts_config
from quantrac.alerts.model import Kind, Severity
from quantrac.core.config_files import ConfigError
from quantrac.core.settings import default_config_dir


def test_shipped_file_loads() -> None:
    config = load_alerts_config(default_config_dir() / "alerts.yaml")
    engine = config.engine
    assert engine.min_completeness == 0.75
    assert engine.stuck_exempt == frozenset({"Rain"})
    assert engine.clock_drift_tolerance == timedelta(seconds=120)
    assert engine.calibration_max == timedelta(minutes=120)
    assert engine.rebuild_hours == 34
    assert engine.physical_range("pH").maximum == 14
    assert engine.physical_range("NOx").minimum == 0
    assert config.notifications["channels"][0]["type"] == "mqtt"


def test_empty_file_is_the_defaults() -> None:
    engine = config_from_dict(None).engine
    assert engine.enabled == frozenset(Kind)
    assert engine.severity(Kind.EXCEEDANCE) is Severity.CRITICAL


def test_rules_set_severity_and_disable() -> None:
    engine = config_from_dict(
        {
            "rules": {
                "warning": {"severity": "info", "enabled": False},
                "stuck_value": {"readings": 5},
            }
        }
    ).engine
    assert engine.severity(Kind.WARNING) is Severity.INFO
    assert Kind.WARNING not in engine.enabled
    assert engine.stuck_readings == 5


def test_every_problem_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text(
        "evaluation:\n"
        "  warning_share: 2\n"
        "  local_utc_offset: '+25:00'\n"
        "rules:\n"
        "  stuk: {}\n"
        "  data_loss: {per_parameter: true, after_cadences: .nan}\n"
        "  exceedance: {severity: huge}\n"
        "physical_ranges:\n"
        "  pH: {min: 5, max: 1}\n"
        "  O2: {mn: 3}\n"
        "colour: red\n",
        encoding="utf-8",
    )
    with pytest.raises(AlertConfigError) as info:
        load_alerts_config(path)
    assert isinstance(info.value, ConfigError)
    assert [str(i) for i in info.value.issues] == [
        f"{path}:2: evaluation.warning_share: input should be less than or equal to 1",
        f"{path}:3: evaluation.local_utc_offset: UTC offset beyond ±14:00",
        f"{path}:5: rules.stuk: unknown alert kind (expected one of exceedance, warning, "
        "data_loss, device_fault, calibration, stuck_value, out_of_range, clock_drift)",
        f"{path}:9: physical_ranges.pH: min is above max",
        f"{path}:10: physical_ranges.O2.mn: unknown field (expected one of max, min)",
        f"{path}:11: colour: unknown field "
        "(expected one of evaluation, notifications, physical_ranges, rules)",
    ]


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"data_loss": {"after_cadences": 0.5}}, "rules.data_loss.after_cadences: input should be"),
        ({"data_loss": {"per_parameter": "yes"}}, "rules.data_loss.per_parameter: input should be"),
        ({"stuck_value": {"exempt": "Rain"}}, "rules.stuck_value.exempt: input should be"),
        ({"clock_drift": {"tolerance_s": True}}, "rules.clock_drift.tolerance_s: input should be"),
        ({"exceedance": {"readings": 3}}, "rules.exceedance.readings: unknown field"),
        ({"exceedance": {"severity": "huge"}}, "rules.exceedance.severity: input should be"),
    ],
)
def test_rule_errors(rules: dict[str, object], expected: str) -> None:
    with pytest.raises(AlertConfigError, match=f"^<memory>:1: {expected}"):
        config_from_dict({"rules": rules})


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(AlertConfigError, match="cannot read the file"):
        load_alerts_config(tmp_path / "none.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(AlertConfigError, match=r"bad.yaml:2: \(yaml\): invalid YAML"):
        load_alerts_config(path)
