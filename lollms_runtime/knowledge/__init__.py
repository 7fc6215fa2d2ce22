"""What a personality knows: its lorebook (``lore:``), its own documents (``knowledge:``) and the
files a user attaches to a discussion. Nothing here imports a model library at import time."""

from __future__ import annotations

from .limits import KnowledgeError

__all__ = ["KnowledgeError"]
