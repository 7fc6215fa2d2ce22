"""``Store``: discussions, branches, streamed answers, settings and artifacts in SQLite.

The class is built in layers, one job per module: ``connection`` (opening, migrations,
transactions), ``tree`` (discussions and the message tree), ``buffer`` (answers that stream,
written behind on a timer), ``steps`` (steps and artifacts), ``settings``, and here export/import.
The conversation service sees it only through :class:`~lollms_runtime.store.protocol.DiscussionStore`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import codec, export, importer
from .settings import SettingsStore
from .tree import LEAF

__all__ = ["LEAF", "Store"]


class Store(SettingsStore):
    """The discussion store: one SQLite file (WAL) plus an ``artifacts/`` folder beside it.

    Safe to share between threads (one connection behind a lock). Several processes may open the
    same file; an answer another live process is writing is left alone, one whose writer died is
    marked ``interrupted`` when a store opens.
    """

    def __enter__(self) -> Store:
        return self

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
