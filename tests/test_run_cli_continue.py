"""`lollms run` saves its turn, continues a discussion's last answer, and shows painting progress
on stderr; on scripted backends (the real model is proven elsewhere)."""

from __future__ import annotations

from typing import Any

import pytest

from lollms_runtime import runtime as runtime_module
from lollms_runtime.cli import main
from lollms_runtime.engine import Engine
from lollms_runtime.store import Store
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend


@pytest.fixture
def text(monkeypatch: pytest.MonkeyPatch) -> ScriptedTextBackend:
    """`lollms run`'s Runtime, with its engine on scripted backends."""
    backend = ScriptedTextBackend()
    real = runtime_module.Runtime

    def scripted(*args: Any, **kwargs: Any) -> Any:
        rt = real(*args, **kwargs)
        rt.engine = Engine(
            rt.host, backend, ScriptedImageBackend(), resolve_personality=rt.catalog.get
        )
        return rt

    monkeypatch.setattr(runtime_module, "Runtime", scripted)
    return backend


def test_run_saves_then_continue_extends_the_answer(
    text: ScriptedTextBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    text.enqueue("Once upon a time there was a fox")
    assert main(["run", "assistant", "Tell a {{ story }}.", "--max-tokens", "4"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "Once upon a time"
    (discussion,) = Store().list_discussions()
    assert f"(discussion {discussion.id})" in out.err
    answer = Store().thread(discussion.id)[-1]
    assert (answer.content, answer.status) == ("Once upon a time", "ok")

    text.enqueue(" there was a fox.")
    code = main(["run", "assistant", "--discussion", discussion.id, "--continue"])
    assert code == 0
    out = capsys.readouterr()
    assert out.out.strip() == "Once upon a time there was a fox."  # no "--- reply ---" repeat
    request = text.history[-1]
    assert request.answer_prefix == "Once upon a time"
    assert request.messages[-1].content == "Tell a {{ story }}."
    thread = Store().thread(discussion.id)
    assert len(thread) == 2
    assert thread[-1].id == answer.id
    assert (thread[-1].content, thread[-1].status) == (
        "Once upon a time there was a fox.",
        "ok",
    )


def test_continue_needs_a_discussion_and_no_message(
    text: ScriptedTextBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "assistant", "--continue"]) != 0
    assert "--continue needs --discussion ID" in capsys.readouterr().err
    assert main(["run", "assistant", "hello", "--continue"]) != 0
    assert "--continue takes no message" in capsys.readouterr().err


def test_no_save_keeps_the_store_empty(
    text: ScriptedTextBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    text.enqueue("Hi.")
    assert main(["run", "assistant", "hello", "--no-save"]) == 0
    assert capsys.readouterr().out.strip() == "Hi."
    assert Store().list_discussions() == []


def test_painting_progress_line_on_stderr(
    text: ScriptedTextBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    text.enqueue("Artbot: A neon city at night, glowing in violet light.")
    code = main(["run", "gpt_for_art", "Imagine something cool.", "--set", "steps=3"])
    assert code == 0
    err = capsys.readouterr().err
    assert "\r painting 1/3\r painting 2/3\r painting 3/3\n" in err
