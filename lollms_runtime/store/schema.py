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
    # A step that rebuilds a table others point at runs with foreign keys off (SQLite's
    # documented 12-step procedure): dropping the old table must not cascade into its children.
    rebuilds: bool = False


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

# v3: one status vocabulary (``lollms_runtime.events.Status``) stored as is. Old words map as
# complete -> ok, error -> failed, generating -> running; a step that had fallen back was saved as
# complete, so it reads ok (the difference was lost when it was written).
_STATUS_MAP = (
    "CASE status WHEN 'complete' THEN 'ok' WHEN 'error' THEN 'failed'"
    " WHEN 'generating' THEN 'running' ELSE status END"
)
_DETAIL = " — "  # how v1-v2 packed a step's detail into its title


def _backfill_step_detail(conn: sqlite3.Connection) -> None:
    rows = conn.execute("SELECT n, title FROM steps WHERE instr(title, ?) > 0", (_DETAIL,))
    for n, saved in rows.fetchall():
        title, _sep, detail = saved.partition(_DETAIL)
        conn.execute("UPDATE steps SET title = ?, detail = ? WHERE n = ?", (title, detail, n))


V3 = Migration(
    3,
    "one status vocabulary for answers and steps; a step's detail in its own column",
    (
        """CREATE TABLE messages_v3 (
            n INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            discussion_id TEXT NOT NULL REFERENCES discussions(id) ON DELETE CASCADE,
            parent_id TEXT REFERENCES messages(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN
                ('ok', 'running', 'interrupted', 'failed', 'cancelled')),
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            model TEXT,
            sampling TEXT,
            error TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            writer TEXT
        )""",
        # The full-text index points at ``n``, which is copied unchanged: it stays valid.
        f"""INSERT INTO messages_v3 SELECT n, id, discussion_id, parent_id, role, content,
            {_STATUS_MAP}, created_at, updated_at, model, sampling, error, metadata, writer
            FROM messages""",
        "DROP TABLE messages",
        "ALTER TABLE messages_v3 RENAME TO messages",
        "CREATE INDEX messages_by_discussion ON messages(discussion_id, n)",
        "CREATE INDEX messages_by_parent ON messages(parent_id, n)",
        "CREATE INDEX messages_running ON messages(status) WHERE status = 'running'",
        *V2.statements[1:],  # the triggers that keep the full-text index in sync went with it
        f"UPDATE steps SET status = {_STATUS_MAP}",
        "ALTER TABLE steps ADD COLUMN detail TEXT NOT NULL DEFAULT ''",
    ),
    backfill=_backfill_step_detail,
    rebuilds=True,
)

# Where each step is written (``pipeline[2].for_each[1].do[0]``), so a reopened answer's trace
# nests its steps under their parents exactly as the live one did.
V4 = Migration(
    version=4,
    description="steps keep their path in the pipeline",
    statements=("ALTER TABLE steps ADD COLUMN path TEXT NOT NULL DEFAULT ''",),
)

MIGRATIONS: tuple[Migration, ...] = (V1, V2, V3, V4)
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
        if step.rebuilds:  # a no-op inside a transaction, so set before BEGIN
            conn.execute("PRAGMA foreign_keys = OFF")
        try:
            _run(conn, step, path)
        finally:
            if step.rebuilds:
                conn.execute("PRAGMA foreign_keys = ON")
    return found


def _run(conn: sqlite3.Connection, step: Migration, path: str) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated while we waited for the write lock.
        if schema_version(conn) >= step.version:
            conn.execute("COMMIT")
            return
        for statement in step.statements:
            conn.execute(statement)
        if step.backfill is not None:
            step.backfill(conn)
        if step.rebuilds and conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
            raise StoreError(
                f"{path or 'the database'}: migration to v{step.version} found broken links "
                "between messages: restore a backup, or point LOLLMS_HOME elsewhere."
            )
        conn.execute(f"PRAGMA user_version = {step.version:d}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
