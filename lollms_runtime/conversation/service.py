"""``ConversationService``: every discussion operation, for every front end.

The web app, ``lollms run`` and ``lollms discussions`` (and the HTTP API to come) are thin layers
over this class: they turn its :class:`Turn` events into chat bubbles, terminal text or JSON.
Nothing here imports a UI framework, and the store is reached only through the
:class:`~lollms_runtime.store.DiscussionStore` protocol.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends.base import ChatMessage
from ..errors import LollmsError
from ..events import Event, Status
from ..recorder import Recording, history_of
from ..store import LEAF, Discussion, DiscussionStore, Message, Step, StoreError
from ..store.export import read_export
from .turn import Turn

if TYPE_CHECKING:
    from ..personality import Personality
    from ..runtime import Runtime

log = logging.getLogger(__name__)

EXPORT_TTL_S = 600  # a download is fetched at once; older export files are removed


@dataclass(frozen=True)
class Version:
    """A message with alternatives: which one is shown (``index``) among ``ids``, oldest first."""

    message_id: str
    index: int
    ids: list[str]

    @property
    def label(self) -> str:
        return f"{self.index + 1}/{len(self.ids)}"


class ConversationService:
    """Runs turns inside saved discussions (or outside any) and manages the discussions.

    Either part may be left out: without a runtime it manages discussions but runs no turn
    (``lollms discussions``); without a store it runs only unsaved turns (``run_turn``).
    """

    def __init__(self, runtime: Runtime | None, store: DiscussionStore | None = None) -> None:
        self._runtime = runtime
        self._store = store
        self._lock = threading.Lock()
        # Running turns by turn id, discussion id and answer id: ``cancel`` accepts any of them.
        self._running: dict[str, threading.Event] = {}

    @property
    def runtime(self) -> Runtime:
        """The runtime that runs the turns."""
        if self._runtime is None:
            raise LollmsError("this conversation service runs no turns: give it a runtime")
        return self._runtime

    @property
    def store(self) -> DiscussionStore:
        """The store behind the saved discussions (a service without one runs only ``run_turn``)."""
        if self._store is None:
            raise StoreError("this conversation service has no discussion store: give it one")
        return self._store

    @property
    def keeps_discussions(self) -> bool:
        """Whether turns can be saved (the service has a store)."""
        return self._store is not None

    # -- discussions ------------------------------------------------------------------------------

    def new(self, personality_id: str, title: str | None = None) -> Discussion:
        """A new, empty discussion with a personality, on the runtime's current model."""
        model = self._runtime.model if self._runtime is not None else None
        return self.store.create_discussion(personality_id, title=title, model=model)

    def new_with_history(
        self, personality_id: str, history: Sequence[ChatMessage], title: str | None = None
    ) -> Discussion:
        """A new discussion holding a conversation held elsewhere (an API client's history)."""
        discussion = self.new(personality_id, title)  # untitled: the first user message names it
        for message in history:
            if message.role in ("user", "assistant"):
                self.store.add_message(discussion.id, message.role, message.content)
        return discussion

    def get(self, discussion_id: str) -> Discussion:
        """One discussion (``NotFoundError`` if there is none with that id)."""
        return self.store.get_discussion(discussion_id)

    def discussions(
        self,
        search: str | None = None,
        personality_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Discussion]:
        """Discussions, newest first; ``search`` matches titles and message text."""
        return self.store.list_discussions(
            search=search or None, personality_id=personality_id, limit=limit, offset=offset
        )

    def rename(self, discussion_id: str, title: str) -> Discussion:
        return self.store.rename_discussion(discussion_id, title)

    def delete(self, discussion_id: str) -> None:
        """Delete a discussion with its branches and files (a turn running in it is stopped)."""
        self.cancel(discussion_id)
        self.store.delete_discussion(discussion_id)
        from ..knowledge.library import forget

        forget(discussion_id)  # the files attached to it go with it

    def attach(self, discussion_id: str, filename: str, data: bytes) -> dict[str, Any]:
        """Add a file to a discussion's own index (the default chat retrieves from it);
        raises a ``LollmsError`` saying why a file cannot be read or is too large."""
        from ..knowledge.library import attach

        self.get(discussion_id)  # an unknown discussion is refused before anything is written
        return attach(discussion_id, filename, data)

    def export_markdown(self, discussion_id: str, link_prefix: str = "") -> str:
        return self.store.export_markdown(discussion_id, link_prefix)

    def export_json(self, discussion_id: str) -> dict[str, Any]:
        return self.store.export_json(discussion_id)

    def export_file(self, discussion_id: str, kind: str, folder: Path) -> Path:
        """Write a discussion's export (``md`` or ``json``) into ``folder`` for a download.

        Earlier downloads there older than :data:`EXPORT_TTL_S` are removed first, so exports
        never pile up (the folder is the caller's: the app uses one inside the store's files).
        """
        folder.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - EXPORT_TTL_S
        for old in folder.glob("discussion-*"):
            with suppress(OSError):
                if old.is_file() and old.stat().st_mtime < cutoff:
                    old.unlink()
        if kind == "md":
            path = folder / f"discussion-{discussion_id}.md"
            path.write_text(self.export_markdown(discussion_id), encoding="utf-8")
        else:
            path = folder / f"discussion-{discussion_id}.json"
            text = json.dumps(self.export_json(discussion_id), indent=2, ensure_ascii=False)
            path.write_text(text, encoding="utf-8")
        return path

    def import_json(
        self, data: Mapping[str, Any] | str | bytes, files_from: Path | None = None
    ) -> str:
        """Add a discussion from an export (under new ids); return its id. ``data`` may be the
        file's text as is: it is then read with bounded work (size, nesting, finite numbers)."""
        parsed = read_export(data) if isinstance(data, str | bytes) else data
        return self.store.import_json(parsed, files_from)

    def settings(self, personality_id: str) -> dict[str, Any]:
        """The settings the user saved for a personality."""
        return self.store.get_settings(personality_id)

    def save_settings(self, personality_id: str, settings: Mapping[str, Any]) -> None:
        self.store.save_settings(personality_id, settings)

    # -- reading a discussion ---------------------------------------------------------------------

    def history(self, discussion_id: str, leaf_id: str | None = None) -> list[Message]:
        """The messages of a branch, root first: the active one, or the one ending at ``leaf_id``."""
        return self.store.thread(discussion_id, leaf_id)

    def chat_history(self, discussion_id: str, before: Message) -> list[ChatMessage]:
        """What the model sees before ``before``: the complete messages of its branch."""
        if before.parent_id is None:
            return []
        return history_of(self.store.thread(discussion_id, before.parent_id))

    def message(self, message_id: str) -> Message:
        return self.store.get_message(message_id)

    def steps(self, message_id: str) -> list[Step]:
        """An answer's steps in run order."""
        return self.store.steps(message_id)

    def files(self, message_id: str) -> tuple[list[Path], list[Path]]:
        """An answer's images and whole audio files that may be served, in the order produced (a
        spoken sentence's piece, params ``part``, is left out: the whole file plays; a file
        outside the store's folder is left out too)."""
        images: list[Path] = []
        audio: list[Path] = []
        for artifact in self.store.artifacts(message_id):
            if artifact.kind not in ("image", "audio") or artifact.part:
                continue
            with suppress(StoreError):
                path = self.store.resolve_artifact(artifact.path)
                (images if artifact.kind == "image" else audio).append(path)
        return images, audio

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

    def undo(self, discussion_id: str) -> str:
        """Take back the active branch's last exchange: its last user message and every answer to
        it (all their versions) are deleted. The branch then ends at the answer before, or, where
        the message had other versions (edits), shows the newest of those as it was left. Returns
        the message's text, for the box to offer again. Refused while an answer is being written.
        """
        thread = self.store.thread(discussion_id)
        last = next((m for m in reversed(thread) if m.role == "user"), None)
        if last is None:
            raise LollmsError("nothing to undo: this discussion has no message of yours yet")
        below = thread[thread.index(last) :]
        if any(m.status == Status.RUNNING for m in below):
            raise LollmsError("an answer is still being written: stop it first, then undo")
        self.store.delete_message(last.id)
        return last.content

    # -- turns ------------------------------------------------------------------------------------

    def run_turn(
        self,
        personality: str | Personality,
        message: str,
        *,
        history: Sequence[ChatMessage] = (),
        settings: Mapping[str, Any] | None = None,
        sampling: Mapping[str, Any] | None = None,
        cancel: threading.Event | None = None,
        artifacts_dir: Path | None = None,
        attachments: Sequence[tuple[str, bytes]] = (),
    ) -> Turn:
        """A turn that is not saved: ``message`` after ``history`` (e.g. an HTTP request's);
        files it paints go to ``artifacts_dir``. ``attachments`` (name, bytes) are indexed for
        this turn only and forgotten when it ends; a file that cannot be read is refused here,
        before the turn starts."""
        cancel = cancel or threading.Event()
        key = None
        if attachments:
            from ..knowledge.library import attach, forget

            key = "unsaved-" + secrets.token_hex(8)
            try:
                for name, data in attachments:
                    attach(key, name, data)
            except BaseException:
                forget(key)
                raise

        def events() -> Iterator[Event]:  # errors raised as the turn starts surface here
            try:
                yield from self.runtime.run(
                    personality,
                    message,
                    history=history,
                    settings=settings,
                    sampling=sampling,
                    artifacts_dir=artifacts_dir,
                    cancel=cancel,
                    # Only the attachments' index is keyed by it: nothing is saved.
                    discussion_id=key,
                )
            finally:
                if key is not None:
                    from ..knowledge.library import forget

                    forget(key)

        return self._start(Turn(_turn_id(), events(), cancel))

    def send(
        self,
        personality: Personality,
        text: str,
        *,
        discussion_id: str | None = None,
        parent_id: str | None = None,
        settings: Mapping[str, Any] | None = None,
        sampling: Mapping[str, Any] | None = None,
        cancel: threading.Event | None = None,
        attachments: Sequence[tuple[str, bytes]] = (),
    ) -> Turn:
        """Add the user's message and answer it. A new discussion when ``discussion_id`` is
        None; under ``parent_id`` (a new branch) or else after the active branch's last message.
        ``attachments`` (name, bytes) join the discussion's own index first (a file that cannot
        be read is refused before anything is sent) and are named in the message's metadata."""
        created = discussion_id is None
        if discussion_id is None:
            discussion_id = self.new(personality.id).id
        try:
            attached = [self.attach(discussion_id, name, data) for name, data in attachments]
        except BaseException:
            if created:  # a refused file leaves no empty discussion behind
                self.delete(discussion_id)
            raise
        metadata = (
            {"attachments": [{"name": a["source"], "bytes": a["bytes"]} for a in attached]}
            if attached
            else None
        )
        user = self.store.add_message(
            discussion_id,
            "user",
            text,
            LEAF if parent_id is None else parent_id,
            metadata=metadata,
        )
        return self._answer(personality, discussion_id, user, settings, sampling, cancel)

    def regenerate(
        self,
        personality: Personality,
        discussion_id: str,
        *,
        settings: Mapping[str, Any] | None = None,
        sampling: Mapping[str, Any] | None = None,
        cancel: threading.Event | None = None,
    ) -> Turn:
        """A new answer to the last user message, beside the old one (which is kept)."""
        users = [m for m in self.store.thread(discussion_id) if m.role == "user"]
        if not users:
            raise LollmsError("nothing to regenerate yet: send a message first")
        return self._answer(personality, discussion_id, users[-1], settings, sampling, cancel)

    def edit(
        self,
        personality: Personality,
        discussion_id: str,
        message_id: str,
        text: str,
        *,
        settings: Mapping[str, Any] | None = None,
        sampling: Mapping[str, Any] | None = None,
        cancel: threading.Event | None = None,
    ) -> Turn:
        """Resend an edited user message as a new branch beside the original."""
        original = self.store.get_message(message_id)
        if original.role != "user" or original.discussion_id != discussion_id:
            raise LollmsError("only your own messages in this discussion can be edited and resent")
        parent: Any = original.parent_id  # None: a new root branch
        user = self.store.add_message(discussion_id, "user", text, parent)
        return self._answer(personality, discussion_id, user, settings, sampling, cancel)

    def continue_(
        self,
        personality: Personality,
        discussion_id: str,
        *,
        settings: Mapping[str, Any] | None = None,
        sampling: Mapping[str, Any] | None = None,
        cancel: threading.Event | None = None,
    ) -> Turn:
        """Extend the last answer (cut at max tokens, stopped, or interrupted) in place; its
        tokens are only the new text, ``turn.prefix`` is what was there."""
        thread = self.store.thread(discussion_id)
        if len(thread) < 2 or thread[-1].role != "assistant" or thread[-2].role != "user":
            raise LollmsError(
                f"nothing to continue in discussion {discussion_id}: its last message is not "
                "an answer; send a message instead"
            )
        answer, user = thread[-1], thread[-2]
        if answer.status == Status.RUNNING:
            raise LollmsError("the last answer is still being written: wait, or stop it first")
        if not answer.content.strip():
            raise LollmsError("the last answer is empty: regenerate it instead")
        history = self.chat_history(discussion_id, user)
        cancel = cancel or threading.Event()

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
        turn = Turn(
            _turn_id(),
            recording.record(events()),
            cancel,
            discussion_id=discussion_id,
            user_id=user.id,
            answer_id=answer.id,
            prefix=answer.content,
            recording=recording,
        )
        return self._start(turn)

    def cancel(self, key: str) -> bool:
        """Stop the running turn with this turn, discussion or answer id; False if none runs."""
        with self._lock:
            event = self._running.get(key)
        if event is None:
            return False
        event.set()
        return True

    # -- internals --------------------------------------------------------------------------------

    def _answer(
        self,
        personality: Personality,
        discussion_id: str,
        user: Message,
        settings: Mapping[str, Any] | None,
        sampling: Mapping[str, Any] | None,
        cancel: threading.Event | None,
    ) -> Turn:
        history = self.chat_history(discussion_id, user)
        cancel = cancel or threading.Event()

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
        turn = Turn(
            _turn_id(),
            recording.record(events()),
            cancel,
            discussion_id=discussion_id,
            user_id=user.id,
            answer_id=recording.answer_id,
            recording=recording,
        )
        return self._start(turn)

    def _start(self, turn: Turn) -> Turn:
        keys = [k for k in (turn.id, turn.discussion_id, turn.answer_id) if k]
        with self._lock:
            for key in keys:
                self._running[key] = turn.cancel

        def release() -> None:
            with self._lock:
                for key in keys:
                    if self._running.get(key) is turn.cancel:
                        del self._running[key]

        turn._release = release
        return turn


def _turn_id() -> str:
    return "turn-" + secrets.token_hex(6)
