"""The discussion store: SQLite (WAL) with schema migrations, branches, streamed answers saved as
they grow, per-personality settings, artifacts and Markdown/JSON export.

Typical turn::

    store = Store()  # $LOLLMS_HOME/discussions.sqlite3
    d = store.create_discussion("gpt_for_art", model="smollm2")
    store.add_message(d.id, "user", "Imagine something cool.")
    answer = store.begin_answer(d.id, model="smollm2", sampling={"temperature": 0.8})
    for chunk in chunks:
        store.append_answer(answer, chunk.text)
    store.finish_answer(answer, Status.OK, stats={"generation_tokens": 42})

``Store`` is one implementation of :class:`DiscussionStore` (``protocol.py``), the interface the
conversation service is typed against; a second store implements that protocol.
"""

from __future__ import annotations

from ..events import Status
from .errors import (
    AnswerInProgress,
    ImportFormatError,
    NotFoundError,
    StoreError,
    StoreFull,
    UnsafePathError,
)
from .models import Artifact, Discussion, Message, MessageRole, Step
from .protocol import DiscussionStore
from .store import LEAF, Store

__all__ = [
    "LEAF",
    "AnswerInProgress",
    "Artifact",
    "Discussion",
    "DiscussionStore",
    "ImportFormatError",
    "Message",
    "MessageRole",
    "NotFoundError",
    "Status",
    "Step",
    "Store",
    "StoreError",
    "StoreFull",
    "UnsafePathError",
]
