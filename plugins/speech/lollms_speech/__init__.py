"""lollms-speech: the ``speak`` step kind for lollms-runtime (see README.md)."""

from __future__ import annotations

__version__ = "0.1.0"
