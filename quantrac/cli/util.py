"""What several subcommands share: time arguments and who acts from the command line."""

from __future__ import annotations

import argparse
import getpass
from datetime import datetime

from quantrac.core.contract import parse_time


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
