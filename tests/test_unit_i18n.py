"""The translation table's helpers: numbers as each language writes them, refusals that carry
their key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from quantrac.api.users import ROLES, User
from quantrac.core.i18n import (
    Phrase,
    TranslatedError,
    default_messages,
    format_number,
    limit_digits,
    translate,
)


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
        # Ties away from zero, as the board's Intl.NumberFormat (Python's format: 12.5 → 12).
        (12.5, 0, "13", "13"),
        (-2.5, 0, "-3", "-3"),
        (0.125, 2, "0,13", "0.13"),
        (1.005, 2, "1,01", "1.01"),  # as written, not the float's 1.00499999…
        (1234, 0, "1.234", "1,234"),
        # 31 digits (more than decimal's default precision of 28), as written: 1.2676506002282294e30
        (
            2.0**100,
            0,
            "1.267.650.600.228.229.400.000.000.000.000",
            "1,267,650,600,228,229,400,000,000,000,000",
        ),
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


def test_a_phrase_inside_a_text_is_said_in_the_same_language() -> None:
    role = Phrase("api.role.inspector")
    refusal = TranslatedError("api.msg.may_not.admin", role=role)
    assert refusal.text("vi").startswith("Vai trò “thanh tra” không có quyền quản trị")
    assert str(refusal) == "the role 'inspector' may not do this (admin)"
    with pytest.raises(KeyError):
        Phrase("api.role.nobody")
    for name in ROLES:  # every role a refusal can name has its name in the table
        assert User(1, "u", "U", name).role_name.text("vi")


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


# --- one word per concept -----------------------------------------------------------------------

LOGGER_VI = "bộ ghi dữ liệu"


def test_the_datalogger_has_one_vietnamese_name_in_every_text() -> None:
    """Item 6: the check findings said "datalogger" (and "đồng hồ thiết bị") while the acks said
    "bộ ghi dữ liệu"; every Vietnamese text now says the latter, its English "datalogger" or
    "logger"."""
    named = {}
    for key, entry in default_messages().items():
        vi = entry["vi"]
        assert "datalogger" not in vi.lower(), (key, vi)
        assert "đồng hồ thiết bị" not in vi.lower(), (key, vi)
        # "bộ ghi" alone is the same device said short: always the full name.
        assert not re.search(r"(?i)bộ ghi(?! dữ liệu)", vi), (key, vi)
        if LOGGER_VI in vi.lower():
            named[key] = entry
            assert "logger" in entry["en"].lower() or key == "check.criterion.clock", (key, entry)
    # Both the acks and the check findings and fixes name it.
    assert {"ack.time_in_future", "ack.clock.logger_on_utc"} <= named.keys()
    assert {"check.finding.logger_on_utc", "check.fix.clock", "check.fix.stuck"} <= named.keys()
    assert translate("check.fix.slower", "vi", declared=300) == (
        "Cấu hình bộ ghi dữ liệu truyền mỗi 300 giây như đã đăng ký."
    )
    assert translate("check.fix.slower", "en", declared=300) == (
        "Configure the datalogger to send every 300 s as declared."
    )


@pytest.mark.parametrize("guide", ["vendor-guide.vi.md", "ftp.vi.md"])
def test_the_vietnamese_guides_say_the_same_word(guide: str) -> None:
    """The first mention gives the English word in brackets, then only the Vietnamese one."""
    text = (Path(__file__).parent.parent / "docs" / guide).read_text(encoding="utf-8")
    mentions = [m.start() for m in re.finditer("datalogger", text)]
    assert len(mentions) == 1, guide
    first = text.lower().find(LOGGER_VI)
    assert text[first : first + len(LOGGER_VI) + 13].lower() == f"{LOGGER_VI} (datalogger)"
    assert not re.search(r"(?i)bộ ghi(?! dữ liệu)", text)


@pytest.mark.parametrize(
    ("bounds", "digits"),
    [
        ((75.0,), 1),  # 3 significant figures: 75,0
        ((75,), 1),
        ((200.0,), 0),
        ((1000.0,), 0),
        ((0.5,), 2),
        ((67.5,), 1),
        ((0.005,), 3),  # the regulation's own decimals, when more
        ((150.25,), 2),
        ((1e-5,), 3),  # at most 3
        ((6.0, 9.0), 2),  # a range: the finer of its bounds
        ((6.0, None), 2),
        ((), None),
        ((None, float("nan")), None),
    ],
)
def test_a_value_and_its_limit_share_the_limits_decimals(
    bounds: tuple[float | None, ...], digits: int | None
) -> None:
    assert limit_digits(*bounds) == digits


def test_fixed_decimals_keep_their_zeros() -> None:
    assert format_number(153.0, "vi", 1, fixed=True) == "153,0"
    assert format_number(1234.5, "en", 2, fixed=True) == "1,234.50"
    assert format_number(153.0, "vi", 1) == "153"
