"""A turn saved as it streams: the CLI and the app share lollms_runtime.recorder."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lollms_runtime.cli import main
from lollms_runtime.engine import Engine
from lollms_runtime.events import Done
from lollms_runtime.recorder import history_of, record_turn
from lollms_runtime.runtime import Runtime
from lollms_runtime.store import Store
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend


@pytest.fixture
def runtime() -> tuple[Runtime, ScriptedTextBackend]:
    rt = Runtime()
    backend = ScriptedTextBackend()
    rt.engine = Engine(rt.host, backend, ScriptedImageBackend(), resolve_personality=rt.catalog.get)
    return rt, backend


def test_turn_is_saved_with_steps_and_images(
    runtime: tuple[Runtime, ScriptedTextBackend], tmp_path: Path
) -> None:
    rt, backend = runtime
    store = Store(tmp_path / "d.sqlite3")
    discussion = store.create_discussion("gpt_for_art")
    store.add_message(discussion.id, "user", "Imagine something cool.")
    backend.enqueue("Artbot: A neon city glows under violet rain.\n\nDropped paragraph.")
    events = rt.run(
        "gpt_for_art",
        "Imagine something cool.",
        settings={"steps": 2},
        discussion_id=discussion.id,
        artifacts_dir=store.artifact_dir(discussion.id),
    )
    (done,) = [e for e in record_turn(store, discussion.id, events) if isinstance(e, Done)]
    assert done.status == "ok"
    thread = store.thread(discussion.id)
    answer = thread[-1]
    assert answer.role == "assistant" and answer.status == "ok"
    assert answer.content == "A neon city glows under violet rain."
    steps = store.steps(answer.id)
    assert [s.kind for s in steps][:2] == ["generate", "post_process"]
    assert any(s.kind == "text_to_image" and s.status == "ok" for s in steps)
    artifacts = store.artifacts(answer.id)
    assert len(artifacts) == 1 and store.resolve_artifact(artifacts[0].path).is_file()
    assert [m.role for m in history_of(thread)] == ["user", "assistant"]


def test_cancelled_turn_keeps_partial_text(
    runtime: tuple[Runtime, ScriptedTextBackend], tmp_path: Path
) -> None:
    rt, backend = runtime
    store = Store(tmp_path / "d.sqlite3")
    discussion = store.create_discussion("assistant")
    cancel = threading.Event()
    backend.enqueue("one two three four five six")
    backend.on_chunk = lambda n: cancel.set() if n == 3 else None
    events = rt.run("assistant", "count", discussion_id=discussion.id, cancel=cancel)
    statuses = [e.status for e in record_turn(store, discussion.id, events) if isinstance(e, Done)]
    assert statuses == ["cancelled"]
    answer = store.thread(discussion.id)[-1]
    assert answer.status == "cancelled" and answer.content == "one two three"


def test_discussions_command_lists_and_exports(
    runtime: tuple[Runtime, ScriptedTextBackend],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path))
    store = Store()
    discussion = store.create_discussion("assistant", title="Capitals")
    store.add_message(discussion.id, "user", "What is the capital of France?")
    store.add_message(discussion.id, "assistant", "Paris.")
    assert main(["discussions"]) == 0
    assert f"{discussion.id}" in capsys.readouterr().out
    assert main(["discussions", "export", discussion.id]) == 0
    exported = capsys.readouterr().out
    assert "Capitals" in exported and "Paris." in exported
