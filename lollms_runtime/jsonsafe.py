"""JSON from outside (API bodies, discussion imports) read with bounded work.

``json.loads`` alone accepts ``NaN`` and ``Infinity``, recurses once per nesting level (a deep
enough document raises ``RecursionError`` from the middle of the parser) and reads any size.
"""

from __future__ import annotations

import json
import math
from typing import Any


class UnsafeJSON(ValueError):
    """JSON refused before or while parsing; the message says why."""


def nesting_depth(text: str) -> int:
    """Deepest bracket nesting outside strings (a linear scan, before the parser recurses)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif char in "]}":
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
    if nesting_depth(text) > max_depth:
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
