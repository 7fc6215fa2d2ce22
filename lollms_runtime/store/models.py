"""The store's records: plain frozen dataclasses, decoded from SQLite rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

MessageRole = Literal["system", "user", "assistant"]
MessageStatus = Literal["complete", "generating", "interrupted", "error", "cancelled"]
StepStatus = Literal["running", "complete", "skipped", "error", "cancelled", "interrupted"]

ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})
MESSAGE_STATUSES: frozenset[str] = frozenset(
    {"complete", "generating", "interrupted", "error", "cancelled"}
)
# The statuses an answer may end with (``finish_answer``).
FINAL_STATUSES: frozenset[str] = MESSAGE_STATUSES - {"generating"}
STEP_STATUSES: frozenset[str] = frozenset(
    {"running", "complete", "skipped", "error", "cancelled", "interrupted"}
)


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
    status: MessageStatus
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
    status: StepStatus
    duration_s: float | None = None
    prompt_tokens: int | None = None
    generation_tokens: int | None = None
    error: str | None = None


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
