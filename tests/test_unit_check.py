"""The conformance check's pure logic: a good stream passes, each kind of bad one fails the
right criterion (and only warns where the contract allows it)."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from quantrac.cli.check import CaptureError, parse_capture, read_folder, write_capture
from quantrac.conformance.checks import (
    CRITERIA,
    FAIL,
    FILE,
    NOT_APPLICABLE,
    PASS,
    RULE_CRITERION,
    WARN,
    Captured,
    Report,
    check_station,
)
from quantrac.conformance.report import render_html, render_json, render_table, report_json
from quantrac.core.catalog import Catalog, load_catalog
from quantrac.core.contract import data_topic
from quantrac.core.i18n import default_messages, format_number, translate
from quantrac.core.registry import Registry, load_registry
from quantrac.core.settings import default_config_dir
from quantrac.core.time import VIETNAM
from quantrac.ingest.validation import TimeLimits
from quantrac.simulator.encode import tt10_file_name
from quantrac.simulator.run import write_files
from quantrac.simulator.scenarios import ScenarioPlayer, scenarios_from_text

START = datetime(2025, 3, 4, 1, 0, tzinfo=UTC)
LIMITS = TimeLimits(future_margin=timedelta(seconds=300), retention=timedelta(days=730))
WW = "BG_WW_SONGKHE"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(default_config_dir() / "parameters.yaml")


@pytest.fixture(scope="module")
def registry(catalog: Catalog) -> Registry:
    return load_registry(default_config_dir() / "stations.yaml", catalog)


def stream(
    registry: Registry,
    station_id: str = WW,
    scenario: str | None = None,
    *,
    steps: int = 12,
    fmt: str = "json",
    latency: float = 2.0,
    cadence: int = 300,
) -> list[Captured]:
    """What the station publishes every ``cadence`` s, each message received ``latency`` s
    after it was due (so a released backlog is received at its release time)."""
    station = registry.stations[station_id]
    scenarios = None
    if scenario:
        scenarios = scenarios_from_text(f"scenarios:\n  - {scenario}\n", "t", registry)
    player = ScenarioPlayer(scenarios, seed=3, origin=START, fmt=fmt)
    out = []
    due = START
    for step in range(steps):
        due = START + timedelta(seconds=step * cadence)
        for n, message in enumerate(player.emit(station, due, seq=step)):
            received = due + timedelta(seconds=latency + 0.01 * n)
            out.append(Captured(received, data_topic(station_id), message.encode(fmt)))
    for n, message in enumerate(player.finish()):
        received = due + timedelta(seconds=latency + 1 + 0.01 * n)
        out.append(Captured(received, data_topic(station_id), message.encode(fmt)))
    return out


def judge(
    registry: Registry, catalog: Catalog, captured: list[Captured], station_id: str = WW
) -> Report:
    return check_station(
        registry.stations[station_id],
        captured,
        registry=registry,
        catalog=catalog,
        local=VIETNAM,
        time_limits=LIMITS,
    )


def verdicts(report: Report) -> dict[str, str]:
    return {c.id: c.verdict for c in report.criteria}


def failing(report: Report) -> set[str]:
    return {c.id for c in report.criteria if c.verdict == FAIL}


# --- Good streams ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "tt10"])
@pytest.mark.parametrize("station_id", ["BG_WW_SONGKHE", "BG_AIR_01", "BG_EM_HABAC_01"])
def test_a_good_stream_passes_every_criterion(
    registry: Registry, catalog: Catalog, station_id: str, fmt: str
) -> None:
    report = judge(registry, catalog, stream(registry, station_id, fmt=fmt), station_id)
    assert verdicts(report) == {
        **dict.fromkeys(CRITERIA, PASS),
        "file_names": NOT_APPLICABLE,
    }
    assert report.passed and report.verdict == PASS
    assert report.messages == 12
    assert report.readings == 12 * len(registry.stations[station_id].parameters)


def test_other_stations_on_a_shared_capture_are_ignored(
    registry: Registry, catalog: Catalog
) -> None:
    mixed = stream(registry) + stream(registry, "BG_AIR_01")
    report = judge(registry, catalog, mixed)
    assert report.passed and report.messages == 12 and report.ignored == 12


def test_domestic_wastewater_may_send_bod5_instead_of_cod(
    registry: Registry, catalog: Catalog
) -> None:
    report = judge(registry, catalog, stream(registry, "BG_WW_CITY"), "BG_WW_CITY")
    assert report.verdict == PASS


# --- Each kind of bad stream ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "criterion"),
    [
        ("{kind: malformed, probability: 0.5}", "syntax"),
        ("{kind: malformed, how: not_utf8, start: 20m}", "syntax"),
        ("{kind: malformed, how: value_as_text}", "syntax"),
        ("{kind: missing, param: NH4, start: 30m}", "parameters"),
        ("{kind: wrong_unit, param: TSS}", "units"),
        ("{kind: bad_status, param: COD, start: 20m}", "status"),
        ("{kind: outage, start: 20m, duration: 15m}", "cadence"),
        ("{kind: clock_drift, offset: 3m}", "clock"),
        ("{kind: clock_drift, offset: -10m}", "clock"),
        ("{kind: duplicates}", "duplicates"),
        ("{kind: backlog, start: 20m, duration: 20m}", "late"),
        ("{kind: stuck, param: pH}", "values"),
        ("{kind: exceedance, param: pH, value: 15.5}", "values"),
        ("{kind: exceedance, param: COD, value: -20}", "values"),
    ],
)
def test_each_bad_stream_fails_its_criterion(
    registry: Registry, catalog: Catalog, scenario: str, criterion: str
) -> None:
    report = judge(registry, catalog, stream(registry, scenario=scenario))
    assert criterion in failing(report), verdicts(report)
    assert not report.passed
    result = report.criterion(criterion)
    bad = [f for f in result.findings if f.severity == FAIL]
    assert bad and all(f.fix is not None for f in bad)
    assert bad[0].examples and bad[0].examples[0].payload


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("{kind: malformed, probability: 0.5}", {"syntax"}),
        ("{kind: missing, param: NH4, start: 30m}", {"parameters"}),
        ("{kind: wrong_unit, param: TSS}", {"units"}),
        ("{kind: bad_status, param: COD, start: 20m}", {"status"}),
        ("{kind: outage, start: 20m, duration: 15m}", {"cadence"}),
        ("{kind: clock_drift, offset: -10m}", {"clock"}),
        ("{kind: duplicates}", {"duplicates"}),
        ("{kind: backlog, start: 20m, duration: 20m}", {"late"}),
        ("{kind: stuck, param: pH}", {"values"}),
    ],
)
def test_a_bad_stream_fails_nothing_else(
    registry: Registry, catalog: Catalog, scenario: str, expected: set[str]
) -> None:
    report = judge(registry, catalog, stream(registry, scenario=scenario))
    assert failing(report) == expected, verdicts(report)


def test_nothing_received_fails_and_judges_nothing_else(
    registry: Registry, catalog: Catalog
) -> None:
    report = judge(registry, catalog, [])
    assert verdicts(report) == {"syntax": FAIL, **dict.fromkeys(CRITERIA[1:], NOT_APPLICABLE)}
    assert report.criterion("syntax").summary.key == "check.bad.nothing"


def test_an_undeclared_parameter_fails_parameters(registry: Registry, catalog: Catalog) -> None:
    captured = stream(registry, steps=3)
    body = json.loads(captured[1].payload)
    body["readings"].append({"param": "Zn", "value": 0.2, "unit": "mg/L"})
    body["readings"].append({"param": "XYZ", "value": 1, "unit": "mg/L"})
    captured[1] = dataclasses.replace(captured[1], payload=json.dumps(body).encode())
    report = judge(registry, catalog, captured)
    rules = {f.what.params.get("rule") for f in report.criterion("parameters").findings}
    assert rules == {"param_not_declared", "param_unknown"}


def test_a_required_parameter_the_registry_lacks_fails(
    registry: Registry, catalog: Catalog
) -> None:
    station = registry.stations["BG_AIR_01"]
    reduced = dataclasses.replace(
        station, parameters={k: v for k, v in station.parameters.items() if k != "O3"}
    )
    small = Registry({**registry.stations, "BG_AIR_01": reduced})
    captured = stream(small, "BG_AIR_01")
    report = judge(small, catalog, captured, "BG_AIR_01")
    [finding] = report.criterion("parameters").findings
    assert finding.what.key == "check.finding.required_not_declared"
    assert finding.what.params == {"params": "O3"}


@pytest.mark.parametrize(
    ("scenario", "key"),
    [
        ("{kind: calibration, start: 20m, duration: 10m}", "check.finding.status_01"),
        ("{kind: fault, param: SO2, start: 20m}", "check.finding.status_02"),
    ],
)
def test_calibration_and_fault_are_warnings_not_failures(
    registry: Registry, catalog: Catalog, scenario: str, key: str
) -> None:
    report = judge(
        registry, catalog, stream(registry, "BG_EM_HABAC_01", scenario), "BG_EM_HABAC_01"
    )
    assert report.verdict == WARN and report.passed
    [finding] = report.criterion("status").findings
    assert finding.what.key == key and finding.severity == WARN and finding.count > 0


def test_cadence_over_five_minutes_fails(registry: Registry, catalog: Catalog) -> None:
    report = judge(registry, catalog, stream(registry, cadence=600))
    keys = {f.what.key for f in report.criterion("cadence").findings}
    assert "check.finding.over_5_minutes" in keys


def test_cadence_slower_than_declared_fails(registry: Registry, catalog: Catalog) -> None:
    station = dataclasses.replace(registry.stations[WW], cadence_s=60)
    fast = Registry({**registry.stations, WW: station})
    report = judge(fast, catalog, stream(fast, cadence=120))
    keys = {f.what.key for f in report.criterion("cadence").findings}
    assert keys == {"check.finding.slower", "check.finding.gap"}


def test_one_message_is_too_few_to_judge_cadence(registry: Registry, catalog: Catalog) -> None:
    report = judge(registry, catalog, stream(registry, steps=1))
    assert verdicts(report)["cadence"] == FAIL
    assert report.criterion("cadence").findings[0].what.key == "check.finding.too_few"


def test_irregular_sending_is_a_jitter_warning(registry: Registry, catalog: Catalog) -> None:
    captured = stream(registry)
    captured[5] = dataclasses.replace(
        captured[5], received_at=captured[5].received_at + timedelta(seconds=100)
    )
    report = judge(registry, catalog, captured)
    assert verdicts(report)["cadence"] == WARN
    assert report.criterion("cadence").findings[0].what.key == "check.finding.jitter"


def test_a_clock_beyond_the_margin_is_rejected_as_future(
    registry: Registry, catalog: Catalog
) -> None:
    report = judge(registry, catalog, stream(registry, scenario="{kind: clock_drift, offset: 10m}"))
    rules = {f.what.params.get("rule") for f in report.criterion("clock").findings}
    assert "time_in_future" in rules
    assert report.readings == 0


def test_one_resent_message_is_only_a_warning(registry: Registry, catalog: Catalog) -> None:
    captured = stream(registry, steps=60)  # one repeat in 61 messages: within 2 %
    captured.insert(4, dataclasses.replace(captured[3]))
    report = judge(registry, catalog, captured)
    assert verdicts(report)["duplicates"] == WARN
    assert report.criterion("duplicates").findings[0].what.key == "check.finding.repeat"
    captured.insert(8, dataclasses.replace(captured[7]))  # two: beyond
    assert verdicts(judge(registry, catalog, captured))["duplicates"] == FAIL


def test_a_changed_value_for_the_same_time_fails(registry: Registry, catalog: Catalog) -> None:
    captured = stream(registry)
    body = json.loads(captured[3].payload)
    body["readings"][0]["value"] += 1
    captured.insert(4, dataclasses.replace(captured[3], payload=json.dumps(body).encode()))
    report = judge(registry, catalog, captured)
    keys = {f.what.key for f in report.criterion("duplicates").findings}
    assert "check.finding.conflict" in keys and verdicts(report)["duplicates"] == FAIL


def test_out_of_order_is_a_warning(registry: Registry, catalog: Catalog) -> None:
    report = judge(registry, catalog, stream(registry, scenario="{kind: out_of_order, group: 2}"))
    assert verdicts(report)["late"] == WARN
    assert report.criterion("late").findings[0].what.key == "check.finding.out_of_order"


def test_nan_is_an_implausible_value(registry: Registry, catalog: Catalog) -> None:
    captured = stream(registry, fmt="tt10", steps=3)
    text = captured[1].payload.decode().replace("\tpH\t", "\tpH\t")
    lines = text.split("\r\n")
    fields = lines[2].split("\t")
    assert fields[0] == "pH"
    fields[1] = "NaN"
    lines[2] = "\t".join(fields)
    captured[1] = dataclasses.replace(captured[1], payload="\r\n".join(lines).encode())
    report = judge(registry, catalog, captured)
    assert "values" in failing(report)
    rules = {f.what.params.get("rule") for f in report.criterion("values").findings}
    assert rules == {"value_not_finite"}


def test_a_flow_of_zero_at_night_is_not_a_stuck_sensor(
    registry: Registry, catalog: Catalog
) -> None:
    report = judge(
        registry, catalog, stream(registry, scenario="{kind: exceedance, param: Flow, value: 0}")
    )
    assert verdicts(report)["values"] == PASS


# --- Files ----------------------------------------------------------------------------------------


def folder_of(tmp_path: Path, registry: Registry, scenario: str | None = None) -> list[Captured]:
    scenarios = (
        scenarios_from_text(f"scenarios:\n  - {scenario}\n", "t", registry) if scenario else None
    )
    start = START.astimezone(VIETNAM)
    write_files(tmp_path, registry, start, start + timedelta(minutes=55), 1, scenarios)
    return read_folder(tmp_path)


def test_a_good_folder_passes(tmp_path: Path, registry: Registry, catalog: Catalog) -> None:
    report = judge(registry, catalog, folder_of(tmp_path, registry))
    assert report.mode == FILE and report.passed
    assert report.messages == 12 and report.ignored == 12 * (len(registry.stations) - 1)
    assert verdicts(report)["file_names"] == PASS
    assert verdicts(report)["clock"] == verdicts(report)["late"] == NOT_APPLICABLE


def test_badly_named_files_fail_file_names(
    tmp_path: Path, registry: Registry, catalog: Catalog
) -> None:
    folder_of(tmp_path, registry)
    station = registry.stations[WW]
    good = tmp_path / tt10_file_name(station, START + timedelta(minutes=10))
    good.rename(tmp_path / "SongKhe 2025-03-04 08-10.txt")
    late = tmp_path / tt10_file_name(station, START + timedelta(minutes=20))
    late.rename(tmp_path / tt10_file_name(station, START + timedelta(minutes=50, seconds=1)))
    report = judge(registry, catalog, read_folder(tmp_path))
    findings = report.criterion("file_names").findings
    assert {f.what.key for f in findings} == {"check.finding.rule", "check.finding.name_time"}
    assert failing(report) == {"file_names"}


def test_a_resent_file_is_a_duplicate(tmp_path: Path, registry: Registry, catalog: Catalog) -> None:
    captured = folder_of(tmp_path, registry, f"{{kind: duplicates, station: {WW}}}")
    report = judge(registry, catalog, captured)
    assert "duplicates" in failing(report)
    assert any("resent/" in c.source for c in captured)


# --- Reports --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_report(registry: Registry, catalog: Catalog) -> Report:
    captured = stream(registry, scenario="{kind: wrong_unit, param: TSS}")
    captured += stream(registry, scenario="{kind: malformed, how: not_utf8, start: 50m}")[-2:]
    return judge(registry, catalog, captured)


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_table_names_every_criterion_with_example_and_fix(bad_report: Report, lang: str) -> None:
    text = render_table(bad_report, lang)
    for criterion in CRITERIA:
        assert translate(f"check.criterion.{criterion}", lang) in text
    assert translate("check.fix.unit_mismatch", lang) in text
    assert "mg/m3" in text
    assert translate("check.overall.fail", lang) in text
    assert "\x1b[" not in text and "\x1b[31m" in render_table(bad_report, lang, color=True)


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_html_is_self_contained_and_escaped(bad_report: Report, lang: str) -> None:
    page = render_html(bad_report, lang, generated_at=START)
    assert page.startswith("<!DOCTYPE html>") and f'<html lang="{lang}">' in page
    assert "<style>" in page and not re.search(r"(src|href)=", page)
    assert translate("check.fix.unit_mismatch", lang) in page
    assert "&quot;unit&quot;:&quot;mg/m3&quot;" in page  # the example, escaped
    assert translate("check.overall.fail", lang) in page


def test_json_report_carries_keys_texts_and_examples(bad_report: Report) -> None:
    body = json.loads(render_json(bad_report, "en"))
    assert body == report_json(bad_report, "en")
    assert body["verdict"] == "fail" and body["passed"] is False
    units = next(c for c in body["criteria"] if c["id"] == "units")
    finding = units["findings"][0]
    assert finding["what"]["params"]["rule"] == "unit_mismatch"
    assert finding["fix"]["text"] == translate("check.fix.unit_mismatch", "en")
    assert finding["examples"][0]["source"] == data_topic(WW)
    syntax = next(c for c in body["criteria"] if c["id"] == "syntax")
    assert syntax["findings"][0]["what"]["params"]["rule"] == "payload_encoding"


def test_every_check_key_has_both_languages_and_every_rule_a_fix() -> None:
    table = default_messages()
    for key, entry in table.items():
        if key.startswith("check."):
            assert entry["vi"].strip() and entry["en"].strip(), key
    for reason in RULE_CRITERION:
        assert f"check.fix.{reason.value}" in table
    used = set()
    conformance = Path(__file__).parents[1] / "quantrac" / "conformance"
    for module in ("checks", "report"):
        source = (conformance / f"{module}.py").read_text()
        used |= set(re.findall(r'"(check\.[a-z0-9_.]+[a-z0-9_])"', source))
    assert used and used <= set(table), used - set(table)


# --- Capture files --------------------------------------------------------------------------------


def test_capture_files_round_trip(tmp_path: Path) -> None:
    items = [
        Captured(START, "stations/X/data", b'{"station":"X"}'),
        Captured(START + timedelta(seconds=1), "stations/X/data", b"\xff\xfe garbage"),
        Captured(START, "a/b/X_Y_Z_20250304080000.txt", "PM10\t1\tµg/m3".encode(), FILE),
    ]
    path = tmp_path / "capture.jsonl"
    write_capture(path, items)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert "payload_base64" in lines[1] and '"file"' in lines[2]
    assert parse_capture(path.read_text(encoding="utf-8")) == items


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        '{"topic": "t", "payload": "x"}',
        '{"received_at": "2025-03-04T01:00:00", "topic": "t", "payload": "x"}',
        '{"received_at": "2025-03-04T01:00:00Z", "payload": "x"}',
        '{"received_at": "2025-03-04T01:00:00Z", "topic": "t", "payload_base64": "%%"}',
    ],
)
def test_bad_capture_lines_name_their_line(line: str) -> None:
    good = '{"received_at": "2025-03-04T01:00:00+00:00", "topic": "t", "payload": "x"}'
    with pytest.raises(CaptureError, match=r"^cap:2: "):
        parse_capture(f"{good}\n{line}\n", "cap")


# --- vendors told what to fix (issue 13, item 8) --------------------------------------------


def test_a_tt10_logger_on_utc_is_told_to_set_utc_plus_7(
    registry: Registry, catalog: Catalog
) -> None:
    # A TT10 logger left on UTC: its local-time stamps are exactly 7 h behind their arrival.
    report = judge(registry, catalog, stream(registry, fmt="tt10", latency=7 * 3600 + 4))
    clock = report.criterion("clock")
    assert clock.verdict == FAIL
    (finding,) = clock.findings
    assert finding.what.key == "check.finding.logger_on_utc"
    assert translate(finding.fix.key, "en", **finding.fix.params).startswith(
        "Logger on UTC: set UTC+7"
    )
    assert "đặt về UTC+7" in translate(finding.fix.key, "vi", **finding.fix.params)
    assert "Logger on UTC: set UTC+7" in render_table(report, "en")


def test_a_clock_seven_hours_ahead_says_local_time_is_marked_utc(
    registry: Registry, catalog: Catalog
) -> None:
    report = judge(registry, catalog, stream(registry, scenario="{kind: clock_drift, offset: 7h}"))
    findings = {f.what.key: f for f in report.criterion("clock").findings}
    assert "check.finding.local_marked_utc" in findings
    finding = findings["check.finding.rule"]
    assert finding.what.params["rule"] == "time_in_future"
    text = translate(finding.what.key, "vi", **finding.what.params)
    assert "giờ Việt Nam nhưng ghi như giờ UTC: ghi kèm múi giờ +07:00" in text
    assert "exactly 7 h ahead" not in text  # the Vietnamese finding is Vietnamese throughout


def test_the_cadence_verdict_states_the_rule_and_what_was_seen(
    registry: Registry, catalog: Catalog
) -> None:
    report = judge(registry, catalog, stream(registry))
    summary = report.criterion("cadence").summary
    vi = translate(summary.key, "vi", **summary.params)
    assert vi.startswith("Đạt. Quy định: mỗi bản tin cách nhau không quá 300 giây (TT 10/2021)")
    assert "Thấy: trung vị 300.0 giây qua 11 khoảng" in vi
    slow = judge(registry, catalog, stream(registry, cadence=600)).criterion("cadence").summary
    assert translate(slow.key, "en", **slow.params).startswith("Not met. Rule: at most 300 s")


def test_the_report_says_where_the_traffic_came_from(registry: Registry, catalog: Catalog) -> None:
    report = judge(registry, catalog, stream(registry))
    assert "MQTT (luồng trực tiếp) — nhận trực tiếp" in render_table(report, "vi")
    captured = dataclasses.replace(report, origin="capture", origin_path="ww.jsonl")
    assert "capture file ww.jsonl" in render_table(captured, "en")
    assert report_json(captured)["origin"] == "capture"


@pytest.mark.parametrize(
    ("lang", "said", "count"),
    [
        ("vi", "dữ liệu đến sau thời điểm đo 2,5 giây", "12.345"),
        ("en", "data arrive 2.5 s after their measured time", "12,345"),
    ],
)
def test_numbers_and_times_are_written_as_the_reader_writes_them(
    registry: Registry, catalog: Catalog, lang: str, said: str, count: str
) -> None:
    """Vietnamese: decimal comma, a dot between thousands; English: the reverse. Times in
    both as quantrac writes them everywhere, dd/MM/yyyy, here to the second with the zone."""
    received = "04/03/2025 08:00:02 (UTC+7)"
    report = judge(registry, catalog, stream(registry, latency=2.5))
    assert report.criterion("clock").summary.params == {"seconds": 2.5}
    text = render_table(dataclasses.replace(report, messages=12345), lang)
    assert said in text and f"  {count}\n" in text and received in text
    page = render_html(report, lang, generated_at=START)
    assert said in page
    # JSON keeps the number a number (scripts), the text as the reader writes it.
    clock = next(c for c in report_json(report, lang)["criteria"] if c["id"] == "clock")
    assert clock["summary"]["params"] == {"seconds": 2.5} and said in clock["summary"]["text"]


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_every_finding_is_said_in_the_chosen_language(bad_report: Report, lang: str) -> None:
    other = "en" if lang == "vi" else "vi"
    body = report_json(bad_report, lang)
    texts = [
        text
        for c in body["criteria"]
        for text in [c["summary"], *(f[part] for f in c["findings"] for part in ("what", "fix"))]
        if text is not None
    ]
    assert len(texts) > len(CRITERIA)
    for text in texts:
        params = {
            name: format_number(value, lang) if isinstance(value, int | float) else value
            for name, value in text["params"].items()
        }
        assert text["text"] == translate(text["key"], lang, **params)
        if translate(text["key"], lang, **params) != translate(text["key"], other, **params):
            assert text["text"] != translate(text["key"], other, **params)
