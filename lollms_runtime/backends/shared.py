"""The one cache of backends in a process: a model loads once, whoever asks for it (the runtimes
of the app, the CLI and the tests, or code that calls a backend module directly)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_backends: dict[tuple[Hashable, ...], Any] = {}
# Re-entrant: a factory that the runtime calls through here may itself ask for a shared backend.
_lock = threading.RLock()


def shared(key: tuple[Hashable, ...], create: Callable[[], T]) -> T:
    """The backend cached under ``key``, made by ``create()`` on first use."""
    with _lock:
        if key not in _backends:
            _backends[key] = create()
        backend: T = _backends[key]
        return backend
