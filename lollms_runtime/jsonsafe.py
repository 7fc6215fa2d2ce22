"""JSON from outside (API bodies, discussion imports) read with bounded work.

``json.loads`` alone accepts ``NaN`` and ``Infinity``, recurses once per nesting level (a deep
enough document raises ``RecursionError`` from the middle of the parser) and reads any size.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any


class UnsafeJSON(ValueError):
    """JSON refused before or while parsing; the message says why."""


# A JSON string, written as an unrolled loop so the regex engine runs over its text in one go.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def nesting_depth(text: str, stop_above: int | None = None) -> int:
    """Deepest bracket nesting outside strings, before the parser recurses.

    Strings and everything but brackets are dropped by the regex engine (C speed), so only the
    brackets are walked in Python; ``stop_above`` ends the walk as soon as it is exceeded.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_above is not None and deepest > stop_above:
                    break
        else:
            depth -= 1
    return deepest


def loads(data: str | bytes, *, max_bytes: int, max_depth: int) -> Any:
    """Parse ``data``; raises :class:`UnsafeJSON` for what is too big, too deep, not UTF-8, not
    JSON, or holds a non-finite number (``NaN``, ``Infinity``, ``1e999``)."""
    if len(data) > max_bytes:
        raise UnsafeJSON(f"it is over {max_bytes} bytes")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise UnsafeJSON("it is not UTF-8 text") from None
    else:
        text = data
    if nesting_depth(text, stop_above=max_depth) > max_depth:
        raise UnsafeJSON(f"it nests deeper than {max_depth} levels")

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    def finite(raw: str) -> float:
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(f"{raw} is too large a number")
        return value

    try:
        return json.loads(text, parse_constant=no_constant, parse_float=finite)
    except (ValueError, RecursionError) as exc:
        raise UnsafeJSON(f"it is not valid JSON: {exc}") from None
