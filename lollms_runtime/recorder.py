"""Saving a turn into the discussion store as its events stream (used by the conversation service)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .backends.base import ChatMessage
from .errors import LollmsError
from .events import (
    ArtifactProduced,
    Done,
    Event,
    ImageProduced,
    Reply,
    Status,
    StepFinished,
    Token,
    TurnError,
)
from .store import LEAF, DiscussionStore, StoreError, StoreFull
from .store.models import Message

log = logging.getLogger(__name__)


def history_of(thread: list[Message]) -> list[ChatMessage]:
    """The chat history the engine sees: complete user and assistant messages of a branch."""
    return [
        ChatMessage(m.role, m.content)
        for m in thread
        if m.role in ("user", "assistant") and m.content and m.status != Status.FAILED
    ]


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))


class Recording:
    """One answer being saved: a new one, or an existing one being continued.

    ``answer_id`` exists as soon as the recording does, so a front end can show it at once;
    ``images`` are the images kept with the answer (only those the store may serve), ``files``
    the other artifacts (:class:`ArtifactProduced`: audio...), each as (path, kind, mime).
    """

    def __init__(
        self,
        store: DiscussionStore,
        discussion_id: str,
        *,
        parent_id: str | None = None,
        model: str | None = None,
        sampling: Mapping[str, Any] | None = None,
        continue_id: str | None = None,
    ) -> None:
        self.store = store
        self.discussion_id = discussion_id
        self.images: list[Path] = []
        self.files: list[tuple[Path, str, str]] = []
        self.finished = False
        if continue_id is not None:
            store.continue_answer(continue_id)
            self.answer_id = continue_id
            for artifact in store.artifacts(continue_id):
                with contextlib.suppress(StoreError):
                    path = store.resolve_artifact(artifact.path)
                    if artifact.kind == "image":
                        self.images.append(path)
                    else:
                        self.files.append((path, artifact.kind, artifact.mime or ""))
        else:
            self.answer_id = store.begin_answer(
                discussion_id,
                LEAF if parent_id is None else parent_id,
                model=model,
                sampling=dict(sampling or {}),
            )

    def record(self, events: Iterator[Event]) -> Iterator[Event]:
        """Pass ``events`` through, saving the answer as it grows: a kill leaves it *interrupted*,
        an exception leaves it *error* (and goes on up), a consumer that stops early *cancelled*."""
        reply_text: str | None = None
        error: str | None = None
        try:
            for event in events:
                if isinstance(event, Token) and event.visible:
                    self.store.append_answer(self.answer_id, event.text)
                elif isinstance(event, StepFinished):
                    self._step(event)
                elif isinstance(event, ImageProduced):
                    self._image(event.path, event.step_id, event.params)
                elif isinstance(event, ArtifactProduced):
                    self._file(event)
                elif isinstance(event, Reply):
                    reply_text = event.text
                    for image in event.images:
                        self._image(Path(image), None, {})
                elif isinstance(event, TurnError):
                    error = event.message + (f"\n{event.hint}" if event.hint else "")
                elif isinstance(event, Done):
                    self._finish(
                        event.status,
                        content=reply_text
                        if reply_text is not None and event.status == Status.OK
                        else None,
                        error=error,
                        stats={
                            "prompt_tokens": event.prompt_tokens,
                            "generation_tokens": event.generation_tokens,
                            "duration_s": round(event.duration, 3),
                            "steps": event.steps,
                        },
                    )
                yield event
        except StoreFull as exc:
            # The answer cannot be saved any further: stop the model, keep what was written,
            # and end the turn with a message instead of an exception in every front end.
            close = getattr(events, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            with contextlib.suppress(StoreError):
                self._finish(Status.FAILED, error=str(exc))
            self.finished = True
            yield TurnError(str(exc), hint="free some disk space, then continue the answer")
            yield Done(Status.FAILED)
        except LollmsError as exc:  # e.g. settings that do not fit, raised as the turn starts
            self._finish(Status.FAILED, error=str(exc))
            raise
        except Exception as exc:  # a plugin or personality bug: say so, keep the text so far
            self._finish(Status.FAILED, error=unexpected(exc))
            raise
        finally:
            if not self.finished:  # the consumer stopped early (closed generator, Ctrl-C)
                self._finish(Status.CANCELLED)

    def _finish(self, status: Status, **kwargs: Any) -> None:
        if not self.finished:
            self.store.finish_answer(self.answer_id, status, **kwargs)
            self.finished = True

    def _step(self, event: StepFinished) -> None:
        self.store.add_step(
            self.answer_id,
            event.kind,
            step_id=event.step_id,
            title=event.title,
            detail=event.detail,
            path=event.path,
            status=event.status,
            output=None if event.answer else _jsonable(event.output),
            duration_s=event.duration,
            prompt_tokens=event.prompt_tokens,
            generation_tokens=event.generation_tokens,
            error=event.error or None,
        )

    def _image(self, path: Path, step_id: str | None, params: Mapping[str, Any]) -> None:
        if any(p.resolve() == path.resolve() for p in self.images):
            return
        try:
            self.store.add_artifact(
                self.answer_id, path, params=_jsonable(dict(params)), step_id=step_id
            )
        except StoreError as exc:  # outside the store's folder: never served, so not kept
            log.warning("image not kept: %s", exc)
            return
        self.images.append(path)

    def _file(self, event: ArtifactProduced) -> None:
        path = Path(event.path)
        if any(p.resolve() == path.resolve() for p, _kind, _mime in self.files):
            return
        try:
            self.store.add_artifact(
                self.answer_id,
                path,
                kind=event.kind,
                mime=event.mime,
                params=_jsonable(dict(event.params)),
                step_id=event.step_id,
            )
        except StoreError as exc:  # outside the store's folder: never served, so not kept
            log.warning("%s not kept: %s", event.kind, exc)
            return
        self.files.append((path, event.kind, event.mime))


def unexpected(exc: BaseException) -> str:
    """How a turn that crashed on a bug is worded."""
    return f"the turn failed unexpectedly: {type(exc).__name__}: {exc}"


def record_turn(
    store: DiscussionStore,
    discussion_id: str,
    events: Iterator[Event],
    *,
    parent_id: str | None = None,
    model: str | None = None,
    sampling: Mapping[str, Any] | None = None,
    continue_id: str | None = None,
) -> Iterator[Event]:
    """Pass ``events`` through, saving the answer as it grows (see :class:`Recording`);
    ``continue_id`` appends to that existing answer instead of starting a new one."""
    recording = Recording(
        store,
        discussion_id,
        parent_id=parent_id,
        model=model,
        sampling=sampling,
        continue_id=continue_id,
    )
    return recording.record(events)
