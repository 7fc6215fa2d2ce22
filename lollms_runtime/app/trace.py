"""An answer's steps as a tree, built the same way from live events and from saved steps.

Live, a step that starts while another is still running is its child. Saved, steps are stored
when they finish (children before their parent), each with its path in the pipeline, so the
children of a step are the ones just before it whose path lies under its own. Both roads lead to
the same tree, so a reopened answer shows the trace it showed while it ran. Nothing here imports
gradio: the chat messages are plain dicts (``metadata`` id/parent_id nest them in ``gr.Chatbot``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..contracts import StepKind
from ..events import Progress, Status, StepFinished, StepStarted, progress_text
from ..store import Step

PREVIEW_CHARS = 600
# One passage in a generate step's "retrieved: ..." note (knowledge.turn._cite).
_CITED = re.compile(r"(.+?)(?: \((.+?)\))? -?\d+\.\d+(?:, |$)")
# What the step kinds declare (quiet plumbing, a notice when they fail), from the plugin host.
_KINDS: dict[str, StepKind] = {}


def use_step_kinds(kinds: Any) -> None:
    """Read the step kinds' declarations (the app calls it once with its host's kinds)."""
    _KINDS.clear()
    _KINDS.update(kinds)


def _declared(kind: str) -> StepKind | None:
    if not _KINDS:  # not told: the process-wide host's kinds (built-ins and installed plugins)
        from ..loader import default_host

        use_step_kinds(default_host().step_kinds)
    return _KINDS.get(kind)


def _quiet(kind: str) -> bool:
    declared = _declared(kind)
    return bool(declared and declared.quiet)


def _notice(kind: str) -> str:
    declared = _declared(kind)
    return declared.notice if declared else ""


ChatDict = dict[str, Any]


@dataclass
class StepView:
    """One pipeline step as the trace shows it, with the steps it ran inside it."""

    kind: str
    title: str
    step_id: str = ""
    path: str = ""
    status: Status = Status.RUNNING
    duration: float | None = None
    tokens: int | None = None
    detail: str = ""
    error: str = ""
    output: Any = None
    progress: str = ""
    children: list[StepView] = field(default_factory=list)

    def finish(self, event: StepFinished) -> None:
        self.status = event.status
        self.duration = event.duration
        self.tokens = event.generation_tokens or None
        self.detail = event.detail
        self.error = event.error
        self.output = None if event.answer else event.output

    @property
    def label(self) -> str:
        """``kind · title``; an automatic id (``reply_5``, ``set``) is noise, so only the kind."""
        title = self.title
        if not title or title == self.kind or re.fullmatch(rf"{re.escape(self.kind)}_\d+", title):
            return self.kind
        return f"{self.kind} · {title}"


@dataclass
class Trace:
    """The tree of an answer's steps."""

    roots: list[StepView] = field(default_factory=list)
    _open: list[StepView] = field(default_factory=list, repr=False)

    def start(self, event: StepStarted) -> StepView:
        node = StepView(event.kind, event.title, event.step_id, event.path)
        (self._open[-1].children if self._open else self.roots).append(node)
        self._open.append(node)
        return node

    def finish(self, event: StepFinished) -> StepView:
        for depth in range(len(self._open) - 1, -1, -1):
            node = self._open[depth]
            if node.step_id == event.step_id and node.path == event.path:
                del self._open[depth:]
                break
        else:  # finished without a start (a plugin's shortcut): a leaf where we are
            node = StepView(event.kind, event.title, event.step_id, event.path)
            (self._open[-1].children if self._open else self.roots).append(node)
        node.finish(event)
        return node

    def running(self, step_id: str) -> StepView | None:
        """The innermost running step with this id (for progress)."""
        return next((n for n in reversed(self._open) if n.step_id == step_id), None)

    def stop(self, status: Status) -> None:
        """The turn ended (Stop, an error): steps still open end with it, not *running*."""
        for node in self._open:
            node.status = status
        self._open.clear()

    def walk(self) -> Iterable[StepView]:
        stack = list(reversed(self.roots))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    @classmethod
    def from_steps(cls, steps: Iterable[Step]) -> Trace:
        """The tree of saved steps (in the order they finished)."""
        done: list[StepView] = []
        for s in steps:
            node = StepView(
                kind=s.kind,
                title=s.title,
                step_id=s.step_id or "",
                path=s.path,
                status=s.status,
                duration=s.duration_s,
                tokens=s.generation_tokens,
                detail=s.detail,
                error=s.error or "",
                output=s.output,
            )
            if s.path:
                inside = s.path + "."
                first = len(done)
                while first > 0 and done[first - 1].path.startswith(inside):
                    first -= 1
                node.children, done[first:] = done[first:], []
            done.append(node)
        return cls(roots=done)

    def painting_notice(self) -> str:
        """One line when a picture was asked for and not painted: why, and what fixes it."""
        for node in self.walk():
            notice = _notice(node.kind)
            if notice and node.status in (Status.FAILED, Status.FALLBACK):
                return f"**{notice}:** {one_line(node.error or 'it could not run')}"
        return ""

    def sources(self) -> list[str]:
        """Where the answer's passages came from ("source, location"), in the order retrieved:
        the outputs of ``retrieve`` steps and the passages the default chat added by itself
        (its generate step's trace note ``retrieved: SOURCE (LOCATION) SCORE, ...``)."""
        found: list[str] = []
        for node in self.walk():
            if node.status != Status.OK:
                continue
            if isinstance(node.output, list):
                for item in node.output:
                    if isinstance(item, dict) and isinstance(item.get("source"), str):
                        found.append(str(item.get("cite") or item["source"]))
            for note in node.detail.split("; "):
                if note.startswith("retrieved: "):
                    found += [
                        f"{m[1]}, {m[2]}" if m[2] else m[1]
                        for m in _CITED.finditer(note.removeprefix("retrieved: "))
                    ]
        return list(dict.fromkeys(found))

    def messages(self, prefix: str, show_all: bool = False) -> list[ChatDict]:
        """The trace as collapsible chat messages, children nested under their parents."""
        out: list[ChatDict] = []
        counter = iter(range(1_000_000))

        def add(nodes: list[StepView], parent: str | None) -> None:
            seen: dict[tuple[str, str], int] = {}
            for node in nodes:
                where = (node.path, node.step_id)  # a for_each iteration repeats both
                seen[where] = seen.get(where, 0) + 1
                if not show_all and _quiet(node.kind) and node.status != Status.FAILED:
                    continue
                key = f"{prefix}-{next(counter)}"
                # Inside a loop or for_each a repeat is the next iteration; at the top it is a
                # Continue running the answer's step again, not an iteration.
                repeat = seen[where] if node.path and parent else 1
                out.append(step_message(node, key, parent, repeat))
                add(node.children, key)

        add(self.roots, None)
        return out


_COMMAND = re.compile(r"(lollms (?:models pull|install|plugins install) [^\s`]+?)[`.,;]*(?:\s|$)")


def one_line(error: str) -> str:
    """A painter's error as one line: its first sentence (without the paths it lists), and the
    command that fixes it when the error names one."""
    text = " ".join(error.split())
    sentences = re.split(r"(?<=[.!?])\s", text)
    found = _COMMAND.search(text)
    # Without a command to quote, the next sentence is usually the fix ("Start the server").
    first = " ".join(sentences[:1] if found else sentences[:2]).rstrip(".")
    first = re.sub(r"\s+\([^)]*\)", "", first)  # "(/root/.cache/...)": paths, not the point
    if found and found.group(1) in first:
        return first.replace(found.group(1), f"`{found.group(1)}`").replace("``", "`")
    if len(first) > 200:
        first = first[:197].rstrip() + "…"
    return f"{first} — run `{found.group(1)}`" if found else first


def _preview(output: Any) -> str:
    if output is None:
        return ""
    text = output if isinstance(output, str) else json.dumps(output, default=str, indent=1)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def step_message(
    step: StepView, key: str = "", parent: str | None = None, repeat: int = 1
) -> ChatDict:
    """A step as a collapsible chat message (Gradio's ``metadata`` title/status/duration/log)."""
    done = step.status != Status.RUNNING
    # A step cut short by Stop is shown as stopped, like the answer, not as failed.
    log_parts = [("stopped" if step.status == Status.CANCELLED else step.status.value)]
    if step.tokens:
        log_parts.append(f"{step.tokens} tokens")
    if step.detail:
        log_parts.append(step.detail)
    if step.progress and not done:
        log_parts.append(step.progress)
    body = []
    if step.error:
        body.append(f"**error:** {step.error}")
    # A step with steps inside shows them, not its output again (a list of what they made).
    preview = "" if step.children else _preview(step.output)
    if preview:
        body.append(f"```\n{preview}\n```")
    title = step.label + (f" (#{repeat})" if repeat > 1 else "")
    metadata: dict[str, Any] = {
        "title": title,
        "status": "done" if done else "pending",
        "log": " · ".join(log_parts),
    }
    if key:
        metadata["id"] = key
    if parent:
        metadata["parent_id"] = parent
    if step.duration is not None:
        metadata["duration"] = round(step.duration, 2)
    # Never empty: Gradio marks an empty step busy (a spinner for screen readers) forever.
    if not body:
        body.append(f"*{len(step.children)} step(s) inside*" if step.children else "*no output*")
    return {"role": "assistant", "content": "\n\n".join(body), "metadata": metadata}


def progress_of(step: StepView, event: Progress) -> None:
    step.progress = progress_text(event)
