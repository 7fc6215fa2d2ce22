"""The bounds every piece of knowledge work stays within, and the error a person can act on."""

from __future__ import annotations

from ..errors import LollmsError

# Lorebooks.
MAX_ENTRIES = 1000
MAX_KEYS = 100  # per entry, primary and secondary together
MAX_KEY_CHARS = 200
MAX_REGEX_CHARS = 500
MAX_CONTENT_CHARS = 20_000
MAX_SCAN_DEPTH = 100
MAX_SCAN_CHARS = 50_000  # of each scanned message, its end (the most recent words) is kept
MAX_BUDGET = 32_768
MAX_RECURSION = 3  # passes of recursive scanning
REGEX_TIMEOUT = 0.05  # seconds per search; a pattern that backtracks for longer is refused

# Documents.
MAX_DOCUMENTS = 500
MAX_DOCUMENT_BYTES = 20 << 20
MAX_TOTAL_BYTES = 200 << 20
MAX_CHUNKS = 50_000
MAX_PDF_PAGES = 2000
CHUNK_CHARS = 800
CHUNK_OVERLAP = 120
MAX_PASSAGES = 50
MAX_QUERY_CHARS = 2000

# Attachments.
MAX_ATTACHMENT_BYTES = 20 << 20
MAX_ATTACHMENTS = 100  # per discussion


class KnowledgeError(LollmsError):
    """A lorebook, document or attachment that cannot be used; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint
