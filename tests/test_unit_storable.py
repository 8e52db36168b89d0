"""Unit tests of quantrac.ingest.storable: text and integers made safe for PostgreSQL."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from quantrac.ingest.storable import (
    INT8_MAX,
    INT8_MIN,
    MAX_KEY,
    describe,
    fits_int8,
    plain_ascii,
    safe_repr,
    storable_key,
    storable_text,
)


def test_nul_is_escaped_visibly() -> None:
    assert storable_text("CO\x00D") == "CO\\x00D"


def test_lone_surrogates_from_undecodable_file_names_are_escaped() -> None:
    name = b"BacGiang_\xff_NT01.txt".decode("utf-8", "surrogateescape")
    assert storable_text(name) == "BacGiang_\\udcff_NT01.txt"


def test_length_is_bounded_even_after_escaping() -> None:
    assert storable_text("a" * 50, 10) == "a" * 10 + "…"
    assert len(storable_text("\x00" * 5000, 100)) <= 101
    assert len(storable_key("s" * 10_000) or "") == MAX_KEY + 1
    assert storable_key(None) is None


def test_ordinary_text_is_unchanged() -> None:
    text = "Trạm nước thải KCN Đình Trám: COD 61,5 mg/L\tµg/m³"
    assert storable_text(text) == text


@given(st.text())
def test_anything_becomes_encodable_without_nul(text: str) -> None:
    stored = storable_text(text)
    assert "\x00" not in stored
    stored.encode("utf-8")
    assert len(stored) <= 1001


@given(st.text())
def test_plain_ascii_is_ascii(text: str) -> None:
    assert plain_ascii(text, 50).isascii() or plain_ascii(text, 50).endswith("…")


def test_int8_range() -> None:
    assert fits_int8(INT8_MAX) and fits_int8(INT8_MIN)
    assert not fits_int8(INT8_MAX + 1) and not fits_int8(INT8_MIN - 1)


def test_describe_never_raises() -> None:
    assert describe("x") == "x"
    assert describe(12) == "12"
    assert describe(10**5000) == f"an integer of {(10**5000).bit_length()} bits"
    nested: list = []
    for _ in range(100_000):
        nested = [nested]
    assert "too deep" in safe_repr(nested)
