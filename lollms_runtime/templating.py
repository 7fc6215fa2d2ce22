"""Templates and conditions: Jinja2 in an immutable sandbox with strict undefined, compiled once."""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache, wraps
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

# The limits are part of this module's API: tests and callers import them from here.
from .template_bounds import (  # noqa: F401
    BUDGET,
    MAX_FILTER_ITEMS,
    MAX_LOOP_ITERATIONS,
    MAX_POWER_BITS,
    MAX_RENDER_CHARS,
    MAX_RENDER_SECONDS,
    MAX_RENDER_WORK,
    MAX_REPEAT_LENGTH,
    MAX_SLOW_TEXT_CHARS,
    BoundedEscapeFormatter,
    BoundedFormatter,
    Budget,
    bounded_filter,
    charge,
    check_percent,
    check_result,
    check_str_method,
    check_text,
    finalize,
    refuse,
    text_length,
    tick,
)

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)

# Names every template may use besides the pipeline's own ids and variables.
CONTEXT_NAMES = frozenset({"message", "history", "settings", "personality", "model", "now", "lore"})


class TemplateError(ValueError):
    """A template or expression that could not be rendered; the message says where and why."""


class _CodeGenerator(CodeGenerator):
    """Compiles `a ~ b` to a checked join (Jinja's own joins without looking)."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        escape = "context.eval_ctx.autoescape" if frame.eval_ctx.volatile else "False"
        if not frame.eval_ctx.volatile and frame.eval_ctx.autoescape:
            escape = "True"
        self.write(f"environment.join_text({escape}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every operation that can build large values checked first."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _CodeGenerator

    @staticmethod
    def concat(parts: Iterable[str]) -> str:  # type: ignore[override]
        """Joins a render's (or a `{% set %}` block's, a macro's) output, bounded."""
        kept: list[str] = []
        size = 0
        for part in parts:
            size += len(part)
            if size > MAX_RENDER_CHARS:
                raise refuse("the text one template renders", MAX_RENDER_CHARS)
            kept.append(part)
        charge(size)
        return "".join(kept)

    def join_text(self, escape: bool, parts: tuple[Any, ...]) -> str:
        """`a ~ b ~ c`, after checking the joined text's size."""
        size = 0
        for part in parts:
            size += text_length(part, MAX_RENDER_CHARS - size)
            if size > MAX_RENDER_CHARS:
                raise refuse("joining text with ~", MAX_RENDER_CHARS)
        charge(size)
        return markup_join(parts) if escape else str_join(parts)

    def loop_items(self, items: Iterable[Any]) -> Iterator[Any]:
        """A `{% for %}` loop's items, counted against the render's iteration budget."""
        budget = BUDGET.get() or Budget()
        for item in items:
            budget.check_clock()
            budget.iterations += 1
            if budget.iterations > MAX_LOOP_ITERATIONS:
                raise SecurityError(
                    f"more than {MAX_LOOP_ITERATIONS} loop iterations in one template"
                    " is not allowed"
                )
            yield item

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in list(tree.find_all(nodes.For)):
            counted = nodes.Call(
                nodes.EnvironmentAttribute("loop_items"), [loop.iter], [], None, None
            )
            loop.iter = counted.set_lineno(loop.lineno).set_environment(self)
        return tree

    def getattr(self, obj: Any, attribute: str) -> Any:
        tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        tick()
        return super().getitem(obj, argument)

    def call_test(
        self,
        name: str,
        value: Any,
        args: Any = None,
        kwargs: Any = None,
        context: Any = None,
        eval_ctx: Any = None,
    ) -> Any:
        tick()
        return super().call_test(name, value, args, kwargs, context, eval_ctx)

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
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() + right.bit_length() > MAX_POWER_BITS
            ):
                raise SecurityError(f"products beyond {MAX_POWER_BITS} bits are not allowed")
        elif operator == "**":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and abs(left) > 1
                and right * abs(left).bit_length() > MAX_POWER_BITS
            ):
                raise SecurityError(f"powers beyond {MAX_POWER_BITS} bits are not allowed")
        elif operator == "+":
            if (
                isinstance(left, str | list | tuple)
                and isinstance(right, str | list | tuple)
                and len(left) + len(right) > MAX_REPEAT_LENGTH
            ):
                raise SecurityError(
                    f"adding sequences beyond {MAX_REPEAT_LENGTH} items is not allowed"
                )
        elif operator == "%" and isinstance(left, str):
            check_percent(left, right)
        result = super().call_binop(context, operator, left, right)
        return check_result(result, f"the result of {operator}")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # A str method, or one of Markup's (Python functions wrapping str's).
        if isinstance(getattr(__obj, "__self__", None), str):
            args = check_str_method(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return check_result(result, "the result of a call")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format``/``format_map`` through a formatter that checks widths and sizes."""
        if not isinstance(
            value, types.MethodType | types.BuiltinMethodType
        ) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        owner: Any = value.__self__
        if not isinstance(owner, str):
            return None
        formatter: BoundedFormatter = (
            BoundedEscapeFormatter(self, escape=owner.escape)
            if isinstance(owner, Markup)
            else BoundedFormatter(self)
        )
        is_format_map = value.__name__ == "format_map"
        str_type = type(owner)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            return str_type(formatter.vformat(owner, args, kwargs))

        return wraps(value)(wrapper)


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    # Trailing newlines are kept: an answer_prefix such as "```python\n" must reach the model whole.
    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=finalize,
    )
    # lipsum(n) has no use in a personality and builds text of any size.
    env.globals.pop("lipsum", None)
    env.filters.update({name: bounded_filter(name, f) for name, f in env.filters.items()})
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
    budget = BUDGET.set(Budget())
    try:
        return str(_template(source).render(context))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from None
    except Exception as exc:  # the sandbox reports unsafe access as SecurityError
        raise TemplateError(_describe(exc)) from None
    finally:
        BUDGET.reset(budget)


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
    budget = BUDGET.set(Budget())
    try:
        value = _expression(expression.strip())(**context)
        if isinstance(value, Undefined):  # strict undefined fails only when used: fail here
            value._fail_with_undefined_error()
        # The engine may show the value as text later: refuse one whose text is huge now.
        check_text(value, "the text of an expression's value")
        return value
    except TemplateSyntaxError as exc:
        raise TemplateError(f"expression syntax error: {exc.message}") from None
    except Exception as exc:
        raise TemplateError(_describe(exc)) from None
    finally:
        BUDGET.reset(budget)


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
