"""The conversation service, without any front end: turns saved as they stream, branches,
continue, cancel by discussion or turn, versions, unsaved turns; typed against the store protocol."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from app_helpers import scripted_runtime
from engine_support import personality

from lollms_runtime.backends.base import ChatMessage
from lollms_runtime.conversation import ConversationService
from lollms_runtime.errors import LollmsError
from lollms_runtime.events import Done, Status, StepFinished
from lollms_runtime.store import DiscussionStore, Store, StoreError
from lollms_runtime.testing import ScriptedTextBackend

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = {
    name
    for name in vars(DiscussionStore)
    if not name.startswith("_") and callable(getattr(DiscussionStore, name))
}


class OnlyTheProtocol:
    """A store that answers only what ``DiscussionStore`` declares: the service must need no more."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name not in PROTOCOL:
            raise AssertionError(f"the service used {name!r}, which DiscussionStore does not have")
        return getattr(self._store, name)


Rig = tuple[ConversationService, ScriptedTextBackend, Store]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    text = ScriptedTextBackend()
    store = Store(tmp_path / "d.sqlite3")
    service = ConversationService(scripted_runtime(text), OnlyTheProtocol(store))  # type: ignore[arg-type]
    return service, text, store


def _assistant(service: ConversationService) -> Any:
    return service.runtime.catalog.get("assistant")


def _events(turn: Any) -> list[Any]:
    return list(turn)


def _started(service: ConversationService, p: Any, message: str, **options: Any) -> str:
    """Send ``message`` in a new discussion, let the turn run, and return the discussion's id."""
    turn = service.send(p, message, **options)
    _events(turn)
    assert turn.discussion_id is not None
    return str(turn.discussion_id)


def test_send_saves_the_turn_with_its_steps(rig: Rig) -> None:
    service, text, store = rig
    text.enqueue("Hello there, friend.")
    turn = service.send(_assistant(service), "Say hello.")
    assert turn.discussion_id and turn.answer_id and turn.user_id  # known before any event
    assert store.get_message(turn.answer_id).status == Status.RUNNING
    events = _events(turn)
    assert isinstance(events[-1], Done) and events[-1].status == Status.OK
    thread = service.history(turn.discussion_id)
    assert [m.role for m in thread] == ["user", "assistant"]
    assert thread[1].id == turn.answer_id
    assert (thread[1].status, thread[1].content) == (Status.OK, "Hello there, friend.")
    assert [s.kind for s in service.steps(thread[1].id)]
    assert service.cancel(turn.discussion_id) is False  # nothing runs there any more


def test_regenerate_and_edit_keep_the_old_branch(rig: Rig) -> None:
    service, text, _store = rig
    p = _assistant(service)
    text.enqueue("First answer.", "Second answer.", "Edited answer.")
    did = _started(service, p, "Say hello.")
    first = service.history(did)[1]
    _events(service.regenerate(p, did))
    second = service.history(did)[1]
    assert second.content.startswith("Second") and second.id != first.id
    assert len(service.versions(did)["assistant"].ids) == 2
    assert text.history[-1].messages[-1].content == "Say hello."
    user = service.history(did)[0]
    _events(service.edit(p, did, user.id, "Say goodbye."))
    thread = service.history(did)
    assert thread[0].content == "Say goodbye." and thread[1].content.startswith("Edited")
    assert service.versions(did)["user"].label == "2/2"
    assert all(m.content != "Second answer." for m in text.history[-1].messages)
    with pytest.raises(LollmsError, match="only your own messages"):
        service.edit(p, did, thread[1].id, "not mine")


def test_send_continues_a_discussion_with_its_history(rig: Rig) -> None:
    service, text, _store = rig
    p = _assistant(service)
    text.enqueue("One.", "Two.")
    first = service.send(p, "Count once.")
    _events(first)
    _events(service.send(p, "And again.", discussion_id=first.discussion_id))
    assert text.history[-1].messages[-3:] == [
        ChatMessage("user", "Count once."),
        ChatMessage("assistant", "One."),
        ChatMessage("user", "And again."),
    ]


def test_continue_extends_the_last_answer_and_says_when_it_cannot(rig: Rig) -> None:
    service, text, store = rig
    p = _assistant(service)
    text.enqueue("one two three four five")
    turn = service.send(p, "Count.", sampling={"max_tokens": 3})
    _events(turn)
    did = turn.discussion_id
    assert did is not None
    text.enqueue(" four five")
    more = service.continue_(p, did)
    assert (more.answer_id, more.prefix) == (turn.answer_id, "one two three")
    _events(more)
    answer = service.history(did)[-1]
    assert (answer.id, answer.status, answer.content) == (
        turn.answer_id,
        Status.OK,
        "one two three four five",
    )
    assert text.history[-1].answer_prefix == "one two three"

    empty = store.create_discussion("assistant").id
    store.add_message(empty, "user", "Hello?")
    with pytest.raises(LollmsError, match=f"nothing to continue in discussion {empty}"):
        service.continue_(p, empty)
    store.begin_answer(empty)
    with pytest.raises(LollmsError, match="still being written"):
        service.continue_(p, empty)


def test_continue_an_answer_whose_writer_went_away(rig: Rig) -> None:
    service, text, store = rig
    other = Store(store.path)
    did = other.create_discussion("assistant").id
    other.add_message(did, "user", "Half a sentence.")
    half = other.begin_answer(did)
    other.append_answer(half, "This is half")
    other.close()
    assert store.get_message(half).status == Status.INTERRUPTED
    text.enqueue(" a sentence.")
    turn = service.continue_(_assistant(service), did)
    assert turn.prefix == "This is half"
    _events(turn)
    answer = store.get_message(half)
    assert (answer.status, answer.content) == (Status.OK, "This is half a sentence.")
    assert text.history[-1].messages[-1].content == "Half a sentence."


def test_cancel_by_discussion_or_turn_from_another_thread(rig: Rig) -> None:
    service, text, store = rig
    p = _assistant(service)
    for key in ("discussion", "turn"):
        text.enqueue("one two three four five six seven eight")
        holder: dict[str, str] = {}

        def stop_elsewhere(n: int, holder: dict[str, str] = holder) -> None:
            if n == 2:  # another thread (a Stop button's request) cancels; waited for, so
                other = threading.Thread(target=service.cancel, args=(holder["key"],))
                other.start()  # the test does not depend on timing
                other.join()

        text.on_chunk = stop_elsewhere
        turn = service.send(p, "Count.")
        holder["key"] = turn.discussion_id if key == "discussion" else turn.id  # type: ignore[assignment]
        events = _events(turn)
        assert events[-1].status == Status.CANCELLED, key
        answer = store.get_message(turn.answer_id or "")
        assert answer.status == Status.CANCELLED
        assert answer.content.startswith("one") and "eight" not in answer.content
    assert service.cancel("no-such-turn") is False


def test_a_front_end_that_lets_go_leaves_a_cancelled_answer(rig: Rig) -> None:
    service, text, store = rig
    text.enqueue("alpha beta gamma delta")
    turn = service.send(_assistant(service), "Letters.")
    events = iter(turn)
    next(events)
    events.close()  # the page went away
    answer = store.get_message(turn.answer_id or "")
    assert answer.status == Status.CANCELLED


def test_a_turn_closed_before_it_ran_is_saved_as_cancelled(rig: Rig) -> None:
    service, text, store = rig
    text.enqueue("never said")
    turn = service.send(_assistant(service), "Letters.")
    turn.close()
    answer = store.get_message(turn.answer_id or "")
    assert (answer.status, answer.content) == (Status.CANCELLED, "")
    assert service.cancel(turn.id) is False


def test_a_failing_turn_is_saved_as_failed(rig: Rig) -> None:
    service, _text, store = rig  # nothing enqueued: the backend raises
    turn = service.send(_assistant(service), "Say hello.")
    assert _events(turn)[-1].status == Status.FAILED
    assert store.get_message(turn.answer_id or "").status == Status.FAILED


def test_switching_versions(rig: Rig) -> None:
    service, text, _store = rig
    p = _assistant(service)
    text.enqueue("First answer.", "Second answer.")
    did = _started(service, p, "Say hello.")
    assert service.versions(did) == {}
    _events(service.regenerate(p, did))
    assert service.versions(did)["assistant"].label == "2/2"
    service.switch(did, "assistant", -1)
    assert service.history(did)[-1].content == "First answer."
    service.switch(did, "assistant", +1)
    assert service.history(did)[-1].content == "Second answer."
    with pytest.raises(LollmsError, match="the last user message has no other version"):
        service.switch(did, "user", 1)


def test_undo_takes_back_the_last_exchange(rig: Rig) -> None:
    service, text, _store = rig
    p = _assistant(service)
    text.enqueue("One.", "Two.", "Two again.", "Three.")
    did = _started(service, p, "first")
    _events(service.send(p, "second", discussion_id=did))
    _events(service.regenerate(p, did))  # the second answer has two versions
    assert service.undo(did) == "second"  # the box gets it back
    assert [m.content for m in service.history(did)] == ["first", "One."]
    assert service.versions(did) == {}  # both versions of the answer went with it
    # The next message continues from the answer before.
    _events(service.send(p, "third", discussion_id=did))
    assert [m.content for m in service.history(did)] == ["first", "One.", "third", "Three."]
    assert service.undo(did) == "third" and service.undo(did) == "first"
    assert service.history(did) == []
    with pytest.raises(LollmsError, match="nothing to undo"):
        service.undo(did)


def test_undo_of_an_edited_message_shows_its_other_version(rig: Rig) -> None:
    service, text, _store = rig
    p = _assistant(service)
    text.enqueue("Hi.", "Hello to you.")
    did = _started(service, p, "Hello")
    first = service.history(did)[0]
    _events(service.edit(p, did, first.id, "Hello there"))
    assert service.versions(did)["user"].label == "2/2"
    assert service.undo(did) == "Hello there"
    assert [m.content for m in service.history(did)] == ["Hello", "Hi."]
    assert service.versions(did) == {}


def test_undo_waits_for_a_running_answer(rig: Rig) -> None:
    service, text, store = rig
    p = _assistant(service)
    text.enqueue("Done.")
    did = _started(service, p, "hello")
    store.begin_answer(did)  # another writer is still answering
    with pytest.raises(LollmsError, match="still being written: stop it first"):
        service.undo(did)
    assert [m.content for m in service.history(did)][:2] == ["hello", "Done."]


def test_step_statuses_and_details_are_saved_as_the_events_say(rig: Rig, tmp_path: Path) -> None:
    service, _text, store = rig
    p = personality(
        tmp_path,
        """
        pipeline:
          - condition:
              id: check
              if: "message == 'hi'"
              then:
                - set: {picked: yes}
          - generate: {id: g, on_error: fallback, fallback: "plan B"}
          - reply: {text: "{{ g }}"}
        """,
    )
    # Nothing enqueued: the generate step fails and falls back.
    turn = service.send(p, "hi")
    finished = [e for e in turn if isinstance(e, StepFinished)]
    saved = store.steps(turn.answer_id or "")
    assert [(s.kind, s.title, s.detail, s.status) for s in saved] == [
        (e.kind, e.title, e.detail, e.status) for e in finished
    ]
    assert Status.FALLBACK in [s.status for s in saved]
    assert any(s.kind == "condition" and s.detail for s in saved)
    assert store.get_message(turn.answer_id or "").content == "plan B"


def test_an_unsaved_turn_runs_on_a_given_history(tmp_path: Path) -> None:
    text = ScriptedTextBackend()
    service = ConversationService(scripted_runtime(text))  # no store at all
    text.enqueue("Paris.")
    history = [ChatMessage("user", "Hi."), ChatMessage("assistant", "Hello!")]
    turn = service.run_turn("assistant", "Capital of France?", history=history)
    assert (turn.discussion_id, turn.answer_id) == (None, None)
    assert _events(turn)[-1].status == Status.OK
    assert text.history[-1].messages[-3:] == [*history, ChatMessage("user", "Capital of France?")]
    with pytest.raises(StoreError, match="no discussion store"):
        service.discussions()


def test_discussions_are_managed_without_a_runtime(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.sqlite3")
    service = ConversationService(None, store)
    d = service.new("assistant", title="Plans")
    assert d.model is None
    assert [x.id for x in service.discussions(search="plans")] == [d.id]
    assert service.rename(d.id, "Holiday plans").title == "Holiday plans"
    copy = service.import_json(service.export_json(d.id))
    assert "# Holiday plans" in service.export_markdown(copy)
    service.delete(d.id)
    assert [x.id for x in service.discussions()] == [copy]
    with pytest.raises(LollmsError, match="runs no turns: give it a runtime"):
        service.runtime  # noqa: B018


@pytest.mark.parametrize(
    "code",
    [
        # `lollms run` end to end (it fails fast on an unknown personality, after its imports).
        "from lollms_runtime.cli import main; main(['run', 'no-such-one', 'hi'])",
        "import lollms_runtime.conversation",
    ],
)
def test_run_and_the_service_import_no_gradio(code: str, tmp_path: Path) -> None:
    probe = f"import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\nprint('gradio' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LOLLMS_HOME": str(tmp_path / "home")},
        check=False,
    )
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
    assert "Traceback" not in out.stderr
