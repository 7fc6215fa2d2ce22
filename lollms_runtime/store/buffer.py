"""Answers that stream: text is buffered and written behind, on a timer thread, so a long answer
costs few writes and a killed process loses at most ``flush_interval`` seconds of text."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..events import Status
from . import codec
from .connection import PendingAnswer
from .errors import NotFoundError, StoreError, StoreFull
from .liveness import sweep, writer_alive
from .models import FINAL_STATUSES, Message
from .tree import LEAF, TreeStore, _Leaf

log = logging.getLogger(__name__)


class AnswerStore(TreeStore):
    """Streams answers into the tree; an answer another live process is writing is left alone,
    one whose writer died is marked ``interrupted`` when a store opens."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        flush_interval: float = 0.2,
        flush_chars: int = 2048,
        busy_timeout_ms: int = 10_000,
    ) -> None:
        super().__init__(
            path,
            flush_interval=flush_interval,
            flush_chars=flush_chars,
            busy_timeout_ms=busy_timeout_ms,
        )
        self.recover_interrupted()

    def close(self) -> None:
        """Write pending text, mark this store's unfinished answers interrupted, and close."""
        with self._lock:
            if self._closed:
                return
            try:
                self._flush_all()
                if self._answers:
                    with self._write() as c:
                        self._interrupt(c, list(self._answers))
                self._answers.clear()
            except StoreFull as exc:  # what reached the file stays; the next open interrupts it
                log.error("%s", exc)
            finally:
                self._closed = True
                if self._timer is not None:
                    self._timer.cancel()
                self._conn.close()
                self._writer.close()

    def recover_interrupted(self) -> list[str]:
        """Mark ``interrupted`` every answer left ``running`` by a writer that is gone."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, writer FROM messages WHERE status = 'running'"
            ).fetchall()
            dead = [
                row["id"]
                for row in rows
                if row["writer"] != self._writer.token
                and not writer_alive(self._writers, row["writer"])
            ]
            if dead:
                with self._write() as c:
                    self._interrupt(c, dead)
                log.info("marked %d unfinished answer(s) as interrupted", len(dead))
            sweep(self._writers, keep=self._writer.token)
            return dead

    # -- answers that stream ----------------------------------------------------------------------

    def begin_answer(
        self,
        discussion_id: str,
        parent_id: str | _Leaf | None = LEAF,
        *,
        model: str | None = None,
        sampling: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        content: str = "",
    ) -> str:
        """Start an assistant answer (status ``running``) and return its id.

        Feed it with :meth:`append_answer`, close it with :meth:`finish_answer`. If the process
        dies first, the next store to open marks it ``interrupted``, keeping the text so far.
        """
        with self._lock:
            message_id = self._insert_message(
                discussion_id,
                "assistant",
                content,
                parent_id,
                Status.RUNNING,
                model,
                sampling,
                metadata,
                None,
                self._writer.token,
            )
            self._answers[message_id] = PendingAnswer(discussion_id)
            return message_id

    def continue_answer(self, message_id: str) -> None:
        """Reopen a finished or interrupted answer so more text can be appended to it."""
        with self._lock:
            message = self.get_message(message_id)
            if message.role != "assistant":
                raise StoreError(
                    f"message {message_id!r} is a {message.role} message, not an answer"
                )
            with self._write() as c:
                c.execute(
                    "UPDATE messages SET status = 'running', error = NULL, writer = ?,"
                    " updated_at = ? WHERE id = ?",
                    (self._writer.token, time.time(), message_id),
                )
            self._answers[message_id] = PendingAnswer(message.discussion_id)

    def append_answer(self, message_id: str, text_delta: str) -> None:
        """Append streamed text; it is written at most every ``flush_interval`` seconds."""
        with self._lock:
            answer = self._answers.get(message_id)
            if answer is None:
                raise StoreError(
                    f"message {message_id!r} is not being written by this store: "
                    "call begin_answer (or continue_answer) first"
                )
            if not text_delta:
                return
            answer.pending.append(text_delta)
            answer.pending_chars += len(text_delta)
            now = time.monotonic()
            due = answer.last_flush + self.flush_interval
            if answer.pending_chars >= self.flush_chars or now >= due:
                try:
                    self._flush(message_id, answer)
                    return
                except sqlite3.OperationalError as exc:
                    # Another process held the file past busy_timeout: the text stays pending
                    # and the timer retries, rather than failing the generation.
                    log.warning("could not save streamed text yet: %s", exc)
                    due = now + self.flush_interval
            self._arm_timer(due - now)

    def finish_answer(
        self,
        message_id: str,
        status: Status = Status.OK,
        content: str | None = None,
        error: str | None = None,
        stats: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Message:
        """Close an answer: its final status, text (default: what was appended), error, stats.

        ``stats`` (token counts, speed, finish reason...) lands in ``metadata["stats"]``; steps
        still running are closed as ``cancelled`` or ``interrupted`` to match.
        """
        if status not in FINAL_STATUSES:
            raise StoreError(
                f"an answer cannot finish as '{status}': use one of "
                f"{sorted(s.value for s in FINAL_STATUSES)}"
            )
        with self._lock:
            answer = self._answers.get(message_id)
            pending = "".join(answer.pending) if answer else ""
            with self._write() as c:
                row = c.execute(
                    "SELECT content, metadata, discussion_id FROM messages WHERE id = ?",
                    (message_id,),
                ).fetchone()
                if row is None:
                    raise NotFoundError(f"no message {message_id!r} (deleted with its branch?)")
                meta = dict(codec.loads(row["metadata"]) or {})
                meta.update(metadata or {})
                if stats:
                    meta["stats"] = dict(stats)
                text = row["content"] + pending if content is None else content
                c.execute(
                    "UPDATE messages SET content = ?, status = ?, error = ?, metadata = ?,"
                    " writer = NULL, updated_at = ? WHERE id = ?",
                    (text, status, error, codec.dumps(meta), time.time(), message_id),
                )
                step_status = Status.CANCELLED if status == Status.CANCELLED else Status.INTERRUPTED
                c.execute(
                    "UPDATE steps SET status = ? WHERE message_id = ? AND status = 'running'",
                    (step_status.value, message_id),
                )
                self._touch(c, row["discussion_id"])
            self._answers.pop(message_id, None)  # only once written: a busy file keeps the text
            return self.get_message(message_id)

    def flush(self) -> None:
        """Write every answer's pending text now."""
        with self._lock:
            self._flush_all()

    def _interrupt(self, c: sqlite3.Connection, message_ids: list[str]) -> None:
        marks = ",".join("?" * len(message_ids))
        c.execute(
            "UPDATE messages SET status = 'interrupted', writer = NULL, updated_at = ?"
            f" WHERE status = 'running' AND id IN ({marks})",
            (time.time(), *message_ids),
        )
        c.execute(
            f"UPDATE steps SET status = 'interrupted' WHERE status = 'running'"
            f" AND message_id IN ({marks})",
            message_ids,
        )

    def _flush(self, message_id: str, answer: PendingAnswer) -> None:
        if answer.pending:
            delta = "".join(answer.pending)
            with self._write() as c:
                c.execute(
                    "UPDATE messages SET content = content || ?, updated_at = ? WHERE id = ?",
                    (delta, time.time(), message_id),
                )
            answer.pending.clear()
            answer.pending_chars = 0
        answer.last_flush = time.monotonic()

    def _flush_all(self) -> None:
        for message_id, answer in list(self._answers.items()):
            self._flush(message_id, answer)

    def _arm_timer(self, delay: float) -> None:
        # One timer at a time writes whatever is pending once the interval is up, so text that
        # arrives just before the model pauses (a slow step, a long prompt) still reaches the file.
        if self._timer is not None and self._timer.is_alive():
            return
        self._timer = threading.Timer(max(delay, 0.0), self._on_timer)
        self._timer.daemon = True
        self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            waiting: list[float] = []
            for message_id, answer in list(self._answers.items()):
                if not answer.pending:
                    continue
                due = answer.last_flush + self.flush_interval
                if due <= now:
                    try:
                        self._flush(message_id, answer)
                    except StoreFull as exc:  # the writer's next append reports it
                        log.error("%s", exc)
                    except sqlite3.Error as exc:  # a busy file: keep the text, try again soon
                        log.warning("could not save streamed text yet: %s", exc)
                        waiting.append(now + self.flush_interval)
                else:
                    waiting.append(due)
            self._timer = None
            if waiting:
                self._arm_timer(min(waiting) - now)
