"""The translation table's helpers: numbers as each language writes them, refusals that carry
their key."""

from __future__ import annotations

import pytest

from quantrac.core.i18n import TranslatedError, format_number, translate


@pytest.mark.parametrize(
    ("value", "digits", "vi", "en"),
    [
        (12, 3, "12", "12"),
        (1234567, 3, "1.234.567", "1,234,567"),
        (1234.5, 3, "1.234,5", "1,234.5"),
        (0.1 + 0.2, 3, "0,3", "0.3"),
        (2.0, 3, "2", "2"),
        (148.5, 1, "148,5", "148.5"),
        (0.04, 1, "0", "0"),
        (-0.0001, 3, "0", "0"),
        (-12.25, 2, "-12,25", "-12.25"),
        (12.5, 0, "12", "12"),  # banker's rounding of Python's format: 12.5 → 12
        (1234, 0, "1.234", "1,234"),
        (float("nan"), 3, "nan", "nan"),
        (float("inf"), 3, "inf", "inf"),
    ],
)
def test_numbers_are_written_as_each_language_writes_them(
    value: float, digits: int, vi: str, en: str
) -> None:
    assert format_number(value, "vi", digits) == vi
    assert format_number(value, "en", digits) == en


def test_vietnamese_is_the_default_language_of_numbers() -> None:
    assert format_number(1234.5) == "1.234,5"


def test_a_translated_error_is_english_for_logs_and_either_language_for_people() -> None:
    error = TranslatedError("error.window.order")
    assert isinstance(error, ValueError)
    assert str(error) == "the end of the window must be after its start"
    assert error.text("vi") == "Thời điểm kết thúc phải sau thời điểm bắt đầu."
    assert error.text("en") == str(error)
    held = TranslatedError("error.lock.no_held", id=3)
    assert (held.key, held.params) == ("error.lock.no_held", {"id": 3})
    assert held.text("vi") == translate("error.lock.no_held", "vi", id=3)


def test_a_translated_error_with_an_unknown_key_fails_at_once() -> None:
    with pytest.raises(KeyError):
        TranslatedError("error.no.such.key")


@pytest.mark.parametrize(
    ("key", "value", "vi", "en"),
    [
        ("averaging", "1h, 24h", "trung bình 1 giờ, 24 giờ của", "1-hour, 24-hour means"),
        ("completeness", "87.5 %", ": 87,5 % số giá trị", ": 87.5 % of the readings"),
        ("holdoff", "45 min", ": 45 phút, số liệu", ": 45 min during"),
    ],
)
def test_design_choices_say_their_values_as_the_reader_does(
    key: str, value: str, vi: str, en: str
) -> None:
    """ "1 giờ", not "1h"; 87,5 %, not 87.5 %; the JSON value itself stays as configured."""
    from quantrac.alerts.choices import DesignChoice

    choice = DesignChoice(key, value, "config/alerts.yaml")
    assert vi in choice.text("vi") and en in choice.text("en")
    assert choice.to_json()["value"] == value
