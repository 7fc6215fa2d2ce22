"""The turn queue and the context policy, without a model (no mlx import)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from lollms_runtime.backends.base import (
    BackendBusy,
    ChatMessage,
    GenerationRequest,
    Prefixes,
    PromptTooLong,
    Sampling,
)
from lollms_runtime.mlx.context_window import fit_request, prompt_budget
from lollms_runtime.mlx.scheduler import Cancelled, TurnQueue


def _wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


class _Waiter(threading.Thread):
    """Acquires a slot in a thread and records the positions it was told."""

    def __init__(self, turns: TurnQueue, owner: str, cancel: threading.Event | None = None):
        super().__init__(daemon=True)
        self.turns, self.owner, self.cancel = turns, owner, cancel
        self.positions: list[int] = []
        self.slot: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.slot = self.turns.acquire(self.owner, self.positions.append, self.cancel)
        except BaseException as exc:
            self.error = exc


def test_the_queue_admits_up_to_the_limit_then_queues_then_refuses() -> None:
    turns = TurnQueue(max_running=2, max_waiting=1, name="model 'default'")
    a, b = turns.acquire("a"), turns.acquire("b")
    assert turns.running == 2
    waiter = _Waiter(turns, "c")
    _wait_until(lambda: waiter.positions == [1])
    with pytest.raises(BackendBusy) as refused:
        turns.acquire("d")
    assert str(refused.value) == (
        "model 'default' is busy: 2 turns running and 1 waiting (the most it takes); "
        "try again in a moment"
    )
    assert refused.value.running == 2 and refused.value.waiting == 1
    assert 1 <= refused.value.retry_after <= 60
    turns.release(a)
    waiter.join(5)
    assert waiter.slot is not None and waiter.slot.admitted
    turns.release(b)
    turns.release(waiter.slot)
    assert turns.running == 0 and turns.waiting == 0


def test_waiting_turns_learn_their_position_as_the_queue_moves() -> None:
    turns = TurnQueue(max_running=1, max_waiting=5)
    first = turns.acquire("x")
    w1 = _Waiter(turns, "a")
    _wait_until(lambda: w1.positions == [1])
    w2 = _Waiter(turns, "b")
    _wait_until(lambda: w2.positions == [2])
    turns.release(first)
    w1.join(5)
    _wait_until(lambda: w2.positions == [2, 1])
    turns.release(w1.slot)
    w2.join(5)
    assert w2.slot.admitted
    turns.release(w2.slot)


def test_fairness_an_owner_with_fewer_running_turns_goes_first() -> None:
    turns = TurnQueue(max_running=2, max_waiting=5)
    hog1 = turns.acquire("hog")
    other = turns.acquire("other")
    hog_waiter = _Waiter(turns, "hog")  # arrived first
    _wait_until(lambda: hog_waiter.positions == [1])
    fresh = _Waiter(turns, "fresh")  # arrived second but runs nothing yet
    _wait_until(lambda: fresh.positions == [1])  # it overtook the hog at once
    _wait_until(lambda: hog_waiter.positions == [1, 2])
    turns.release(other)
    fresh.join(5)
    assert fresh.slot is not None and fresh.slot.admitted
    assert hog_waiter.slot is None
    for slot in (hog1, fresh.slot):
        turns.release(slot)
    hog_waiter.join(5)
    turns.release(hog_waiter.slot)


def test_a_cancelled_waiting_turn_leaves_the_queue() -> None:
    turns = TurnQueue(max_running=1, max_waiting=2)
    held = turns.acquire("a")
    cancel = threading.Event()
    waiter = _Waiter(turns, "b", cancel)
    _wait_until(lambda: waiter.positions == [1])
    cancel.set()
    waiter.join(5)
    assert isinstance(waiter.error, Cancelled)
    assert turns.waiting == 0
    turns.release(held)
    assert turns.running == 0


def test_a_turn_block_is_shared_by_the_calls_inside_it() -> None:
    turns = TurnQueue(max_running=1, max_waiting=0)
    with turns.turn("a") as outer:
        assert turns.current() is outer
        with turns.turn("a") as inner:  # reentrant: no second slot needed
            assert inner is outer
        with pytest.raises(BackendBusy):
            turns.acquire("b")
    assert turns.current() is None and turns.running == 0


def test_the_queue_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="max_running must be >= 1"):
        TurnQueue(max_running=0)


class _WordTokenizer:
    """One token per whitespace-separated word; no chat template (prefixes are used)."""

    bos_token = None
    chat_template = None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [len(word) for word in text.split()]


def _chat(count: int, words: int, max_tokens: int = 10, policy: Any = "drop_oldest") -> Any:
    messages = [ChatMessage("system", "be brief")]
    for i in range(count):
        role = "user" if i % 2 == 0 else "assistant"
        messages.append(ChatMessage(role, " ".join([f"w{i}"] * words)))
    return GenerationRequest(
        messages=messages,
        sampling=Sampling(max_tokens=max_tokens),
        prefixes=Prefixes(user_prefix="U: ", ai_prefix="A: "),
        context_policy=policy,
    )


def test_a_prompt_that_fits_is_left_alone() -> None:
    request = _chat(3, 5)
    fitted = fit_request(request, _WordTokenizer(), window=100)
    assert fitted.request is request and fitted.notice == ""


def test_drop_oldest_leaves_out_the_fewest_oldest_messages_and_says_so() -> None:
    # 7 messages of 10 words (+1 prefix token each), system "be brief" (2), final "A:" (1).
    request = _chat(7, 10)
    fitted = fit_request(request, _WordTokenizer(), window=60)
    assert prompt_budget(60, 10) == 50
    assert len(fitted.tokens) <= 50
    kept = fitted.request.messages
    assert kept[0].role == "system" and kept[-1] == request.messages[-1]
    assert kept[1].role == "user"  # never starts the history on an assistant message
    assert kept[1:] == tuple(request.messages[-len(kept) + 1 :])
    assert fitted.notice == (
        "the 4 oldest messages were left out to fit the model's context of 60 tokens "
        "(context_policy: drop_oldest)"
    )


def test_refuse_says_what_happened_and_what_to_do() -> None:
    with pytest.raises(PromptTooLong) as refused:
        fit_request(_chat(7, 10, policy="refuse"), _WordTokenizer(), window=60)
    assert str(refused.value) == (
        "the prompt is 80 tokens but the model's context of 60 tokens leaves 50 for it "
        "(10 are kept for the answer); the personality's context_policy is 'refuse': "
        "shorten the message or start a new discussion"
    )


def test_a_message_too_long_alone_is_refused_even_under_drop_oldest() -> None:
    with pytest.raises(PromptTooLong, match="even without the history the prompt is 64 tokens"):
        fit_request(_chat(3, 60), _WordTokenizer(), window=60)
