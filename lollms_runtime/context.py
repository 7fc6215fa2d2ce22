"""The public contract of a step runner: the :class:`StepContext` it is given, what a turn runs on
(:class:`Turn`, :class:`Limits`) and the errors it may raise.

A runner is a generator ``run(ctx, body)`` that yields events and *returns* the step's output
(``output = yield from kind.run(ctx, body)``). It uses only what this module offers; the engine
handles ids, ``when``, retries, ``on_error``, limits, cancellation and the trace.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from .backends.base import ChatMessage, ImageBackend, Sampling, TextBackend
from .contracts import PostProcessor, StepKind
from .errors import LollmsError
from .events import ArtifactProduced, Event, ImageProduced, Progress, Reply, Token
from .knowledge.variables import TurnLore
from .personality import Personality
from .pipeline import default_pipeline, defined_names, streamed_ids
from .plugins import PluginHost
from .templating import evaluate, render, render_value

StepGen = Generator[Event, None, Any]


class StepError(LollmsError):
    """A step that failed in a way the user can act on; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class StepFailed(StepError):
    """A step failed and was reported; the steps around it pass it on without re-wrapping it."""


class Cancelled(Exception):
    """The turn was cancelled (Stop button, Ctrl-C)."""


class LimitExceeded(StepError):
    """A turn went past one of its limits (steps, loop iterations, tokens, time)."""


@dataclass(frozen=True)
class Limits:
    max_steps: int = 200
    max_loop_iterations: int = 100
    max_tokens: int = 32768
    step_timeout: float = 600.0
    max_call_depth: int = 4


@dataclass
class Turn:
    """What a turn runs on: the personality, the message, the discussion so far and the settings."""

    personality: Personality
    message: str
    history: Sequence[ChatMessage] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    sampling: Mapping[str, Any] = field(default_factory=dict)  # user overrides from the app/CLI
    discussion_id: str | None = None
    artifacts_dir: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    # Values the steps' templates see from the start (as data, never as template source);
    # ``message``, ``history``, ``settings``, ``personality`` and ``now`` take precedence.
    variables: Mapping[str, Any] = field(default_factory=dict)


class EngineServices(Protocol):
    """What a context needs from the engine that runs it (implemented by ``Engine``)."""

    host: PluginHost
    limits: Limits
    kinds: Mapping[str, StepKind]
    postprocessors: Mapping[str, PostProcessor]

    def text_backend(self, personality: Personality) -> TextBackend: ...

    def image_backend(self, name: str | None, model: str | None) -> ImageBackend: ...

    def find_personality(self, personality_id: str) -> Personality: ...

    def model_note(self, personality: Personality) -> str: ...

    def run_step(self, ctx: StepContext, step: Mapping[str, Any], path: str) -> StepGen: ...


class ModelInfo(Mapping[str, Any]):
    """``model`` in templates: the model this turn runs on, ``{id, backend, parameters}``
    (``parameters``: its size in weights, none when the backend cannot tell, a remote server say),
    so a workflow can say what a small model does badly instead of doing it. Looked up on first
    use: a template that never reads it loads no model."""

    KEYS = ("id", "backend", "parameters")

    def __init__(self, backend: Callable[[], TextBackend]) -> None:
        self._backend = backend
        self._values: dict[str, Any] | None = None

    def _items(self) -> dict[str, Any]:
        if self._values is None:
            backend = self._backend()
            parameters = getattr(backend, "parameters", None)
            self._values = {
                "id": backend.model_id,
                "backend": backend.name,
                "parameters": parameters if isinstance(parameters, int) else None,
            }
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)

    def __repr__(self) -> str:
        return repr(self._items())


@dataclass
class Counters:
    """What a whole turn has used so far (shared by the contexts of its nested calls)."""

    steps: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0


class StepContext:
    """What a step runner sees: the turn, the names defined so far, the backends and helpers."""

    def __init__(self, engine: EngineServices, turn: Turn, depth: int = 0) -> None:
        self._engine = engine
        self.turn = turn
        self.personality = turn.personality
        self.depth = depth
        self.limits = engine.limits
        self.counters = Counters()
        self.variables: dict[str, Any] = dict(turn.variables)
        self.reply: Reply | None = None
        self.last_text: str | None = None  # the last text output: the default input and answer
        self.streamed_ids: set[str] = set()
        self.step_id = ""
        self.step_path = ""
        self.deadline = float("inf")
        self.usage: dict[str, int] = {}
        self.detail = ""  # what the running step wants the trace to say (branch taken, iterations)
        self.settings = turn.personality.resolve_settings(turn.settings)
        self.base: dict[str, Any] = {
            "message": turn.message,
            "history": [{"role": m.role, "content": m.content} for m in turn.history],
            "settings": self.settings,
            "personality": {
                "id": turn.personality.id,
                "name": turn.personality.name,
                "conditioning": turn.personality.conditioning,
                "language": turn.personality.language,
            },
            "model": ModelInfo(lambda: engine.text_backend(turn.personality)),
            "now": datetime.now().astimezone(),
            "lore": TurnLore(self),  # the lorebook entries that fire, computed on first use
        }

    # -- templates and names ---------------------------------------------------------------
    def context(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        ctx = {**self.variables, **self.base}
        if extra:
            ctx.update(extra)
        return ctx

    def render(self, source: str, extra: Mapping[str, Any] | None = None) -> str:
        """``source`` rendered as a Jinja template with the names defined so far (and ``extra``)."""
        return render(source, self.context(extra))

    def value(self, source: Any, extra: Mapping[str, Any] | None = None) -> Any:
        """A value that may be a template (a string holding ``{{ }}``), rendered; others as is."""
        return render_value(source, self.context(extra))

    def evaluate(self, expression: str, extra: Mapping[str, Any] | None = None) -> Any:
        return evaluate(expression, self.context(extra))

    def number(self, body: Mapping[str, Any], key: str, kind: type[int] | type[float]) -> Any:
        """A numeric option that may be written as a template; ``None`` when absent."""
        if key not in body:
            return None
        raw = self.value(body[key])
        if raw is None or raw == "":
            return None
        try:
            return kind(raw)
        except (TypeError, ValueError):
            raise StepError(f"option '{key}' must be a {kind.__name__}, got {raw!r}") from None

    def set(self, name: str, value: Any) -> None:
        """Define ``name`` for later steps (a kind that declares ``defines`` stores its names so)."""
        self.variables[name] = value

    # -- the answer ------------------------------------------------------------------------
    @property
    def visible(self) -> bool:
        """The reply shows this step's output: its tokens are the visible draft of the answer."""
        return self.step_id in self.streamed_ids

    def set_reply(
        self, text: str, images: Sequence[Path] = (), shown: Mapping[str, Any] | None = None
    ) -> Reply:
        """What the user sees at the end of the turn (a kind that declares ``answer``)."""
        self.reply = Reply(text=text, images=tuple(images), shown=dict(shown or {}))
        return self.reply

    # -- events of the running step ----------------------------------------------------------
    def token(self, text: str, visible: bool | None = None) -> Token:
        """A streamed piece of this step's text (visible: default :attr:`visible`)."""
        return Token(text, self.step_id, self.visible if visible is None else visible)

    def progress(self, done: int, total: int, label: str = "progress") -> Progress:
        """How far this step is (``label``: what it is doing, e.g. painting)."""
        return Progress(self.step_id, done, total, label)

    def image(self, path: Path, params: Mapping[str, Any] | None = None) -> ImageProduced:
        return ImageProduced(self.step_id, path, dict(params or {}))

    def artifact(
        self, path: Path, kind: str, mime: str, params: Mapping[str, Any] | None = None
    ) -> ArtifactProduced:
        """A file this step wrote that is not an image (``kind`` "audio", mime "audio/wav"): yield
        it and the recorder keeps it with the answer. Write it under ``turn.artifacts_dir`` (only
        files there are kept and served). ``params={"part": i}`` marks one piece of a file the step
        also yields whole (a spoken sentence before the whole speech)."""
        return ArtifactProduced(self.step_id, path, kind, mime, dict(params or {}))

    # -- backends and registered operations ----------------------------------------------------
    def text_backend(self) -> TextBackend:
        """The personality's text backend; the trace says which model when the personality chose
        it (its recommended_model)."""
        note = self._engine.model_note(self.personality)
        if note and not self.detail:
            self.detail = note
        return self._engine.text_backend(self.personality)

    def image_backend(self, name: str | None = None, model: str | None = None) -> ImageBackend:
        return self._engine.image_backend(name, model)

    @property
    def postprocessors(self) -> Mapping[str, PostProcessor]:
        return self._engine.postprocessors

    @property
    def plugins(self) -> PluginHost:
        """What every plugin registered, and its pluggy manager (``.pm``) for the hooks a plugin
        defines itself (a speech plugin's backends, say)."""
        return self._engine.host

    def sampling(self, overrides: Mapping[str, Any] | None = None) -> Sampling:
        """The personality's sampling, then the user's overrides, then ``overrides``."""
        return self.personality.sampling.merged(self.turn.sampling).merged(overrides)

    # -- limits ------------------------------------------------------------------------------
    def check_cancel(self) -> None:
        """Raise :class:`Cancelled` when the turn was stopped, StepError past the step's time."""
        if self.turn.cancel.is_set():
            raise Cancelled()
        if time.monotonic() > self.deadline:
            raise StepError(
                f"step '{self.step_id}' took longer than its time limit",
                "raise its timeout: or simplify the step",
            )

    def time_left(self) -> float | None:
        """Seconds before this step's time limit (``timeout:``); None when it has none."""
        left = self.deadline - time.monotonic()
        return None if left == float("inf") else left

    def tokens_left(self) -> int:
        """How many tokens the turn may still generate."""
        return self.limits.max_tokens - self.counters.generation_tokens

    def count_tokens(self, prompt: int, generated: int, cached: int = 0) -> None:
        self.counters.prompt_tokens += prompt
        self.counters.generation_tokens += generated
        self.usage["prompt_tokens"] = self.usage.get("prompt_tokens", 0) + prompt
        self.usage["generation_tokens"] = self.usage.get("generation_tokens", 0) + generated
        self.usage["cached_tokens"] = self.usage.get("cached_tokens", 0) + cached
        total = self.counters.prompt_tokens + self.counters.generation_tokens
        if self.counters.generation_tokens > self.limits.max_tokens:
            raise LimitExceeded(
                f"the turn generated more than {self.limits.max_tokens} tokens (total {total})",
                "lower max_tokens in the pipeline, or raise the engine's token limit",
            )

    # -- nested steps ------------------------------------------------------------------------
    def run_steps(self, steps: Sequence[Mapping[str, Any]], path: str) -> StepGen:
        """Run a list of steps in this context (a kind's ``nested`` steps); returns the last output."""
        output: Any = None
        for index, step in enumerate(steps):
            output = yield from self._engine.run_step(self, step, f"{path}[{index}]")
        return output

    def resolve_personality(self, personality_id: str) -> Personality:
        """Another installed personality, by id (StepError when this runtime cannot call one)."""
        return self._engine.find_personality(personality_id)

    def call(
        self,
        steps: Sequence[Mapping[str, Any]] | None = None,
        path: str = "",
        *,
        message: str | None = None,
        personality: Personality | None = None,
    ) -> StepGen:
        """Run ``steps`` (a sub-pipeline of this personality, seeing its names) or ``personality``'s
        pipeline (from scratch, with its default settings) as a nested turn; returns its answer.

        The depth of calls is limited; the nested answer streams visibly when this step's does.
        """
        if self.depth + 1 > self.limits.max_call_depth:
            raise LimitExceeded(
                f"calls nested deeper than {self.limits.max_call_depth} levels",
                "check for "
                + ("sub-pipelines" if personality is None else "personalities")
                + " that call each other in a cycle",
            )
        message = self.turn.message if message is None else message
        if personality is None:
            turn = dataclasses.replace(self.turn, message=message, variables={})
            steps = steps if steps is not None else self.personality.pipeline or default_pipeline()
        else:
            turn = dataclasses.replace(
                self.turn,
                personality=personality,
                message=message,
                settings={},
                discussion_id=None,
                variables={},
            )
            steps = personality.pipeline or default_pipeline()
        child = StepContext(self._engine, turn, self.depth + 1)
        child.counters = self.counters
        if personality is None:
            child.variables.update(self.variables)
        else:
            for name in defined_names(steps, self._engine.kinds):
                child.variables.setdefault(name, None)
        if self.visible:
            child.streamed_ids = streamed_ids(steps, self._engine.kinds)
        where = path or f"{turn.personality.id}.pipeline"
        try:
            output = yield from child.run_steps(steps, where)
        except Cancelled:
            self.last_text = child.last_text or self.last_text  # the partial answer the user saw
            raise
        if child.reply is not None:
            return child.reply.text
        if personality is not None:
            return child.last_text or ""
        return child.last_text if output is None else output
