"""Where the indexes live and how they are kept current: a personality's ``knowledge:`` documents
and the files attached to a discussion."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ..home import home
from ..paths import PathRefused, confined
from .documents import SUPPORTED, read_bytes, read_file
from .index import Index, SyncReport, digest
from .limits import (
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENTS,
    MAX_DOCUMENTS,
    MAX_TOTAL_BYTES,
    KnowledgeError,
)

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_lock = threading.Lock()
# folder -> (signature of the matched files, when checked): a turn re-checks cheaply.
_checked: dict[str, tuple[tuple[Any, ...], float]] = {}


def knowledge_home() -> Path:
    """Where the indexes live; folders are made by :class:`Index` when it writes one."""
    return home() / "knowledge"


def _slug(text: str) -> str:
    slug = _SAFE.sub("-", text).strip("-.")[:40]
    return f"{slug or 'x'}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def personality_index_path(personality_id: str, folder: Path) -> Path:
    return (
        knowledge_home()
        / "personalities"
        / f"{_slug(personality_id + '@' + str(folder.resolve()))}.sqlite3"
    )


def discussion_index_path(discussion_id: str) -> Path:
    return knowledge_home() / "discussions" / f"{_slug(discussion_id)}.sqlite3"


def patterns(spec: Any) -> list[str]:
    """The path patterns of a ``knowledge:`` value (a list of globs or of ``{path: glob}``)."""
    items = spec if isinstance(spec, list) else [spec] if spec else []
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping) and isinstance(item.get("path"), str):
            out.append(item["path"])
    return out


def matched_files(folder: Path, globs: Sequence[str]) -> dict[str, Path]:
    """relative name -> resolved file for every file the globs match, each confined to ``folder``
    (a link leading out of it is refused, not followed). Bounded by :data:`MAX_DOCUMENTS`."""
    root = folder.resolve()
    found: dict[str, Path] = {}
    for pattern in globs:
        try:
            confined(root, pattern)
        except PathRefused as exc:
            hint = "name files inside the personality's folder"
            raise KnowledgeError(f"knowledge: {exc}", hint) from None
        text = pattern.replace("\\", "/")
        hits = root.glob(text) if any(c in text for c in "*?[") else [root / text]
        matched = 0
        for hit in hits:
            rel = PurePosixPath(hit.relative_to(root)).as_posix()
            try:
                real = confined(root, rel)
            except PathRefused as exc:
                raise KnowledgeError(f"knowledge: {pattern!r} matches {exc}") from None
            if not real.is_file():
                continue
            if real.suffix.lower() not in SUPPORTED:
                if "*" in text or "?" in text:
                    continue  # a glob may sweep over other files; a named file must be readable
                raise KnowledgeError(
                    f"knowledge: {rel}: cannot read '{real.suffix}' documents",
                    "use Markdown, text, HTML or PDF: " + ", ".join(sorted(SUPPORTED)),
                )
            matched += 1
            found[rel] = real
            if len(found) > MAX_DOCUMENTS:
                raise KnowledgeError(
                    f"knowledge: more than {MAX_DOCUMENTS} documents",
                    "name fewer files, or merge small ones",
                )
        if not matched and not any(c in text for c in "*?["):
            raise KnowledgeError(f"knowledge: {pattern!r}: no such file in the personality")
    return found


def sync_folder(index: Index, folder: Path, globs: Sequence[str]) -> SyncReport:
    """Bring ``index`` in line with the files ``globs`` match: changed ones re-read, removed ones
    dropped, unchanged ones (same size and time, or same digest) left alone."""
    started = time.perf_counter()
    report = SyncReport()
    files = matched_files(folder, globs)
    with index.batch():
        _sync(index, files, report)
    report.seconds = time.perf_counter() - started
    return report


def _sync(index: Index, files: Mapping[str, Path], report: SyncReport) -> None:
    known = index.known()
    total = 0
    for rel, real in sorted(files.items()):
        stat = real.stat()
        total += stat.st_size
        if total > MAX_TOTAL_BYTES:
            raise KnowledgeError(
                f"knowledge: the documents hold more than {MAX_TOTAL_BYTES} bytes",
                "name fewer or smaller files",
            )
        old = known.get(rel)
        if old and old[0] == stat.st_size and old[1] == stat.st_mtime_ns:
            report.unchanged += 1
            continue
        data = real.read_bytes()
        hashed = digest(data)
        if old and old[2] == hashed:
            index.touch(rel, stat.st_size, stat.st_mtime_ns)
            report.unchanged += 1
            continue
        report.chunks += index.put(
            rel, read_bytes(data, rel), hashed, stat.st_size, stat.st_mtime_ns
        )
        (report.updated if old else report.added).append(rel)
    for rel in sorted(known.keys() - files.keys()):
        index.remove(rel)
        report.removed.append(rel)


_indexes: dict[Path, Index] = {}


def _open(path: Path) -> Index:
    """One :class:`Index` object per file in this process (its schema is set up once)."""
    with _lock:
        if path not in _indexes:
            if len(_indexes) > 256:
                _indexes.clear()
            _indexes[path] = Index(path)
        return _indexes[path]


def personality_index(personality: Any) -> Index | None:
    """The index of a personality's ``knowledge:`` documents, synced when a file's size or time
    changed since the last sync in this process; None when it names none."""
    globs = patterns(personality.raw.get("knowledge"))
    if not globs:
        return None
    index = _open(personality_index_path(personality.id, personality.folder))
    key = str(index.path)
    with _lock:
        files = matched_files(personality.folder, globs)
        signature = tuple(
            (rel, (s := p.stat()).st_size, s.st_mtime_ns) for rel, p in sorted(files.items())
        )
        seen = _checked.get(key)
        if seen and seen[0] == signature and index.path.exists():
            return index
        sync_folder(index, personality.folder, globs)
        _checked[key] = (signature, time.monotonic())
    return index


def discussion_index(discussion_id: str | None, *, create: bool = False) -> Index | None:
    """A discussion's own index (its attached files); None when it has none and ``create`` is off."""
    if not discussion_id:
        return None
    path = discussion_index_path(discussion_id)
    if not create and not path.exists():
        return None
    return _open(path)


def _clean_name(filename: str) -> str:
    name = PurePosixPath(filename.replace("\\", "/")).name.strip()
    if not name or name in (".", ".."):
        raise KnowledgeError(f"attachment: {filename!r} is not a file name")
    return name[:200]


def attach(discussion_id: str, filename: str, data: bytes) -> dict[str, Any]:
    """Add a file a user attached to ``discussion_id``'s own index.

    Returns ``{"source", "chunks", "bytes", "digest"}``; raises :class:`KnowledgeError` with a
    message for a file that is too large, unreadable or of a kind we cannot read. Attaching the
    same name again replaces the earlier version.
    """
    if not discussion_id:
        raise KnowledgeError("attachment: no discussion to attach it to")
    name = _clean_name(filename)
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise KnowledgeError(
            f"attachment {name}: {len(data)} bytes; the limit is {MAX_ATTACHMENT_BYTES}",
            "attach a smaller file, or only the part you need",
        )
    sections = read_bytes(data, name)
    index = discussion_index(discussion_id, create=True)
    assert index is not None
    known = index.known()
    if name not in known and len(known) >= MAX_ATTACHMENTS:
        raise KnowledgeError(
            f"attachment {name}: the discussion already holds {MAX_ATTACHMENTS} files",
            "start a new discussion",
        )
    hashed = digest(data)
    count = index.put(name, sections, hashed, len(data))
    return {"source": name, "chunks": count, "bytes": len(data), "digest": hashed}


def read_attachment(path: Path) -> bytes:
    """A file on disk a user attached, refused before it is read when it is too large
    (``lollms run --attach FILE``, the app's Attach button)."""
    try:
        size = path.stat().st_size
        if size > MAX_ATTACHMENT_BYTES:
            raise KnowledgeError(
                f"attachment {path.name}: {size} bytes; the limit is {MAX_ATTACHMENT_BYTES}",
                "attach a smaller file, or only the part you need",
            )
        return path.read_bytes()
    except OSError as exc:
        raise KnowledgeError(f"attachment {path}: cannot read it ({exc.strerror})") from None


def attach_file(discussion_id: str, path: Path) -> dict[str, Any]:
    """:func:`attach` for a file on disk (``lollms run --attach FILE``)."""
    return attach(discussion_id, path.name, read_attachment(path))


def attachments(discussion_id: str) -> list[dict[str, Any]]:
    """The files attached to a discussion: ``{source, bytes, digest}`` each, by name."""
    index = discussion_index(discussion_id)
    if index is None:
        return []
    return [
        {"source": name, "bytes": size, "digest": hashed}
        for name, (size, _mtime, hashed) in sorted(index.known().items())
    ]


def detach(discussion_id: str, filename: str) -> bool:
    """Remove one attached file from a discussion's index; False when it was not there."""
    index = discussion_index(discussion_id)
    name = _clean_name(filename)
    if index is None or name not in index.known():
        return False
    index.remove(name)
    return True


def forget(discussion_id: str) -> None:
    """Delete a discussion's index (call it when the discussion is deleted)."""
    path = discussion_index_path(discussion_id)
    with _lock:
        _indexes.pop(path, None)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


__all__ = [
    "attach",
    "attach_file",
    "attachments",
    "detach",
    "discussion_index",
    "forget",
    "matched_files",
    "personality_index",
    "read_file",
    "sync_folder",
]
