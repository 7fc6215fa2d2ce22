"""Write a parsed discussion export into the store's tables under fresh ids."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from . import codec
from .export import ParsedExport


def insert(
    c: sqlite3.Connection,
    parsed: ParsedExport,
    discussion_id: str,
    resolve_artifact: Callable[[str], Path],
    files_from: Path | None,
) -> None:
    """Insert ``parsed`` as discussion ``discussion_id`` inside the caller's transaction.

    Messages get new ids (an export may be imported twice); artifact files are copied from
    ``files_from`` when it holds them, and only their records come in otherwise.
    """
    ids = {m.id: codec.new_id() for m in parsed.messages}
    d = parsed.discussion
    c.execute(
        "INSERT INTO discussions (id, title, personality_id, model, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        # It keeps when it started; it was last updated now, so it shows at the top of the list.
        (discussion_id, d.title, d.personality_id, d.model, d.created_at, time.time()),
    )
    source_root = None if files_from is None else Path(files_from).resolve()
    for m in parsed.messages:
        c.execute(
            "INSERT INTO messages (id, discussion_id, parent_id, role, content, status,"
            " created_at, updated_at, model, sampling, error, metadata)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ids[m.id],
                discussion_id,
                ids[m.parent_id] if m.parent_id else None,
                m.role,
                m.content,
                m.status.value,
                m.created_at,
                m.updated_at,
                m.model,
                None if m.sampling is None else codec.dumps(m.sampling),
                m.error,
                codec.dumps(m.metadata),
            ),
        )
        for s in parsed.steps.get(m.id, []):
            c.execute(
                "INSERT INTO steps (message_id, position, step_id, kind, title, output, status,"
                " duration_s, prompt_tokens, generation_tokens, error, detail, path)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ids[m.id],
                    s.position,
                    s.step_id,
                    s.kind,
                    s.title,
                    None if s.output is None else codec.dumps(s.output),
                    s.status.value,
                    s.duration_s,
                    s.prompt_tokens,
                    s.generation_tokens,
                    s.error,
                    s.detail,
                    s.path,
                ),
            )
        for a in parsed.artifacts.get(m.id, []):
            relative = f"artifacts/{discussion_id}/{a.path}"
            target = resolve_artifact(relative)  # the export's paths are checked, and again here
            if source_root is not None:
                source = (source_root / a.path).resolve()
                if source.is_relative_to(source_root) and source.is_file():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, target)
            c.execute(
                "INSERT INTO artifacts (message_id, step_id, kind, path, mime, params, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    ids[m.id],
                    a.step_id,
                    a.kind,
                    relative,
                    a.mime,
                    codec.dumps(a.params),
                    a.created_at,
                ),
            )
    leaf = ids.get(d.leaf_id or "")
    c.execute("UPDATE discussions SET leaf_id = ? WHERE id = ?", (leaf, discussion_id))
