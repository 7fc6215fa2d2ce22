"""What plugins register: step kinds, post-processing operations and backend factories.

A :class:`StepKind` declares everything the engine and the load-time checks need to know about a
kind: the built-in kinds use exactly these declarations, so a plugin's kind can do all they do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .backends.base import ImageBackend, TextBackend


@dataclass(frozen=True)
class StepProblem:
    """What a kind's ``check`` says is wrong with one step: the loader reports it with
    file:line:col and the path, at ``at`` (keys inside the step's body, e.g. ``("server",)``)."""

    message: str
    hint: str = ""
    at: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class StepKind:
    """A pipeline step kind: its name (the key in YAML), the JSON Schema of its body, and its runner.

    ``run(ctx, body)`` is a generator given a :class:`~lollms_runtime.context.StepContext`: it
    yields events and returns the step's output. ``example`` is a complete YAML pipeline snippet
    shown in the generated reference and checked by the test suite. ``common`` adds the options
    every step shares (id, title, when, on_error, fallback, retries, timeout: see the schema's
    ``step_common``).
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
    # Keys of the body that hold nested step lists, mappings of name -> step list, or lists of
    # branches (mappings whose keys are again among templates, expressions and nested).
    nested: tuple[str, ...] = ()
    # The names a step defines, each with the template text its value is made from ("" when its
    # value is not made from other names). None: the step's ``id`` (for a kind with ``common``),
    # made from the templates under ``output_from``. A runner stores such names with ctx.set().
    defines: Callable[[Mapping[str, Any]], Mapping[str, str]] | None = None
    # Keys whose rendered template becomes the output (post_process: input): the visible draft
    # follows them back to the step that streams.
    output_from: tuple[str, ...] = ()
    # The output is text that later steps take by default (ctx.last_text: the reply's default).
    text_output: bool = False
    # The step streams its own tokens; they are shown as the draft of the answer when the reply
    # shows its output (ctx.visible), or when it is the last such step and there is no reply.
    streams: bool = False
    # The key whose template is the answer the user sees (reply: text): a kind with it is a reply.
    answer: str = ""
    # The output names the branch the step took (condition): `lollms test` checks expected
    # branches against it.
    branches: bool = False
    # Names the nested steps see besides the pipeline's, for a given body (for_each: its item).
    scope: Callable[[Mapping[str, Any]], Iterable[str]] | None = None
    # Keys evaluated after the nested steps ran (loop: while), so they may read what those set.
    after_nested: tuple[str, ...] = ()
    # The key naming a sub-pipeline under ``pipelines:`` (call: pipeline); checked at load time.
    pipeline_ref: str = ""
    # The key holding a list of post-processing operations (post_process: ops).
    operations: str = ""
    # What the schema cannot say, checked each time a personality loads (the schema passed):
    # ``check(body)`` returns :class:`StepProblem` s, e.g. a name the user has not configured.
    # It must be quick and must not touch the network; it runs for every step of the kind.
    check: Callable[[Mapping[str, Any]], Iterable[StepProblem]] | None = None
    # Plumbing (assembling the reply, setting a variable): front ends leave it out of the trace
    # unless it fails or the user asks for every step.
    quiet: bool = False
    # When the step fails or falls back, front ends put this word before its error in the answer
    # itself (e.g. "Not painted"), so the user sees what is missing without opening the trace.
    notice: str = ""
    # The step paints with an image backend: the keys of its body naming the backend and the
    # model (text_to_image: backend, model), so a front end can say whether the painter is ready.
    painter: tuple[str, str] | None = None

    def defined_names(self, body: Mapping[str, Any]) -> dict[str, str]:
        """The names ``body`` defines, each with the template text its value is made from."""
        if self.defines is not None:
            return {str(k): v for k, v in self.defines(body).items()}
        if self.common and isinstance(body.get("id"), str):
            return {body["id"]: " ".join(str(body.get(key, "")) for key in self.output_from)}
        return {}


@dataclass(frozen=True)
class PostProcessor:
    """A post_process operation: ``apply(text, args, context) -> text`` plus the schema of ``args``.

    ``template``: ``args`` is a Jinja template, checked at load time with ``names`` available too.
    """

    name: str
    apply: Callable[..., Any]
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "null"})
    summary: str = ""
    template: bool = False
    names: tuple[str, ...] = ()


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
    """Creates image backends: ``create(model, **options)``. ``ready(model)`` tells without
    painting (bounded: a look on disk, a short request) whether it can paint ``model`` now: None
    when it can, else what is missing and how to fix it, in a few words."""

    name: str
    create: Callable[..., ImageBackend]
    summary: str = ""
    ready: Callable[[str | None], str | None] | None = None
