"""What plugins register: step kinds, post-processing operations and backend factories."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .backends.base import ImageBackend, TextBackend


@dataclass(frozen=True)
class StepKind:
    """A pipeline step kind: its name (the key in YAML), the JSON Schema of its body, and its runner.

    ``run`` is called by the engine (see :mod:`lollms_runtime.engine`); ``example`` is a complete
    YAML pipeline snippet shown in the generated reference and checked by the test suite.
    ``common`` adds the options every step shares (id, on_error, retries, timeout, when).
    """

    name: str
    schema: Mapping[str, Any]
    run: Callable[..., Any] | None = None
    summary: str = ""
    example: str = ""
    common: bool = True
    # Keys of the body whose string values are Jinja templates (checked at load time).
    templates: tuple[str, ...] = ()
    # Keys of the body whose string values are Jinja expressions (conditions).
    expressions: tuple[str, ...] = ()
    # Keys of the body that hold nested step lists (or mappings of name -> step list).
    nested: tuple[str, ...] = ()


@dataclass(frozen=True)
class PostProcessor:
    """A post_process operation: ``apply(text, args, context) -> text`` plus the schema of ``args``."""

    name: str
    apply: Callable[..., Any]
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "null"})
    summary: str = ""


@dataclass(frozen=True)
class TextBackendFactory:
    """Creates text backends: ``create(model, **options)``; ``create`` should import heavy modules lazily."""

    name: str
    create: Callable[..., TextBackend]
    summary: str = ""
    # Model specs this backend serves whichever backend is selected (e.g. ``openai:URL#MODEL``).
    claims: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class ImageBackendFactory:
    name: str
    create: Callable[..., ImageBackend]
    summary: str = ""
