"""Test-only plugin: implements every hook of lollms-runtime once, through its entry point."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lollms_runtime.contracts import (
    ImageBackendFactory,
    PostProcessor,
    StepKind,
    TextBackendFactory,
)
from lollms_runtime.plugins import hookimpl

# Lifecycle hooks append (hook name, detail) here so tests can see they were called.
EVENTS: list[tuple[str, Any]] = []


def run_shout(ctx: Any, body: Mapping[str, Any]) -> Iterator[Any]:
    """Upper-case the rendered text, repeated ``times`` times."""
    text = str(ctx.render(body["text"])).upper()
    return " ".join([text] * int(body.get("times", 1)))
    yield  # a runner is a generator (it may yield events)


SHOUT = StepKind(
    name="shout",
    run=run_shout,
    summary="Say a text in capitals (test plugin).",
    schema={
        "type": "object",
        "additionalProperties": False,
        "required": ["text"],
        "properties": {
            "text": {"type": "string", "description": "What to shout (a template)."},
            "times": {
                "type": "integer",
                "minimum": 1,
                "maximum": 3,
                "description": "How many times to shout it.",
            },
        },
    },
    templates=("text",),
    example='pipeline:\n  - shout: {id: loud, text: "{{ message }}", times: 2}\n'
    '  - reply: {text: "{{ loud }}"}\n',
)


def reverse(value: Any, args: Any, ctx: Any) -> str:
    return str(value)[::-1]


class EchoBackend:
    """A text backend that answers with the last user message."""

    name = "echo"

    def __init__(self, model: str) -> None:
        self.model_id = model


@hookimpl
def register_step_kinds(register: Any) -> None:
    register(SHOUT)


@hookimpl
def register_postprocessors(register: Any) -> None:
    register(PostProcessor("reverse", reverse, {"type": "null"}, "Reverse the text (test plugin)."))


@hookimpl
def register_text_backends(register: Any) -> None:
    register(TextBackendFactory("echo", EchoBackend, "Echoes the message (test plugin)."))


@hookimpl
def register_image_backends(register: Any) -> None:
    register(ImageBackendFactory("blank", lambda model="": None, "Paints nothing (test plugin)."))


class LettersEmbedding:
    """An embedding backend that counts letters: texts sharing letters are close (test plugin)."""

    identity = "letters"

    def __init__(self, model: str = "", **options: Any) -> None:
        self.calls = 0

    def embed(self, texts: Any) -> list[list[float]]:
        self.calls += len(texts)
        return [[float(t.lower().count(c)) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts]


@hookimpl
def register_embedding_backends(register: Any) -> None:
    from lollms_runtime.knowledge.embeddings import EmbeddingBackendFactory

    register(EmbeddingBackendFactory("letters", LettersEmbedding, "Counts letters (test plugin)."))


@hookimpl
def register_personalities(register: Any) -> None:
    register(Path(__file__).parent / "shouter")


@hookimpl
def register_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser("test-hello", help="say hello (test plugin)")
    parser.add_argument("who", nargs="?", default="world")
    parser.set_defaults(handler=_hello)


def _hello(args: argparse.Namespace) -> int:
    print(f"hello, {args.who}")
    return 0


@hookimpl
def lollms_startup(runtime: Any) -> None:
    EVENTS.append(("lollms_startup", runtime))


@hookimpl
def lollms_turn_started(turn: Any) -> None:
    EVENTS.append(("lollms_turn_started", turn.message))


@hookimpl
def lollms_step_finished(turn: Any, step: Any, result: Any) -> None:
    EVENTS.append(("lollms_step_finished", result.step_id))


@hookimpl
def lollms_turn_finished(turn: Any, result: Any) -> None:
    EVENTS.append(("lollms_turn_finished", result.status))
