"""Test-only plugin: implements every hook of lollms-runtime once, through its entry point."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lollms_runtime.backends.base import ChoiceResult, GenerationRequest, TextChunk
from lollms_runtime.context import StepContext, StepGen
from lollms_runtime.contracts import (
    ImageBackendFactory,
    PostProcessor,
    StepKind,
    TextBackendFactory,
)
from lollms_runtime.plugins import hookimpl

# Lifecycle hooks append (hook name, detail) here so tests can see they were called.
EVENTS: list[tuple[str, Any]] = []
# What lollms_step_finished received: (step, result) for each call.
FINISHED: list[tuple[Any, Any]] = []


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


def run_chorus(ctx: StepContext, body: Mapping[str, Any]) -> StepGen:
    """Run the verses (nested steps), then stream the lead and the last verse word by word as
    this step's own tokens; the text is stored under ``name`` (and the step's id)."""
    last = yield from ctx.run_steps(body.get("verses", ()), f"{ctx.step_path}.chorus.verses")
    text = " ".join(part for part in (ctx.render(body["lead"]), str(last or "")) if part)
    for index, word in enumerate(text.split(" ")):
        ctx.check_cancel()
        yield ctx.token(word if index == 0 else f" {word}")
    ctx.set(body["name"], text)
    return text


def chorus_defines(body: Mapping[str, Any]) -> dict[str, str]:
    """The name it sets (made from its lead), and its id like any step."""
    names = {str(body.get("name", "")): str(body.get("lead", ""))}
    if isinstance(body.get("id"), str):
        names[body["id"]] = str(body.get("lead", ""))
    return names


# The parity kind: it defines a name, streams its text into the reply and holds nested steps,
# through the same StepKind declarations the built-in set, generate and loop use.
CHORUS = StepKind(
    name="chorus",
    run=run_chorus,
    summary="Sing the verses, then the lead and the last verse (test plugin).",
    schema={
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "lead"],
        "properties": {
            "name": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                "description": "The name the sung text is stored under.",
            },
            "lead": {"type": "string", "description": "The first line (a template)."},
            "verses": {"$ref": "#/$defs/steps", "description": "Steps sung before the lead."},
        },
    },
    templates=("lead",),
    nested=("verses",),
    defines=chorus_defines,
    text_output=True,
    streams=True,
    example='pipeline:\n  - chorus:\n      name: song\n      lead: "{{ message }}"\n'
    '      verses:\n        - generate: {id: verse}\n  - reply: {text: "{{ song }}"}\n',
)


def reverse(value: Any, args: Any, ctx: Any) -> str:
    return str(value)[::-1]


class EchoBackend:
    """A text backend that answers "[MODEL] MESSAGE": the model it was created for, then the last
    user message (so a test sees which backend and which model a turn ran on)."""

    name = "echo"

    def __init__(self, model: str = "default", **options: Any) -> None:
        self.model_id = model

    def stream(self, request: GenerationRequest, cancel: Any = None) -> Iterator[TextChunk]:
        text = f"[{self.model_id}] {request.messages[-1].content}"
        yield TextChunk(text)
        yield TextChunk("", finish_reason="stop", prompt_tokens=1, generation_tokens=1)

    def generate(self, request: GenerationRequest, cancel: Any = None) -> str:
        return "".join(chunk.text for chunk in self.stream(request, cancel))

    def choose(self, request: GenerationRequest, choices: Sequence[str]) -> ChoiceResult:
        return ChoiceResult(choices[0], 0, {choices[0]: 1.0})


@hookimpl
def register_step_kinds(register: Any) -> None:
    register(SHOUT)
    register(CHORUS)


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
def register_commands(subparsers: Any, common: Any) -> None:
    # ``common``: the options every command shares (--personalities, --model, --backend).
    parser = subparsers.add_parser("test-hello", help="say hello (test plugin)", parents=[common])
    parser.add_argument("who", nargs="?", default="world")
    parser.set_defaults(handler=_hello)


def _hello(args: argparse.Namespace) -> int:
    print(f"hello, {args.who}" + (f" (model {args.model})" if args.model else ""))
    return 0


@hookimpl
def describe_plugin(report: Any) -> None:
    report("Shouting", ["shout: up to 3 times", "chorus: verses sung together"])


@hookimpl
def lollms_startup(runtime: Any) -> None:
    EVENTS.append(("lollms_startup", runtime))


@hookimpl
def lollms_turn_started(turn: Any) -> None:
    EVENTS.append(("lollms_turn_started", turn.message))


@hookimpl
def lollms_step_finished(turn: Any, step: Any, result: Any) -> None:
    EVENTS.append(("lollms_step_finished", result.step_id))
    FINISHED.append((step, result))


@hookimpl
def lollms_turn_finished(turn: Any, result: Any) -> None:
    EVENTS.append(("lollms_turn_finished", result.status))
