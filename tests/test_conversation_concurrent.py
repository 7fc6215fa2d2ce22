"""Several users at once through the conversation service on the real model: each answer saved
whole in its own discussion, a turn cancelled mid-prefill leaves the others intact, and a turn
queued behind others says so (Waiting events) before it runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lollms_runtime.conversation import ConversationService
from lollms_runtime.events import Done, Status, StepStarted, Token, Waiting
from lollms_runtime.runtime import Runtime
from lollms_runtime.store import Store

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "What is the capital of France?",
    "Name a colour of the sky.",
    "Say hello in Spanish.",
    "What is two plus two?",
]
SAMPLING = {"temperature": 0.0, "max_tokens": 16}


@pytest.fixture
def service(mlx_backend: object, tmp_path: Path) -> Any:
    runtime = Runtime(personalities=[ROOT / "personalities"])
    store = Store(tmp_path / "d.sqlite3")
    yield ConversationService(runtime, store)
    store.close()


def _run(turn: Any, events: list[Any]) -> None:
    for event in turn:
        events.append(event)


def test_four_concurrent_turns_are_saved_whole_in_their_own_discussions(service: Any) -> None:
    p = service.runtime.catalog.get("assistant")
    turns = [service.send(p, q, sampling=SAMPLING) for q in QUESTIONS]
    seen: list[list[Any]] = [[] for _ in turns]
    threads = [threading.Thread(target=_run, args=(t, seen[i])) for i, t in enumerate(turns)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert len({t.discussion_id for t in turns}) == 4
    for turn, events, question in zip(turns, seen, QUESTIONS, strict=True):
        assert isinstance(events[-1], Done) and events[-1].status == Status.OK
        streamed = "".join(e.text for e in events if isinstance(e, Token) and e.visible)
        thread = service.history(turn.discussion_id)
        assert [m.role for m in thread] == ["user", "assistant"]
        assert thread[0].content == question
        assert thread[1].status == Status.OK
        assert thread[1].content.strip() == streamed.strip() and streamed.strip()


def test_a_turn_cancelled_mid_prefill_leaves_the_others_whole(service: Any) -> None:
    p = service.runtime.catalog.get("assistant")
    long_message = "Summarise this. " + " ".join(f"word{i}" for i in range(1500))
    long_turn = service.send(p, long_message, sampling=SAMPLING)
    others = [service.send(p, q, sampling=SAMPLING) for q in QUESTIONS[:2]]
    long_events: list[Any] = []
    other_events: list[list[Any]] = [[], []]
    runner = threading.Thread(target=_run, args=(long_turn, long_events))
    runner.start()
    deadline = time.monotonic() + 120
    while not any(isinstance(e, StepStarted) for e in long_events):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    threads = [
        threading.Thread(target=_run, args=(t, other_events[i])) for i, t in enumerate(others)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the long prompt is being read, a chunk at a time
    assert not any(isinstance(e, Token) for e in long_events), "the prefill was already over"
    stopped = time.monotonic()
    assert service.cancel(long_turn.id)
    runner.join(timeout=120)
    took = time.monotonic() - stopped
    for thread in threads:
        thread.join(timeout=600)
    assert isinstance(long_events[-1], Done) and long_events[-1].status == Status.CANCELLED
    assert service.history(long_turn.discussion_id)[-1].status == Status.CANCELLED
    for turn, events in zip(others, other_events, strict=True):
        assert isinstance(events[-1], Done) and events[-1].status == Status.OK
        streamed = "".join(e.text for e in events if isinstance(e, Token) and e.visible)
        assert service.history(turn.discussion_id)[-1].content.strip() == streamed.strip()
    print(f"stop to cancelled during a 1500-word prefill: {took:.2f} s")


def test_a_queued_turn_says_it_waits_then_runs(service: Any, mlx_backend: Any) -> None:
    queue = mlx_backend.turns
    limits = (queue.max_running, queue.max_waiting)
    queue.max_running = 1
    try:
        p = service.runtime.catalog.get("assistant")
        first = service.send(p, "Tell me a story about a cat.", sampling={"max_tokens": 24})
        second = service.send(p, "What is two plus two?", sampling=SAMPLING)
        first_events: list[Any] = []
        second_events: list[Any] = []
        a = threading.Thread(target=_run, args=(first, first_events))
        a.start()
        while not any(isinstance(e, Token) for e in first_events):
            time.sleep(0.02)
        b = threading.Thread(target=_run, args=(second, second_events))
        b.start()
        a.join(timeout=600)
        b.join(timeout=600)
        waits = [e for e in second_events if isinstance(e, Waiting)]
        assert waits and waits[0].position == 1
        first_token = next(i for i, e in enumerate(second_events) if isinstance(e, Token))
        assert second_events.index(waits[0]) < first_token  # said before it ran
        assert isinstance(second_events[-1], Done) and second_events[-1].status == Status.OK
        assert not any(isinstance(e, Waiting) for e in first_events)
    finally:
        queue.max_running, queue.max_waiting = limits
