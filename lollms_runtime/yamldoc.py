"""YAML to plain data, keeping where every value and key sits, and refusing duplicate keys.

Work is bounded for any input: the text's size, how deep it nests, how many values it holds once
its aliases are expanded (a "billion laughs" file of a few hundred bytes names billions), and the
characters those values hold; every tag must be one of YAML's own. The node graph is checked
*before* anything is built, so a hostile file costs about as much as reading it.
"""

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
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"

# The words YAML 1.1 reads as booleans besides true and false (PyYAML: all but y and n).
YAML11_BOOLEANS = frozenset({"yes", "no", "on", "off", "y", "n"})

# Bounds on one document. A personality is a few hundred values; a large LoLLMs config a few
# thousand. Aliases are counted as often as they are used, since that is how often the data
# built from them is walked (by validation, templates, `lollms show --json`).
MAX_TEXT_CHARS = 2_000_000
MAX_DEPTH = 100  # nested mappings and lists
MAX_NODES = 100_000  # values, keys and list items, aliases expanded
MAX_EXPANDED_CHARS = 8_000_000  # characters of all scalars, aliases expanded
MAX_INT_DIGITS = 100  # an integer longer than this is no setting anyone means

KNOWN_TAGS = frozenset(t for t in _BaseLoader.yaml_constructors if t) | {_MERGE_TAG}
TAG_HINT = (
    "a personality is plain data: remove the tag and write text, a number, a list or a mapping"
)


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
    # With ``duplicates="last"``: each repeated key, located (the last value was kept).
    duplicates: list[Problem] = field(default_factory=list)

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


def _at(file: str, node: yaml.Node, path: Path_, message: str, hint: str = "") -> Problem:
    line, col = _pos(node)
    shown = format_path(path) if len(path) <= 8 else format_path(path[:6]) + "..."
    return Problem(file, line, col, shown, message, hint)


def compose(text: str, file: str) -> yaml.Node | None:
    """The checked node graph of one YAML document (None when empty); raises
    :class:`PersonalityError` for syntax errors and for anything :func:`check_graph` refuses."""
    if len(text) > MAX_TEXT_CHARS:
        raise PersonalityError(
            [
                Problem(
                    file,
                    1,
                    1,
                    "",
                    f"the file has {len(text)} characters; the limit is {MAX_TEXT_CHARS}",
                    "keep long texts (knowledge, documents) in separate files",
                )
            ]
        )
    loader = _Loader(text)
    try:
        root: yaml.Node | None = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise PersonalityError([_syntax_problem(exc, text, file)]) from None
    except yaml.YAMLError as exc:
        raise PersonalityError([Problem(file, 1, 1, "", f"YAML error: {exc}")]) from None
    except RecursionError:  # the pure-Python parser (libyaml stops at 1000 levels itself)
        raise PersonalityError([_too_deep(file, None)]) from None
    finally:
        loader.dispose()
    if root is not None:
        problems = check_graph(root, file)
        if problems:
            raise PersonalityError(problems)
    return root


def _too_deep(file: str, node: yaml.Node | None, path: Path_ = ()) -> Problem:
    message = f"nested more than {MAX_DEPTH} levels deep"
    hint = "flatten this part: a personality needs only a few levels"
    if node is None:
        return Problem(file, 1, 1, "", message, hint)
    return _at(file, node, path, message, hint)


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str, file: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    what = " ".join(s for s in (exc.context, exc.problem) if s)
    if "maximum nesting depth" in what:
        return Problem(
            file,
            line,
            col,
            "",
            f"nested more than {MAX_DEPTH} levels deep",
            "flatten this part: a personality needs only a few levels",
        )
    lines = text.splitlines()
    source_line = lines[line - 1] if 0 < line <= len(lines) else ""
    return Problem(
        file, line, col, "", f"YAML syntax error: {what}", _syntax_hint(what, source_line)
    )


def check_graph(root: yaml.Node, file: str) -> list[Problem]:
    """Problems that make a node graph unsafe to build: unknown tags, recursive aliases, depth,
    and the size it would have once aliases are expanded. Iterative, linear in the nodes."""
    # Post-order walk with memoized (nodes, chars) per node: an alias is a shared node, so its
    # expanded size is counted at each use without walking it again.
    sizes: dict[int, tuple[int, int]] = {}
    on_path: set[int] = set()
    # Paths are kept as (parent, key) links with their depth, and spelled out only for a problem:
    # building a tuple per node would cost more than the walk itself.
    stack: list[tuple[yaml.Node, Any, int, bool]] = [(root, None, 0, False)]
    while stack:
        node, link, depth, done = stack.pop()
        ident = id(node)
        if done:
            on_path.discard(ident)
            count, chars = 1, 0
            for child in _children(node):
                child_count, child_chars = sizes[id(child)]
                count += child_count
                chars += child_chars
            sizes[ident] = (count, chars)
            if count > MAX_NODES or chars > MAX_EXPANDED_CHARS:
                what = f"{count} values" if count > MAX_NODES else f"{chars} characters"
                limit = MAX_NODES if count > MAX_NODES else MAX_EXPANDED_CHARS
                return [
                    _at(
                        file,
                        node,
                        _spelled(link),
                        f"with its aliases expanded this holds {what}; the limit is {limit}",
                        "use fewer aliases (*name): write the values out, once each",
                    )
                ]
            continue
        if ident in sizes:
            continue
        if ident in on_path:
            return [
                _at(
                    file,
                    node,
                    _spelled(link),
                    "an alias refers to a value that contains it (a recursive alias)",
                    "an alias may only name a value defined before and outside it",
                )
            ]
        if depth >= MAX_DEPTH:
            return [_too_deep(file, node, _spelled(link))]
        if node.tag not in KNOWN_TAGS:
            return [_at(file, node, _spelled(link), f"unknown YAML tag '{node.tag}'", TAG_HINT)]
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _INT_TAG and len(node.value) > MAX_INT_DIGITS:
                return [
                    _at(
                        file,
                        node,
                        _spelled(link),
                        f"an integer of {len(node.value)} digits is not allowed "
                        f"(at most {MAX_INT_DIGITS})",
                        "quote it if it is meant as text",
                    )
                ]
            sizes[ident] = (1, len(node.value))
            continue
        on_path.add(ident)
        stack.append((node, link, depth, True))
        if isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                stack.append((value, (link, name), depth + 1, False))
                stack.append((key, link, depth, False))
        else:
            for i in range(len(node.value) - 1, -1, -1):
                stack.append((node.value[i], (link, i), depth + 1, False))
    return []


def _spelled(link: Any) -> Path_:
    """A (parent, key) link chain as the document path it stands for."""
    parts: list[str | int] = []
    while link is not None:
        link, key = link
        parts.append(key)
    return tuple(reversed(parts))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def parse_yaml(text: str, file: str, *, duplicates: str = "error") -> Document:
    """Parse one YAML document; syntax errors, unsafe input and duplicate keys raise
    :class:`PersonalityError`. With ``duplicates="last"`` a repeated key keeps its last value (as
    PyYAML does) and is recorded in :attr:`Document.duplicates` instead."""
    root = compose(text, file)
    doc = Document(file, None)
    if root is None:
        raise PersonalityError(
            [Problem(file, 1, 1, "", "the file is empty", "start from `lollms new NAME`")]
        )
    problems: list[Problem] = []
    loader = _Loader("")
    try:
        doc.data = _build(root, (), doc, problems, loader, duplicates == "last")
    finally:
        loader.dispose()
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


def construct_scalar(node: yaml.ScalarNode, file: str, path: Path_ = (), loader: Any = None) -> Any:
    """One scalar's value; a value its tag cannot read (bad base64 after ``!!binary``, a date
    that does not exist) raises :class:`PersonalityError` located at the value."""
    own = loader or _Loader("")
    try:
        return own.construct_object(node, deep=True)
    # PyYAML's safe constructors fail on odd values in many ways (`!!int ''` is an IndexError);
    # all of them mean the same to the person: this value cannot be read as its tag says.
    except Exception as exc:
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PersonalityError(
            [
                _at(
                    file,
                    node,
                    path,
                    f"cannot read this !!{node.tag.rsplit(':', 1)[-1]} value: {what}",
                    "fix the value, or quote it to keep it as text",
                )
            ]
        ) from None
    finally:
        if loader is None:
            own.dispose()


def _build(
    node: yaml.Node,
    path: Path_,
    doc: Document,
    problems: list[Problem],
    loader: Any,
    keep_last: bool,
) -> Any:
    doc.value_marks[path] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        try:
            loader.flatten_mapping(node)  # resolves `<<` merge keys
        except yaml.MarkedYAMLError as exc:
            what = exc.problem or "a merge key (<<) must name a mapping or a list of mappings"
            problems.append(doc.problem(path, f"bad merge key: {what}"))
            return {}
        result: dict[Any, Any] = {}
        first_seen: dict[Any, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(doc.problem(path, "mapping keys must be plain scalars"))
                continue
            try:
                key = construct_scalar(key_node, doc.file, path, loader)
            except PersonalityError as exc:
                problems.extend(exc.problems)
                continue
            if isinstance(key, bool):
                # A key names a setting or a case: `true:` stays the word written (a switch on a
                # boolean picks the case `true`), not "True".
                key = key_node.value
            if not isinstance(key, str | int | float) and key is not None:
                problems.append(doc.problem(path, "mapping keys must be plain scalars"))
                continue
            key = str(key) if not isinstance(key, str) else key
            child = (*path, key)
            if key in first_seen:
                line, _col = first_seen[key]
                here = _pos(key_node)
                duplicate = Problem(
                    doc.file,
                    here[0],
                    here[1],
                    format_path(child),
                    f"duplicate key '{key}' (first defined at line {line})",
                    "YAML keeps only the last value: remove or rename one of them",
                )
                if not keep_last:
                    problems.append(duplicate)
                    continue
                doc.duplicates.append(duplicate)
            first_seen[key] = _pos(key_node)
            doc.key_marks[child] = _pos(key_node)
            result[key] = _build(value_node, child, doc, problems, loader, keep_last)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, i), doc, problems, loader, keep_last)
            for i, item in enumerate(node.value)
        ]
    assert isinstance(node, yaml.ScalarNode)
    try:
        value = construct_scalar(node, doc.file, path, loader)
    except PersonalityError as exc:
        problems.extend(exc.problems)
        return None
    # libyaml marks a plain scalar with style "", the pure-Python parser with None.
    if isinstance(node, yaml.ScalarNode) and not node.style and value in _YAML11_WORDS:
        doc.yaml11_booleans.add(path)
    return value


_YAML11_WORDS = frozenset(
    spelling for word in YAML11_BOOLEANS for spelling in (word, word.title(), word.upper())
)
