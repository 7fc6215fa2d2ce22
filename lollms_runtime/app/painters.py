"""Which painters a personality that paints can use, and whether each is ready: the lines the side
column shows ("mlx-diffusion — not ready: `lollms models pull …`", "a1111 — not configured …").

A personality paints when its pipeline has a step of a kind that paints (``StepKind.painter``:
anywhere, under a condition, a loop, a named pipeline). Its painters are the backend the step names
(a name, or the choices of the setting it names), each with the model the step names. The checks are bounded (a look on disk, a short
request) and remembered for a while, so a page asks them off its load and rarely waits.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..contracts import ImageBackendFactory, StepKind
from ..personality import Personality

TTL_S = 60.0  # a painter started (or a model pulled) shows as ready within a minute
_SETTING = re.compile(r"^\{\{\s*settings\.(\w+)\s*\}\}$")


def painting_steps(
    personality: Personality, kinds: Mapping[str, StepKind]
) -> list[tuple[Mapping[str, Any], tuple[str, str]]]:
    """The bodies of the personality's painting steps (nested ones included), each with the keys
    naming its backend and model."""
    painters = {name: kind.painter for name, kind in kinds.items() if kind.painter}

    def walk(node: Any) -> Iterator[tuple[Mapping[str, Any], tuple[str, str]]]:
        if isinstance(node, Mapping):
            for key, value in node.items():
                keys = painters.get(str(key))
                if keys is not None and isinstance(value, Mapping):
                    yield value, keys
                else:
                    yield from walk(value)
        elif isinstance(node, list | tuple):
            for item in node:
                yield from walk(item)

    return list(walk([personality.pipeline, *personality.pipelines.values()]))


def painters_of(
    personality: Personality,
    settings: Mapping[str, Any],
    default: str,
    kinds: Mapping[str, StepKind],
) -> list[tuple[str, str | None]]:
    """The (painter, model) pairs ``personality`` may paint with under ``settings``, in the
    order a user sees them: a painter chosen by a setting lists each of its choices."""
    found: list[tuple[str, str | None]] = []
    for body, (backend_key, model_key) in painting_steps(personality, kinds):
        model = _value(body.get(model_key), personality, settings)
        backend = body.get(backend_key)
        named = _SETTING.match(str(backend).strip()) if backend else None
        setting = personality.settings.get(named.group(1)) if named else None
        if backend is None:
            names = [default]
        elif setting is not None and setting.enum:
            names = [str(choice) for choice in setting.enum]
        else:
            names = [str(_value(backend, personality, settings) or default)]
        for name in names:
            if (name, model) not in found:
                found.append((name, model))
    return found


def _value(template: Any, personality: Personality, settings: Mapping[str, Any]) -> str | None:
    """A step field as a plain value: itself, or the setting it names; None for anything else
    (a template of the turn's variables is known only when the turn runs)."""
    if template is None:
        return None
    text = str(template).strip()
    named = _SETTING.match(text)
    if named:
        name = named.group(1)
        setting = personality.settings.get(name)
        value = settings.get(name, setting.default if setting else None)
        return str(value) if value not in (None, "") else None
    return None if "{" in text else text


class Readiness:
    """Each painter's readiness for a model, checked in parallel and remembered for ``ttl``."""

    def __init__(self, factories: Mapping[str, ImageBackendFactory], ttl: float = TTL_S) -> None:
        self.factories = factories
        self.ttl = ttl
        self._known: dict[tuple[str, str | None], tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def status(self, name: str, model: str | None) -> str | None:
        """None when ``name`` can paint ``model`` now, else why not (see ``ImageBackendFactory``)."""
        key = (name, model)
        with self._lock:
            known = self._known.get(key)
        if known is not None and time.monotonic() - known[0] < self.ttl:
            return known[1]
        factory = self.factories.get(name)
        if factory is None:
            status: str | None = "not installed (see `lollms plugins`)"
        elif factory.ready is None:
            status = "unknown: this painter cannot tell before it paints"
        else:
            try:
                status = factory.ready(model)
            except Exception as exc:  # a plugin's check must not break the page
                status = f"unknown: its check failed ({type(exc).__name__})"
        with self._lock:
            self._known[key] = (time.monotonic(), status)
        return status

    def line(self, pairs: list[tuple[str, str | None]]) -> str:
        """The side column's line for ``pairs`` (empty when there is nothing to paint with)."""
        if not pairs:
            return ""
        with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
            statuses = list(pool.map(lambda pair: self.status(*pair), pairs))
        parts = [
            f"{name} — {'ready' if status is None else status}"
            for (name, _model), status in zip(pairs, statuses, strict=True)
        ]
        return "  \n".join(["**Painters**", *parts])  # one painter a line
