"""The contracts between the engine and the model backends (text and image).

Backends are registered by plugins through ``register_text_backends`` and
``register_image_backends``; the engine only ever talks to these protocols.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "cancelled"]
ContextPolicy = Literal["drop_oldest", "refuse"]


@dataclass(frozen=True)
class Sampling:
    """How a model samples; every field maps onto mlx-lm's sampler or logits processors."""

    temperature: float = 0.7
    top_k: int = 0  # 0 disables top-k
    top_p: float = 1.0  # 1.0 disables nucleus sampling
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    repetition_context_size: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logit_bias: Mapping[int, float] | None = None

    def merged(self, overrides: Mapping[str, Any] | None) -> Sampling:
        """A copy with the non-None values of ``overrides`` applied (unknown keys are ignored)."""
        if not overrides:
            return self
        names = {f.name for f in fields(self)}
        changes = {k: v for k, v in overrides.items() if k in names and v is not None}
        if "stop" in changes:
            changes["stop"] = tuple(changes["stop"])
        return replace(self, **changes)


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class Prefixes:
    """LoLLMs-style prompt format, used instead of the tokenizer's chat template when set."""

    user_prefix: str = "### User:\n"
    ai_prefix: str = "### Assistant:\n"
    link_text: str = "\n"
    system_prefix: str = ""


@dataclass(frozen=True)
class GenerationRequest:
    """One model call. ``messages`` are formatted by the backend (chat template or ``prefixes``);
    ``raw_prompt``, when set, is sent verbatim instead."""

    messages: Sequence[ChatMessage]
    sampling: Sampling = field(default_factory=Sampling)
    prefixes: Prefixes | None = None
    raw_prompt: str | None = None
    # Text the answer is known to start with (prefilled after the assistant header), e.g. "Continue".
    answer_prefix: str = ""
    # Identifies a discussion so the backend may keep its KV cache between turns.
    cache_key: str | None = None
    # What to do when the prompt does not fit the model's context: drop the oldest turns of the
    # history, or refuse (the personality's ``context_policy``).
    context_policy: ContextPolicy = "drop_oldest"


@dataclass(frozen=True)
class TextChunk:
    """A piece of streamed text. The last chunk of a stream carries ``finish_reason`` and stats."""

    text: str
    token: int | None = None
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose prefill was skipped thanks to a cache
    generation_tokens: int = 0
    prompt_tps: float = 0.0
    generation_tps: float = 0.0
    # What the step's trace should say about this call: a field the endpoint refused, or the
    # oldest messages left out to fit the model's context (set on the first or last chunk).
    note: str = ""
    # Set (with no text) while the call waits for the model: its place in the queue, 1 is next.
    waiting: int = 0


@dataclass(frozen=True)
class ChoiceResult:
    """The answer to a model-judged question: the chosen option and every option's probability."""

    choice: str
    index: int
    probabilities: Mapping[str, float]
    method: str = ""  # how the choice was made, for the trace (e.g. "first-token logprobs")

    @property
    def probability(self) -> float:
        return self.probabilities[self.choice]


@runtime_checkable
class TextBackend(Protocol):
    """A loaded text model. Implementations must be safe to call from one thread at a time.

    A backend that knows its model's size sets ``parameters`` (an int; templates read it as
    ``model.parameters``); it is optional, and absent counts as unknown."""

    name: str
    model_id: str

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[TextChunk]:
        """Yield the answer as it is generated; stop strings never leak into the text."""
        ...

    def choose(self, request: GenerationRequest, choices: Sequence[str]) -> ChoiceResult:
        """Pick one of ``choices`` as the answer to ``request`` from the model's scores."""
        ...


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 20
    guidance: float = 7.5
    seed: int | None = None
    count: int = 1
    model: str | None = None


@dataclass(frozen=True)
class GeneratedImage:
    """A PNG and the parameters that made it (written into the PNG text metadata when saved)."""

    png: bytes
    width: int
    height: int
    params: Mapping[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[int, int], None]  # (step done, total steps)


@runtime_checkable
class ImageBackend(Protocol):
    name: str
    model_id: str

    def generate(
        self,
        request: ImageRequest,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        """Paint ``request.count`` images."""
        ...


class BackendUnavailable(RuntimeError):
    """A backend cannot run here (no weights, no server); the message says what to do."""


class BackendBusy(RuntimeError):
    """The model runs and queues as many turns as it takes; try again after ``retry_after`` s.

    Front ends map it to HTTP 503 with ``Retry-After`` or to a message in the app.
    """

    def __init__(
        self, message: str, retry_after: float = 5.0, running: int = 0, waiting: int = 0
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.running = running
        self.waiting = waiting
        self.hint = f"try again in {max(1, round(retry_after))} s"


class PromptTooLong(ValueError):
    """The prompt does not fit the model's context and the policy refuses to trim it."""
