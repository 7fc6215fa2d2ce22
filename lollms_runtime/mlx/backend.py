"""MLXTextBackend: streaming generation and model-judged choices on one shared mlx-lm model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..backends.base import ChoiceResult, FinishReason, GenerationRequest, TextChunk
from .models import DEFAULT_MODEL, LoadedModel, load_model
from .prompt_cache import PromptCacheStore, cache_length
from .prompts import encode, prompt_text
from .sampling import make_logits_processors, make_sampler
from .spacing import restore_leading_space
from .stops import StopFilter


class MLXTextBackend:
    """A :class:`~lollms_runtime.backends.base.TextBackend` over an mlx-lm model.

    Calls are serialised by a lock (one model, one generation at a time); the KV caches of
    previous calls are reused for any prompt that starts with what they hold.
    """

    name = "mlx"

    def __init__(
        self, loaded: LoadedModel, max_cached_prompts: int = 16, max_cache_bytes: int = 2 << 30
    ) -> None:
        self.loaded = loaded
        self.model_id = loaded.spec
        self.prompt_cache = PromptCacheStore(loaded.model, max_cached_prompts, max_cache_bytes)
        self._lock = threading.Lock()

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    def prompt_tokens(self, request: GenerationRequest) -> list[int]:
        """The token ids of the prompt ``request`` turns into."""
        return encode(prompt_text(request, self.tokenizer), self.tokenizer)

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[TextChunk]:
        """Yield the answer as it is generated; the last chunk has finish_reason and stats."""
        with self._lock:
            yield from self._stream(request, cancel)

    def _stream(
        self, request: GenerationRequest, cancel: threading.Event | None
    ) -> Iterator[TextChunk]:
        import mlx.core as mx
        from mlx_lm import stream_generate

        sampling = request.sampling
        tokens = self.prompt_tokens(request)
        stops = StopFilter(sampling.stop)
        if cancel is not None and cancel.is_set():
            yield TextChunk("", finish_reason="cancelled", prompt_tokens=len(tokens))
            return
        cache, cached = self.prompt_cache.fetch(tokens)
        if sampling.seed is not None:
            mx.random.seed(sampling.seed)
        seen = list(tokens)  # every token fed to the model, to key the cache afterwards
        finish: FinishReason = "length"
        generated = 0
        prompt_tps = generation_tps = 0.0
        start = time.perf_counter()
        try:
            responses = stream_generate(
                self.loaded.model,
                self.tokenizer,
                mx.array(tokens[cached:]),
                max_tokens=max(1, sampling.max_tokens),
                sampler=make_sampler(sampling),
                logits_processors=make_logits_processors(sampling, tokens[:cached]),
                prompt_cache=cache,
            )
            first_token: int | None = None
            spaced = not request.answer_prefix  # the first text after a prefix gets its space
            for response in responses:
                seen.append(int(response.token))
                first_token = int(response.token) if first_token is None else first_token
                piece = response.text
                if not spaced and piece:
                    piece = restore_leading_space(
                        self.tokenizer, first_token, piece, request.answer_prefix
                    )
                    spaced = True
                generated, prompt_tps = response.generation_tokens, response.prompt_tps
                generation_tps = response.generation_tps
                if response.finish_reason is not None:
                    # The closing EOS is counted by mlx-lm but is not part of the answer.
                    finish = "stop" if response.finish_reason == "stop" else "length"
                    text = stops.feed(piece)
                    if stops.stopped:
                        finish = "stop"
                    elif response.finish_reason == "stop":
                        generated -= 1
                    if text or response.finish_reason == "length":
                        yield TextChunk(text, token=int(response.token))
                    break
                # One chunk per token, even when the detokenizer holds its text back for now:
                # consumers see the first token as soon as it exists.
                yield TextChunk(stops.feed(piece), token=int(response.token))
                if stops.stopped:
                    finish = "stop"
                    break
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
            tail = stops.flush()
            if tail:
                yield TextChunk(tail)
        finally:
            self.prompt_cache.store(seen, cache)
        if generated and not generation_tps:
            generation_tps = generated / max(time.perf_counter() - start, 1e-9)
        yield TextChunk(
            "",
            finish_reason=finish,
            prompt_tokens=len(tokens),
            cached_tokens=cached,
            generation_tokens=generated,
            prompt_tps=prompt_tps,
            generation_tps=generation_tps,
        )

    def generate(self, request: GenerationRequest, cancel: threading.Event | None = None) -> str:
        """The whole answer as one string (a join over :meth:`stream`)."""
        return "".join(chunk.text for chunk in self.stream(request, cancel))

    def choose(self, request: GenerationRequest, choices: Sequence[str]) -> ChoiceResult:
        """Pick the choice the model scores highest as the continuation of ``request``'s prompt."""
        from .choose import score_choices

        if not choices:
            raise ValueError("choose() needs at least one choice")
        with self._lock:
            tokens = self.prompt_tokens(request)
            cache, cached = self.prompt_cache.fetch(tokens)
            try:
                scores = score_choices(
                    self.loaded.model, self.tokenizer, tokens, cached, cache, choices
                )
            finally:
                self.prompt_cache.store(tokens, cache)
        return _result(choices, scores)

    def cache_length(self, cache: list[Any]) -> int:
        return cache_length(cache)


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


_backends: dict[tuple[str, str], MLXTextBackend] = {}
_backends_lock = threading.Lock()


def shared_backend(
    model: str = DEFAULT_MODEL, dtype: str = "auto", **options: Any
) -> MLXTextBackend:
    """The one backend for ``model`` in this process (created on first use)."""
    key = (model, dtype)
    with _backends_lock:
        backend = _backends.get(key)
        if backend is None:
            backend = MLXTextBackend(load_model(model, dtype), **options)
            _backends[key] = backend
        return backend
