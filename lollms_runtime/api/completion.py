"""A turn's events as a chat completion: whole, or as OpenAI's server-sent chunks.

The turn runs on a worker thread (the engine's events are a plain iterator); its events cross to
the event loop through a queue, and a client that goes away sets the turn's cancel event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import Request

from ..errors import LollmsError
from ..events import (
    ArtifactProduced,
    Done,
    Event,
    ImageProduced,
    Reply,
    StepFinished,
    StepStarted,
    Token,
    TurnError,
    Waiting,
)
from .errors import APIError
from .requests import ChatRequest

log = logging.getLogger(__name__)
_END = object()


async def pump(
    start: Callable[[], Any], cancel: threading.Event, done: Callable[[], None]
) -> AsyncIterator[Event | BaseException]:
    """The turn's events, produced on a worker thread; leaving early cancels the turn."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def work() -> None:
        try:
            for event in start():
                loop.call_soon_threadsafe(queue.put_nowait, event)
        except BaseException as exc:  # handed to the loop: the response says what happened
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            done()
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    threading.Thread(target=work, name="lollms-api-turn", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            yield item
    finally:
        cancel.set()  # a no-op after a finished turn; stops one whose client left


class Completion:
    """Turns a turn's events into a chat completion, whole or as server-sent chunks."""

    def __init__(self, chat: ChatRequest, cid: str, file_url: Callable[[Path], str]) -> None:
        self.chat = chat
        self.id = cid
        self.created = int(time.time())
        self.file_url = file_url
        self.text: list[str] = []
        self.images: list[str] = []
        self.audio: list[str] = []  # whole audio files (ArtifactProduced kind "audio"), as links
        self.trace: list[dict[str, Any]] = []
        self.cached = 0
        self.reply: Reply | None = None
        self.done: Done | None = None
        self.error: TurnError | None = None
        self.discussion_id: str | None = None

    # -- events -----------------------------------------------------------------------------
    def see(self, event: Event) -> dict[str, Any] | None:
        """Record one event; returns the trace entry to stream, if any."""
        if isinstance(event, Waiting):  # queued behind other turns on the model
            return {"event": "waiting", "position": event.position, "id": event.step_id}
        if isinstance(event, StepStarted):
            return {"event": "step_started", "id": event.step_id, "kind": event.kind,
                    "title": event.title, "path": event.path}  # fmt: skip
        if isinstance(event, StepFinished):
            self.cached += event.cached_tokens
            entry = {
                "event": "step_finished",
                "id": event.step_id,
                "kind": event.kind,
                "title": event.title,
                "path": event.path,
                "status": event.status,
                "duration": round(event.duration, 4),
                "prompt_tokens": event.prompt_tokens,
                "cached_tokens": event.cached_tokens,
                "generation_tokens": event.generation_tokens,
                "detail": event.detail,
                "error": event.error,
            }
            self.trace.append(entry)
            return entry
        if isinstance(event, ImageProduced):
            self.images.append(self.file_url(event.path))
        elif isinstance(event, ArtifactProduced) and event.kind == "audio" and not event.part:
            self.audio.append(self.file_url(event.path))
        elif isinstance(event, Reply):
            self.reply = event
        elif isinstance(event, TurnError):
            self.error = event
        elif isinstance(event, Done):
            self.done = event
        return None

    def usage(self) -> dict[str, Any]:
        prompt = self.done.prompt_tokens if self.done else 0
        completion = self.done.generation_tokens if self.done else 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
        }

    def final_text(self) -> str:
        text = self.reply.text if self.reply else "".join(self.text)
        if self.images:
            text += "".join(f"\n\n![image]({url})" for url in self.images)
        text += "".join(f"\n\n[audio]({url})" for url in self.audio)
        return text

    def finish_reason(self) -> str:
        if self.done is not None and self.done.status == "cancelled":
            return "stop"
        limit = self.chat.sampling.get("max_tokens")
        # The last step that generated tokens (a step kind is known by what it did, not its name).
        last = next((t for t in reversed(self.trace) if t["generation_tokens"]), None)
        if limit and last and last["generation_tokens"] >= limit:
            return "length"
        return "stop"

    def failure(self) -> APIError:
        assert self.error is not None
        hint = f" ({self.error.hint})" if self.error.hint else ""
        if self.error.retry_after is not None:  # the model's queue was full: come back later
            return APIError(
                503,
                f"busy: {self.error.message}{hint}",
                code="busy",
                retry_after=max(1, math.ceil(self.error.retry_after)),
            )
        return APIError(500, f"the turn failed: {self.error.message}{hint}", code="turn_failed")

    def extras(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.images:
            extra["images"] = self.images
        if self.audio:
            extra["audio"] = self.audio
        if self.chat.trace:
            extra["trace"] = self.trace
        if self.discussion_id:
            extra["discussion_id"] = self.discussion_id
        return extra

    # -- whole ------------------------------------------------------------------------------
    async def whole(
        self, events: AsyncIterator[Any], request: Request, cancel: threading.Event
    ) -> dict[str, Any]:
        watcher = asyncio.create_task(_watch_disconnect(request, cancel))
        try:
            async for event in events:
                if isinstance(event, BaseException):
                    raise as_api_error(event)
                if isinstance(event, Token) and event.visible:
                    self.text.append(event.text)
                self.see(event)
        finally:
            watcher.cancel()
        if self.error is not None:
            raise self.failure()
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.chat.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.final_text()},
                    "finish_reason": self.finish_reason(),
                    "logprobs": None,
                }
            ],
            "usage": self.usage(),
            **self.extras(),
        }

    # -- streamed ---------------------------------------------------------------------------
    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.chat.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    def side(self, **extra: Any) -> str:
        """A chunk with no choice, carrying only extra fields (usage, trace)."""
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.chat.model, "choices": [], **extra}  # fmt: skip
        return f"data: {json.dumps(body)}\n\n"

    async def stream(
        self, events: AsyncIterator[Any], cancel: threading.Event
    ) -> AsyncIterator[str]:
        yield self.chunk({"role": "assistant", "content": ""})
        sent = ""
        try:
            async for event in events:
                if isinstance(event, BaseException):
                    failure = as_api_error(event)
                    yield f"data: {json.dumps(failure.body())}\n\n"
                    yield "data: [DONE]\n\n"
                    return
                if isinstance(event, Token) and event.visible and event.text:
                    self.text.append(event.text)
                    sent += event.text
                    yield self.chunk({"content": event.text})
                    continue
                entry = self.see(event)
                if entry is not None and self.chat.trace:
                    yield self.side(trace=entry)
        finally:
            cancel.set()
        if self.error is not None:
            yield f"data: {json.dumps(self.failure().body())}\n\n"
            yield "data: [DONE]\n\n"
            return
        final = self.final_text()
        rest: dict[str, Any] = {}
        if final.startswith(sent):
            if final[len(sent) :]:
                yield self.chunk({"content": final[len(sent) :]})
        elif final.strip() != sent.strip():
            # Post-processing changed the draft: the whole answer, for clients that can replace.
            rest["replace_content"] = final
        yield self.chunk({}, self.finish_reason(), **rest, **self.extras())
        if self.chat.include_usage:
            yield self.side(usage=self.usage())
        yield "data: [DONE]\n\n"


async def _watch_disconnect(request: Request, cancel: threading.Event) -> None:
    while not cancel.is_set():
        if await request.is_disconnected():
            cancel.set()
            return
        await asyncio.sleep(0.25)


def as_api_error(exc: BaseException) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, LollmsError):
        return APIError(400, str(exc), code="turn_refused")
    log.error("API turn failed", exc_info=exc)
    return APIError(500, "internal error: the server log has the details", code="internal")
