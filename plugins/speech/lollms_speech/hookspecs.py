"""The hook this plugin adds to lollms-runtime's contract: speech backends are plugins too.

A third-party backend implements it with ``@hookimpl(optionalhook=True)`` (the spec is added when
the first ``speak`` step runs, so the host must not refuse the implementation before that).
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("lollms_runtime")


@hookspec
def register_speech_backends(register: Any) -> None:
    """Register speech backends: ``register(SpeechBackend)`` (anything with name and synthesize)."""
