"""The store's SQLite schema as an ordered list of migrations, tracked in ``PRAGMA user_version``.

Rules for whoever adds a version: never edit a step that has shipped; append a new one. Each step
runs in one transaction together with its ``user_version`` bump, so a crash mid-migration leaves the
file at the previous version, and a second process opening the same file waits and then skips it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from .errors import StoreError


@dataclass(frozen=True)
class Migration:
    """One schema step: the SQL that takes the file from ``version - 1`` to ``version``."""

    version: int
    description: str
    statements: tuple[str, ...]
    # Data work that SQL alone cannot express conveniently; runs after the statements.
    backfill: Callable[[sqlite3.Connection], None] | None = None


V1 = Migration(
    1,
    "discussions, messages with branches, answer steps, artifacts, per-personality settings",
    (
        """CREATE TABLE discussions (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            personality_id TEXT NOT NULL,
            model TEXT,
            leaf_id TEXT REFERENCES messages(id) ON DELETE SET NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX discussions_by_update ON discussions(updated_at DESC)",
        "CREATE INDEX discussions_by_personality ON discussions(personality_id, updated_at DESC)",
        # ``n`` is a stable integer key (a rowid alias survives VACUUM, a hidden rowid does not):
        # it orders siblings by insertion and anchors the full-text index added in v2.
        """CREATE TABLE messages (
            n INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            discussion_id TEXT NOT NULL REFERENCES discussions(id) ON DELETE CASCADE,
            parent_id TEXT REFERENCES messages(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'complete' CHECK (status IN
                ('complete', 'generating', 'interrupted', 'error', 'cancelled')),
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            model TEXT,
            sampling TEXT,
            error TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            writer TEXT
        )""",
        "CREATE INDEX messages_by_discussion ON messages(discussion_id, n)",
        "CREATE INDEX messages_by_parent ON messages(parent_id, n)",
        "CREATE INDEX messages_generating ON messages(status) WHERE status = 'generating'",
        """CREATE TABLE steps (
            n INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            step_id TEXT,
            kind TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            output TEXT,
            status TEXT NOT NULL DEFAULT 'complete',
            duration_s REAL,
            prompt_tokens INTEGER,
            generation_tokens INTEGER,
            error TEXT,
            UNIQUE (message_id, position)
        )""",
        """CREATE TABLE artifacts (
            n INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            step_id TEXT,
            kind TEXT NOT NULL DEFAULT 'image',
            path TEXT NOT NULL,
            mime TEXT,
            params TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX artifacts_by_message ON artifacts(message_id, n)",
        """CREATE TABLE personality_settings (
            personality_id TEXT PRIMARY KEY,
            settings TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
    ),
)


def _backfill_search(conn: sqlite3.Connection) -> None:
    # Messages written before v2 existed must be findable too.
    conn.execute("INSERT INTO messages_fts(rowid, content) SELECT n, content FROM messages")


V2 = Migration(
    2,
    "full-text search over message text (FTS5), kept in sync by triggers",
    (
        # External-content table: the text lives once, in messages; the index points at ``n``.
        """CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, content='messages', content_rowid='n', tokenize='unicode61 remove_diacritics 2'
        )""",
        """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.n, new.content);
        END""",
        """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.n, old.content);
        END""",
        """CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.n, old.content);
            INSERT INTO messages_fts(rowid, content) VALUES (new.n, new.content);
        END""",
    ),
    backfill=_backfill_search,
)

MIGRATIONS: tuple[Migration, ...] = (V1, V2)
LATEST = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    """The file's ``PRAGMA user_version`` (0 for a new, empty file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: str = "") -> int:
    """Bring the file up to ``LATEST``, one transaction per step; return the version found."""
    found = schema_version(conn)
    if found > LATEST:
        raise StoreError(
            f"{path or 'the database'} uses store schema v{found}, but this lollms-runtime knows "
            f"only up to v{LATEST}: upgrade lollms-runtime, or point LOLLMS_HOME elsewhere."
        )
    for step in MIGRATIONS:
        if step.version <= found:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the write lock.
            if schema_version(conn) >= step.version:
                conn.execute("COMMIT")
                continue
            for statement in step.statements:
                conn.execute(statement)
            if step.backfill is not None:
                step.backfill(conn)
            conn.execute(f"PRAGMA user_version = {step.version:d}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found
