"""Templates and conditions: Jinja2 in an immutable sandbox with strict undefined, compiled once."""

from __future__ import annotations

import dataclasses
import re
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextvars import ContextVar
from functools import lru_cache, wraps
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.filters import make_attrgetter
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import Namespace
from markupsafe import EscapeFormatter, Markup

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)

# Names every template may use besides the pipeline's own ids and variables.
CONTEXT_NAMES = frozenset({"message", "history", "settings", "personality", "now", "lore"})


class TemplateError(ValueError):
    """A template or expression that could not be rendered; the message says where and why."""


# Bounds on what one template may build, so it cannot exhaust memory or CPU. Each operation that
# can build more than its inputs (an operator, a str method, a filter, a format string, `~`) is
# checked *before* it allocates; the text one render produces, all of its `{% set %}` blocks and
# macros included, is bounded too; and loops share one iteration budget per render. The sandbox
# already bounds range() the same way (100000 items).
MAX_REPEAT_LENGTH = 1_000_000  # items or characters `*` and `+` may build
MAX_POWER_BITS = 100_000  # bits `**` and int `*` may build
MAX_RENDER_CHARS = 1_000_000  # characters of one render's text, and of any one value's text
MAX_LOOP_ITERATIONS = 200_000  # `{% for %}` iterations in one render, nested loops included
# Characters (or list items) all operations of one render may build together, kept or dropped:
# bounds memory when a loop keeps a fresh large value on each pass. Text grown by `~` in a loop is
# counted whole on each pass: 20 million allows, e.g., 400 passes over a 100,000-character text.
MAX_RENDER_WORK = 20_000_000
# A last resort for CPU: each operation above is bounded (at most about a second), so a render
# checks its clock between them. Personalities' templates take milliseconds.
MAX_RENDER_SECONDS = 5.0


def _refuse(what: str, limit: int) -> SecurityError:
    return SecurityError(f"{what} beyond {limit} characters is not allowed")


def _text_size(value: Any, limit: int = MAX_RENDER_CHARS) -> int:
    """About how many characters ``str(value)`` has; stops counting soon after ``limit``."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2  # quotes when inside a container's repr
        elif isinstance(item, bool | int | float | complex) or item is None:
            total += 8 if not isinstance(item, int) else item.bit_length() // 3 + 2
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, Namespace):
            stack.append(item._Namespace__attrs)
        elif isinstance(item, bytes | bytearray):
            total += 4 * len(item) + 3  # repr escapes each byte as \xNN at most
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            fields = dataclasses.fields(item)
            total += 2 + len(type(item).__name__) + sum(len(f.name) + 2 for f in fields)
            stack.extend(getattr(item, f.name) for f in fields)
        else:  # objects from the context (a date, a loop): their text is short
            total += 100
    return total


def _text_length(value: Any, limit: int) -> int:
    return len(value) if isinstance(value, str) else _text_size(value, limit)


def _check_text(value: Any, what: str) -> None:
    if _text_length(value, MAX_RENDER_CHARS) > MAX_RENDER_CHARS:
        raise _refuse(what, MAX_RENDER_CHARS)


def _check_width(width: Any, what: str) -> None:
    if isinstance(width, int) and width > MAX_RENDER_CHARS:
        raise _refuse(what, MAX_RENDER_CHARS)


@dataclasses.dataclass
class _Budget:
    """What one render (or one expression) has spent so far."""

    iterations: int = 0
    built: int = 0  # characters (or items) of every value built so far, kept or not
    started: float = dataclasses.field(default_factory=time.monotonic)

    def check_clock(self) -> None:
        if time.monotonic() - self.started > MAX_RENDER_SECONDS:
            raise SecurityError(
                f"a template running longer than {MAX_RENDER_SECONDS:g} seconds is not allowed"
            )


_BUDGET: ContextVar[_Budget | None] = ContextVar("lollms_template_budget", default=None)


def _charge(size: int) -> None:
    """Counts what an operation built against the render's budget (none outside a render)."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.check_clock()
        budget.built += size
        if budget.built > MAX_RENDER_WORK:
            raise SecurityError(
                f"building more than {MAX_RENDER_WORK} characters in one template is not allowed"
            )


def _check_result(value: Any, what: str) -> Any:
    """A backstop after operations whose output is at most a few times their checked inputs;
    what they built is charged to the render's budget."""
    if isinstance(value, str | bytes | list | tuple | dict | set):
        if len(value) > MAX_RENDER_CHARS:
            raise _refuse(what, MAX_RENDER_CHARS)
        _charge(len(value))
    return value


def _check_replace(text: str, old: str, new: str, count: int) -> None:
    found = text.count(old)
    if count >= 0:
        found = min(found, count)
    if len(text) + found * (len(new) - len(old)) > MAX_RENDER_CHARS:
        raise _refuse("replacing text", MAX_RENDER_CHARS)


def _check_join(separator: str, items: Iterable[Any]) -> list[Any]:
    """Reads the items (a generator only once) while summing the joined text's size."""
    if isinstance(items, Sized) and len(separator) * (len(items) - 1) > MAX_RENDER_CHARS:
        raise _refuse("joining text", MAX_RENDER_CHARS)  # without looking at each item
    kept: list[Any] = []
    size = 0
    for item in items:
        size += _text_length(item, MAX_RENDER_CHARS - size) + (len(separator) if kept else 0)
        if size > MAX_RENDER_CHARS:
            raise _refuse("joining text", MAX_RENDER_CHARS)
        kept.append(item)
    return kept


# One `%` conversion: optional (name), flags, width, .precision, length modifier, type.
_PERCENT = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d*))?[hlL]?."
)


def _check_percent(template: str, values: Any) -> None:
    """`'%10d' % x` and the `format` filter: widths and the texts they insert, summed."""
    size = len(template)
    items = list(values) if isinstance(values, tuple) else [values]
    stars = (v for v in items if isinstance(v, int))
    for match in _PERCENT.finditer(template):
        for number in (match["width"], match["prec"]):
            if number == "*":
                size += abs(next(stars, 0))
            elif number:
                size += int(number)
        name = match["name"]
        if isinstance(values, Mapping):  # `%(name)s` inserts one value, a bare `%s` the mapping
            size += _text_size(values.get(name) if name is not None else values, MAX_RENDER_CHARS)
        size += 32  # a number's own digits
        if size > MAX_RENDER_CHARS:
            raise _refuse("formatting text", MAX_RENDER_CHARS)
    if not isinstance(values, Mapping):
        size += sum(_text_size(v, MAX_RENDER_CHARS) for v in items)
    if size > MAX_RENDER_CHARS:
        raise _refuse("formatting text", MAX_RENDER_CHARS)


_SPEC_NUMBER = re.compile(r"\d+")


class _BoundedFormatter(SandboxedFormatter):
    """``str.format``: each field's width and text are checked, and so is the running total."""

    _written = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._written = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        _check_text(value, "formatting text")
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in _SPEC_NUMBER.findall(format_spec):
            if len(number) > 7 or int(number) > MAX_RENDER_CHARS:
                raise _refuse("a format width", MAX_RENDER_CHARS)
        _check_text(value, "formatting text")
        text = super().format_field(value, format_spec)
        self._written += len(text)
        if self._written > MAX_RENDER_CHARS:
            raise _refuse("formatting text", MAX_RENDER_CHARS)
        return text


class _BoundedEscapeFormatter(_BoundedFormatter, EscapeFormatter):
    pass


def _check_str_method(
    method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Checks a str method's arguments before it runs; returns the (possibly listed) arguments."""
    text: str = method.__self__
    name = method.__name__
    if name in ("ljust", "rjust", "center", "zfill") and args:
        _check_width(args[0], f"padding text ({name})")
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tabsize, int) and len(text) + text.count("\t") * tabsize > MAX_RENDER_CHARS:
            raise _refuse("expanding tabs", MAX_RENDER_CHARS)
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        if isinstance(old, str) and isinstance(new, str) and isinstance(count, int):
            _check_replace(text, old, new, count)
    elif name == "join" and args:
        return (_check_join(text, args[0]), *args[1:])  # a generator is read once: hand the list on
    elif name == "translate" and args and isinstance(args[0], Mapping):
        table = args[0]
        size = 0
        for char in text:
            mapped = table.get(ord(char), char)
            size += len(mapped) if isinstance(mapped, str) else 1
            if size > MAX_RENDER_CHARS:
                raise _refuse("translating text", MAX_RENDER_CHARS)
    return args


# Filters that turn their input into text (so a huge list's text is refused before it is built).
_TEXT_FILTERS = frozenset(
    {
        "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower",
        "pprint", "replace", "safe", "string", "striptags", "title", "tojson", "trim",
        "truncate", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
    }
)  # fmt: skip
# Filters whose number options are sizes or counts.
_SIZE_FILTERS = frozenset({"batch", "center", "indent", "slice", "truncate", "wordwrap"})


def _check_filter(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], at: int
) -> tuple[Any, ...]:
    """Checks a filter's input and options before it runs; returns the (possibly listed) args."""
    value, options = args[at], args[at + 1 :]
    if name in _TEXT_FILTERS:
        _check_text(value, f"the text of the '{name}' filter's input")
    if name in _SIZE_FILTERS:
        for option in (*options, *kwargs.values()):
            _check_width(option, f"a '{name}' filter size")
    if name == "indent":
        width = options[0] if options else kwargs.get("width", 4)
        step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        text = str(value)
        if len(text) + (text.count("\n") + 1) * step > MAX_RENDER_CHARS:
            raise _refuse("indenting text", MAX_RENDER_CHARS)
    elif name == "replace" and len(options) >= 2:
        count = options[2] if len(options) > 2 else kwargs.get("count")
        count = count if isinstance(count, int) else -1
        _check_replace(str(value), str(options[0]), str(options[1]), count)
    elif name == "sum" and isinstance(value, list | tuple):
        # Adding lists (or tuples) copies the running total on each step.
        total = sum(len(v) for v in value if isinstance(v, list | tuple | str))
        if total > MAX_RENDER_CHARS or total * len(value) // 2 > MAX_RENDER_WORK:
            raise _refuse("summing lists", MAX_RENDER_CHARS)
    elif name == "format":
        _check_percent(str(value), kwargs or options)
    elif name == "join":
        separator = options[0] if options else kwargs.get("d", "")
        attribute = options[1] if len(options) > 1 else kwargs.get("attribute")
        if attribute is not None:  # join the attributes themselves, as the filter would
            value = map(make_attrgetter(args[0].environment, attribute), value)
            options = options[:1]
            kwargs.pop("attribute", None)
        items = _check_join(str(separator), value)  # a generator is read once: hand the list on
        return (*args[:at], items, *options)
    return args


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    # Filters marked pass_context/pass_eval_context/pass_environment get that first.
    at = 1 if hasattr(func, "jinja_pass_arg") else 0

    @wraps(func)  # keeps the jinja_pass_arg mark
    def bounded(*args: Any, **kwargs: Any) -> Any:
        args = _check_filter(name, args, kwargs, at)
        return _check_result(func(*args, **kwargs), f"the '{name}' filter's output")

    return bounded


def _finalize(value: Any) -> Any:
    """Every `{{ }}` output: its text is checked before it is built."""
    size = _text_length(value, MAX_RENDER_CHARS)
    if size > MAX_RENDER_CHARS:
        raise _refuse("the text of one value", MAX_RENDER_CHARS)
    _charge(size)
    return value


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
                raise _refuse("the text one template renders", MAX_RENDER_CHARS)
            kept.append(part)
        _charge(size)
        return "".join(kept)

    def join_text(self, escape: bool, parts: tuple[Any, ...]) -> str:
        """`a ~ b ~ c`, after checking the joined text's size."""
        size = 0
        for part in parts:
            size += _text_length(part, MAX_RENDER_CHARS - size)
            if size > MAX_RENDER_CHARS:
                raise _refuse("joining text with ~", MAX_RENDER_CHARS)
        _charge(size)
        return markup_join(parts) if escape else str_join(parts)

    def loop_items(self, items: Iterable[Any]) -> Iterator[Any]:
        """A `{% for %}` loop's items, counted against the render's iteration budget."""
        budget = _BUDGET.get() or _Budget()
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
            _check_percent(left, right)
        result = super().call_binop(context, operator, left, right)
        return _check_result(result, f"the result of {operator}")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # A str method, or one of Markup's (Python functions wrapping str's).
        if isinstance(getattr(__obj, "__self__", None), str):
            args = _check_str_method(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return _check_result(result, "the result of a call")

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
        formatter: _BoundedFormatter = (
            _BoundedEscapeFormatter(self, escape=owner.escape)
            if isinstance(owner, Markup)
            else _BoundedFormatter(self)
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
        finalize=_finalize,
    )
    # lipsum(n) has no use in a personality and builds text of any size.
    env.globals.pop("lipsum", None)
    env.filters.update({name: _bounded_filter(name, f) for name, f in env.filters.items()})
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
    budget = _BUDGET.set(_Budget())
    try:
        return str(_template(source).render(context))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from None
    except Exception as exc:  # the sandbox reports unsafe access as SecurityError
        raise TemplateError(_describe(exc)) from None
    finally:
        _BUDGET.reset(budget)


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
    budget = _BUDGET.set(_Budget())
    try:
        value = _expression(expression.strip())(**context)
        if isinstance(value, Undefined):  # strict undefined fails only when used: fail here
            value._fail_with_undefined_error()
        # The engine may show the value as text later: refuse one whose text is huge now.
        _check_text(value, "the text of an expression's value")
        return value
    except TemplateSyntaxError as exc:
        raise TemplateError(f"expression syntax error: {exc.message}") from None
    except Exception as exc:
        raise TemplateError(_describe(exc)) from None
    finally:
        _BUDGET.reset(budget)


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
