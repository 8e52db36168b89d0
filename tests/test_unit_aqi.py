"""VN_AQI (Decision 1459/QĐ-TCMT): hand-computed values, the decision's worked examples."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from quantrac.aqi.index import (
    AqiTable,
    AqiTableError,
    daily_aqi,
    hourly_aqi,
    load_table,
    nowcast,
    sub_index,
    table_from_dict,
)
from quantrac.core.config_files import ConfigError
from quantrac.core.i18n import translate
from quantrac.core.settings import default_config_dir
from quantrac.core.time import VIETNAM as VN

HOUR = timedelta(hours=1)
TABLE_PATH = default_config_dir() / "aqi" / "vn_aqi_1459.yaml"
DAY = date(2026, 11, 1)
# The first hour of the AQI day of 1 Nov: 00:00–01:00 local (the decision's "01:00").
DAY_START = datetime(2026, 11, 1, 0, tzinfo=VN)


@pytest.fixture(scope="module")
def table() -> AqiTable:
    return load_table(TABLE_PATH)


def day_hours(start: datetime = DAY_START, n: int = 24) -> list[datetime]:
    return [start + i * HOUR for i in range(n)]


def steady(value: float, hours: list[datetime]) -> dict[datetime, float]:
    return dict.fromkeys(hours, value)


# --- Table ------------------------------------------------------------------------------------


def test_table_holds_the_decision_tables(table: AqiTable) -> None:
    assert table.index == (0, 50, 100, 150, 200, 300, 400, 500)
    assert table.breakpoints["PM2,5"] == (0, 25, 50, 80, 150, 250, 350, 500)
    assert table.breakpoints["O3_8h"] == (0, 100, 120, 170, 210, 400)
    assert [c.key for c in table.categories] == [
        "good",
        "moderate",
        "poor",
        "bad",
        "very_bad",
        "hazardous",
    ]
    assert table.category(50).key == "good"
    assert table.category(51).key == "moderate"
    assert table.category(301).rgb == (126, 0, 35)
    assert table.category(301).hex == "#7E0023"
    assert "1459" in table.source["document"]


def test_category_names_agree_with_the_translation_table(table: AqiTable) -> None:
    for category in table.categories:
        assert translate(f"aqi.category.{category.key}", "vi") == category.name_vi
        assert translate(f"aqi.category.{category.key}", "en") == category.name_en


# Each case: (text in the shipped table, its replacement, the one problem it gives).
BAD_TABLES = {
    "unknown field": (
        'unit: "µg/m3"\n',
        'unit: "µg/m3"\ncolour: red\n',
        "20: colour: unknown field (expected one of breakpoints, categories, completeness, id, "
        "index, name, nowcast, pollutants, required_any, source, unit)",
    ),
    "wrong type": (
        "    max: 50\n",
        "    max: fifty\n",
        "48: categories[0].max: input should be a valid integer",
    ),
    "required field": ('unit: "µg/m3"\n', "", "1: unit: required field missing"),
    "unsorted breakpoints": (
        "NO2: [0, 100, 200,",
        "NO2: [0, 200, 100,",
        "39: breakpoints.NO2[2]: must be above 200: breakpoints rise strictly",
    ),
    "column too short": (
        "PM10: [0, 50, 150, 250, 350, 420, 500, 600]",
        "PM10: [0]",
        "40: breakpoints.PM10: needs 2 to 8 breakpoints (one per index level)",
    ),
    "unsorted index": (
        "index: [0, 50, 100,",
        "index: [0, 50, 50,",
        "29: index[2]: must be above 50: index levels rise strictly",
    ),
    "pollutant without a column": (
        '"PM2,5"]\n# At least',
        '"PM2,5", NH3]\n# At least',
        "22: pollutants[6]: no breakpoints for 'NH3'",
    ),
    "required_any not a pollutant": (
        'required_any: [PM10, "PM2,5"]',
        'required_any: [PM10, "PM25"]',
        "24: required_any[1]: 'PM25' is not one of the pollutants",
    ),
    "overlapping categories": (
        "    min: 51\n",
        "    min: 45\n",
        "58: categories[1].min: category 'moderate' must start at 51 (after 'good'): "
        "categories neither overlap nor leave a gap",
    ),
    "missing category": (
        "  - key: bad\n    min: 151\n    max: 200\n",
        "  - key: very_bad_too\n    min: 201\n    max: 200\n",
        "81: categories[3].max: category 'very_bad_too' ends before it starts (201)",
    ),
    "hex not its rgb": (
        'hex: "#FF7E00"',
        'hex: "#FF0000"',
        "76: categories[2].hex: category 'poor': #FF0000 is not its rgb (#FF7E00)",
    ),
    "top not covered": (
        "    max: 500\n",
        "    max: 499\n",
        "103: categories[5].max: the categories must cover 0 … 500, the index's range",
    ),
    "invalid YAML": (
        "index: [0,",
        "index: [0,,",
        "29: (yaml): invalid YAML: expected the node content, but found ','",
    ),
}


@pytest.mark.parametrize(("old", "new", "expected"), BAD_TABLES.values(), ids=list(BAD_TABLES))
def test_a_bad_table_file_names_file_line_and_field(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    text = TABLE_PATH.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "table.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(AqiTableError) as caught:
        load_table(path)
    assert [str(i) for i in caught.value.issues] == [f"{path}:{expected}"]


def test_a_table_without_a_category_is_refused() -> None:
    import yaml

    data = yaml.safe_load(TABLE_PATH.read_text(encoding="utf-8"))
    del data["categories"][3]  # "bad", 151–200
    with pytest.raises(AqiTableError) as caught:
        table_from_dict(data)
    assert [str(i) for i in caught.value.issues] == [
        "<memory>:1: categories[3].min: category 'very_bad' must start at 151 (after 'poor'): "
        "categories neither overlap nor leave a gap"
    ]
    assert isinstance(caught.value, ConfigError)


def test_an_unreadable_table_is_a_table_error(tmp_path: Path) -> None:
    with pytest.raises(AqiTableError, match="cannot read the file"):
        load_table(tmp_path / "absent.yaml")


# --- Sub-index --------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["SO2", "CO", "NO2", "PM10", "PM2,5", "O3_1h", "O3_8h"], ids=str)
def test_every_breakpoint_gives_its_index_level(table: AqiTable, column: str) -> None:
    pollutant, period = ("O3", column[3:]) if column.startswith("O3") else (column, "1h")
    for bp, level in zip(table.breakpoints[column], table.index, strict=False):
        assert sub_index(pollutant, bp, table, o3_period=period) == level


def test_interpolation_by_hand(table: AqiTable) -> None:
    # PM2.5 30: level 25–50 → 50–100; 50 + 50 / 25 × 5 = 60.
    assert sub_index("PM2,5", 30, table) == 60
    # PM10 400: level 350–420 → 200–300; 200 + 100 / 70 × 50 = 271.43.
    assert sub_index("PM10", 400, table) == 271
    # CO 12 000: 50 + 50 / 20 000 × 2 000 = 55.
    assert sub_index("CO", 12_000, table) == 55
    # SO2 1 000: 200 + 100 / 800 × 200 = 225.
    assert sub_index("SO2", 1000, table) == 225


def test_rounding_is_half_up_without_float_noise(table: AqiTable) -> None:
    # 12.25 × 2 = 24.5 → 25 (round-half-even would give 24).
    assert sub_index("PM2,5", 12.25, table) == 25
    # Decision's daily example: PM2.5 55.7 → 100 + 50 / 30 × 5.7 = 109.5 → 110, although in
    # binary floating point 55.7 − 50 is 5.700000000000003.
    assert sub_index("PM2,5", 55.7, table) == 110
    assert sub_index("PM2,5", 12.24, table) == 24


def test_decision_worked_examples(table: AqiTable) -> None:
    # Hourly example: O3 136.1 → 43, PM2.5 NowCast 20.3 → 41. (Its NO2 118.7 is 59.35, which
    # the decision shows as 60: not tested, see regulations.md §4.)
    assert sub_index("O3", 136.1, table) == 43
    assert sub_index("PM2,5", 20.3, table) == 41
    # Daily example: O3 8 h 89.3 → 45, O3 1 h 114.6 → 36, NO2 130.8 → 65, PM2.5 55.7 → 110.
    assert sub_index("O3", 89.3, table, o3_period="8h") == 45
    assert sub_index("O3", 114.6, table) == 36
    assert sub_index("NO2", 130.8, table) == 65


def test_above_the_top_breakpoint_is_capped_at_500(table: AqiTable) -> None:
    assert sub_index("PM2,5", 499.9, table) == 500  # 400 + 100 / 150 × 149.9 = 499.93
    assert sub_index("PM2,5", 500, table) == 500
    assert sub_index("PM2,5", 5000, table) == 500
    assert sub_index("CO", 1e9, table) == 500


def test_o3_8h_column_ends_at_400(table: AqiTable) -> None:
    assert sub_index("O3", 400, table, o3_period="8h") == 300
    assert sub_index("O3", 400.1, table, o3_period="8h") is None
    assert sub_index("O3", 400.1, table, o3_period="1h") == 200


def test_negative_or_non_finite_concentrations_have_no_index(table: AqiTable) -> None:
    assert sub_index("PM10", -0.1, table) is None
    assert sub_index("PM10", float("nan"), table) is None
    assert sub_index("PM10", 0.0, table) == 0


def test_unknown_pollutant_is_an_error(table: AqiTable) -> None:
    with pytest.raises(ValueError, match="TSP"):
        sub_index("TSP", 10, table)


# --- NowCast ----------------------------------------------------------------------------------


def test_nowcast_of_a_steady_series_is_the_value() -> None:
    assert nowcast([35.0] * 12) == pytest.approx(35.0)
    assert nowcast([35.0, 35.0]) == pytest.approx(35.0)


def test_nowcast_of_a_rising_series_by_hand() -> None:
    # c1 = 40, c2 = 30, c3 = 20 (rising towards now): w* = 20 / 40 = 0.5, w = 0.5;
    # (40 + 0.5 × 30 + 0.25 × 20) / (1 + 0.5 + 0.25) = 60 / 1.75 = 34.2857…
    assert nowcast([40.0, 30.0, 20.0]) == pytest.approx(60 / 1.75)
    # w* = 30 / 40 = 0.75 > 0.5: (40 + 0.75 × 35 + 0.5625 × 30) / (1 + 0.75 + 0.5625)
    assert nowcast([40.0, 35.0, 30.0]) == pytest.approx(
        (40 + 0.75 * 35 + 0.5625 * 30) / (1 + 0.75 + 0.5625)
    )


def test_nowcast_weight_floor_is_one_half() -> None:
    # w* = 10 / 100 = 0.1 → w = 0.5: (10 + 0.5 × 100) / 1.5 = 40.
    assert nowcast([10.0, 100.0]) == pytest.approx(40.0)


def test_nowcast_decision_example() -> None:
    # Decision §2.3 a: PM2.5 09:00 … 20:00, c1 = 20:00 → 20.3 µg/m³ (w* = 16.5 / 26.9 = 0.61).
    series = [26.9, 24.7, 20.5, 23.5, 19.5, 16.5, 19.0, 16.5, 20.3, 22.4, 19.6, 20.6]
    assert round(nowcast(series[::-1]) or 0, 1) == 20.3


def test_nowcast_needs_two_of_the_three_latest_hours() -> None:
    full = [20.0] * 12
    assert nowcast([None, None, *full[2:]]) is None
    assert nowcast([None, 20.0, None, *full[3:]]) is None
    assert nowcast([20.0, None, None, *full[3:]]) is None
    assert nowcast([None, 20.0, 20.0]) == pytest.approx(20.0)
    assert nowcast([20.0, None, 20.0]) == pytest.approx(20.0)
    assert nowcast([20.0]) is None
    assert nowcast([]) is None


def test_nowcast_missing_hours_weigh_nothing() -> None:
    # c1 = 40, c2 missing, c3 = 20: w = 0.5, weights 1 and 0.25 (the missing c2 keeps its
    # place: c3 still gets w²). (40 + 0.25 × 20) / 1.25 = 36.
    assert nowcast([40.0, None, 20.0]) == pytest.approx(36.0)
    # Negative means are treated as missing.
    assert nowcast([40.0, -3.0, 20.0]) == pytest.approx(36.0)


def test_nowcast_of_zeros_is_zero() -> None:
    assert nowcast([0.0, 0.0, None, 0.0]) == 0.0
    # min 0, max 8: w = 0.5; (0 + 0.5 × 8) / 1.5
    assert nowcast([0.0, 8.0]) == pytest.approx(4 / 1.5)


def test_nowcast_takes_at_most_twelve_hours() -> None:
    with pytest.raises(ValueError):
        nowcast([1.0] * 13)


# --- Hourly AQI -------------------------------------------------------------------------------


def test_hourly_aqi_uses_nowcast_for_pm_and_the_hour_for_gases(table: AqiTable) -> None:
    hour = datetime(2026, 11, 1, 9, tzinfo=UTC)
    means = {
        # c1 = 40, c2 = 30, c3 = 20 → NowCast 34.2857 → 50 + 2 × 9.2857 = 68.57 → 69
        "PM2,5": {hour: 40.0, hour - HOUR: 30.0, hour - 2 * HOUR: 20.0},
        "NO2": {hour: 150.0, hour - HOUR: 900.0},  # this hour only: 75
        "O3": {hour: 136.1},  # 43
    }
    result = hourly_aqi("AIR1", hour, means, table)
    assert result is not None
    assert result.period == "hour"
    assert (result.start, result.end) == (hour, hour + HOUR)
    assert result.sub_indices == {"NO2": 75, "O3": 43, "PM2,5": 69}
    assert result.inputs["PM2,5"] == pytest.approx(60 / 1.75)
    assert result.inputs["NO2"] == 150.0
    assert result.aqi == 75
    assert result.dominant == ("NO2",)
    assert result.category == "moderate"
    assert (result.category_vi, result.category_en) == ("Trung bình", "Moderate")
    assert result.colour_hex == "#FFFF00"
    assert result.colour_rgb == (255, 255, 0)


def test_hourly_aqi_without_pm_is_none(table: AqiTable) -> None:
    hour = datetime(2026, 11, 1, 9, tzinfo=UTC)
    means = {"NO2": {hour: 150.0}, "O3": {hour: 100.0}}
    assert hourly_aqi("AIR1", hour, means, table) is None
    # PM present but NowCast not computable (only c1 of c1..c3): still none.
    means["PM10"] = {hour: 30.0, hour - 3 * HOUR: 30.0}
    assert hourly_aqi("AIR1", hour, means, table) is None
    # PM10 alone is enough.
    means["PM10"][hour - HOUR] = 30.0
    result = hourly_aqi("AIR1", hour, means, table)
    assert result is not None
    assert result.sub_indices["PM10"] == 30


def test_hourly_aqi_ties_name_every_dominant_pollutant(table: AqiTable) -> None:
    hour = datetime(2026, 11, 1, 9, tzinfo=UTC)
    means = {
        "PM2,5": {hour: 25.0, hour - HOUR: 25.0},  # 50
        "PM10": {hour: 50.0, hour - HOUR: 50.0},  # 50
        "SO2": {hour: 125.0},  # 50
        "CO": {hour: 5000.0},  # 25
    }
    result = hourly_aqi("AIR1", hour, means, table)
    assert result is not None
    assert result.aqi == 50
    assert result.category == "good"
    # In the decision's order: SO2, CO, NO2, O3, PM10, PM2.5.
    assert result.dominant == ("SO2", "PM10", "PM2,5")


def test_hourly_aqi_takes_local_hours_as_well(table: AqiTable) -> None:
    local = datetime(2026, 11, 1, 16, tzinfo=VN)  # = 09:00 UTC
    means = {"PM10": {datetime(2026, 11, 1, 9, tzinfo=UTC): 60.0, local - HOUR: 60.0}}
    result = hourly_aqi("AIR1", local, means, table)
    assert result is not None
    assert result.aqi == 55  # 50 + 50 / 100 × 10


def test_hourly_aqi_refuses_naive_or_unaligned_hours(table: AqiTable) -> None:
    with pytest.raises(ValueError):
        hourly_aqi("AIR1", datetime(2026, 11, 1, 9), {}, table)
    with pytest.raises(ValueError):
        hourly_aqi("AIR1", datetime(2026, 11, 1, 9, 30, tzinfo=UTC), {}, table)


# --- Daily AQI --------------------------------------------------------------------------------


def test_daily_aqi_decision_example_style(table: AqiTable) -> None:
    hours = day_hours()
    no2 = steady(100.0, hours)
    no2[hours[10]] = 130.8  # daily max 1 h → 65
    means = {"PM2,5": steady(55.7, hours), "NO2": no2}
    result = daily_aqi("AIR1", DAY, means, VN, table)
    assert result is not None
    assert result.period == "day"
    assert result.sub_indices == {"NO2": 65, "PM2,5": 110}
    assert result.aqi == 110
    assert result.category == "poor"
    assert result.dominant == ("PM2,5",)
    assert result.inputs["PM2,5"] == pytest.approx(55.7)
    assert result.inputs["NO2"] == 130.8


def test_daily_pm_is_the_mean_of_the_valid_hours(table: AqiTable) -> None:
    hours = day_hours()
    pm = {h: (20.0 if i < 12 else 40.0) for i, h in enumerate(hours)}  # mean 30 → 60
    del pm[hours[0]], pm[hours[23]]  # 22 valid hours: 11 × 20, 11 × 40 → still 30
    result = daily_aqi("AIR1", DAY, {"PM2,5": pm}, VN, table)
    assert result is not None
    assert result.inputs["PM2,5"] == pytest.approx(30.0)
    assert result.aqi == 60


def test_daily_needs_eighteen_valid_hours(table: AqiTable) -> None:
    hours = day_hours()
    assert table.daily_min_hours == 18
    assert daily_aqi("AIR1", DAY, {"PM10": steady(60.0, hours[:17])}, VN, table) is None
    result = daily_aqi("AIR1", DAY, {"PM10": steady(60.0, hours[:18])}, VN, table)
    assert result is not None
    assert result.aqi == 55
    # A gas below the threshold is left out, not counted as partial.
    means = {"PM10": steady(60.0, hours), "SO2": steady(1000.0, hours[:17])}
    result = daily_aqi("AIR1", DAY, means, VN, table)
    assert result is not None
    assert "SO2" not in result.sub_indices


def test_local_day_is_hours_starting_00_to_23_local(table: AqiTable) -> None:
    # The AQI day of 1 Nov (local 01:00 … 24:00 as hour ends) = UTC 31 Oct 17:00 … 1 Nov 16:00
    # as hour starts.
    first = datetime(2026, 10, 31, 17, tzinfo=UTC)
    hours = [first + i * HOUR for i in range(24)]
    pm = steady(30.0, hours)
    pm[first - HOUR] = 500.0  # 23:00–24:00 local on 31 Oct: the day before
    pm[first + 24 * HOUR] = 500.0  # 00:00–01:00 local on 2 Nov: the day after
    result = daily_aqi("AIR1", DAY, {"PM2,5": pm}, VN, table)
    assert result is not None
    assert result.inputs["PM2,5"] == pytest.approx(30.0)
    assert (result.start, result.end) == (first, first + 24 * HOUR)
    # A UTC day would be a different day.
    shifted = daily_aqi("AIR1", DAY, {"PM2,5": pm}, UTC, table)
    assert shifted is not None
    assert shifted.inputs["PM2,5"] > 30


def test_daily_o3_decision_eight_hour_example(table: AqiTable) -> None:
    # Decision §2.2.2 a: O3 hourly means labelled by the hour they end, 18:00 the day before
    # … 00:00 the day after; the daily max 8 h mean is 74.4 (the window ending 17:00).
    values = [15.7, 14.2, 17.7, 18.9, 19.3, 15.7, 19.7]  # ending 18:00 … 00:00, day before
    values += [22.6, 27.1, 29.0, 31.9, 25.3, 34.7, 35.2, 41.6, 45.7, 49.2, 55.8, 69.6]
    values += [78.3, 91.5, 97.7, 81.2, 71.8, 43.5, 34.3, 21.5, 20.5, 19.4, 20.4, 21.3]
    # The hour ending 18:00 the day before starts at 17:00 local.
    first = DAY_START - 7 * HOUR
    o3 = {first + i * HOUR: v for i, v in enumerate(values)}
    means = {"O3": o3, "PM10": steady(10.0, day_hours())}
    result = daily_aqi("AIR1", DAY, means, VN, table)
    assert result is not None
    assert result.inputs["O3_8h"] == pytest.approx(74.3875)
    assert result.inputs["O3_1h"] == 97.7
    # 8 h: 74.3875 / 2 = 37.19 → 37; 1 h: 97.7 × 50 / 160 = 30.53 → 31: the 8 h one wins.
    assert result.sub_indices["O3"] == 37
    assert result.inputs["O3"] == pytest.approx(74.3875)
    assert result.aqi == 37
    assert result.dominant == ("O3",)


def test_daily_o3_takes_the_larger_of_1h_and_8h(table: AqiTable) -> None:
    hours = day_hours()
    o3 = steady(50.0, hours)
    o3[hours[12]] = 300.0  # 1 h max 300 → 150; 8 h max (7 × 50 + 300) / 8 = 81.25 → 41
    means = {"O3": o3, "PM10": steady(10.0, hours)}
    result = daily_aqi("AIR1", DAY, means, VN, table)
    assert result is not None
    assert result.sub_indices["O3"] == 150
    assert result.inputs["O3"] == 300.0
    assert result.inputs["O3_8h"] == pytest.approx(81.25)


def test_daily_o3_above_400_for_8h_uses_only_1h(table: AqiTable) -> None:
    hours = day_hours()
    # 8 h max 410 (> 400): no 8 h index, although 410 would be past level 6 (300) and the
    # 1 h index of 430 is only 200 + 100 / 400 × 30 = 207.5 → 208.
    o3 = steady(410.0, hours)
    o3[hours[5]] = 430.0
    means = {"O3": o3, "PM10": steady(10.0, hours)}
    result = daily_aqi("AIR1", DAY, means, VN, table)
    assert result is not None
    assert result.inputs["O3_8h"] > 400
    assert result.sub_indices["O3"] == 208
    assert result.inputs["O3"] == 430.0
    # Exactly 400 for 8 h is still the top of its column: 300 beats the 1 h 200.
    result = daily_aqi("AIR1", DAY, {"O3": steady(400.0, hours), "PM10": means["PM10"]}, VN, table)
    assert result is not None
    assert result.sub_indices["O3"] == 300


def test_daily_eight_hour_windows_need_six_valid_hours(table: AqiTable) -> None:
    hours = day_hours()
    o3 = steady(100.0, hours)
    # Three missing hours (8, 9, 10) just before five high ones (11 … 15).
    for i in (8, 9, 10):
        del o3[hours[i]]
    for i in (11, 12, 13, 14, 15):
        o3[hours[i]] = 180.0
    means = {"O3": o3, "PM10": steady(10.0, hours)}
    result = daily_aqi("AIR1", DAY, means, VN, table)
    assert result is not None
    # Window ending at hour 15 (hours 8 … 15): 5 valid → skipped (it would give 180).
    # Ending at 16 (9 … 16): 6 valid: (5 × 180 + 100) / 6 = 166.67. Ending at 18 (11 … 18):
    # (5 × 180 + 3 × 100) / 8 = 150.
    assert result.inputs["O3_8h"] == pytest.approx(1000 / 6)


def test_daily_without_pm_is_none(table: AqiTable) -> None:
    hours = day_hours()
    assert daily_aqi("AIR1", DAY, {"NO2": steady(150.0, hours)}, VN, table) is None
