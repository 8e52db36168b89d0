"""`quantrac regulations list|show|check|limits`, called through quantrac.cli.main."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from quantrac.cli.main import main
from tests.test_unit_regulations import FOLDER, QCVN_40_2025_LIKE

# A river outfall whose discharge flow is not in the registry: Kf cannot be computed.
REGISTRY = """\
stations:
  - id: WW1
    name: "Trạm nước thải thử"
    kind: wastewater
    facility: "KCN Thử"
    province: "Bắc Ninh"
    location: {lat: 21.25, lon: 106.09}
    parameters:
      - {code: pH, unit: "pH"}
      - {code: COD, unit: "mg/L"}
    regulation: {id: "QCVN 40:2011/BTNMT", column: A,
                 coefficients: {receiving_water: river, receiving_flow_m3s: 120}}
"""


@pytest.fixture(autouse=True)
def plain_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTRAC_LOG_FORMAT", "text")


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regulations", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ID",
        "KIND",
        "FROM",
        "UNTIL",
        "(LAST",
        "DAY)",
        "REPLACED",
        "BY",
        "NUMBERS",
        "UNVERIFIED",
        "FILE",
    ]
    rows = {line.split("  ")[0]: line.split() for line in lines[1:]}
    assert rows["QCVN 40:2011/BTNMT"][2:7] == [
        "wastewater",
        "2012-02-15",
        "2031-12-31",
        "QCVN",
        "40:2025/BTNMT",
    ]
    assert rows["QCVN 40:2011/BTNMT"][7:9] == ["complete", "0"]
    assert rows["QCVN 40:2025/BTNMT"][2:8] == ["wastewater", "2025-09-01", "–", "–", "missing", "0"]
    assert rows["QCVN 19:2024/BTNMT"][2:8] == ["emission", "2025-07-01", "–", "–", "partial", "0"]
    assert rows["QCVN 14:2025/BTNMT"][6] == "missing"
    assert rows["QCVN 23:2009/BTNMT"][2:4] == ["emission", "(sector)"]
    assert rows["QCVN 19:2009/BTNMT"][-2:] == ["36", str(FOLDER / "qcvn-19-2009-btnmt.yaml")]
    assert rows["QCVN 14:2008/BTNMT"][-2] == "2"
    assert rows["QCVN 05:2023/BTNMT"][2:4] == ["air", "2023-09-12"]
    assert rows["Nghị định 45/2022/NĐ-CP"][-2] == "6"


def test_show_with_provenance_and_unverified_marks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regulations", "show", "QCVN 19:2009/BTNMT", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("QCVN 19:2009/BTNMT — National technical regulation on industrial")
    assert "  coefficients: Cmax = C × Kp × Kv" in out
    assert "        20000 < P ≤ 100000 → 0.9" in out
    assert "region_class = 5: rural mountainous areas" in out
    so2_b = [
        line for line in out.splitlines() if line.strip().startswith("SO2") and "≤ 500 " in line
    ]
    assert so2_b == [
        "      SO2         1h   ≤ 500 mg/Nm3  [L-M] regulations.md §3d table (domain knowledge) — "
        "Primary text not read; check against QCVN 19:2009 before relying on it. UNVERIFIED"
    ]
    assert "NOx         1h   ≤ 1000 mg/Nm3 (category acid_plant)" in out
    assert main(["regulations", "show", "QCVN 05:2023/BTNMT"]) == 0
    out = capsys.readouterr().out
    assert "Quy chuẩn kỹ thuật quốc gia về chất lượng không khí" in out
    assert "PM2,5       24h  ≤ 50 µg/m3 (until 2025-12-31)  [H]" in out
    assert "PM2,5       24h  ≤ 45 µg/m3 (from 2026-01-01)  [H]" in out
    assert "CHƯA KIỂM CHỨNG" not in out


def test_show_range_and_penalties(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regulations", "show", "QCVN 40:2011/BTNMT", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "      pH          1h   5.5–9 pH  [M-H]" in out
    assert "not applied to: Coliform, Color, GrossAlpha, GrossBeta, Temp, pH" in out
    assert "missing input (no flow data) → default 0.9" in out
    assert main(["regulations", "show", "Nghị định 45/2022/NĐ-CP", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "    <1.1      Warning  [H]" in out
    assert "    ≥10       Highest fine  [M-]" in out
    assert "    2–<3      Fine (amount unconfirmed)  [L]" in out
    assert main(["regulations", "show", "QCVN 99"]) == 1
    assert "no regulation 'QCVN 99'; known: QCVN 05:2023/BTNMT" in capsys.readouterr().err


def test_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The shipped files are valid; the demo cement kiln answers to QCVN 23:2009, whose numbers
    # are not in the catalog: the check says so (as the alert service does at start-up).
    assert main(["regulations", "check", "--lang", "en"]) == 1
    captured = capsys.readouterr()
    out = captured.out
    assert f"{FOLDER / 'qcvn-40-2011-btnmt.yaml'}: OK (QCVN 40:2011/BTNMT, 60 limit values" in out
    assert f"{FOLDER / 'qcvn-40-2025-btnmt.yaml'}: OK (QCVN 40:2025/BTNMT, 0 limit values" in out
    err = captured.err.splitlines()
    assert err[0].startswith("4 limit problem(s) of the stations in ")
    assert err[1].startswith(
        "  BG_EM_XIMANG_01: PM: no numeric limit in QCVN 23:2009/BTNMT (until 2031-12-31): "
        "No limit of QCVN 23:2009 (the text was not read)."
    )
    assert [line.split(":")[1].strip() for line in err[1:]] == ["PM", "SO2", "NOx", "CO"]
    good = tmp_path / "qcvn-40-2025.yaml"
    good.write_text(QCVN_40_2025_LIKE, encoding="utf-8")
    assert main(["regulations", "check", str(good)]) == 0
    assert "OK (QCVN 40:2025/BTNMT, 15 limit values, 9 unverified)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        QCVN_40_2025_LIKE.replace("param: Temp", "param: Temperatur").replace(
            'unit: "mg/L", flow_band: medium', 'unit: "mg/L", flow_band: huge'
        ),
        encoding="utf-8",
    )
    assert main(["regulations", "check", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    text = bad.read_text(encoding="utf-8").splitlines()
    huge = next(i for i, line in enumerate(text, 1) if "flow_band: huge" in line)
    temperatur = next(i for i, line in enumerate(text, 1) if "Temperatur" in line)
    assert lines[0] == "2 problem(s) in 2 files:"
    assert lines[1] == f"  {bad}:{huge}: limits[2].flow_band: no band 'huge' in 'flow_bands'"
    assert lines[2] == (
        f"  {bad}:{temperatur}: limits[4].param: unknown parameter code 'Temperatur' "
        "(see config/parameters.yaml)"
    )
    assert captured.out == ""


def test_limits_of_a_shipped_station(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regulations", "limits", "BG_WW_SONGKHE", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "  regulation: QCVN 40:2011/BTNMT column A" in out
    assert "    Kq = 1.0: river, Q = 120 m3/s (50 < Q ≤ 200)" in out
    assert "    Kf = 0.9: F = 6000 m3/day (F > 5000)" in out
    assert (
        "    COD 1h: C × Kq × Kf = 75 × 1.0 × 0.9 = 67.5 mg/L  [from 2012-02-15, until 2031-12-31]"
        in out
    )
    assert (
        "    COD 1h: permit: ≤ 60 mg/L (replaces C × Kq × Kf = 75 × 1.0 × 0.9 = 67.5 mg/L)  "
        "[from 2024-07-01, until 2031-12-31]  — [H] Giấy phép môi trường số 123/GPMT-UBND ngày "
        "14/06/2024 (UBND tỉnh Bắc Giang) — Demo value, not a real permit."
    ) in out
    # After the transition the permit still binds, though no regulation is configured yet.
    assert "    COD 1h: permit: ≤ 60 mg/L  [from 2032-01-01]  — [H] Giấy phép" in out
    assert "  Regulation in force by date, and why:" in out
    assert (
        "    until 31/12/2031: QCVN 40:2011/BTNMT column A — Existing facility (Giấy phép môi "
        "trường cấp năm 2024 (minh họa)): keeps QCVN 40:2011/BTNMT until 31/12/2031 under the "
        "transition to QCVN 40:2025/BTNMT."
    ) in out
    assert "    from 01/01/2032: QCVN 40:2025/BTNMT — After the transition: " in out
    assert "    pH 1h: 6–9 (coefficients do not apply)" in out
    assert main(["regulations", "limits", "BG_EM_HABAC_01"]) == 0
    out = capsys.readouterr().out
    assert (
        "PM 1h: C × Kp × Kv = 200 × 0,9 × 0,8 = 144 mg/Nm3  [đến hết 2031-12-31]  CHƯA KIỂM CHỨNG"
        in out
    )


def test_limits_problems_and_unknown_station(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stations = tmp_path / "stations.yaml"
    stations.write_text(REGISTRY, encoding="utf-8")
    assert main(["regulations", "limits", "WW1", "--stations", str(stations)]) == 1
    captured = capsys.readouterr()
    assert "    pH 1h: 6–9 (không áp dụng hệ số)" in captured.out
    assert "COD" not in captured.out
    assert (
        "  WW1: regulation.coefficients.discharge_m3_per_day: required for Kf of "
        "QCVN 40:2011/BTNMT; the regulation gives no default"
    ) in captured.err
    assert main(["regulations", "limits", "NOPE", "--stations", str(stations)]) == 1
    assert f"no station 'NOPE' in {stations}" in capsys.readouterr().err


def test_dir_option_with_a_user_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "regs"
    shutil.copytree(FOLDER, folder)
    (folder / "qcvn-40-2025-btnmt.yaml").write_text(QCVN_40_2025_LIKE, encoding="utf-8")
    assert main(["regulations", "list", "--dir", str(folder)]) == 0
    assert "QCVN 40:2025/BTNMT" in capsys.readouterr().out
    (folder / "broken.yaml").write_text("format: quantrac-regulation/1\nid: X\n", encoding="utf-8")
    assert main(["regulations", "list", "--dir", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"{folder / 'broken.yaml'}:1: title: must be a mapping" in err


def test_show_a_2025_regulation_says_what_is_known_and_what_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["regulations", "show", "QCVN 40:2025/BTNMT", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "  kind: wastewater; issued by: Thông tư 06/2025/TT-BTNMT (28/02/2025)" in out
    assert "  in force: 2025-09-01 to – (last day)" in out
    assert (
        "  Transition: replaces QCVN 40:2011/BTNMT, QCVN 25:2009/BTNMT, QCVN 28:2010/BTNMT"
    ) in out
    assert "keep the old regulation until 2031-12-31" in out
    assert "  How a column is chosen: The column follows the receiving water's class" in out
    assert "  NUMBERS MISSING: No limit table: the text of Circular 06/2025/TT-BTNMT" in out
    assert "    (no number in the catalog)" in out
    assert main(["regulations", "show", "QCVN 19:2024/BTNMT", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "  O2 reference: per source category (below)" in out
    assert "    correction: C × (20.9 − O2ref) / (20.9 − O2meas)" in out
    assert "  category gas_turbine_gt_1200mw: Gas turbines, > 1200 MW (O2 reference 15 %)" in out
    assert main(["regulations", "show", "QCVN 23:2009/BTNMT", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "  Sector regulation (cement kilns): takes precedence over the general" in out


NEW_FACILITY = """\
stations:
  - id: WW_NEW
    name: "Cơ sở mới"
    kind: wastewater
    facility: "KCN Mới"
    province: "Bắc Ninh"
    location: {lat: 21.25, lon: 106.09}
    parameters:
      - {code: Flow, unit: "m3/h"}
      - {code: COD, unit: "mg/L"}
      - {code: TSS, unit: "mg/L"}
    regulation: {id: "QCVN 40:2025/BTNMT", column: B}
    regime: {status: new, basis: "ĐTM phê duyệt 03/2026"}
    permit:
      number: "9/GPMT-UBND"
      issued_on: 2026-04-01
      issued_by: "UBND tỉnh Bắc Giang"
      limits: [{param: COD, max: 90}]
"""


def test_check_and_limits_of_a_new_facility_without_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stations = tmp_path / "stations.yaml"
    stations.write_text(NEW_FACILITY, encoding="utf-8")
    files = [str(p) for p in sorted(FOLDER.glob("*.yaml"))]
    assert main(["regulations", "check", *files, "--stations", str(stations), "--lang", "en"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"1 limit problem(s) of the stations in {stations}:",
        "  WW_NEW: TSS: no numeric limit in QCVN 40:2025/BTNMT (from 2025-09-01): No limit "
        "table: the text of Circular 06/2025/TT-BTNMT was not read. Add the table (a file with "
        '"extends", naming its source and confidence) or the environmental permit\'s limits. '
        "(docs/regulations.md: adding a table; stations.yaml: permit.limits)",
    ]
    assert main(["regulations", "limits", "WW_NEW", "--stations", str(stations)]) == 1
    out = capsys.readouterr().out
    assert "  Quy chuẩn áp dụng theo thời gian và lý do:" in out
    assert (
        "    từ 01/09/2025: QCVN 40:2025/BTNMT cột B — Cơ sở mới (ĐTM phê duyệt 03/2026): áp dụng "
        "QCVN 40:2025/BTNMT ngay từ ngày có hiệu lực."
    ) in out
    assert (
        "    Hồ sơ của cơ sở: Giấy phép môi trường số 9/GPMT-UBND ngày 01/04/2026 "
        "(UBND tỉnh Bắc Giang)"
    ) in out
    assert "    COD 1h: giấy phép: ≤ 90 mg/L  [từ 2026-04-01]" in out


def test_check_a_department_table_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "qcvn-40-2025.bacgiang.yaml"
    table.write_text(
        'format: quantrac-regulation/1\nextends: "QCVN 40:2025/BTNMT"\n'
        'provenance: {source: "bản sao Thông tư 06/2025 (thử)", confidence: M}\n'
        "limits:\n  - {param: TSS, unit: mg/L, max: {A: 1, B: 2, C: 3},"
        " provenance: {source: made-up test row, confidence: L}}\n",
        encoding="utf-8",
    )
    assert main(["regulations", "check", str(table)]) == 0
    out = capsys.readouterr().out
    assert f"{table}: OK (table supplement of QCVN 40:2025/BTNMT)" in out
    assert "qcvn-40-2025-btnmt.yaml: OK (QCVN 40:2025/BTNMT, 3 limit values, 3 unverified)" in out
