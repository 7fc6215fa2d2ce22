"""Discussions as Markdown (to read) and as versioned JSON (to move between stores).

Pure functions over the store's records: the ``Store`` reads and writes, this module only shapes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ..events import Status
from ..jsonsafe import UnsafeJSON, loads
from .errors import ImportFormatError
from .models import (
    MESSAGE_STATUSES,
    ROLES,
    STEP_STATUSES,
    Artifact,
    Discussion,
    Message,
    Step,
    status_of,
)

FORMAT = "lollms-runtime/discussion"
VERSION = 1

_ROLE_TITLES = {"user": "User", "assistant": "Assistant", "system": "System"}


def render_markdown(
    discussion: Discussion,
    thread: Sequence[Message],
    steps: Mapping[str, Sequence[Step]],
    artifacts: Mapping[str, Sequence[Artifact]],
    link_prefix: str = "",
) -> str:
    """The active branch as Markdown: title, personality, then each message under its role."""
    lines = [f"# {discussion.title or 'Untitled discussion'}", ""]
    lines.append(f"- Personality: `{discussion.personality_id}`")
    if discussion.model:
        lines.append(f"- Model: `{discussion.model}`")
    lines.append(f"- Started: {_when(discussion.created_at)}")
    lines.append("")
    for message in thread:
        heading = _ROLE_TITLES.get(message.role, message.role.title())
        notes = [
            n for n in (message.model, None if message.status == Status.OK else message.status) if n
        ]
        lines.append(f"## {heading}" + (f" ({', '.join(notes)})" if notes else ""))
        lines.append("")
        if message.content:
            lines.append(message.content.rstrip())
            lines.append("")
        for attached in message.metadata.get("attachments") or ():
            if isinstance(attached, Mapping):  # an imported file's metadata may be anything
                lines.append(f"Attached: `{attached.get('name')}` ({attached.get('bytes')} bytes)")
                lines.append("")
        if message.error:
            lines.append(f"> **Error:** {message.error}")
            lines.append("")
        for artifact in artifacts.get(message.id, ()):
            if artifact.part:
                continue  # a piece of a whole file listed too (one spoken sentence of the speech)
            label = str(artifact.params.get("prompt") or artifact.kind).replace("\n", " ")
            label = label.replace("[", "(").replace("]", ")")
            target = (link_prefix + artifact.path).replace(" ", "%20")
            bang = "!" if artifact.kind == "image" else ""
            lines.append(f"{bang}[{label}]({target})")
            lines.append("")
        answer_steps = steps.get(message.id, ())
        if answer_steps:
            lines.append("<details><summary>Steps</summary>")
            lines.append("")
            for step in answer_steps:
                name = step.title or step.step_id
                label = f"`{step.kind}` {name}" if name else f"`{step.kind}`"
                extra = f" ({step.detail})" if step.detail else ""
                extra += f", {step.duration_s:.2f} s" if step.duration_s is not None else ""
                lines.append(f"- {label}: {step.status}{extra}")
            lines.append("")
            lines.append("</details>")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def build_json(
    discussion: Discussion,
    messages: Sequence[Message],
    steps: Mapping[str, Sequence[Step]],
    artifacts: Mapping[str, Sequence[Artifact]],
) -> dict[str, Any]:
    """Every branch, step and artifact record of a discussion, in the versioned export format.

    Artifact paths are written relative to the discussion's own folder, so the export does not
    depend on the id the discussion had in its store.
    """
    folder = PurePosixPath("artifacts", discussion.id)
    return {
        "format": FORMAT,
        "version": VERSION,
        "discussion": {
            "id": discussion.id,
            "title": discussion.title,
            "personality_id": discussion.personality_id,
            "model": discussion.model,
            "leaf_id": discussion.leaf_id,
            "created_at": discussion.created_at,
            "updated_at": discussion.updated_at,
        },
        "messages": [
            {
                "id": m.id,
                "parent_id": m.parent_id,
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "created_at": m.created_at,
                "updated_at": m.updated_at,
                "model": m.model,
                "sampling": m.sampling,
                "error": m.error,
                "metadata": m.metadata,
                "steps": [
                    {
                        "position": s.position,
                        "step_id": s.step_id,
                        "kind": s.kind,
                        "title": s.title,
                        "detail": s.detail,
                        "path": s.path,
                        "output": s.output,
                        "status": s.status,
                        "duration_s": s.duration_s,
                        "prompt_tokens": s.prompt_tokens,
                        "generation_tokens": s.generation_tokens,
                        "error": s.error,
                    }
                    for s in steps.get(m.id, ())
                ],
                "artifacts": [
                    {
                        "kind": a.kind,
                        "path": _relative_to(PurePosixPath(a.path), folder),
                        "step_id": a.step_id,
                        "mime": a.mime,
                        "params": a.params,
                        "created_at": a.created_at,
                    }
                    for a in artifacts.get(m.id, ())
                ],
            }
            for m in messages
        ],
    }


@dataclass(frozen=True)
class ParsedExport:
    """A validated export: records keyed by the ids they had in the exporting store."""

    discussion: Discussion
    messages: list[Message]
    steps: dict[str, list[Step]] = field(default_factory=dict)
    artifacts: dict[str, list[Artifact]] = field(default_factory=dict)


MAX_EXPORT_BYTES = 256 << 20
MAX_EXPORT_DEPTH = 64
# Timestamps, positions and token counts beyond these are not data a store wrote.
_MAX_NUMBER = 1e15
_MAX_INT = 2**53


def read_export(raw: str | bytes) -> Any:
    """An export file's text as JSON, read with bounded work (size, nesting, finite numbers)."""
    try:
        return loads(raw, max_bytes=MAX_EXPORT_BYTES, max_depth=MAX_EXPORT_DEPTH)
    except UnsafeJSON as exc:
        raise ImportFormatError(f"this file cannot be imported: {exc}") from None


def parse_json(data: Mapping[str, Any]) -> ParsedExport:
    """Check an export and decode it; ``ImportFormatError`` names the first field that is wrong."""
    if not isinstance(data, Mapping):
        raise ImportFormatError("a discussion export must be a JSON object")
    if data.get("format") != FORMAT:
        raise ImportFormatError(
            f"format: expected {FORMAT!r}, found {data.get('format')!r}: "
            "is this a lollms-runtime discussion export?"
        )
    version = data.get("version")
    if version != VERSION:
        raise ImportFormatError(
            f"version: this lollms-runtime reads export version {VERSION}, found {version!r}: "
            "export it again with the same lollms-runtime version"
        )
    d = data.get("discussion")
    if not isinstance(d, Mapping):
        raise ImportFormatError("discussion: expected an object with the discussion's fields")
    discussion = Discussion(
        id=_str(d, "id", "discussion"),
        title=_str(d, "title", "discussion", default=""),
        personality_id=_str(d, "personality_id", "discussion"),
        model=_opt_str(d, "model", "discussion"),
        leaf_id=_opt_str(d, "leaf_id", "discussion"),
        created_at=_num(d, "created_at", "discussion"),
        updated_at=_num(d, "updated_at", "discussion"),
    )
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list):
        raise ImportFormatError("messages: expected a list of messages")
    parsed = ParsedExport(discussion, [])
    seen: set[str] = set()
    for i, raw in enumerate(raw_messages):
        where = f"messages[{i}]"
        if not isinstance(raw, Mapping):
            raise ImportFormatError(f"{where}: expected an object")
        message = _message(raw, where, discussion.id)
        if message.id in seen:
            raise ImportFormatError(f"{where}.id: {message.id!r} appears twice")
        if message.parent_id is not None and message.parent_id not in seen:
            raise ImportFormatError(
                f"{where}.parent_id: {message.parent_id!r} is not an earlier message "
                "(parents must come before their replies)"
            )
        seen.add(message.id)
        parsed.messages.append(message)
        parsed.steps[message.id] = [
            _step(s, f"{where}.steps[{j}]", message.id)
            for j, s in enumerate(_list(raw, "steps", where))
        ]
        parsed.artifacts[message.id] = [
            _artifact(a, f"{where}.artifacts[{j}]", message.id)
            for j, a in enumerate(_list(raw, "artifacts", where))
        ]
    if discussion.leaf_id is not None and discussion.leaf_id not in seen:
        raise ImportFormatError(f"discussion.leaf_id: {discussion.leaf_id!r} is not a message")
    return parsed


def _message(raw: Mapping[str, Any], where: str, discussion_id: str) -> Message:
    role = _str(raw, "role", where)
    if role not in ROLES:
        raise ImportFormatError(f"{where}.role: {role!r} is not one of {sorted(ROLES)}")
    status = _status(raw, where, MESSAGE_STATUSES)
    sampling = raw.get("sampling")
    if sampling is not None and not isinstance(sampling, Mapping):
        raise ImportFormatError(f"{where}.sampling: expected an object or null")
    return Message(
        id=_str(raw, "id", where),
        discussion_id=discussion_id,
        parent_id=_opt_str(raw, "parent_id", where),
        role=role,  # type: ignore[arg-type]  # checked against ROLES above
        content=_str(raw, "content", where, default=""),
        # Nobody is writing an imported answer any more.
        status=Status.INTERRUPTED if status == Status.RUNNING else status,
        created_at=_num(raw, "created_at", where),
        updated_at=_num(raw, "updated_at", where),
        model=_opt_str(raw, "model", where),
        sampling=None if sampling is None else dict(sampling),
        error=_opt_str(raw, "error", where),
        metadata=dict(_obj(raw, "metadata", where, default={})),
    )


def _step(raw: Any, where: str, message_id: str) -> Step:
    if not isinstance(raw, Mapping):
        raise ImportFormatError(f"{where}: expected an object")
    status = _status(raw, where, STEP_STATUSES)
    title = _str(raw, "title", where, default="")
    if "detail" in raw:
        detail = _str(raw, "detail", where)
    else:  # written before steps had a detail of their own: it was packed into the title
        title, _sep, detail = title.partition(" — ")
    return Step(
        n=0,
        message_id=message_id,
        position=_opt_int({"position": _get(raw, "position", where, _MISSING)}, "position", where)
        or 0,
        step_id=_opt_str(raw, "step_id", where),
        kind=_str(raw, "kind", where),
        title=title,
        detail=detail,
        path=_str(raw, "path", where, default=""),
        output=raw.get("output"),
        status=Status.INTERRUPTED if status == Status.RUNNING else status,
        duration_s=_opt_num(raw, "duration_s", where),
        prompt_tokens=_opt_int(raw, "prompt_tokens", where),
        generation_tokens=_opt_int(raw, "generation_tokens", where),
        error=_opt_str(raw, "error", where),
    )


def _status(raw: Mapping[str, Any], where: str, allowed: frozenset[Status]) -> Status:
    word = _str(raw, "status", where, default=Status.OK.value)
    try:
        status = status_of(word)
    except ValueError:
        status = None
    if status not in allowed:
        raise ImportFormatError(
            f"{where}.status: {word!r} is not one of {sorted(s.value for s in allowed)}"
        )
    assert status is not None
    return status


def _artifact(raw: Any, where: str, message_id: str) -> Artifact:
    if not isinstance(raw, Mapping):
        raise ImportFormatError(f"{where}: expected an object")
    path = _str(raw, "path", where)
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path or "\x00" in path:
        raise ImportFormatError(
            f"{where}.path: {path!r} must be a plain path inside the discussion's folder"
        )
    return Artifact(
        n=0,
        message_id=message_id,
        kind=_str(raw, "kind", where, default="image"),
        path=path,
        step_id=_opt_str(raw, "step_id", where),
        mime=_opt_str(raw, "mime", where),
        params=dict(_obj(raw, "params", where, default={})),
        created_at=_num(raw, "created_at", where, default=0.0),
    )


def _relative_to(path: PurePosixPath, folder: PurePosixPath) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.name  # recorded outside its folder (older data): keep the file name


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


_MISSING: Any = object()


def _get(raw: Mapping[str, Any], key: str, where: str, default: Any) -> Any:
    if key in raw:
        return raw[key]
    if default is _MISSING:
        raise ImportFormatError(f"{where}.{key}: missing")
    return default


def _str(raw: Mapping[str, Any], key: str, where: str, default: Any = _MISSING) -> str:
    value = _get(raw, key, where, default)
    if not isinstance(value, str):
        raise ImportFormatError(f"{where}.{key}: expected text, found {type(value).__name__}")
    return value


def _opt_str(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ImportFormatError(f"{where}.{key}: expected text or null")
    return value


def _num(raw: Mapping[str, Any], key: str, where: str, default: Any = _MISSING) -> float:
    value = _get(raw, key, where, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImportFormatError(f"{where}.{key}: expected a number, found {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ImportFormatError(f"{where}.{key}: {value} is not a finite number")
    if abs(value) > _MAX_NUMBER:
        shown = (
            f"{value:.3g}" if isinstance(value, float) else f"a {len(str(abs(value)))}-digit number"
        )
        raise ImportFormatError(f"{where}.{key}: {shown} is out of range")
    return float(value)


def _opt_num(raw: Mapping[str, Any], key: str, where: str) -> float | None:
    return None if raw.get(key) is None else _num(raw, key, where)


def _opt_int(raw: Mapping[str, Any], key: str, where: str) -> int | None:
    if raw.get(key) is None:
        return None
    value = _num(raw, key, where)
    if not value.is_integer() or not 0 <= value <= _MAX_INT:
        raise ImportFormatError(f"{where}.{key}: expected a whole number of at least 0")
    return int(value)


def _obj(
    raw: Mapping[str, Any], key: str, where: str, default: Any = _MISSING
) -> Mapping[str, Any]:
    value = _get(raw, key, where, default)
    if not isinstance(value, Mapping):
        raise ImportFormatError(f"{where}.{key}: expected an object")
    return value


def _list(raw: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ImportFormatError(f"{where}.{key}: expected a list")
    return value
