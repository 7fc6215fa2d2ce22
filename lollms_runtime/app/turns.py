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
)
from ..personality import Personality
from ..runtime import Runtime
from ..store import LEAF, Message, Store, StoreError

log = logging.getLogger(__name__)

PREVIEW_CHARS = 600
ChatDict = dict[str, Any]

# Event step statuses → the store's step statuses.
_STEP_STATUS: dict[str, Any] = {
    "ok": "complete",
    "skipped": "skipped",
    "failed": "error",
    "fallback": "complete",
}


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
    log_parts = [step.status if done else "running"]
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
            title, _sep, detail = step.title.partition(" — ")  # saved as "title — detail"
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

    def _history(self, discussion_id: str, user: Message) -> list[ChatMessage]:
        history: list[ChatMessage] = []
        if user.parent_id is None:
            return history
        for message in self.store.thread(discussion_id, user.parent_id):
            if message.content and message.status in ("complete", "interrupted", "cancelled"):
                history.append(ChatMessage(message.role, message.content))
        return history

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
        before = self.show(personality, discussion_id, user.id)
        answer_id = self.store.begin_answer(
            discussion_id, user.id, model=self.runtime.model, sampling=dict(sampling)
        )
        view = AnswerView()

        def shown() -> Shown:
            live = view.messages()
            return Shown(before.messages + live, before.ids + [answer_id] * len(live))

        status = "complete"
        stats: dict[str, Any] = {}
        events: Iterator[Event] | None = None
        try:
            yield discussion_id, shown()
            events = self.runtime.run(
                personality,
                user.content,
                history=history,
                settings=settings,
                sampling=sampling,
                discussion_id=discussion_id,
                artifacts_dir=self.store.artifact_dir(discussion_id),
                cancel=cancel,
            )
            for event in events:
                if self._apply(event, view, answer_id):
                    yield discussion_id, shown()
                if isinstance(event, Done):
                    stats = {
                        "duration": event.duration,
                        "prompt_tokens": event.prompt_tokens,
                        "generation_tokens": event.generation_tokens,
                        "steps": event.steps,
                    }
                    status = {"ok": "complete", "error": "error", "cancelled": "cancelled"}[
                        event.status
                    ]
        except LollmsError as exc:
            view.error = error_text(str(exc))
            status = "error"
        except GeneratorExit:
            # Gradio closed the stream (Stop, or the page went away): let the turn wind down.
            cancel.set()
            status = "cancelled"
            raise
        except Exception as exc:  # a plugin or personality bug must not take the app down
            log.exception("turn failed")
            view.error = error_text(
                f"the turn failed unexpectedly: {type(exc).__name__}: {exc}",
                "The server log has the traceback; report it to the personality's author.",
            )
            status = "error"
        finally:
            if status == "cancelled" and events is not None:
                for _ in events:  # drain so the engine ends its steps cleanly
                    pass
            if cancel.is_set() and status == "complete":
                status = "cancelled"
            if view.error and status == "complete":
                status = "error"
            view.status = status
            self.store.finish_answer(
                answer_id,
                status,  # type: ignore[arg-type]
                content=view.text,
                error=view.error.removeprefix("⚠️ ") or None,
                stats=stats,
            )
        yield discussion_id, shown()

    def _apply(self, event: Event, view: AnswerView, answer_id: str) -> bool:
        """Update ``view`` (and the store) with one event; True if the chat should redraw."""
        if isinstance(event, StepStarted):
            view.steps[event.step_id + event.path] = StepView(event.kind, event.title)
        elif isinstance(event, Token):
            if not event.visible:
                return False
            view.text += event.text
            self.store.append_answer(answer_id, event.text)
        elif isinstance(event, Progress):
            step = self._find(view, event.step_id)
            if step is None:
                return False
            step.progress = f"{event.done}/{event.total}"
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
            self.store.add_step(
                answer_id,
                event.kind,
                step_id=event.step_id,
                title=f"{event.title} — {event.detail}" if event.detail else event.title,
                status=_STEP_STATUS.get(event.status, "complete"),
                output=step.output,
                duration_s=event.duration,
                prompt_tokens=event.prompt_tokens,
                generation_tokens=event.generation_tokens,
                error=event.error or None,
            )
        elif isinstance(event, ImageProduced):
            self._add_image(view, answer_id, event.path, event.step_id, event.params)
        elif isinstance(event, Reply):
            view.text = event.text
            for image in event.images:
                self._add_image(view, answer_id, Path(image), None, {})
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

    def _add_image(
        self,
        view: AnswerView,
        answer_id: str,
        path: Path,
        step_id: str | None,
        params: Mapping[str, Any],
    ) -> None:
        if any(p.resolve() == path.resolve() for p in view.images):
            return
        try:
            self.store.add_artifact(answer_id, path, params=params, step_id=step_id)
        except StoreError as exc:  # outside the store's folder: not served
            log.warning("image not kept: %s", exc)
            return
        view.images.append(path)
