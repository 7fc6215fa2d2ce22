"""An embedded passage index: SQLite FTS5 ranked by BM25, with optional dense vectors beside it.

One SQLite file per index (a personality's documents, a discussion's attachments), always under
the runtime's home, never in a personality package. A document is re-read only when its size,
time or content digest changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .documents import Section, chunks
from .limits import MAX_CHUNKS, MAX_PASSAGES, MAX_QUERY_CHARS, KnowledgeError

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
  id INTEGER PRIMARY KEY, source TEXT UNIQUE NOT NULL, digest TEXT NOT NULL,
  size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, indexed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
  id INTEGER PRIMARY KEY, document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  ordinal INTEGER NOT NULL, location TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
  text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS vectors (
  chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE, model TEXT NOT NULL,
  vector BLOB NOT NULL, PRIMARY KEY (chunk_id, model));
"""

# Words too common to help BM25 find a passage; dropping them keeps the OR-query small.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "did",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "there",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
        "me",
        "my",
        "we",
        "our",
        "they",
        "them",
        "he",
        "she",
        "his",
        "her",
        "not",
        "no",
        "yes",
    ]
)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Passage:
    """A retrieved passage: where it comes from (``source``, ``location``) and how well it ranks."""

    text: str
    source: str
    location: str
    score: float
    chunk_id: int = 0

    def as_variable(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "source": self.source,
            "location": self.location,
            "score": round(self.score, 4),
            "cite": f"{self.source}, {self.location}" if self.location else self.source,
        }


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    chunks: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def fts_query(text: str) -> str:
    """The FTS5 query for free text: each meaningful word quoted (so no user text is ever read
    as FTS syntax), joined by OR; BM25 then favours passages holding more of them."""
    words = [w.lower() for w in _WORD.findall(text[:MAX_QUERY_CHARS])]
    kept = list(dict.fromkeys(w for w in words if w not in STOPWORDS)) or list(dict.fromkeys(words))
    return " OR ".join(f'"{w}"' for w in kept[:64])


class Index:
    """One passage index in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._batch = threading.local()  # the connection of a batch(), for its own thread only
        self._readers = threading.local()  # one read connection per thread: no open per query
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode = WAL")  # kept by the file: readers never wait
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        batch: sqlite3.Connection | None = getattr(self._batch, "db", None)
        if batch is not None:  # inside batch(): one transaction for many writes
            yield batch
            return
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            with db:
                yield db
        finally:
            db.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group writes in one connection and one transaction (indexing many documents)."""
        with self._connect() as db:
            self._batch.db = db
            try:
                yield
            finally:
                self._batch.db = None

    # -- writing ---------------------------------------------------------------------------
    def known(self) -> dict[str, tuple[int, int, str]]:
        """source -> (size, mtime_ns, digest) of every indexed document."""
        with self._connect() as db:
            rows = db.execute("SELECT source, size, mtime_ns, digest FROM documents").fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def chunk_count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def put(
        self, source: str, sections: Sequence[Section], digest: str, size: int, mtime_ns: int = 0
    ) -> int:
        """Index (or re-index) one document; returns its number of passages."""
        pieces = list(chunks(list(sections)))
        with self._connect() as db:
            existing = int(db.execute("SELECT count(*) FROM chunks").fetchone()[0])
            old = db.execute(
                "SELECT count(*) FROM chunks JOIN documents d ON d.id = document_id "
                "WHERE d.source = ?",
                (source,),
            ).fetchone()[0]
            if existing - old + len(pieces) > MAX_CHUNKS:
                raise KnowledgeError(
                    f"{source}: indexing it would make {existing - old + len(pieces)} passages; "
                    f"an index holds at most {MAX_CHUNKS}",
                    "index fewer or smaller documents",
                )
            self._delete(db, source)
            cur = db.execute(
                "INSERT INTO documents (source, digest, size, mtime_ns, indexed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (source, digest, size, mtime_ns, time.time()),
            )
            document_id = cur.lastrowid
            for piece in pieces:
                cur = db.execute(
                    "INSERT INTO chunks (document_id, ordinal, location, text) VALUES (?, ?, ?, ?)",
                    (document_id, piece.ordinal, piece.location, piece.text),
                )
                db.execute(
                    "INSERT INTO chunks_fts (rowid, text) VALUES (?, ?)",
                    (cur.lastrowid, piece.text),
                )
        return len(pieces)

    def touch(self, source: str, size: int, mtime_ns: int) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE documents SET size = ?, mtime_ns = ? WHERE source = ?",
                (size, mtime_ns, source),
            )

    def remove(self, source: str) -> None:
        with self._connect() as db:
            self._delete(db, source)

    @staticmethod
    def _delete(db: sqlite3.Connection, source: str) -> None:
        rows = db.execute(
            "SELECT c.id, c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
            "WHERE d.source = ?",
            (source,),
        ).fetchall()
        db.executemany(
            "INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', ?, ?)", rows
        )
        db.execute("DELETE FROM documents WHERE source = ?", (source,))

    # -- dense vectors -----------------------------------------------------------------------
    def missing_vectors(self, model: str) -> list[tuple[int, str]]:
        with self._connect() as db:
            return db.execute(
                "SELECT c.id, c.text FROM chunks c LEFT JOIN vectors v "
                "ON v.chunk_id = c.id AND v.model = ? WHERE v.chunk_id IS NULL ORDER BY c.id",
                (model,),
            ).fetchall()

    def put_vectors(self, model: str, rows: Iterable[tuple[int, bytes]]) -> None:
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO vectors (chunk_id, model, vector) VALUES (?, ?, ?)",
                [(chunk_id, model, blob) for chunk_id, blob in rows],
            )

    def vectors(self, model: str) -> list[tuple[int, bytes]]:
        with self._connect() as db:
            return db.execute(
                "SELECT chunk_id, vector FROM vectors WHERE model = ? ORDER BY chunk_id", (model,)
            ).fetchall()

    def passages(self, ids: Sequence[int]) -> dict[int, Passage]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._connect() as db:
            rows = db.execute(
                f"SELECT c.id, c.text, d.source, c.location FROM chunks c "
                f"JOIN documents d ON d.id = c.document_id WHERE c.id IN ({marks})",
                list(ids),
            ).fetchall()
        return {r[0]: Passage(r[1], r[2], r[3], 0.0, r[0]) for r in rows}

    # -- reading -----------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._readers, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=True)
            db.execute("PRAGMA query_only = ON")
            self._readers.db = db
        return db

    def search(self, query: str, limit: int = 3, min_score: float = 0.0) -> list[Passage]:
        """The best ``limit`` passages by BM25 (score: higher is better), at least ``min_score``."""
        match = fts_query(query)
        if not match:
            return []
        limit = max(1, min(limit, MAX_PASSAGES))
        with contextlib.closing(self._reader().cursor()) as db:
            rows = db.execute(
                "SELECT c.id, c.text, d.source, c.location, -bm25(chunks_fts) AS score "
                "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
                "JOIN documents d ON d.id = c.document_id "
                "WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts) LIMIT ?",
                (match, limit),
            ).fetchall()
        return [Passage(r[1], r[2], r[3], float(r[4]), r[0]) for r in rows if r[4] >= min_score]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
