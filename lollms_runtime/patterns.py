"""Regular expressions a personality writes, run with a time limit.

Python's ``re`` backtracks without bound: ``(a+)+$`` took 90 s on a 29-character text. The
``regex`` module (already a dependency) takes a timeout, so a pattern in a personality (a
post-processing step, a declared test) can cost at most about a second per use.
"""

from __future__ import annotations

import re
from typing import Any

PATTERN_SECONDS = 1.0
# The same flag values in both modules; patterns are checked by `re` first, so an invalid one is
# reported in the words Python users know (and that the schema's "regex" format uses).
IGNORECASE = int(re.IGNORECASE)
MULTILINE = int(re.MULTILINE)
DOTALL = int(re.DOTALL)
PatternError = re.error


class PatternTimeout(ValueError):
    """A pattern that ran past :data:`PATTERN_SECONDS` on one text."""

    def __init__(self, pattern: str) -> None:
        super().__init__(
            f"the pattern /{pattern}/ ran longer than {PATTERN_SECONDS:g} s on this text: "
            "simplify it (nested repeats such as (a+)+ backtrack without end)"
        )


def search(pattern: str, text: str, flags: int = 0) -> Any:
    """``re.search`` with the time limit; raises PatternError or PatternTimeout."""
    import regex  # type: ignore[import-untyped,unused-ignore]  # ~20 ms: only when a pattern runs

    re.compile(pattern, flags)
    try:
        return regex.search(pattern, text, flags, timeout=PATTERN_SECONDS)
    except TimeoutError:
        raise PatternTimeout(pattern) from None


def sub(pattern: str, replacement: str, text: str, flags: int = 0) -> str:
    """``re.sub`` with the time limit; raises PatternError or PatternTimeout."""
    import regex  # type: ignore[import-untyped,unused-ignore]

    re.compile(pattern, flags)
    try:
        result: str = regex.sub(pattern, replacement, text, flags=flags, timeout=PATTERN_SECONDS)
    except TimeoutError:
        raise PatternTimeout(pattern) from None
    return result
