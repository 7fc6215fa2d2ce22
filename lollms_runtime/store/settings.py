"""Per-personality settings a user saved (the app's generated controls)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from . import codec
from .steps import StepStore


class SettingsStore(StepStore):
    """The user's saved settings, one JSON object per personality."""

    def get_settings(self, personality_id: str) -> dict[str, Any]:
        """The user's saved settings for a personality (empty if none)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT settings FROM personality_settings WHERE personality_id = ?",
                (personality_id,),
            ).fetchone()
        return dict(codec.loads(row["settings"])) if row else {}

    def save_settings(self, personality_id: str, settings: Mapping[str, Any]) -> None:
        """Replace the user's saved settings for a personality."""
        with self._write() as c:
            c.execute(
                "INSERT INTO personality_settings (personality_id, settings, updated_at)"
                " VALUES (?, ?, ?) ON CONFLICT (personality_id) DO UPDATE SET"
                " settings = excluded.settings, updated_at = excluded.updated_at",
                (personality_id, codec.dumps(dict(settings)), time.time()),
            )
