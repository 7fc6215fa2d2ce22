"""The trace as a tree: the same live and reopened (for_each iterations, nesting, order), quiet
steps hidden, the painting notice in the answer, and Continue keeping the space between words."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from app_helpers import scripted_runtime

from lollms_runtime.app.trace import one_line
from lollms_runtime.app.turns import Chat
from lollms_runtime.backends.base import BackendUnavailable
from lollms_runtime.conversation import ConversationService
from lollms_runtime.mlx.spacing import restore_leading_space
from lollms_runtime.store import Store
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend


def _trace(messages: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    by_id = {m["metadata"]["id"]: m["metadata"]["title"] for m in messages if m.get("metadata")}
    return [
        (m["metadata"]["title"], by_id.get(m["metadata"].get("parent_id")), m["metadata"]["log"])
        for m in messages
        if m.get("metadata")
    ]


def _run(chat: Chat, pid: str, text: str, **settings: Any) -> list[dict[str, Any]]:
    personality = chat.service.runtime.catalog.get(pid)
    last: Any = None
    for _discussion, shown in chat.send(
        personality,
        text,
        discussion_id=None,
        settings=settings,
        sampling={},
        cancel=threading.Event(),
    ):
        last = shown
    return list(last.messages)


def test_for_each_trace_is_a_tree_identical_live_and_reopened(tmp_path: Path) -> None:
    text = ScriptedTextBackend("Waves fold into foam", "Grey rain on the tide", "Sea Songs")
    chat = Chat(ConversationService(scripted_runtime(text), Store(tmp_path / "d.sqlite3")))
    live = _run(chat, "haiku_poet", "the sea", count=2)
    discussion = chat.service.discussions()[0]
    reopened = chat.show(chat.service.runtime.catalog.get("haiku_poet"), discussion.id).messages
    live_trace = _trace(live)
    assert live_trace == _trace(reopened)
    titles = [t for t, _p, _l in live_trace]
    # Both iterations, nested under the for_each; the second one numbered.
    assert ("generate · poem", "for_each · One haiku per theme") in [
        (t, p) for t, p, _ in live_trace
    ]
    assert ("generate · poem (#2)", "for_each · One haiku per theme") in [
        (t, p) for t, p, _ in live_trace
    ]
    assert titles.index("for_each · One haiku per theme") < titles.index("generate · poem")
    # Pure reply/set steps are noise: hidden; no automatic ids anywhere.
    assert not any(t.startswith(("reply", "set")) for t in titles), titles
    assert not any(
        "_" in t.split(" · ")[-1] and t.split(" · ")[-1].startswith("reply") for t in titles
    )
    shown_all = chat.show(chat.service.runtime.catalog.get("haiku_poet"), discussion.id).messages
    assert shown_all == reopened


class _NoPainter(ScriptedImageBackend):
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise BackendUnavailable(
            "no image model: run `lollms models pull stabilityai/sd-turbo` to paint"
        )


def test_missing_painter_is_said_in_the_answer(tmp_path: Path) -> None:
    answer = "Artbot: A neon city at night, with towering skyscrapers glowing in violet light."
    runtime = scripted_runtime(ScriptedTextBackend(answer), _NoPainter())
    chat = Chat(ConversationService(runtime, Store(tmp_path / "d.sqlite3")))
    live = _run(chat, "gpt_for_art", "Imagine something cool.")
    text = [m["content"] for m in live if not m.get("metadata")]
    assert any(
        "**Not painted:**" in t and "lollms models pull stabilityai/sd-turbo" in t
        for t in text
        if isinstance(t, str)
    ), text


class _Pieces:
    def __init__(self, pieces: dict[int, str]) -> None:
        self.pieces = pieces

    def convert_ids_to_tokens(self, token: int) -> str:
        return self.pieces[token]


def test_continue_keeps_the_space_between_old_and_new_text() -> None:
    bpe = _Pieces({1: "Ġcan", 2: "ee", 3: "▁affect", 4: ","})
    assert restore_leading_space(bpe, 1, "can", "Caffeine in coffee") == " can"
    assert restore_leading_space(bpe, 3, "affect", "it will") == " affect"
    assert restore_leading_space(bpe, 2, "ee", "coff") == "ee"  # inside a word: no space
    assert restore_leading_space(bpe, 4, ",", "coffee") == ","
    assert restore_leading_space(bpe, 1, "can", "coffee ") == "can"  # the prefix has it
    assert restore_leading_space(bpe, 1, "can", "") == "can"  # a fresh answer: trimmed


def test_painter_errors_become_one_line_with_the_fix() -> None:
    missing = (
        "Image model stabilityai/sd-turbo is not in the Hugging Face cache (/root/.cache/hf) or "
        "in /tmp/models, and lollms does not download models while painting. Fetch it once "
        "with: lollms models pull stabilityai/sd-turbo"
    )
    assert one_line(missing) == (
        "Image model stabilityai/sd-turbo is not in the Hugging Face cache or in /tmp/models, "
        "and lollms does not download models while painting — run "
        "`lollms models pull stabilityai/sd-turbo`"
    )
    a1111 = (
        "Cannot reach AUTOMATIC1111 API at http://127.0.0.1:7860/sdapi/v1/txt2img ([Errno 111] "
        "Connection refused) after 3 attempt(s). Start the server or point lollms to it. (option "
        "base_url or LOLLMS_A1111_URL)"
    )
    assert one_line(a1111) == (
        "Cannot reach AUTOMATIC1111 API at http://127.0.0.1:7860/sdapi/v1/txt2img after 3 "
        "attempt(s). Start the server or point lollms to it"
    )


def test_continued_answer_is_not_numbered_like_an_iteration(tmp_path: Path) -> None:
    text = ScriptedTextBackend("Once upon a time", " there was a fox.")
    chat = Chat(ConversationService(scripted_runtime(text), Store(tmp_path / "d.sqlite3")))
    _run(chat, "assistant", "Tell a story", max_tokens=None)
    discussion = chat.service.discussions()[0]
    personality = chat.service.runtime.catalog.get("assistant")
    for _ in chat.continue_(
        personality, discussion.id, settings={}, sampling={}, cancel=threading.Event()
    ):
        pass
    titles = [t for t, _p, _l in _trace(chat.show(personality, discussion.id).messages)]
    assert titles == ["generate · answer", "generate · answer"]


def test_a_queued_turn_shows_waiting_until_its_first_step(tmp_path: Path) -> None:
    from lollms_runtime.app.turns import AnswerView
    from lollms_runtime.events import StepStarted, Waiting

    chat = Chat(ConversationService(None, Store(tmp_path / "d.sqlite3")))
    view = AnswerView()
    assert chat._apply(Waiting(position=2), view)
    assert view.messages()[-1]["content"] == "*waiting (position 2)…*"
    chat._apply(StepStarted("answer", "generate", "answer", "pipeline[0]"), view)
    assert "waiting" not in repr(view.messages())
