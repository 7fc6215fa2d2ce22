"""The discussion store: SQLite (WAL) with schema migrations, branches, streamed answers saved as
they grow, per-personality settings, artifacts and Markdown/JSON export."""

from __future__ import annotations

from .errors import ImportFormatError, NotFoundError, StoreError, UnsafePathError
from .models import Artifact, Discussion, Message, MessageRole, MessageStatus, Step, StepStatus
from .store import LEAF, Store

__all__ = [
    "LEAF",
    "Artifact",
    "Discussion",
    "ImportFormatError",
    "Message",
    "MessageRole",
    "MessageStatus",
    "NotFoundError",
    "Step",
    "StepStatus",
    "Store",
    "StoreError",
    "UnsafePathError",
]
