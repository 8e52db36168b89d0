"""Configuration files: YAML read with line numbers, checked by a pydantic model.

Every configuration loader uses this module, so that each error a user sees has one form,
``file:line: field.path: reason`` (the line of the field, or of its nearest enclosing field), and
one error class, :class:`ConfigError`. The loaders' own classes (``CatalogError``,
``RegistryError`` …) are subclasses, so callers catching them keep working.

The models describe the file's shape (types, unknown keys, ranges); what needs the whole file
(an alias naming two parameters, a dimension no unit has) stays in the loader, which reports it
through :meth:`ConfigError.at` in the same form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class FieldError(ValueError):
    """Raised in a model's validator about one key below the value it checks ("rules.stuk";
    "[2].over" below a list)."""

    def __init__(self, key: str | int, message: str):
        self.key = key
        super().__init__(message)


class ConfigModel(BaseModel):
    """Base of the configuration models: unknown keys are errors, values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class ConfigError(ValueError):
    """One or more problems in a configuration file, each naming file, line and field."""

    def __init__(self, issues: Sequence[ConfigIssue] | str):
        if isinstance(issues, str):
            self.issues: list[ConfigIssue] = []
            super().__init__(issues)
            return
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    @classmethod
    def at(cls, source: str, lines: Mapping[str, int], field: str, message: str) -> ConfigError:
        return cls([ConfigIssue(source, nearest_line(lines, field), field, message)])


# --- YAML with line numbers ------------------------------------------------------------------


def _construct(node: yaml.Node, path: str, lines: dict[str, int], loader: yaml.SafeLoader) -> Any:
    """Like yaml.safe_load, but remembers the line of every path ("stations[2].cadence").
    ``loader`` builds the scalars and keys (one per file: making one is most of the cost)."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            child = f"{path}.{key}" if path else str(key)
            if key in result:  # PyYAML keeps the last of two equal keys silently
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is defined twice (lines {lines[child]} and "
                    f"{key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
            lines[child] = key_node.start_mark.line + 1
            result[key] = _construct(value_node, child, lines, loader)
            lines[child] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _construct(item, f"{path}[{i}]", lines, loader) for i, item in enumerate(node.value)
        ]
    try:
        return loader.construct_object(node)
    except ValueError as exc:  # a date such as 2025-02-30: YAML's pattern, not a day
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value!r} is not a valid value: {exc}", node.start_mark
        ) from None


# libyaml parses a registry of 200 stations in 20 ms where the pure-Python parser takes 240.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        # Parsed again by the pure-Python parser, whose messages users are told ("expected
        # <block end>, but found '-'"): libyaml words the same errors differently.
        return yaml.compose(text, Loader=yaml.SafeLoader)


def load_yaml_with_lines(text: str) -> tuple[Any, dict[str, int]]:
    node = _compose(text)
    lines: dict[str, int] = {}
    if node is None:
        return None, lines
    return _construct(node, "", lines, yaml.SafeLoader("")), lines


def nearest_line(lines: Mapping[str, int], path: str) -> int:
    """The line of a field ("stations[2].cadence"), or of its nearest enclosing field."""
    while path:
        if path in lines:
            return lines[path]
        parent = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", path)
        if parent == path:
            break
        path = parent
    return 1


def read_config_text(path: Path, error: type[ConfigError] = ConfigError) -> str:
    """A configuration file's text; a missing or unreadable file is ``error`` (field "(file)")."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        issue = ConfigIssue(str(path), 1, "(file)", f"cannot read the file ({exc})")
        raise error([issue]) from None


def parse_yaml(
    text: str, source: str, error: type[ConfigError] = ConfigError
) -> tuple[Any, dict[str, int]]:
    """The data and the line of each field; invalid YAML is ``error`` at its line (field
    "(yaml)"), the same for every configuration file."""
    try:
        return load_yaml_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise error([ConfigIssue(source, line, "(yaml)", f"invalid YAML: {reason}")]) from None


def read_yaml_file(
    path: Path, error: type[ConfigError] = ConfigError
) -> tuple[Any, dict[str, int]]:
    """The file's data and the line of each field; unreadable or invalid YAML is ``error``."""
    return parse_yaml(read_config_text(path, error), str(path), error)


# --- pydantic errors in the file:line: field form ------------------------------------------


def _join(path: str, part: str | int, in_list: bool) -> str:
    if in_list:
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else str(part)


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, Mapping):
        return part in node or _key_as_text(node, part) is not None
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, Mapping) and part not in node:
        return node[_key_as_text(node, part)]
    return node[part]


def _key_as_text(node: Mapping[Any, Any], part: str | int) -> Any:
    """The key a model read as text ("1" for a YAML key 1), or None."""
    return next((k for k in node if not isinstance(k, str) and str(k) == part), None)


def field_path(data: Any, loc: Sequence[str | int], absent_last: bool = True) -> tuple[str, str]:
    """Turn pydantic's error location into the file's field path ("units.mg/L.factor").

    pydantic puts tags in the location (the union member tried, ``[key]`` for a mapping's key);
    they are not fields of the file and are dropped. A last part the file does not have is a
    field (missing or unknown) when ``absent_last``, else the tag of the member whose own
    validator failed, and dropped too. Returns the path and a prefix for the message ("key 5: "
    when the key itself is wrong).
    """
    path = ""
    node: Any = data
    last: str | int = ""
    for i, part in enumerate(loc):
        if part == "[key]":
            return path, f"key {last!r}: "
        in_list = isinstance(node, list)
        if _has(node, part):
            node = _child(node, part)
        elif i < len(loc) - 1 or not absent_last:
            continue  # a pydantic tag, not a key of the file
        else:
            node = None  # a missing or unknown field: still part of the path
        path = _join(path, part, in_list)
        last = part
    return path, ""


_REASONS = {
    "extra_forbidden": "unknown field",
    "missing": "required field missing",
    # pydantic says "… or instance of _Entry": a class name means nothing to whoever edits the file
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def reason(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind in _REASONS:
        return _REASONS[kind]
    message = str(error.get("msg", "invalid"))
    message = re.sub(r"^(Value error|Assertion failed), ", "", message)
    if message[1:2].isupper():
        return message  # an abbreviation: "UTC offset …"
    return message[:1].lower() + message[1:]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _has_tag(model: type[BaseModel], tag: str) -> bool:
    return any(
        get_origin(f.annotation) is Literal and tag in get_args(f.annotation)
        for f in model.model_fields.values()
    )


def known_fields(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The fields the model accepts where an unknown field ``loc`` was found."""
    current: list[type[BaseModel]] = [model]
    for part in loc[:-1]:
        found = [m for m in current if isinstance(part, str) and part in m.model_fields]
        if found:
            current = _models_in(found[0].model_fields[str(part)].annotation)
        elif isinstance(part, str):  # a tagged union's tag: the member it names
            tagged = [m for m in current if _has_tag(m, part)]
            current = tagged or current
        # else: a list index or a mapping key: the same models hold one level down
    return sorted({name for m in current for name in m.model_fields})


def issues_from(
    exc: ValidationError,
    data: Any,
    source: str,
    lines: Mapping[str, int],
    prefix: str = "",
    model: type[BaseModel] | None = None,
) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = err["loc"]
        known = known_fields(model, loc) if model is not None and loc else []
        # A validator of a field the file leaves out (a required text with its own message)
        # names that field; any other absent last part is a union member's tag.
        names_a_field = bool(loc) and loc[-1] in known
        path, note = field_path(data, loc, err["type"] in _REASONS or names_a_field)
        if err["type"] == "extra_forbidden" and known:
            note = f"unknown field (expected one of {', '.join(known)})"
            err = {**err, "type": "", "msg": ""}
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            key = cause.key
            if isinstance(key, str) and key.startswith("["):  # "[2].over": below a list
                path = f"{path}{key}"
            else:
                path = _join(path, key, isinstance(key, int))
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        text = note if note.startswith("unknown field") else note + reason(err)
        issues.append(ConfigIssue(source, nearest_line(lines, path), path, text))
    return sorted(issues, key=lambda i: i.line)


def validate(
    model: type[M],
    data: Any,
    source: str,
    lines: Mapping[str, int] | None = None,
    error: type[ConfigError] = ConfigError,
    prefix: str = "",
    context: Any = None,
) -> M:
    """``model`` built from ``data``; every problem at once as ``error``, never the input value
    itself (a configuration file may hold a password). ``context`` reaches the validators
    (``info.context``): what they check against, e.g. the parameter catalog."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise error(issues_from(exc, data, source, lines or {}, prefix, model)) from None
