"""The regulation files through their pydantic models (quantrac.regulations.tables).

The shipped catalog loads to the same objects as the hand-written loader the models replaced
(a golden summary, written by that loader), and bad input gets one file:line: field message per
problem; a limit without a source is an error, never a number without provenance.

After a deliberate change of config/regulations, regenerate the summary with
``.venv/bin/python -m tests.test_unit_regulation_files`` and review its diff.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from quantrac.core.catalog import Catalog, load_catalog
from quantrac.core.registry import RegistryIssue
from quantrac.core.settings import default_config_dir
from quantrac.regulations.tables import (
    Regulation,
    RegulationCatalog,
    RegulationError,
    load_regulation_catalog,
    load_regulation_file,
    load_regulation_files,
    number_text,
)

FOLDER = default_config_dir() / "regulations"
GOLDEN = Path(__file__).parent / "data" / "regulation-catalog.golden.txt"
WW = "qcvn-40-2011-btnmt.yaml"
AIR = "qcvn-05-2023-btnmt.yaml"
PENALTIES = "nd-45-2022-penalty-bands.yaml"


def _digest(obj: Any) -> str:
    """Every field of a loaded object (texts, coefficients, provenance …) but its file path."""
    data = dataclasses.asdict(obj)
    data.pop("path", None)
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=_plain)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _plain(value: Any) -> Any:
    """Sets in a fixed order (a frozenset's own order changes with every interpreter)."""
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)  # dates


def summary(catalog: Any) -> list[str]:
    """One line per regulation and penalty schedule (with a digest of all its fields), one per
    limit row and penalty band: what a reviewer reads in the diff after a data change."""
    lines: list[str] = []
    for reg in catalog.all():
        lines.append(
            f"{reg.id} | {reg.kind} | {reg.effective_from}..{reg.effective_to} | columns "
            f"{','.join(reg.columns) or '-'} | {reg.numbers()} | {len(reg.limits)} limits, "
            f"{reg.unverified_count()} unverified | coefficients "
            f"{','.join(c.name for c in reg.coefficients) or '-'} | categories "
            f"{','.join(reg.categories) or '-'} | digest {_digest(reg)}"
        )
        for row in reg.limits:
            lines.append(
                f"  {row.param} {row.unit} {row.averaging} {row.column or '-'} "
                f"min {number_text(row.minimum)} max {number_text(row.maximum)} "
                f"{row.valid_from or ''}..{row.valid_to or ''} {row.category or '-'} "
                f"{row.flow_band or '-'} [{row.provenance.confidence}] line {row.line}"
            )
    for schedule in catalog.penalties:
        lines.append(f"{schedule.id} | {schedule.effective_from} | digest {_digest(schedule)}")
        for kind, bands in schedule.bands.items():
            for band in bands:
                confidence = band.provenance.confidence if band.provenance else "?"
                lines.append(
                    f"  {kind} {band.label} {band.article} {band.clause or 'not verified'} "
                    f"[{confidence}] {len(band.fine_tiers)} fine tiers"
                )
    return lines


@pytest.fixture(scope="module")
def regulations(catalog: Catalog) -> RegulationCatalog:
    return load_regulation_catalog(FOLDER, catalog)


def test_shipped_catalog_is_the_golden_one(regulations: RegulationCatalog) -> None:
    assert summary(regulations) == GOLDEN.read_text(encoding="utf-8").splitlines()


# --- bad input: file:line: field ---------------------------------------------------------------


def issues(path: Path, catalog: Catalog) -> list[RegistryIssue]:
    with pytest.raises(RegulationError) as info:
        load_regulation_file(path, catalog)
    return info.value.issues


def mutated(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, str]:
    text = (FOLDER / name).read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path, text


def line_of(text: str, snippet: str) -> int:
    (index,) = [i for i, line in enumerate(text.splitlines(), 1) if snippet in line]
    return index


def found(path: Path, catalog: Catalog) -> list[tuple[int, str, str]]:
    return [(i.line, i.field, i.message) for i in issues(path, catalog)]


TN_ROW = '{param: TN, unit: "mg/L", max: {A: 20, B: 40}, provenance: main}'


def test_a_limit_without_provenance_is_not_loaded(tmp_path: Path, catalog: Catalog) -> None:
    path, text = mutated(tmp_path, WW, TN_ROW, '{param: TN, unit: "mg/L", max: {A: 20, B: 40}}')
    assert found(path, catalog) == [
        (
            line_of(text, "param: TN"),
            "limits[23].provenance",
            "provenance is required: {source, confidence, note} or a source name",
        )
    ]
    path, text = mutated(tmp_path, WW, TN_ROW, TN_ROW.replace("main}", "null}"))
    assert found(path, catalog)[0][1:] == (
        "limits[23].provenance",
        "provenance is required: {source, confidence, note} or a source name",
    )


def test_a_limit_naming_a_source_that_is_not_there(tmp_path: Path, catalog: Catalog) -> None:
    path, text = mutated(tmp_path, WW, TN_ROW, TN_ROW.replace("main}", "memory}"))
    assert found(path, catalog) == [
        (line_of(text, "param: TN"), "limits[23].provenance", "no entry 'memory' in 'sources'")
    ]
    path, text = mutated(
        tmp_path, WW, TN_ROW, TN_ROW.replace("main}", "{source: memory, confidence: sure}}")
    )
    ((line, field, message),) = found(path, catalog)
    assert (line, field) == (line_of(text, "param: TN"), "limits[23].provenance.confidence")
    assert message.startswith("must be a confidence tag of regulations.md") and "'sure'" in message


def test_a_source_without_its_text(tmp_path: Path, catalog: Catalog) -> None:
    """The entry is reported once, at its place, not again at every limit that names it."""
    path, text = mutated(
        tmp_path,
        WW,
        '    source: "regulations.md §3a (Kq, Kf tables); §6 (defaults without flow data)"\n',
        "",
    )
    assert found(path, catalog) == [
        (line_of(text, "  kq_kf:"), "sources.kq_kf.source", "'source' is required")
    ]


def test_bad_effective_dates(tmp_path: Path, catalog: Catalog) -> None:
    date_line = "effective_from: 2012-02-15"
    path, text = mutated(tmp_path, WW, date_line, 'effective_from: "2012-02-30"')
    assert found(path, catalog) == [
        (
            line_of(text, "effective_from"),
            "effective_from",
            "must be a date such as 2026-01-01, not '2012-02-30'",
        )
    ]
    # Unquoted, YAML itself reads it as a date that does not exist: an error, not a crash.
    path, text = mutated(tmp_path, WW, date_line, "effective_from: 2012-02-30")
    ((line, field, message),) = found(path, catalog)
    assert (line, field) == (line_of(text, "effective_from"), "(yaml)")
    assert "'2012-02-30' is not a valid value" in message
    path, text = mutated(tmp_path, WW, date_line, "effective_from: 2033-01-01")
    assert found(path, catalog) == [
        (
            text.splitlines().index("effective_to: 2032-01-01") + 1,
            "effective_to",
            "must be after effective_from",
        )
    ]


def test_unknown_column_and_missing_column(tmp_path: Path, catalog: Catalog) -> None:
    path, text = mutated(tmp_path, WW, "max: {A: 75, B: 150}", "max: {A: 75, B: 150, C: 100}")
    line = line_of(text, "C: 100")
    assert found(path, catalog) == [(line, "limits[4].max.C", "no column 'C' (columns: A, B)")]
    path, text = mutated(tmp_path, WW, "max: {A: 75, B: 150}", "max: 75")
    assert found(path, catalog) == [
        (line, "limits[4].max", "must give a value per column: {A: …, B: …}")
    ]
    path, text = mutated(tmp_path, AIR, "columns: {}", "columns: {A: {vi: Vùng A, en: Zone A}}")
    assert (line_of(text, '"PM2,5", unit: "µg/m3", averaging: year'), "limits[17].max") in {
        (i.line, i.field) for i in issues(path, catalog)
    }


def test_duplicate_parameter_row(tmp_path: Path, catalog: Catalog) -> None:
    row = '  - {param: COD, unit: "mg/L", max: {A: 75, B: 150}, provenance: main}\n'
    path, text = mutated(tmp_path, WW, row, row + row.replace("75", "70"))
    first, second = [i for i, line in enumerate(text.splitlines(), 1) if "param: COD" in line]
    assert found(path, catalog) == [
        (
            second,
            "limits[5]",
            f"COD 1h: dates overlap limits[4] (line {first}); give valid_from/valid_to that do "
            "not overlap",
        )
    ]


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        (
            "max: {A: 75, B: 150}",
            'max: {A: 75, B: "150"}',
            "limits[4].max.B",
            "must be a number, not '150'",
        ),
        (
            "max: {A: 75, B: 150}",
            "max: {A: 75, B: .nan}",
            "limits[4].max.B",
            "must be a number, not nan",
        ),
        (
            "max: {A: 75, B: 150}",
            "max: {A: 75, B: true}",
            "limits[4].max.B",
            "must be a number, not True",
        ),
        (
            "kind: wastewater",
            "kind: water",
            "kind",
            "must be one of wastewater, emission, air, not 'water'",
        ),
        ('id: "QCVN 40:2011/BTNMT"', "id: 40", "id", "must be a non-empty string"),
        (
            '    en: "Discharge into other receiving waters"',
            "    en: [x]",
            "columns.B.en",
            "must be a non-empty string",
        ),
        (
            "averaging:\n  default: 1h\n  provenance: averaging\n",
            "averaging: [1h]\n",
            "averaging",
            "must be a mapping",
        ),
        (
            "o2_reference_percent: null",
            'o2_reference_percent: "6"',
            "o2_reference_percent",
            "must be a number, not '6'",
        ),
        (
            '{param: COD, unit: "mg/L"',
            '{param: 5, unit: "mg/L"',
            "limits[4].param",
            "must be a parameter code string, not 5 (quote it)",
        ),
        (
            "{over: 500, up_to: 5000, value: 1.0}",
            "{over: 500, up_to: 5000, value: -1}",
            "coefficients.Kf.bands[2].value",
            "must be at least 0",
        ),
        ("default: 1h", "default: 2h", "averaging.default", "must be one of 1h, 8h, 24h, year"),
    ],
)
def test_wrong_types(
    tmp_path: Path, catalog: Catalog, old: str, new: str, field: str, message: str
) -> None:
    path, text = mutated(tmp_path, WW, old, new)
    ((line, got_field, got_message),) = found(path, catalog)
    assert (got_field, got_message) == (field, message)
    assert line == line_of(text, new.strip().splitlines()[0])


def test_unknown_fields_name_what_is_expected(tmp_path: Path, catalog: Catalog) -> None:
    path, text = mutated(tmp_path, WW, "  dates:\n", "  dates:\n    year: 2011\n")
    assert found(path, catalog) == [
        (
            line_of(text, "year: 2011"),
            "sources.dates.year",
            "unknown field (expected one of confidence, note, source)",
        )
    ]
    path, text = mutated(tmp_path, PENALTIES, '    article: "Điều 18"\n', "    artikel: 18\n")
    assert found(path, catalog) == [
        (line_of(text, "kinds:") + 1, "kinds.wastewater.article", "'article' is required"),
        (
            line_of(text, "artikel"),
            "kinds.wastewater.artikel",
            "unknown field (expected one of article, bands)",
        ),
    ]


def test_no_table_must_say_why(tmp_path: Path, catalog: Catalog) -> None:
    """A regulation whose numbers were not obtained has no row and says so: never a number."""
    start = (FOLDER / WW).read_text(encoding="utf-8").index("limits:")
    text = (FOLDER / WW).read_text(encoding="utf-8")[:start]
    path = tmp_path / WW
    path.write_text(text, encoding="utf-8")
    assert found(path, catalog) == [
        (
            1,
            "limits",
            "'limits' is required: a non-empty list of limits (or [] with 'limits_missing' "
            "saying why)",
        )
    ]
    path.write_text(text + "limits: []\n", encoding="utf-8")
    assert found(path, catalog)[0][1:] == (
        "limits",
        "must be a non-empty list of limits (or [] with 'limits_missing' saying why)",
    )
    path.write_text(
        text + "limits: []\nlimits_missing: {vi: chưa có bảng, en: table not obtained}\n",
        encoding="utf-8",
    )
    reg = load_regulation_file(path, catalog)
    assert isinstance(reg, Regulation) and reg.limits == () and reg.numbers() == "missing"
    assert reg.missing_text("en") == "table not obtained"


def test_a_supplement_may_not_redefine_a_category(tmp_path: Path, catalog: Catalog) -> None:
    supplement = tmp_path / "x.yaml"
    supplement.write_text(
        'format: quantrac-regulation/1\nextends: "QCVN 19:2024/BTNMT"\n'
        'provenance: {source: "thử", confidence: M}\n'
        "categories:\n"
        '  gas_turbine_le_300mw: {vi: "Tua bin", en: "Turbines", o2_reference_percent: 15}\n'
        "limits:\n"
        '  - {param: CO, unit: "mg/Nm3", category: gas_turbine_le_300mw, max: {A: 1, B: 2, C: 3},'
        ' valid_from: 2040-01-01, provenance: {source: "thử", confidence: M}}\n',
        encoding="utf-8",
    )
    with pytest.raises(RegulationError) as info:
        load_regulation_files([*FOLDER.glob("*.yaml"), supplement], catalog)
    ((line, field, message),) = [(i.line, i.field, i.message) for i in info.value.issues]
    assert (line, field) == (5, "categories.gas_turbine_le_300mw")
    assert message.startswith("category 'gas_turbine_le_300mw' is already in ")


if __name__ == "__main__":
    regs = load_regulation_catalog(FOLDER, load_catalog(default_config_dir() / "parameters.yaml"))
    GOLDEN.write_text("\n".join(summary(regs)) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
