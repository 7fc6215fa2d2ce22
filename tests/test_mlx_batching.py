"""Many users at once on the real embedded model: the continuous batch, Stop, the queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import mlx_fixtures
import pytest

from lollms_runtime.backends.base import (
    BackendBusy,
    ChatMessage,
    GenerationRequest,
    PromptTooLong,
    Sampling,
    TextChunk,
)

pytestmark = pytest.mark.model

mlx_home = mlx_fixtures.mlx_home
mlx_backend = mlx_fixtures.mlx_backend

QUESTIONS = (
    "What is the capital of France?",
    "Name three colors of the rainbow.",
    "Write one sentence about the sea.",
    "What is two plus two?",
)
GREEDY = Sampling(temperature=0.0, max_tokens=16)


def _request(text: str, sampling: Sampling = GREEDY, key: str | None = None) -> GenerationRequest:
    return GenerationRequest(
        messages=[ChatMessage("user", text)], sampling=sampling, cache_key=key or text
    )


@pytest.fixture
def backend(mlx_backend: Any) -> Iterator[Any]:
    """A fresh backend (its own engine, queue and prompt cache) on the shared loaded model."""
    from lollms_runtime.mlx.backend import MLXTextBackend

    yield MLXTextBackend(mlx_backend.loaded, prefill_chunk=64)


def _single_stream_tokens(backend: Any, request: GenerationRequest) -> list[int]:
    """Greedy tokens from mlx-lm's own single-stream generator (no batch, no prompt cache)."""
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    eos = set(backend.tokenizer.eos_token_ids)
    tokens = [
        int(r.token)
        for r in stream_generate(
            backend.loaded.model,
            backend.tokenizer,
            mx.array(backend.prompt_tokens(request)),
            max_tokens=request.sampling.max_tokens,
            sampler=make_sampler(0.0),
        )
    ]
    return [t for t in tokens if t not in eos]


class _Stream(threading.Thread):
    """Consumes one backend.stream in a thread: its chunks, or the error it raised."""

    def __init__(
        self,
        backend: Any,
        request: GenerationRequest,
        cancel: threading.Event | None = None,
        cancel_after: int = 0,
        waiting: Any = None,
    ) -> None:
        super().__init__(daemon=True)
        self.backend, self.request, self.waiting = backend, request, waiting
        self.cancel = cancel or threading.Event()
        self.cancel_after = cancel_after
        self.chunks: list[TextChunk] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for chunk in self.backend.stream(self.request, self.cancel, waiting=self.waiting):
                self.chunks.append(chunk)
                if self.cancel_after and len(self.tokens) >= self.cancel_after:
                    self.cancel.set()
        except BaseException as exc:
            self.error = exc

    @property
    def tokens(self) -> list[int]:
        return [c.token for c in self.chunks if c.token is not None]

    @property
    def text(self) -> str:
        return "".join(c.text for c in self.chunks)

    @property
    def last(self) -> TextChunk:
        return self.chunks[-1]


def _run_all(streams: list[_Stream], timeout: float = 300) -> None:
    for stream in streams:
        stream.start()
    for stream in streams:
        stream.join(timeout)
        assert not stream.is_alive(), "a stream did not finish"


def test_four_concurrent_greedy_turns_equal_single_stream_token_for_token(backend: Any) -> None:
    requests = [_request(q) for q in QUESTIONS]
    expected = [_single_stream_tokens(backend, r) for r in requests]
    streams = [_Stream(backend, r) for r in requests]
    _run_all(streams)
    for stream, want in zip(streams, expected, strict=True):
        assert stream.error is None
        assert stream.tokens == want
        assert stream.last.finish_reason in ("stop", "length")
        assert stream.last.generation_tokens == len(want)
        assert stream.text == backend.tokenizer.decode(want)  # the whole answer, in its stream
    assert backend.server.engine.peak_batch >= 2  # they really shared the batch


def test_a_cancelled_and_a_failed_turn_leave_their_neighbours_untouched(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lollms_runtime.mlx import batching

    marker = {13: 0.0}  # a no-op logit bias marks the request whose processor breaks
    real = batching.make_logits_processors

    def breaking(sampling: Sampling, history: Any = ()) -> Any:
        processors = real(sampling, history)
        if sampling.logit_bias != marker:
            return processors
        calls = [0]

        def boom(tokens: Any, logits: Any) -> Any:
            calls[0] += 1
            if calls[0] == 3:
                raise RuntimeError("boom in a logits processor")
            return logits

        return [*processors, boom]

    monkeypatch.setattr(batching, "make_logits_processors", breaking)
    # Neighbours with short prompts (read first: fewest tokens left) and long answers, still
    # running when the other two join and leave.
    longer = Sampling(temperature=0.0, max_tokens=32)
    neighbours = [_request(q, longer) for q in ("Write a poem.", "Count to twenty.")]
    expected = [_single_stream_tokens(backend, r) for r in neighbours]
    slow = "What is the capital of France? Answer in one full sentence, please."
    cancelled = _Stream(backend, _request(slow, Sampling(temperature=0.0, max_tokens=40)))
    cancelled.cancel_after = 2
    failing_sampling = Sampling(temperature=0.0, max_tokens=16, logit_bias=marker)
    failing = _Stream(backend, _request(f"{QUESTIONS[3]} Answer with a number.", failing_sampling))
    streams = [_Stream(backend, r) for r in neighbours]
    engine = backend.server.engine
    with engine.held():  # all four are taken in by the same tick
        for stream in [*streams, cancelled, failing]:
            stream.start()
        deadline = time.monotonic() + 60
        while engine.queued < 4:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    for stream in [*streams, cancelled, failing]:
        stream.join(300)
    for stream, want in zip(streams, expected, strict=True):
        assert stream.error is None and stream.tokens == want
    assert cancelled.error is None and cancelled.last.finish_reason == "cancelled"
    assert 2 <= len(cancelled.tokens) <= 3
    assert isinstance(failing.error, RuntimeError)
    assert str(failing.error) == "boom in a logits processor"
    assert backend.server.engine.peak_batch >= 3
    assert not backend.server.engine.busy


def test_a_seeded_turn_runs_alone_beside_the_batch_and_stays_reproducible(backend: Any) -> None:
    seeded = _request("Tell me a story.", Sampling(temperature=0.9, max_tokens=12, seed=7))
    alone = _Stream(backend, seeded)
    _run_all([alone])
    greedy = [_request(q) for q in QUESTIONS[:2]]
    expected = [_single_stream_tokens(backend, r) for r in greedy]
    again = _Stream(backend, seeded)
    streams = [_Stream(backend, r) for r in greedy]
    _run_all([again, *streams])
    assert again.tokens == alone.tokens
    for stream, want in zip(streams, expected, strict=True):
        assert stream.tokens == want


def test_a_choice_while_others_generate(backend: Any) -> None:
    streams = [
        _Stream(backend, _request(q, Sampling(temperature=0.0, max_tokens=24)))
        for q in QUESTIONS[:2]
    ]
    # The 135M model starts every bare yes/no answer with "No" ("No, Paris is not in France."):
    # two examples of the answer format first, as in test_mlx_backend.
    shots = GenerationRequest(
        [
            ChatMessage("user", "Is fire hot? Answer yes or no."),
            ChatMessage("assistant", "yes"),
            ChatMessage("user", "Is ice hot? Answer yes or no."),
            ChatMessage("assistant", "no"),
            ChatMessage("user", "Is Paris in France? Answer yes or no."),
        ]
    )
    alone = backend.choose(shots, ["yes", "no"])
    for stream in streams:
        stream.start()
    result = backend.choose(shots, ["yes", "no"])
    for stream in streams:
        stream.join(120)
        assert stream.error is None and stream.last.finish_reason in ("stop", "length")
    assert result.choice == "yes"
    assert result.probabilities["yes"] == pytest.approx(alone.probabilities["yes"], abs=1e-3)


def test_stop_during_a_long_prefill_frees_the_model_within_one_chunk(backend: Any) -> None:
    engine = backend.server.engine
    long_text = "Summarize this. " + " ".join(f"word{i}" for i in range(600))
    request = _request(long_text, Sampling(temperature=0.0, max_tokens=4))
    chunks_needed = len(backend.prompt_tokens(request)) // engine.prefill_chunk
    assert chunks_needed >= 10
    stream = _Stream(backend, request)
    start = engine.ticks
    stream.start()
    deadline = time.monotonic() + 120
    while engine.ticks < start + 3:  # a few chunks in
        assert time.monotonic() < deadline
        time.sleep(0.005)
    at_cancel, chunks = engine.ticks, engine.chunks
    stream.cancel.set()
    stream.join(60)
    _wait_idle(engine)
    # The chunk running when Stop came finishes; the next tick drops the prompt.
    assert engine.chunks - chunks <= 1
    assert engine.ticks - at_cancel <= 2
    assert stream.last.finish_reason == "cancelled" and stream.tokens == []
    assert engine.ticks - start < chunks_needed  # it never prefilled the whole prompt
    follow = _Stream(backend, _request(QUESTIONS[0]))
    _run_all([follow])
    assert follow.tokens == _single_stream_tokens(backend, _request(QUESTIONS[0]))


def _wait_idle(engine: Any) -> None:
    deadline = time.monotonic() + 30
    while engine.busy:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_past_the_queue_limits_a_turn_gets_the_busy_error(mlx_backend: Any) -> None:
    from lollms_runtime.mlx.backend import MLXTextBackend

    backend = MLXTextBackend(mlx_backend.loaded, max_running=1, max_waiting=1)
    positions: list[int] = []
    with backend.turns.turn("first"):
        waiter = _Stream(backend, _request(QUESTIONS[0]), waiting=positions.append)
        waiter.start()
        deadline = time.monotonic() + 10
        while positions != [1]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        refused = _Stream(backend, _request(QUESTIONS[1]))  # another thread: another turn
        _run_all([refused])
        assert isinstance(refused.error, BackendBusy)
        assert str(refused.error).startswith("model 'default' is busy: 1 turns running and 1 ")
        assert refused.chunks == []  # refused at once
        # The waiting call has only said where it stands, nothing has run for it.
        assert [c.waiting for c in waiter.chunks] == [1] and not waiter.chunks[0].text
    waiter.join(120)
    assert waiter.error is None and waiter.last.finish_reason in ("stop", "length")


def test_a_prompt_longer_than_the_context_is_refused_or_trimmed_before_any_prefill(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend.server, "context_window", 96)
    history = [
        ChatMessage("user" if i % 2 == 0 else "assistant", f"message {i} " * 8) for i in range(8)
    ]
    messages = [*history, ChatMessage("user", "What is the capital of France?")]
    refused = GenerationRequest(messages=messages, sampling=GREEDY, context_policy="refuse")
    ticks = backend.server.engine.ticks
    with pytest.raises(PromptTooLong, match="context_policy is 'refuse'"):
        list(backend.stream(refused))
    assert backend.server.engine.ticks == ticks  # nothing ran
    trimmed = GenerationRequest(messages=messages, sampling=GREEDY)
    chunks = list(backend.stream(trimmed))
    assert chunks[0].note.endswith(
        "oldest messages were left out to fit the model's context of 96 tokens "
        "(context_policy: drop_oldest)"
    )
    assert chunks[-1].prompt_tokens <= 96 - 16
    assert chunks[-1].finish_reason in ("stop", "length")


def test_each_discussions_cache_comes_back_under_load(backend: Any) -> None:
    firsts = [_Stream(backend, _request(q)) for q in QUESTIONS]
    _run_all(firsts)
    follow_ups = [
        GenerationRequest(
            messages=[
                ChatMessage("user", q),
                ChatMessage("assistant", first.text),
                ChatMessage("user", "Say it again, shorter."),
            ],
            sampling=GREEDY,
            cache_key=q,
        )
        for q, first in zip(QUESTIONS, firsts, strict=True)
    ]
    expected = [_single_stream_tokens(backend, r) for r in follow_ups]
    seconds = [_Stream(backend, r) for r in follow_ups]
    _run_all(seconds)
    for stream, want, first in zip(seconds, expected, firsts, strict=True):
        assert stream.error is None and stream.tokens == want
        # The first turn's prompt (at least) was not prefilled again.
        assert stream.last.cached_tokens >= first.last.prompt_tokens
