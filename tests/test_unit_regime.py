"""A facility's regime: which regulation applies on which day, and why (the 2025 transition,
an earlier switch date from the permit, new facilities, permit limits, sector regulations and
regulations whose numeric table is missing). Dates from ../shared/docs/regulations.md §6."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from quantrac.core.catalog import Catalog
from quantrac.core.registry import RegistryError, Station, registry_from_text
from quantrac.core.time import VIETNAM
from quantrac.regulations.limits import StationLimits, station_limits
from quantrac.regulations.tables import (
    RegulationCatalog,
    RegulationError,
    load_regulation_catalog,
    regulation_files,
)
from tests.test_unit_regulations import FOLDER

HEAD = """\
stations:
  - id: {sid}
    name: "Trạm thử"
    kind: {kind}
    facility: "Cơ sở thử"
    province: "Bắc Ninh"
    location: {{lat: 21.25, lon: 106.09}}
"""
WASTEWATER = """\
    parameters:
      - {code: Flow, unit: "m3/h"}
      - {code: pH, unit: "pH"}
      - {code: COD, unit: "mg/L"}
      - {code: TSS, unit: "mg/L"}
      - {code: NH4, unit: "mg/L"}
"""
STACK = """\
    parameters:
      - {code: Flow, unit: "m3/h"}
      - {code: O2, unit: "%"}
      - {code: PM, unit: "mg/Nm3"}
      - {code: SO2, unit: "mg/Nm3"}
"""
OLD_40 = """\
    regulation:
      id: "QCVN 40:2011/BTNMT"
      column: A
      coefficients: {receiving_water: river, receiving_flow_m3s: 120, discharge_m3_per_day: 4000}
"""
PERMIT = """\
    permit:
      number: "45/GPMT-UBND"
      issued_on: 2026-03-02
      issued_by: "UBND tỉnh Bắc Ninh"
"""
NEXT_40 = """\
      next: {id: "QCVN 40:2025/BTNMT", column: B}
"""


def station(catalog: Catalog, text: str, sid: str = "WW1", kind: str = "wastewater") -> Station:
    registry = registry_from_text(HEAD.format(sid=sid, kind=kind) + text, catalog, "st.yaml")
    return registry.stations[sid]


def vn(day: str, hour: int = 12) -> datetime:
    """An hour (noon) of a Vietnamese calendar day, as UTC."""
    d = date.fromisoformat(day)
    return datetime(d.year, d.month, d.day, hour, tzinfo=VIETNAM).astimezone(UTC)


def bound(limits: StationLimits, param: str, at: datetime) -> tuple[str, float | None] | None:
    found = limits.in_force(param, at)
    return (found[0].regulation_id, found[0].maximum) if found else None


@pytest.fixture(scope="module")
def regulations(catalog: Catalog) -> RegulationCatalog:
    return load_regulation_catalog(FOLDER, catalog)


# --- the transition ------------------------------------------------------------------------------


def test_existing_facility_keeps_the_old_regulation_until_31_12_2031(
    catalog: Catalog, regulations: RegulationCatalog
) -> None:
    text = WASTEWATER + OLD_40 + '    regime:\n      status: existing\n      basis: "ĐTM 2019"\n'
    result = station_limits(station(catalog, text + NEXT_40), regulations)
    # Kq 1.0 (Q = 120 m3/s), Kf 1.0 (F = 4000 m3/day): COD A = 75.
    assert bound(result, "COD", vn("2031-12-31")) == ("QCVN 40:2011/BTNMT", 75)
    # The switch happens at Vietnamese midnight: 16:59 UTC is still 31/12, 17:00 is 01/01.
    last_minute = datetime(2031, 12, 31, 16, 59, tzinfo=UTC)
    first_minute = datetime(2031, 12, 31, 17, 0, tzinfo=UTC)
    assert bound(result, "COD", last_minute) == ("QCVN 40:2011/BTNMT", 75)
    assert bound(result, "COD", first_minute) is None  # QCVN 40:2025 has no number
    first, second = result.regime
    assert (first.regulation_id, first.valid_to) == ("QCVN 40:2011/BTNMT", date(2032, 1, 1))
    assert (second.regulation_id, second.column, second.valid_from) == (
        "QCVN 40:2025/BTNMT",
        "B",
        date(2032, 1, 1),
    )
    assert result.regime_on(date(2031, 12, 31)) is first
    assert result.regime_on(date(2032, 1, 1)) is second
    assert first.reason("en") == (
        "Existing facility (ĐTM 2019): keeps QCVN 40:2011/BTNMT until 31/12/2031 under the "
        "transition to QCVN 40:2025/BTNMT."
    )
    assert "Cơ sở hiện hữu (ĐTM 2019)" in first.reason("vi")
    # From 2032 the station is on a regulation without numbers: said for every parameter.
    missing = [p for p in result.problems if "no numeric limit" in p]
    assert [p.split(":")[1].strip() for p in missing] == ["pH", "COD", "TSS", "NH4"]
    assert missing[1].startswith(
        "WW1: COD: no numeric limit in QCVN 40:2025/BTNMT (from 2032-01-01): No limit table"
    )


def test_existing_facility_without_next_ends_with_the_transition(
    catalog: Catalog, regulations: RegulationCatalog
) -> None:
    text = WASTEWATER + OLD_40 + '    regime: {status: existing, basis: "ĐTM 2019"}\n'
    result = station_limits(station(catalog, text), regulations)
    assert result.problems == []
    assert result.regime[1].reason_key == "regime.next_missing"
    assert "After the transition: QCVN 40:2025/BTNMT" in result.regime[1].reason("en")
    assert bound(result, "COD", vn("2032-01-01")) is None


def test_permit_sets_an_earlier_switch_date(
    catalog: Catalog, regulations: RegulationCatalog
) -> None:
    text = WASTEWATER + OLD_40 + PERMIT
    text += '    regime:\n      status: existing\n      basis: "ĐTM 2019"\n'
    text += "      switch_on: 2028-01-01\n" + NEXT_40
    result = station_limits(station(catalog, text), regulations)
    assert bound(result, "COD", vn("2027-12-31")) == ("QCVN 40:2011/BTNMT", 75)
    assert bound(result, "COD", vn("2028-01-01")) is None
    assert result.regime[0].valid_to == date(2028, 1, 1)
    assert result.regime[0].reason("en") == (
        "Existing facility (ĐTM 2019): keeps QCVN 40:2011/BTNMT until 31/12/2027; switches to "
        "QCVN 40:2025/BTNMT on 01/01/2028 as set by Giấy phép môi trường số 45/GPMT-UBND ngày "
        "02/03/2026 (UBND tỉnh Bắc Ninh)."
    )


def test_a_switch_date_after_the_transition_is_a_problem(
    catalog: Catalog, regulations: RegulationCatalog
) -> None:
    text = WASTEWATER + OLD_40
    text += '    regime: {status: existing, basis: "x", switch_on: 2033-01-01}\n'
    result = station_limits(station(catalog, text), regulations)
    assert any("regime.switch_on: 2033-01-01 is after the end" in p for p in result.problems)
    assert result.regime[0].valid_to == date(2032, 1, 1)


# --- new facilities and the permit ---------------------------------------------------------------


NEW_40 = """\
    regulation: {id: "QCVN 40:2025/BTNMT", column: B}
    regime: {status: new, basis: "ĐTM phê duyệt 12/2025"}
"""
PERMIT_LIMITS = """\
      limits:
        - {param: COD, max: 80}
        - {param: pH, min: 6, max: 9}
"""


def test_new_facility_takes_its_limits_from_the_permit(
    catalog: Catalog, regulations: RegulationCatalog
) -> None:
    result = station_limits(
        station(catalog, WASTEWATER + NEW_40 + PERMIT + PERMIT_LIMITS), regulations
    )
    cod = result.in_force("COD", vn("2026-06-01"))
    assert [(c.source, c.maximum, c.unit, c.averaging) for c in cod] == [
        ("permit", 80, "mg/L", "1h")
    ]
    assert cod[0].provenance.source == (
        "Giấy phép môi trường số 45/GPMT-UBND ngày 02/03/2026 (UBND tỉnh Bắc Ninh)"
    )
    assert cod[0].regulation_id == "QCVN 40:2025/BTNMT" and cod[0].column == "B"
    # Not before the regulation is in force.
    assert result.in_force("COD", vn("2025-08-31")) == []
    assert result.regime[0].reason("en") == (
        "New facility (ĐTM phê duyệt 12/2025): QCVN 40:2025/BTNMT applies from its first day "
        "in force."
    )
    # Flow is never limited; TSS and NH4 have no number anywhere: said clearly.
    missing = [p for p in result.problems if "no numeric limit" in p]
    assert [p.split(":")[1].strip() for p in missing] == ["TSS", "NH4"]
    assert "(from 2025-09-01)" in missing[0]


def test_new_facility_on_an_old_regulation_is_a_problem(
    catalog: Catalog, regulations: RegulationCatalog
) -> None:
    text = WASTEWATER + OLD_40 + '    regime: {status: new, basis: "ĐTM 2026"}\n'
    result = station_limits(station(catalog, text), regulations)
    assert result.problems[0] == (
        "WW1: regime.status: a new facility applies QCVN 40:2025/BTNMT (in force from "
        "01/09/2025), not QCVN 40:2011/BTNMT which it replaces; set regulation.id"
    )


def test_permit_limit_overrides_the_regulation_by_date(
    catalog: Catalog, regulations: RegulationCatalog
) -> None:
    text = WASTEWATER + OLD_40 + PERMIT
    text += "      limits:\n        - {param: COD, max: 60, effective_from: 2026-07-01}\n"
    result = station_limits(station(catalog, text), regulations)
    assert result.problems == []
    before, after = vn("2026-06-30"), vn("2026-07-01")
    assert [(c.source, c.maximum) for c in result.in_force("COD", before)] == [("regulation", 75)]
    (permit,) = result.in_force("COD", after)
    assert (permit.source, permit.maximum) == ("permit", 60)
    assert permit.formula == "permit: ≤ 60 mg/L (replaces C × Kq × Kf = 75 × 1.0 × 1.0 = 75 mg/L)"


# --- sector regulations --------------------------------------------------------------------------


CEMENT = """\
    regulation:
      id: "QCVN 19:2009/BTNMT"
      column: B
      coefficients: {stack_flow_m3h: 150000, region_class: 3}
      sector: {id: "QCVN 23:2009/BTNMT"}
"""


def test_a_sector_regulation_without_numbers_is_not_replaced_by_the_general_one(
    catalog: Catalog, regulations: RegulationCatalog
) -> None:
    kiln = station(catalog, STACK + CEMENT, "KILN", "emission")
    result = station_limits(kiln, regulations)
    # The general QCVN 19:2009 would give PM 200 × 0.8 × 1.0; the sector regulation wins, and
    # its numbers are missing: no limit, and the station is told.
    assert result.in_force("PM", vn("2026-01-01")) == []
    missing = [p for p in result.problems if "no numeric limit" in p]
    assert [p.split(":")[1].strip() for p in missing] == ["PM", "SO2"]
    assert "no numeric limit in QCVN 23:2009/BTNMT" in missing[0]
    assert result.regime[0].sector_id == "QCVN 23:2009/BTNMT"


def sector_folder(tmp_path: Path, table: str) -> Path:
    folder = tmp_path / "regs"
    shutil.copytree(FOLDER, folder)
    (folder / "qcvn-23-2009.bacgiang.yaml").write_text(table, encoding="utf-8")
    return folder


CEMENT_TABLE = """\
format: quantrac-regulation/1
extends: "QCVN 23:2009/BTNMT"
provenance: {source: "Sở NN&MT Bắc Ninh, bản sao QCVN 23:2009 (thử)", confidence: M}
limits:
  - {param: PM, unit: "mg/Nm3", max: 100, provenance: {source: "made-up test row", confidence: L}}
"""


def test_a_department_adds_a_sector_table(catalog: Catalog, tmp_path: Path) -> None:
    regulations = load_regulation_catalog(sector_folder(tmp_path, CEMENT_TABLE), catalog)
    cement = regulations.get("QCVN 23:2009/BTNMT")
    assert cement is not None and len(cement.limits) == 1 and len(cement.supplements) == 1
    kiln = station(catalog, STACK + CEMENT, "KILN", "emission")
    result = station_limits(kiln, regulations)
    (pm,) = result.in_force("PM", vn("2026-01-01"))
    assert (pm.regulation_id, pm.maximum, pm.unverified) == ("QCVN 23:2009/BTNMT", 100, True)
    assert pm.provenance.source == "made-up test row"
    # The sector table is still incomplete: SO2 gets no general limit, and is reported.
    assert result.in_force("SO2", vn("2026-01-01")) == []
    assert [p.split(":")[1].strip() for p in result.problems] == ["SO2"]


def test_a_complete_sector_table_leaves_other_parameters_to_the_general_one(
    catalog: Catalog, tmp_path: Path
) -> None:
    folder = sector_folder(tmp_path, CEMENT_TABLE)
    path = folder / "qcvn-23-2009-btnmt.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("limits_missing:")
    path.write_text(text[:start] + "limits: []\n", encoding="utf-8")
    shipped = path.read_text(encoding="utf-8")
    assert "limits_missing" not in shipped
    # An empty table without 'limits_missing' is an error: it must say why it is empty.
    with pytest.raises(RegulationError) as err:
        load_regulation_catalog(folder, catalog)
    assert "limits_missing" in str(err.value)
    path.write_text(
        shipped.replace(
            "limits: []",
            "limits:\n  - {param: PM, unit: mg/Nm3, max: 50,"
            " provenance: {source: t, confidence: M}}",
        ),
        encoding="utf-8",
    )
    (folder / "qcvn-23-2009.bacgiang.yaml").unlink()
    regulations = load_regulation_catalog(folder, catalog)
    result = station_limits(station(catalog, STACK + CEMENT, "KILN", "emission"), regulations)
    assert result.problems == []
    assert bound(result, "PM", vn("2026-01-01")) == ("QCVN 23:2009/BTNMT", 50)
    # SO2 B 500 × Kp 0.8 (P > 100000) × Kv 1.0 (class 3): the general regulation.
    assert bound(result, "SO2", vn("2026-01-01")) == ("QCVN 19:2009/BTNMT", 400)


def test_a_sector_of_another_regulation_is_a_problem(
    catalog: Catalog, regulations: RegulationCatalog
) -> None:
    text = STACK + CEMENT.replace("QCVN 23:2009/BTNMT", "QCVN 19:2024/BTNMT")
    result = station_limits(station(catalog, text, "KILN", "emission"), regulations)
    assert (
        "KILN: regulation.sector.id: QCVN 19:2024/BTNMT is not a sector regulation of "
        "QCVN 19:2009/BTNMT"
    ) in result.problems


# --- table supplements ---------------------------------------------------------------------------


def test_a_supplement_must_fit_the_regulation_it_extends(catalog: Catalog, tmp_path: Path) -> None:
    bad = CEMENT_TABLE.replace('extends: "QCVN 23:2009/BTNMT"', 'extends: "QCVN 99:2030/BTNMT"')
    with pytest.raises(RegulationError) as err:
        load_regulation_catalog(sector_folder(tmp_path, bad), catalog)
    (issue,) = err.value.issues
    assert (issue.line, issue.field) == (2, "extends")
    assert issue.message.startswith("no regulation 'QCVN 99:2030/BTNMT' (known: QCVN 05:2023")


def test_a_supplement_row_may_not_overlap_a_shipped_row(catalog: Catalog, tmp_path: Path) -> None:
    overlap = """\
format: quantrac-regulation/1
extends: "QCVN 19:2024/BTNMT"
provenance: {source: "thử", confidence: M}
limits:
  - {param: SO2, unit: "mg/Nm3", category: gas_turbine_gt_1200mw, max: {A: 1, B: 2, C: 3},
     provenance: {source: "thử", confidence: M}}
"""
    folder = tmp_path / "regs"
    shutil.copytree(FOLDER, folder)
    (folder / "x.yaml").write_text(overlap, encoding="utf-8")
    with pytest.raises(RegulationError) as err:
        load_regulation_catalog(folder, catalog)
    assert "SO2 1h: dates overlap a row of" in str(err.value)
    assert len(regulation_files(folder)) == len(regulation_files(FOLDER)) + 1


def test_a_supplement_adds_source_categories(catalog: Catalog, tmp_path: Path) -> None:
    boiler = """\
format: quantrac-regulation/1
extends: "QCVN 19:2024/BTNMT"
provenance: {source: "Sở NN&MT (thử)", confidence: M}
categories:
  coal_boiler: {vi: "Lò hơi đốt than", en: "Coal boilers", o2_reference_percent: 6}
limits:
  - {param: SO2, unit: "mg/Nm3", category: coal_boiler, max: {A: 1, B: 2, C: 3},
     provenance: {source: "made-up test row", confidence: L}}
"""
    folder = tmp_path / "regs"
    shutil.copytree(FOLDER, folder)
    (folder / "boiler.yaml").write_text(boiler, encoding="utf-8")
    regulations = load_regulation_catalog(folder, catalog)
    text = (
        STACK
        + """\
    regulation: {id: "QCVN 19:2024/BTNMT", column: B, coefficients: {category: coal_boiler}}
    regime: {status: new, basis: "GPMT 2026"}
"""
    )
    result = station_limits(station(catalog, text, "BOILER", "emission"), regulations)
    (so2,) = result.in_force("SO2", vn("2026-01-01"))
    assert (so2.maximum, so2.o2_reference_percent) == (2, 6)
    assert [p.split(":")[1].strip() for p in result.problems] == ["PM"]


# --- the registry fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ('    regime: {status: old, basis: "x"}\n', "stations[0].regime.status", "existing or new"),
        (
            '    regime: {status: new, basis: "x", switch_on: 2028-01-01}\n',
            "stations[0].regime",
            "switch_on and next are for existing facilities",
        ),
        ("    regime: {status: new}\n", "stations[0].regime", "'basis' is required"),
        ("    permit: {issued_by: X}\n", "stations[0].permit", "'number' is required"),
        (
            "    permit: {number: 1, issued_on: soon}\n",
            "stations[0].permit.issued_on",
            "must be a date",
        ),
        ("    aqi_publishable: true\n", "stations[0].aqi_publishable", "only ambient-air"),
        (
            '    regime: {status: existing, basis: "x", next: {id: Y, permit_limits: []}}\n',
            "stations[0].regime.next.permit_limits",
            "unknown field (expected one of coefficients, column, id, sector)",
        ),
    ],
)
def test_registry_checks_the_regime_and_permit_fields(
    catalog: Catalog, extra: str, field: str, message: str
) -> None:
    with pytest.raises(RegistryError) as err:
        station(catalog, WASTEWATER + OLD_40 + extra)
    (issue,) = err.value.issues
    assert issue.field == field and message in issue.message


def test_registry_row_carries_regime_and_permit(catalog: Catalog) -> None:
    text = WASTEWATER + NEW_40 + PERMIT + PERMIT_LIMITS
    row = station(catalog, text).to_row()
    assert row["regulation"]["regime"] == {
        "status": "new",
        "basis": "ĐTM phê duyệt 12/2025",
        "switch_on": None,
        "next": None,
    }
    assert row["regulation"]["permit"]["issued_on"] == "2026-03-02"
    assert row["regulation"]["permit"]["limits"][0] == {"param": "COD", "max": 80}


def test_an_unverified_o2_reference_marks_the_corrected_limit(
    catalog: Catalog, tmp_path: Path
) -> None:
    table = """\
format: quantrac-regulation/1
extends: "QCVN 22:2009/BTNMT"
provenance: {source: "bản sao QCVN 22:2009 (thử)", confidence: M}
limits:
  - {param: SO2, unit: "mg/Nm3", category: coal, max: 500, provenance: {source: t, confidence: M}}
"""
    folder = tmp_path / "regs"
    shutil.copytree(FOLDER, folder)
    (folder / "qcvn-22.local.yaml").write_text(table, encoding="utf-8")
    regulations = load_regulation_catalog(folder, catalog)
    power = regulations.get("QCVN 22:2009/BTNMT")
    assert power is not None and power.unverified_count() == 3  # the three O2 references [L]
    text = (
        STACK
        + """\
    regulation:
      id: "QCVN 19:2009/BTNMT"
      column: B
      coefficients: {stack_flow_m3h: 50000, region_class: 3}
      sector: {id: "QCVN 22:2009/BTNMT", coefficients: {category: coal}}
"""
    )
    result = station_limits(station(catalog, text, "PLANT", "emission"), regulations)
    (so2,) = result.in_force("SO2", vn("2026-01-01"))
    assert (so2.regulation_id, so2.maximum, so2.o2_reference_percent) == (
        "QCVN 22:2009/BTNMT",
        500,
        6,
    )
    assert so2.unverified  # the row is [M], its O2 reference [L]
