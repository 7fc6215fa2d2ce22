"""Turns as the web app runs them: saved as they go, regenerate and edit branch, stop, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lollms_runtime.app.turns import Chat
from lollms_runtime.conversation import ConversationService
from lollms_runtime.engine import Engine
from lollms_runtime.runtime import Runtime
from lollms_runtime.store import Store
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Chat, ScriptedTextBackend]:
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    text = ScriptedTextBackend()
    runtime = Runtime(personalities=[ROOT / "personalities"])
    runtime.engine = Engine(
        runtime.host, text, ScriptedImageBackend(), resolve_personality=runtime.catalog.get
    )
    return Chat(ConversationService(runtime, Store(tmp_path / "d.sqlite3"))), text


def _run(chat: Chat, pid: str, message: str, discussion_id: str | None = None) -> str:
    p = chat.service.runtime.catalog.get(pid)
    turns = chat.send(
        p, message, discussion_id=discussion_id, settings={}, sampling={}, cancel=threading.Event()
    )
    return list(turns)[-1][0]


def test_answer_is_saved_with_steps(rig: tuple[Chat, ScriptedTextBackend]) -> None:
    chat, text = rig
    text.enqueue("Hello there, friend.")
    did = _run(chat, "assistant", "Say hello.")
    thread = chat.service.store.thread(did)
    assert [m.role for m in thread] == ["user", "assistant"]
    assert thread[1].status == "ok"
    assert "Hello there" in thread[1].content
    assert [s.kind for s in chat.service.store.steps(thread[1].id)]
    shown = chat.show(chat.service.runtime.catalog.get("assistant"), did)
    assert shown.messages[0]["role"] == "assistant"  # the welcome message
    assert shown.ids[0] is None and thread[0].id in shown.ids


def test_regenerate_and_edit_keep_the_old_branch(rig: tuple[Chat, ScriptedTextBackend]) -> None:
    chat, text = rig
    p = chat.service.runtime.catalog.get("assistant")
    text.enqueue("First answer.", "Second answer.", "Edited answer.")
    did = _run(chat, "assistant", "Say hello.")
    first = chat.service.store.thread(did)[1]
    list(chat.regenerate(p, did, settings={}, sampling={}, cancel=threading.Event()))
    second = chat.service.store.thread(did)[1]
    assert second.content.startswith("Second") and second.id != first.id
    assert {m.id for m in chat.service.store.siblings(second.id)} == {first.id, second.id}
    assert text.history[-1].messages[-1].content == "Say hello."
    user = chat.service.store.thread(did)[0]
    turns = chat.edit(
        p, did, user.id, "Say goodbye.", settings={}, sampling={}, cancel=threading.Event()
    )
    list(turns)
    thread = chat.service.store.thread(did)
    assert thread[0].content == "Say goodbye." and thread[1].content.startswith("Edited")
    assert len(chat.service.store.siblings(thread[0].id)) == 2
    assert all(m.content != "Second answer." for m in text.history[-1].messages)


def test_stop_marks_the_answer_cancelled(rig: tuple[Chat, ScriptedTextBackend]) -> None:
    chat, text = rig
    cancel = threading.Event()
    text.enqueue("one two three four five six seven eight")
    text.on_chunk = lambda n: cancel.set() if n == 2 else None
    p = chat.service.runtime.catalog.get("assistant")
    did, shown = list(
        chat.send(p, "Count.", discussion_id=None, settings={}, sampling={}, cancel=cancel)
    )[-1]
    answer = chat.service.store.thread(did)[-1]
    assert answer.status == "cancelled"
    assert answer.content.startswith("one two")
    assert "seven" not in answer.content
    assert shown.messages[-1]["content"] == "*(stopped)*"


def test_a_failing_turn_is_a_chat_message(rig: tuple[Chat, ScriptedTextBackend]) -> None:
    chat, _text = rig  # nothing enqueued: the backend raises
    did = _run(chat, "assistant", "Say hello.")
    answer = chat.service.store.thread(did)[-1]
    assert answer.status == "failed"
    shown = chat.show(chat.service.runtime.catalog.get("assistant"), did)
    assert shown.messages[-1]["content"].startswith("⚠️")


def test_a_stream_closed_at_once_leaves_a_cancelled_answer(
    rig: tuple[Chat, ScriptedTextBackend],
) -> None:
    chat, text = rig
    text.enqueue("never shown")
    p = chat.service.runtime.catalog.get("assistant")
    turns = chat.send(
        p, "Hi.", discussion_id=None, settings={}, sampling={}, cancel=threading.Event()
    )
    did, _shown = next(turns)  # Gradio got the first frame, then the page went away
    turns.close()
    answer = chat.service.store.thread(did)[-1]
    assert (answer.role, answer.status) == ("assistant", "cancelled")
