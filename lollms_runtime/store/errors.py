"""What the store raises; every message says what was wrong and what to do."""

from __future__ import annotations


class StoreError(Exception):
    """Any error from the discussion store."""


class NotFoundError(StoreError, LookupError):
    """A discussion, message or step that does not exist (or no longer does)."""


class UnsafePathError(StoreError, ValueError):
    """A file path that would reach outside the store's artifacts folder."""


class ImportFormatError(StoreError, ValueError):
    """A JSON export that cannot be imported; the message names the offending field."""


class AnswerInProgress(StoreError):
    """A message sent after an answer that another window or process is still writing."""


class StoreFull(StoreError):
    """The store's file could not grow (disk full, file-size limit, failing disk)."""
