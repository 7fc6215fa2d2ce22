"""Stop strings for streamed text: cut at the first stop and never emit any part of one."""

from __future__ import annotations

from collections.abc import Sequence


class StopFilter:
    """Feed text pieces, get back what is safe to show; text that may start a stop is held back."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that can be emitted now; sets ``stopped`` when a stop string was found."""
        if self.stopped:
            return ""
        self._pending += piece
        if not self.stops:
            out, self._pending = self._pending, ""
            return out
        # Everything before the pending text was checked not to start a stop, so a stop can only
        # begin inside the pending text.
        hits = [i for i in (self._pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            out, self._pending = self._pending[: min(hits)], ""
            return out
        keep = self._partial_length()
        cut = len(self._pending) - keep
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out

    def flush(self) -> str:
        """The held-back text, at the end of a generation that did not stop on a stop string."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out

    def _partial_length(self) -> int:
        """Length of the longest suffix of the pending text that is a proper prefix of a stop."""
        text = self._pending
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
