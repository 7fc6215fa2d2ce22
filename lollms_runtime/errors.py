"""Errors a person can act on: each problem names file:line:col, the path in the document and a hint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class LollmsError(Exception):
    """An expected error: shown to the user as one clean message (CLI exit 1, gr.Error in the app)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file. ``line`` and ``col`` are 1-based."""

    file: str
    line: int
    col: int
    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class PersonalityError(LollmsError):
    """A personality file that cannot be used; ``problems`` are sorted most relevant first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def format_path(parts: Sequence[str | int]) -> str:
    """``("pipeline", 2, "generate", "temperature")`` -> ``pipeline[2].generate.temperature``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
