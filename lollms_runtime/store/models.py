"""The store's records: plain frozen dataclasses, decoded from SQLite rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..events import Status

MessageRole = Literal["system", "user", "assistant"]

ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})
# An answer is never skipped and never falls back: those are for steps only.
MESSAGE_STATUSES: frozenset[Status] = frozenset(Status) - {Status.SKIPPED, Status.FALLBACK}
# The statuses an answer may end with (``finish_answer``).
FINAL_STATUSES: frozenset[Status] = MESSAGE_STATUSES - {Status.RUNNING}
STEP_STATUSES: frozenset[Status] = frozenset(Status)
# Words written by older versions (store schema v1-v2, JSON exports): read as today's.
LEGACY_STATUSES: dict[str, Status] = {
    "complete": Status.OK,
    "error": Status.FAILED,
    "generating": Status.RUNNING,
}


def status_of(word: str) -> Status:
    """A status word as stored or exported (old words included); ``ValueError`` if unknown."""
    return LEGACY_STATUSES.get(word) or Status(word)


@dataclass(frozen=True)
class Discussion:
    """A conversation with one personality; ``leaf_id`` is the last message of the active branch."""

    id: str
    title: str
    personality_id: str
    model: str | None
    leaf_id: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Message:
    """One message; ``parent_id`` links it into the discussion's tree of branches."""

    id: str
    discussion_id: str
    parent_id: str | None
    role: MessageRole
    content: str
    status: Status
    created_at: float
    updated_at: float
    model: str | None = None
    sampling: dict[str, Any] | None = None
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One pipeline step of an answer, in run order (``position`` counts from 0)."""

    n: int
    message_id: str
    position: int
    step_id: str | None
    kind: str
    title: str
    output: Any
    status: Status
    duration_s: float | None = None
    prompt_tokens: int | None = None
    generation_tokens: int | None = None
    error: str | None = None
    detail: str = ""  # e.g. the branch a condition took, the iterations of a loop
    path: str = ""  # where the step is written, e.g. pipeline[2].condition.then[0]


@dataclass(frozen=True)
class Artifact:
    """A file an answer produced (an image, usually); ``path`` is relative to the store's folder."""

    n: int
    message_id: str
    kind: str
    path: str
    step_id: str | None = None
    mime: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    @property
    def part(self) -> bool:
        """A piece of a whole file the answer also has (one spoken sentence): as recorded from
        :attr:`lollms_runtime.events.ArtifactProduced.part`; the whole file is the one to show."""
        return self.params.get("part") is not None
