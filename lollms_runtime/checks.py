"""Static checks of a pipeline at load time: every template and condition compiles, and every name
it reads exists *before* it is used (an earlier step's id, a set variable, a setting, the context)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

from .errors import Problem
from .plugins import PluginHost
from .templating import CONTEXT_NAMES, environment, free_names, parse
from .yamldoc import Document, Path_

JINJA_GLOBALS = frozenset(
    {
        "range",
        "lipsum",
        "dict",
        "cycler",
        "joiner",
        "namespace",
        "loop",
        "none",
        "true",
        "false",
        "None",
        "True",
        "False",
    }
)
LOOP_NAMES = frozenset({"loop_index"})
SYNTAX_HINTS = {
    True: "write a Jinja expression, without {{ }}: e.g. settings.paint and message",
    False: "check that every {{ has its }} and every {% if %} its {% endif %}",
}


class _Checker:
    def __init__(self, doc: Document, host: PluginHost) -> None:
        self.doc = doc
        self.host = host
        data = doc.data
        self.settings = set((data.get("settings") or {}).keys())
        self.pipelines = set((data.get("pipelines") or {}).keys())
        self.all_ids = set(_ids(data.get("pipeline") or (), host))
        for sub in (data.get("pipelines") or {}).values():
            self.all_ids.update(_ids(sub, host))
        self.problems: list[Problem] = []

    # -- one template ----------------------------------------------------------------------
    def check(
        self,
        source: Any,
        path: Path_,
        known: set[str],
        *,
        expression: bool = False,
        extra: Iterable[str] = (),
    ) -> None:
        if not isinstance(source, str):
            return
        if not expression and "{" not in source:
            return
        try:
            ast = parse(source, expression=expression)  # once: syntax, names and settings
        except TemplateSyntaxError as exc:
            # Jinja reports an unknown filter of an expression as a syntax error when compiling.
            if not self.unknown_filters(source, path, expression):
                what = "expression" if expression else "template"
                hint = SYNTAX_HINTS[expression]
                self.problems.append(
                    self.doc.problem(path, f"{what} syntax error: {exc.message}", hint)
                )
            return
        if self.unknown_filters(source, path, expression):
            return  # finding the names compiles the template, which fails on these
        names = free_names(ast)
        available = known | CONTEXT_NAMES | JINJA_GLOBALS | set(extra)
        for name in sorted(names - available):
            if name in self.all_ids:
                self.problems.append(
                    self.doc.problem(
                        path,
                        f"'{name}' is used before the step that sets it",
                        f"move this after the step with id '{name}', or set it earlier",
                    )
                )
            else:
                choices = sorted(available - JINJA_GLOBALS)
                close = difflib.get_close_matches(name, choices, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.problems.append(
                    self.doc.problem(
                        path,
                        f"unknown name '{name}'",
                        hint + f"names available here: {', '.join(choices)}",
                    )
                )
        for attr in _setting_reads(ast):
            if attr not in self.settings:
                close = difflib.get_close_matches(attr, sorted(self.settings), n=1)
                hint = (
                    f"did you mean '{close[0]}'?"
                    if close
                    else (
                        f"declared settings: {', '.join(sorted(self.settings))}"
                        if self.settings
                        else "declare it under settings:"
                    )
                )
                self.problems.append(self.doc.problem(path, f"unknown setting '{attr}'", hint))

    def unknown_filters(self, source: str, path: Path_, expression: bool) -> bool:
        """Reports the filters and tests no plugin or Jinja defines; True when there were any."""
        env = environment()
        try:
            ast = env.parse("{{ (" + source + ") }}" if expression else source)
        except TemplateSyntaxError:
            return False
        found = False
        for kind, known, node_type in (
            ("filter", env.filters, nodes.Filter),
            ("test", env.tests, nodes.Test),
        ):
            for name in sorted({n.name for n in ast.find_all(node_type)} - set(known)):
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = (
                    f"did you mean '{close[0]}'?"
                    if close
                    else f"Jinja's {kind}s: https://jinja.palletsprojects.com/en/stable/"
                    f"templates/#list-of-builtin-{kind}s"
                )
                self.problems.append(self.doc.problem(path, f"unknown {kind} '{name}'", hint))
                found = True
        return found

    # -- steps -----------------------------------------------------------------------------
    def steps(self, steps: Any, path: Path_, known: set[str]) -> set[str]:
        """Check a list of steps; returns the names known after it."""
        if not isinstance(steps, list):
            return known
        known = set(known)
        for index, step in enumerate(steps):
            if not (isinstance(step, dict) and len(step) == 1):
                continue
            ((kind_name, body),) = step.items()
            kind = self.host.step_kinds.get(kind_name)
            if kind is None or not isinstance(body, dict):
                continue
            here = (*path, index, kind_name)
            if kind_name == "set":
                for name, value in body.items():
                    self.check(value, (*here, name), known)
                known |= set(body)
                continue
            self.check(body.get("when"), (*here, "when"), known, expression=True)
            self.step_body(kind_name, body, here, known)
            known |= set(_ids([step], self.host))
        return known

    def step_body(
        self, kind_name: str, body: Mapping[str, Any], here: Path_, known: set[str]
    ) -> None:
        kind = self.host.step_kinds[kind_name]
        nested = set(kind.nested)
        for key, value in body.items():
            if key in nested or key in (
                "when",
                "ops",
                "id",
                "title",
                "on_error",
                "retries",
                "timeout",
            ):
                continue
            if key in kind.expressions:
                if kind_name == "loop" and key == "while":
                    continue  # checked with the loop body's names below
                self.check(value, (*here, key), known, expression=True)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    self.check(item, (*here, key, i), known)
            else:
                self.check(value, (*here, key), known)
        if kind_name == "post_process":
            for i, op in enumerate(body.get("ops") or ()):
                if isinstance(op, dict) and "template" in op:
                    self.check(
                        op["template"], (*here, "ops", i, "template"), known, extra=("text",)
                    )
        elif kind_name == "condition":
            for key in ("then", "else", "default"):
                self.steps(body.get(key), (*here, key), known)
            for i, branch in enumerate(body.get("elif") or ()):
                if isinstance(branch, dict):
                    self.check(branch.get("if"), (*here, "elif", i, "if"), known, expression=True)
                    self.check(branch.get("ask"), (*here, "elif", i, "ask"), known)
                    self.steps(branch.get("then"), (*here, "elif", i, "then"), known)
            for case, steps in (body.get("cases") or {}).items():
                self.steps(steps, (*here, "cases", case), known)
        elif kind_name == "loop":
            inner = self.steps(body.get("steps"), (*here, "steps"), known)
            self.check(body.get("while"), (*here, "while"), inner, expression=True)
        elif kind_name == "for_each":
            item = str(body.get("as", "item"))
            self.steps(body.get("steps"), (*here, "steps"), known | {item} | LOOP_NAMES)
        elif kind_name == "call" and isinstance(body.get("pipeline"), str):
            if body["pipeline"] not in self.pipelines:
                close = difflib.get_close_matches(body["pipeline"], sorted(self.pipelines), n=1)
                hint = f"did you mean '{close[0]}'?" if close else "define it under pipelines:"
                self.problems.append(
                    self.doc.problem(
                        (*here, "pipeline"), f"no sub-pipeline named '{body['pipeline']}'", hint
                    )
                )
        else:  # a plugin's kind with nested step lists (or mappings of name -> step list)
            for key in kind.nested:
                value = body.get(key)
                if isinstance(value, list):
                    self.steps(value, (*here, key), known)
                elif isinstance(value, dict):
                    for name, inner in value.items():
                        self.steps(inner, (*here, key, name), known)


def _setting_reads(ast: nodes.Template) -> Iterable[str]:
    for node in ast.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "settings":
            yield node.attr
    for item in ast.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "settings"
            and isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, str)
        ):
            yield item.arg.value


def _ids(steps: Sequence[Any], host: PluginHost) -> Iterable[str]:
    """Every id and set variable defined in these steps, nested ones included (found under the
    keys each kind declares as nested)."""
    from .engine import _walk

    for kind, body in _walk(list(steps), host.step_kinds):
        if kind == "set":
            yield from (str(k) for k in body)
        elif isinstance(body.get("id"), str):
            yield body["id"]


def check_pipeline(doc: Document, host: PluginHost) -> list[Problem]:
    """Problems in the templates and conditions of a schema-valid document."""
    checker = _Checker(doc, host)
    data = doc.data
    checker.steps(data.get("pipeline"), ("pipeline",), set())
    # A sub-pipeline runs inside its caller: it sees what the main pipeline defines.
    for name, steps in (data.get("pipelines") or {}).items():
        checker.steps(steps, ("pipelines", name), set(_ids(data.get("pipeline") or (), host)))
    return checker.problems
