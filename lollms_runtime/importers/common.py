"""What an importer produces: a draft document plus assets and warnings, and the final result."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LollmsError

ID_MAX = 64
NAME_MAX = 100
VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)*([-+.]?[0-9A-Za-z.]+)?$")


class ImportFailed(LollmsError):
    """A source that cannot be imported; the message says what was wrong and what to do."""


class NotACard(ImportFailed):
    """A JSON or PNG file that holds no character card (``--all`` skips it)."""


@dataclass
class Draft:
    """A personality document built from a source, before it is written and validated."""

    source: Path
    kind: str  # "lollms" or "sillytavern"
    data: dict[str, Any]
    # Path inside the package's personality folder (e.g. "assets/logo.png") -> file content.
    assets: dict[str, bytes] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        """Record something that could not be carried over exactly."""
        self.warnings.append(message)


@dataclass(frozen=True)
class ImportResult:
    """One imported personality: where its package was written and what was not carried over."""

    source: Path
    kind: str
    id: str
    name: str
    package: Path
    warnings: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "source": str(self.source),
            "kind": self.kind,
            "id": self.id,
            "name": self.name,
            "package": str(self.package),
            "warnings": list(self.warnings),
        }


def make_id(text: str) -> str:
    """A schema-valid id from any text ([a-z0-9_-], at most 64 characters), or ``""``."""
    ident = re.sub(r"[^a-z0-9_-]+", "_", text.strip().lower())
    ident = re.sub(r"_+", "_", ident).strip("_-")
    # Empty when nothing usable is left (callers fall back to another name, then "imported").
    return ident[:ID_MAX].rstrip("_-")


def clean_name(draft: Draft, name: str, fallback: str) -> str:
    """A display name that fits the schema (1-100 characters, one line)."""
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in name).split())
    if not cleaned:
        draft.warn(f"no name given: using '{fallback}'")
        cleaned = fallback
    if len(cleaned) > NAME_MAX:
        draft.warn(f"name is {len(cleaned)} characters; cut to {NAME_MAX}")
        cleaned = cleaned[:NAME_MAX].rstrip()
    return cleaned


def clean_version(draft: Draft, value: Any, where: str) -> str | None:
    """A version string such as "1.0.0", or None (with a warning) when the value is not one."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        draft.warn(f"{where}: version {value!r} is not a version string; not carried over")
        return None
    text = str(value).strip().lstrip("vV")
    if not VERSION_RE.match(text):
        draft.warn(f"{where}: version {value!r} is not like 1.0.0; not carried over")
        return None
    return text


def is_empty(value: Any) -> bool:
    """True for values that carry nothing (None, blank text, empty list or mapping)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list | dict | tuple) and not value
