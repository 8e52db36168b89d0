"""`quantrac aqi` end to end on a hand-computable day of one air station."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from quantrac.cli.aqi import infer_cadences
from quantrac.cli.main import main
from quantrac.core.contract import Reading, Status
from quantrac.core.time import VIETNAM as VN

DAY_START = datetime(2026, 11, 1, 0, tzinfo=VN)
FIVE_MIN = timedelta(minutes=5)

REGISTRY = """
stations:
  - id: AIR1
    name: "Test air station"
    kind: air
    facility: "Test"
    province: "Bắc Ninh"
    location: {{lat: 21.27, lon: 106.19}}
    cadence: {cadence}
    parameters:
      - {{code: "PM2,5", unit: "µg/m3"}}
      - {{code: NO2, unit: "µg/m3"}}
"""


def day_csv() -> str:
    """One local day (1 Nov 2026) of 5-minute readings of AIR1.

    PM2.5 is 30 µg/m³ all day (AQI 60). NO2 is sent in mg/m3: 0.05 (50 µg/m³, AQI 25), except
    from 10:00 to 11:00 local: 0.15 (150 µg/m³, AQI 75). One PM2.5 reading (05:00) is a
    calibration (status 01, value 900) and must not count; two rows are bad.
    """
    lines = ["station,param,time,value,unit,status"]
    for i in range(24 * 12):
        moment = DAY_START + i * FIVE_MIN
        stamp = moment.isoformat()
        if moment.hour == 5 and moment.minute == 0:
            lines.append(f"AIR1,PM2.5,{stamp},900,µg/m3,01")
        else:
            lines.append(f"AIR1,PM2.5,{stamp},30,µg/m3,00")
        no2 = "0.15" if moment.hour == 10 else "0.05"
        lines.append(f"AIR1,NO2,{stamp},{no2},mg/m3,00")
    lines.insert(3, "AIR1,PM1,2026-11-01T00:00:00+07:00,30,µg/m3,00")  # line 4
    lines.insert(6, "AIR1,PM10,2026-11-01T00:00:00,30,µg/m3,00")  # line 7
    return "\n".join(lines) + "\n"


@pytest.fixture
def readings_file(tmp_path: Path) -> Path:
    path = tmp_path / "readings.csv"
    path.write_text(day_csv(), encoding="utf-8")
    return path


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_hourly(readings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aqi", "--readings", str(readings_file)]) == 0
    out, err = capsys.readouterr()
    rows = read_csv(out)
    assert list(rows[0])[:8] == [
        "station",
        "start",
        "end",
        "aqi",
        "category",
        "category_name",
        "colour",
        "dominant",
    ]
    # 00:00–01:00 has no NowCast (only 1 of the 3 latest hours): 23 rows, 01:00 … 23:00.
    assert len(rows) == 23
    assert rows[0]["start"] == "2026-11-01T01:00:00+07:00"
    assert rows[-1]["end"] == "2026-11-02T00:00:00+07:00"
    by_start = {r["start"][11:16]: r for r in rows}
    quiet = by_start["05:00"]  # the calibration reading did not count
    assert quiet["aqi"] == "60"
    assert quiet["dominant"] == "PM2.5"
    assert quiet["PM2.5"] == "60"
    assert quiet["NO2"] == "25"
    assert quiet["PM2.5_nowcast"] == "30.0"
    assert quiet["NO2_1h"] == "50.0"
    assert quiet["category"] == "moderate"
    assert quiet["category_name"] == "Trung bình"
    assert quiet["colour"] == "#FFFF00"
    assert quiet["SO2"] == ""
    peak = by_start["10:00"]
    assert peak["end"] == "2026-11-01T11:00:00+07:00"
    assert peak["aqi"] == "75"
    assert peak["dominant"] == "NO2"
    assert peak["NO2_1h"] == "150.0"
    assert {r["aqi"] for r in rows if r is not peak} == {"60"}
    # Problems of the CSV, with their lines and a count.
    assert "readings.csv:4: param: unknown parameter 'PM1'" in err
    assert "readings.csv:7: time:" in err
    assert "2 row(s)" in err
    assert "23 hourly AQI rows for 1 station(s)" in err


def test_daily(readings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aqi", "--readings", str(readings_file), "--daily", "--lang", "en"]) == 0
    rows = read_csv(capsys.readouterr().out)
    assert len(rows) == 1
    day = rows[0]
    assert day["start"] == "2026-11-01T00:00:00+07:00"
    assert day["end"] == "2026-11-02T00:00:00+07:00"
    # PM2.5 24 h mean 30 → 60; NO2 daily max 1 h 150 → 75.
    assert day["PM2.5_24h"] == "30.0"
    assert day["NO2_max1h"] == "150.0"
    assert (day["PM2.5"], day["NO2"], day["aqi"]) == ("60", "75", "75")
    assert day["dominant"] == "NO2"
    assert day["category_name"] == "Moderate"
    assert "O3_max8h" in day


def test_jsonl_to_a_file(readings_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "aqi.jsonl"
    args = ["aqi", "--readings", str(readings_file), "--format", "jsonl", "-o", str(out)]
    assert main(args) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 23
    peak = next(r for r in records if r["start"] == "2026-11-01T10:00:00+07:00")
    assert peak["aqi"] == 75
    assert peak["NO2"] == 75
    assert peak["PM2.5_nowcast"] == 30.0
    assert peak["SO2"] is None
    assert peak["category_name"] == "Trung bình"


def test_registry_gives_the_cadence(
    readings_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stations = tmp_path / "stations.yaml"
    stations.write_text(REGISTRY.format(cadence=300), encoding="utf-8")
    args = ["aqi", "--readings", str(readings_file), "--stations", str(stations)]
    assert main(args) == 0
    assert len(read_csv(capsys.readouterr().out)) == 23
    # Declared every minute, the 5-minute data fill 12 of 60 expected readings an hour: no
    # hourly mean is complete, so there is no AQI at all.
    stations.write_text(REGISTRY.format(cadence=60), encoding="utf-8")
    assert main(args) == 1
    assert "no hourly AQI could be computed" in capsys.readouterr().err


def test_no_pm_means_no_aqi(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "no2.csv"
    lines = ["station,param,time,value,unit,status"]
    lines += [f"AIR1,NO2,{(DAY_START + i * FIVE_MIN).isoformat()},50,µg/m3,00" for i in range(36)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["aqi", "--readings", str(path)]) == 1
    assert "no hourly AQI" in capsys.readouterr().err


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aqi", "--readings", str(tmp_path / "missing.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("station;param;time;value;unit;status\n", encoding="utf-8")
    assert main(["aqi", "--readings", str(bad)]) == 2
    assert "bad.csv:1: header: missing column" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["aqi"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["aqi", "--readings", "x.csv", "--format", "xml"])
    assert exit_info.value.code == 2


def test_cadence_inferred_from_the_median_spacing() -> None:
    t0 = DAY_START
    readings = [
        Reading("A", "PM10", t0 + i * FIVE_MIN, 1.0, Status.MEASURING) for i in range(10)
    ] + [
        # A gap and a resend do not move the median.
        Reading("A", "PM10", t0 + timedelta(hours=5), 1.0, Status.MEASURING),
        Reading("A", "PM10", t0, 1.0, Status.MEASURING),
        Reading("B", "NO2", t0, 1.0, Status.MEASURING),
        Reading("C", "O3", t0, 1.0, Status.MEASURING),
        Reading("C", "O3", t0 + timedelta(minutes=1), 1.0, Status.MEASURING),
    ]
    assert infer_cadences(readings) == {"A": 300, "B": 300, "C": 60}


def test_a_hostile_csv_gets_clear_errors_and_the_good_rows_used(
    readings_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15: out-of-range values, undecodable bytes and a year-0001 row are row errors,
    and the AQI of the good rows is still computed (before: decimal.Overflow or minutes)."""
    with readings_file.open("ab") as fh:
        fh.write(b"AIR1,PM2.5,2026-11-01T23:59:00+07:00,1e1000000,\xc2\xb5g/m3,00\n")
        fh.write(b"AIR1,PM2.5,2026-11-01T23:58:00+07:00,5\xff,\xc2\xb5g/m3,00\n")
        fh.write(b"AIR1,PM2.5,0001-01-01T00:00:00+00:00,5,\xc2\xb5g/m3,00\n")
    assert main(["aqi", "--readings", str(readings_file), "--daily"]) == 0
    captured = capsys.readouterr()
    lines = len(day_csv().splitlines())
    assert f":{lines + 1}: value: value '1e1000000' is out of range" in captured.err
    assert f":{lines + 2}: row: bytes that are not UTF-8" in captured.err
    assert f":{lines + 3}: time: time '0001-01-01T00:00:00+00:00' is before 2000" in captured.err
    assert read_csv(captured.out)[0]["aqi"]
