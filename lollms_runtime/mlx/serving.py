"""The callers' side of the batch: admission, then a job's tokens turned into TextChunks.

:class:`Server` is what :class:`~lollms_runtime.mlx.backend.MLXTextBackend` routes ``stream``
and ``choose`` through: it fits the prompt to the context (:mod:`.context_window`), takes a slot
from the turn queue (:mod:`.scheduler`), hands a job to the engine thread (:mod:`.batching`) and
detokenizes what comes back, on the caller's thread.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from queue import Empty, Queue
from typing import Any

from ..backends.base import FinishReason, GenerationRequest, TextChunk
from .batching import BatchEngine, ChooseJob, GenerateJob
from .context_window import context_window, fit_request
from .prompt_cache import PromptCacheStore
from .scheduler import Cancelled, Slot, TurnQueue, WaitingCallback
from .spacing import restore_leading_space
from .stops import StopFilter

log = logging.getLogger(__name__)
_POLL_S = 0.05  # how often a queued call looks at its Stop


class Server:
    """Admission, batching and streaming for one loaded model."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        prompt_cache: PromptCacheStore,
        name: str = "the model",
        max_running: int = 8,
        max_waiting: int = 16,
        prefill_chunk: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.prompt_cache = prompt_cache
        self.queue = TurnQueue(max_running, max_waiting, name=name)
        self.engine = BatchEngine(model, tokenizer, prompt_cache, prefill_chunk=prefill_chunk)
        # Prompts longer than this are trimmed or refused (see context_window.py); settable.
        self.context_window = context_window(model)
        self._vocabulary: int | None = None  # read when a request first names token ids

    def stream(
        self,
        request: GenerationRequest,
        cancel: threading.Event | None = None,
        waiting: WaitingCallback | None = None,
    ) -> Iterator[TextChunk]:
        """Yield the answer as it is generated; see :meth:`MLXTextBackend.stream`."""
        self.check(request)
        fitted = fit_request(request, self.tokenizer, self.context_window)
        if fitted.notice:
            log.warning("%s", fitted.notice)
        tokens = fitted.tokens
        if cancel is not None and cancel.is_set():
            yield TextChunk("", finish_reason="cancelled", prompt_tokens=len(tokens))
            return
        admitted: list[tuple[Slot, bool]] = []
        try:
            # While the call waits for a slot, chunks with ``waiting=N`` say where it stands.
            yield from self._admit(request, cancel, waiting, admitted)
        except Cancelled:
            yield TextChunk("", finish_reason="cancelled", prompt_tokens=len(tokens))
            return
        slot, own = admitted[0]
        try:
            chunks = self._generate(fitted.request, tokens, cancel, fitted.notice)
            yield from _with_leading_space(chunks, self.tokenizer, fitted.request.answer_prefix)
        finally:
            if own:
                self.queue.release(slot)

    def choose(self, request: GenerationRequest, choices: Sequence[str]) -> list[float]:
        """The log-probability of each choice following ``request``'s prompt."""
        tokens = fit_request(request, self.tokenizer, self.context_window).tokens
        slot, own = self._slot(request, None, None)
        try:
            cache, cached = self.prompt_cache.fetch(tokens)
            job = ChooseJob(tokens=tokens, cache=cache, cached=cached, choices=tuple(choices))
            self.engine.submit(job)
            kind, value, _ = self.engine.receive(job)
            if kind == "error":
                raise value
            return list(value)
        finally:
            if own:
                self.queue.release(slot)

    def check(self, request: GenerationRequest) -> None:
        """Refuse what would break the batch, with a message a person can act on."""
        bias = request.sampling.logit_bias or {}
        if not bias:
            return
        if self._vocabulary is None:  # the tokenizer's whole vocabulary: ~40 ms, so read once
            self._vocabulary = _vocabulary_size(self.tokenizer)
        vocabulary = self._vocabulary
        for token in bias:
            if not 0 <= int(token) < vocabulary:
                raise ValueError(
                    f"logit_bias names token id {token}, outside the model's vocabulary "
                    f"(0..{vocabulary - 1})"
                )

    def _admit(
        self,
        request: GenerationRequest,
        cancel: threading.Event | None,
        waiting: WaitingCallback | None,
        admitted: list[tuple[Slot, bool]],
    ) -> Iterator[TextChunk]:
        """Take a slot (appended to ``admitted``); while queued, yield ``waiting`` chunks."""
        current = self.queue.current()
        if current is not None:
            admitted.append((current, False))
            return
        queue = self.queue
        if queue.running < queue.max_running and queue.waiting == 0:  # free: no wait to report
            admitted.append((queue.acquire(request.cache_key, waiting, cancel), True))
            return
        positions: Queue[int] = Queue()
        outcome: list[Slot | BaseException] = []
        give_up = threading.Event()  # the turn's Stop, or a caller that let go of the stream

        def told(position: int) -> None:
            positions.put(position)
            if waiting is not None:
                waiting(position)

        def acquire() -> None:
            try:
                outcome.append(queue.acquire(request.cache_key, told, give_up))
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(exc)
            finally:
                positions.put(0)

        worker = threading.Thread(target=acquire, name="lollms-admit", daemon=True)
        worker.start()
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    give_up.set()
                try:
                    position = positions.get(timeout=_POLL_S)
                except Empty:
                    continue
                if position == 0:
                    break
                yield TextChunk("", waiting=position)
        finally:
            if not outcome:  # left while waiting: withdraw the request
                give_up.set()
            worker.join()
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        admitted.append((result, True))

    def _slot(
        self,
        request: GenerationRequest,
        cancel: threading.Event | None,
        waiting: WaitingCallback | None,
    ) -> tuple[Slot, bool]:
        """The surrounding turn's slot, or one of our own (True: release it when done)."""
        current = self.queue.current()
        if current is not None:
            return current, False
        return self.queue.acquire(request.cache_key, waiting, cancel), True

    def _generate(
        self,
        request: GenerationRequest,
        tokens: list[int],
        cancel: threading.Event | None,
        notice: str,
    ) -> Iterator[TextChunk]:
        sampling = request.sampling
        cache, cached = self.prompt_cache.fetch(tokens)
        job = GenerateJob(
            tokens=tokens,
            cache=cache,
            cached=cached,
            cancel=cancel,
            sampling=sampling,
            stop_words=sampling.stop,
        )
        eos = set(self.tokenizer.eos_token_ids)
        detokenizer = self.tokenizer.detokenizer
        detokenizer.reset()
        stops = StopFilter(sampling.stop)
        finish: FinishReason = "length"
        generated = 0
        start = time.perf_counter()
        first: float | None = None
        self.engine.submit(job)
        try:
            if notice:
                yield TextChunk("", note=notice)
            while True:
                kind, value, reason = self.engine.receive(job)
                if kind == "error":
                    raise value
                if kind == "done":
                    finish = "cancelled"
                    break
                if kind == "scores":  # pragma: no cover - a generate job never scores
                    continue
                token = int(value)
                if first is None:
                    first = time.perf_counter()
                if reason is not None:
                    finish = "stop" if reason == "stop" else "length"
                    if not (reason == "stop" and token in eos):
                        detokenizer.add_token(token)
                        generated += 1
                    detokenizer.finalize()
                    text = stops.feed(detokenizer.last_segment)
                    if stops.stopped:
                        finish = "stop"
                    if text or reason == "length":
                        yield TextChunk(text, token=token)
                    break
                detokenizer.add_token(token)
                generated += 1
                # One chunk per token, even when the detokenizer holds its text back for now:
                # consumers see the first token as soon as it exists.
                yield TextChunk(stops.feed(detokenizer.last_segment), token=token)
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
            job.abandoned.set()  # the engine drops it at its next tick if it still runs
        now = time.perf_counter()
        prompt_time = (first or now) - start
        yield TextChunk(
            "",
            finish_reason=finish,
            prompt_tokens=len(tokens),
            cached_tokens=cached,
            generation_tokens=generated,
            prompt_tps=(len(tokens) - cached) / max(prompt_time, 1e-9),
            generation_tps=generated / max(now - (first or now), 1e-9) if generated else 0.0,
        )


def _vocabulary_size(tokenizer: Any) -> int:
    size = getattr(tokenizer, "vocab_size", None)
    if isinstance(size, int) and size > 0:
        return max(size, len(tokenizer.get_vocab()) if hasattr(tokenizer, "get_vocab") else 0)
    return 1 << 31


def _with_leading_space(
    chunks: Iterator[TextChunk], tokenizer: Any, prefix: str
) -> Iterator[TextChunk]:
    """After an answer prefix (Continue), the first text gets back the space the streaming
    detokenizer trims ("coffee" + " can" must not read "coffeecan")."""
    if not prefix:
        yield from chunks
        return
    first_token: int | None = None
    spaced = False
    try:
        for chunk in chunks:
            if first_token is None and chunk.token is not None:
                first_token = chunk.token
            if not spaced and chunk.text and first_token is not None:
                spaced = True
                text = restore_leading_space(tokenizer, first_token, chunk.text, prefix)
                chunk = dataclasses.replace(chunk, text=text)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # the job is abandoned at once when the caller stops early
