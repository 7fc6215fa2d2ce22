"""Templates and conditions: Jinja2 in an immutable sandbox with strict undefined, compiled once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)

# Names every template may use besides the pipeline's own ids and variables.
CONTEXT_NAMES = frozenset({"message", "history", "settings", "personality", "now"})


class TemplateError(ValueError):
    """A template or expression that could not be rendered; the message says where and why."""


# Bounds on what one operator may build, so a template cannot exhaust memory or CPU
# ("{{ 'a' * 10**9 }}", "{{ 2 ** 10**9 }}"); the sandbox already bounds range() the same way.
MAX_REPEAT_LENGTH = 1_000_000
MAX_POWER_BITS = 100_000


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with ``*`` and ``**`` checked before they allocate."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_REPEAT_LENGTH
                ):
                    raise SecurityError(
                        f"repeating a sequence beyond {MAX_REPEAT_LENGTH} items is not allowed"
                    )
        elif (
            isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right * abs(left).bit_length() > MAX_POWER_BITS
        ):
            raise SecurityError(f"powers beyond {MAX_POWER_BITS} bits are not allowed")
        return super().call_binop(context, operator, left, right)


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    # Trailing newlines are kept: an answer_prefix such as "```python\n" must reach the model whole.
    env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    # lipsum(n) has no use in a personality and builds text of any size.
    env.globals.pop("lipsum", None)
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
        value = _expression(expression.strip())(**context)
        if isinstance(value, Undefined):  # strict undefined fails only when used: fail here
            value._fail_with_undefined_error()
        return value
    except TemplateSyntaxError as exc:
        raise TemplateError(f"expression syntax error: {exc.message}") from None
    except Exception as exc:
        raise TemplateError(_describe(exc)) from None


def parse(source: str, *, expression: bool = False) -> nodes.Template:
    """The syntax tree of a template or expression; raises TemplateSyntaxError when malformed
    (for an expression, with the message the engine's own compilation would give)."""
    env = environment()
    if expression:
        env.compile_expression(source)
        return env.parse("{{ (" + source + ") }}")
    return env.parse(source)


def free_names(ast: nodes.Template) -> set[str]:
    """Top-level names a parsed template or expression reads (not those it binds itself)."""
    names = set(meta.find_undeclared_variables(ast))
    # Names bound by {% set %}/{% for %} inside the template are not free references.
    bound = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    return names - bound
