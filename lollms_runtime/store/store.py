"""``Store``: discussions, branches, streamed answers, settings and artifacts in SQLite."""

from __future__ import annotations

import contextlib
import enum
import logging
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from . import codec, export, importer
from .errors import NotFoundError, StoreError, UnsafePathError
from .liveness import WriterLock, sweep, writer_alive
from .models import (
    FINAL_STATUSES,
    MESSAGE_STATUSES,
    ROLES,
    STEP_STATUSES,
    Artifact,
    Discussion,
    Message,
    MessageRole,
    MessageStatus,
    Step,
    StepStatus,
)
from .schema import migrate

log = logging.getLogger(__name__)

_ID = re.compile(r"^[a-z0-9]{4,64}$")
_TITLE_CHARS = 80


class _Leaf(enum.Enum):
    LEAF = "leaf"


LEAF = _Leaf.LEAF
"""Default ``parent_id``: attach the new message under the discussion's current leaf."""


@dataclass
class _Answer:
    """An answer this store is writing: text appended since the last write waits here."""

    discussion_id: str
    pending: list[str] = field(default_factory=list)
    pending_chars: int = 0
    # The first text of an answer is written at once (readers see it start), then in batches.
    last_flush: float = float("-inf")


class Store:
    """The discussion store: one SQLite file (WAL) plus an ``artifacts/`` folder beside it.

    Safe to share between threads (one connection behind a lock). Several processes may open the
    same file; an answer another live process is writing is left alone, one whose writer died is
    marked ``interrupted`` when a store opens.
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
        self._answers: dict[str, _Answer] = {}
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
        self.recover_interrupted()

    # -- life cycle -------------------------------------------------------------------------------

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
            finally:
                self._closed = True
                if self._timer is not None:
                    self._timer.cancel()
                self._conn.close()
                self._writer.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def recover_interrupted(self) -> list[str]:
        """Mark ``interrupted`` every answer left ``generating`` by a writer that is gone."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, writer FROM messages WHERE status = 'generating'"
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

    # -- discussions ------------------------------------------------------------------------------

    def create_discussion(
        self, personality_id: str, title: str | None = None, model: str | None = None
    ) -> Discussion:
        """A new, empty discussion (its title comes from the first user message if not given)."""
        now = time.time()
        discussion_id = codec.new_id(10)
        with self._write() as c:
            c.execute(
                "INSERT INTO discussions (id, title, personality_id, model, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (discussion_id, (title or "").strip(), personality_id, model, now, now),
            )
        return self.get_discussion(discussion_id)

    def get_discussion(self, discussion_id: str) -> Discussion:
        """One discussion; ``NotFoundError`` if there is none with that id."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM discussions WHERE id = ?", (discussion_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no discussion {discussion_id!r} (deleted, or another store?)")
        return codec.discussion_from(row)

    def list_discussions(
        self,
        search: str | None = None,
        personality_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Discussion]:
        """Discussions, most recently updated first; ``search`` matches titles and message text."""
        where: list[str] = []
        args: list[Any] = []
        if personality_id is not None:
            where.append("d.personality_id = ?")
            args.append(personality_id)
        if search and search.strip():
            title_clause, title_args = _title_match(search)
            query = _fts_query(search)
            if query:
                where.append(
                    f"({title_clause} OR d.id IN (SELECT m.discussion_id FROM messages_fts f "
                    "JOIN messages m ON m.n = f.rowid WHERE messages_fts MATCH ?))"
                )
                args += [*title_args, query]
            else:
                where.append(title_clause)
                args += title_args
        sql = "SELECT d.* FROM discussions d"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY d.updated_at DESC, d.rowid DESC LIMIT ? OFFSET ?"
        with self._lock:
            rows = self._conn.execute(sql, (*args, limit, offset)).fetchall()
        return [codec.discussion_from(row) for row in rows]

    def rename_discussion(self, discussion_id: str, title: str) -> Discussion:
        """Give a discussion a new title."""
        with self._write() as c:
            self._touch(c, discussion_id, title=title.strip())
        return self.get_discussion(discussion_id)

    def set_discussion_model(self, discussion_id: str, model: str | None) -> Discussion:
        """Record the model a discussion talks to from now on."""
        with self._write() as c:
            self._touch(c, discussion_id, model=model)
        return self.get_discussion(discussion_id)

    def delete_discussion(self, discussion_id: str) -> None:
        """Delete a discussion, its messages, steps, artifacts and its artifact folder."""
        with self._lock:
            with self._write() as c:
                self._require_discussion(c, discussion_id)
                # Cut the parent links first: a cascade down a long chain of replies would
                # otherwise recurse once per message and hit SQLite's trigger depth limit.
                c.execute("UPDATE discussions SET leaf_id = NULL WHERE id = ?", (discussion_id,))
                c.execute(
                    "UPDATE messages SET parent_id = NULL WHERE discussion_id = ?",
                    (discussion_id,),
                )
                c.execute("DELETE FROM discussions WHERE id = ?", (discussion_id,))
            for message_id, answer in list(self._answers.items()):
                if answer.discussion_id == discussion_id:
                    del self._answers[message_id]
            self._remove_folder(discussion_id)

    # -- messages and branches --------------------------------------------------------------------

    def add_message(
        self,
        discussion_id: str,
        role: MessageRole,
        content: str,
        parent_id: str | _Leaf | None = LEAF,
        *,
        status: MessageStatus = "complete",
        model: str | None = None,
        sampling: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> Message:
        """Add a message under ``parent_id`` (default: the current leaf); it becomes the leaf.

        Adding a message under an earlier one (edit-and-resend) starts a sibling branch; the old
        branch stays. Use :meth:`begin_answer` for an answer that streams.
        """
        if status == "generating":
            raise StoreError("add_message cannot add a 'generating' message: use begin_answer")
        message_id = self._insert_message(
            discussion_id, role, content, parent_id, status, model, sampling, metadata, error, None
        )
        return self.get_message(message_id)

    def get_message(self, message_id: str) -> Message:
        """One message, with any text appended but not yet written."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no message {message_id!r} (deleted with its branch?)")
            return self._message(row)

    def thread(self, discussion_id: str, leaf_id: str | None = None) -> list[Message]:
        """The messages from the root to ``leaf_id`` (default: the active branch's leaf)."""
        with self._lock:
            leaf = leaf_id or self._current_leaf(self._conn, discussion_id)
            if leaf is None:
                return []
            rows = self._conn.execute(
                """WITH RECURSIVE chain(id, depth) AS (
                    SELECT id, 0 FROM messages WHERE id = ? AND discussion_id = ?
                    UNION ALL
                    SELECT m.parent_id, chain.depth + 1 FROM messages m
                        JOIN chain ON m.id = chain.id WHERE m.parent_id IS NOT NULL
                )
                SELECT messages.* FROM chain JOIN messages ON messages.id = chain.id
                ORDER BY chain.depth DESC""",
                (leaf, discussion_id),
            ).fetchall()
            if not rows:
                raise NotFoundError(f"no message {leaf!r} in discussion {discussion_id!r}")
            return [self._message(row) for row in rows]

    def siblings(self, message_id: str) -> list[Message]:
        """The message and its alternatives (same parent), oldest first."""
        with self._lock:
            message = self.get_message(message_id)
            rows = self._conn.execute(
                "SELECT * FROM messages WHERE discussion_id = ? AND parent_id IS ? ORDER BY n",
                (message.discussion_id, message.parent_id),
            ).fetchall()
            return [self._message(row) for row in rows]

    def children(self, message_id: str) -> list[Message]:
        """The replies to a message (one per branch), oldest first."""
        with self._lock:
            self.get_message(message_id)
            rows = self._conn.execute(
                "SELECT * FROM messages WHERE parent_id = ? ORDER BY n", (message_id,)
            ).fetchall()
            return [self._message(row) for row in rows]

    def set_leaf(self, discussion_id: str, message_id: str, *, descend: bool = True) -> str:
        """Make the branch through ``message_id`` active; return its leaf.

        With ``descend`` (the default) the leaf is found by following the newest reply down from
        ``message_id``, so picking an earlier sibling shows that branch as it was left.
        """
        with self._write() as c:
            row = c.execute(
                "SELECT discussion_id FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None or row["discussion_id"] != discussion_id:
                raise NotFoundError(f"no message {message_id!r} in discussion {discussion_id!r}")
            leaf = self._descend(c, message_id) if descend else message_id
            c.execute("UPDATE discussions SET leaf_id = ? WHERE id = ?", (leaf, discussion_id))
        return leaf

    def delete_message(self, message_id: str) -> None:
        """Delete a message and every reply below it; the active branch moves to its parent."""
        with self._lock:
            message = self.get_message(message_id)
            with self._write() as c:
                ids = [
                    row[0]
                    for row in c.execute(
                        """WITH RECURSIVE sub(id) AS (
                            SELECT ? UNION ALL
                            SELECT m.id FROM messages m JOIN sub ON m.parent_id = sub.id
                        ) SELECT id FROM sub""",
                        (message_id,),
                    )
                ]
                marks = ",".join("?" * len(ids))
                c.execute(f"UPDATE messages SET parent_id = NULL WHERE id IN ({marks})", ids)
                c.execute(f"DELETE FROM messages WHERE id IN ({marks})", ids)
                for gone in ids:
                    self._answers.pop(gone, None)
                leaf = c.execute(
                    "SELECT leaf_id FROM discussions WHERE id = ?", (message.discussion_id,)
                ).fetchone()["leaf_id"]
                if leaf is None and message.parent_id is not None:
                    leaf = self._descend(c, message.parent_id)
                self._touch(c, message.discussion_id, leaf_id=leaf)

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
        """Start an assistant answer (status ``generating``) and return its id.

        Feed it with :meth:`append_answer`, close it with :meth:`finish_answer`. If the process
        dies first, the next store to open marks it ``interrupted``, keeping the text so far.
        """
        with self._lock:
            message_id = self._insert_message(
                discussion_id,
                "assistant",
                content,
                parent_id,
                "generating",
                model,
                sampling,
                metadata,
                None,
                self._writer.token,
            )
            self._answers[message_id] = _Answer(discussion_id)
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
                    "UPDATE messages SET status = 'generating', error = NULL, writer = ?,"
                    " updated_at = ? WHERE id = ?",
                    (self._writer.token, time.time(), message_id),
                )
            self._answers[message_id] = _Answer(message.discussion_id)

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
        status: MessageStatus = "complete",
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
                f"an answer cannot finish as {status!r}: use one of {sorted(FINAL_STATUSES)}"
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
                step_status = "cancelled" if status == "cancelled" else "interrupted"
                c.execute(
                    "UPDATE steps SET status = ? WHERE message_id = ? AND status = 'running'",
                    (step_status, message_id),
                )
                self._touch(c, row["discussion_id"])
            self._answers.pop(message_id, None)  # only once written: a busy file keeps the text
            return self.get_message(message_id)

    def flush(self) -> None:
        """Write every answer's pending text now."""
        with self._lock:
            self._flush_all()

    # -- steps and artifacts ----------------------------------------------------------------------

    def add_step(
        self,
        message_id: str,
        kind: str,
        *,
        step_id: str | None = None,
        title: str = "",
        status: StepStatus = "running",
        output: Any = None,
        duration_s: float | None = None,
        prompt_tokens: int | None = None,
        generation_tokens: int | None = None,
        error: str | None = None,
    ) -> Step:
        """Record a pipeline step of an answer (after the previous ones); returns it."""
        _check_step_status(status)
        with self._write() as c:
            self._require_message(c, message_id)
            position = c.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM steps WHERE message_id = ?",
                (message_id,),
            ).fetchone()[0]
            cur = c.execute(
                "INSERT INTO steps (message_id, position, step_id, kind, title, output, status,"
                " duration_s, prompt_tokens, generation_tokens, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message_id,
                    position,
                    step_id,
                    kind,
                    title,
                    None if output is None else codec.dumps(output),
                    status,
                    duration_s,
                    prompt_tokens,
                    generation_tokens,
                    error,
                ),
            )
            n = cur.lastrowid
        return self._step(n)

    def update_step(
        self,
        n: int,
        *,
        status: StepStatus | None = None,
        output: Any = None,
        title: str | None = None,
        duration_s: float | None = None,
        prompt_tokens: int | None = None,
        generation_tokens: int | None = None,
        error: str | None = None,
    ) -> Step:
        """Update a step when it ends (arguments left ``None`` keep their value)."""
        changes: dict[str, Any] = {
            "status": status,
            "output": None if output is None else codec.dumps(output),
            "title": title,
            "duration_s": duration_s,
            "prompt_tokens": prompt_tokens,
            "generation_tokens": generation_tokens,
            "error": error,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        if status is not None:
            _check_step_status(status)
        if changes:
            with self._write() as c:
                sets = ", ".join(f"{name} = ?" for name in changes)
                cur = c.execute(f"UPDATE steps SET {sets} WHERE n = ?", (*changes.values(), n))
                if cur.rowcount == 0:
                    raise NotFoundError(f"no step {n} (its answer was deleted?)")
        return self._step(n)

    def steps(self, message_id: str) -> list[Step]:
        """An answer's steps in run order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM steps WHERE message_id = ? ORDER BY position", (message_id,)
            ).fetchall()
        return [codec.step_from(row) for row in rows]

    def artifact_dir(self, discussion_id: str) -> Path:
        """The folder where a discussion's files go (created); deleted with the discussion."""
        with self._lock:
            self._require_discussion(self._conn, discussion_id)
        if not _ID.match(discussion_id):  # ids come from new_id; anything else is refused
            raise UnsafePathError(f"discussion id {discussion_id!r} cannot name a folder")
        folder = self.artifacts_root / discussion_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def add_artifact(
        self,
        message_id: str,
        path: str | Path,
        *,
        kind: str = "image",
        params: Mapping[str, Any] | None = None,
        step_id: str | None = None,
        mime: str | None = None,
    ) -> Artifact:
        """Record a file an answer produced; it must lie in its discussion's ``artifact_dir``."""
        message = self.get_message(message_id)
        folder = self.artifact_dir(message.discussion_id).resolve()
        given = Path(path)
        full = (given if given.is_absolute() else self.root / given).resolve()
        if not full.is_relative_to(folder):
            raise UnsafePathError(
                f"artifact {str(path)!r} is outside {folder}: save it under "
                "store.artifact_dir(discussion_id) first"
            )
        relative = full.relative_to(self.root).as_posix()
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO artifacts (message_id, step_id, kind, path, mime, params, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    message_id,
                    step_id,
                    kind,
                    relative,
                    mime,
                    codec.dumps(dict(params or {})),
                    time.time(),
                ),
            )
            n = cur.lastrowid
            row = c.execute("SELECT * FROM artifacts WHERE n = ?", (n,)).fetchone()
        return codec.artifact_from(row)

    def artifacts(self, message_id: str) -> list[Artifact]:
        """The files an answer produced, in the order they were recorded."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM artifacts WHERE message_id = ? ORDER BY n", (message_id,)
            ).fetchall()
        return [codec.artifact_from(row) for row in rows]

    def resolve_artifact(self, relative_path: str) -> Path:
        """The absolute path of a stored artifact path; refuses anything outside ``artifacts/``.

        This is the gate the web app uses before serving a file: no absolute paths, no ``..``,
        no symbolic link leading out, nothing outside the store's artifacts folder (the database
        itself sits next to it).
        """
        raw = str(relative_path)
        pure = PurePosixPath(raw)
        if (
            not raw
            or "\x00" in raw
            or "\\" in raw
            or pure.is_absolute()
            or ".." in pure.parts
            or (len(raw) > 1 and raw[1] == ":")
        ):
            raise UnsafePathError(f"refusing artifact path {raw!r}: not a plain relative path")
        full = (self.root / pure).resolve()
        inside = self.artifacts_root.resolve()
        if full == inside or not full.is_relative_to(inside):
            raise UnsafePathError(
                f"refusing artifact path {raw!r}: it resolves outside {self.artifacts_root}"
            )
        return full

    # -- per-personality settings -----------------------------------------------------------------

    def get_settings(self, personality_id: str) -> dict[str, Any]:
        """The user's saved settings for a personality (empty if none)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT settings FROM personality_settings WHERE personality_id = ?",
                (personality_id,),
            ).fetchone()
        return dict(codec.loads(row["settings"])) if row else {}

    def save_settings(self, personality_id: str, settings: Mapping[str, Any]) -> None:
        """Replace the user's saved settings for a personality."""
        with self._write() as c:
            c.execute(
                "INSERT INTO personality_settings (personality_id, settings, updated_at)"
                " VALUES (?, ?, ?) ON CONFLICT (personality_id) DO UPDATE SET"
                " settings = excluded.settings, updated_at = excluded.updated_at",
                (personality_id, codec.dumps(dict(settings)), time.time()),
            )

    # -- export and import ------------------------------------------------------------------------

    def export_markdown(self, discussion_id: str, link_prefix: str = "") -> str:
        """The active branch as readable Markdown; image links are ``link_prefix`` + stored path."""
        with self._lock:
            discussion = self.get_discussion(discussion_id)
            messages = self.thread(discussion_id)
            steps = {m.id: self.steps(m.id) for m in messages}
            files = {m.id: self.artifacts(m.id) for m in messages}
        return export.render_markdown(discussion, messages, steps, files, link_prefix)

    def export_json(self, discussion_id: str) -> dict[str, Any]:
        """Everything about a discussion (all branches, steps, artifact records) as JSON data."""
        with self._lock:
            discussion = self.get_discussion(discussion_id)
            rows = self._conn.execute(
                "SELECT * FROM messages WHERE discussion_id = ? ORDER BY n", (discussion_id,)
            ).fetchall()
            messages = [self._message(row) for row in rows]
            steps = {m.id: self.steps(m.id) for m in messages}
            files = {m.id: self.artifacts(m.id) for m in messages}
        return export.build_json(discussion, messages, steps, files)

    def import_json(self, data: Mapping[str, Any], files_from: Path | None = None) -> str:
        """Add a discussion from :meth:`export_json` data under new ids; return its id.

        Artifact files are copied from ``files_from`` (the exported discussion's artifact folder)
        when given; otherwise only their records come in.
        """
        parsed = export.parse_json(data)
        discussion_id = codec.new_id(10)
        try:
            with self._write() as c:
                importer.insert(c, parsed, discussion_id, self.resolve_artifact, files_from)
        except BaseException:
            self._remove_folder(discussion_id)  # the rows rolled back; copied files go too
            raise
        return discussion_id

    # -- internals --------------------------------------------------------------------------------

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
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _remove_folder(self, discussion_id: str) -> None:
        folder = self.artifacts_root / discussion_id
        if _ID.match(discussion_id) and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)

    def _message(self, row: sqlite3.Row) -> Message:
        answer = self._answers.get(row["id"])
        return codec.message_from(row, "".join(answer.pending) if answer else "")

    def _step(self, n: int | None) -> Step:
        with self._lock:
            row = self._conn.execute("SELECT * FROM steps WHERE n = ?", (n,)).fetchone()
        if row is None:
            raise NotFoundError(f"no step {n} (its answer was deleted?)")
        return codec.step_from(row)

    def _insert_message(
        self,
        discussion_id: str,
        role: str,
        content: str,
        parent_id: str | _Leaf | None,
        status: str,
        model: str | None,
        sampling: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        error: str | None,
        writer: str | None,
    ) -> str:
        if role not in ROLES:
            raise StoreError(f"unknown role {role!r}: use one of {sorted(ROLES)}")
        if status not in MESSAGE_STATUSES:
            raise StoreError(f"unknown status {status!r}: use one of {sorted(MESSAGE_STATUSES)}")
        now = time.time()
        message_id = codec.new_id()
        with self._write() as c:
            discussion = self._require_discussion(c, discussion_id)
            parent = self._current_leaf(c, discussion_id) if parent_id is LEAF else parent_id
            if parent is not None:
                row = c.execute(
                    "SELECT discussion_id FROM messages WHERE id = ?", (parent,)
                ).fetchone()
                if row is None or row["discussion_id"] != discussion_id:
                    raise NotFoundError(f"no message {parent!r} in discussion {discussion_id!r}")
            c.execute(
                "INSERT INTO messages (id, discussion_id, parent_id, role, content, status,"
                " created_at, updated_at, model, sampling, error, metadata, writer)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message_id,
                    discussion_id,
                    parent,
                    role,
                    content,
                    status,
                    now,
                    now,
                    model,
                    None if sampling is None else codec.dumps(dict(sampling)),
                    error,
                    codec.dumps(dict(metadata or {})),
                    writer,
                ),
            )
            changes: dict[str, Any] = {"leaf_id": message_id}
            if role == "user" and not discussion.title and content.strip():
                changes["title"] = _title_from(content)
            self._touch(c, discussion_id, **changes)
        return message_id

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

    def _current_leaf(self, c: sqlite3.Connection, discussion_id: str) -> str | None:
        row = c.execute("SELECT leaf_id FROM discussions WHERE id = ?", (discussion_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no discussion {discussion_id!r} (deleted, or another store?)")
        if row["leaf_id"] is not None:
            return str(row["leaf_id"])
        # No recorded leaf (its message was deleted): fall back to the newest message.
        newest = c.execute(
            "SELECT id FROM messages WHERE discussion_id = ? ORDER BY n DESC LIMIT 1",
            (discussion_id,),
        ).fetchone()
        return None if newest is None else str(newest["id"])

    def _descend(self, c: sqlite3.Connection, message_id: str) -> str:
        row = c.execute(
            """WITH RECURSIVE down(id, depth) AS (
                SELECT ?, 0 UNION ALL
                SELECT (SELECT m.id FROM messages m WHERE m.parent_id = down.id
                        ORDER BY m.n DESC LIMIT 1), depth + 1
                FROM down WHERE down.id IS NOT NULL
            ) SELECT id FROM down WHERE id IS NOT NULL ORDER BY depth DESC LIMIT 1""",
            (message_id,),
        ).fetchone()
        return str(row["id"])

    def _interrupt(self, c: sqlite3.Connection, message_ids: list[str]) -> None:
        marks = ",".join("?" * len(message_ids))
        c.execute(
            "UPDATE messages SET status = 'interrupted', writer = NULL, updated_at = ?"
            f" WHERE status = 'generating' AND id IN ({marks})",
            (time.time(), *message_ids),
        )
        c.execute(
            f"UPDATE steps SET status = 'interrupted' WHERE status = 'running'"
            f" AND message_id IN ({marks})",
            message_ids,
        )

    def _flush(self, message_id: str, answer: _Answer) -> None:
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
                    except sqlite3.Error as exc:  # a busy file: keep the text, try again soon
                        log.warning("could not save streamed text yet: %s", exc)
                        waiting.append(now + self.flush_interval)
                else:
                    waiting.append(due)
            self._timer = None
            if waiting:
                self._arm_timer(min(waiting) - now)


def _check_step_status(status: str) -> None:
    if status not in STEP_STATUSES:
        raise StoreError(f"unknown step status {status!r}: use one of {sorted(STEP_STATUSES)}")


def _title_from(content: str) -> str:
    line = next((part.strip() for part in content.splitlines() if part.strip()), "")
    return line if len(line) <= _TITLE_CHARS else line[: _TITLE_CHARS - 1].rstrip() + "…"


def _title_match(search: str) -> tuple[str, list[str]]:
    words = search.split()
    clause = " AND ".join("d.title LIKE ? ESCAPE '\\'" for _ in words)
    escaped = [w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for w in words]
    return f"({clause})", [f"%{w}%" for w in escaped]


def _fts_query(search: str) -> str:
    # Each word becomes a quoted prefix term, so user text can never be read as FTS5 syntax.
    terms = re.findall(r"\w+", search)
    return " ".join('"' + term.replace('"', '""') + '"*' for term in terms)
