"""Unit tests of quantrac.core.config_files: YAML lines, pydantic errors as file:line: field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
import yaml
from pydantic import Field, field_validator, model_validator

from quantrac.core import config_files
from quantrac.core.config_files import (
    ConfigError,
    ConfigIssue,
    ConfigModel,
    FieldError,
    field_path,
    load_yaml_with_lines,
    nearest_line,
    read_yaml_file,
    validate,
)


class _Item(ConfigModel):
    name: str
    size: int = Field(ge=0)
    mode: Literal["a", "b"] = "a"


class _Doc(ConfigModel):
    items: list[_Item]
    labels: dict[str, str] = Field(default_factory=dict)
    level: int | None = None


TEXT = """\
items:
  - name: one
    size: 3
  - name: two
    size: -1
    mode: c
    extra: 1
labels: {x: y}
level: high
"""


def test_lines_of_every_path() -> None:
    data, lines = load_yaml_with_lines(TEXT)
    assert data["items"][1]["size"] == -1
    assert lines["items"] == 1
    assert lines["items[1]"] == 4
    assert lines["items[1].size"] == 5
    assert lines["labels.x"] == 8
    assert nearest_line(lines, "items[1].missing") == 4
    assert nearest_line(lines, "nowhere.deep[3]") == 1
    assert load_yaml_with_lines("") == (None, {})


def test_every_problem_at_once_in_file_line_field_form() -> None:
    data, lines = load_yaml_with_lines(TEXT)
    with pytest.raises(ConfigError) as info:
        validate(_Doc, data, "f.yaml", lines)
    assert [str(i) for i in info.value.issues] == [
        "f.yaml:5: items[1].size: input should be greater than or equal to 0",
        "f.yaml:6: items[1].mode: input should be 'a' or 'b'",
        "f.yaml:7: items[1].extra: unknown field (expected one of mode, name, size)",
        "f.yaml:9: level: input should be a valid integer",
    ]
    assert isinstance(info.value, ValueError)


def test_missing_field_points_at_its_parent_and_prefix_is_kept() -> None:
    data, lines = load_yaml_with_lines("outer:\n  items:\n    - size: 1\n")
    with pytest.raises(ConfigError) as info:
        validate(_Doc, data["outer"], "f.yaml", lines, prefix="outer")
    assert [str(i) for i in info.value.issues] == [
        "f.yaml:3: outer.items[0].name: required field missing"
    ]


def test_strict_types_and_bad_keys() -> None:
    with pytest.raises(ConfigError) as info:
        validate(_Doc, {"items": [{"name": 5, "size": "3"}], "labels": {1: "a"}}, "<t>")
    messages = [str(i) for i in info.value.issues]
    assert messages[0] == "<t>:1: items[0].name: input should be a valid string"
    assert messages[1] == "<t>:1: items[0].size: input should be a valid integer"
    assert messages[2].startswith("<t>:1: labels.1: key 1: input should be a valid string")


def test_values_are_never_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        validate(_Doc, {"items": [{"name": "n", "size": "hunter2-secret"}]}, "<t>")
    assert "hunter2" not in str(info.value)


def test_subclass_and_plain_message() -> None:
    class LoaderError(ConfigError):
        pass

    err = LoaderError.at("f.yaml", {"a.b": 4}, "a.b.c", "bad")
    assert str(err) == "f.yaml:4: a.b.c: bad"
    assert err.issues == [ConfigIssue("f.yaml", 4, "a.b.c", "bad")]
    assert str(LoaderError("free text")) == "free text"
    with pytest.raises(LoaderError):
        validate(_Doc, {}, "<t>", error=LoaderError)


def test_field_path_drops_pydantic_tags() -> None:
    data = {"a": [{"b": 1}]}
    assert field_path(data, ("a", 0, "function-after[x]", "b")) == ("a[0].b", "")
    assert field_path(data, ("a", 0, "c")) == ("a[0].c", "")


def test_read_yaml_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\nb: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"x.yaml:3: \(yaml\): invalid YAML"):
        read_yaml_file(path)
    with pytest.raises(ConfigError, match=r"cannot read the file"):
        read_yaml_file(tmp_path / "none.yaml")
    path.write_text("a: 1\n", encoding="utf-8")
    assert read_yaml_file(path) == ({"a": 1}, {"": 1, "a": 1})


def test_a_value_yaml_cannot_build_is_an_error_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\nday: 2025-02-30\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"x.yaml:2: \(yaml\): invalid YAML: '2025-02-30'"):
        read_yaml_file(path)


class _Band(ConfigModel):
    over: int | None = None


class _Bands(ConfigModel):
    bands: list[_Band]
    cases: dict[str, _Band] = Field(default_factory=dict)

    @field_validator("bands")
    @classmethod
    def _first_open(cls, bands: list[_Band]) -> list[_Band]:
        if bands and bands[0].over is not None:
            raise FieldError("[0].over", "the first band must be open below")
        return bands

    @field_validator("cases", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


def test_field_error_below_a_list_item_and_keys_read_as_text() -> None:
    data, lines = load_yaml_with_lines("bands:\n  - over: 1\n  - {}\ncases:\n  1:\n    over: x\n")
    with pytest.raises(ConfigError) as info:
        validate(_Bands, data, "f.yaml", lines)
    assert [str(i) for i in info.value.issues] == [
        "f.yaml:2: bands[0].over: the first band must be open below",
        "f.yaml:6: cases.1.over: input should be a valid integer",
    ]


class _Square(ConfigModel):
    shape: Literal["square"]
    side: int = 1

    @model_validator(mode="after")
    def _not_two(self) -> _Square:
        if self.side == 2:
            raise FieldError("side", "two is taken")
        if self.side == 3:
            raise ValueError("three is odd")
        return self


class _Circle(ConfigModel):
    shape: Literal["circle"]
    radius: int = 1


class _Shapes(ConfigModel):
    shapes: list[Annotated[_Square | _Circle, Field(discriminator="shape")]]


def test_errors_in_a_tagged_union_name_the_file_s_fields_not_the_tag() -> None:
    text = (
        "shapes:\n  - shape: square\n    side: 2\n  - shape: square\n    side: 3\n"
        "  - shape: circle\n    side: 1\n  - shape: circle\n"
    )
    data, lines = load_yaml_with_lines(text)
    with pytest.raises(ConfigError) as info:
        validate(_Shapes, data, "f.yaml", lines)
    assert [str(i) for i in info.value.issues] == [
        "f.yaml:3: shapes[0].side: two is taken",
        "f.yaml:4: shapes[1]: three is odd",
        "f.yaml:7: shapes[2].side: unknown field (expected one of radius, shape)",
    ]
    assert field_path(data, ["shapes", 1, "square"], absent_last=False) == ("shapes[1]", "")
    assert field_path(data, ["shapes", 3, "circle", "radius"]) == ("shapes[3].radius", "")


def test_libyaml_reads_every_shipped_file_as_the_pure_python_parser_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = Path(__file__).resolve().parents[1]
    files = sorted(root.glob("config/**/*.yaml")) + sorted(root.glob("config/**/*.yml"))
    texts = [p.read_text(encoding="utf-8") for p in files]
    texts.append('a: 2025-01-01\nb: "x"\nc: [1, 2.5, yes, null, ~]\nd: {e: 0o17, f: .inf}\n')
    fast = [load_yaml_with_lines(t) for t in texts]
    monkeypatch.setattr(config_files, "_FAST_LOADER", yaml.SafeLoader)
    assert [load_yaml_with_lines(t) for t in texts] == fast
    assert len(files) > 20


def test_a_yaml_error_is_worded_by_the_pure_python_parser() -> None:
    with pytest.raises(yaml.YAMLError, match="expected <block end>, but found"):
        load_yaml_with_lines("stations:\n  - id: S1\n - id: S2\n")
