"""Running a turn against the Runtime and the Store, and turning it into chat messages.

Nothing here imports gradio: messages are the plain dicts ``gr.Chatbot`` accepts (role, content,
metadata), so the turn logic is tested without a browser.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import ChatMessage
from ..errors import LollmsError
from ..events import (
    Done,
    Event,
    ImageProduced,
    Progress,
    Reply,
    StepFinished,
    StepStarted,
    Token,
    TurnError,
    progress_text,
)
from ..personality import Personality
from ..recorder import Recording, history_of, split_step_title, unexpected
from ..runtime import Runtime
from ..store import LEAF, Message, Store, StoreError

log = logging.getLogger(__name__)

PREVIEW_CHARS = 600
ChatDict = dict[str, Any]


@dataclass
class StepView:
    """One pipeline step as the trace shows it."""

    kind: str
    title: str
    status: str = "running"  # running | ok | skipped | failed | fallback | ...
    duration: float | None = None
    tokens: int | None = None
    detail: str = ""
    error: str = ""
    output: Any = None
    progress: str = ""


@dataclass
class AnswerView:
    """An answer being shown: its steps, text, images and any error."""

    steps: dict[str, StepView] = field(default_factory=dict)
    text: str = ""
    images: list[Path] = field(default_factory=list)
    error: str = ""
    status: str = "generating"

    def messages(self) -> list[ChatDict]:
        """The answer as chat messages: one collapsible message per step, then text and images."""
        out = [step_message(step) for step in self.steps.values()]
        if self.text:
            out.append({"role": "assistant", "content": self.text})
        for image in self.images:
            out.append({"role": "assistant", "content": {"path": str(image)}})
        if self.error:
            out.append({"role": "assistant", "content": self.error})
        elif self.status == "cancelled":
            out.append({"role": "assistant", "content": "*(stopped)*"})
        elif self.status == "interrupted":
            out.append({"role": "assistant", "content": "*(interrupted: regenerate to retry)*"})
        if not out and self.status == "generating":
            out.append({"role": "assistant", "content": "…"})
        return out


def _preview(output: Any) -> str:
    if output is None:
        return ""
    text = output if isinstance(output, str) else json.dumps(output, default=str, indent=1)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def step_message(step: StepView) -> ChatDict:
    """A step as a collapsible chat message (Gradio's ``metadata`` title/status/duration/log)."""
    done = step.status != "running"
    # A step cut short by Stop is shown as stopped, like the answer, not as failed.
    log_parts = [("stopped" if step.status == "cancelled" else step.status) if done else "running"]
    if step.tokens:
        log_parts.append(f"{step.tokens} tokens")
    if step.detail:
        log_parts.append(step.detail)
    if step.progress and not done:
        log_parts.append(step.progress)
    body = []
    if step.error:
        body.append(f"**error:** {step.error}")
    preview = _preview(step.output)
    if preview:
        body.append(f"```\n{preview}\n```")
    metadata: dict[str, Any] = {
        "title": f"{step.kind} · {step.title}" if step.title else step.kind,
        "status": "done" if done else "pending",
        "log": " · ".join(log_parts),
    }
    if step.duration is not None:
        metadata["duration"] = round(step.duration, 2)
    return {"role": "assistant", "content": "\n\n".join(body) or " ", "metadata": metadata}


def error_text(message: str, hint: str = "") -> str:
    """A failed turn as the chat shows it: what went wrong, then what to do."""
    return f"⚠️ {message}" + (f"\n\n*{hint}*" if hint else "")


@dataclass(frozen=True)
class Version:
    """A message with alternatives: which one is shown (``index``) among ``ids``, oldest first."""

    message_id: str
    index: int
    ids: list[str]

    @property
    def label(self) -> str:
        return f"{self.index + 1}/{len(self.ids)}"


@dataclass
class Shown:
    """What the chat shows: message dicts, and for each the store message id (or None)."""

    messages: list[ChatDict]
    ids: list[str | None]


class Chat:
    """Runs turns for the web app: events become chat messages, the store keeps everything."""

    def __init__(self, runtime: Runtime, store: Store) -> None:
        self.runtime = runtime
        self.store = store

    # -- showing a discussion ---------------------------------------------------------------------

    def welcome(self, personality: Personality) -> list[ChatDict]:
        """The personality's welcome message, shown first in a new discussion."""
        if not personality.welcome:
            return []
        return [{"role": "assistant", "content": personality.welcome[0]}]

    def stored_answer(self, message: Message) -> AnswerView:
        """An answer from the store as an :class:`AnswerView`."""
        view = AnswerView(text=message.content, status=message.status)
        for step in self.store.steps(message.id):
            title, detail = split_step_title(step.title)
            view.steps[f"{step.position}"] = StepView(
                kind=step.kind,
                title=title,
                detail=detail,
                status={"complete": "ok", "error": "failed"}.get(step.status, step.status),
                duration=step.duration_s,
                tokens=step.generation_tokens,
                error=step.error or "",
                output=step.output,
            )
        for artifact in self.store.artifacts(message.id):
            try:
                view.images.append(self.store.resolve_artifact(artifact.path))
            except StoreError:
                continue
        if message.status == "error":
            view.error = error_text(message.error or "the answer failed")
        return view

    def show(
        self, personality: Personality, discussion_id: str | None, leaf_id: str | None = None
    ) -> Shown:
        """The messages of a discussion's active branch, or up to ``leaf_id`` (welcome first)."""
        messages = self.welcome(personality)
        ids: list[str | None] = [None] * len(messages)
        if discussion_id is None:
            return Shown(messages, ids)
        for message in self.store.thread(discussion_id, leaf_id):
            if message.role == "user":
                messages.append({"role": "user", "content": message.content})
                ids.append(message.id)
            elif message.role == "assistant":
                shown = self.stored_answer(message).messages()
                messages += shown
                ids += [message.id] * len(shown)
        return Shown(messages, ids)

    # -- running turns ----------------------------------------------------------------------------

    def send(
        self,
        personality: Personality,
        text: str,
        *,
        discussion_id: str | None,
        settings: Mapping[str, Any],
        sampling: Mapping[str, Any],
        cancel: threading.Event,
        parent_id: str | None = None,
    ) -> Iterator[tuple[str, Shown]]:
        """Add the user's message (under ``parent_id``: a new branch) and stream the answer."""
        if discussion_id is None:
            discussion_id = self.store.create_discussion(
                personality.id, model=self.runtime.model
            ).id
        parent: Any = LEAF if parent_id is None else parent_id
        user = self.store.add_message(discussion_id, "user", text, parent)
        yield from self._answer(personality, discussion_id, user, settings, sampling, cancel)

    def regenerate(
        self,
        personality: Personality,
        discussion_id: str,
        *,
        settings: Mapping[str, Any],
        sampling: Mapping[str, Any],
        cancel: threading.Event,
    ) -> Iterator[tuple[str, Shown]]:
        """A new answer to the last user message, beside the old one (which is kept)."""
        thread = self.store.thread(discussion_id)
        users = [m for m in thread if m.role == "user"]
        if not users:
            raise LollmsError("nothing to regenerate yet: send a message first")
        yield from self._answer(personality, discussion_id, users[-1], settings, sampling, cancel)

    def edit(
        self,
        personality: Personality,
        discussion_id: str,
        message_id: str,
        text: str,
        *,
        settings: Mapping[str, Any],
        sampling: Mapping[str, Any],
        cancel: threading.Event,
    ) -> Iterator[tuple[str, Shown]]:
        """Resend an edited user message as a new branch beside the original."""
        original = self.store.get_message(message_id)
        if original.role != "user":
            raise LollmsError("only your own messages can be edited and resent")
        parent: Any = original.parent_id  # None: a new root branch
        user = self.store.add_message(discussion_id, "user", text, parent)
        yield from self._answer(personality, discussion_id, user, settings, sampling, cancel)

    def continue_(
        self,
        personality: Personality,
        discussion_id: str,
        *,
        settings: Mapping[str, Any],
        sampling: Mapping[str, Any],
        cancel: threading.Event,
    ) -> Iterator[tuple[str, Shown]]:
        """Extend the last answer (stopped at max tokens, stopped, or interrupted) in place."""
        thread = self.store.thread(discussion_id)
        if len(thread) < 2 or thread[-1].role != "assistant" or thread[-2].role != "user":
            raise LollmsError("nothing to continue: the last message is not an answer")
        answer, user = thread[-1], thread[-2]
        if answer.status == "generating":
            raise LollmsError("the last answer is still being written: wait, or stop it first")
        if not answer.content.strip():
            raise LollmsError("the last answer is empty: regenerate it instead")
        view = self.stored_answer(answer)
        view.status, view.error = "generating", ""
        history = self._history(discussion_id, user)

        def events() -> Iterator[Event]:
            yield from self.runtime.continue_answer(
                personality,
                user.content,
                answer.content,
                history=history,
                settings=settings,
                sampling=sampling,
                discussion_id=discussion_id,
                artifacts_dir=self.store.artifact_dir(discussion_id),
                cancel=cancel,
            )

        recording = Recording(self.store, discussion_id, continue_id=answer.id)
        yield from self._stream(personality, discussion_id, user, recording, view, events(), cancel)

    def versions(self, discussion_id: str | None) -> dict[str, Version]:
        """Where the active branch can switch: the last user message's and the last answer's
        alternatives (edits and regenerations), keyed by role; only those with more than one."""
        found: dict[str, Version] = {}
        if discussion_id is None:
            return found
        thread = self.store.thread(discussion_id)
        for role in ("user", "assistant"):
            last = next((m for m in reversed(thread) if m.role == role), None)
            if last is None:
                continue
            ids = [m.id for m in self.store.siblings(last.id) if m.role == role]
            if len(ids) > 1:
                found[role] = Version(last.id, ids.index(last.id), ids)
        return found

    def switch(self, discussion_id: str, role: str, step: int) -> None:
        """Show the previous (``step`` -1) or next (+1) version of the last message of ``role``."""
        version = self.versions(discussion_id).get(role)
        if version is None:
            raise LollmsError(f"the last {role} message has no other version")
        target = version.ids[(version.index + step) % len(version.ids)]
        self.store.set_leaf(discussion_id, target)

    def _history(self, discussion_id: str, user: Message) -> list[ChatMessage]:
        if user.parent_id is None:
            return []
        return history_of(self.store.thread(discussion_id, user.parent_id))

    def _answer(
        self,
        personality: Personality,
        discussion_id: str,
        user: Message,
        settings: Mapping[str, Any],
        sampling: Mapping[str, Any],
        cancel: threading.Event,
    ) -> Iterator[tuple[str, Shown]]:
        history = self._history(discussion_id, user)

        def events() -> Iterator[Event]:  # raised errors surface while iterating: recorded
            yield from self.runtime.run(
                personality,
                user.content,
                history=history,
                settings=settings,
                sampling=sampling,
                discussion_id=discussion_id,
                artifacts_dir=self.store.artifact_dir(discussion_id),
                cancel=cancel,
            )

        recording = Recording(
            self.store,
            discussion_id,
            parent_id=user.id,
            model=self.runtime.model,
            sampling=sampling,
        )
        yield from self._stream(
            personality, discussion_id, user, recording, AnswerView(), events(), cancel
        )

    def _stream(
        self,
        personality: Personality,
        discussion_id: str,
        user: Message,
        recording: Recording,
        view: AnswerView,
        events: Iterator[Event],
        cancel: threading.Event,
    ) -> Iterator[tuple[str, Shown]]:
        """Record ``events`` into the answer and yield the chat after each visible change."""
        before = self.show(personality, discussion_id, user.id)
        answer_id = recording.answer_id

        def shown() -> Shown:
            view.images = list(recording.images)
            live = view.messages()
            return Shown(before.messages + live, before.ids + [answer_id] * len(live))

        status = "complete"
        recorded = recording.record(events)
        try:
            yield discussion_id, shown()
            for event in recorded:
                if self._apply(event, view):
                    yield discussion_id, shown()
                if isinstance(event, Done):
                    status = {"ok": "complete", "error": "error", "cancelled": "cancelled"}[
                        event.status
                    ]
        except LollmsError as exc:
            view.error = error_text(str(exc))
            status = "error"
        except GeneratorExit:
            # Gradio closed the stream (Stop, or the page went away): let the turn wind down
            # (the recorder saves what it has) before the generator goes.
            cancel.set()
            for _ in recorded:
                pass
            raise
        except Exception as exc:  # a plugin or personality bug must not take the app down
            log.exception("turn failed")
            view.error = error_text(
                unexpected(exc),
                "The server log has the traceback; report it to the personality's author.",
            )
            status = "error"
        view.status = status
        yield discussion_id, shown()

    def _apply(self, event: Event, view: AnswerView) -> bool:
        """Update ``view`` with one event (the recorder saves it); True if the chat should redraw."""
        if isinstance(event, StepStarted):
            view.steps[event.step_id + event.path] = StepView(event.kind, event.title)
        elif isinstance(event, Token):
            if not event.visible:
                return False
            view.text += event.text
        elif isinstance(event, Progress):
            step = self._find(view, event.step_id)
            if step is None:
                return False
            step.progress = progress_text(step.kind, event.done, event.total)
        elif isinstance(event, StepFinished):
            step = view.steps.setdefault(
                event.step_id + event.path, StepView(event.kind, event.title)
            )
            step.status = event.status
            step.duration = event.duration
            step.tokens = event.generation_tokens or None
            step.detail = event.detail
            step.error = event.error
            step.output = None if event.kind == "reply" else event.output
        elif isinstance(event, ImageProduced):
            pass  # the recording keeps it (if the store may serve it); shown() picks it up
        elif isinstance(event, Reply):
            view.text = event.text
        elif isinstance(event, TurnError):
            view.error = error_text(event.message, event.hint)
        else:
            return False
        return True

    def _find(self, view: AnswerView, step_id: str) -> StepView | None:
        for key, step in reversed(view.steps.items()):
            if key.startswith(step_id):
                return step
        return None
