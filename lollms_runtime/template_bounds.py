"""Bounds on what one template render may build and how long it may run (used by templating)."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextvars import ContextVar
from functools import wraps
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.sandbox import SandboxedFormatter
from jinja2.utils import Namespace
from markupsafe import EscapeFormatter

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
# Filters whose work per item (or per character) is Python code: their input is metered, so the
# clock is checked while they read it, and bounded, so what they do after reading stays short.
MAX_FILTER_ITEMS = 100_000
MAX_SLOW_TEXT_CHARS = 200_000  # input of the text filters that cost microseconds a character


def refuse(what: str, limit: int) -> SecurityError:
    return SecurityError(f"{what} beyond {limit} characters is not allowed")


def text_size(value: Any, limit: int = MAX_RENDER_CHARS) -> int:
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


def text_length(value: Any, limit: int) -> int:
    return len(value) if isinstance(value, str) else text_size(value, limit)


def check_text(value: Any, what: str) -> None:
    if text_length(value, MAX_RENDER_CHARS) > MAX_RENDER_CHARS:
        raise refuse(what, MAX_RENDER_CHARS)


def check_width(width: Any, what: str) -> None:
    if isinstance(width, int) and width > MAX_RENDER_CHARS:
        raise refuse(what, MAX_RENDER_CHARS)


@dataclasses.dataclass
class Budget:
    """What one render (or one expression) has spent so far."""

    iterations: int = 0
    calls: int = 0  # attribute, item and test lookups: filters call them once an item
    built: int = 0  # characters (or items) of every value built so far, kept or not
    started: float = dataclasses.field(default_factory=time.monotonic)

    def check_clock(self) -> None:
        if time.monotonic() - self.started > MAX_RENDER_SECONDS:
            raise SecurityError(
                f"a template running longer than {MAX_RENDER_SECONDS:g} seconds is not allowed"
            )


BUDGET: ContextVar[Budget | None] = ContextVar("lollms_template_budget", default=None)


def tick() -> None:
    """One lookup done for a filter's item (a sort key, a selectattr test): the clock is checked
    every few hundred, so a filter that calls back into the template for each item stays bounded."""
    budget = BUDGET.get()
    if budget is not None:
        budget.calls += 1
        if not budget.calls & 255:
            budget.check_clock()


def metered(items: Iterable[Any], name: str) -> Iterator[Any]:
    """A filter's input, read with the clock checked and the number of items bounded."""
    budget = BUDGET.get()
    for count, item in enumerate(items, 1):
        if count > MAX_FILTER_ITEMS:
            raise SecurityError(
                f"the '{name}' filter on more than {MAX_FILTER_ITEMS} items is not allowed"
            )
        if budget is not None and not count & 1023:
            budget.check_clock()
        yield item


def charge(size: int) -> None:
    """Counts what an operation built against the render's budget (none outside a render)."""
    budget = BUDGET.get()
    if budget is not None:
        budget.check_clock()
        budget.built += size
        if budget.built > MAX_RENDER_WORK:
            raise SecurityError(
                f"building more than {MAX_RENDER_WORK} characters in one template is not allowed"
            )


def check_result(value: Any, what: str) -> Any:
    """A backstop after operations whose output is at most a few times their checked inputs;
    what they built is charged to the render's budget."""
    if isinstance(value, str | bytes | list | tuple | dict | set):
        if len(value) > MAX_RENDER_CHARS:
            raise refuse(what, MAX_RENDER_CHARS)
        charge(len(value))
    return value


def check_replace(text: str, old: str, new: str, count: int) -> None:
    found = text.count(old)
    if count >= 0:
        found = min(found, count)
    if len(text) + found * (len(new) - len(old)) > MAX_RENDER_CHARS:
        raise refuse("replacing text", MAX_RENDER_CHARS)


def check_join(separator: str, items: Iterable[Any]) -> list[Any]:
    """Reads the items (a generator only once) while summing the joined text's size."""
    if isinstance(items, Sized) and len(separator) * (len(items) - 1) > MAX_RENDER_CHARS:
        raise refuse("joining text", MAX_RENDER_CHARS)  # without looking at each item
    kept: list[Any] = []
    size = 0
    for item in items:
        size += text_length(item, MAX_RENDER_CHARS - size) + (len(separator) if kept else 0)
        if size > MAX_RENDER_CHARS:
            raise refuse("joining text", MAX_RENDER_CHARS)
        kept.append(item)
    return kept


# One `%` conversion: optional (name), flags, width, .precision, length modifier, type.
_PERCENT = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d*))?[hlL]?."
)


def check_percent(template: str, values: Any) -> None:
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
            size += text_size(values.get(name) if name is not None else values, MAX_RENDER_CHARS)
        size += 32  # a number's own digits
        if size > MAX_RENDER_CHARS:
            raise refuse("formatting text", MAX_RENDER_CHARS)
    if not isinstance(values, Mapping):
        size += sum(text_size(v, MAX_RENDER_CHARS) for v in items)
    if size > MAX_RENDER_CHARS:
        raise refuse("formatting text", MAX_RENDER_CHARS)


_SPEC_NUMBER = re.compile(r"\d+")


class BoundedFormatter(SandboxedFormatter):
    """``str.format``: each field's width and text are checked, and so is the running total."""

    _written = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._written = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        check_text(value, "formatting text")
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in _SPEC_NUMBER.findall(format_spec):
            if len(number) > 7 or int(number) > MAX_RENDER_CHARS:
                raise refuse("a format width", MAX_RENDER_CHARS)
        check_text(value, "formatting text")
        text = super().format_field(value, format_spec)
        self._written += len(text)
        if self._written > MAX_RENDER_CHARS:
            raise refuse("formatting text", MAX_RENDER_CHARS)
        return text


class BoundedEscapeFormatter(BoundedFormatter, EscapeFormatter):
    pass


def check_str_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Checks a str method's arguments before it runs; returns the (possibly listed) arguments."""
    text: str = method.__self__
    name = method.__name__
    if name in ("ljust", "rjust", "center", "zfill") and args:
        check_width(args[0], f"padding text ({name})")
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tabsize, int) and len(text) + text.count("\t") * tabsize > MAX_RENDER_CHARS:
            raise refuse("expanding tabs", MAX_RENDER_CHARS)
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        if isinstance(old, str) and isinstance(new, str) and isinstance(count, int):
            check_replace(text, old, new, count)
    elif name == "join" and args:
        return (check_join(text, args[0]), *args[1:])  # a generator is read once: hand the list on
    elif name == "translate" and args and isinstance(args[0], Mapping):
        table = args[0]
        size = 0
        for char in text:
            mapped = table.get(ord(char), char)
            size += len(mapped) if isinstance(mapped, str) else 1
            if size > MAX_RENDER_CHARS:
                raise refuse("translating text", MAX_RENDER_CHARS)
    return args


# Filters that turn their input into text (so a huge list's text is refused before it is built).
_TEXT_FILTERS = frozenset(
    {
        "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower",
        "pprint", "replace", "safe", "string", "striptags", "title", "tojson", "trim",
        "truncate", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
    }
)  # fmt: skip
# Filters that read their input item by item (a text: character by character).
_ITEM_FILTERS = frozenset(
    {
        "batch", "groupby", "join", "list", "map", "max", "min", "reject", "rejectattr",
        "select", "selectattr", "slice", "sort", "sum", "unique",
    }
)  # fmt: skip
_SLOW_TEXT_FILTERS = frozenset(
    {"striptags", "title", "truncate", "urlize", "wordcount", "wordwrap"}
)
_RUNS = re.compile(r"\s+|\S+")
MAX_WRAP_WORK = 500_000_000  # characters textwrap copies to cut long words (about half a second)
# Filters whose number options are sizes or counts.
_SIZE_FILTERS = frozenset({"batch", "center", "indent", "slice", "truncate", "wordwrap"})


def check_filter(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], at: int
) -> tuple[Any, ...]:
    """Checks a filter's input and options before it runs; returns the (possibly listed) args."""
    value, options = args[at], args[at + 1 :]
    original = value
    if name in _ITEM_FILTERS and isinstance(value, Iterable) and not isinstance(value, Mapping):
        if isinstance(value, Sized) and len(value) > MAX_FILTER_ITEMS:
            raise SecurityError(
                f"the '{name}' filter on more than {MAX_FILTER_ITEMS} items is not allowed"
            )
        value = metered(value, name)
        args = (*args[:at], value, *options)
    elif name == "dictsort" and isinstance(value, Sized) and len(value) > MAX_FILTER_ITEMS:
        raise SecurityError(
            f"the '{name}' filter on more than {MAX_FILTER_ITEMS} items is not allowed"
        )
    if name in _SLOW_TEXT_FILTERS and text_length(value, MAX_SLOW_TEXT_CHARS) > MAX_SLOW_TEXT_CHARS:
        raise refuse(f"the text of the '{name}' filter's input", MAX_SLOW_TEXT_CHARS)
    if name in _TEXT_FILTERS:
        check_text(value, f"the text of the '{name}' filter's input")
    if name in _SIZE_FILTERS:
        for option in (*options, *kwargs.values()):
            check_width(option, f"a '{name}' filter size")
    if name == "wordwrap":
        # textwrap cuts a long word (or a run of spaces) by copying its rest for each line:
        # the cost grows with the word's length squared over the width.
        width = options[0] if options else kwargs.get("width", 79)
        if isinstance(width, int) and isinstance(value, str) and value:
            longest = max(map(len, _RUNS.findall(value)), default=0)
            if longest * longest // max(width, 1) > MAX_WRAP_WORK:
                raise SecurityError(
                    f"wrapping a word of {longest} characters at width {width} is not allowed"
                )
    if name == "indent":
        width = options[0] if options else kwargs.get("width", 4)
        step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        text = str(value)
        if len(text) + (text.count("\n") + 1) * step > MAX_RENDER_CHARS:
            raise refuse("indenting text", MAX_RENDER_CHARS)
    elif name == "replace" and len(options) >= 2:
        count = options[2] if len(options) > 2 else kwargs.get("count")
        count = count if isinstance(count, int) else -1
        check_replace(str(value), str(options[0]), str(options[1]), count)
    elif name == "sum" and isinstance(original, list | tuple):
        # Adding lists (or tuples) copies the running total on each step.
        total = sum(len(v) for v in original if isinstance(v, list | tuple | str))
        if total > MAX_RENDER_CHARS or total * len(original) // 2 > MAX_RENDER_WORK:
            raise refuse("summing lists", MAX_RENDER_CHARS)
    elif name == "format":
        check_percent(str(value), kwargs or options)
    elif name == "join":
        separator = options[0] if options else kwargs.get("d", "")
        attribute = options[1] if len(options) > 1 else kwargs.get("attribute")
        if attribute is not None:  # join the attributes themselves, as the filter would
            value = map(make_attrgetter(args[0].environment, attribute), value)
            options = options[:1]
            kwargs.pop("attribute", None)
        items = check_join(str(separator), value)  # a generator is read once: hand the list on
        return (*args[:at], items, *options)
    return args


def bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    # Filters marked pass_context/pass_eval_context/pass_environment get that first.
    at = 1 if hasattr(func, "jinja_pass_arg") else 0

    @wraps(func)  # keeps the jinja_pass_arg mark
    def bounded(*args: Any, **kwargs: Any) -> Any:
        args = check_filter(name, args, kwargs, at)
        return check_result(func(*args, **kwargs), f"the '{name}' filter's output")

    return bounded


def finalize(value: Any) -> Any:
    """Every `{{ }}` output: its text is checked before it is built."""
    size = text_length(value, MAX_RENDER_CHARS)
    if size > MAX_RENDER_CHARS:
        raise refuse("the text of one value", MAX_RENDER_CHARS)
    charge(size)
    return value
