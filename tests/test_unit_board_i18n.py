"""Every text key the board uses exists in the translation table, in Vietnamese and English.

The board (quantrac/board/) has no build step, so its keys are found by reading the files: literal
``t('key')`` calls, ``data-i18n*="key"`` attributes, quoted keys in tables (``'alert.detail.x'``),
and the keys built from a prefix and a known list (``t(`alert.kind.${kind}`)``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from quantrac.alerts.maintenance import LOG_KINDS
from quantrac.alerts.model import EventType, Kind, Severity, State
from quantrac.api.users import ROLES
from quantrac.core.config_files import load_yaml_with_lines
from quantrac.core.i18n import LANGUAGES, TranslationError, default_messages, load_messages
from quantrac.core.settings import default_config_dir

BOARD = Path(__file__).resolve().parent.parent / "quantrac" / "board"
JS = (BOARD / "board.js").read_text(encoding="utf-8")
HTML = (BOARD / "index.html").read_text(encoding="utf-8")

KEY = r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+"
PREFIXES = ("board.", "alert.", "aqi.", "kind.", "status.")


def literal_keys() -> set[str]:
    keys = set(re.findall(rf"""\bt\(\s*['"]({KEY})['"]""", JS))
    keys |= set(re.findall(rf'data-i18n(?:-[a-z-]+)?="({KEY})"', HTML))
    keys |= {k for k in re.findall(rf"'({KEY})'", JS) if k.startswith(PREFIXES)}
    return keys


def js_list(name: str) -> list[str]:
    match = re.search(rf"export const {name} = \[(.*?)\];", JS, re.S)
    assert match, f"board.js: no list {name}"
    return re.findall(r"'([a-z_]+)'", match.group(1))


def js_mapping(name: str) -> dict[str, str]:
    match = re.search(rf"export const {name} = \{{(.*?)\}};", JS, re.S)
    assert match, f"board.js: no mapping {name}"
    return dict(re.findall(r"([a-z_]+): '([^']*)'", match.group(1)))


# Keys the board builds from a prefix (t(`alert.kind.${kind}`)): every member must exist.
FAMILIES = {
    "alert.kind.{}": [k.value for k in Kind],
    "alert.severity.{}": [s.value for s in Severity],
    "alert.state.{}": [s.value for s in State],
    "alert.event.{}": [e.value for e in EventType],
    "board.status.{}": js_list("STATION_STATUSES"),
    "board.role.{}": list(ROLES),
    "board.stream.{}": ["connecting", "live", "reconnecting"],
    "board.level.{}": ["ok", "near", "over"],
    "board.limit_source.{}": ["regulation", "permit"],
    "board.act.{}": ["acknowledge", "resolve"],
    "board.act.{}_title": ["acknowledge", "resolve", "assign"],
    "board.chart.title_{}": ["24h", "7d"],
    "board.chart.span_{}": ["24h", "7d"],
    "aqi.category.{}": list(js_mapping("AQI_COLOURS")),
    "kind.{}": ["air", "wastewater", "emission"],
    "status.{}": ["00", "01", "02", "holdoff"],
    "board.trouble.{}": js_list("TROUBLE_TIERS"),
    "board.reports.kind_{}": ["exceedances", "completeness", "indicators"],
    "averaging.{}": ["1h", "8h", "24h", "year"],
    "api.error.{}": [
        key.removeprefix("api.error.") for key in default_messages() if key.startswith("api.error.")
    ],
    "aqi.publishable.{}": ["yes", "no", "unknown"],
    "report.log.{}": list(LOG_KINDS),
}


def built_keys() -> set[str]:
    return {pattern.format(v) for pattern, values in FAMILIES.items() for v in values}


def test_the_keys_are_found_in_the_files() -> None:
    keys = literal_keys()
    assert len(keys) > 100
    assert {"board.login.title", "board.nav.alerts", "alert.detail.multiple"} <= keys


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_key_the_board_uses_is_translated(lang: str) -> None:
    table = default_messages()
    used = literal_keys() | built_keys()
    missing = sorted(k for k in used if not table.get(k, {}).get(lang, "").strip())
    assert missing == [], f"missing {lang} texts: {missing}"


def test_every_key_the_board_builds_belongs_to_a_known_family() -> None:
    # A new t(`prefix.${x}`) in board.js needs its family in FAMILIES above.
    prefixes = set(re.findall(r"t\(`([a-z0-9_.]+)\$\{", JS))
    assert prefixes, "the pattern no longer finds t(`prefix.${x}`) calls"
    known = {pattern.split("{}")[0] for pattern in FAMILIES}
    assert prefixes <= known, sorted(prefixes - known)


def test_the_trouble_tiers_match_the_api() -> None:
    from quantrac.api.routes import TROUBLE_ORDER, TROUBLE_TIERS

    assert js_list("TROUBLE_TIERS") == list(TROUBLE_ORDER)
    assert set(TROUBLE_TIERS) == {k.value for k in Kind}


def test_the_board_lists_match_the_alert_model_and_the_aqi_colours() -> None:
    assert js_list("KINDS") == [k.value for k in Kind]
    assert js_list("SEVERITIES") == [s.value for s in Severity]
    assert js_list("STATES") == [s.value for s in State]
    assert js_list("ROLES") == list(ROLES)
    aqi = (default_config_dir() / "aqi" / "vn_aqi_1459.yaml").read_text(encoding="utf-8")
    colours = dict(re.findall(r'- key: (\w+)\n(?:.*\n)*?\s+hex: "(#[0-9A-Fa-f]{6})"', aqi))
    assert len(colours) == 6
    assert js_mapping("AQI_COLOURS") == colours


def test_board_yaml_holds_only_board_keys_and_each_is_used() -> None:
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(default_config_dir() / "messages" / "board.yaml", folder)
        board = load_messages(Path(folder))  # both languages, or it raises
    assert board and all(key.startswith("board.") for key in board)
    unused = sorted(set(board) - literal_keys() - built_keys())
    assert unused == [], f"board.yaml keys the board does not use: {unused}"


def test_every_api_error_code_has_a_text_for_people() -> None:
    root = BOARD.parent
    codes = set()
    for path in root.rglob("*.py"):
        text = path.read_text("utf-8")
        codes |= set(re.findall(r'ApiError\(\s*\d+,\s*"([a-z_]+)"', text))
        codes |= set(
            re.findall(r'(?:_error|error_body)\(\s*(?:scope,\s*)?(?:\d+,\s*)?"([a-z_]+)"', text)
        )
        codes |= set(re.findall(r'ApiError\(\s*\d+,\s*\n?\s*"([a-z_]+)"', text))
    assert {"not_found", "forbidden", "note_required"} <= codes
    table = default_messages()
    missing = sorted(c for c in codes if f"api.error.{c}" not in table)
    assert missing == [], (
        f"API error codes without a translation (config/messages/api.yaml): {missing}"
    )


# Old-style tone placement on an open syllable (hoà, toạ, huỷ); the project writes the style of
# Vietnamese administrative texts (hòa, tọa, hủy). "quý", "quá" are the same in both.
OLD_STYLE = re.compile(r"(?<![qQ])[oOuU][àáảãạèéẻẽẹỳýỷỹỵ](?![a-zà-ỹđ])", re.IGNORECASE)


def test_one_accent_convention_throughout() -> None:
    root = BOARD.parent.parent
    texts = {
        f"messages {key} ({lang})": value
        for key, entry in default_messages().items()
        for lang, value in entry.items()
        if lang == "vi"
    }
    texts["quantrac/board/index.html"] = HTML
    # Every document: the bilingual ones (docs/evidence.md …) carry their Vietnamese part too.
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        texts[str(doc.relative_to(root))] = doc.read_text(encoding="utf-8")
    found = {where: OLD_STYLE.findall(text) for where, text in texts.items()}
    assert {where: hits for where, hits in found.items() if hits} == {}


def test_a_key_given_twice_in_one_file_is_an_error(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys silently; the table refuses the file instead,
    so a second entry cannot replace a reviewed text unseen."""
    (tmp_path / "a.yaml").write_text(
        'x.one: {vi: "một", en: "one"}\nx.two: {vi: "hai", en: "two"}\n'
        'x.one: {vi: "mot", en: "one"}\n',
        encoding="utf-8",
    )
    with pytest.raises(
        TranslationError,
        match=r"a\.yaml:3: \(yaml\): invalid YAML: key 'x\.one' is defined twice \(lines 1 and 3\)",
    ):
        load_messages(tmp_path)


def test_every_problem_of_a_message_file_names_its_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        'x.one: {vi: "một"}\nx.two: {vi: "hai", en: 2, fr: "x"}\nx.three: text\n',
        encoding="utf-8",
    )
    with pytest.raises(TranslationError) as caught:
        load_messages(tmp_path)
    assert [str(issue).split("a.yaml:", 1)[1] for issue in caught.value.issues] == [
        "1: x.one.en: required field missing",
        "2: x.two.en: input should be a valid string",
        "2: x.two.fr: unknown field (expected one of en, vi)",
        "3: x.three: must be a mapping",
    ]


def test_a_key_in_two_files_names_both(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text('x: {vi: "một", en: "one"}\n', encoding="utf-8")
    (tmp_path / "b.yaml").write_text(
        'y: {vi: "hai", en: "two"}\nx: {vi: "một", en: "one"}\n', encoding="utf-8"
    )
    with pytest.raises(TranslationError, match=r"b\.yaml:2: x: also defined in a\.yaml"):
        load_messages(tmp_path)


def test_a_key_given_twice_in_any_configuration_file_is_an_error() -> None:
    with pytest.raises(yaml.YAMLError, match=r"key 'code' is defined twice \(lines 1 and 3\)"):
        load_yaml_with_lines("code: A\nname: x\ncode: B\n")


def test_the_shipped_table_has_no_key_twice() -> None:
    assert load_messages(default_config_dir() / "messages")  # raises on a key given twice
