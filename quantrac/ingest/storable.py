"""What PostgreSQL can store, for anything that came from a payload. Pure, no I/O.

A station controls the bytes of its payloads, and so the text of every rejection stored about
them (value, detail, excerpt, the station it claims, a file's name). PostgreSQL ``text`` cannot
hold U+0000, UTF-8 cannot carry a lone surrogate (Python's stand-in for undecodable bytes in a
file name), and an indexed column refuses very long values. One such value makes the whole batch
fail, so every text written from a payload passes through ``storable_text`` first: the offending
code points are escaped visibly (``\\x00``, ``\\udc80``) and the length is bounded.

Integers are checked the same way: a ``seq`` that does not fit ``bigint`` is refused at parse
time with a reason (``INT8_MIN``/``INT8_MAX``), never sent to the database.
"""

from __future__ import annotations

INT8_MIN = -(2**63)
INT8_MAX = 2**63 - 1

# Enough for any detail the validator writes; the payload excerpt is shorter already.
MAX_TEXT = 1000
# Stations, topics and file names go into indexed columns (a B-tree entry must stay < 2.7 kB).
MAX_KEY = 256

_TRUNCATED = "…"


def fits_int8(value: int) -> bool:
    return INT8_MIN <= value <= INT8_MAX


def storable_text(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` as PostgreSQL can store it: NUL and lone surrogates escaped, at most ``limit``
    characters (plus the ellipsis marking a cut)."""
    if len(text) > limit:
        text = text[:limit] + _TRUNCATED
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit + len(_TRUNCATED):  # the escapes made it longer
        text = text[:limit] + _TRUNCATED
    return text


def storable_key(text: str | None) -> str | None:
    """A station id, topic or file name as stored: storable and short enough for an index."""
    return None if text is None else storable_text(text, MAX_KEY)


def plain_ascii(text: str, limit: int) -> str:
    """The most conservative form of a text, for the last attempt to store a rejection."""
    return storable_text(ascii(text)[1:-1], limit)


def safe_repr(value: object) -> str:
    """repr() of a payload's value, even one it refuses: an integer of more than 4300 digits
    (ValueError) or a structure nested deeper than the interpreter's recursion limit."""
    try:
        return repr(value)
    except (ValueError, RecursionError):
        if isinstance(value, int):
            return f"an integer of {value.bit_length()} bits"
        return f"a {type(value).__name__} too deep or too long to show"


def describe(value: object) -> str:
    """A payload's value as text for a rejection: a string as it is, anything else its repr."""
    return value if isinstance(value, str) else safe_repr(value)
