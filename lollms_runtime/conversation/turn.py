"""``Turn``: one running turn as a front end holds it: its ids at once, its events as they come."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..events import Event
from ..recorder import Recording


@dataclass
class Turn:
    """A turn that has started: iterate it for its events (the last one is ``Done``).

    The ids exist before the first event, so a front end can show the discussion and the answer
    at once. ``discussion_id`` and ``answer_id`` are ``None`` for a turn that is not saved.
    Stopping: :meth:`stop`, or ``ConversationService.cancel(turn.id)`` (or the discussion's id)
    from another thread; closing the iterator early stops the turn too, and what the answer
    had so far is saved as ``cancelled``.
    """

    id: str
    events: Iterator[Event]
    cancel: threading.Event
    discussion_id: str | None = None
    user_id: str | None = None  # the user message answered (None when not saved)
    answer_id: str | None = None
    prefix: str = ""  # the answer's text before this turn (Continue); tokens come after it
    recording: Recording | None = None
    _release: Callable[[], None] | None = field(default=None, repr=False)

    def __iter__(self) -> Generator[Event, None, None]:
        return self._guarded()

    @property
    def images(self) -> list[Path]:
        """The files kept with the answer so far (only those the store may serve)."""
        return list(self.recording.images) if self.recording is not None else []

    def stop(self) -> None:
        """Ask the turn to stop; it ends soon with ``Done(status=cancelled)``."""
        self.cancel.set()

    def close(self) -> None:
        """Stop the turn and let it wind down here, whether or not it was ever iterated: the
        answer is saved as ``cancelled`` with its text so far."""
        self.cancel.set()
        for _ in self.events:
            pass
        if self._release is not None:
            self._release()

    def _guarded(self) -> Generator[Event, None, None]:
        try:
            # A plain loop, not ``yield from``: closing this generator must not close the events
            # underneath before they wind down.
            for event in self.events:  # noqa: UP028
                yield event
        except GeneratorExit:
            # The front end let go (Stop in the app, a closed page): let the turn wind down so
            # the recording saves what it has, before the generator goes.
            self.close()
            raise
        finally:
            if self._release is not None:
                self._release()
