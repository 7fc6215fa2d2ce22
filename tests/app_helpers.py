"""Shared by the app tests: a Runtime whose engine runs on the scripted backends."""

from __future__ import annotations

from pathlib import Path

from lollms_runtime.engine import Engine
from lollms_runtime.runtime import Runtime
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

ROOT = Path(__file__).resolve().parent.parent
PERSONALITIES = ROOT / "personalities"


def scripted_runtime(
    text: ScriptedTextBackend, image: ScriptedImageBackend | None = None
) -> Runtime:
    """A runtime over the bundled personalities whose engine uses scripted backends."""
    runtime = Runtime(personalities=[PERSONALITIES])
    painter = image or ScriptedImageBackend()
    runtime.engine = Engine(
        runtime.host,
        lambda *args, **kwargs: text,
        lambda *args, **kwargs: painter,
        resolve_personality=runtime.catalog.get,
    )
    return runtime
