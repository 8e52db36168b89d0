"""Unit tests of quantrac.regulations.limits: Cmax per station, every coefficient band edge, ranges,
dates in Vietnam time, unverified marks, permit overrides, and files shaped like QCVN 40:2025 /
19:2024. Expected values are computed by hand from ../shared/docs/regulations.md."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from quantrac.core.catalog import Catalog
from quantrac.core.registry import DeclaredParameter, RegulationRef, Station, load_registry
from quantrac.core.settings import default_config_dir
from quantrac.regulations.limits import (
    EffectiveLimit,
    LimitError,
    StationLimits,
    correct_to_o2_reference,
    station_limits,
    vietnam_date,
)
from quantrac.regulations.tables import (
    RegulationCatalog,
    load_regulation_catalog,
    load_regulation_files,
)
from tests.test_unit_regulations import FOLDER, QCVN_19_2024_LIKE, QCVN_40_2025_LIKE

WW_PARAMS = {"Temp": "°C", "Color": "Pt/Co", "pH": "pH", "COD": "mg/L", "TSS": "mg/L"}
WW_PARAMS |= {"NH4": "mg/L", "BOD5": "mg/L", "Coliform": "MPN/100mL", "Flow": "m3/h"}
STACK_PARAMS = {"PM": "mg/Nm3", "SO2": "mg/Nm3", "NOx": "mg/Nm3", "O2": "%"}
AIR_PARAMS = {"PM2,5": "µg/m3", "PM10": "µg/m3", "SO2": "µg/m3"}
MID_2025 = datetime(2025, 6, 1, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def regulations(catalog: Catalog) -> RegulationCatalog:
    return load_regulation_catalog(FOLDER, catalog)


@pytest.fixture(scope="session")
def make(catalog: Catalog) -> Any:
    def build(
        reg_id: str,
        column: str | None,
        coefficients: dict[str, Any] | None = None,
        *,
        kind: str = "wastewater",
        params: dict[str, str] | None = None,
        permits: list[dict[str, Any]] | None = None,
    ) -> Station:
        declared = params if params is not None else WW_PARAMS
        units = {code: catalog.unit(unit) for code, unit in declared.items()}
        return Station(
            id="ST1",
            name="Trạm thử",
            kind=kind,
            facility="F",
            province="P",
            lat=21.0,
            lon=106.0,
            cadence_s=300,
            parameters={c: DeclaredParameter(c, u) for c, u in units.items() if u is not None},
            regulation=RegulationRef(reg_id, column, coefficients or {}, tuple(permits or ())),
        )

    return build


def only(result: StationLimits, param: str, averaging: str = "1h") -> EffectiveLimit:
    (limit,) = [lim for lim in result.limits if lim.param == param and lim.averaging == averaging]
    return limit


def cod(regulations: RegulationCatalog, make: Any, column: str = "A", **inputs: Any) -> float:
    result = station_limits(make("QCVN 40:2011/BTNMT", column, inputs), regulations)
    assert result.problems == []
    maximum = only(result, "COD").maximum
    assert maximum is not None
    return maximum


# --- QCVN 40:2011: Kq and Kf -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flow", "kq"),
    [(0, 0.9), (50, 0.9), (50.01, 1.0), (200, 1.0), (200.01, 1.1), (500, 1.1), (500.01, 1.2)],
)
def test_kq_river_band_edges(
    regulations: RegulationCatalog, make: Any, flow: float, kq: float
) -> None:
    # Kf = 1.0 for 500 < F ≤ 5000, so COD A = 75 × Kq.
    got = cod(
        regulations,
        make,
        receiving_water="river",
        receiving_flow_m3s=flow,
        discharge_m3_per_day=1000,
    )
    assert got == pytest.approx(75 * kq)


@pytest.mark.parametrize(
    ("volume", "kq"),
    [(10_000_000, 0.6), (10_000_001, 0.8), (100_000_000, 0.8), (100_000_001, 1.0)],
)
def test_kq_lake_band_edges(
    regulations: RegulationCatalog, make: Any, volume: float, kq: float
) -> None:
    got = cod(
        regulations,
        make,
        receiving_water="lake",
        receiving_volume_m3=volume,
        discharge_m3_per_day=1000,
    )
    assert got == pytest.approx(75 * kq)


@pytest.mark.parametrize(("water", "kq"), [("coastal_protected", 1.0), ("coastal_other", 1.3)])
def test_kq_coastal(regulations: RegulationCatalog, make: Any, water: str, kq: float) -> None:
    got = cod(regulations, make, "B", receiving_water=water, discharge_m3_per_day=1000)
    assert got == pytest.approx(150 * kq)


@pytest.mark.parametrize(
    ("discharge", "kf", "expected"),
    [
        (50, 1.2, 90),
        (50.5, 1.1, 82.5),
        (500, 1.1, 82.5),
        (501, 1.0, 75),
        (5000, 1.0, 75),
        (5001, 0.9, 67.5),
    ],
)
def test_kf_band_edges(
    regulations: RegulationCatalog, make: Any, discharge: float, kf: float, expected: float
) -> None:
    result = station_limits(
        make(
            "QCVN 40:2011/BTNMT",
            "A",
            {
                "receiving_water": "river",
                "receiving_flow_m3s": 120,
                "discharge_m3_per_day": discharge,
            },
        ),
        regulations,
    )
    limit = only(result, "COD")
    assert limit.maximum == expected
    assert [(f.name, f.value) for f in limit.factors] == [("Kq", 1.0), ("Kf", kf)]
    assert limit.formula == (f"C × Kq × Kf = 75 × 1.0 × {kf:.1f} = {expected:g} mg/L")


def test_formula_and_explanations(regulations: RegulationCatalog, make: Any) -> None:
    result = station_limits(
        make(
            "QCVN 40:2011/BTNMT",
            "A",
            {"receiving_water": "river", "receiving_flow_m3s": 120, "discharge_m3_per_day": 3000},
        ),
        regulations,
    )
    limit = only(result, "COD")
    assert limit.formula == "C × Kq × Kf = 75 × 1.0 × 1.0 = 75 mg/L"
    kq, kf = limit.factors
    assert kq.explanation == "river, Q = 120 m3/s (50 < Q ≤ 200)"
    assert kf.explanation == "F = 3000 m3/day (500 < F ≤ 5000)"
    assert (limit.base_maximum, limit.maximum, limit.unit) == (75, 75, "mg/L")
    assert (limit.regulation_id, limit.regulation_kind, limit.column) == (
        "QCVN 40:2011/BTNMT",
        "wastewater",
        "A",
    )
    assert limit.source == "regulation" and not limit.unverified
    assert (limit.valid_from, limit.valid_to) == (date(2012, 2, 15), date(2032, 1, 1))
    assert limit.o2_reference_percent is None


def test_product_is_rounded_not_float_noise(regulations: RegulationCatalog, make: Any) -> None:
    # 75 × 0.9 × 1.1 is 74.25000000000001 in floating point.
    got = cod(
        regulations, make, receiving_water="river", receiving_flow_m3s=10, discharge_m3_per_day=100
    )
    assert got == 74.25


def test_missing_flow_uses_documented_defaults(regulations: RegulationCatalog, make: Any) -> None:
    river = station_limits(
        make("QCVN 40:2011/BTNMT", "A", {"receiving_water": "river", "discharge_m3_per_day": 1000}),
        regulations,
    )
    assert river.problems == []
    limit = only(river, "COD")
    assert limit.maximum == pytest.approx(67.5)
    assert limit.formula == (
        "C × Kq × Kf = 75 × 0.9 × 1.0 = 67.5 mg/L (Kq: river, no flow data: default 0.9)"
    )
    # In Vietnamese: the default's note from the regulation file and the decimal comma.
    vi = limit.formula_text("vi")
    assert vi.startswith("C × Kq × Kf = 75 × 0,9 × 1,0 = 67,5 mg/L (Kq: ") and "0.9" not in vi
    assert "không có số liệu lưu lượng" in vi and "default" not in vi
    assert limit.formula_text("en") == limit.formula
    lake = station_limits(
        make("QCVN 40:2011/BTNMT", "B", {"receiving_water": "lake", "discharge_m3_per_day": 1000}),
        regulations,
    )
    assert only(lake, "COD").maximum == 90  # 150 × 0.6
    assert "no volume data: default 0.6" in only(lake, "COD").formula


def test_missing_input_without_default_is_a_problem(
    regulations: RegulationCatalog, make: Any
) -> None:
    result = station_limits(
        make("QCVN 40:2011/BTNMT", "A", {"receiving_water": "river", "receiving_flow_m3s": 120}),
        regulations,
    )
    assert result.problems[0] == (
        "ST1: regulation.coefficients.discharge_m3_per_day: required for Kf of "
        "QCVN 40:2011/BTNMT; the regulation gives no default"
    )
    assert "ST1: no limit computed for BOD5, COD, NH4, TSS" in result.problems[1]
    # Limits the coefficients do not touch are still there.
    assert only(result, "Temp").maximum == 40 and only(result, "pH").minimum == 6
    assert "COD" not in result.params()
    with pytest.raises(LimitError) as info:
        result.raise_for_problems()
    assert info.value.problems == result.problems


def test_bad_inputs_are_problems_naming_the_field(
    regulations: RegulationCatalog, make: Any
) -> None:
    result = station_limits(
        make(
            "QCVN 40:2011/BTNMT",
            "A",
            {"receiving_water": "sea", "discharge_m3_per_day": "a lot", "stack_flow_m3h": 5},
        ),
        regulations,
    )
    assert set(result.problems[:3]) == {
        "ST1: regulation.coefficients.receiving_water: 'sea' is not one of river, lake, "
        "coastal_protected, coastal_other (Kq of QCVN 40:2011/BTNMT)",
        "ST1: regulation.coefficients.discharge_m3_per_day: must be a number, not 'a lot'",
        "ST1: regulation.coefficients.stack_flow_m3h: not used by QCVN 40:2011/BTNMT (its inputs: "
        "discharge_m3_per_day, receiving_flow_m3s, receiving_volume_m3, receiving_water)",
    }


@pytest.mark.parametrize("param", ["Temp", "Color", "Coliform"])
def test_coefficients_not_applied(regulations: RegulationCatalog, make: Any, param: str) -> None:
    # Kq 0.9 × Kf 0.9 would change every other limit.
    result = station_limits(
        make(
            "QCVN 40:2011/BTNMT",
            "A",
            {"receiving_water": "river", "receiving_flow_m3s": 10, "discharge_m3_per_day": 9000},
        ),
        regulations,
    )
    limit = only(result, param)
    assert limit.maximum == limit.base_maximum == {"Temp": 40, "Color": 50, "Coliform": 3000}[param]
    assert limit.factors == ()
    assert limit.formula.endswith("(coefficients do not apply)")
    assert limit.formula_text("vi").endswith("(không áp dụng hệ số)")
    assert "coefficients" not in limit.describe("vi")
    assert only(result, "COD").maximum == pytest.approx(60.75)  # 75 × 0.9 × 0.9


def test_ph_range_columns_a_and_b(regulations: RegulationCatalog, make: Any) -> None:
    inputs = {"receiving_water": "river", "receiving_flow_m3s": 10, "discharge_m3_per_day": 9000}
    a = only(station_limits(make("QCVN 40:2011/BTNMT", "A", inputs), regulations), "pH")
    b = only(station_limits(make("QCVN 40:2011/BTNMT", "B", inputs), regulations), "pH")
    assert (a.minimum, a.maximum, b.minimum, b.maximum) == (6, 9, 5.5, 9)
    assert a.formula == "6–9 (coefficients do not apply)" and a.factors == ()
    assert b.formula_text("vi") == "5,5–9 (không áp dụng hệ số)"
    assert a.exceeds(5.8) and not b.exceeds(5.8)
    assert a.exceeds(9.5) and b.exceeds(9.5) and not a.exceeds(6) and not a.exceeds(9)
    assert a.multiple(5.8) is None and a.multiple(10) is None
    assert a.excess(5.8) == pytest.approx(0.2)
    assert a.excess(9.5) == pytest.approx(0.5)
    assert a.excess(7.0) == 0.0
    assert b.describe("en") == "pH (1-hour mean) 5.5–9 — QCVN 40:2011/BTNMT column B: " + b.formula


def test_max_limit_multiple_and_excess(regulations: RegulationCatalog, make: Any) -> None:
    limit = only(
        station_limits(
            make(
                "QCVN 40:2011/BTNMT",
                "A",
                {
                    "receiving_water": "river",
                    "receiving_flow_m3s": 120,
                    "discharge_m3_per_day": 3000,
                },
            ),
            regulations,
        ),
        "COD",
    )
    assert limit.multiple(150) == 2.0 and limit.multiple(75) == 1.0
    assert limit.excess(90) == 15 and limit.excess(60) == 0
    assert limit.exceeds(75.01) and not limit.exceeds(75)
    assert limit.describe() == (
        "COD (TB 1 giờ) ≤ 75 mg/L — QCVN 40:2011/BTNMT cột A: "
        "C × Kq × Kf = 75 × 1,0 × 1,0 = 75 mg/L"
    )


# --- QCVN 14:2008: K ---------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "bod"), [(1.0, 50), (1.2, 60)])
def test_qcvn14_k(regulations: RegulationCatalog, make: Any, k: float, bod: float) -> None:
    result = station_limits(make("QCVN 14:2008/BTNMT", "B", {"k_factor": k}), regulations)
    assert result.problems == []
    limit = only(result, "BOD5")
    assert limit.maximum == bod
    assert limit.formula == f"C × K = 50 × {k:.1f} = {bod} mg/L"
    assert limit.unverified  # K is [L-M]
    assert "[UNVERIFIED]" in limit.describe("en")
    assert "[CHƯA KIỂM CHỨNG]" in limit.describe("vi")
    ph = only(result, "pH")
    assert (ph.minimum, ph.maximum, ph.factors, ph.unverified) == (5, 9, (), False)
    coliform = only(result, "Coliform")
    assert coliform.maximum == 5000 and not coliform.unverified  # K not applied
    assert "[UNVERIFIED]" not in coliform.describe("en")


def test_qcvn14_k_problems(regulations: RegulationCatalog, make: Any) -> None:
    missing = station_limits(make("QCVN 14:2008/BTNMT", "A"), regulations)
    assert missing.problems[0] == (
        "ST1: regulation.coefficients.k_factor: required for K of QCVN 14:2008/BTNMT; "
        "the regulation gives no default"
    )
    odd = station_limits(make("QCVN 14:2008/BTNMT", "A", {"k_factor": 1.1}), regulations)
    assert odd.problems[0] == (
        "ST1: regulation.coefficients.k_factor: must be one of 1.0, 1.2 (K of QCVN 14:2008/BTNMT)"
    )


# --- QCVN 19:2009: Kp and Kv -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flow", "kp"), [(20_000, 1.0), (20_001, 0.9), (100_000, 0.9), (100_001, 0.8)]
)
def test_kp_band_edges(regulations: RegulationCatalog, make: Any, flow: float, kp: float) -> None:
    result = station_limits(
        make(
            "QCVN 19:2009/BTNMT",
            "B",
            {"stack_flow_m3h": flow, "region_class": 3},
            kind="emission",
            params=STACK_PARAMS,
        ),
        regulations,
    )
    assert result.problems == []
    assert only(result, "PM").maximum == pytest.approx(200 * kp)  # Kv = 1.0 in class 3


@pytest.mark.parametrize(("region", "kv"), [(1, 0.6), (2, 0.8), (3, 1.0), (4, 1.2), (5, 1.4)])
def test_kv_classes(regulations: RegulationCatalog, make: Any, region: int, kv: float) -> None:
    result = station_limits(
        make(
            "QCVN 19:2009/BTNMT",
            "B",
            {"stack_flow_m3h": 10_000, "region_class": region},
            kind="emission",
            params=STACK_PARAMS,
        ),
        regulations,
    )
    limit = only(result, "SO2")
    assert limit.maximum == pytest.approx(500 * kv)
    assert limit.factors[1].name == "Kv" and limit.factors[1].value == kv
    assert limit.factors[1].explanation.startswith(f"region_class = {region} (")
    assert limit.unverified  # the table is [L-M]
    assert limit.o2_reference_percent is None
    assert "O2" not in result.params()  # measured, but no limit


def test_kv_unknown_class_and_category(regulations: RegulationCatalog, make: Any) -> None:
    result = station_limits(
        make(
            "QCVN 19:2009/BTNMT",
            "B",
            {"stack_flow_m3h": 10_000, "region_class": 6},
            kind="emission",
            params=STACK_PARAMS,
        ),
        regulations,
    )
    assert result.problems[0] == (
        "ST1: regulation.coefficients.region_class: 6 is not one of 1, 2, 3, 4, 5 "
        "(Kv of QCVN 19:2009/BTNMT)"
    )
    acid = station_limits(
        make(
            "QCVN 19:2009/BTNMT",
            "B",
            {"stack_flow_m3h": 10_000, "region_class": 3, "category": "acid_plant"},
            kind="emission",
            params=STACK_PARAMS,
        ),
        regulations,
    )
    assert only(acid, "NOx").maximum == 1000 and only(acid, "SO2").maximum == 500


# --- QCVN 05:2023: dates in Vietnam time -------------------------------------------------------


def test_pm25_changes_on_vietnamese_new_year(regulations: RegulationCatalog, make: Any) -> None:
    result = station_limits(
        make("QCVN 05:2023/BTNMT", None, kind="air", params=AIR_PARAMS), regulations
    )
    assert result.problems == []
    last_2025 = datetime(2025, 12, 31, 16, 59, tzinfo=UTC)  # 23:59 in Vietnam
    first_2026 = datetime(2025, 12, 31, 17, 0, tzinfo=UTC)  # 00:00 on 1 January in Vietnam
    assert vietnam_date(first_2026) == date(2026, 1, 1)
    before = result.in_force("PM2,5", last_2025)
    after = result.in_force("PM2,5", first_2026)
    assert [(x.averaging, x.maximum) for x in before] == [("24h", 50), ("year", 25)]
    assert [(x.averaging, x.maximum) for x in after] == [("24h", 45), ("year", 25)]
    assert after[0].formula == "C = 45 µg/m3" and after[0].column is None
    assert [(x.averaging, x.maximum) for x in result.in_force("SO2", first_2026)] == [
        ("1h", 350),
        ("24h", 125),
        ("year", 50),
    ]
    # Before QCVN 05:2023 was in force (12/09/2023) it gives no limit.
    assert result.in_force("PM10", datetime(2023, 9, 11, 12, tzinfo=UTC)) == []
    assert len(result.in_force("PM10", datetime(2023, 9, 11, 17, tzinfo=UTC))) == 2
    with pytest.raises(ValueError):
        result.in_force("PM10", datetime(2026, 1, 1))


def test_mismatches_are_problems_not_exceptions(regulations: RegulationCatalog, make: Any) -> None:
    unknown = station_limits(make("QCVN 99:2030/BTNMT", "A"), regulations)
    assert unknown.limits == [] and unknown.problems[0].startswith(
        "ST1: regulation.id: 'QCVN 99:2030/BTNMT' is not in the regulation catalog"
    )
    kind = station_limits(make("QCVN 05:2023/BTNMT", None), regulations)
    assert kind.problems == [
        "ST1: regulation.id: QCVN 05:2023/BTNMT is a air regulation, the station is wastewater"
    ]
    column = station_limits(make("QCVN 40:2011/BTNMT", "C"), regulations)
    assert column.problems == [
        "ST1: regulation.column: must be one of A, B for QCVN 40:2011/BTNMT, not 'C'"
    ]
    extra = station_limits(
        make("QCVN 05:2023/BTNMT", "A", kind="air", params=AIR_PARAMS), regulations
    )
    assert extra.problems == [
        "ST1: regulation.column: QCVN 05:2023/BTNMT has no columns; remove 'A'"
    ]


# --- permit overrides --------------------------------------------------------------------------


def test_shipped_permit_override(regulations: RegulationCatalog, catalog: Catalog) -> None:
    registry = load_registry(default_config_dir() / "stations.yaml", catalog)
    station = registry.stations["BG_WW_SONGKHE"]
    result = station_limits(station, regulations)
    assert result.problems == []
    # The permit binds under the old regulation and, after the transition, on its own.
    permit, after = [x for x in result.limits if x.source == "permit"]
    assert (permit.valid_to, after.valid_from, after.maximum) == (
        date(2032, 1, 1),
        date(2032, 1, 1),
        60,
    )
    assert (permit.param, permit.averaging, permit.maximum, permit.unit) == (
        "COD",
        "1h",
        60,
        "mg/L",
    )
    citation = "Giấy phép môi trường số 123/GPMT-UBND ngày 14/06/2024 (UBND tỉnh Bắc Giang)"
    assert permit.provenance.source == citation
    assert permit.provenance.confidence == "H" and not permit.unverified
    assert permit.formula == (
        "permit: ≤ 60 mg/L (replaces C × Kq × Kf = 75 × 1.0 × 0.9 = 67.5 mg/L)"
    )
    assert permit.formula_text("vi") == (
        "giấy phép: ≤ 60 mg/L (thay cho C × Kq × Kf = 75 × 1,0 × 0,9 = 67,5 mg/L)"
    )
    (in_force,) = result.in_force("COD", datetime(2025, 3, 1, tzinfo=UTC))
    assert in_force is permit
    # Before the permit's first day the regulation's Cmax applies.
    (earlier,) = result.in_force("COD", datetime(2024, 6, 30, 12, tzinfo=UTC))
    assert earlier.source == "regulation" and earlier.maximum == 67.5
    assert f"giấy phép ({citation})" in permit.describe("vi")
    assert station.to_row()["regulation"]["permit"]["limits"][0]["effective_from"] == "2024-07-01"


def test_permit_with_end_date_and_range(regulations: RegulationCatalog, make: Any) -> None:
    inputs = {"receiving_water": "river", "receiving_flow_m3s": 120, "discharge_m3_per_day": 3000}
    permits = [
        {
            "param": "pH",
            "min": 6.5,
            "max": 8.5,
            "source": "GP 9/GPMT",
            "confidence": "L",
            "effective_to": "2025-01-01",
        },
    ]
    result = station_limits(make("QCVN 40:2011/BTNMT", "A", inputs, permits=permits), regulations)
    assert result.problems == []
    (ph,) = result.in_force("pH", datetime(2024, 12, 31, 16, 59, tzinfo=UTC))
    assert (ph.source, ph.minimum, ph.maximum, ph.unverified) == ("permit", 6.5, 8.5, True)
    assert ph.averaging == "1h"  # the regulation's default averaging
    (ph,) = result.in_force("pH", datetime(2024, 12, 31, 17, 0, tzinfo=UTC))
    assert ph.source == "regulation" and ph.minimum == 6


def test_invalid_permits_are_problems(regulations: RegulationCatalog, make: Any) -> None:
    inputs = {"receiving_water": "river", "receiving_flow_m3s": 120, "discharge_m3_per_day": 3000}
    permits = [
        {"param": "Benzene", "max": 1, "source": "GP"},
        {"param": "COD", "max": 50},
        {"param": "COD", "averaging": "2h", "max": 50, "source": "GP", "limit": 3},
        {"param": "TSS", "min": 60, "max": 50, "source": "GP"},
        {"param": "COD", "max": 100, "source": "GP 1"},
        {"param": "COD", "max": 60, "source": "GP 2", "unit": "g/L", "effective_from": "soon"},
    ]
    result = station_limits(make("QCVN 40:2011/BTNMT", "A", inputs, permits=permits), regulations)
    assert result.problems == [
        "ST1: regulation.permit_limits[0].param: 'Benzene' is neither measured by the station "
        "nor limited by QCVN 40:2011/BTNMT",
        "ST1: regulation.permit_limits[1].source: the permit (number, date) is required",
        "ST1: regulation.permit_limits[2].limit: unknown field (expected one of averaging, "
        "confidence, effective_from, effective_to, max, min, note, param, source, unit)",
        "ST1: regulation.permit_limits[2].averaging: must be one of 1h, 8h, 24h, year",
        "ST1: regulation.permit_limits[3].min: must be below max",
        "ST1: regulation.permit_limits[4].max: 100 mg/L is less strict than QCVN 40:2011/BTNMT "
        "(75 mg/L); check the permit",
        "ST1: regulation.permit_limits[5].effective_from: must be a date such as 2026-01-01, "
        "not 'soon'",
        "ST1: regulation.permit_limits[5].unit: limits of COD are in mg/L, not 'g/L'",
    ]
    # The less strict permit is still the limit in force: the permit is the facility's rule.
    (in_force,) = result.in_force("COD", MID_2025)
    assert in_force.source == "permit" and in_force.maximum == 100


# --- files a user adds -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def new_regulations(
    catalog: Catalog, tmp_path_factory: pytest.TempPathFactory
) -> RegulationCatalog:
    folder = tmp_path_factory.mktemp("regulations")
    (folder / "qcvn-40-2025.yaml").write_text(QCVN_40_2025_LIKE, encoding="utf-8")
    (folder / "qcvn-19-2024.yaml").write_text(QCVN_19_2024_LIKE, encoding="utf-8")
    return load_regulation_files(sorted(Path(folder).glob("*.yaml")), catalog)


@pytest.mark.parametrize(
    ("discharge", "band", "cod_c"),
    [
        (800, "small", 140),
        (1000, "small", 140),
        (1000.5, "medium", 130),
        (5000, "medium", 130),
        (9000, "large", 120),
    ],
)
def test_qcvn_40_2025_flow_band_selection(
    new_regulations: RegulationCatalog, make: Any, discharge: float, band: str, cod_c: float
) -> None:
    result = station_limits(
        make("QCVN 40:2025/BTNMT", "C", {"discharge_m3_per_day": discharge}), new_regulations
    )
    assert result.problems == []
    limit = only(result, "COD")
    assert limit.maximum == cod_c and limit.factors == () and limit.unverified
    assert limit.formula.startswith(f"C = {cod_c} mg/L (flow band {band}: F = ")
    assert limit.formula.endswith(
        " m3/day, "
        + {"small": "F ≤ 1000", "medium": "1000 < F ≤ 5000", "large": "F > 5000"}[band]
        + ")"
    )
    assert f"(khoảng lưu lượng {band}: F = " in limit.formula_text("vi")
    assert limit.valid_from == date(2025, 9, 1)
    ph = only(result, "pH")
    assert (ph.minimum, ph.maximum, ph.formula, ph.unverified) == (5.5, 9, "5.5–9", False)
    assert only(result, "Temp").maximum == 40


def test_qcvn_40_2025_without_flow_is_a_problem(
    new_regulations: RegulationCatalog, make: Any
) -> None:
    result = station_limits(make("QCVN 40:2025/BTNMT", "A"), new_regulations)
    assert result.problems == [
        "ST1: regulation.coefficients.discharge_m3_per_day: required to choose the flow band of "
        "QCVN 40:2025/BTNMT"
    ]
    assert "COD" not in result.params() and only(result, "Temp").maximum == 40


def test_qcvn_19_2024_category_and_o2_reference(
    new_regulations: RegulationCatalog, make: Any
) -> None:
    result = station_limits(
        make(
            "QCVN 19:2024/BTNMT",
            "B",
            {"category": "gas_turbine_gt_1200mw"},
            kind="emission",
            params=STACK_PARAMS,
        ),
        new_regulations,
    )
    assert result.problems == []
    assert {x.param: x.maximum for x in result.limits} == {"SO2": 60, "NOx": 70, "PM": 15}
    assert {x.o2_reference_percent for x in result.limits} == {15}
    assert only(result, "SO2").formula == "C = 60 mg/Nm3"
    boiler = station_limits(
        make(
            "QCVN 19:2024/BTNMT",
            "C",
            {"category": "coal_boiler"},
            kind="emission",
            params=STACK_PARAMS,
        ),
        new_regulations,
    )
    limit = only(boiler, "SO2")
    assert (limit.maximum, limit.o2_reference_percent, limit.unverified) == (500, 6, True)
    assert boiler.params() == {"SO2"}


def test_qcvn_19_2024_category_problems(new_regulations: RegulationCatalog, make: Any) -> None:
    missing = station_limits(
        make("QCVN 19:2024/BTNMT", "A", kind="emission", params=STACK_PARAMS), new_regulations
    )
    assert missing.limits == []
    assert missing.problems[0] == (
        "ST1: regulation.coefficients.category: PM has limits only per source category in "
        "QCVN 19:2024/BTNMT: set one of gas_turbine_gt_1200mw, gas_turbine_le_300mw, coal_boiler"
    )
    wrong = station_limits(
        make(
            "QCVN 19:2024/BTNMT", "A", {"category": "steel"}, kind="emission", params=STACK_PARAMS
        ),
        new_regulations,
    )
    assert wrong.problems[0] == (
        "ST1: regulation.coefficients.category: 'steel' is not one of gas_turbine_gt_1200mw, "
        "gas_turbine_le_300mw, coal_boiler"
    )


def test_o2_correction() -> None:
    # 100 mg/Nm3 measured at 10 % O2, referred to 15 %: 100 × (20.9 − 15) / (20.9 − 10).
    assert correct_to_o2_reference(100, 10, 15) == pytest.approx(54.1284, abs=1e-4)
    assert correct_to_o2_reference(100, 15, 15) == pytest.approx(100)
    with pytest.raises(ValueError):
        correct_to_o2_reference(100, 20.9, 15)


def test_a_limit_is_described_with_the_decimal_comma_in_vietnamese(
    regulations: RegulationCatalog, make: Any
) -> None:
    """A QCVN 40 bound with decimals (Kq × Kf) reads 1,5 in Vietnamese, 1.5 in English."""
    inputs = {"receiving_water": "river", "receiving_flow_m3s": 10, "discharge_m3_per_day": 100}
    limit = only(station_limits(make("QCVN 40:2011/BTNMT", "A", inputs), regulations), "COD")
    assert limit.maximum is not None and not float(limit.maximum).is_integer()
    english = limit.bound_text()
    assert "." in english
    vi = limit.describe("vi")
    assert english.replace(".", ",") in vi and english not in vi
    assert english in limit.describe("en")
