"""The typed personality object built by the loader."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends.base import Prefixes, Sampling


@dataclass(frozen=True)
class Setting:
    """A user-tunable setting; the app turns it into a control, templates read ``settings.NAME``."""

    name: str
    type: str
    default: Any
    title: str = ""
    description: str = ""
    enum: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    multiline: bool = False
    max_length: int | None = None

    @property
    def label(self) -> str:
        return self.title or self.name.replace("_", " ").capitalize()

    def coerce(self, value: Any) -> Any:
        """``value`` converted to this setting's type and checked; raises ValueError with a reason."""
        if value is None:
            return self.default
        given = value
        try:
            if self.type == "boolean":
                if isinstance(value, str):
                    lowered = value.strip().lower()
                    if lowered not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
                        raise ValueError
                    value = lowered in {"true", "1", "yes", "on"}
                else:
                    value = bool(value)
            elif self.type == "integer":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                value = int(value)
            elif self.type == "number":
                value = float(value)
            else:
                value = str(value)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError  # nan passes every bound check; inf is no setting's value
        except (TypeError, ValueError, OverflowError):
            raise ValueError(
                f"setting {self.name!r} expects a {self.type}, got {given!r}"
            ) from None
        if self.enum is not None and value not in self.enum:
            choices = ", ".join(map(str, self.enum))
            raise ValueError(f"setting {self.name!r} must be one of: {choices} (got {value!r})")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"setting {self.name!r} must be >= {self.minimum} (got {value})")
            if self.maximum is not None and value > self.maximum:
                raise ValueError(f"setting {self.name!r} must be <= {self.maximum} (got {value})")
        return value


@dataclass(frozen=True)
class Command:
    name: str
    prompt: str
    help: str = ""


@dataclass(frozen=True)
class Personality:
    """A validated personality. ``pipeline`` holds the validated step mappings as written."""

    id: str
    name: str
    source: Path
    version: str = "0.1.0"
    author: str = ""
    category: str = ""
    language: str = ""
    description: str = ""
    avatar: Path | None = None
    license: str = ""
    tags: tuple[str, ...] = ()
    conditioning: str = ""
    welcome: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    disclaimer: str = ""
    help: str = ""
    prefixes: Prefixes | None = None
    recommended_model: str = ""
    dependencies: tuple[str, ...] = ()
    commands: tuple[Command, ...] = ()
    sampling: Sampling = field(default_factory=Sampling)
    settings: Mapping[str, Setting] = field(default_factory=dict)
    pipeline: tuple[Mapping[str, Any], ...] = ()
    pipelines: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    tests: tuple[Mapping[str, Any], ...] = ()
    origin: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def folder(self) -> Path:
        return self.source.parent

    @property
    def has_pipeline(self) -> bool:
        return bool(self.pipeline)

    def default_settings(self) -> dict[str, Any]:
        return {name: s.default for name, s in self.settings.items()}

    def check_setting_names(self, names: Iterable[str]) -> None:
        """Raises ValueError for a name this personality does not declare (with a did-you-mean):
        a command line's --set, where a typo would otherwise be ignored."""
        for name in names:
            if name not in self.settings:
                import difflib

                close = difflib.get_close_matches(name, list(self.settings), n=1)
                known = ", ".join(self.settings) or "none"
                hint = f"did you mean '{close[0]}'?" if close else f"its settings: {known}"
                raise ValueError(f"{self.id} has no setting '{name}'; {hint}")

    def resolve_settings(self, values: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with ``values`` (unknown names ignored, values coerced and checked)."""
        resolved = self.default_settings()
        for name, value in (values or {}).items():
            if name in self.settings:
                resolved[name] = self.settings[name].coerce(value)
        return resolved
