"""MLXTextBackend: streaming generation and model-judged choices on one shared mlx-lm model."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ..backends.base import ChoiceResult, GenerationRequest, TextChunk
from .models import DEFAULT_MODEL, LoadedModel, load_model
from .prompt_cache import PromptCacheStore, cache_length
from .prompts import encode, prompt_text
from .scheduler import TurnQueue, WaitingCallback
from .serving import Server


class MLXTextBackend:
    """A :class:`~lollms_runtime.backends.base.TextBackend` over an mlx-lm model.

    Many users at once: every call runs in one continuous batch on the model's engine thread
    (:mod:`.batching`), admitted by a bounded fair queue (:mod:`.scheduler`); the KV caches of
    previous calls are reused for any prompt that starts with what they hold.
    """

    name = "mlx"

    def __init__(
        self,
        loaded: LoadedModel,
        max_cached_prompts: int = 16,
        max_cache_bytes: int = 2 << 30,
        max_running: int = 8,
        max_waiting: int = 16,
        prefill_chunk: int | None = None,
    ) -> None:
        from mlx_lm.utils import get_total_parameters

        self.loaded = loaded
        self.model_id = loaded.spec
        # Quantized weights counted unpacked; read by templates as model.parameters.
        self.parameters: int = int(get_total_parameters(loaded.model))  # type: ignore[no-untyped-call]
        self.prompt_cache = PromptCacheStore(loaded.model, max_cached_prompts, max_cache_bytes)
        self.server = Server(
            loaded.model,
            loaded.tokenizer,
            self.prompt_cache,
            name=f"model {loaded.spec!r}",
            max_running=max_running,
            max_waiting=max_waiting,
            prefill_chunk=prefill_chunk,
        )

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    @property
    def turns(self) -> TurnQueue:
        """The admission queue: ``with backend.turns.turn(owner, waiting=cb, cancel=ev):`` holds
        one slot for a whole turn (its generations and choices), reports the waiting position
        and raises :class:`~lollms_runtime.backends.base.BackendBusy` when full."""
        return self.server.queue

    def prompt_tokens(self, request: GenerationRequest) -> list[int]:
        """The token ids of the prompt ``request`` turns into."""
        return encode(prompt_text(request, self.tokenizer), self.tokenizer)

    def stream(
        self,
        request: GenerationRequest,
        cancel: threading.Event | None = None,
        waiting: WaitingCallback | None = None,
    ) -> Iterator[TextChunk]:
        """Yield the answer as it is generated; the last chunk has finish_reason and stats.

        ``waiting(position)`` is called while the call waits for a slot (outside a
        :attr:`turns` block). Raises BackendBusy when the queue is full and PromptTooLong when
        the prompt does not fit the context under the request's ``context_policy``.
        """
        return self.server.stream(request, cancel, waiting)

    def generate(self, request: GenerationRequest, cancel: threading.Event | None = None) -> str:
        """The whole answer as one string (a join over :meth:`stream`)."""
        return "".join(chunk.text for chunk in self.stream(request, cancel))

    def choose(self, request: GenerationRequest, choices: Sequence[str]) -> ChoiceResult:
        """Pick the choice the model scores highest as the continuation of ``request``'s prompt."""
        if not choices:
            raise ValueError("choose() needs at least one choice")
        forms = [spellings(c, choices) for c in choices]
        scores = iter(self.server.choose(request, [f for fs in forms for f in fs]))
        return _result(choices, [_logsumexp([next(scores) for _ in fs]) for fs in forms])

    def cache_length(self, cache: list[Any]) -> int:
        return cache_length(cache)


def spellings(choice: str, choices: Sequence[str]) -> list[str]:
    """The ways the model may write ``choice``: as written, and with its first letter in the other
    case (options are written in lower case, and a model starts its answer with a capital: scored
    as written only, "Translate" counted for none of the options and the first-listed one won
    whatever was asked), unless that spelling is an option of its own."""
    other = choice[:1].swapcase() + choice[1:]
    return [choice] if other == choice or other in choices else [choice, other]


def _logsumexp(values: Sequence[float]) -> float:
    import math

    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _result(choices: Sequence[str], scores: Sequence[float]) -> ChoiceResult:
    import math

    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    total = sum(weights)
    probabilities: dict[str, float] = {}
    for choice, weight in zip(choices, weights, strict=True):
        probabilities[choice] = probabilities.get(choice, 0.0) + weight / total
    index = max(range(len(scores)), key=lambda i: scores[i])
    return ChoiceResult(choice=choices[index], index=index, probabilities=probabilities)


def shared_backend(
    model: str = DEFAULT_MODEL, dtype: str = "auto", **options: Any
) -> MLXTextBackend:
    """The one backend for ``model`` in this process (created on first use; the runtime's cache
    and this one are the same: :mod:`lollms_runtime.backends.shared`)."""
    from ..backends.shared import shared

    extra = {"dtype": dtype} if dtype != "auto" else {}
    key = ("text", "mlx", model, tuple(sorted({**extra, **options}.items())))
    return shared(key, lambda: MLXTextBackend(load_model(model, dtype), **options))
