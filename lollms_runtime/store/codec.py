"""Ids, JSON columns and row decoding shared by the store and its import/export."""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
from pathlib import PurePath
from typing import Any, cast

from .models import Artifact, Discussion, Message, MessageRole, Step, status_of

# Lower-case letters and digits without look-alikes: ids are safe as folder names and in URLs.
_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"


def new_id(length: int = 12) -> str:
    """A short random id (``length`` characters, about 4.9 bits each)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _lenient(value: Any) -> Any:
    # Step outputs may hold objects (paths, dataclasses, images): keep what JSON can say about them.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


def dumps(value: Any) -> str:
    """JSON text for a column; values JSON cannot hold are stored as their description."""
    return json.dumps(value, ensure_ascii=False, default=_lenient)


def loads(text: str | None) -> Any:
    """The value of a JSON column (``None`` for SQL NULL)."""
    return None if text is None else json.loads(text)


def discussion_from(row: sqlite3.Row) -> Discussion:
    """Decode a ``discussions`` row."""
    return Discussion(
        id=row["id"],
        title=row["title"],
        personality_id=row["personality_id"],
        model=row["model"],
        leaf_id=row["leaf_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def message_from(row: sqlite3.Row, pending: str = "") -> Message:
    """Decode a ``messages`` row; ``pending`` is text appended but not yet written."""
    return Message(
        id=row["id"],
        discussion_id=row["discussion_id"],
        parent_id=row["parent_id"],
        role=cast(MessageRole, row["role"]),
        content=row["content"] + pending,
        status=status_of(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        model=row["model"],
        sampling=loads(row["sampling"]),
        error=row["error"],
        metadata=loads(row["metadata"]) or {},
    )


def step_from(row: sqlite3.Row) -> Step:
    """Decode a ``steps`` row."""
    return Step(
        n=row["n"],
        message_id=row["message_id"],
        position=row["position"],
        step_id=row["step_id"],
        kind=row["kind"],
        title=row["title"],
        output=loads(row["output"]),
        status=status_of(row["status"]),
        duration_s=row["duration_s"],
        prompt_tokens=row["prompt_tokens"],
        generation_tokens=row["generation_tokens"],
        error=row["error"],
        detail=row["detail"],
        path=row["path"],
    )


def artifact_from(row: sqlite3.Row) -> Artifact:
    """Decode an ``artifacts`` row."""
    return Artifact(
        n=row["n"],
        message_id=row["message_id"],
        kind=row["kind"],
        path=row["path"],
        step_id=row["step_id"],
        mime=row["mime"],
        params=loads(row["params"]) or {},
        created_at=row["created_at"],
    )
