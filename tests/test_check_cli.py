"""`quantrac check` against real streams on the session's Mosquitto.

One live session, about 9 s: the simulator publishes a fleet of 1-second-cadence stations, each
with one scenario, while one `quantrac check` per station listens. The good stations pass (exit
0); each bad one fails the criterion its scenario breaks (exit 1). The captures are then judged
again by `quantrac check --capture` as separate processes, as a vendor's CI would run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quantrac.cli.main import build_parser
from quantrac.core.catalog import load_catalog
from quantrac.core.contract import shared_subscription
from quantrac.core.registry import Registry, load_registry
from quantrac.core.settings import Settings, load_settings
from quantrac.simulator.run import simulate, write_files
from quantrac.simulator.scenarios import scenarios_from_text
from tests.conftest import Servers, Subscriber

pytestmark = pytest.mark.integration

LISTEN_S = 8.5
PUBLISH_S = 8.0

# station suffix -> (scenario, the criterion it must fail; None: the stream passes)
CASES: dict[str, tuple[str | None, str | None]] = {
    "GOOD": (None, None),
    "CALIBRATION": ("{kind: calibration, param: COD, start: 2s, duration: 2s}", None),
    "MALFORMED": ("{kind: malformed, probability: 0.5}", "syntax"),
    "MISSING": ("{kind: missing, param: NH4, start: 2s}", "parameters"),
    "UNIT": ("{kind: wrong_unit, param: TSS, start: 1s}", "units"),
    "STATUS": ("{kind: bad_status, param: pH, start: 1s}", "status"),
    "OUTAGE": ("{kind: outage, start: 2s, duration: 2s}", "cadence"),
    "CLOCK": ("{kind: clock_drift, offset: -5m}", "clock"),
    "DUPLICATES": ("{kind: duplicates}", "duplicates"),
    "BACKLOG": ("{kind: backlog, start: 1s, duration: 4s}", "late"),
    "STUCK": ("{kind: stuck, param: pH}", "values"),
}
TT10_STATION = "CK_TT10"


def registry_yaml() -> str:
    entries = []
    for suffix in [*CASES, "TT10"]:
        entries.append(f"""  - id: CK_{suffix}
    name: "Trạm thử {suffix}"
    kind: wastewater
    facility: "Nhà máy thử"
    province: "Bắc Ninh"
    location: {{lat: 21.25, lon: 106.1}}
    cadence: 1
    ftp_name: "BacGiang_Thu_{suffix.replace("_", "")}"
    parameters:
      - {{code: Flow, unit: "m3/h"}}
      - {{code: Temp, unit: "°C"}}
      - {{code: pH, unit: "pH"}}
      - {{code: TSS, unit: "mg/L"}}
      - {{code: COD, unit: "mg/L"}}
      - {{code: NH4, unit: "mg/L"}}
""")
    return "stations:\n" + "".join(entries)


def scenario_yaml() -> str:
    lines = ["scenarios:"]
    for suffix, (scenario, _) in CASES.items():
        if scenario:
            lines.append(f"  - {scenario[:-1]}, station: CK_{suffix}}}")
    return "\n".join(lines) + "\n"


@dataclass
class Session:
    folder: Path
    settings: Settings
    registry: Registry
    exits: dict[str, int]
    reports: dict[str, dict[str, Any]]
    ingest_group: dict[str, int]  # messages a share-group subscriber (as ingest) received


async def run_check(settings: Settings, *argv: str) -> int:
    args = build_parser().parse_args(["check", *argv])
    return int(await args.handler(settings, args))


@pytest.fixture(scope="module")
async def session(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Session:
    folder = tmp_path_factory.mktemp("check")
    stations = folder / "stations.yaml"
    stations.write_text(registry_yaml(), encoding="utf-8")
    settings = load_settings(
        {}, mqtt_url=servers.mqtt_url, stations_file=stations, log_format="text"
    )
    registry = load_registry(stations, load_catalog(settings.catalog_path))
    scenarios = scenarios_from_text(scenario_yaml(), "cases", registry)
    json_fleet = Registry({k: v for k, v in registry.stations.items() if k != TT10_STATION})
    tt10_fleet = Registry({TT10_STATION: registry.stations[TT10_STATION]})

    checks = {
        station: asyncio.create_task(
            run_check(
                settings,
                station,
                "--duration",
                str(LISTEN_S),
                "--format",
                "json",
                "-o",
                str(folder / f"{station}.json"),
                "--save-capture",
                str(folder / f"{station}.jsonl"),
                "--lang",
                "en",
            )
        )
        for station in registry.stations
    }
    ingest = await Subscriber(servers.mqtt_url).start(shared_subscription("check-test"))
    await asyncio.sleep(0.3)  # subscribed before the first message
    endpoint = settings.mqtt
    await asyncio.gather(
        simulate(endpoint, json_fleet, seed=5, duration=PUBLISH_S, scenarios=scenarios),
        simulate(endpoint, tt10_fleet, seed=5, duration=PUBLISH_S, fmt="tt10"),
    )
    exits = {station: await task for station, task in checks.items()}
    await ingest.stop()
    ingest_group: dict[str, int] = {}
    for topic, _ in ingest.messages:
        ingest_group[topic.split("/")[1]] = ingest_group.get(topic.split("/")[1], 0) + 1
    reports = {
        station: json.loads((folder / f"{station}.json").read_text(encoding="utf-8"))
        for station in registry.stations
    }
    return Session(folder, settings, registry, exits, reports, ingest_group)


def failing(report: dict[str, Any]) -> set[str]:
    return {c["id"] for c in report["criteria"] if c["verdict"] == "fail"}


@pytest.mark.parametrize("suffix", [s for s, (_, bad) in CASES.items() if bad is None])
def test_good_streams_pass_with_exit_0(session: Session, suffix: str) -> None:
    report = session.reports[f"CK_{suffix}"]
    assert failing(report) == set(), report
    assert session.exits[f"CK_{suffix}"] == 0
    assert report["messages"] >= 6 and report["readings"] >= 6 * 6


def test_a_good_tt10_stream_passes(session: Session) -> None:
    report = session.reports[TT10_STATION]
    assert failing(report) == set() and session.exits[TT10_STATION] == 0
    assert report["messages"] >= 6


def test_calibration_is_reported_as_a_warning(session: Session) -> None:
    status = next(c for c in session.reports["CK_CALIBRATION"]["criteria"] if c["id"] == "status")
    assert status["verdict"] == "warn"
    assert status["findings"][0]["what"]["key"] == "check.finding.status_01"


@pytest.mark.parametrize(
    ("suffix", "criterion"), [(s, bad) for s, (_, bad) in CASES.items() if bad is not None]
)
def test_each_bad_stream_fails_its_criterion_with_exit_1(
    session: Session, suffix: str, criterion: str
) -> None:
    report = session.reports[f"CK_{suffix}"]
    assert criterion in failing(report), report
    assert session.exits[f"CK_{suffix}"] == 1
    found = next(c for c in report["criteria"] if c["id"] == criterion)
    finding = next(f for f in found["findings"] if f["severity"] == "fail")
    assert finding["fix"]["text"] and finding["examples"][0]["payload"]


def quantrac(session: Session, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "QUANTRAC_STATIONS_FILE": str(session.settings.stations_path),
        "QUANTRAC_MQTT_URL": session.settings.mqtt_url,
        "QUANTRAC_LOG_FORMAT": "text",
    }
    return subprocess.run(
        [sys.executable, "-m", "quantrac.cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[1],
    )


def test_captures_are_judged_the_same_by_a_separate_process(session: Session) -> None:
    good = quantrac(session, "check", "CK_GOOD", "--capture", str(session.folder / "CK_GOOD.jsonl"))
    assert good.returncode == 0, good.stderr
    assert "PASS" in good.stdout or "ĐẠT" in good.stdout
    html = session.folder / "stuck.html"
    bad = quantrac(
        session,
        "check",
        "CK_STUCK",
        "--capture",
        str(session.folder / "CK_STUCK.jsonl"),
        "-o",
        str(html),
        "--lang",
        "vi",
    )
    assert bad.returncode == 1, bad.stderr
    page = html.read_text(encoding="utf-8")
    assert "KHÔNG ĐẠT" in page and "Giá trị hợp lý" in page


def test_usage_errors_exit_2(session: Session) -> None:
    unknown = quantrac(session, "check", "NOPE", "--capture", "x.jsonl")
    assert unknown.returncode == 2 and "not in the registry" in unknown.stderr
    missing = quantrac(session, "check", "CK_GOOD", "--capture", str(session.folder / "no.jsonl"))
    assert missing.returncode == 2
    assert quantrac(session, "check").returncode == 2  # argparse: no station


async def test_a_tt10_folder_passes_and_a_misnamed_file_fails(session: Session) -> None:
    folder = session.folder / "drop"
    station = session.registry.stations["CK_GOOD"]
    fleet = Registry({station.id: station})
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)
    written = write_files(folder, fleet, start, start + timedelta(seconds=9), seed=1)
    assert await run_check(session.settings, "CK_GOOD", "--folder", str(folder)) == 0
    written[3].rename(folder / "CK_GOOD.txt")
    output = session.folder / "drop.json"
    exit_code = await run_check(
        session.settings, "CK_GOOD", "--folder", str(folder), "-o", str(output)
    )
    assert exit_code == 1
    assert failing(json.loads(output.read_text(encoding="utf-8"))) == {"file_names"}


def test_check_listens_beside_ingest_without_taking_its_messages(session: Session) -> None:
    """A plain subscription: a subscriber in a share group, as ingest is, got every message
    the checks saw."""
    for station, report in session.reports.items():
        assert report["messages"] == session.ingest_group.get(station, 0), station
