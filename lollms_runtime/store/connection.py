"""The store's SQLite connection: opening, pragmas, migrations, transactions and shared helpers.

``StoreBase`` is the first layer of :class:`~lollms_runtime.store.Store`; each later layer (the
message tree, streamed answers, steps and artifacts, settings, export) adds one job on top.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import codec
from .errors import NotFoundError, StoreError, StoreFull
from .liveness import WriterLock, writer_alive
from .models import Discussion, Message
from .schema import migrate

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^[a-z0-9]{4,64}$")


@dataclass
class PendingAnswer:
    """An answer this store is writing: text appended since the last write waits here."""

    discussion_id: str
    pending: list[str] = field(default_factory=list)
    pending_chars: int = 0
    # The first text of an answer is written at once (readers see it start), then in batches.
    last_flush: float = float("-inf")


class StoreBase:
    """One SQLite file (WAL) plus an ``artifacts/`` folder beside it, behind one lock.

    Safe to share between threads (one connection behind a lock). Several processes may open the
    same file.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        flush_interval: float = 0.2,
        flush_chars: int = 2048,
        busy_timeout_ms: int = 10_000,
    ) -> None:
        if path is None:
            from ..home import database_path

            path = database_path()
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.root = self.path.parent
        self.artifacts_root = self.root / "artifacts"
        # Text streamed into an answer reaches the file at least this often (a kill loses less).
        self.flush_interval = flush_interval
        self.flush_chars = flush_chars
        self._lock = threading.RLock()
        self._answers: dict[str, PendingAnswer] = {}
        self._timer: threading.Timer | None = None
        self._closed = False
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
                check_same_thread=False,  # guarded by self._lock; Gradio calls from worker threads
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the discussion store {self.path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms):d}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":  # e.g. a network file system without shared memory
                log.warning("%s: SQLite refused WAL mode (kept %r)", self.path, mode)
            # With WAL, NORMAL survives a process crash; only an OS crash may lose the last commit.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn, str(self.path))
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(
                f"{self.path} is not a usable discussion store ({exc}): move it aside and "
                "restart, or point LOLLMS_HOME at another folder."
            ) from exc
        except BaseException:
            conn.close()
            raise
        self._writers = self.root / ".writers"
        self._writer = WriterLock(self._writers, codec.new_id(16))

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (later layers first save what they hold)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()
            self._writer.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so a busy file waits (busy_timeout) instead
        # of failing half-way through. Nested use joins the outer transaction.
        with self._lock:
            if self._closed:
                raise StoreError("this store is closed: open a new Store")
            if self._conn.in_transaction:
                yield self._conn
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if _cannot_grow(exc):
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise StoreFull(
                        f"the discussion store {self.path} cannot be written ({exc}): the disk "
                        "is full or a file-size limit was reached; free some space (what was "
                        "saved so far is kept)"
                    ) from exc
                raise

    def _writing(self, writer: str | None) -> bool:
        """Whether another live store (another process, or another Store here) writes an answer
        marked with ``writer``; this store's own answers are ordered by the service above it."""
        return (
            writer is not None
            and writer != self._writer.token
            and writer_alive(self._writers, writer)
        )

    def _remove_folder(self, discussion_id: str) -> None:
        folder = self.artifacts_root / discussion_id
        if ID_PATTERN.match(discussion_id) and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)

    def _message(self, row: sqlite3.Row) -> Message:
        answer = self._answers.get(row["id"])
        return codec.message_from(row, "".join(answer.pending) if answer else "")

    def _touch(self, c: sqlite3.Connection, discussion_id: str, **changes: Any) -> None:
        changes["updated_at"] = time.time()
        sets = ", ".join(f"{name} = ?" for name in changes)
        cur = c.execute(
            f"UPDATE discussions SET {sets} WHERE id = ?", (*changes.values(), discussion_id)
        )
        if cur.rowcount == 0:
            raise NotFoundError(f"no discussion {discussion_id!r} (deleted, or another store?)")

    def _require_discussion(self, c: sqlite3.Connection, discussion_id: str) -> Discussion:
        row = c.execute("SELECT * FROM discussions WHERE id = ?", (discussion_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no discussion {discussion_id!r} (deleted, or another store?)")
        return codec.discussion_from(row)

    def _require_message(self, c: sqlite3.Connection, message_id: str) -> None:
        if c.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is None:
            raise NotFoundError(f"no message {message_id!r} (deleted with its branch?)")


def _cannot_grow(exc: sqlite3.OperationalError) -> bool:
    """A write refused for lack of room (SQLITE_FULL) or failed by the file system (IOERR)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_FULL", "SQLITE_IOERR")) or "disk is full" in str(exc)
