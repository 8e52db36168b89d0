"""Scenario files and the scenario player: each episode does what it says, nothing else."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from quantrac.core.catalog import Catalog, load_catalog
from quantrac.core.config_files import ConfigError
from quantrac.core.contract import Reason
from quantrac.core.registry import Registry, Station, load_registry
from quantrac.core.settings import default_config_dir
from quantrac.core.time import VIETNAM
from quantrac.ingest.payloads import parse_payload
from quantrac.ingest.validation import TimeLimits, validate
from quantrac.simulator.fleet import synthetic_registry
from quantrac.simulator.run import RESENT_FOLDER, write_files
from quantrac.simulator.scenarios import (
    SCENARIO_KINDS,
    Message,
    ScenarioError,
    ScenarioPlayer,
    ScenarioSet,
    load_scenarios,
    parse_duration,
    scenarios_from_text,
)
from quantrac.simulator.values import station_readings

SCENARIOS = default_config_dir() / "scenarios"
START = datetime(2025, 3, 4, 1, 0, tzinfo=UTC)  # 08:00 in Vietnam
STEP = timedelta(minutes=5)
LIMITS = TimeLimits(future_margin=timedelta(seconds=300), retention=timedelta(days=730))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(default_config_dir() / "parameters.yaml")


@pytest.fixture(scope="module")
def shipped(catalog: Catalog) -> Registry:
    return load_registry(default_config_dir() / "stations.yaml", catalog)


def one(registry: Registry, station_id: str) -> Station:
    return registry.stations[station_id]


def play(
    text: str,
    registry: Registry,
    *,
    steps: int = 24,
    seed: int = 1,
    fmt: str = "json",
    finish: bool = True,
) -> list[Message]:
    """Every station due every 5 minutes from START; what would be published, in order."""
    player = ScenarioPlayer(
        scenarios_from_text(text, "t.yaml", registry), seed=seed, origin=START, fmt=fmt
    )
    out: list[Message] = []
    for step in range(steps):
        for seq, station in enumerate(registry.stations.values()):
            out += player.emit(station, START + step * STEP, seq=step * 100 + seq)
    return out + (player.finish() if finish else [])


def window(messages: list[Message], station_id: str, first: int, last: int) -> list[Message]:
    """The messages of a station measured in steps first … last-1."""
    low, high = START + first * STEP, START + last * STEP
    return [m for m in messages if m.station.id == station_id and low <= m.moment < high]


def values_of(messages: list[Message], param: str) -> list[float]:
    return [r.value for m in messages for r in m.readings if r.param == param]


def statuses_of(messages: list[Message], param: str) -> set[str]:
    return {r.status for m in messages for r in m.readings if r.param == param}


def verdict(message: Message, registry: Registry, catalog: Catalog, fmt: str = "json") -> set[str]:
    parsed = parse_payload(message.encode(fmt), max_bytes=1 << 18, local=VIETNAM)
    result = validate(
        parsed,
        topic_station=message.station.id,
        registry=registry,
        catalog=catalog,
        now=message.moment + timedelta(seconds=1),
        limits=LIMITS,
    )
    return {p.reason.value for p in result.problems}


# --- Files ----------------------------------------------------------------------------------------


def test_every_shipped_scenario_file_fits_the_shipped_fleet(shipped: Registry) -> None:
    files = sorted(SCENARIOS.glob("*.yaml"))
    assert len(files) >= 15
    kinds = set()
    for path in files:
        loaded = load_scenarios(path, shipped)
        assert loaded.scenarios, path
        kinds |= {s.kind for s in loaded.scenarios}
    assert kinds == set(SCENARIO_KINDS)


def test_kind_wide_scenario_files_also_fit_synthetic_fleets(catalog: Catalog) -> None:
    for path in sorted(SCENARIOS.glob("*.yaml")):
        if path.name.startswith("demo"):  # the demo's own fleet
            continue
        loaded = load_scenarios(path)
        kinds = {s.station_kind for s in loaded.scenarios} - {None}
        for kind in kinds or {"air"}:
            load_scenarios(path, synthetic_registry(2, str(kind), catalog))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90", 90),
        ("90s", 90),
        ("10m", 600),
        ("10 min", 600),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1d", 86400),
        ("-5m", -300),
        ("1.5h", 5400),
    ],
)
def test_durations(text: str, expected: float) -> None:
    value = int(text) if text.isdigit() else text
    assert parse_duration(value) == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["", "10x", "h", "10m garbage", "m10", "1h 2", "nan"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("  - kind: flood\n", 2, "'kind' is one of exceedance, weather"),
        ("  - kind: outage\n    colour: red\n", 3, "colour: unknown field (expected one of"),
        ("  - kind: outage\n    start: soon\n", 3, "not a duration"),
        ("  - kind: outage\n    station: NOPE\n", 3, "not in the registry"),
        ("  - kind: exceedance\n    station: BG_AIR_01\n    param: COD\n", 4, "declared for none"),
        ("  - kind: exceedance\n    station: BG_AIR_01\n", 2, "needs 'param'"),
        ("  - kind: outage\n    start: 1h\n    end: 30m\n", 4, "must be after start"),
        ("  - kind: outage\n    duration: 1h\n    end: 2h\n", 4, "not both"),
        ("  - kind: duplicates\n    probability: 1.5\n", 3, "less than or equal to 1"),
        ("  - kind: malformed\n    how: shredded\n", 3, "input should be 'truncated'"),
        ("  - kind: clock_drift\n", 2, "needs 'offset'"),
        ("  - kind: out_of_order\n    group: 1\n", 3, "greater than or equal to 2"),
    ],
)
def test_scenario_errors_name_file_line_and_field(
    shipped: Registry, body: str, line: int, fragment: str
) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenarios_from_text("scenarios:\n" + body, "bad.yaml", shipped)
    issues = [str(issue) for issue in caught.value.issues]
    assert any(i.startswith(f"bad.yaml:{line}:") and fragment in i for i in issues), issues


BAD_FILE = """\
description: broken on purpose
scenarios:
  - kind: outage
    station: BG_AIR_03
    start: 10m
    colour: red
  - kind: exceedance
    station: BG_WW_SONGKHE
    param: COD
    factor: lots
  - kind: stuck
    station: BG_WW_SONGKHE
    param: pH
    start: tomorrow
  - {kind: outage, duration: 1h, end: 2h}
  - kind: teleport
  - kind: backlog
    station: BG_NOWHERE
  - kind: missing
    station: BG_AIR_01
    param: pm25
  - kind: out_of_order
    group: "3"
"""


def test_a_bad_file_gives_every_problem_as_file_line_field(shipped: Registry) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenarios_from_text(BAD_FILE, "bad.yaml", shipped)
    assert [str(issue) for issue in caught.value.issues] == [
        "bad.yaml:6: scenarios[0].colour: unknown field (expected one of duration, end, kind, "
        "name, start, station, station_kind, stations)",
        "bad.yaml:10: scenarios[1].factor: input should be a valid number",
        "bad.yaml:14: scenarios[2].start: 'tomorrow' is not a duration such as 10m, 2h, 1h30m "
        "or 90s",
        "bad.yaml:15: scenarios[3].end: give 'duration' or 'end', not both",
        "bad.yaml:16: scenarios[4]: each scenario is a mapping whose 'kind' is one of "
        "exceedance, weather, stuck, missing, wrong_unit, calibration, fault, bad_status, "
        "outage, backlog, duplicates, out_of_order, malformed, clock_drift",
        "bad.yaml:18: scenarios[5].station: station 'BG_NOWHERE' is not in the registry",
        "bad.yaml:21: scenarios[6].param: 'pm25' is declared for none of the stations it "
        "targets (use the registry's canonical code, e.g. PM2,5)",
        "bad.yaml:23: scenarios[7].group: input should be a valid integer",
    ]
    assert str(caught.value) == "\n".join(str(i) for i in caught.value.issues)


def test_without_a_registry_only_the_file_itself_is_checked() -> None:
    loaded = scenarios_from_text("scenarios:\n  - {kind: backlog, station: BG_NOWHERE}\n", "t.yaml")
    assert loaded.scenarios[0].stations == ("BG_NOWHERE",)


def test_a_scenario_error_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_scenarios(tmp_path / "absent.yaml")
    ((issue),) = caught.value.issues
    assert (issue.line, issue.field) == (1, "(file)")
    assert isinstance(caught.value, ScenarioError)
    assert issue.message.startswith("cannot read the file")


def test_a_file_without_scenarios_is_refused() -> None:
    with pytest.raises(ScenarioError, match="'scenarios:'"):
        scenarios_from_text("description: nothing\n")
    with pytest.raises(ScenarioError, match="yaml"):
        scenarios_from_text("scenarios: [\n")
    with pytest.raises(ScenarioError) as caught:
        scenarios_from_text("scenarios: []\nowner: me\n", "t.yaml")
    assert [str(i) for i in caught.value.issues] == [
        "t.yaml:2: owner: unknown field (expected one of description, scenarios)"
    ]


# --- Determinism ----------------------------------------------------------------------------------


def test_runs_are_deterministic_under_a_seed(shipped: Registry) -> None:
    text = (SCENARIOS / "demo.yaml").read_text(encoding="utf-8")
    text += (
        "  - {kind: duplicates, probability: 0.3}\n"
        "  - {kind: malformed, probability: 0.2}\n"
        "  - {kind: weather, station_kind: air, start: 0m, duration: 2h}\n"
    )

    def run(seed: int) -> list[bytes]:
        return [m.encode("json") for m in play(text, shipped, seed=seed)]

    first = run(7)
    assert first == run(7)
    assert first != run(8)


# --- Each scenario does what it says --------------------------------------------------------------


def test_outage_publishes_nothing_in_its_window(shipped: Registry) -> None:
    text = "scenarios:\n  - {kind: outage, station: BG_AIR_03, start: 30m, duration: 1h}\n"
    out = play(text, shipped)
    assert len(window(out, "BG_AIR_03", 0, 6)) == 6
    assert window(out, "BG_AIR_03", 6, 18) == []
    assert len(window(out, "BG_AIR_03", 18, 24)) == 6
    assert len(window(out, "BG_AIR_01", 0, 24)) == 24  # the others are untouched


def test_calibration_sends_status_01_only_for_its_parameters(shipped: Registry) -> None:
    text = (
        "scenarios:\n  - {kind: calibration, station: BG_WW_DINHTRAM, params: [COD, TSS],"
        " start: 10m, duration: 20m}\n"
    )
    out = play(text, shipped)
    inside = window(out, "BG_WW_DINHTRAM", 2, 6)
    assert statuses_of(inside, "COD") == statuses_of(inside, "TSS") == {"01"}
    assert statuses_of(inside, "pH") == {"00"}
    assert statuses_of(window(out, "BG_WW_DINHTRAM", 6, 24), "COD") == {"00"}
    assert statuses_of(window(out, "BG_WW_DINHTRAM", 0, 2), "COD") == {"00"}


def test_fault_sends_status_02(shipped: Registry, catalog: Catalog) -> None:
    out = play((SCENARIOS / "fault.yaml").read_text(encoding="utf-8"), shipped)
    inside = window(out, "BG_EM_HABAC_01", 4, 16)
    assert statuses_of(inside, "SO2") == {"02"}
    assert statuses_of(inside, "NOx") == {"00"}
    assert statuses_of(window(out, "BG_EM_HABAC_01", 16, 24), "SO2") == {"00"}
    # A fault is a valid status: stored, not rejected.
    assert verdict(inside[0], shipped, catalog) == set()


def test_exceedance_holds_the_value_asked_for(shipped: Registry) -> None:
    out = play((SCENARIOS / "demo.yaml").read_text(encoding="utf-8"), shipped)
    # From the first reading: it goes on from the replayed history (demo-history.yaml).
    cod = values_of(window(out, "BG_WW_SONGKHE", 0, 24), "COD")
    assert all(150 <= v <= 210 for v in cod)
    assert 170 <= statistics.mean(cod) <= 190
    history = (SCENARIOS / "demo-history.yaml").read_text(encoding="utf-8")
    out = play(history, shipped, steps=48)  # 4 h at 5 min: normal for 3 h, then exceeding
    assert statistics.mean(values_of(window(out, "BG_WW_SONGKHE", 0, 36), "COD")) < 75
    assert min(values_of(window(out, "BG_WW_SONGKHE", 36, 48), "COD")) > 150


def test_exceedance_by_factor_multiplies_the_model(shipped: Registry) -> None:
    text = (
        "scenarios:\n  - {kind: exceedance, station: BG_WW_QUANGCHAU, param: COD, factor: 3,"
        " start: 0m}\n"
    )
    out = play(text, shipped, steps=3)
    for message in window(out, "BG_WW_QUANGCHAU", 0, 3):
        model = {r.param: r.value for r in station_readings(message.station, message.moment, 1)}
        sent = {r.param: r.value for r in message.readings}
        assert sent["COD"] == pytest.approx(3 * model["COD"], rel=0.01)
        assert sent["TSS"] == model["TSS"]


def test_weather_episode_builds_up_and_clears(shipped: Registry) -> None:
    text = "scenarios:\n  - {kind: weather, station_kind: air, start: 0m, duration: 2h}\n"
    out = play(text, shipped, steps=24)
    for step, expected in ((0, 1.0), (12, 2.0)):
        [message] = window(out, "BG_AIR_01", step, step + 1)
        model = {r.param: r.value for r in station_readings(message.station, message.moment, 1)}
        sent = {r.param: r.value for r in message.readings}
        assert sent["PM10"] == pytest.approx(expected * model["PM10"], rel=0.01)
        assert sent["O3"] == model["O3"]  # not raised by default
        assert sent["PM2,5"] < sent["PM10"]  # still ordered


def test_stuck_sensor_repeats_one_value(shipped: Registry) -> None:
    out = play((SCENARIOS / "stuck.yaml").read_text(encoding="utf-8"), shipped)
    assert len(set(values_of(window(out, "BG_WW_CITY", 2, 24), "pH"))) == 1
    assert len(set(values_of(window(out, "BG_WW_CITY", 2, 24), "Temp"))) > 1


def test_missing_parameter_disappears(shipped: Registry) -> None:
    out = play((SCENARIOS / "missing.yaml").read_text(encoding="utf-8"), shipped)
    inside = window(out, "BG_WW_SONGKHE", 2, 14)
    assert values_of(inside, "NH4") == [] and len(values_of(inside, "COD")) == 12
    assert len(values_of(window(out, "BG_WW_SONGKHE", 14, 24), "NH4")) == 10


def test_wrong_unit_is_rejected_by_ingest(shipped: Registry, catalog: Catalog) -> None:
    out = play((SCENARIOS / "wrong-unit.yaml").read_text(encoding="utf-8"), shipped)
    inside = window(out, "BG_WW_SONGKHE", 2, 14)
    assert {r.unit for m in inside for r in m.readings if r.param == "TSS"} == {"mg/m3"}
    assert verdict(inside[0], shipped, catalog) == {Reason.UNIT_MISMATCH.value}
    assert verdict(window(out, "BG_WW_SONGKHE", 0, 1)[0], shipped, catalog) == set()


def test_default_wrong_units_are_refused_for_every_dimension(
    shipped: Registry, catalog: Catalog
) -> None:
    text = "scenarios:\n  - {kind: wrong_unit, station: BG_EM_HABAC_01, params: [Flow, Temp, PM]}\n"
    [message] = window(play(text, shipped, steps=1), "BG_EM_HABAC_01", 0, 1)
    parsed = parse_payload(message.encode("json"), max_bytes=1 << 18, local=VIETNAM)
    result = validate(
        parsed,
        topic_station=message.station.id,
        registry=shipped,
        catalog=catalog,
        now=message.moment,
        limits=LIMITS,
    )
    assert sorted(p.field for p in result.problems) == [
        "readings[0].unit",
        "readings[1].unit",
        "readings[4].unit",
    ]
    assert {p.reason for p in result.problems} <= {Reason.UNIT_MISMATCH, Reason.UNIT_UNKNOWN}
    assert len(result.readings) == 5


def test_bad_status_code_is_rejected(shipped: Registry, catalog: Catalog) -> None:
    out = play((SCENARIOS / "bad-status.yaml").read_text(encoding="utf-8"), shipped)
    inside = window(out, "BG_EM_XIMANG_01", 2, 8)
    assert statuses_of(inside, "CO") == {"03"}
    assert verdict(inside[0], shipped, catalog) == {Reason.STATUS_INVALID.value}


def test_backlog_is_held_then_uploaded_late_in_order(shipped: Registry) -> None:
    text = "scenarios:\n  - {kind: backlog, station: BG_WW_CITY, start: 30m, duration: 30m}\n"
    out = play(text, shipped, finish=False)
    city = [m for m in out if m.station.id == "BG_WW_CITY"]
    assert len(city) == 24  # nothing lost
    moments = [m.moment for m in city]
    # Steps 6-11 were held and come out just before step 12, oldest first.
    assert moments[:6] == [START + i * STEP for i in range(6)]
    assert moments[6:13] == [START + i * STEP for i in range(6, 13)]
    position = {id(m): n for n, m in enumerate(out)}
    step_5 = city[5]
    step_6 = city[6]
    # Between step 5 and the release, other stations published whole rounds.
    assert position[id(step_6)] - position[id(step_5)] > 6 * (len(shipped.stations) - 1)


def test_backlog_still_held_at_the_end_is_released_by_finish(shipped: Registry) -> None:
    text = "scenarios:\n  - {kind: backlog, station: BG_WW_CITY, start: 1h}\n"
    held = play(text, shipped, finish=False)
    released = play(text, shipped, finish=True)
    assert len(released) - len(held) == 12
    assert [m.moment for m in released[-12:]] == [START + i * STEP for i in range(12, 24)]


def test_duplicates_send_the_same_bytes_twice(shipped: Registry) -> None:
    text = "scenarios:\n  - {kind: duplicates, station: BG_AIR_01}\n"
    out = window(play(text, shipped), "BG_AIR_01", 0, 24)
    assert len(out) == 48
    assert all(
        a.encode("json") == b.encode("json") for a, b in zip(out[::2], out[1::2], strict=True)
    )
    sometimes = play((SCENARIOS / "duplicates.yaml").read_text(encoding="utf-8"), shipped)
    share = (len(sometimes) - 24 * len(shipped.stations)) / (24 * len(shipped.stations))
    assert 0.1 < share < 0.3


def test_out_of_order_reverses_groups(shipped: Registry) -> None:
    text = (
        "scenarios:\n  - {kind: out_of_order, station: BG_AIR_02, start: 0m, duration: 40m,"
        " group: 3}\n"
    )
    out = window(play(text, shipped), "BG_AIR_02", 0, 24)
    steps = [int((m.moment - START) / STEP) for m in out]
    assert steps[:9] == [2, 1, 0, 5, 4, 3, 7, 6, 8]  # 6-7 left over when the window closed
    assert sorted(steps) == list(range(24))


@pytest.mark.parametrize(
    ("how", "fmt", "reason"),
    [
        ("truncated", "json", Reason.PAYLOAD_SYNTAX),
        ("truncated", "tt10", Reason.LINE_SYNTAX),
        ("not_utf8", "json", Reason.PAYLOAD_ENCODING),
        ("not_utf8", "tt10", Reason.PAYLOAD_ENCODING),
        ("value_as_text", "json", Reason.VALUE_NOT_NUMBER),
        ("value_as_text", "tt10", Reason.VALUE_NOT_NUMBER),
    ],
)
def test_malformed_payloads_fail_as_ingest_says(
    shipped: Registry, catalog: Catalog, how: str, fmt: str, reason: Reason
) -> None:
    text = f"scenarios:\n  - {{kind: malformed, station: BG_AIR_01, how: {how}}}\n"
    out = window(play(text, shipped, steps=2, fmt=fmt), "BG_AIR_01", 0, 2)
    assert all(m.malformed == how for m in out)
    assert reason.value in verdict(out[0], shipped, catalog, fmt)


def test_malformed_probability_breaks_about_that_share(shipped: Registry) -> None:
    out = play((SCENARIOS / "malformed.yaml").read_text(encoding="utf-8"), shipped, steps=40)
    share = sum(m.malformed is not None for m in out) / len(out)
    assert 0.05 < share < 0.16


def test_clock_drift_moves_the_stamp_not_the_values(shipped: Registry) -> None:
    out = play((SCENARIOS / "clock-drift.yaml").read_text(encoding="utf-8"), shipped, steps=13)
    stack = window(out, "BG_EM_HABAC_01", 0, 13)
    assert stack[0].stamp - stack[0].moment == timedelta(minutes=2)
    assert stack[12].stamp - stack[12].moment == timedelta(minutes=3)  # an hour later
    assert stack[12].readings == station_readings(stack[12].station, stack[12].moment, 1)
    air = window(out, "BG_AIR_01", 0, 13)
    assert all(m.stamp == m.moment for m in air)
    assert b'"time":"2025-03-04T09:03:00+07:00"' in stack[12].encode("json")


def test_effects_are_counted(shipped: Registry) -> None:
    text = (SCENARIOS / "demo.yaml").read_text(encoding="utf-8")
    player = ScenarioPlayer(scenarios_from_text(text, "demo", shipped), seed=1, origin=START)
    for step in range(24):
        for station in shipped.stations.values():
            player.emit(station, START + step * STEP)
    assert player.effects == Counter(
        {"exceedance": 24, "outage": 12, "fault": 9, "calibration": 2 * 4}
    )


def test_demo_scenario_shows_all_three_episodes_within_minutes(shipped: Registry) -> None:
    out = play((SCENARIOS / "demo.yaml").read_text(encoding="utf-8"), shipped, steps=3)
    assert min(values_of(window(out, "BG_WW_SONGKHE", 1, 3), "COD")) > 2 * 75 * 0.9
    assert window(out, "BG_AIR_03", 1, 3) == []
    assert statuses_of(window(out, "BG_EM_XIMANG_01", 1, 3), "SO2") == {"02"}


def test_no_scenario_changes_nothing(shipped: Registry) -> None:
    player = ScenarioPlayer(ScenarioSet(()), seed=1)
    for station in shipped.stations.values():
        [message] = player.emit(station, START, seq=3)
        assert message.readings == station_readings(station, START, 1)
        assert message.stamp == message.moment == START


# --- TT10 files -----------------------------------------------------------------------------------


def test_files_follow_the_scenarios(tmp_path: Path, catalog: Catalog) -> None:
    registry = synthetic_registry(2, "air", catalog)
    text = (
        "scenarios:\n"
        "  - {kind: outage, station: SIM_AIR_0001, start: 10m, duration: 20m}\n"
        "  - {kind: duplicates, station: SIM_AIR_0002, start: 0m, duration: 10m}\n"
        "  - {kind: calibration, station: SIM_AIR_0002, start: 30m}\n"
    )
    scenarios = scenarios_from_text(text, "t", registry)
    start = datetime(2025, 3, 4, 8, 0, tzinfo=VIETNAM)
    written = write_files(tmp_path, registry, start, start + timedelta(minutes=55), 1, scenarios)
    first = sorted(p.name for p in written if "AIR0001" in p.name)
    assert len(first) == 12 - 4  # 08:10, 08:15, 08:20, 08:25 missing
    assert "BacNinh_SIM_AIR0001_20250304081000.txt" not in first
    resent = sorted(p.name for p in (tmp_path / RESENT_FOLDER).iterdir())
    assert resent == [
        "BacNinh_SIM_AIR0002_20250304080000.txt",
        "BacNinh_SIM_AIR0002_20250304080500.txt",
    ]
    late = (tmp_path / "BacNinh_SIM_AIR0002_20250304083000.txt").read_text()
    assert {line.split("\t")[4] for line in late.splitlines()} == {"01"}
