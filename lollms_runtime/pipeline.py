"""What can be known about a pipeline without running it: its steps (nested ones included), the
names it defines and the steps whose tokens stream as the visible draft of the answer.

Everything here follows the registered :class:`~lollms_runtime.contracts.StepKind` declarations;
no step kind is known by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .contracts import StepKind
from .schema import base_schema

Steps = Sequence[Mapping[str, Any]]

_NAMES_IN = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)")


def default_pipeline() -> Steps:
    """What a personality without ``pipeline:`` runs: the schema's default (one generate, one reply)."""
    steps: Steps = base_schema()["properties"]["pipeline"]["default"]
    return steps


def walk(
    steps: Sequence[Any], kinds: Mapping[str, StepKind]
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every (kind, body) of a pipeline, nested steps included, in document order.

    Nested steps are looked for only under the keys a kind declares in ``StepKind.nested``, so a
    plugin's body that merely looks like steps is never taken for steps; a kind not among
    ``kinds`` is not looked into.
    """
    for step in steps:
        if not (isinstance(step, Mapping) and len(step) == 1):
            continue
        ((name, body),) = step.items()
        if not isinstance(body, Mapping):
            continue
        yield name, body
        kind = kinds.get(name)
        if kind is None or not kind.nested:
            continue
        for key, value in body.items():
            if key in kind.nested:
                for nested in nested_step_lists(value):
                    yield from walk(nested, kinds)


def nested_step_lists(value: Any) -> Iterator[Sequence[Any]]:
    """The step lists held by a value under a declared nested key: a list of steps, a list of
    branches each holding step lists (condition's elif), or a mapping of name -> steps."""
    if isinstance(value, list):
        yield value  # its items that are not steps (branches) are skipped by walk
        for branch in value:
            if isinstance(branch, Mapping) and len(branch) != 1:
                for inner in branch.values():
                    if isinstance(inner, list):
                        yield inner
            elif isinstance(branch, Mapping) and isinstance(branch.get("then"), list):
                yield branch["then"]  # a branch with only then: (written like a step)
    elif isinstance(value, Mapping):  # cases: name -> steps
        for inner in value.values():
            if isinstance(inner, list):
                yield inner


def defined_names(steps: Sequence[Any], kinds: Mapping[str, StepKind]) -> dict[str, str]:
    """Every name the pipeline defines (nested steps included), with the template text its value
    is made from."""
    names: dict[str, str] = {}
    for name, body in walk(steps, kinds):
        kind = kinds.get(name)
        if kind is None:
            if isinstance(body.get("id"), str):  # an unknown kind still names its output
                names.setdefault(body["id"], "")
            continue
        for defined, source in kind.defined_names(body).items():
            names[defined] = f"{names.get(defined, '')} {source}".strip()
    return names


def streamed_ids(steps: Sequence[Any], kinds: Mapping[str, StepKind]) -> set[str]:
    """The names whose steps stream their tokens as the visible draft of the answer: those the
    reply shows, directly or through the names they are made from; without a reply, the last step
    that streams."""
    bodies = list(walk(steps, kinds))
    replies = [
        str(body.get(kinds[name].answer, ""))
        for name, body in bodies
        if name in kinds and kinds[name].answer
    ]
    if not replies:
        streaming = [body for name, body in bodies if name in kinds and kinds[name].streams]
        return {str(streaming[-1].get("id", ""))} if streaming else set()
    sources = {
        name: set(_NAMES_IN.findall(text)) for name, text in defined_names(steps, kinds).items()
    }
    wanted: set[str] = set()
    pending = [name for text in replies for name in _NAMES_IN.findall(text)]
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(sources.get(name, ()))
    # A step that defines a wanted name under another name than its id streams too.
    for name, body in bodies:
        kind = kinds.get(name)
        named = kind is not None and isinstance(body.get("id"), str)
        if named and kind is not None and wanted & set(kind.defined_names(body)):
            wanted.add(body["id"])
    return wanted
