"""Bring personalities from elsewhere: LoLLMs personality folders and SillyTavern character cards.

Importers only read data (YAML, JSON, PNG chunks); they never run or import code found in a source.
"""

from __future__ import annotations

from .common import Draft, ImportFailed, ImportResult
from .detect import import_source, import_tree

__all__ = ["Draft", "ImportFailed", "ImportResult", "import_source", "import_tree"]
