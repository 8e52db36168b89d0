"""Unit tests of quantrac.core.catalog: names, aliases, units and exact conversions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from quantrac.core.catalog import (
    Catalog,
    CatalogError,
    catalog_from_dict,
    load_catalog,
    normalize_name,
)
from quantrac.core.settings import default_config_dir

PARAMETERS_YAML = default_config_dir() / "parameters.yaml"
DATA: dict[str, Any] = yaml.safe_load(PARAMETERS_YAML.read_text(encoding="utf-8"))

PARAM_ALIASES = [
    (code, str(alias)) for code, spec in DATA["parameters"].items() for alias in spec["aliases"]
]
UNIT_ALIASES = [
    (uid, str(alias)) for uid, spec in DATA["units"].items() for alias in spec["aliases"]
]


def test_shipped_catalog_sizes(catalog: Catalog) -> None:
    assert set(catalog.parameters) == set(DATA["parameters"])
    assert set(catalog.units) == set(DATA["units"])
    assert len(PARAM_ALIASES) > 50
    assert len(UNIT_ALIASES) > 50


@pytest.mark.parametrize(("code", "alias"), PARAM_ALIASES)
def test_every_parameter_alias_resolves(catalog: Catalog, code: str, alias: str) -> None:
    param = catalog.parameter(alias)
    assert param is not None
    assert param.code == code


# YAML 1.1 reads unquoted keys such as NO, ON, YES as booleans: every key must be a string.
PARAM_CODES = [code for code in DATA["parameters"] if isinstance(code, str)]


@pytest.mark.parametrize("code", PARAM_CODES)
def test_every_parameter_code_resolves_to_itself(catalog: Catalog, code: str) -> None:
    param = catalog.parameter(code)
    assert param is not None
    assert param.code == code
    assert param.name_vi == DATA["parameters"][code]["name_vi"]
    assert param.name_en == DATA["parameters"][code]["name_en"]
    assert param.dimensions == tuple(DATA["parameters"][code]["dimensions"])


@pytest.mark.parametrize(("uid", "alias"), UNIT_ALIASES)
def test_every_unit_alias_resolves(catalog: Catalog, uid: str, alias: str) -> None:
    unit = catalog.unit(alias)
    assert unit is not None
    assert unit.id == uid


def test_shipped_yaml_keys_and_aliases_are_strings() -> None:
    assert len(PARAM_CODES) == len(DATA["parameters"])
    assert all(isinstance(k, str) for k in DATA["units"])
    for spec in [*DATA["units"].values(), *DATA["parameters"].values()]:
        assert all(isinstance(a, str) for a in spec["aliases"])


def test_nitric_oxide_code_no_resolves(catalog: Catalog) -> None:
    # Regression: an unquoted ``NO:`` key loaded as the boolean False.
    param = catalog.parameter("NO")
    assert param is not None
    assert param.code == "NO"
    assert catalog.parameter("false") is None


def test_non_string_code_raises_catalog_error() -> None:
    data = _minimal()
    data["parameters"][False] = data["parameters"].pop("Q")
    with pytest.raises(CatalogError, match=r"parameters: code False is not a string: quote it"):
        catalog_from_dict(data)


@pytest.mark.parametrize("uid", list(DATA["units"]))
def test_every_unit_id_resolves_to_itself(catalog: Catalog, uid: str) -> None:
    unit = catalog.unit(uid)
    assert unit is not None
    assert unit.id == uid
    assert unit.dimension == DATA["units"][uid]["dimension"]
    assert unit.factor == float(DATA["units"][uid]["factor"])


@pytest.mark.parametrize(
    "name", ["PM2.5", "PM25", "pm2_5", "PM 2.5", "PM2,5", "pm2,5", " PM2.5 ", "PM\t2.5", "PM2_5"]
)
def test_pm25_spellings(catalog: Catalog, name: str) -> None:
    param = catalog.parameter(name)
    assert param is not None
    assert param.code == "PM2,5"


@pytest.mark.parametrize(
    ("name", "uid"),
    [
        ("ug/m3", "µg/m3"),
        ("μg/m3", "µg/m3"),  # Greek small letter mu U+03BC
        ("\u00b5g/m3", "µg/m3"),  # micro sign U+00B5
        ("\u03bcg/m3", "µg/m3"),
        ("UG/M3", "µg/m3"),
        ("µg/m³", "µg/m3"),
        ("mg/m³", "mg/m3"),
        ("mg/m3", "mg/m3"),
        ("MG/M3", "mg/m3"),
        ("mg/Nm3", "mg/Nm3"),
        ("mg/nm³", "mg/Nm3"),
        ("mg/l", "mg/L"),
        ("μg/l", "µg/L"),
        ("℃", "°C"),
        ("deg C", "°C"),
        ("độ C", "°C"),
        ("MPN/100 mL", "MPN/100mL"),
        ("m3/ngày", "m3/day"),
        ("mbar", "hPa"),
        ("", "pH"),
        ("-", "pH"),
    ],
)
def test_unit_spellings(catalog: Catalog, name: str, uid: str) -> None:
    unit = catalog.unit(name)
    assert unit is not None
    assert unit.id == uid


def test_micro_sign_and_mu_fold_to_the_same_key() -> None:
    assert normalize_name("\u00b5g/m3") == normalize_name("\u03bcg/m3") == "\u03bcg/m3"
    assert normalize_name("mg/m³") == "mg/m3"
    assert normalize_name(" PM 2.5\t") == "pm2.5"
    assert normalize_name("Đ") == "đ"


def _factor(catalog: Catalog, a: str, b: str) -> float | None:
    ua, ub = catalog.unit(a), catalog.unit(b)
    assert ua is not None and ub is not None
    return catalog.conversion_factor(ua, ub)


@pytest.mark.parametrize(
    ("src", "dst", "factor"),
    [
        ("mg/m3", "µg/m3", 1000.0),
        ("µg/m3", "mg/m3", 0.001),
        ("mg/Nm3", "µg/Nm3", 1000.0),
        ("mg/L", "µg/L", 1000.0),
        ("m3/s", "m3/h", 3600.0),
        ("m3/day", "m3/h", 1 / 24),
        ("L/s", "m3/h", 3.6),
        ("hPa", "kPa", 0.1),
        ("kPa", "Pa", 1000.0),
        ("mS/cm", "µS/cm", 1000.0),
        ("µg/m3", "µg/m3", 1.0),
        ("ug/m3", "μg/m³", 1.0),
        ("m3/h", "m3/h", 1.0),
    ],
)
def test_exact_conversions(catalog: Catalog, src: str, dst: str, factor: float) -> None:
    assert _factor(catalog, src, dst) == factor


def test_m3_per_day_to_m3_per_hour_value(catalog: Catalog) -> None:
    factor = _factor(catalog, "m3/day", "m3/h")
    assert factor is not None
    assert 2400.0 * factor == pytest.approx(100.0, rel=1e-15)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("mg/m3", "mg/Nm3"),
        ("mg/Nm3", "mg/m3"),
        ("µg/m3", "µg/Nm3"),
        ("mg/L", "mg/m3"),
        ("mg/m3", "mg/L"),
        ("°C", "kPa"),
        ("%", "pH"),
        ("m3/h", "m/s"),
        ("NTU", "Pt/Co"),
    ],
)
def test_no_conversion_across_dimensions(catalog: Catalog, src: str, dst: str) -> None:
    assert _factor(catalog, src, dst) is None


@pytest.mark.parametrize(
    ("code", "unit", "ok"),
    [
        ("PM10", "µg/m3", True),
        ("PM10", "mg/m3", True),
        ("PM10", "mg/L", False),
        ("PM10", "mg/Nm3", False),
        ("SO2", "mg/Nm3", True),
        ("COD", "mg/L", True),
        ("COD", "mg/m3", False),
        ("Pb", "mg/Nm3", True),
        ("Flow", "L/s", True),
        ("pH", "pH", True),
    ],
)
def test_accepts(catalog: Catalog, code: str, unit: str, ok: bool) -> None:
    param, u = catalog.parameter(code), catalog.unit(unit)
    assert param is not None and u is not None
    assert catalog.accepts(param, u) is ok


@pytest.mark.parametrize(
    "name", ["PM2", "CODx", "PM2.55", "PM 10 5", "PM2-5", "pm2.5x", "Temperature2", "NOx2", "x"]
)
def test_unknown_parameter_names(catalog: Catalog, name: str) -> None:
    assert catalog.parameter(name) is None


@pytest.mark.parametrize("name", ["mg/m4", "g/m3", "ppm", "mgm3", "m3", "kg/h", "µg", "mg/nl"])
def test_unknown_unit_names(catalog: Catalog, name: str) -> None:
    assert catalog.unit(name) is None


def _minimal() -> dict[str, Any]:
    return {
        "units": {
            "a": {"dimension": "d", "factor": 1.0, "aliases": ["A1"]},
            "b": {"dimension": "d", "factor": 10, "aliases": []},
        },
        "parameters": {
            "P": {"name_vi": "p", "name_en": "p", "dimensions": ["d"], "aliases": ["pp"]},
            "Q": {"name_vi": "q", "name_en": "q", "dimensions": ["d"]},
        },
    }


def test_catalog_from_dict_minimal() -> None:
    cat = catalog_from_dict(_minimal())
    a, b = cat.unit("a1"), cat.unit("B")
    assert a is not None and b is not None
    assert b.factor == 10.0
    assert cat.conversion_factor(b, a) == 10.0
    p = cat.parameter("PP")
    assert p is not None and p.code == "P"
    q = cat.parameter("q")
    assert q is not None and q.code == "Q"


def test_duplicate_parameter_alias_raises() -> None:
    data = _minimal()
    data["parameters"]["Q"]["aliases"] = ["P P"]  # folds to "pp", already P's alias
    with pytest.raises(
        CatalogError,
        match=r"parameters.Q.aliases\[0\]: parameter alias 'P P' names both 'P' and 'Q'",
    ):
        catalog_from_dict(data)


def test_duplicate_unit_alias_raises() -> None:
    data = _minimal()
    data["units"]["b"]["aliases"] = ["a"]
    with pytest.raises(
        CatalogError, match=r"units.b.aliases\[0\]: unit alias 'a' names both 'a' and 'b'"
    ):
        catalog_from_dict(data)


def test_alias_repeating_its_own_code_is_fine() -> None:
    data = _minimal()
    data["parameters"]["P"]["aliases"] = ["p", "P", "pp"]
    assert catalog_from_dict(data).parameter("p") is not None


def test_unknown_dimension_raises() -> None:
    data = _minimal()
    data["parameters"]["P"]["dimensions"] = ["nope"]
    with pytest.raises(
        CatalogError,
        match=r"parameters.P.dimensions\[0\]: parameter 'P': no unit has dimension 'nope'",
    ):
        catalog_from_dict(data)


def test_load_catalog_from_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_minimal()), encoding="utf-8")
    cat = load_catalog(path)
    assert set(cat.parameters) == {"P", "Q"}


def test_load_catalog_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "units:\n"
        "  a: {dimension: d, factor: 1.0}\n"
        "  b:\n"
        "    dimension: d\n"
        "    factor: ten\n"
        "    colour: red\n"
        "parameters:\n"
        "  P: {name_vi: p, name_en: p, dimensions: [d], aliases: [a, b]}\n"
        "  Q: {name_vi: q, name_en: q, dimensions: [nope]}\n",
        encoding="utf-8",
    )
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert [str(i) for i in info.value.issues] == [
        f"{path}:5: units.b.factor: input should be a valid number",
        f"{path}:6: units.b.colour: unknown field (expected one of aliases, dimension, factor)",
    ]
    path.write_text(
        path.read_text(encoding="utf-8").replace("ten", "10").replace("    colour: red\n", ""),
        encoding="utf-8",
    )
    with pytest.raises(
        CatalogError,
        match=rf"^{re.escape(str(path))}:8: parameters.Q.dimensions"
        r"\[0\]: parameter 'Q': no unit has dimension 'nope'$",
    ):
        load_catalog(path)


def test_load_catalog_missing_field_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("units: {}\nparameters:\n  P: {name_vi: p, dimensions: [d]}\n", "utf-8")
    with pytest.raises(CatalogError, match=r":3: parameters.P.name_en: required field missing"):
        load_catalog(path)
    path.write_text("units: {a: [\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"p.yaml:2: \(yaml\): invalid YAML"):
        load_catalog(path)
    with pytest.raises(CatalogError, match=r"cannot read the file"):
        load_catalog(tmp_path / "missing.yaml")
