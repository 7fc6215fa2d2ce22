"""The app's Continue, switching between versions of a message, and painting progress."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from app_helpers import PERSONALITIES

from lollms_runtime.app.turns import Chat
from lollms_runtime.conversation import ConversationService
from lollms_runtime.engine import Engine
from lollms_runtime.runtime import Runtime
from lollms_runtime.store import Store
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

Rig = tuple[Chat, ScriptedTextBackend]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    text = ScriptedTextBackend()
    runtime = Runtime(personalities=[PERSONALITIES])
    runtime.engine = Engine(
        runtime.host, text, ScriptedImageBackend(), resolve_personality=runtime.catalog.get
    )
    return Chat(ConversationService(runtime, Store(tmp_path / "d.sqlite3"))), text


def _send(chat: Chat, message: str, max_tokens: int = 64, did: str | None = None) -> str:
    p = chat.service.runtime.catalog.get("assistant")
    turns = chat.send(
        p,
        message,
        discussion_id=did,
        settings={},
        sampling={"max_tokens": max_tokens},
        cancel=threading.Event(),
    )
    return list(turns)[-1][0]


def _continue(chat: Chat, did: str, cancel: threading.Event | None = None) -> list[object]:
    p = chat.service.runtime.catalog.get("assistant")
    turns = chat.continue_(p, did, settings={}, sampling={}, cancel=cancel or threading.Event())
    return [shown for _did, shown in turns]


def test_continue_extends_an_answer_cut_at_max_tokens(rig: Rig) -> None:
    chat, text = rig
    text.enqueue("one two three four five six seven")
    did = _send(chat, "Count to seven with {{ braces }}.", max_tokens=3)
    answer = chat.service.store.thread(did)[-1]
    assert (answer.content, answer.status) == ("one two three", "ok")
    first_request = text.history[-1]

    text.enqueue(" four five {{ six }}")  # a model goes on with the space
    shown = _continue(chat, did)
    request = text.history[-1]
    assert request.answer_prefix == "one two three"
    # Same user message and the same history before it (here: none) as the first request.
    assert request.messages == first_request.messages
    assert request.messages[-1].content == "Count to seven with {{ braces }}."
    thread = chat.service.store.thread(did)
    assert len(thread) == 2  # the same answer grew: no new message
    grown = thread[-1]
    assert grown.id == answer.id and grown.status == "ok"
    assert grown.content == "one two three four five {{ six }}"
    # While it streamed, the chat showed the old text and then the new words after it.
    texts = [m["content"] for s in shown for m in s.messages if m["role"] == "assistant"]  # type: ignore[attr-defined]
    assert any(t == "one two three four" for t in texts)
    assert not any("one two threeone" in str(t) for t in texts)  # the prefix is not doubled
    # The answer's steps now include the continuing generate.
    kinds = [s.kind for s in chat.service.store.steps(grown.id)]
    assert kinds.count("generate") == 2


def test_continue_a_stopped_answer_and_an_interrupted_one(rig: Rig, tmp_path: Path) -> None:
    chat, text = rig
    cancel = threading.Event()
    text.enqueue("alpha beta gamma delta epsilon")
    text.on_chunk = lambda n: cancel.set() if n == 2 else None
    p = chat.service.runtime.catalog.get("assistant")
    did = list(
        chat.send(p, "Greek letters.", discussion_id=None, settings={}, sampling={}, cancel=cancel)
    )[-1][0]
    stopped = chat.service.store.thread(did)[-1]
    assert stopped.status == "cancelled" and stopped.content == "alpha beta"
    text.on_chunk = None
    text.enqueue(" gamma delta")
    _continue(chat, did)
    answer = chat.service.store.get_message(stopped.id)
    assert (answer.status, answer.content) == ("ok", "alpha beta gamma delta")
    assert text.history[-1].answer_prefix == "alpha beta"

    # Stopped again while continuing: what came so far is kept, status cancelled.
    cancel = threading.Event()
    text.enqueue(" epsilon zeta eta theta")
    text.on_chunk = lambda n: cancel.set() if n == 2 else None  # "", " epsilon"
    shown = _continue(chat, did, cancel)
    answer = chat.service.store.get_message(stopped.id)
    assert answer.status == "cancelled"
    assert answer.content == "alpha beta gamma delta epsilon"
    assert shown[-1].messages[-1]["content"] == "*(stopped)*"  # type: ignore[attr-defined]

    # An answer whose writer went away (closed mid-answer) is interrupted: it continues too.
    other = Store(chat.service.store.path)
    did2 = other.create_discussion("assistant").id
    other.add_message(did2, "user", "Half a sentence.")
    half = other.begin_answer(did2)
    other.append_answer(half, "This is half")
    other.close()
    assert chat.service.store.get_message(half).status == "interrupted"
    text.on_chunk = None
    text.enqueue(" a sentence.")
    _continue(chat, did2)
    answer = chat.service.store.get_message(half)
    assert (answer.status, answer.content) == ("ok", "This is half a sentence.")


def test_nothing_to_continue_is_said(rig: Rig) -> None:
    chat, _text = rig
    did = chat.service.store.create_discussion("assistant").id
    chat.service.store.add_message(did, "user", "Hello?")
    with pytest.raises(Exception, match="nothing to continue"):
        _continue(chat, did)


def test_switching_between_regenerated_answers_and_edited_messages(rig: Rig) -> None:
    chat, text = rig
    p = chat.service.runtime.catalog.get("assistant")
    text.enqueue("First answer.", "Second answer.", "Edited answer.")
    did = _send(chat, "Say hello.")
    assert chat.versions(did) == {}
    list(chat.regenerate(p, did, settings={}, sampling={}, cancel=threading.Event()))
    version = chat.versions(did)["assistant"]
    assert (version.label, "user" in chat.versions(did)) == ("2/2", False)

    chat.switch(did, "assistant", -1)
    assert chat.service.store.thread(did)[-1].content == "First answer."
    assert chat.versions(did)["assistant"].label == "1/2"
    shown = chat.show(p, did)
    # The answer, then its counter on it (drawn only: the stored answer has no counter).
    assert shown.messages[-2]["content"] == "First answer."
    counter = shown.messages[-1]["content"]
    assert 'class="lollms-versions lollms-versions-assistant"' in counter and " 1/2 " in counter
    assert shown.ids[-1] == shown.ids[-2] == chat.service.store.thread(did)[-1].id
    chat.switch(did, "assistant", +1)
    assert chat.service.store.thread(did)[-1].content == "Second answer."

    user = chat.service.store.thread(did)[0]
    list(chat.edit(p, did, user.id, "Say bye.", settings={}, sampling={}, cancel=threading.Event()))
    found = chat.versions(did)
    assert found["user"].label == "2/2" and "assistant" not in found
    # The edited message shows its counter under it (not editable: no message id).
    shown = chat.show(p, did)
    at = shown.messages.index({"role": "user", "content": "Say bye."})
    assert "lollms-versions-user" in shown.messages[at + 1]["content"]
    assert " 2/2 " in shown.messages[at + 1]["content"] and shown.ids[at + 1] is None
    assert sum("lollms-versions" in str(m["content"]) for m in shown.messages) == 1
    # Display only: the exports and the stored messages never carry the counter.
    for kind in ("md", "json"):
        exported = chat.service.export_file(did, kind, Path(chat.service.store.path).parent)
        text = exported.read_text(encoding="utf-8")
        assert "Say bye." in text and "2/2" not in text and "lollms-version" not in text
    assert not any("lollms-version" in m.content for m in chat.service.store.thread(did))
    chat.switch(did, "user", -1)  # back to the first question, with the answer last shown there
    thread = chat.service.store.thread(did)
    assert [m.content for m in thread] == ["Say hello.", "Second answer."]
    assert chat.versions(did)["user"].label == "1/2"
    assert chat.versions(did)["assistant"].label == "2/2"
    chat.switch(did, "user", +1)
    assert [m.content for m in chat.service.store.thread(did)] == ["Say bye.", "Edited answer."]


def test_painting_progress_shows_in_the_trace(rig: Rig) -> None:
    chat, text = rig
    p = chat.service.runtime.catalog.get("gpt_for_art")
    text.enqueue("Artbot: A neon city at night, glowing in violet light.")
    turns = chat.send(
        p,
        "Imagine something cool.",
        discussion_id=None,
        settings={"steps": 3},
        sampling={},
        cancel=threading.Event(),
    )
    logs = [
        m["metadata"]["log"]
        for _did, shown in turns
        for m in shown.messages
        if m.get("metadata", {}).get("title", "").startswith("text_to_image")
    ]
    assert any("painting 2/3" in log for log in logs), logs
    assert "painting" not in logs[-1]  # once painted, the step shows its outcome
