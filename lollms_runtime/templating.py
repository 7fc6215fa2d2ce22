"""Templates and conditions: Jinja2 in an immutable sandbox with strict undefined, compiled once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)

# Names every template may use besides the pipeline's own ids and variables.
CONTEXT_NAMES = frozenset({"message", "history", "settings", "personality", "now"})


class TemplateError(ValueError):
    """A template or expression that could not be rendered; the message says where and why."""


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
    )
    return env


def _describe(exc: Exception) -> str:
    if isinstance(exc, SecurityError):
        return f"not allowed in a template: {exc}"
    if isinstance(exc, UndefinedError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@lru_cache(maxsize=2048)
def _template(source: str) -> Any:
    return environment().from_string(source)


@lru_cache(maxsize=2048)
def _expression(source: str) -> Any:
    return environment().compile_expression(source, undefined_to_none=False)


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render a template to text."""
    if "{" not in source:
        return source  # plain text: nothing to render (the common case for prompts)
    try:
        return str(_template(source).render(context))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from None
    except Exception as exc:  # the sandbox reports unsafe access as SecurityError
        raise TemplateError(_describe(exc)) from None


def render_value(source: Any, context: Mapping[str, Any]) -> Any:
    """Like :func:`render`, but ``"{{ expr }}"`` alone keeps its native type (a number, a list)."""
    if not isinstance(source, str):
        return source
    match = _SINGLE_EXPRESSION.match(source)
    if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
        return evaluate(match.group("expr"), context)
    return render(source, context)


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """Evaluate a condition or value expression such as ``settings.paint and description|length > 20``."""
    try:
        return _expression(expression.strip())(**context)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"expression syntax error: {exc.message}") from None
    except Exception as exc:
        raise TemplateError(_describe(exc)) from None


def referenced_names(source: str, *, expression: bool = False) -> set[str]:
    """Top-level names a template or expression reads; raises TemplateSyntaxError when malformed."""
    env = environment()
    if expression:
        parser_source = "{{ (" + source + ") }}"
        ast = env.parse(parser_source)
    else:
        ast = env.parse(source)
    names = set(meta.find_undeclared_variables(ast))
    # Names bound by {% set %}/{% for %} inside the template are not free references.
    bound = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    return names - bound
