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


def _shown_text(chat: Chat, pid: str, did: str) -> list[str]:
    shown = chat.show(chat.service.runtime.catalog.get(pid), did)
    return [str(m["content"]) for m in shown.messages]


def test_attached_file_is_indexed_stored_shown_and_cited(
    rig: tuple[Chat, ScriptedTextBackend],
) -> None:
    chat, text = rig
    fact = "The Kestrel Point lighthouse is painted teal."
    text.enqueue("It is teal [1].")
    p = chat.service.runtime.catalog.get("assistant")
    turns = chat.send(
        p,
        "What colour is the Kestrel Point lighthouse?",
        discussion_id=None,
        settings={},
        sampling={},
        cancel=threading.Event(),
        attachments=[("notes.md", f"# Kestrel\n\n{fact}\n".encode())],
    )
    frames = list(turns)
    did, live = frames[-1]
    # The passage reached the model, numbered for citing.
    assert fact in text.history[-1].messages[0].content
    user = chat.service.store.thread(did)[0]
    assert user.metadata["attachments"] == [{"name": "notes.md", "bytes": len(fact) + 12}]
    reopened = _shown_text(chat, "assistant", did)
    assert [str(m["content"]) for m in live.messages] == reopened  # live and reopened alike
    assert any("Attached: notes.md" in m for m in reopened)
    assert any("Sources:" in m and "[1] notes.md" in m for m in reopened)
    assert "Attached: `notes.md`" in chat.service.export_markdown(did)
    exported = chat.service.export_json(did)["messages"]
    assert any(m["metadata"].get("attachments") for m in exported)


def test_unreadable_attachment_is_refused_before_the_message(
    rig: tuple[Chat, ScriptedTextBackend],
) -> None:
    from lollms_runtime.errors import LollmsError

    chat, _text = rig
    p = chat.service.runtime.catalog.get("assistant")
    did = chat.service.new("assistant").id
    with pytest.raises(LollmsError, match=r"notes\.exe"):
        list(
            chat.send(
                p,
                "Read this.",
                discussion_id=did,
                settings={},
                sampling={},
                cancel=threading.Event(),
                attachments=[("notes.exe", b"MZ\x90\x00")],
            )
        )
    assert chat.service.store.thread(did) == []  # nothing sent
    with pytest.raises(LollmsError, match=r"notes\.exe"):
        list(
            chat.send(
                p,
                "Read this.",
                discussion_id=None,
                settings={},
                sampling={},
                cancel=threading.Event(),
                attachments=[("notes.exe", b"MZ\x90\x00")],
            )
        )
    assert [d.id for d in chat.service.discussions()] == [did]  # no empty new one


def test_sources_from_a_retrieve_step() -> None:
    from lollms_runtime.app.trace import StepView, Trace
    from lollms_runtime.events import Status

    step = StepView("retrieve", "facts", status=Status.OK)
    step.output = [{"source": "a.md", "cite": "a.md, Intro"}, {"source": "b.txt"}]
    failed = StepView("retrieve", "other", status=Status.FAILED, output=[{"source": "c.md"}])
    note = StepView(
        "generate", "answer", status=Status.OK, detail="lore: x; retrieved: d, e.md (Part 2) 1.25"
    )
    assert Trace(roots=[step, failed, note]).sources() == [
        "a.md, Intro",
        "b.txt",
        "d, e.md, Part 2",
    ]


def test_spoken_answer_plays_the_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("lollms_speech")
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    text = ScriptedTextBackend("The keeper lit the lamp. Ships came home safely. He smiled.")
    runtime = Runtime()
    runtime.engine = Engine(
        runtime.host, text, ScriptedImageBackend(), resolve_personality=runtime.catalog.get
    )
    chat = Chat(ConversationService(runtime, Store(tmp_path / "d.sqlite3")))
    did, live = list(
        chat.send(
            runtime.catalog.get("narrator"),
            "a lighthouse keeper",
            discussion_id=None,
            settings={},
            sampling={},
            cancel=threading.Event(),
        )
    )[-1]
    answer = chat.service.store.thread(did)[1]
    artifacts = chat.service.store.artifacts(answer.id)
    assert len([a for a in artifacts if a.kind == "audio"]) > 1  # the parts are kept too
    reopened = chat.show(runtime.catalog.get("narrator"), did).messages
    for messages in (live.messages, reopened):
        files = [m["content"]["path"] for m in messages if isinstance(m["content"], dict)]
        assert len(files) == 1 and files[0].endswith(".wav") and ".part" not in files[0]
        assert Path(files[0]).read_bytes()[:4] == b"RIFF"
