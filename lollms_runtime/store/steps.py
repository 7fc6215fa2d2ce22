"""An answer's pipeline steps and the files (artifacts) it produced."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ..events import Status
from . import codec
from .buffer import AnswerStore
from .connection import ID_PATTERN
from .errors import NotFoundError, StoreError, UnsafePathError
from .models import STEP_STATUSES, Artifact, Step


class StepStore(AnswerStore):
    """Steps in run order and artifacts confined to the store's ``artifacts/`` folder."""

    def add_step(
        self,
        message_id: str,
        kind: str,
        *,
        step_id: str | None = None,
        title: str = "",
        status: Status = Status.RUNNING,
        output: Any = None,
        duration_s: float | None = None,
        prompt_tokens: int | None = None,
        generation_tokens: int | None = None,
        error: str | None = None,
        detail: str = "",
        path: str = "",
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
                " duration_s, prompt_tokens, generation_tokens, error, detail, path)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message_id,
                    position,
                    step_id,
                    kind,
                    title,
                    None if output is None else codec.dumps(output),
                    Status(status).value,
                    duration_s,
                    prompt_tokens,
                    generation_tokens,
                    error,
                    detail,
                    path,
                ),
            )
            n = cur.lastrowid
        return self._step(n)

    def update_step(
        self,
        n: int,
        *,
        status: Status | None = None,
        output: Any = None,
        title: str | None = None,
        duration_s: float | None = None,
        prompt_tokens: int | None = None,
        generation_tokens: int | None = None,
        error: str | None = None,
    ) -> Step:
        """Update a step when it ends (arguments left ``None`` keep their value)."""
        if status is not None:
            _check_step_status(status)
        changes: dict[str, Any] = {
            "status": None if status is None else Status(status).value,
            "output": None if output is None else codec.dumps(output),
            "title": title,
            "duration_s": duration_s,
            "prompt_tokens": prompt_tokens,
            "generation_tokens": generation_tokens,
            "error": error,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
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
        if not ID_PATTERN.match(discussion_id):  # ids come from new_id; anything else is refused
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

    def _step(self, n: int | None) -> Step:
        with self._lock:
            row = self._conn.execute("SELECT * FROM steps WHERE n = ?", (n,)).fetchone()
        if row is None:
            raise NotFoundError(f"no step {n} (its answer was deleted?)")
        return codec.step_from(row)


def _check_step_status(status: str) -> None:
    if status not in STEP_STATUSES:
        raise StoreError(
            f"unknown step status '{status}': use one of {sorted(s.value for s in STEP_STATUSES)}"
        )
