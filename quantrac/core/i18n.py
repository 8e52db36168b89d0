"""The one translation table for user-facing text (Vietnamese first, English second).

Entries live as data in ``config/messages/*.yaml``, one file per area (alerts, check, board …),
all merged into one table: ``key: {vi: "…", en: "…"}`` with ``{name}`` placeholders. A key
missing a language, or defined twice, is an error at load time rather than a blank on a screen.
"""

from __future__ import annotations

import functools
import math
from datetime import datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Context, Decimal
from pathlib import Path
from typing import Any

from quantrac.core.config_files import (
    ConfigError,
    ConfigIssue,
    ConfigModel,
    read_yaml_file,
    validate,
)
from quantrac.core.settings import default_config_dir
from quantrac.core.time import VIETNAM

LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"


class TranslationError(ConfigError):
    pass


class _Entry(ConfigModel):
    vi: str
    en: str


def load_messages(folder: Path) -> dict[str, dict[str, str]]:
    """Every file of ``folder`` merged into one table; a problem is ``file:line: key: message``
    (a key without both texts, a key given twice in a file or in two files)."""
    table: dict[str, dict[str, str]] = {}
    origin: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")):
        source = str(path)
        data, lines = read_yaml_file(path, error=TranslationError)
        if not isinstance(data, dict):
            raise TranslationError.at(source, lines, "(file)", "expected keys, each {vi, en}")
        issues: list[ConfigIssue] = []
        for key, raw in data.items():
            if not isinstance(key, str):
                issues.append(
                    ConfigIssue(source, lines.get(str(key), 1), str(key), "a key is text")
                )
                continue
            try:
                entry = validate(_Entry, raw, source, lines, TranslationError, prefix=key)
            except TranslationError as exc:
                issues.extend(exc.issues)
                continue
            if key in table:
                issues.append(
                    ConfigIssue(source, lines[key], key, f"also defined in {origin[key]}")
                )
                continue
            table[key] = {"vi": entry.vi, "en": entry.en}
            origin[key] = path.name
        if issues:
            raise TranslationError(issues)
    return table


@functools.cache
def default_messages() -> dict[str, dict[str, str]]:
    return load_messages(default_config_dir() / "messages")


def translate(key: str, lang: str = DEFAULT_LANGUAGE, /, **params: Any) -> str:
    """The text for ``key`` in ``lang`` (falling back to Vietnamese), placeholders filled in.

    An unknown key raises KeyError: tests catch a typo instead of users seeing a raw key.
    """
    entry = default_messages()[key]
    text = entry.get(lang) or entry[DEFAULT_LANGUAGE]
    if not params:
        return text
    said = {k: v.text(lang) if isinstance(v, Phrase) else v for k, v in params.items()}
    return text.format(**said)


class Phrase:
    """A text of the table placed inside another (a role's name inside a refusal), so the
    whole sentence is said in one language."""

    def __init__(self, key: str, /, **params: Any):
        translate(key, DEFAULT_LANGUAGE, **params)  # an unknown key fails here, not in a reply
        self.key = key
        self.params = params

    def text(self, lang: str) -> str:
        return translate(self.key, lang, **self.params)

    def __repr__(self) -> str:
        return f"Phrase({self.key!r})"


def translate_ack(problem: Any, lang: str) -> str:
    """A rejection as a station is told it (config/messages/ack.yaml), falling back to the
    problem's own English detail when the rule has no text or a fact is missing."""
    # A rule may say it differently for a file (``ack.<rule>.file``) than for a message.
    messages = default_messages()
    entry = messages.get(f"ack.{problem.reason.value}.{problem.field}") or messages.get(
        f"ack.{problem.reason.value}"
    )
    if entry is None:
        return str(problem.detail)
    params = {"field": problem.field, "value": problem.value, **problem.params}
    try:
        text = (entry.get(lang) or entry[DEFAULT_LANGUAGE]).format(**params)
    except (KeyError, IndexError):
        return str(problem.detail)
    hint = problem.params.get("clock_hint")
    if hint:
        text += " " + translate(f"ack.clock.{hint}", lang)
    return text


class TranslatedError(ValueError):
    """A refusal whose text is in the table: ``str()`` is the English text (logs, scripts),
    ``key`` and ``params`` let a caller say it in the reader's language."""

    def __init__(self, key: str, /, **params: Any):
        self.key = key
        self.params = params
        super().__init__(translate(key, "en", **params))

    def text(self, lang: str) -> str:
        return translate(self.key, lang, **self.params)


def pick_language(query: str | None, accept_language: str | None) -> str:
    """The language a request asks for: ``?lang=vi|en`` first, then the best of vi and en in
    ``Accept-Language`` (by q-value, then order), else Vietnamese. Anything unknown is ignored."""
    if query in LANGUAGES:
        return query
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for part in (accept_language or "")[:512].split(","):
        tag, _, rest = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        if lang not in LANGUAGES:
            continue
        q = 1.0
        for param in rest.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > best_q:
            best, best_q = lang, q
    return best


_VI_DIGITS = str.maketrans({",": ".", ".": ","})
_EXACT = Context(prec=400)  # room for every digit of the largest float and its decimals


def format_number(
    value: float, lang: str = DEFAULT_LANGUAGE, /, digits: int = 3, *, fixed: bool = False
) -> str:
    """A number for people: Vietnamese ``1.234,5`` (decimal comma, a dot between thousands),
    English ``1,234.5``; at most ``digits`` decimals, trailing zeros dropped (``fixed``: exactly
    ``digits``, so numbers read side by side alike). Not finite: as Python says it.

    Rounded as the board's ``Intl.NumberFormat`` (ICU) rounds, so a report and the board never
    differ by a last digit: the number as it is written (its shortest form, 1.005 and not the
    float's 1.00499…), a tie away from zero (2,5 → 3 and 1,005 → 1,01, where Python's own
    formatting gives 2 and 1,00)."""
    if not math.isfinite(value):
        return str(value)
    step = Decimal(1).scaleb(-digits)
    exact = Decimal(repr(value)).quantize(step, rounding=ROUND_HALF_UP, context=_EXACT)
    text = f"{abs(exact) if exact.is_zero() else exact:,f}"  # no "-0"
    if "." in text and not fixed:
        text = text.rstrip("0").rstrip(".")
    return text.translate(_VI_DIGITS) if lang == "vi" else text


def limit_digits(*bounds: float | None) -> int | None:
    """The decimals a value and the limit it is compared with share ("153,0" beside "75,0",
    not "153" beside "75,0"): the limit's own decimals as the regulation writes it or, if more,
    the precision its size needs (3 significant figures), at most 3; None without a limit. The
    board's ``limitDigits`` (quantrac/board/board.js) is the same rule."""
    digits = []
    for bound in bounds:
        if bound is None or isinstance(bound, bool) or not math.isfinite(bound):
            continue
        written = repr(float(bound))
        own = 3 if "e" in written else len(written.partition(".")[2].rstrip("0"))
        size = abs(bound)
        digits.append(min(3, max(own, 0 if size >= 100 else 1 if size >= 10 else 2)))
    return max(digits) if digits else None


def format_time(moment: datetime, tz: tzinfo = VIETNAM, *, seconds: bool = False) -> str:
    """A time for people, as written in Vietnam in both languages: ``01/03/2025 14:00``
    (dd/MM/yyyy HH:mm; ``seconds``: HH:mm:ss, for a vendor setting a clock) on the clock of
    ``tz``, Vietnam's unless told. Say the zone once nearby with :func:`zone_text`."""
    return moment.astimezone(tz).strftime("%d/%m/%Y %H:%M:%S" if seconds else "%d/%m/%Y %H:%M")


def zone_text(tz: tzinfo = VIETNAM, lang: str = DEFAULT_LANGUAGE) -> str:
    """The zone :func:`format_time` wrote in: "giờ Việt Nam, UTC+07:00" / "Vietnam time,
    UTC+07:00", any other zone by its offset ("UTC+00:00")."""
    offset = datetime(2000, 1, 1, tzinfo=tz).utcoffset() or timedelta(0)
    if offset == timedelta(hours=7):
        return translate("time.zone.vietnam", lang)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
