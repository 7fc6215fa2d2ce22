"""Schema migrations: a file written at schema v1 (before full-text search) opens and upgrades."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lollms_runtime.store import Status, Store, StoreError
from lollms_runtime.store.schema import LATEST, MIGRATIONS

# The schema as the first release wrote it, frozen here on purpose: if someone edits migration 1
# in place instead of appending a new step, the comparison test below notices.
V1_SQL = """
CREATE TABLE discussions (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    personality_id TEXT NOT NULL,
    model TEXT,
    leaf_id TEXT REFERENCES messages(id) ON DELETE SET NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX discussions_by_update ON discussions(updated_at DESC);
CREATE INDEX discussions_by_personality ON discussions(personality_id, updated_at DESC);
CREATE TABLE messages (
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
);
CREATE INDEX messages_by_discussion ON messages(discussion_id, n);
CREATE INDEX messages_by_parent ON messages(parent_id, n);
CREATE INDEX messages_generating ON messages(status) WHERE status = 'generating';
CREATE TABLE steps (
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
);
CREATE TABLE artifacts (
    n INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    step_id TEXT,
    kind TEXT NOT NULL DEFAULT 'image',
    path TEXT NOT NULL,
    mime TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE INDEX artifacts_by_message ON artifacts(message_id, n);
CREATE TABLE personality_settings (
    personality_id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    updated_at REAL NOT NULL
);
PRAGMA user_version = 1;
"""

V1_DATA = """
INSERT INTO discussions VALUES
    ('d0000001', 'Old art talk', 'gpt_for_art', 'smollm2', NULL, 1.0, 5.0);
INSERT INTO messages (n, id, discussion_id, parent_id, role, content, status, created_at,
    updated_at, model, sampling, error, metadata, writer) VALUES
    (1, 'm0000001', 'd0000001', NULL, 'user', 'Imagine a lighthouse in the fog', 'complete',
        1.0, 1.0, NULL, NULL, NULL, '{}', NULL),
    (2, 'm0000002', 'd0000001', 'm0000001', 'assistant', 'A lonely beacon glows', 'complete',
        2.0, 2.0, 'smollm2', '{"temperature": 0.8}', NULL, '{"stats": {"tokens": 5}}', NULL),
    (3, 'm0000003', 'd0000001', 'm0000001', 'assistant', 'Waves crash on granite', 'generating',
        3.0, 3.0, 'smollm2', NULL, NULL, '{}', 'deadwriter00000001');
UPDATE discussions SET leaf_id = 'm0000003' WHERE id = 'd0000001';
INSERT INTO steps (message_id, position, step_id, kind, title, output, status, duration_s,
    prompt_tokens, generation_tokens, error) VALUES
    ('m0000002', 0, 'description', 'generate', '', '"A lonely beacon glows"', 'complete', 0.5,
        20, 5, NULL),
    ('m0000003', 0, 'description', 'generate', '', NULL, 'running', NULL, NULL, NULL, NULL);
INSERT INTO artifacts (message_id, step_id, kind, path, mime, params, created_at) VALUES
    ('m0000002', 'artwork', 'image', 'artifacts/d0000001/lighthouse.png', 'image/png',
        '{"seed": 7}', 2.5);
INSERT INTO personality_settings VALUES ('gpt_for_art', '{"paint": false, "steps": 12}', 4.0);
"""


def _write_v1(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(V1_SQL + V1_DATA)
    conn.commit()
    conn.close()


def _schema(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name"
    ).fetchall()
    conn.close()
    return [(t, n, " ".join(s.split()).replace("( ", "(").replace(" )", ")")) for t, n, s in rows]


def test_there_is_a_real_migration_path() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
    assert LATEST >= 2


def test_v1_file_with_data_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    _write_v1(db)
    with Store(db) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
        d = store.get_discussion("d0000001")
        assert (d.title, d.personality_id, d.model, d.leaf_id) == (
            "Old art talk",
            "gpt_for_art",
            "smollm2",
            "m0000003",
        )
        thread = store.thread(d.id)
        assert [m.content for m in thread] == [
            "Imagine a lighthouse in the fog",
            "Waves crash on granite",
        ]
        # The v1 file held an answer whose writer is long gone: it is kept, as interrupted.
        assert thread[1].status == "interrupted"
        assert store.steps("m0000003")[0].status == "interrupted"
        old = store.get_message("m0000002")
        assert (old.sampling, old.metadata) == ({"temperature": 0.8}, {"stats": {"tokens": 5}})
        assert [s.generation_tokens for s in store.steps(old.id)] == [5]
        assert [(a.path, a.params) for a in store.artifacts(old.id)] == [
            ("artifacts/d0000001/lighthouse.png", {"seed": 7})
        ]
        assert store.get_settings("gpt_for_art") == {"paint": False, "steps": 12}
        # v2's full-text index covers the messages written before it existed.
        assert [x.id for x in store.list_discussions("lighthouse")] == ["d0000001"]
        assert [x.id for x in store.list_discussions("granite")] == ["d0000001"]
        assert store.list_discussions("volcano") == []
        # And the upgraded file keeps working: new messages are indexed too.
        store.add_message(d.id, "user", "Now add a volcano")
        assert [x.id for x in store.list_discussions("volcano")] == ["d0000001"]
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store._conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_migrated_schema_equals_a_fresh_one(tmp_path: Path) -> None:
    old, fresh = tmp_path / "old.sqlite3", tmp_path / "fresh.sqlite3"
    _write_v1(old)
    Store(old).close()
    Store(fresh).close()
    assert _schema(old) == _schema(fresh)


def test_opening_twice_does_not_migrate_twice(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    _write_v1(db)
    Store(db).close()
    with Store(db) as store:
        fts_rows = store._conn.execute("SELECT COUNT(*) FROM messages_fts").fetchone()[0]
        assert fts_rows == 3  # not backfilled a second time


def test_a_file_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "future.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE from_the_future (x)")
    conn.execute(f"PRAGMA user_version = {LATEST + 7}")
    conn.close()
    with pytest.raises(StoreError, match=f"schema v{LATEST + 7}.*upgrade lollms-runtime"):
        Store(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST + 7
    conn.close()


def test_a_failed_step_rolls_back_to_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lollms_runtime.store import schema

    db = tmp_path / "old.sqlite3"
    _write_v1(db)

    def broken(conn: sqlite3.Connection) -> None:
        raise RuntimeError("disk on fire")

    step = schema.Migration(2, "broken", schema.V2.statements, backfill=broken)
    monkeypatch.setattr(schema, "MIGRATIONS", (schema.V1, step))
    with pytest.raises(RuntimeError, match="disk on fire"):
        Store(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "messages_fts" not in names
    conn.close()
    monkeypatch.undo()
    with Store(db) as store:
        assert [x.id for x in store.list_discussions("fog")] == ["d0000001"]


def test_v3_speaks_one_status_vocabulary_and_gives_detail_a_column(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    _write_v1(db)
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO steps (message_id, position, step_id, kind, title, status) VALUES"
        " ('m0000002', 1, 'paint', 'condition', 'Paint it? — then (p=0.91)', 'complete'),"
        " ('m0000002', 2, 'art', 'text_to_image', 'Paint', 'error')"
    )
    conn.execute("UPDATE messages SET status = 'error', error = 'boom' WHERE id = 'm0000001'")
    conn.commit()
    conn.close()
    with Store(db) as store:
        steps = store.steps("m0000002")
        assert [(s.title, s.detail, s.status) for s in steps] == [
            ("", "", Status.OK),
            ("Paint it?", "then (p=0.91)", Status.OK),
            ("Paint", "", Status.FAILED),
        ]
        assert store.get_message("m0000001").status == Status.FAILED
        assert store.get_message("m0000002").status == Status.OK
        words = {row[0] for row in store._conn.execute("SELECT status FROM messages")}
        assert words <= {s.value for s in Status}
        assert store._conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # Foreign keys are back on after the rebuild: deleting a discussion still cascades.
        store.delete_discussion("d0000001")
        assert store._conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0] == 0
        assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
