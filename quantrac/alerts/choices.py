"""The project's design choices: values quantrac decides with that no legal text sets.

Reports and the board list them, with where to change them, so nobody reads a configurable
choice as law: the completeness a window needs (no completeness rule found in Circular 10/2021),
which average of automatic data is compared with a limit (no clause found), the warning share
and the clearing ratio, and how a sector regulation without a row falls back to the general one.
Pure: the values come from the loaded configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from quantrac.alerts.config import EngineConfig
from quantrac.core.i18n import default_messages, translate
from quantrac.regulations.limits import decimal_comma
from quantrac.regulations.tables import RegulationCatalog

ALERTS_FILE = "config/alerts.yaml"
REGULATIONS_FOLDER = "config/regulations/*.yaml"


@dataclass(frozen=True, slots=True)
class DesignChoice:
    key: str  # "completeness"
    value: str  # "75 %"
    where: str  # "config/alerts.yaml: evaluation.min_completeness"

    def text(self, lang: str = "vi") -> str:
        return translate(f"choice.{self.key}", lang, value=self.value_text(lang), where=self.where)

    def value_text(self, lang: str = "vi") -> str:
        """The value as a reader of ``lang`` writes it: averaging codes in words ("1 giờ",
        "1-hour"), and in Vietnamese the decimal comma and "phút" (87,5 %, 45 phút)."""
        if self.key == "averaging":
            known = default_messages()
            codes = [c for c in self.value.split(", ") if c]
            return (
                ", ".join(
                    translate(f"averaging.{c}", lang) if f"averaging.{c}" in known else c
                    for c in codes
                )
                or self.value
            )
        if lang != "vi":
            return self.value
        return re.sub(r"(?<=\d) min\b", " phút", decimal_comma(self.value))

    def to_json(self) -> dict[str, str]:
        return {
            "key": self.key,
            "value": self.value,
            "where": self.where,
            "text_vi": self.text("vi"),
            "text_en": self.text("en"),
        }


def _percent(share: float) -> str:
    return f"{share * 100:g} %"


def design_choices(engine: EngineConfig, regulations: RegulationCatalog) -> list[DesignChoice]:
    averaging = sorted(
        {
            r.default_averaging
            for r in regulations.all()
            if r.kind != "air" and r.default_averaging is not None
        }
    )
    return [
        DesignChoice(
            "completeness",
            _percent(engine.min_completeness),
            f"{ALERTS_FILE}: evaluation.min_completeness",
        ),
        DesignChoice(
            "averaging", ", ".join(averaging) or "–", f"{REGULATIONS_FOLDER}: averaging.default"
        ),
        DesignChoice(
            "warning", _percent(engine.warning_share), f"{ALERTS_FILE}: evaluation.warning_share"
        ),
        DesignChoice(
            "clear", _percent(engine.clear_ratio), f"{ALERTS_FILE}: evaluation.clear_ratio"
        ),
        DesignChoice("sector_fallback", "", "quantrac/regulations/limits.py"),
    ]
