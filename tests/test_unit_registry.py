"""Unit tests of quantrac.core.registry: the shipped stations.yaml and every error it can report."""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path

import pytest

from quantrac.core.catalog import Catalog
from quantrac.core.registry import (
    Registry,
    RegistryError,
    RegistryIssue,
    load_registry,
    registry_from_text,
)
from quantrac.core.settings import default_config_dir
from quantrac.core.time import parse_utc_offset

STATION = """\
stations:
  - id: {id}
    name: "Trạm"
    kind: {kind}
    facility: "F"
    province: "P"
    location: {{lat: {lat}, lon: 106.1}}
    parameters:
      - {{code: {code}, unit: "{unit}"}}
{extra}"""


def one(
    id: str = "S1",
    kind: str = "air",
    lat: str = "21.0",
    code: str = "PM10",
    unit: str = "µg/m3",
    extra: str = "",
) -> str:
    return STATION.format(id=id, kind=kind, lat=lat, code=code, unit=unit, extra=extra)


def issues(text: str, catalog: Catalog) -> list[RegistryIssue]:
    with pytest.raises(RegistryError) as info:
        registry_from_text(text, catalog, "st.yaml")
    assert str(info.value) == "\n".join(str(i) for i in info.value.issues)
    return info.value.issues


def brief(text: str, catalog: Catalog) -> list[tuple[int, str]]:
    return [(i.line, i.field) for i in issues(text, catalog)]


# --- the shipped file ---------------------------------------------------------------------------


def test_shipped_stations_yaml_loads(catalog: Catalog) -> None:
    path = default_config_dir() / "stations.yaml"
    reg = load_registry(path, catalog)
    assert reg.source == str(path)
    assert len(reg.stations) == 9
    kinds = [s.kind for s in reg.stations.values()]
    assert (kinds.count("air"), kinds.count("wastewater"), kinds.count("emission")) == (3, 4, 2)
    air = reg.stations["BG_AIR_01"]
    assert list(air.parameters) == [
        "PM2,5",
        "PM10",
        "TSP",
        "NO2",
        "SO2",
        "CO",
        "O3",
        "Temp",
        "RH",
    ]
    assert air.parameters["PM2,5"].unit.id == "µg/m3"
    assert air.cadence_s == 300
    assert (air.lat, air.lon) == (21.2731, 106.1946)
    assert air.regulation is not None and air.regulation.id == "QCVN 05:2023/BTNMT"
    assert air.regulation.column is None and air.regulation.coefficients == {}
    # YAML anchors (&industrial_wastewater) are shared by three outfalls.
    ww = [reg.stations[i] for i in ("BG_WW_DINHTRAM", "BG_WW_SONGKHE", "BG_WW_QUANGCHAU")]
    assert all(len(s.parameters) == 9 for s in ww)
    stack = reg.stations["BG_EM_HABAC_01"]
    assert stack.parameters["PM"].unit.id == "mg/Nm3"
    assert stack.regulation is not None
    assert stack.regulation.coefficients == {"stack_flow_m3h": 85000, "region_class": 2}
    assert all(s.ftp_name for s in reg.stations.values())


def test_test_registry_fixture(registry: Registry) -> None:
    assert sorted(registry.stations) == ["AIR1", "WW1"]
    ww = registry.stations["WW1"]
    assert ww.regulation is not None and ww.regulation.column == "A"
    assert ww.to_row()["parameters"][0] == {"code": "Flow", "unit": "m3/h"}
    assert ww.to_row()["ftp_name"] == "BacGiang_KCNThu_NT01"
    assert ww.utc_offset is None


def test_minimal_station_defaults(catalog: Catalog) -> None:
    reg = registry_from_text(one(), catalog)
    s = reg.stations["S1"]
    assert s.cadence_s == 300
    assert s.regulation is None
    assert s.ftp_name is None
    assert s.utc_offset is None
    assert reg.source == "<text>"


def test_utc_offset_and_integer_id(catalog: Catalog) -> None:
    reg = registry_from_text(one(id="123", extra='    utc_offset: "+06:30"\n'), catalog)
    s = reg.stations["123"]
    assert s.utc_offset == timezone(timedelta(hours=6, minutes=30))


# --- errors name file, line and field ----------------------------------------------------------


def test_wrong_kind(catalog: Catalog) -> None:
    (issue,) = issues(one(kind="river"), catalog)
    assert (issue.file, issue.line, issue.field) == ("st.yaml", 4, "stations[0].kind")
    assert issue.message == "must be one of air, wastewater, emission, not 'river'"
    assert str(issue).startswith("st.yaml:4: stations[0].kind: ")


def test_missing_name(catalog: Catalog) -> None:
    text = one().replace('    name: "Trạm"\n', "")
    (issue,) = issues(text, catalog)
    assert (issue.line, issue.field, issue.message) == (2, "stations[0]", "'name' is required")


def test_null_name_points_at_the_key(catalog: Catalog) -> None:
    text = one().replace('name: "Trạm"', "name:")
    (issue,) = issues(text, catalog)
    assert (issue.line, issue.field, issue.message) == (3, "stations[0].name", "'name' is required")


def test_empty_name(catalog: Catalog) -> None:
    text = one().replace('name: "Trạm"', 'name: "  "')
    (issue,) = issues(text, catalog)
    assert (issue.line, issue.field) == (3, "stations[0].name")
    assert issue.message == "'name' must be a non-empty string"


@pytest.mark.parametrize(
    ("lat", "message"),
    [
        ("91", "must be between -90 and 90"),
        ("-90.5", "must be between -90 and 90"),
        ("north", "must be a number"),
        ("true", "must be a number"),
        (".nan", "must be a number"),
    ],
)
def test_lat_invalid(catalog: Catalog, lat: str, message: str) -> None:
    (issue,) = issues(one(lat=lat), catalog)
    assert (issue.line, issue.field, issue.message) == (7, "stations[0].location.lat", message)


def test_lat_bounds_accepted(catalog: Catalog) -> None:
    assert registry_from_text(one(lat="-90"), catalog).stations["S1"].lat == -90.0
    assert registry_from_text(one(lat="90"), catalog).stations["S1"].lat == 90.0


def test_location_missing(catalog: Catalog) -> None:
    text = one().replace("    location: {lat: 21.0, lon: 106.1}\n", "")
    (issue,) = issues(text, catalog)
    assert (issue.field, issue.message) == (
        "stations[0]",
        "'location' with lat and lon is required",
    )


def test_non_canonical_code(catalog: Catalog) -> None:
    (issue,) = issues(one(code='"PM2.5"'), catalog)
    assert (issue.line, issue.field) == (9, "stations[0].parameters[0].code")
    assert issue.message == "write the canonical code 'PM2,5', not 'PM2.5'"


def test_unknown_code(catalog: Catalog) -> None:
    (issue,) = issues(one(code="PM2"), catalog)
    assert (issue.field, issue.message) == (
        "stations[0].parameters[0].code",
        "unknown parameter code 'PM2'",
    )


def test_unit_not_accepted_for_parameter(catalog: Catalog) -> None:
    (issue,) = issues(one(unit="mg/L"), catalog)
    assert (issue.line, issue.field, issue.message) == (
        9,
        "stations[0].parameters[0].unit",
        "PM10 cannot be measured in mg/L",
    )


def test_unknown_unit(catalog: Catalog) -> None:
    (issue,) = issues(one(unit="ppm"), catalog)
    assert (issue.field, issue.message) == ("stations[0].parameters[0].unit", "unknown unit 'ppm'")


def test_parameter_declared_twice(catalog: Catalog) -> None:
    text = one(extra="").replace(
        '      - {code: PM10, unit: "µg/m3"}\n',
        '      - {code: PM10, unit: "µg/m3"}\n      - {code: PM10, unit: "mg/m3"}\n',
    )
    (issue,) = issues(text, catalog)
    assert (issue.line, issue.field) == (10, "stations[0].parameters[1].code")
    assert issue.message == "parameter 'PM10' is declared twice"


def test_empty_parameters(catalog: Catalog) -> None:
    text = one().replace(
        '    parameters:\n      - {code: PM10, unit: "µg/m3"}\n', "    parameters: []\n"
    )
    (issue,) = issues(text, catalog)
    assert (issue.line, issue.field) == (8, "stations[0].parameters")
    assert issue.message == "'parameters' must list at least one {code, unit}"


def test_unknown_field(catalog: Catalog) -> None:
    (issue,) = issues(one(extra="    colour: red\n"), catalog)
    assert (issue.line, issue.field) == (10, "stations[0].colour")
    assert issue.message.startswith("unknown field (expected one of aqi_publishable, cadence")


def test_duplicate_id(catalog: Catalog) -> None:
    text = one() + one().removeprefix("stations:\n")
    (issue,) = issues(text, catalog)
    assert (issue.line, issue.field) == (10, "stations[1].id")
    assert issue.message == "station id 'S1' is used twice"


def test_duplicate_ftp_name_case_insensitive(catalog: Catalog) -> None:
    text = one(extra="    ftp_name: A_B_C\n") + one(
        id="S2", extra="    ftp_name: a_b_c\n"
    ).removeprefix("stations:\n")
    (issue,) = issues(text, catalog)
    assert (issue.line, issue.field) == (19, "stations[1].ftp_name")
    assert issue.message == "ftp_name also used by station 'S1'"


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        ('"7"', "UTC offset must look like +07:00"),
        ('"+7:00"', "UTC offset must look like +07:00"),
        ('"UTC+7"', "UTC offset must look like +07:00"),
        ('"+15:00"', "UTC offset beyond ±14:00"),
    ],
)
def test_bad_utc_offset(catalog: Catalog, offset: str, message: str) -> None:
    (issue,) = issues(one(extra=f"    utc_offset: {offset}\n"), catalog)
    assert (issue.line, issue.field, issue.message) == (10, "stations[0].utc_offset", message)


@pytest.mark.parametrize("cadence", ["0", "-5", "1.5", '"300"', "true"])
def test_bad_cadence(catalog: Catalog, cadence: str) -> None:
    (issue,) = issues(one(extra=f"    cadence: {cadence}\n"), catalog)
    assert (issue.line, issue.field, issue.message) == (
        10,
        "stations[0].cadence",
        "must be a positive whole number of seconds",
    )


def test_bad_station_id(catalog: Catalog) -> None:
    (issue,) = issues(one(id='"a/b"'), catalog)
    assert (issue.line, issue.field) == (2, "stations[0].id")
    assert "part of MQTT topics" in issue.message


def test_bad_regulation(catalog: Catalog) -> None:
    text = one(extra='    regulation: {id: "Q", column: 5, coefficients: [1]}\n')
    assert brief(text, catalog) == [
        (10, "stations[0].regulation.column"),
        (10, "stations[0].regulation.coefficients"),
    ]
    (issue,) = issues(one(extra="    regulation: QCVN\n"), catalog)
    assert (issue.field, issue.message) == (
        "stations[0].regulation",
        "must be a mapping with id, column and coefficients",
    )


def test_several_errors_reported_at_once(catalog: Catalog) -> None:
    text = (
        one(kind="river", lat="100", extra="    cadence: 0\n")
        + one(id="S2", code='"PM2.5"').removeprefix("stations:\n")
        + "  - just a string\n"
    )
    assert brief(text, catalog) == [
        (4, "stations[0].kind"),
        (7, "stations[0].location.lat"),
        (10, "stations[0].cadence"),
        (18, "stations[1].parameters[0].code"),
        (19, "stations[2]"),
    ]


def test_station_not_a_mapping_and_no_stations_list(catalog: Catalog) -> None:
    assert [(i.line, i.field, i.message) for i in issues("stations: 3\n", catalog)] == [
        (1, "stations", "the file must contain 'stations:' with a list of stations")
    ]
    assert [i.field for i in issues("", catalog)] == ["stations"]
    assert [i.field for i in issues("- 1\n", catalog)] == ["stations"]


def test_yaml_syntax_error_gives_line(catalog: Catalog) -> None:
    text = one() + '  - id: "unterminated\n    name: x\n'
    (issue,) = issues(text, catalog)
    assert issue.field == "(yaml)"
    assert issue.file == "st.yaml"
    assert issue.line == 12
    text = "stations:\n  - id: S1\n   name: bad indent\n"
    (issue,) = issues(text, catalog)
    assert (issue.line, issue.field) == (3, "(yaml)")


def test_load_registry_missing_file(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "none.yaml"
    with pytest.raises(RegistryError) as info:
        load_registry(path, catalog)
    (issue,) = info.value.issues
    assert (issue.file, issue.line, issue.field) == (str(path), 1, "(file)")


def test_load_registry_reports_path(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "stations.yaml"
    path.write_text(one(kind="sea"), encoding="utf-8")
    with pytest.raises(RegistryError, match=rf"^{path}:4: stations\[0\]\.kind: "):
        load_registry(path, catalog)


def test_station_id_with_trailing_newline_rejected(catalog: Catalog) -> None:
    (issue,) = issues(one(id='"S1\\n"'), catalog)
    assert issue.field == "stations[0].id"


def test_utc_offset_minutes_over_59_rejected(catalog: Catalog) -> None:
    (issue,) = issues(one(extra='    utc_offset: "+07:60"\n'), catalog)
    assert issue.field == "stations[0].utc_offset"


def test_unquoted_utc_offset_is_a_clear_error(catalog: Catalog) -> None:
    # YAML 1.1 reads +10:00 as the base-60 number 600; say so instead of guessing.
    with pytest.raises(RegistryError, match=r"utc_offset: write the offset in quotes"):
        registry_from_text(one(extra="    utc_offset: +10:00\n"), catalog)


def test_parse_utc_offset() -> None:
    assert parse_utc_offset("+07:00") == timezone(timedelta(hours=7))
    assert parse_utc_offset(" -03:30 ") == timezone(-timedelta(hours=3, minutes=30))
    assert parse_utc_offset("+14:00") == timezone(timedelta(hours=14))
    assert parse_utc_offset("-00:00") == timezone(timedelta(0))
    with pytest.raises(ValueError, match="beyond"):
        parse_utc_offset("-14:01")
    with pytest.raises(ValueError, match="must look like"):
        parse_utc_offset("+0700")


# --- lookups ---------------------------------------------------------------------------------


def test_for_file_prefix(registry: Registry) -> None:
    ww = registry.stations["WW1"]
    assert registry.for_file_prefix("BacGiang_KCNThu_NT01", "NT01") is ww
    assert registry.for_file_prefix("bacgiang_kcnthu_nt01", "whatever") is ww
    assert registry.for_file_prefix("BACGIANG_KCNTHU_NT01", "AIR1") is ww  # ftp_name wins
    assert registry.for_file_prefix("X_Y_AIR1", "AIR1") is registry.stations["AIR1"]
    assert registry.for_file_prefix("X_Y_air1", "air1") is None  # ids are case-sensitive
    assert registry.for_file_prefix("X_Y_Z", "Z") is None
    assert registry.get("AIR1") is registry.stations["AIR1"]
    assert registry.get("nope") is None


def test_the_demo_fleet_names_todays_province(catalog: Catalog) -> None:
    # Bắc Giang merged into Bắc Ninh on 01/07/2025: the Bắc Giang-shaped fleet says Bắc Ninh.
    shipped = load_registry(default_config_dir() / "stations.yaml", catalog)
    assert {s.province for s in shipped.stations.values()} == {"Bắc Ninh"}
    assert all((s.ftp_name or "BacNinh_").startswith("BacNinh_") for s in shipped.stations.values())
    air = {s.facility for s in shipped.stations.values() if s.kind == "air"}
    assert air == {"Sở Nông nghiệp và Môi trường Bắc Ninh"}
    # The demo's indicator inputs name the same province, so indicator 22 finds its stations.
    import yaml

    inputs = yaml.safe_load((default_config_dir() / "indicators.yaml").read_text("utf-8"))
    populations = inputs["indicator_22"]["urban_population"]
    assert {p["province"] for p in populations} == {"Bắc Ninh"}


def test_a_permit_is_cited_through_the_translation_table() -> None:
    from datetime import date

    from quantrac.core.registry import Permit

    permit = Permit("123/GPMT-UBND", date(2024, 6, 15), "UBND tỉnh Bắc Giang")
    assert permit.citation() == (
        "Giấy phép môi trường số 123/GPMT-UBND ngày 15/06/2024 (UBND tỉnh Bắc Giang)"
    )
    assert permit.citation("en") == (
        "Environmental permit No. 123/GPMT-UBND of 15/06/2024 (UBND tỉnh Bắc Giang)"
    )


def test_every_station_and_field_is_reported_at_once(catalog: Catalog) -> None:
    """Shape, catalog and whole-file problems of several stations in one report."""
    text = (
        one(kind="river", lat="91")
        + one(id="S2", code="PM2").replace("stations:\n", "")
        + one(id="S3", extra="    cadense: 60\n").replace("stations:\n", "")
        + one(id="S1", unit="ppm").replace("stations:\n", "")
    )
    assert [(i.line, i.field, i.message) for i in issues(text, catalog)] == [
        (4, "stations[0].kind", "must be one of air, wastewater, emission, not 'river'"),
        (7, "stations[0].location.lat", "must be between -90 and 90"),
        (17, "stations[1].parameters[0].code", "unknown parameter code 'PM2'"),
        (26, "stations[2].cadense", issues(one(extra="    cadense: 60\n"), catalog)[0].message),
        (34, "stations[3].parameters[0].unit", "unknown unit 'ppm'"),
    ]
