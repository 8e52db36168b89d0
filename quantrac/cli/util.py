"""What several subcommands share: time arguments, who acts from the command line, and the
language their summaries and refusals are said in."""

from __future__ import annotations

import argparse
import getpass
from datetime import datetime

from quantrac.core.contract import parse_time
from quantrac.core.i18n import DEFAULT_LANGUAGE, LANGUAGES, format_time, zone_text


def time_arg(text: str) -> datetime:
    """An ISO-8601 time with its offset, for argparse ``type=``."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def cli_actor() -> str:
    """The actor recorded for a command-line change: ``cli:<login name>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def add_lang_arg(
    parser: argparse.ArgumentParser, help: str = "language of the summary and refusals (default vi)"
) -> None:
    """``--lang vi|en`` (default vi), the same for every subcommand that speaks to people."""
    parser.add_argument("--lang", choices=LANGUAGES, default=DEFAULT_LANGUAGE, help=help)


def period_texts(start: datetime, end: datetime, lang: str) -> dict[str, str]:
    """A summary's period: ``start``, ``end`` as dd/MM/yyyy HH:mm and the ``zone`` they are in."""
    return {"start": format_time(start), "end": format_time(end), "zone": zone_text(lang=lang)}
