"""The events a turn yields: the one primitive the CLI, the web app and the HTTP API consume."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Status(enum.StrEnum):
    """Where a step, an answer or a whole turn stands: one vocabulary for the events, the store
    (stored as is) and every front end. A ``StrEnum``, so ``Status.OK == "ok"``."""

    RUNNING = "running"  # a step under way, or an answer still being written
    OK = "ok"
    SKIPPED = "skipped"  # a step whose ``when`` was false
    FALLBACK = "fallback"  # a step that failed and went on with its ``fallback`` value
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped on purpose (Stop button, Ctrl-C)
    INTERRUPTED = "interrupted"  # its writer went away (process killed) before it finished


# What a finished step may report, and what a turn (``Done``) or a finished answer may end with.
STEP_END: frozenset[Status] = frozenset(
    {Status.OK, Status.SKIPPED, Status.FALLBACK, Status.FAILED, Status.CANCELLED}
)
TURN_END: frozenset[Status] = frozenset({Status.OK, Status.FAILED, Status.CANCELLED})


@dataclass(frozen=True)
class StepStarted:
    step_id: str
    kind: str
    title: str
    path: str  # where the step is written, e.g. pipeline[2].condition.then[0]


@dataclass(frozen=True)
class Token:
    """Streamed text from a generate step; ``visible`` when it is (a draft of) the reply."""

    text: str
    step_id: str
    visible: bool = True


@dataclass(frozen=True)
class StepFinished:
    step_id: str
    kind: str
    title: str
    path: str
    status: Status  # one of STEP_END
    output: Any = None
    duration: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generation_tokens: int = 0
    detail: str = ""  # e.g. the branch a condition took and the model's probability
    error: str = ""
    # The output is the turn's answer (the kind declares ``answer``: a reply): front ends show it
    # once, as the answer, not again in the trace.
    answer: bool = False


@dataclass(frozen=True)
class ImageProduced:
    step_id: str
    path: Path
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactProduced:
    """A file a step wrote that is not an image (spoken audio, a document): the recorder keeps it
    with the answer under ``kind`` and ``mime``, front ends link or play it. Images keep their own
    event (:class:`ImageProduced`), which every front end shows inline."""

    step_id: str
    path: Path
    kind: str  # what the file is to front ends: "audio", "file", ...
    mime: str  # e.g. "audio/wav"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def part(self) -> bool:
        """A piece of a larger file the same step also produces (``params["part"]``, e.g. one
        spoken sentence): streamed for early playback; the whole file is the one to show."""
        return self.params.get("part") is not None


@dataclass(frozen=True)
class Progress:
    """Progress of a long step (e.g. denoising steps of text_to_image)."""

    step_id: str
    done: int
    total: int
    label: str = "progress"  # what the step is doing, in the runner's words: "painting"


@dataclass(frozen=True)
class Waiting:
    """The turn waits for the model (a queue of turns ahead of it): ``position`` 1 is next.

    A backend with a turn queue emits it while the turn waits; front ends show *waiting
    (position N)* instead of *running* until the next event arrives."""

    position: int
    step_id: str = ""


def progress_text(event: Progress) -> str:
    """A long step's progress as people see it, e.g. ``painting 3/20``."""
    return f"{event.label} {event.done}/{event.total}"


@dataclass(frozen=True)
class Reply:
    """What the user sees: the final text, images, and the step outputs the trace shows."""

    text: str
    images: tuple[Path, ...] = ()
    shown: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnError:
    """A turn that failed: ``message`` says what happened and what to do."""

    message: str
    step_id: str = ""
    hint: str = ""
    # Set when the model was too busy to take the turn: seconds after which to try again.
    retry_after: float | None = None


@dataclass(frozen=True)
class Done:
    status: Status  # one of TURN_END
    text: str = ""
    duration: float = 0.0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    steps: int = 0


Event = (
    StepStarted
    | Token
    | StepFinished
    | ImageProduced
    | ArtifactProduced
    | Progress
    | Waiting
    | Reply
    | TurnError
    | Done
)
