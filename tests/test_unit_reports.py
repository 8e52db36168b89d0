"""The pure parts of the reports: days, expected counts, summaries, indicator inputs, files."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from openpyxl import load_workbook

from quantrac.core.catalog import load_catalog
from quantrac.core.config_files import ConfigError
from quantrac.core.i18n import default_messages
from quantrac.core.registry import registry_from_text
from quantrac.regulations.limits import Factor
from quantrac.reports.completeness import (
    ceil_hour,
    combine,
    expected_count,
    expected_per_day,
    floor_hour,
    local_days,
    local_months,
    share,
)
from quantrac.reports.exceedances import (
    ExceedanceReport,
    ReportEpisode,
    ReportError,
    StationInfo,
    StatusPeriod,
    stations_for,
    summarise,
    union_hours,
)
from quantrac.reports.indicators import (
    Indicator22,
    Indicator23,
    IndicatorConfig,
    load_indicator_config,
    parse_indicator_config,
    required_facilities,
)
from quantrac.reports.writers import (
    ReportFontError,
    exceedance_csv,
    exceedance_pdf,
    exceedance_xlsx,
    font_paths,
)
from tests.conftest import CONFIG, TEST_REGISTRY

VN = timezone(timedelta(hours=7))


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return registry_from_text(TEST_REGISTRY, load_catalog(CONFIG / "parameters.yaml"), "t.yaml")


def test_expected_counts_follow_the_cadence() -> None:
    assert expected_per_day(300) == 288
    assert expected_per_day(60) == 1440
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert expected_count(300, t, t + timedelta(hours=1)) == 12
    assert expected_count(300, t, t + timedelta(minutes=7)) == 1
    assert expected_count(300, t, t) == 0
    with pytest.raises(ValueError):
        expected_count(0, t, t)


def test_share_is_capped_and_none_without_expectation() -> None:
    assert round(100 * (share(200, 288) or 0), 1) == 69.4
    assert share(300, 288) == 1.0
    assert share(0, 0) is None


def test_vietnamese_days_and_months() -> None:
    start = datetime(2026, 10, 31, 12, tzinfo=VN)
    end = datetime(2026, 11, 1, 6, tzinfo=VN)
    days = local_days(start, end)
    assert [(d, lo.astimezone(VN).hour, hi.astimezone(VN).hour) for d, lo, hi in days] == [
        (date(2026, 10, 31), 12, 0),
        (date(2026, 11, 1), 0, 6),
    ]
    # 17:00 UTC is already the next Vietnamese day.
    assert local_days(datetime(2026, 1, 1, 17, tzinfo=UTC), datetime(2026, 1, 1, 18, tzinfo=UTC))[
        0
    ][0] == date(2026, 1, 2)
    months = local_months(datetime(2025, 12, 15, tzinfo=VN), datetime(2026, 2, 1, tzinfo=VN))
    assert [m for m, _, _ in months] == ["2025-12", "2026-01"]
    assert floor_hour(datetime(2026, 1, 1, 3, 25, tzinfo=UTC)).hour == 3
    assert ceil_hour(datetime(2026, 1, 1, 3, 25, tzinfo=UTC)).hour == 4
    assert ceil_hour(datetime(2026, 1, 1, 3, tzinfo=UTC)).hour == 3


def test_combine_counts_days_parameters_and_the_whole_station(registry) -> None:  # type: ignore[no-untyped-def]
    ww1 = registry.get("WW1")
    start = datetime(2026, 11, 1, tzinfo=VN)
    end = start + timedelta(days=1)
    report = combine(
        [ww1],
        start,
        end,
        {("WW1", "COD", date(2026, 11, 1)): 200, ("WW1", "pH", date(2026, 11, 1)): 288},
        {("WW1", "COD", date(2026, 11, 1), 1): 12},
    )
    cod = report.day("WW1", "COD", date(2026, 11, 1))
    assert cod is not None and (cod.received, cod.expected, cod.calibrating) == (200, 288, 12)
    whole = report.day("WW1", None, date(2026, 11, 1))
    assert whole is not None and (whole.received, whole.expected) == (488, 4 * 288)
    # A period still running: nothing is owed for the future.
    now = start + timedelta(hours=6)
    running = combine([ww1], start, end, {}, {}, now=now)
    assert running.day("WW1", "COD", date(2026, 11, 1)).expected == 72  # type: ignore[union-attr]


def test_union_hours_counts_overlaps_once_and_clips() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    h = timedelta(hours=1)
    spans = [(t, t + 2 * h), (t + h, t + 3 * h), (t + 5 * h, t + 6 * h)]
    assert union_hours(spans, t, t + 10 * h) == 4.0
    assert union_hours(spans, t + 2 * h, t + 10 * h) == 2.0
    assert union_hours([], t, t + h) == 0.0


def _episode(start: datetime, hours: int, multiple: float, band: str) -> ReportEpisode:
    return ReportEpisode(
        station_id="WW1",
        param="COD",
        averaging="1h",
        start=start,
        end=start + timedelta(hours=hours),
        windows=hours,
        maximum=75 * multiple,
        mean=75 * multiple,
        limit_value=75.0,
        limit_text="≤ 75 mg/L",
        unit="mg/L",
        multiple=multiple,
        band=band,
        completeness=1.0,
        regulation_id="QCVN 40:2011/BTNMT",
        column="A",
        formula="C × Kq × Kf = 75 × 1.0 × 1.0 = 75 mg/L",
        unverified=False,
        ongoing=False,
        factors=(Factor("Kq", 1.0, "river", "sông"),),
        limit_source="regulation",
    )


def _report(registry) -> ExceedanceReport:  # type: ignore[no-untyped-def]
    ww1 = registry.get("WW1")
    start, end = datetime(2026, 10, 31, tzinfo=VN), datetime(2026, 11, 2, tzinfo=VN)
    completeness = combine(
        [ww1], start, end, {("WW1", "COD", date(2026, 10, 31)): 288}, {}, now=end
    )
    report = ExceedanceReport(
        start=start,
        end=end,
        generated_at=end,
        stations=[
            StationInfo(
                "WW1",
                ww1.name,
                "wastewater",
                ww1.facility,
                ww1.province,
                300,
                "QCVN 40:2011/BTNMT",
                "A",
                (),
                (),
            )
        ],
        episodes=[
            _episode(datetime(2026, 10, 31, 10, tzinfo=VN), 2, 2.6667, "1.5–<3"),
            _episode(datetime(2026, 10, 31, 23, tzinfo=VN), 2, 1.6, "1.5–<3"),
        ],
        completeness=completeness,
        status_periods=[
            StatusPeriod("WW1", "pH", "fault", start, start + timedelta(minutes=30), 6)
        ],
    )
    summarise(report)
    return report


def test_summaries_split_hours_at_month_ends(registry) -> None:  # type: ignore[no-untyped-def]
    report = _report(registry)
    assert [(m.month, m.episodes, m.hours_exceeded) for m in report.by_month] == [
        ("2026-10", 2, 3.0),
        ("2026-11", 0, 1.0),
    ]
    cod = next(s for s in report.by_parameter if s.param == "COD")
    assert (cod.episodes, cod.hours_exceeded, cod.worst_multiple) == (2, 4.0, 2.6667)
    assert cod.completeness == 0.5


def test_files_from_a_report_without_a_database(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = _report(registry)
    text = exceedance_csv(report, "vi").decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0][:3] == ["Trạm", "Thông số", "Thời gian TB"] and len(rows) == 3
    assert "Kq = 1.0 (sông)" in rows[1]
    with pytest.raises(ValueError):
        exceedance_csv(report, "vi", "nonsense")
    book = load_workbook(io.BytesIO(exceedance_xlsx(report, "vi")))
    assert book.sheetnames[1:3] == ["Các đợt vượt", "Tỷ lệ dữ liệu"]
    pdf = exceedance_pdf(report, "en")
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")


def test_a_missing_font_names_the_debian_package(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ReportFontError, match="fonts-dejavu-core"):
        font_paths(tmp_path)
    monkeypatch.setenv("QUANTRAC_REPORT_FONT_DIR", str(tmp_path))
    with pytest.raises(ReportFontError, match="QUANTRAC_REPORT_FONT_DIR"):
        font_paths()


def test_stations_for_a_station_or_a_facility(registry) -> None:  # type: ignore[no-untyped-def]
    assert [s.id for s in stations_for(registry, station="WW1")] == ["WW1"]
    assert [s.id for s in stations_for(registry, facility="KCN Thử")] == ["WW1"]
    for kwargs in ({}, {"station": "WW1", "facility": "KCN Thử"}, {"station": "X"}):
        with pytest.raises(ReportError):
            stations_for(registry, **kwargs)


def test_indicator_inputs_are_checked() -> None:
    config = parse_indicator_config(
        {
            "indicator_22": {
                "urban_population": [
                    {
                        "province": "Bắc Ninh",
                        "population": 500000,
                        "source": "x",
                        "year": 2024,
                        "illustrative": True,
                    }
                ]
            },
            "indicator_23": {"required_facilities": ["A", {"facility": "B", "province": "P"}]},
        }
    )
    assert config.urban_population[0].illustrative and config.per == 100_000
    assert config.required_facilities == (("A", None), ("B", "P"))
    bad = [
        {
            "indicator_22": {
                "urban_population": [{"province": "X", "population": -1, "source": "s"}]
            }
        },
        {"indicator_22": {"urban_population": [{"province": "X", "population": 5}]}},
        {"indicator_22": {"per": 0}},
        {"indicator_23": {"required_facilities": [3]}},
    ]
    for data in bad:
        with pytest.raises(ConfigError):
            parse_indicator_config(data, "f.yaml")
    # The shipped file loads, names today's province (Bắc Giang merged into Bắc Ninh on
    # 01/07/2025) and marks its figure as illustrative.
    import yaml

    shipped = parse_indicator_config(
        yaml.safe_load((CONFIG / "indicators.yaml").read_text(encoding="utf-8"))
    )
    [bg] = shipped.urban_population
    assert bg.province == "Bắc Ninh" and bg.illustrative and "ILLUSTRATIVE" in bg.source
    assert bg.source_vi is not None and bg.source_vi.startswith("SỐ LIỆU MINH HỌA")


def test_required_facilities_default_and_listed(registry) -> None:  # type: ignore[no-untyped-def]
    default = required_facilities(registry, IndicatorConfig())
    assert [(f, p, [s.id for s in st]) for f, p, st in default] == [
        ("KCN Thử", "Bắc Ninh", ["WW1"])
    ]
    listed = required_facilities(
        registry, IndicatorConfig(required_facilities=(("Sở TN&MT", None), ("Z", "Q")))
    )
    assert [(f, p, len(st)) for f, p, st in listed] == [("Sở TN&MT", "Bắc Ninh", 1), ("Z", "Q", 0)]


def test_indicator_arithmetic() -> None:
    assert Indicator23("", 4, 3).value == 0.75
    assert Indicator23("", 0, 0).value is None
    assert Indicator22("Bắc Ninh", 500000, 3, 3, 100_000).per_population == pytest.approx(0.6)
    assert Indicator22("X", None, 3, 0, 100_000).per_population is None


def test_every_report_text_has_both_languages() -> None:
    keys = [k for k in default_messages() if k.startswith("report.")]
    assert len(keys) > 50
    assert all(default_messages()[k]["vi"] and default_messages()[k]["en"] for k in keys)


def test_reports_name_each_facilitys_regime_and_the_design_choices() -> None:
    """An existing and a new facility side by side over the 2031/2032 switch: the report says
    which regulation applied when and why, and lists the values that are choices, not law."""
    from quantrac.alerts.choices import design_choices
    from quantrac.alerts.config import EngineConfig
    from quantrac.regulations.tables import load_regulation_catalog
    from quantrac.reports.exceedances import station_info
    from quantrac.reports.writers import exceedance_json
    from tests.test_cli_replay import SIDE_BY_SIDE

    catalog = load_catalog(CONFIG / "parameters.yaml")
    regulations = load_regulation_catalog(CONFIG / "regulations", catalog)
    registry = registry_from_text(SIDE_BY_SIDE, catalog)
    start, end = datetime(2031, 12, 31, tzinfo=VN), datetime(2032, 1, 2, tzinfo=VN)
    old, new = (station_info(registry.stations[s], regulations, start, end) for s in ("OLD", "NEW"))
    assert [(p.regulation_id, p.valid_to) for p in old.regime] == [
        ("QCVN 40:2011/BTNMT", date(2032, 1, 1)),
        ("QCVN 40:2025/BTNMT", None),
    ]
    assert [p.reason_key for p in old.regime] == ["regime.existing", "regime.after_transition"]
    assert [(p.regulation_id, p.reason_key) for p in new.regime] == [
        ("QCVN 40:2025/BTNMT", "regime.new")
    ]
    assert new.permit == "Giấy phép môi trường số 7/GPMT-UBND ngày 01/01/2030"
    assert [(lim.source, lim.text) for lim in new.limits] == [("permit", "≤ 80 mg/L")]
    report = ExceedanceReport(
        start=start,
        end=end,
        generated_at=end,
        stations=[old, new],
        episodes=[],
        completeness=combine(
            [registry.stations["OLD"], registry.stations["NEW"]], start, end, {}, {}, now=end
        ),
        status_periods=[],
        design_choices=design_choices(EngineConfig(), regulations),
    )
    data = exceedance_json(report)
    assert data["stations"][0]["regime"][0]["reason_en"] == (
        "Existing facility (ĐTM 2018): keeps QCVN 40:2011/BTNMT until 31/12/2031 under the "
        "transition to QCVN 40:2025/BTNMT."
    )
    assert data["stations"][1]["permit"] == new.permit
    choices = {c["key"]: c for c in data["design_choices"]}
    assert choices["completeness"]["value"] == "75 %"
    assert choices["completeness"]["where"] == "config/alerts.yaml: evaluation.min_completeness"
    assert choices["averaging"]["value"] == "1h"
    assert choices["warning"]["text_en"].startswith("Approaching-limit warning: above 80 %")
    book = load_workbook(io.BytesIO(exceedance_xlsx(report, "en")))
    overview = [row[0] for row in book.worksheets[0].iter_rows(values_only=True) if row[0]]
    assert "quantrac's design choices (configurable, not law)" in overview
    assert any(
        str(line).startswith("until 31/12/2031: QCVN 40:2011/BTNMT column A — Existing")
        for line in overview
    )
    assert any(
        str(line).startswith("from 01/01/2032: QCVN 40:2025/BTNMT column A") for line in overview
    )
    pdf = exceedance_pdf(report, "vi")
    assert pdf.startswith(b"%PDF")


def test_design_choices_read_in_the_readers_words() -> None:
    """'1 giờ' not '1h', '30 phút' not '30 min', and the decimal comma in Vietnamese."""
    from quantrac.alerts.choices import DesignChoice

    averaging = DesignChoice("averaging", "1h, 24h", "config/regulations/*.yaml")
    assert "trung bình 1 giờ, 24 giờ của dữ liệu tự động" in averaging.text("vi")
    assert "1-hour, 24-hour means" in averaging.text("en")
    holdoff = DesignChoice("holdoff", "30 min", "alerts_holdoff_minutes")
    assert holdoff.text("vi").startswith("Thời gian chờ sau hiệu chuẩn: 30 phút,")
    assert holdoff.text("en").startswith("Hold-off after a calibration: 30 min ")
    share = DesignChoice("completeness", "87.5 %", "config/alerts.yaml")
    assert "87,5 %" in share.text("vi") and "87.5 %" in share.text("en")
    assert share.to_json()["value"] == "87.5 %"  # the value itself stays as configured


def test_indicator_file_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "indicators.yaml"
    path.write_text(
        "indicator_22:\n"
        "  per: 0\n"
        "  urban_population:\n"
        "    - {province: X, population: -1, source: s}\n"
        "    - province: Y\n"
        "      population: 5\n"
        "indicator_23:\n"
        "  required_facilities: [A, 3]\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_indicator_config(path)
    assert str(caught.value).splitlines() == [
        f"{path}:2: indicator_22.per: must be a positive integer",
        f"{path}:4: indicator_22.urban_population[0].population: must be a positive integer",
        f"{path}:5: indicator_22.urban_population[1].source: required: where the figure comes from",
        f"{path}:8: indicator_23.required_facilities[1]: a facility name, or {{facility,"
        " province}",
    ]
    path.write_text(
        "indicator_22:\n  urban_population:\n    - {province: X, population: 5,"
        " source: s}\n    - {province: X, population: 6, source: t}\n"
    )
    with pytest.raises(ConfigError, match=r":2: indicator_22\.urban_population: a province is"):
        load_indicator_config(path)
