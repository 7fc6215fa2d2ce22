"""lollms-mcp: Model Context Protocol tools as lollms-runtime pipeline steps (see README.md)."""

from __future__ import annotations

__version__ = "0.1.0"
