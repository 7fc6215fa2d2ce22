"""Starts the web app for the browser test: `lollms serve`, or with LOLLMS_SCRIPTED=1 the same app
on scripted backends (for developing the test where no real model is installed)."""

from __future__ import annotations

import os
import sys

from lollms_runtime.cli import main


def scripted(port: int) -> None:
    from lollms_runtime.app.server import launch
    from lollms_runtime.engine import Engine
    from lollms_runtime.runtime import Runtime
    from lollms_runtime.store import Store
    from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

    answer = "Artbot: A neon city at night, with towering skyscrapers glowing in violet light."
    text = ScriptedTextBackend(*([answer] * 50))
    runtime = Runtime()
    runtime.engine = Engine(
        runtime.host, text, ScriptedImageBackend(), resolve_personality=runtime.catalog.get
    )
    launch(runtime, Store(), port=port, sampling={"max_tokens": 24})


if __name__ == "__main__":
    if os.environ.get("LOLLMS_SCRIPTED") == "1":
        scripted(int(sys.argv[1]))
    else:
        sys.exit(main(["serve", "--port", sys.argv[1], "--max-tokens", "24", *sys.argv[2:]]))
