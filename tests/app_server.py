"""Starts the web app for the browser test: `lollms serve`, or with LOLLMS_SCRIPTED=1 the same app
on scripted backends (for developing the test where no real model is installed): two models that
answer differently, and a painter that is missing unless the default one is chosen."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

from lollms_runtime.cli import main

PROMPTS = os.environ.get("LOLLMS_SCRIPTED_PROMPTS", "")
SLOW_S = float(os.environ.get("LOLLMS_SCRIPTED_DELAY", "0.15"))  # per token: Stop has time to act


def scripted(port: int) -> None:
    from lollms_runtime.app.server import launch
    from lollms_runtime.engine import Engine
    from lollms_runtime.runtime import Runtime
    from lollms_runtime.store import Store
    from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

    answers = {
        "default": "Artbot: A neon city at night, with towering skyscrapers glowing in violet "
        "light, rain on the streets and a lone cyclist crossing a bridge of light.",
        "scripted-b": "Model B here: a quiet harbour at dawn, boats resting in silver water.",
    }

    class Recorded(ScriptedTextBackend):
        """Writes what the model was given to $LOLLMS_SCRIPTED_PROMPTS (one JSON line each), so
        a browser test can see what reached it (e.g. the passages of an attached file)."""

        def stream(self, request: Any, cancel: Any = None) -> Any:
            if PROMPTS:
                with open(PROMPTS, "a", encoding="utf-8") as out:
                    out.write(json.dumps([m.content for m in request.messages]) + "\n")
            return super().stream(request, cancel)

    text = {name: Recorded(*([answer] * 500)) for name, answer in answers.items()}
    for backend in text.values():
        backend.on_chunk = lambda emitted: time.sleep(SLOW_S)
    painter = ScriptedImageBackend()
    missing = ScriptedImageBackend(
        fail_with="no AUTOMATIC1111 server answers at http://127.0.0.1:7861: start it with "
        "--api, or choose the mlx-diffusion painter and run `lollms models pull "
        "stabilityai/sd-turbo`"
    )

    runtime = Runtime()

    def text_backend(personality: Any = None, model: str | None = None) -> Any:
        return text[model or runtime.model]

    def image_backend(name: str | None = None, model: str | None = None) -> Any:
        return painter if name in (None, "", "mlx-diffusion") else missing

    # The side column's painters line agrees with what paints here: the default painter is ready.
    factories = runtime.host.image_backends
    factories["mlx-diffusion"] = dataclasses.replace(
        factories["mlx-diffusion"], ready=lambda model: None
    )
    runtime.text_backend = text_backend  # type: ignore[method-assign]
    runtime.image_backend = image_backend  # type: ignore[method-assign]
    runtime.engine = Engine(
        runtime.host, text_backend, image_backend, resolve_personality=runtime.catalog.get
    )
    launch(runtime, Store(), port=port, sampling={"max_tokens": 24}, models=list(answers))


if __name__ == "__main__":
    if os.environ.get("LOLLMS_SCRIPTED") == "1":
        scripted(int(sys.argv[1]))
    else:
        sys.exit(main(["serve", "--port", sys.argv[1], "--max-tokens", "24", *sys.argv[2:]]))
