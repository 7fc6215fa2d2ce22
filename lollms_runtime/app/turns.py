"""The web app's adapter over the conversation service: turns and saved answers as chat messages.

The service runs the turns and keeps the discussions; this module only draws them. Nothing here
imports gradio: messages are the plain dicts ``gr.Chatbot`` accepts (role, content, metadata).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conversation import ConversationService, Turn, Version
from ..errors import LollmsError
from ..events import (
    ArtifactProduced,
    Done,
    Event,
    ImageProduced,
    Progress,
    Reply,
    Status,
    StepFinished,
    StepStarted,
    Token,
    TurnError,
    Waiting,
)
from ..personality import Personality
from ..recorder import unexpected
from ..store import Message
from .trace import Trace, progress_of, step_message

__all__ = ["AnswerView", "Chat", "Shown", "error_text", "step_message"]

log = logging.getLogger(__name__)

ChatDict = dict[str, Any]

# Open and close an answer's trace in its bubble (empty spans: nothing shows). The chat copies a
# bubble, and the whole conversation, with the trace steps' texts; the page's script
# (``ui.PAGE_JS``) copies what follows the end mark, and leaves out what lies between the two.
TRACE_START = '<span class="lollms-trace-start"></span>'
TRACE_END = '<span class="lollms-trace-end"></span>'


@dataclass
class AnswerView:
    """An answer being shown: its trace (a tree of steps), text, images, audio and any error."""

    trace: Trace = field(default_factory=Trace)
    text: str = ""
    images: list[Path] = field(default_factory=list)
    audio: list[Path] = field(default_factory=list)  # whole spoken files, never their parts
    error: str = ""
    status: Status = Status.RUNNING
    waiting: int | None = None  # the turn's place in the model's queue, while it waits
    key: str = "answer"  # makes the trace's message ids unique in the chat

    def messages(self, show_all: bool = False) -> list[ChatDict]:
        """The answer as chat messages: the trace (collapsible, nested), then text and images."""
        if self.status != Status.RUNNING:
            self.trace.stop(self.status)
        out = self.trace.messages(self.key, show_all)
        if out:  # the steps come first: the trace is all from the first step to the last
            out[0] = {**out[0], "content": f"{TRACE_START}{out[0].get('content') or ''}"}
            # The last step, and the last one outside a group: the conversation's copy leaves
            # out the steps inside groups, a message's copy does not.
            last_outside = max(
                (i for i, m in enumerate(out) if "parent_id" not in (m.get("metadata") or {})),
                default=len(out) - 1,
            )
            for i in {last_outside, len(out) - 1}:
                out[i] = {**out[i], "content": f"{out[i].get('content') or ''}{TRACE_END}"}
        text = self.text
        notice = self.trace.painting_notice()
        if notice and self.status != Status.RUNNING:
            text = f"{text}\n\n{notice}" if text else notice
        if text:
            out.append({"role": "assistant", "content": text})
        for image in self.images:
            out.append({"role": "assistant", "content": {"path": str(image)}})
        for audio in self.audio:  # gr.Chatbot plays an audio file's path with its own player
            out.append({"role": "assistant", "content": {"path": str(audio)}})
        sources = self.trace.sources() if self.status != Status.RUNNING else []
        if sources:
            out.append({"role": "assistant", "content": sources_text(sources)})
        if self.error:
            out.append({"role": "assistant", "content": self.error})
        elif self.status == Status.CANCELLED:
            out.append({"role": "assistant", "content": "*(stopped)*"})
        elif self.status == Status.INTERRUPTED:
            out.append({"role": "assistant", "content": "*(interrupted: regenerate to retry)*"})
        if self.status == Status.RUNNING and self.waiting is not None and not text:
            out.append({"role": "assistant", "content": f"*waiting (position {self.waiting})…*"})
        elif not out and self.status == Status.RUNNING:
            out.append({"role": "assistant", "content": "…"})
        return out


def sources_text(sources: list[str]) -> str:
    """The line under an answer naming the passages it was given, numbered as the model saw
    them (so a citation like [1] can be read)."""
    cited = " · ".join(f"[{n}] {source}" for n, source in enumerate(sources, 1))
    return f"<sub>**Sources:** {cited}</sub>"


def attachments_text(metadata: Mapping[str, Any]) -> str:
    """A user message's attached files, as the chat shows them under the message."""
    files = [a for a in metadata.get("attachments") or () if isinstance(a, Mapping)]
    return " · ".join(f"Attached: {a.get('name')} ({a.get('bytes')} bytes)" for a in files)


def versions_text(role: str, version: Version) -> str:
    """The counter on a message that has other versions ("◀ 2/2 ▶"), drawn only in the chat
    (never saved: exports and the API read the store). The chat strips inline handlers, so its
    arrows are plain buttons the page's script (``ui.PAGE_JS``) answers by pressing the hidden
    version button of the same role and direction."""

    def arrow(which: str, glyph: str, title: str) -> str:
        # Classes, not data-* attributes: the chat's sanitizer keeps only class and title.
        return (
            f'<button class="lollms-version lollms-version-{role} lollms-version-{which}" '
            f'title="{title}">{glyph}</button>'
        )

    return (
        f'<span class="lollms-versions lollms-versions-{role}">'
        f"{arrow('previous', '◀', 'Previous version')} {version.label} "
        f"{arrow('next', '▶', 'Next version')}</span>"
    )


def error_text(message: str, hint: str = "") -> str:
    """A failed turn as the chat shows it: what went wrong, then what to do."""
    return f"⚠️ {message}" + (f"\n\n*{hint}*" if hint else "")


@dataclass
class Shown:
    """What the chat shows: message dicts, and for each the store message id (or None)."""

    messages: list[ChatDict]
    ids: list[str | None]


class Chat:
    """The app's view of the conversation service: it runs turns and draws them as chat."""

    def __init__(self, service: ConversationService, show_all: bool = False) -> None:
        self.service = service
        self.show_all = show_all  # the trace shows reply and set steps too

    # -- showing a discussion ---------------------------------------------------------------------

    def welcome(self, personality: Personality) -> list[ChatDict]:
        """The personality's welcome message, shown first in a new discussion."""
        if not personality.welcome:
            return []
        return [{"role": "assistant", "content": personality.welcome[0]}]

    def stored_answer(self, message: Message) -> AnswerView:
        """A saved answer as an :class:`AnswerView`."""
        view = AnswerView(
            trace=Trace.from_steps(self.service.steps(message.id)),
            text=message.content,
            status=message.status,
            key=message.id,
        )
        view.images, view.audio = self.service.files(message.id)
        if message.status == Status.FAILED:
            view.error = error_text(message.error or "the answer failed")
        return view

    def show(
        self,
        personality: Personality,
        discussion_id: str | None,
        leaf_id: str | None = None,
        show_all: bool | None = None,
    ) -> Shown:
        """The messages of a discussion's active branch, or up to ``leaf_id`` (welcome first)."""
        messages = self.welcome(personality)
        ids: list[str | None] = [None] * len(messages)
        if discussion_id is None:
            return Shown(messages, ids)
        counters = self.counters(discussion_id)
        for message in self.service.history(discussion_id, leaf_id):
            if message.role == "user":
                messages.append({"role": "user", "content": message.content})
                ids.append(message.id)
                for extra in (attachments_text(message.metadata), counters.get(message.id)):
                    if extra:
                        messages.append({"role": "user", "content": extra})
                        ids.append(None)  # not a message of its own: no edit, no actions
            elif message.role == "assistant":
                shown = self.stored_answer(message).messages(
                    self.show_all if show_all is None else show_all
                )
                if message.id in counters:
                    shown.append({"role": "assistant", "content": counters[message.id]})
                messages += shown
                ids += [message.id] * len(shown)
        return Shown(messages, ids)

    def counters(self, discussion_id: str | None) -> dict[str, str]:
        """The version counter of each shown message that has other versions, by message id."""
        return {
            version.message_id: versions_text(role, version)
            for role, version in self.versions(discussion_id).items()
        }

    def versions(self, discussion_id: str | None) -> dict[str, Version]:
        """See :meth:`ConversationService.versions`."""
        return self.service.versions(discussion_id)

    def switch(self, discussion_id: str, role: str, step: int) -> None:
        """See :meth:`ConversationService.switch`."""
        self.service.switch(discussion_id, role, step)

    def undo(self, discussion_id: str) -> str:
        """See :meth:`ConversationService.undo`."""
        return self.service.undo(discussion_id)

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
        attachments: Sequence[tuple[str, bytes]] = (),
    ) -> Iterator[tuple[str, Shown]]:
        """Send ``text`` (under ``parent_id``: a new branch) with any attached files (name,
        bytes: they join the discussion's index) and draw the answer as it streams."""
        turn = self.service.send(
            personality,
            text,
            discussion_id=discussion_id,
            parent_id=parent_id,
            settings=settings,
            sampling=sampling,
            cancel=cancel,
            attachments=attachments,
        )
        yield from self.draw(personality, turn, AnswerView())

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
        turn = self.service.regenerate(
            personality, discussion_id, settings=settings, sampling=sampling, cancel=cancel
        )
        yield from self.draw(personality, turn, AnswerView())

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
        turn = self.service.edit(
            personality,
            discussion_id,
            message_id,
            text,
            settings=settings,
            sampling=sampling,
            cancel=cancel,
        )
        yield from self.draw(personality, turn, AnswerView())

    def continue_(
        self,
        personality: Personality,
        discussion_id: str,
        *,
        settings: Mapping[str, Any],
        sampling: Mapping[str, Any],
        cancel: threading.Event,
    ) -> Iterator[tuple[str, Shown]]:
        """Extend the last answer in place, drawn from the text it already had."""
        turn = self.service.continue_(
            personality, discussion_id, settings=settings, sampling=sampling, cancel=cancel
        )
        assert turn.answer_id is not None
        view = self.stored_answer(self.service.message(turn.answer_id))
        view.status, view.error = Status.RUNNING, ""
        yield from self.draw(personality, turn, view)

    def draw(
        self, personality: Personality, turn: Turn, view: AnswerView
    ) -> Iterator[tuple[str, Shown]]:
        """Yield the chat after each visible change of ``turn``'s answer."""
        discussion_id, answer_id = turn.discussion_id, turn.answer_id
        assert discussion_id is not None and answer_id is not None  # a saved turn
        view.key = answer_id  # the same message ids as when the answer is reopened
        before = self.show(personality, discussion_id, turn.user_id)
        counter = self.counters(discussion_id).get(answer_id)  # a retry's "2/2", live

        def shown() -> Shown:
            view.images = turn.images
            kept = {p for p, _kind, _mime in turn.recording.files} if turn.recording else set()
            view.audio = [p for p in spoken if p in kept]  # only files the store may serve
            live = view.messages(self.show_all)
            if counter:
                live.append({"role": "assistant", "content": counter})
            return Shown(before.messages + live, before.ids + [answer_id] * len(live))

        spoken: list[Path] = list(view.audio)
        status = Status.OK
        events = iter(turn)
        try:
            yield discussion_id, shown()
            for event in events:
                if isinstance(event, ArtifactProduced) and event.kind == "audio" and not event.part:
                    spoken.append(Path(event.path))
                if self._apply(event, view):
                    yield discussion_id, shown()
                if isinstance(event, Done):
                    status = event.status
        except LollmsError as exc:
            view.error = error_text(str(exc))
            status = Status.FAILED
        except GeneratorExit:
            # Gradio closed the stream (Stop, or the page went away), maybe before the turn
            # started: it winds down and saves what it has before the generator goes.
            turn.close()
            raise
        except Exception as exc:  # a plugin or personality bug must not take the app down
            log.exception("turn failed")
            view.error = error_text(
                unexpected(exc),
                "The server log has the traceback; report it to the personality's author.",
            )
            status = Status.FAILED
        view.status = status
        yield discussion_id, shown()

    def _apply(self, event: Event, view: AnswerView) -> bool:
        """Update ``view`` with one event (the service saves it); True if the chat should redraw."""
        if isinstance(event, StepStarted):
            view.trace.start(event)
            view.waiting = None
        elif isinstance(event, Waiting):
            view.waiting = event.position
        elif isinstance(event, Token):
            if not event.visible:
                return False
            view.text += event.text
        elif isinstance(event, Progress):
            step = view.trace.running(event.step_id)
            if step is None:
                return False
            progress_of(step, event)
        elif isinstance(event, StepFinished):
            view.trace.finish(event)
        elif isinstance(event, ImageProduced | ArtifactProduced):
            pass  # the service keeps it (if the store may serve it); shown() picks it up
        elif isinstance(event, Reply):
            view.text = event.text
        elif isinstance(event, TurnError):
            view.error = error_text(event.message, event.hint)
        else:
            return False
        return True
