"""YAML to plain data, keeping where every value and key sits, and refusing duplicate keys."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import PersonalityError, Problem, format_path

try:  # libyaml is several times faster; listing hundreds of personalities relies on it
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - libyaml missing
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

_BOOL_TAG = "tag:yaml.org,2002:bool"

# The words YAML 1.1 reads as booleans besides true and false (PyYAML: all but y and n).
YAML11_BOOLEANS = frozenset({"yes", "no", "on", "off", "y", "n"})


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Booleans as in YAML 1.2: only true and false. PyYAML's YAML 1.1 also reads yes, no, on and
    off as booleans, so `no:` named a setting False and `answer: no` lost the word."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

Path_ = tuple[str | int, ...]


@dataclass
class Document:
    """Parsed YAML plus the 1-based (line, col) of each value and of each mapping key."""

    file: str
    data: Any
    value_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    # Values written unquoted as yes/no/on/off/y/n: text here, booleans to YAML 1.1 (and PyYAML).
    yaml11_booleans: set[Path_] = field(default_factory=set)

    def mark(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """Where ``path`` is written; falls back to its nearest enclosing value."""
        if key and path in self.key_marks:
            return self.key_marks[path]
        probe = path
        while probe:
            if probe in self.value_marks:
                return self.value_marks[probe]
            probe = probe[:-1]
        return self.value_marks.get((), (1, 1))

    def problem(self, path: Path_, message: str, hint: str = "", *, key: bool = False) -> Problem:
        line, col = self.mark(path, key=key)
        return Problem(self.file, line, col, format_path(path), message, hint)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def parse_yaml(text: str, file: str) -> Document:
    """Parse one YAML document; syntax errors and duplicate keys raise :class:`PersonalityError`."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(s for s in (exc.context, exc.problem) if s)
        lines = text.splitlines()
        source_line = lines[line - 1] if 0 < line <= len(lines) else ""
        raise PersonalityError(
            [
                Problem(
                    file,
                    line,
                    col,
                    "",
                    f"YAML syntax error: {what}",
                    _syntax_hint(what, source_line),
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise PersonalityError([Problem(file, 1, 1, "", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    doc = Document(file, None)
    if root is None:
        raise PersonalityError(
            [Problem(file, 1, 1, "", "the file is empty", "start from `lollms new NAME`")]
        )
    problems: list[Problem] = []
    doc.data = _build(root, (), doc, problems, loader)
    if problems:
        raise PersonalityError(problems)
    return doc


def _syntax_hint(what: str, source_line: str) -> str:
    # libyaml does not name the tab it trips over, so look at the offending line's indentation.
    if "tab" in what or "\t" in source_line[: len(source_line) - len(source_line.lstrip())]:
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in what:
        return "check the indentation here, or quote a value that contains ': '"
    if "could not find expected ':'" in what or "simple key" in what:
        return "check the indentation and that each key ends with ':'"
    return "check the indentation and quoting around this place"


def _build(
    node: yaml.Node, path: Path_, doc: Document, problems: list[Problem], loader: Any
) -> Any:
    doc.value_marks[path] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<` merge keys
        result: dict[Any, Any] = {}
        first_seen: dict[Any, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, bool) and isinstance(key_node, yaml.ScalarNode):
                # A key names a setting or a case: `true:` stays the word written (a switch on a
                # boolean picks the case `true`), not "True".
                key = key_node.value
            if not isinstance(key, str | int | float | bool) and key is not None:
                problems.append(doc.problem(path, "mapping keys must be plain scalars"))
                continue
            key = str(key) if not isinstance(key, str) else key
            child = (*path, key)
            if key in first_seen:
                line, _col = first_seen[key]
                here = _pos(key_node)
                problems.append(
                    Problem(
                        doc.file,
                        here[0],
                        here[1],
                        format_path(child),
                        f"duplicate key '{key}' (first defined at line {line})",
                        "YAML keeps only the last value: remove or rename one of them",
                    )
                )
                continue
            first_seen[key] = _pos(key_node)
            doc.key_marks[child] = _pos(key_node)
            result[key] = _build(value_node, child, doc, problems, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, i), doc, problems, loader) for i, item in enumerate(node.value)
        ]
    value = loader.construct_object(node, deep=True)
    # libyaml marks a plain scalar with style "", the pure-Python parser with None.
    if isinstance(node, yaml.ScalarNode) and not node.style and value in _YAML11_WORDS:
        doc.yaml11_booleans.add(path)
    return value


_YAML11_WORDS = frozenset(
    spelling for word in YAML11_BOOLEANS for spelling in (word, word.title(), word.upper())
)
