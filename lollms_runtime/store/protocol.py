"""``DiscussionStore``: what the conversation service needs from a store, and nothing more.

``Store`` (SQLite, one file) implements it; a second store (a server database shared by many
instances) implements the same methods and the service runs on it unchanged. The rules every
implementation keeps:

* a discussion's messages form a tree (``parent_id``); ``leaf_id`` marks the active branch, and
  adding a message under an earlier one starts a sibling branch without touching the old one;
* an answer that streams is opened by ``begin_answer`` (or reopened by ``continue_answer``), fed
  by ``append_answer`` and closed by ``finish_answer``; one whose writer went away reads
  ``interrupted``;
* statuses are :class:`~lollms_runtime.events.Status` values, stored as they are;
* artifacts live under ``artifact_dir(discussion_id)`` and ``resolve_artifact`` refuses any path
  outside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from ..events import Status
from .models import Artifact, Discussion, Message, MessageRole, Step
from .tree import LEAF, _Leaf


class DiscussionStore(Protocol):
    """Discussions, their message tree, streamed answers, steps, artifacts and settings."""

    # -- discussions ------------------------------------------------------------------------------
    def create_discussion(
        self, personality_id: str, title: str | None = None, model: str | None = None
    ) -> Discussion: ...

    def get_discussion(self, discussion_id: str) -> Discussion: ...

    def list_discussions(
        self,
        search: str | None = None,
        personality_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Discussion]: ...

    def rename_discussion(self, discussion_id: str, title: str) -> Discussion: ...

    def set_discussion_model(self, discussion_id: str, model: str | None) -> Discussion: ...

    def delete_discussion(self, discussion_id: str) -> None: ...

    # -- the message tree -------------------------------------------------------------------------
    def add_message(
        self,
        discussion_id: str,
        role: MessageRole,
        content: str,
        parent_id: str | _Leaf | None = LEAF,
        *,
        status: Status = Status.OK,
        model: str | None = None,
        sampling: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> Message: ...

    def get_message(self, message_id: str) -> Message: ...

    def thread(self, discussion_id: str, leaf_id: str | None = None) -> list[Message]: ...

    def siblings(self, message_id: str) -> list[Message]: ...

    def set_leaf(self, discussion_id: str, message_id: str, *, descend: bool = True) -> str: ...

    def delete_message(self, message_id: str) -> None: ...

    # -- answers that stream ----------------------------------------------------------------------
    def begin_answer(
        self,
        discussion_id: str,
        parent_id: str | _Leaf | None = LEAF,
        *,
        model: str | None = None,
        sampling: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        content: str = "",
    ) -> str: ...

    def continue_answer(self, message_id: str) -> None: ...

    def append_answer(self, message_id: str, text_delta: str) -> None: ...

    def finish_answer(
        self,
        message_id: str,
        status: Status = Status.OK,
        content: str | None = None,
        error: str | None = None,
        stats: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Message: ...

    # -- steps and artifacts ----------------------------------------------------------------------
    def add_step(
        self,
        message_id: str,
        kind: str,
        *,
        step_id: str | None = None,
        title: str = "",
        status: Status = Status.RUNNING,
        output: Any = None,
        duration_s: float | None = None,
        prompt_tokens: int | None = None,
        generation_tokens: int | None = None,
        error: str | None = None,
        detail: str = "",
        path: str = "",
    ) -> Step: ...

    def steps(self, message_id: str) -> list[Step]: ...

    def artifact_dir(self, discussion_id: str) -> Path: ...

    def add_artifact(
        self,
        message_id: str,
        path: str | Path,
        *,
        kind: str = "image",
        params: Mapping[str, Any] | None = None,
        step_id: str | None = None,
        mime: str | None = None,
    ) -> Artifact: ...

    def artifacts(self, message_id: str) -> list[Artifact]: ...

    def resolve_artifact(self, relative_path: str) -> Path: ...

    # -- settings, export and import --------------------------------------------------------------
    def get_settings(self, personality_id: str) -> dict[str, Any]: ...

    def save_settings(self, personality_id: str, settings: Mapping[str, Any]) -> None: ...

    def export_markdown(self, discussion_id: str, link_prefix: str = "") -> str: ...

    def export_json(self, discussion_id: str) -> dict[str, Any]: ...

    def import_json(self, data: Mapping[str, Any], files_from: Path | None = None) -> str: ...

    def close(self) -> None: ...
