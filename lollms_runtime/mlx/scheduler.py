"""Admission of turns to one model: a bounded number running, a bounded fair queue waiting.

A *turn* holds a slot from admission to release; every generation and model-judged choice it
makes runs in the shared batch (:mod:`.batching`) under that slot. Past ``max_running`` turns,
newcomers wait in the queue and are told their position; past ``max_waiting`` waiting turns, a
newcomer is refused at once with :class:`~lollms_runtime.backends.base.BackendBusy` (an API maps it
to HTTP 503 with ``Retry-After``; the app shows its message).

Fairness: when a slot frees, the waiting turn whose owner (a discussion, a user) has the fewest
running turns goes first, oldest first among equals; so one discussion firing many requests cannot
starve the others. Nothing here imports mlx: the logic is unit-tested without a model.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..backends.base import BackendBusy

WaitingCallback = Callable[[int], None]  # called with the 1-based position while a turn waits

# How often a waiting turn looks at its cancel event (seconds).
_POLL = 0.05


@dataclass(eq=False)
class Slot:
    """One admitted (or waiting) turn."""

    owner: str
    seq: int
    queue: TurnQueue
    admitted: bool = False
    released: bool = False
    started: float = field(default_factory=time.monotonic)


class Cancelled(Exception):
    """The turn was cancelled while it waited for a slot (it never ran)."""


class TurnQueue:
    """Admits at most ``max_running`` turns at once and lets at most ``max_waiting`` wait."""

    def __init__(self, max_running: int = 8, max_waiting: int = 16, name: str = "model") -> None:
        if max_running < 1 or max_waiting < 0:
            raise ValueError("max_running must be >= 1 and max_waiting >= 0")
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.name = name
        self._cond = threading.Condition()
        self._running: list[Slot] = []
        self._waiting: list[Slot] = []
        self._seq = itertools.count()
        self._durations: list[float] = []  # the last turns' run times, for Retry-After
        self._current: contextvars.ContextVar[Slot | None] = contextvars.ContextVar(
            f"lollms_turn_{id(self)}", default=None
        )

    # -- what callers see --------------------------------------------------------------------

    @property
    def running(self) -> int:
        with self._cond:
            return len(self._running)

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def position(self, slot: Slot) -> int:
        """``slot``'s 1-based place in the admission order; 0 once it runs (or left)."""
        with self._cond:
            return self._position(slot)

    def retry_after(self) -> float:
        """Seconds a refused caller should wait before trying again (recent turns' mean, 1..60)."""
        with self._cond:
            return self._retry_after()

    @contextmanager
    def turn(
        self,
        owner: str | None = None,
        waiting: WaitingCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Slot]:
        """Hold a slot for the block; calls made in it (same thread or context) share the slot.

        Raises :class:`BackendBusy` when the queue is full and :class:`Cancelled` when ``cancel``
        is set while waiting. A nested ``turn()`` in the same context reuses the outer slot.
        """
        current = self._current.get()
        if current is not None and not current.released:
            yield current
            return
        slot = self.acquire(owner, waiting, cancel)
        token = self._current.set(slot)
        try:
            yield slot
        finally:
            self._current.reset(token)
            self.release(slot)

    def current(self) -> Slot | None:
        """The slot a surrounding :meth:`turn` holds in this context, if any."""
        slot = self._current.get()
        return slot if slot is not None and not slot.released else None

    def acquire(
        self,
        owner: str | None = None,
        waiting: WaitingCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Slot:
        """Block until admitted; see :meth:`turn`. Pair every acquire with :meth:`release`."""
        with self._cond:
            slot = Slot(owner or f"anonymous-{next(self._seq)}", next(self._seq), self)
            if len(self._running) < self.max_running and not self._waiting:
                self._admit(slot)
                return slot
            if len(self._waiting) >= self.max_waiting:
                raise BackendBusy(
                    f"{self.name} is busy: {len(self._running)} turns running and "
                    f"{len(self._waiting)} waiting (the most it takes); try again in a moment",
                    retry_after=self._retry_after(),
                    running=len(self._running),
                    waiting=len(self._waiting),
                )
            self._waiting.append(slot)
        told = 0
        try:
            while True:
                with self._cond:
                    if slot.admitted:
                        return slot
                    position = self._position(slot)
                    if position == told:
                        self._cond.wait(_POLL)
                        if slot.admitted:
                            return slot
                        position = self._position(slot)
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                if position != told and position > 0:
                    told = position
                    if waiting is not None:
                        waiting(position)  # outside the lock: the callback may be slow
        except BaseException:
            with self._cond:
                if slot.admitted:
                    self._release(slot)
                elif slot in self._waiting:
                    self._waiting.remove(slot)
                    self._cond.notify_all()  # positions behind it moved up
            raise

    def release(self, slot: Slot) -> None:
        """Give the slot back; the next waiting turn (fair order) is admitted."""
        with self._cond:
            self._release(slot)

    # -- internals (called with the lock held) ---------------------------------------------

    def _admit(self, slot: Slot) -> None:
        slot.admitted = True
        slot.started = time.monotonic()
        self._running.append(slot)

    def _release(self, slot: Slot) -> None:
        if slot.released:
            return
        slot.released = True
        if slot in self._running:
            self._running.remove(slot)
            self._durations = [*self._durations[-15:], time.monotonic() - slot.started]
        elif slot in self._waiting:
            self._waiting.remove(slot)
        self._promote()
        self._cond.notify_all()

    def _order(self) -> list[Slot]:
        """Waiting turns in the order they will be admitted (fewest running for the owner first)."""
        load: dict[str, int] = {}
        for slot in self._running:
            load[slot.owner] = load.get(slot.owner, 0) + 1
        return sorted(self._waiting, key=lambda s: (load.get(s.owner, 0), s.seq))

    def _promote(self) -> None:
        while self._waiting and len(self._running) < self.max_running:
            chosen = self._order()[0]
            self._waiting.remove(chosen)
            self._admit(chosen)

    def _position(self, slot: Slot) -> int:
        if slot.admitted or slot not in self._waiting:
            return 0
        return self._order().index(slot) + 1

    def _retry_after(self) -> float:
        mean = sum(self._durations) / len(self._durations) if self._durations else 5.0
        return float(min(60, max(1, round(mean))))
