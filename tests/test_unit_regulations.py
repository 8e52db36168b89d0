"""Unit tests of quantrac.regulations.tables: the shipped catalog against regulations.md, the
loader's errors (file:line: field), penalty bands, and regulation files a user adds without code."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from quantrac.core.catalog import Catalog
from quantrac.core.registry import RegistryIssue
from quantrac.core.settings import default_config_dir
from quantrac.regulations.tables import (
    PenaltySchedule,
    Provenance,
    Regulation,
    RegulationCatalog,
    RegulationError,
    load_regulation_catalog,
    load_regulation_file,
    load_regulation_files,
)

FOLDER = default_config_dir() / "regulations"

# Shaped like QCVN 40:2025 (columns A/B/C by receiving water, limits by discharge-flow band, no
# Kq/Kf). The numbers are made up: the real ones were not obtained (regulations.md §6).
QCVN_40_2025_LIKE = """\
format: quantrac-regulation/1
id: "QCVN 40:2025/BTNMT"
title: {vi: "Nước thải công nghiệp (thử)", en: "Industrial wastewater (test)"}
kind: wastewater
effective_from: 2025-09-01
effective_to: null
replaced_by: null
provenance: {source: "made-up test file", confidence: L, note: "numbers invented"}
sources:
  madeup: {source: "made-up test file", confidence: L}
  permitted: {source: "made-up test file, checked", confidence: H}
averaging: {default: 1h, provenance: madeup}
columns:
  A: {vi: "Nguồn nước loại 1", en: "Class 1 receiving water"}
  B: {vi: "Nguồn nước loại 2", en: "Class 2 receiving water"}
  C: {vi: "Nguồn nước loại 3", en: "Class 3 receiving water"}
flow_bands:
  input: discharge_m3_per_day
  symbol: F
  unit: "m3/day"
  bands:
    - {id: small, up_to: 1000}
    - {id: medium, over: 1000, up_to: 5000}
    - {id: large, over: 5000}
limits:
  - param: pH
    unit: "pH"
    min: {A: 6, B: 5.5, C: 5.5}
    max: {A: 9, B: 9, C: 9}
    provenance: permitted
  - {param: COD, unit: "mg/L", flow_band: small, max: {A: 70, B: 110, C: 140}, provenance: madeup}
  - {param: COD, unit: "mg/L", flow_band: medium, max: {A: 60, B: 100, C: 130}, provenance: madeup}
  - {param: COD, unit: "mg/L", flow_band: large, max: {A: 50, B: 90, C: 120}, provenance: madeup}
  - {param: Temp, unit: "°C", max: {A: 40, B: 40, C: 40}, provenance: permitted}
"""

# Shaped like QCVN 19:2024 (columns A/B/C, source categories with their own O2 reference).
# Gas-turbine rows use the sample values of regulations.md §6 [M]; the boiler row is made up.
QCVN_19_2024_LIKE = """\
format: quantrac-regulation/1
id: "QCVN 19:2024/BTNMT"
title: {vi: "Khí thải công nghiệp (thử)", en: "Industrial emissions (test)"}
kind: emission
issued_by: "Thông tư 45/2024/TT-BTNMT"
effective_from: 2025-07-01
provenance: {source: "regulations.md §6", confidence: H}
sources:
  sample: {source: "regulations.md §6 sample (gas turbines, 15 % O2)", confidence: M}
  madeup: {source: "made-up test row", confidence: L}
averaging: {default: 1h, provenance: madeup}
columns:
  A: {vi: "Vùng A", en: "Zone A"}
  B: {vi: "Vùng B", en: "Zone B"}
  C: {vi: "Vùng C", en: "Zone C"}
categories:
  gas_turbine_gt_1200mw:
    {vi: "Tua bin khí > 1200 MW", en: "Gas turbines > 1200 MW", o2_reference_percent: 15}
  gas_turbine_le_300mw:
    {vi: "Tua bin khí ≤ 300 MW", en: "Gas turbines ≤ 300 MW", o2_reference_percent: 15}
  coal_boiler: {vi: "Lò hơi đốt than", en: "Coal boilers", o2_reference_percent: 6}
limits:
  - {param: SO2, unit: "mg/Nm3", category: gas_turbine_gt_1200mw,
     max: {A: 50, B: 60, C: 70}, provenance: sample}
  - {param: NOx, unit: "mg/Nm3", category: gas_turbine_gt_1200mw,
     max: {A: 50, B: 70, C: 90}, provenance: sample}
  - {param: PM, unit: "mg/Nm3", category: gas_turbine_gt_1200mw,
     max: {A: 15, B: 15, C: 20}, provenance: sample}
  - {param: SO2, unit: "mg/Nm3", category: gas_turbine_le_300mw,
     max: {A: 50, B: 80, C: 90}, provenance: sample}
  - {param: NOx, unit: "mg/Nm3", category: gas_turbine_le_300mw,
     max: {A: 70, B: 120, C: 150}, provenance: sample}
  - {param: SO2, unit: "mg/Nm3", category: coal_boiler, max: {A: 300, B: 400, C: 500},
     provenance: madeup}
"""


@pytest.fixture(scope="session")
def regulations(catalog: Catalog) -> RegulationCatalog:
    return load_regulation_catalog(FOLDER, catalog)


def value(reg: Regulation, param: str, column: str | None, averaging: str = "1h") -> float | None:
    (row,) = [
        r
        for r in reg.limits
        if r.param == param
        and r.column == column
        and r.averaging == averaging
        and r.category is None
    ]
    return row.maximum


def issues_of(path: Path, catalog: Catalog) -> list[RegistryIssue]:
    with pytest.raises(RegulationError) as info:
        load_regulation_file(path, catalog)
    assert str(info.value) == "\n".join(str(i) for i in info.value.issues)
    return info.value.issues


def line_of(text: str, snippet: str) -> int:
    (index,) = [i for i, line in enumerate(text.splitlines(), 1) if snippet in line]
    return index


def mutated(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, str]:
    text = (FOLDER / name).read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path, text


# --- the shipped catalog -----------------------------------------------------------------------


def test_shipped_catalog_has_old_and_2025_regulations_and_decree_45(
    regulations: RegulationCatalog,
) -> None:
    assert [r.id for r in regulations.all()] == [
        "QCVN 05:2023/BTNMT",
        "QCVN 14:2008/BTNMT",
        "QCVN 14:2025/BTNMT",
        "QCVN 19:2009/BTNMT",
        "QCVN 19:2024/BTNMT",
        "QCVN 22:2009/BTNMT",
        "QCVN 23:2009/BTNMT",
        "QCVN 40:2011/BTNMT",
        "QCVN 40:2025/BTNMT",
    ]
    assert [p.id for p in regulations.penalties] == ["Nghị định 45/2022/NĐ-CP"]


def test_2025_regulations_carry_only_known_facts(regulations: RegulationCatalog) -> None:
    ww = regulations.get("QCVN 40:2025/BTNMT")
    em = regulations.get("QCVN 19:2024/BTNMT")
    dom = regulations.get("QCVN 14:2025/BTNMT")
    assert ww is not None and em is not None and dom is not None
    assert (ww.issued_by, ww.effective_from) == (
        "Thông tư 06/2025/TT-BTNMT (28/02/2025)",
        date(2025, 9, 1),
    )
    assert (em.issued_by, em.effective_from) == (
        "Thông tư 45/2024/TT-BTNMT (30/12/2024)",
        date(2025, 7, 1),
    )
    assert (dom.issued_by, dom.effective_from) == (
        "Thông tư 05/2025/TT-BTNMT (28/02/2025)",
        date(2025, 9, 1),
    )
    # No invented number: the wastewater tables are empty and say so.
    assert ww.limits == () and dom.limits == () and ww.limits_missing and dom.limits_missing
    assert "Circular 06/2025" in ww.missing_text("en")
    assert list(ww.columns) == list(em.columns) == ["A", "B", "C"] and dom.columns == {}
    assert "QCVN 08:2023" in ww.column_choice("en")
    # QCVN 19:2024: only the §6 gas-turbine samples, all at 15 % O2, confidence M.
    assert em.limits_missing and {r.provenance.confidence for r in em.limits} == {"M"}
    assert {c.o2_reference_percent for c in em.categories.values()} == {15}
    so2 = {
        r.column: r.maximum
        for r in em.limits
        if r.param == "SO2" and r.category == "gas_turbine_gt_1200mw"
    }
    assert so2 == {"A": 50, "B": 60, "C": 70}
    # The transition: existing facilities keep the old regulation until 31/12/2031.
    assert ww.transition is not None and em.transition is not None and dom.transition is not None
    assert ww.transition.existing_until == em.transition.existing_until == date(2032, 1, 1)
    assert dom.transition.existing_until is None  # not obtained
    assert regulations.successor("QCVN 40:2011/BTNMT") is ww
    assert regulations.successor("QCVN 23:2009/BTNMT") is em
    assert regulations.successor("QCVN 14:2008/BTNMT") is dom
    assert regulations.successor("QCVN 05:2023/BTNMT") is None


def test_sector_regulations_ship_structure_only(regulations: RegulationCatalog) -> None:
    cement = regulations.get("QCVN 23:2009/BTNMT")
    power = regulations.get("QCVN 22:2009/BTNMT")
    assert cement is not None and power is not None
    assert cement.sector_of == power.sector_of == "QCVN 19:2009/BTNMT"
    assert cement.limits == () and power.limits == ()
    assert cement.effective_to == power.effective_to == date(2032, 1, 1)
    assert cement.sector("en") == "cement kilns"


def test_filled_facts_qcvn_19_2009_circular_and_decree_45_emission_warning(
    regulations: RegulationCatalog,
) -> None:
    reg = regulations.get("QCVN 19:2009/BTNMT")
    assert reg is not None and reg.issued_by == "Thông tư 25/2009/TT-BTNMT (16/11/2009)"
    band = regulations.band_for("emission", 1.05)
    assert band is not None and band.consequence("en") == "Warning"
    assert band.provenance is not None and band.provenance.confidence == "H"
    assert not band.unverified and "Điều 20" in band.article


def test_qcvn_40_2011_values(regulations: RegulationCatalog) -> None:
    reg = regulations.get("QCVN 40:2011/BTNMT")
    assert reg is not None and reg.kind == "wastewater"
    assert (reg.effective_from, reg.effective_to) == (date(2012, 2, 15), date(2032, 1, 1))
    assert reg.replaced_by == "QCVN 40:2025/BTNMT" and reg.o2_reference_percent is None
    assert set(reg.columns) == {"A", "B"}
    assert "domestic water supply" in reg.columns["A"]
    table = {"COD": (75, 150), "TSS": (50, 100), "NH4": (5, 10), "BOD5": (30, 50)}
    table |= {"Color": (50, 150), "Hg": (0.005, 0.01), "Fe": (1, 5), "TN": (20, 40)}
    table |= {"TP": (4, 6), "Coliform": (3000, 5000), "GrossBeta": (1.0, 1.0)}
    for param, (a, b) in table.items():
        assert (value(reg, param, "A"), value(reg, param, "B")) == (a, b), param
    ph = {r.column: (r.minimum, r.maximum) for r in reg.limits if r.param == "pH"}
    assert ph == {"A": (6, 9), "B": (5.5, 9)}
    assert reg.coefficients_not_applied_to == {
        "Temp",
        "Color",
        "pH",
        "Coliform",
        "GrossAlpha",
        "GrossBeta",
    }
    assert [c.name for c in reg.coefficients] == ["Kq", "Kf"]
    # §6 wins: main rows M-H, nothing of QCVN 40:2011 is [L].
    assert reg.unverified_count() == 0
    cod = next(r for r in reg.limits if r.param == "COD")
    assert cod.provenance.confidence == "M-H" and cod.averaging == "1h"
    assert reg.averaging_provenance is not None and reg.averaging_provenance.unverified


def test_qcvn_14_2008_values(regulations: RegulationCatalog) -> None:
    reg = regulations.get("QCVN 14:2008/BTNMT")
    assert reg is not None
    assert not any(r.param == "COD" for r in reg.limits)  # QCVN 14 has no COD
    assert (value(reg, "BOD5", "A"), value(reg, "BOD5", "B")) == (30, 50)
    assert (value(reg, "Sulfide", "A"), value(reg, "Sulfide", "B")) == (1.0, 4.0)
    assert (value(reg, "PO4", "A"), value(reg, "Coliform", "B")) == (6, 5000)
    assert reg.coefficients_not_applied_to == {"pH", "Coliform"}
    (k,) = reg.coefficients
    assert k.name == "K" and k.rule.allowed == (1.0, 1.2) and k.provenance.unverified
    # Table [H]; K [L-M]: only K's two values are unverified.
    assert reg.unverified_count() == 2


def test_qcvn_19_2009_values(regulations: RegulationCatalog) -> None:
    reg = regulations.get("QCVN 19:2009/BTNMT")
    assert reg is not None and reg.kind == "emission"
    assert reg.o2_reference_percent is None  # QCVN 19:2009 has no O2 reference
    assert (value(reg, "PM", "A"), value(reg, "PM", "B")) == (400, 200)
    assert (value(reg, "SO2", "A"), value(reg, "SO2", "B")) == (1500, 500)
    assert (value(reg, "NOx", "A"), value(reg, "NOx", "B")) == (1000, 850)
    assert (value(reg, "Zn", "A"), value(reg, "Sb", "B")) == (30, 10)
    acid = [r.maximum for r in reg.limits if r.param == "NOx" and r.category == "acid_plant"]
    assert acid == [2000, 1000]
    assert all(r.unverified for r in reg.limits)  # the whole table is [L-M]
    assert {c.name: c.provenance.confidence for c in reg.coefficients} == {"Kp": "M", "Kv": "M"}
    assert reg.unverified_count() == len(reg.limits) == 36


def test_qcvn_05_2023_values(regulations: RegulationCatalog) -> None:
    reg = regulations.get("QCVN 05:2023/BTNMT")
    assert reg is not None and reg.kind == "air" and reg.columns == {}
    assert reg.effective_from == date(2023, 9, 12)
    assert value(reg, "SO2", None, "1h") == 350
    assert value(reg, "CO", None, "8h") == 10000
    assert value(reg, "O3", None, "8h") == 120
    assert value(reg, "PM10", None, "24h") == 100
    assert value(reg, "PM2,5", None, "year") == 25
    pm25 = sorted(
        (
            (r.valid_from, r.valid_to, r.maximum)
            for r in reg.limits
            if r.param == "PM2,5" and r.averaging == "24h"
        ),
        key=lambda t: t[0] or date.min,
    )
    assert pm25 == [(None, date(2026, 1, 1), 50), (date(2026, 1, 1), None, 45)]
    assert {r.unit for r in reg.limits} == {"µg/m3"}
    assert reg.unverified_count() == 0 and reg.provenance.confidence == "H"


@pytest.mark.parametrize(
    ("confidence", "unverified"),
    [("H", False), ("M", False), ("M-H", False), ("M-", False), ("L", True), ("L-M", True)],
)
def test_unverified_when_confidence_starts_with_l(confidence: str, unverified: bool) -> None:
    assert Provenance("x", confidence).unverified is unverified


# --- penalty bands -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("multiple", "label"),
    [
        (0.5, None),
        (1.0, None),  # at the limit: compliant
        (1.0001, "<1.1"),
        (1.0999, "<1.1"),
        (1.1, "1.1–<1.5"),
        (1.4999, "1.1–<1.5"),
        (1.5, "1.5–<3"),
        (2.9999, "1.5–<3"),
        (3.0, "3–<5"),
        (5.0, "5–<10"),
        (9.9999, "5–<10"),
        (10.0, "≥10"),
        (250.0, "≥10"),
    ],
)
def test_wastewater_band_edges(
    regulations: RegulationCatalog, multiple: float, label: str | None
) -> None:
    band = regulations.band_for("wastewater", multiple)
    assert (band.label if band else None) == label


def test_band_details(regulations: RegulationCatalog) -> None:
    warning = regulations.band_for("wastewater", 1.05)
    assert warning is not None
    assert warning.consequence_en == "Warning" and warning.consequence_vi == "Cảnh cáo"
    assert warning.article == "Điều 18" and not warning.unverified
    assert (warning.lower, warning.upper) == (1.0, 1.1)
    fined = regulations.band_for("wastewater", 1.2)
    assert fined is not None and fined.fine_tiers[0].max_vnd == 500_000
    high = regulations.band_for("wastewater", 4)
    assert high is not None and high.provenance is not None
    assert high.provenance.confidence == "M-" and not high.unverified
    top = regulations.band_for("wastewater", 12)
    assert top is not None and top.upper is None
    emission = regulations.band_for("emission", 2.0)
    assert emission is not None and emission.label == "2–<3"
    assert emission.article == "Điều 20" and emission.unverified
    assert regulations.band_for("emission", 1.7).label == "1.5–<2"  # type: ignore[union-attr]
    assert regulations.band_for("air", 5.0) is None
    assert regulations.band_for("noise", 5.0) is None
    assert regulations.band_for("wastewater", float("nan")) is None


# --- files a user adds -------------------------------------------------------------------------


def test_qcvn_40_2025_shaped_file_loads_without_code(tmp_path: Path, catalog: Catalog) -> None:
    for path in FOLDER.glob("*.yaml"):
        shutil.copy(path, tmp_path)
    (tmp_path / "qcvn-40-2025-btnmt.yaml").write_text(QCVN_40_2025_LIKE, encoding="utf-8")
    regulations = load_regulation_catalog(tmp_path, catalog)
    reg = regulations.get("QCVN 40:2025/BTNMT")
    assert reg is not None and list(reg.columns) == ["A", "B", "C"]
    assert reg.coefficients == () and reg.flow_bands is not None
    assert [b.id for b in reg.flow_bands.bands] == ["small", "medium", "large"]
    assert reg.flow_bands.band_for(1000).id == "small"  # type: ignore[union-attr]
    assert reg.flow_bands.band_for(1000.5).id == "medium"  # type: ignore[union-attr]
    cod_c = {r.flow_band: r.maximum for r in reg.limits if r.param == "COD" and r.column == "C"}
    assert cod_c == {"small": 140, "medium": 130, "large": 120}
    assert regulations.get("QCVN 40:2011/BTNMT") is not None  # side by side


def test_qcvn_19_2024_shaped_file_loads(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "qcvn-19-2024-btnmt.yaml"
    path.write_text(QCVN_19_2024_LIKE, encoding="utf-8")
    reg = load_regulation_file(path, catalog)
    assert isinstance(reg, Regulation)
    assert reg.categories["gas_turbine_gt_1200mw"].o2_reference_percent == 15
    assert reg.categories["coal_boiler"].o2_reference_percent == 6
    assert reg.inputs() == {"category"}
    assert reg.unverified_count() == 3  # the made-up coal-boiler row, in three columns


# --- loader errors -----------------------------------------------------------------------------


def test_unknown_parameter_code(tmp_path: Path, catalog: Catalog) -> None:
    path, text = mutated(tmp_path, "qcvn-40-2011-btnmt.yaml", "{param: TN,", "{param: TotalNitro,")
    (issue,) = issues_of(path, catalog)
    assert issue.file == str(path)
    assert (issue.line, issue.field) == (line_of(text, "TotalNitro"), "limits[23].param")
    assert "unknown parameter code 'TotalNitro'" in issue.message


def test_non_canonical_code_and_unit(tmp_path: Path, catalog: Catalog) -> None:
    path, text = mutated(
        tmp_path,
        "qcvn-05-2023-btnmt.yaml",
        '{param: "PM2,5", unit: "µg/m3", averaging: year',
        '{param: "PM2.5", unit: "ug/m3", averaging: year',
    )
    found = [(i.line, i.field, i.message) for i in issues_of(path, catalog)]
    line = line_of(text, '"PM2.5"')
    assert found == [
        (line, "limits[17].param", "write the canonical code 'PM2,5', not 'PM2.5'"),
        (line, "limits[17].unit", "write the unit id 'µg/m3', not 'ug/m3'"),
    ]


def test_unknown_unit_and_unit_the_parameter_cannot_have(tmp_path: Path, catalog: Catalog) -> None:
    path, text = mutated(
        tmp_path, "qcvn-40-2011-btnmt.yaml", '{param: TP, unit: "mg/L"', '{param: TP, unit: "ppm"'
    )
    (issue,) = issues_of(path, catalog)
    assert (issue.line, issue.field) == (line_of(text, '"ppm"'), "limits[24].unit")
    assert "unknown unit 'ppm'" in issue.message
    path, text = mutated(
        tmp_path,
        "qcvn-19-2009-btnmt.yaml",
        '{param: PM, unit: "mg/Nm3"',
        '{param: PM, unit: "mg/L"',
    )
    (issue,) = issues_of(path, catalog)
    assert issue.field == "limits[0].unit" and issue.message == "PM cannot be measured in mg/L"


def test_bad_confidence(tmp_path: Path, catalog: Catalog) -> None:
    path, text = mutated(tmp_path, "qcvn-40-2011-btnmt.yaml", "confidence: M-H", "confidence: high")
    (issue,) = issues_of(path, catalog)
    assert (issue.line, issue.field) == (
        line_of(text, "confidence: high"),
        "sources.main.confidence",
    )
    assert "confidence tag" in issue.message and "'high'" in issue.message


def test_overlapping_date_ranges(tmp_path: Path, catalog: Catalog) -> None:
    path, text = mutated(
        tmp_path,
        "qcvn-05-2023-btnmt.yaml",
        "max: 45, valid_from: 2026-01-01",
        "max: 45, valid_from: 2025-06-01",
    )
    (issue,) = issues_of(path, catalog)
    assert (issue.line, issue.field) == (line_of(text, "max: 45"), "limits[16].valid_from")
    assert (
        f"PM2,5 24h: dates overlap limits[15] (line {line_of(text, 'max: 50, valid_to')})"
        in issue.message
    )


def test_coefficient_band_gap_and_overlap(tmp_path: Path, catalog: Catalog) -> None:
    path, text = mutated(
        tmp_path,
        "qcvn-40-2011-btnmt.yaml",
        "{over: 500, up_to: 5000, value: 1.0}",
        "{over: 600, up_to: 5000, value: 1.0}",
    )
    (issue,) = issues_of(path, catalog)
    assert (issue.line, issue.field) == (
        line_of(text, "over: 600"),
        "coefficients.Kf.bands[2].over",
    )
    assert issue.message == "gap: nothing covers 500 < F ≤ 600"
    path, text = mutated(
        tmp_path,
        "qcvn-19-2009-btnmt.yaml",
        "{over: 100000, value: 0.8}",
        "{over: 90000, value: 0.8}",
    )
    (issue,) = issues_of(path, catalog)
    assert issue.field == "coefficients.Kp.bands[2].over" and "overlaps" in issue.message


def test_penalty_band_gap(tmp_path: Path, catalog: Catalog) -> None:
    path, text = mutated(
        tmp_path,
        "nd-45-2022-penalty-bands.yaml",
        'ww_higher\n        clause: "not verified"\n      - lower: 5\n',
        'ww_higher\n        clause: "not verified"\n      - lower: 6\n',
    )
    (issue,) = issues_of(path, catalog)
    assert (issue.line, issue.field) == (
        line_of(text, "lower: 6"),
        "kinds.wastewater.bands[4].lower",
    )
    assert issue.message == "gap: the band before ends at 5, this one starts at 6"


def test_missing_column_value_and_unknown_field(tmp_path: Path, catalog: Catalog) -> None:
    path, _ = mutated(
        tmp_path, "qcvn-40-2011-btnmt.yaml", "max: {A: 75, B: 150}", "max: {A: 75}, maxx: 1"
    )
    found = {(i.field, i.message.split(" (")[0]) for i in issues_of(path, catalog)}
    assert found == {
        ("limits[4].max", "no value for column B"),
        ("limits[4].maxx", "unknown field"),
    }


def test_other_file_errors(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("format: something-else\n", encoding="utf-8")
    (issue,) = issues_of(path, catalog)
    assert (issue.line, issue.field) == (1, "format")
    path.write_text("format: quantrac-regulation/1\nid: [unclosed\n", encoding="utf-8")
    (issue,) = issues_of(path, catalog)
    assert issue.field == "(yaml)" and issue.line == 3
    path, _ = mutated(tmp_path, "qcvn-14-2008-btnmt.yaml", "provenance: k\n", "provenance: kk\n")
    (issue,) = issues_of(path, catalog)
    assert (
        issue.field == "coefficients.K.provenance" and issue.message == "no entry 'kk' in 'sources'"
    )


def test_duplicate_id_across_files(tmp_path: Path, catalog: Catalog) -> None:
    first = tmp_path / "a.yaml"
    second = tmp_path / "b.yaml"
    first.write_text(QCVN_40_2025_LIKE, encoding="utf-8")
    second.write_text(QCVN_40_2025_LIKE, encoding="utf-8")
    with pytest.raises(RegulationError) as info:
        load_regulation_files([first, second], catalog)
    (issue,) = info.value.issues
    assert (issue.file, issue.line, issue.field) == (str(second), 2, "id")
    assert f"is also in {first}" in issue.message


def test_missing_folder(tmp_path: Path, catalog: Catalog) -> None:
    with pytest.raises(RegulationError) as info:
        load_regulation_catalog(tmp_path / "nope", catalog)
    assert info.value.issues[0].message == "not a folder"


def test_penalty_file_is_a_schedule(catalog: Catalog) -> None:
    loaded = load_regulation_file(FOLDER / "nd-45-2022-penalty-bands.yaml", catalog)
    assert isinstance(loaded, PenaltySchedule)
    assert [b.label for b in loaded.bands["emission"]] == [
        "<1.1",
        "1.1–<1.5",
        "1.5–<2",
        "2–<3",
        "3–<5",
        "5–<10",
        "≥10",
    ]
    assert loaded.unverified_count() == 6  # every emission band but the warning (< 1.1) is [L]


def test_penalty_clauses_are_only_those_a_source_names(catalog: Catalog) -> None:
    """regulations.md names no khoản of Decree 45/2022; the one clause shipped (Điều 20 khoản 1,
    emissions below 1.1×) carries its source; every other band says it is not verified."""
    loaded = load_regulation_file(FOLDER / "nd-45-2022-penalty-bands.yaml", catalog)
    assert isinstance(loaded, PenaltySchedule)
    named = {
        (kind, b.label, b.article, b.clause)
        for kind, bands in loaded.bands.items()
        for b in bands
        if b.clause
    }
    assert named == {("emission", "<1.1", "Điều 20", "khoản 1")}
    (warning,) = [b for b in loaded.bands["emission"] if b.clause]
    assert warning.clause_provenance is not None
    assert "Điều 20 khoản 1" in warning.clause_provenance.source
    others = [b for bands in loaded.bands.values() for b in bands if not b.clause]
    assert len(others) == 12 and all(b.clause_provenance is None for b in others)
    text = (FOLDER / "nd-45-2022-penalty-bands.yaml").read_text(encoding="utf-8")
    assert text.count('clause: "not verified"') == 12  # stated as data, not left out


def test_penalty_clause_needs_its_source(tmp_path: Path, catalog: Catalog) -> None:
    path, _ = mutated(
        tmp_path,
        "nd-45-2022-penalty-bands.yaml",
        'ww_h\n        clause: "not verified"\n      - lower: 1.1\n',
        'ww_h\n        clause: "khoản 1"\n      - lower: 1.1\n',
    )
    (issue,) = issues_of(path, catalog)
    assert issue.field == "kinds.wastewater.bands[0].clause_source"
    assert issue.message.startswith("'clause_source' is required with a clause")


def test_penalty_clause_source_must_exist(tmp_path: Path, catalog: Catalog) -> None:
    path, _ = mutated(
        tmp_path,
        "nd-45-2022-penalty-bands.yaml",
        "clause_source: em_warning ",
        "clause_source: em_nowhere ",
    )
    (issue,) = issues_of(path, catalog)
    assert issue.field == "kinds.emission.bands[0].clause_source"
    assert issue.message == "no entry 'em_nowhere' in 'sources'"
