"""Static checks of a pipeline at load time: every template and condition compiles, and every name
it reads exists *before* it is used (an earlier step's id, a set variable, a setting, the context)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

from .contracts import StepKind
from .errors import Problem
from .pipeline import defined_names
from .plugins import PluginHost
from .schema import base_schema
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
# The options every step shares, from the schema: "expression" or "template" for those whose
# value is checked as such (``x-template``), "" for the others.
COMMON_KEYS: dict[str, str] = {
    key: str(spec.get("x-template", ""))
    for key, spec in base_schema()["$defs"]["step_common"].items()
}
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
            self.step_body(kind, body, (*path, index, kind_name), known)
            defined = set(defined_names([step], self.host.step_kinds))
            for name in sorted(defined & CONTEXT_NAMES):
                at = "id" if body.get("id") == name else name
                self.problems.append(
                    self.doc.problem(
                        (*path, index, kind_name, at),
                        f"'{name}' is a name every template already has",
                        f"choose another name: {', '.join(sorted(CONTEXT_NAMES))} are taken",
                        key=at != "id",
                    )
                )
            known |= defined
        return known

    def step_body(
        self, kind: StepKind, body: Mapping[str, Any], here: Path_, known: set[str]
    ) -> None:
        """Check one step's templates and nested steps, as its kind declares them."""
        common = COMMON_KEYS if kind.common else {}
        self.fields(kind, body, here, known, skip=(*kind.nested, *kind.after_nested), common=common)
        inner = known | set(kind.scope(body) if kind.scope else ())
        after = set(inner)
        for key in kind.nested:
            after |= self.nested(kind, body.get(key), (*here, key), inner)
        self.fields(kind, {k: body[k] for k in kind.after_nested if k in body}, here, after)
        if kind.operations:
            self.operations(body.get(kind.operations), (*here, kind.operations), known)
        if kind.check is not None:
            self.kind_check(kind, body, here)
        ref = body.get(kind.pipeline_ref) if kind.pipeline_ref else None
        if isinstance(ref, str) and ref not in self.pipelines:
            close = difflib.get_close_matches(ref, sorted(self.pipelines), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "define it under pipelines:"
            self.problems.append(
                self.doc.problem((*here, kind.pipeline_ref), f"no sub-pipeline named '{ref}'", hint)
            )

    def kind_check(self, kind: StepKind, body: Mapping[str, Any], here: Path_) -> None:
        """The kind's own load-time check (``StepKind.check``), its problems located in the file."""
        assert kind.check is not None
        try:
            found = list(kind.check(body))
        except Exception as exc:  # a bug in a plugin: name it, rather than crash the loader
            self.problems.append(
                self.doc.problem(
                    here,
                    f"the check of step kind '{kind.name}' failed: {type(exc).__name__}: {exc}",
                    "a bug in the plugin that registers it (`lollms plugins` names it)",
                )
            )
            return
        for problem in found:
            self.problems.append(
                self.doc.problem((*here, *problem.at), problem.message, problem.hint)
            )

    def fields(
        self,
        kind: StepKind,
        body: Mapping[str, Any],
        here: Path_,
        known: set[str],
        skip: Iterable[str] = (),
        common: Mapping[str, str] | None = None,
    ) -> None:
        """The templates and expressions among ``body``'s values (a common key: as the schema's
        ``x-template`` says; any other string that holds ``{{``: a template)."""
        skipped = set(skip) | {kind.operations}
        for key, value in body.items():
            if key in skipped:
                continue
            role = common.get(key) if common else None
            if role == "":
                continue  # a common option that is not a template (id, retries, ...)
            if key in kind.expressions or role == "expression":
                self.check(value, (*here, key), known, expression=True)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    self.check(item, (*here, key, i), known)
            else:
                self.check(value, (*here, key), known)

    def nested(self, kind: StepKind, value: Any, here: Path_, known: set[str]) -> set[str]:
        """Check what a nested key holds: steps, name -> steps, or branches; returns the names
        known after it."""
        after = set(known)
        if isinstance(value, dict):
            for name, inner in value.items():
                after |= self.steps(inner, (*here, name), known)
        elif isinstance(value, list):
            steps = [s for s in value if not _is_branch(s, self.host)]
            if len(steps) == len(value):
                return self.steps(value, here, known)
            for i, branch in enumerate(value):  # branches: keys declared like the kind's own
                if isinstance(branch, dict) and _is_branch(branch, self.host):
                    nested = [k for k in branch if k in kind.nested]
                    self.fields(kind, branch, (*here, i), known, skip=nested)
                    for key in nested:
                        after |= self.nested(kind, branch[key], (*here, i, key), known)
        return after

    def operations(self, ops: Any, here: Path_, known: set[str]) -> None:
        """Operations whose argument is a template (PostProcessor.template)."""
        for i, op in enumerate(ops if isinstance(ops, list) else ()):
            if not (isinstance(op, dict) and len(op) == 1):
                continue
            ((name, args),) = op.items()
            spec = self.host.postprocessors.get(name)
            if spec is not None and spec.template:
                self.check(args, (*here, i, name), known, extra=spec.names)


def _is_branch(item: Any, host: PluginHost) -> bool:
    """A mapping in a nested list that is not a step (condition's elif: if/ask with then)."""
    return isinstance(item, dict) and not (len(item) == 1 and next(iter(item)) in host.step_kinds)


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
    """Every name defined in these steps, nested ones included (as each kind declares them)."""
    return defined_names(list(steps), host.step_kinds)


def check_pipeline(doc: Document, host: PluginHost) -> list[Problem]:
    """Problems in the templates and conditions of a schema-valid document."""
    checker = _Checker(doc, host)
    data = doc.data
    checker.steps(data.get("pipeline"), ("pipeline",), set())
    # A sub-pipeline runs inside its caller: it sees what the main pipeline defines.
    for name, steps in (data.get("pipelines") or {}).items():
        checker.steps(steps, ("pipelines", name), set(_ids(data.get("pipeline") or (), host)))
    return checker.problems
