"""The message tree: discussions, messages, branches (siblings) and the active leaf."""

from __future__ import annotations

import enum
import re
import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from ..events import Status
from . import codec
from .connection import StoreBase
from .errors import AnswerInProgress, NotFoundError, StoreError
from .models import MESSAGE_STATUSES, ROLES, Discussion, Message, MessageRole

_TITLE_CHARS = 80


class _Leaf(enum.Enum):
    LEAF = "leaf"


LEAF = _Leaf.LEAF
"""Default ``parent_id``: attach the new message under the discussion's current leaf."""


class TreeStore(StoreBase):
    """Discussions and their tree of messages."""

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
        status: Status = Status.OK,
        model: str | None = None,
        sampling: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> Message:
        """Add a message under ``parent_id`` (default: the current leaf); it becomes the leaf.

        Adding a message under an earlier one (edit-and-resend) starts a sibling branch; the old
        branch stays. Use :meth:`begin_answer` for an answer that streams.
        """
        if status == Status.RUNNING:
            raise StoreError("add_message cannot add a 'running' message: use begin_answer")
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
            raise StoreError(
                f"unknown status '{status}': use one of {sorted(s.value for s in MESSAGE_STATUSES)}"
            )
        now = time.time()
        message_id = codec.new_id()
        with self._write() as c:
            discussion = self._require_discussion(c, discussion_id)
            parent = self._current_leaf(c, discussion_id) if parent_id is LEAF else parent_id
            if parent is not None:
                row = c.execute(
                    "SELECT discussion_id, status, writer FROM messages WHERE id = ?", (parent,)
                ).fetchone()
                if row is None or row["discussion_id"] != discussion_id:
                    raise NotFoundError(f"no message {parent!r} in discussion {discussion_id!r}")
                # Checked inside the write transaction, so two processes cannot both pass it.
                if row["status"] == Status.RUNNING.value and self._writing(row["writer"]):
                    raise AnswerInProgress(
                        "the answer before this message is still being written (in another "
                        "window or process): wait for it to finish or stop it, then send again"
                    )
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
