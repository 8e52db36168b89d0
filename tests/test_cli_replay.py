"""`quantrac replay`: the engine over a CSV, hand-computed."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from quantrac.cli.main import main
from quantrac.core.time import VIETNAM

REGISTRY = """
stations:
  - id: WW9
    name: "Trạm thử"
    kind: wastewater
    facility: F
    province: P
    location: {lat: 21, lon: 106}
    parameters:
      - {code: COD, unit: "mg/L"}
    regulation:
      id: "QCVN 40:2011/BTNMT"
      column: A
      coefficients: {receiving_water: river, receiving_flow_m3s: 120, discharge_m3_per_day: 3000}
"""

DAY = datetime(2026, 5, 4, tzinfo=VIETNAM)


def write_csv(path: Path, hours: list[float], unit: str = "mg/L", station: str = "WW9") -> None:
    """One hour per entry, 12 readings alternating ±1 around the hour's mean."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["station", "param", "time", "value", "unit", "status"])
        for h, mean in enumerate(hours):
            for i in range(12):
                moment = DAY + timedelta(hours=h, minutes=5 * i)
                value = mean + (1 if i % 2 else -1)
                out.writerow([station, "COD", moment.isoformat(), value, unit, "00"])


def run(capsys: Any, *argv: str) -> tuple[int, list[dict[str, Any]], str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    return code, rows, captured.err


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    stations = tmp_path / "stations.yaml"
    stations.write_text(REGISTRY, encoding="utf-8")
    return stations, tmp_path / "readings.csv"


def test_an_exceeding_hour_gives_one_episode_and_one_alert_that_clears(
    files: tuple[Path, Path], capsys: Any
) -> None:
    stations, readings = files
    write_csv(readings, [150.0, 20.0, 20.0])
    code, rows, err = run(
        capsys, "replay", "--readings", str(readings), "--stations", str(stations)
    )
    assert code == 0, err
    assert "36 readings replayed: 1 exceedance episodes, 1 alerts" in err
    episode = next(r for r in rows if r["record"] == "episode")
    assert episode == {
        "record": "episode",
        "kind": "exceedance",
        "station": "WW9",
        "param": "COD",
        "regulation": "QCVN 40:2011/BTNMT",
        "column": "A",
        "averaging": "1h",
        "window_start": "2026-05-04T00:00:00+07:00",
        "window_end": "2026-05-04T01:00:00+07:00",
        "value": 150.0,
        "limit": 75.0,
        "multiple": 2.0,
        "band": "1.5–<3",
        "completeness": 1.0,
        "count": 1,
        "unit": "mg/L",
        "unverified": False,
    }
    alert = next(r for r in rows if r["record"] == "alert")
    assert alert["kind"] == "exceedance" and alert["value"] == 150.0
    assert alert["window_start"] == "2026-05-04T00:00:00+07:00"
    assert alert["window_end"] == "2026-05-04T02:00:00+07:00"  # cleared by the clean hour


def test_another_regulation_column_changes_the_verdict(
    files: tuple[Path, Path], capsys: Any
) -> None:
    stations, readings = files
    write_csv(readings, [150.0, 20.0])
    code, rows, err = run(
        capsys,
        "replay",
        "--readings",
        str(readings),
        "--stations",
        str(stations),
        "--regulation",
        "QCVN 40:2011/BTNMT",
        "--column",
        "B",
    )
    assert code == 0, err
    # Column B: COD 150 × 1.0 × 1.0 = 150; a mean of exactly 150 is not above it, but above 80 %.
    assert [r["kind"] for r in rows] == ["warning"]
    assert rows[0]["limit"] == 150.0


def test_stations_missing_from_the_registry_take_the_given_regulation(
    files: tuple[Path, Path], capsys: Any
) -> None:
    stations, readings = files
    write_csv(readings, [200.0, 10.0], unit="mg/l", station="NEW1")
    code, rows, err = run(
        capsys,
        "replay",
        "--readings",
        str(readings),
        "--stations",
        str(stations),
        "--regulation",
        "QCVN 40:2011/BTNMT",
        "--column",
        "B",
        "--coefficient",
        "receiving_water=river",
        "--coefficient",
        "receiving_flow_m3s=120",
        "--coefficient",
        "discharge_m3_per_day=3000",
        "--format",
        "jsonl",
    )
    assert code == 0, err
    episodes = [r for r in rows if r["record"] == "episode"]
    assert len(episodes) == 1 and episodes[0]["station"] == "NEW1"
    # COD column B: 150 × Kq 1.0 × Kf 1.0; 200 mg/l (the CSV's spelling of mg/L) is 1.33 times it.
    assert episodes[0]["limit"] == 150.0
    assert episodes[0]["multiple"] == pytest.approx(1.3333, abs=1e-4)
    assert episodes[0]["band"] == "1.1–<1.5"


def test_csv_output_and_bad_rows_reported_with_their_line(
    files: tuple[Path, Path], capsys: Any
) -> None:
    stations, readings = files
    write_csv(readings, [150.0, 20.0])
    with readings.open("a", encoding="utf-8") as fh:
        fh.write("WW9,COD,not-a-time,1,mg/L,00\n")
    out = readings.parent / "out.csv"
    code = main(
        [
            "replay",
            "--readings",
            str(readings),
            "--stations",
            str(stations),
            "--format",
            "csv",
            "-o",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert "line 26: time:" in err and "1 row(s) skipped" in err
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["record"] for r in rows] == ["episode", "alert"]
    assert rows[0]["band"] == "1.5–<3"


def test_unknown_regulation_is_a_usage_error(files: tuple[Path, Path], capsys: Any) -> None:
    stations, readings = files
    write_csv(readings, [10.0])
    code, _, err = run(
        capsys,
        "replay",
        "--readings",
        str(readings),
        "--stations",
        str(stations),
        "--regulation",
        "QCVN 99",
    )
    assert code == 2 and "unknown regulation 'QCVN 99'" in err


SIDE_BY_SIDE = """
stations:
  - id: OLD
    name: "Cơ sở hiện hữu"
    kind: wastewater
    facility: F1
    province: P
    location: {lat: 21, lon: 106}
    parameters:
      - {code: COD, unit: "mg/L"}
    regulation:
      id: "QCVN 40:2011/BTNMT"
      column: A
      coefficients: {receiving_water: river, receiving_flow_m3s: 120, discharge_m3_per_day: 3000}
    regime:
      status: existing
      basis: "ĐTM 2018"
      next: {id: "QCVN 40:2025/BTNMT", column: A}
  - id: NEW
    name: "Cơ sở mới"
    kind: wastewater
    facility: F2
    province: P
    location: {lat: 21, lon: 106}
    parameters:
      - {code: COD, unit: "mg/L"}
    regulation: {id: "QCVN 40:2025/BTNMT", column: A}
    regime: {status: new, basis: "ĐTM 2029"}
    permit:
      number: "7/GPMT-UBND"
      issued_on: 2030-01-01
      limits: [{param: COD, max: 80}]
"""


def test_replay_applies_each_facilitys_regime_across_the_transition(
    tmp_path: Path, capsys: Any
) -> None:
    """Two outfalls, the same COD of 100 mg/L from 22:00 on 31/12/2031 to 02:00 on 01/01/2032:
    the existing facility is held to QCVN 40:2011 (75 × Kq 1.0 × Kf 1.0) until its transition
    ends at midnight, then to QCVN 40:2025, which has no number (said, not guessed); the new
    facility is held to its permit's 80 mg/L on both days."""
    stations = tmp_path / "stations.yaml"
    stations.write_text(SIDE_BY_SIDE, encoding="utf-8")
    readings = tmp_path / "readings.csv"
    start = datetime(2031, 12, 31, 22, tzinfo=VIETNAM)
    with readings.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["station", "param", "time", "value", "unit", "status"])
        for sid in ("OLD", "NEW"):
            for i in range(4 * 12):
                moment = start + timedelta(minutes=5 * i)
                out.writerow([sid, "COD", moment.isoformat(), 100, "mg/L", "00"])
    code, rows, err = run(
        capsys, "replay", "--readings", str(readings), "--stations", str(stations)
    )
    assert code == 0, err
    episodes = {r["station"]: r for r in rows if r["record"] == "episode"}
    old, new = episodes["OLD"], episodes["NEW"]
    assert (old["regulation"], old["limit"], old["count"]) == ("QCVN 40:2011/BTNMT", 75, 2)
    assert old["window_end"].startswith("2032-01-01T00:00:00+07:00")
    assert (new["regulation"], new["limit"], new["count"]) == ("QCVN 40:2025/BTNMT", 80, 4)
    assert "limits: OLD: COD: no numeric limit in QCVN 40:2025/BTNMT (from 2032-01-01)" in err
    assert "NEW: COD: no numeric limit" not in err


def test_a_hostile_csv_gets_clear_errors_and_the_good_rows_replayed(
    files: tuple[Path, Path], capsys: Any
) -> None:
    """Issue 15: a value beyond float range, undecodable bytes and a year-0001 row beside 2026
    rows are row errors; the command finishes (before: decimal.Overflow, a traceback, or
    minutes walking every hour since year 1)."""
    stations, readings = files
    write_csv(readings, [50.0])
    with readings.open("ab") as fh:
        fh.write(b"WW9,COD,2026-05-04T02:00:00+07:00,1e1000000,mg/L,00\n")
        fh.write(b"WW9,COD,2026-05-04T02:05:00+07:00,5\xff,mg/L,00\n")
        fh.write(b"WW9,COD,0001-01-01T00:00:00+00:00,5,mg/L,00\n")
        fh.write(b"WW9,C\x00OD,2026-05-04T02:10:00+07:00,5,mg/L,00\n")
    code, _, err = run(capsys, "replay", "--readings", str(readings), "--stations", str(stations))
    assert code == 0
    assert "line 14: value: value '1e1000000' is out of range" in err
    assert "line 15: row: bytes that are not UTF-8" in err
    assert "line 16: time: time '0001-01-01T00:00:00+00:00' is before 2000-01-01" in err
    assert "line 17: param: unknown parameter" in err
    assert "4 row(s) skipped" in err and "12 readings replayed" in err
    assert "Traceback" not in err
