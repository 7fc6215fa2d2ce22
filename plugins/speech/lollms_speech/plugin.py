"""The lollms-runtime plugin: the ``speak`` step kind, the ``register_speech_backends`` hook with
its two built-in backends, and the Narrator example personality."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import pluggy

from lollms_runtime.contracts import StepKind
from lollms_runtime.plugins import hookimpl

from . import hookspecs
from .backends import BUILTIN_BACKENDS, SpeechBackend

DEFAULT_BACKEND = "espeak"
TEMPLATE = {"type": "string", "description": "Jinja2 template."}


def run_speak(ctx: Any, body: Mapping[str, Any]) -> Generator[Any, None, Any]:
    """The ``speak`` runner: reads the step's options from the context, the rest is
    :func:`lollms_speech.speech.speak` (plain arguments)."""
    from lollms_runtime.context import Cancelled, StepError

    from .backends import SpeechCancelled, SpeechError, Voice
    from .speech import Speech, speak

    text = ctx.render(body["text"]) if "text" in body else (ctx.last_text or "")
    voice = Voice(
        voice=ctx.render(body.get("voice", "")).strip(),
        language=ctx.render(body.get("language", "")).strip() or ctx.personality.language or "en",
        speed=ctx.number(body, "speed", float) or 1.0,
    )
    name = ctx.render(body.get("backend", "")).strip() or DEFAULT_BACKEND
    backends = speech_backends(ctx.plugins.pm)
    if name not in backends:
        raise StepError(
            f"no speech backend named {name!r}",
            f"known speech backends: {', '.join(sorted(backends))}",
        )
    folder = ctx.turn.artifacts_dir or scratch_dir()
    try:
        for item in speak(text, backends[name], voice, Path(folder), ctx.step_id, ctx.turn.cancel):
            if isinstance(item, Speech):
                ctx.detail = f"{len(item.parts)} sentence(s), {item.seconds:.1f}s, {name}" + (
                    ", text cut" if item.truncated else ""
                )
                # The whole speech: the file the recorder keeps and front ends play.
                yield ctx.artifact(
                    item.path,
                    "audio",
                    "audio/wav",
                    {"seconds": round(item.seconds, 2), "parts": len(item.parts)},
                )
                return {
                    "audio": str(item.path),
                    "mime": "audio/wav",
                    "seconds": round(item.seconds, 2),
                    "parts": [str(p) for p in item.parts],
                    "backend": name,
                    "voice": voice.voice or voice.language,
                }
            # One sentence, playable at once (params "part": a piece of the whole file to come).
            yield ctx.artifact(
                item.path, "audio", "audio/wav", {"part": item.index + 1, "parts": item.total}
            )
            yield ctx.progress(item.index + 1, item.total, "speaking")
            ctx.check_cancel()  # the step's time limit (timeout:) between two sentences
    except SpeechCancelled:
        raise Cancelled() from None
    except SpeechError as exc:
        raise StepError(str(exc), exc.hint) from None
    raise StepError("the speech backend produced no audio")


def scratch_dir() -> Path:
    """Where audio goes when the turn belongs to no discussion (like unsaved images)."""
    from lollms_runtime.home import artifacts_dir

    return artifacts_dir() / "unsaved"


_BACKENDS: weakref.WeakKeyDictionary[pluggy.PluginManager, dict[str, SpeechBackend]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def speech_backends(pm: pluggy.PluginManager) -> dict[str, SpeechBackend]:
    """Every speech backend the plugins of ``pm`` register, created once per plugin manager.

    The hook is added to ``pm`` here, on first use: lollms-runtime's contract does not know it.
    """
    with _LOCK:
        if pm in _BACKENDS:
            return _BACKENDS[pm]
        if not hasattr(pm.hook, "register_speech_backends"):
            pm.add_hookspecs(hookspecs)
        found: dict[str, SpeechBackend] = {}

        def register(backend: Any) -> None:
            if not isinstance(backend, SpeechBackend):
                raise TypeError(f"expected a speech backend, got {type(backend).__name__}")
            found.setdefault(backend.name, backend)  # the first registration of a name wins

        pm.hook.register_speech_backends(register=register)
        _BACKENDS[pm] = found
        return found


SPEAK = StepKind(
    name="speak",
    run=run_speak,
    summary="Say a text out loud: a WAV file (an artifact), spoken sentence by sentence "
    "(lollms-speech plugin).",
    schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "text": {**TEMPLATE, "description": "What to say; default: the last text output."},
            "voice": {
                **TEMPLATE,
                "description": "Voice (a template): for espeak a language code with an optional "
                "+variant (en-us, en+f3, or +f3 on the language); for piper a voice name.",
            },
            "language": {
                **TEMPLATE,
                "description": "Language (a template, e.g. en, fr, english); "
                "default: the personality's language.",
            },
            "speed": {
                "type": ["number", "string"],
                "minimum": 0.25,
                "maximum": 4,
                "description": "Speaking speed, 1 = normal (a number or a template).",
            },
            "backend": {
                **TEMPLATE,
                "description": "Speech backend: espeak (default, offline) or piper.",
            },
        },
    },
    templates=("text", "voice", "language", "backend"),
    example="""\
settings:
  voice: {type: string, enum: [en-us+f3, en-gb+m3], default: en-us+f3, title: Voice}
pipeline:
  - generate: {id: answer}
  - speak:
      id: spoken
      text: "{{ answer }}"
      voice: "{{ settings.voice }}"
      speed: 1.1
      on_error: continue
  - reply: {text: "{{ answer }}", show: [spoken]}
""",
)


@hookimpl
def register_step_kinds(register: Any) -> None:
    register(SPEAK)


@hookimpl(optionalhook=True)
def register_speech_backends(register: Any) -> None:
    for backend in BUILTIN_BACKENDS:
        register(backend())


@hookimpl
def register_personalities(register: Any) -> None:
    register(Path(__file__).parent / "narrator")
