"""Saving a turn into the discussion store as its events stream (shared by the CLI and the app)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from .backends.base import ChatMessage
from .events import Done, Event, ImageProduced, Reply, StepFinished, Token, TurnError
from .store import Store
from .store.models import Message

_STATUS = {"ok": "complete", "error": "error", "cancelled": "cancelled"}
_STEP_STATUS = {"ok": "complete", "skipped": "skipped", "failed": "error", "fallback": "complete"}


def history_of(thread: list[Message]) -> list[ChatMessage]:
    """The chat history the engine sees: complete user and assistant messages of a branch."""
    return [
        ChatMessage(m.role, m.content)
        for m in thread
        if m.role in ("user", "assistant") and m.content and m.status != "error"
    ]


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))


def record_turn(
    store: Store,
    discussion_id: str,
    events: Iterator[Event],
    *,
    parent_id: str | None = None,
    model: str | None = None,
    sampling: Mapping[str, Any] | None = None,
) -> Iterator[Event]:
    """Pass ``events`` through, saving the answer as it grows: a kill leaves it *interrupted*."""
    kwargs: dict[str, Any] = {"model": model, "sampling": dict(sampling or {})}
    if parent_id is not None:
        kwargs["parent_id"] = parent_id
    answer = store.begin_answer(discussion_id, **kwargs)
    reply_text: str | None = None
    error: str | None = None
    finished = False
    try:
        for event in events:
            if isinstance(event, Token) and event.visible:
                store.append_answer(answer, event.text)
            elif isinstance(event, StepFinished):
                store.add_step(
                    answer,
                    event.kind,
                    step_id=event.step_id,
                    title=event.title,
                    status=_STEP_STATUS[event.status],  # type: ignore[arg-type]
                    output=_jsonable(event.output),
                    duration_s=event.duration,
                    prompt_tokens=event.prompt_tokens,
                    generation_tokens=event.generation_tokens,
                    error=event.error or None,
                )
            elif isinstance(event, ImageProduced):
                store.add_artifact(
                    answer, event.path, params=_jsonable(event.params), step_id=event.step_id
                )
            elif isinstance(event, Reply):
                reply_text = event.text
            elif isinstance(event, TurnError):
                error = event.message + (f"\n{event.hint}" if event.hint else "")
            elif isinstance(event, Done):
                store.finish_answer(
                    answer,
                    _STATUS[event.status],  # type: ignore[arg-type]
                    content=reply_text if reply_text is not None and event.status == "ok" else None,
                    error=error,
                    stats={
                        "prompt_tokens": event.prompt_tokens,
                        "generation_tokens": event.generation_tokens,
                        "duration_s": round(event.duration, 3),
                        "steps": event.steps,
                    },
                )
                finished = True
            yield event
    finally:
        if not finished:  # the consumer stopped early (closed generator, exception)
            store.finish_answer(answer, "cancelled")
