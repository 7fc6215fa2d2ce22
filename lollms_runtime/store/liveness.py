"""Tell a live writer from a dead one: opening a store never interrupts another process's answer.

Each open ``Store`` holds an exclusive ``flock`` on its own lock file for as long as it lives. The
kernel drops that lock when the process dies, however it dies (``kill -9`` included), so a lock
that can be taken belongs to a dead writer. Where ``fcntl`` is missing (Windows), every other
writer counts as dead: the runtime targets macOS and Linux, and a wrongly interrupted answer is
recoverable while a message stuck in ``running`` forever is not.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

_TOKEN = re.compile(r"^[a-z0-9]{8,64}$")


class WriterLock:
    """This process's claim on the answers it is writing; released on close or on death."""

    def __init__(self, folder: Path, token: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.path = folder / f"{token}.lock"
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        """Release the lock and remove its file."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None


def writer_alive(folder: Path, token: str | None) -> bool:
    """Whether the store instance that wrote ``token`` still runs (in this process or another)."""
    if token is None or not _TOKEN.match(token) or fcntl is None:
        return False
    path = folder / f"{token}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        # We got the lock: its owner is gone. Tidy its file while we hold it.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return False
    finally:
        os.close(fd)


def sweep(folder: Path, keep: str) -> None:
    """Remove the lock files of writers that died (they are left behind by ``kill -9``)."""
    if fcntl is None or not folder.is_dir():
        return
    for lock in folder.glob("*.lock"):
        if lock.stem != keep:
            writer_alive(folder, lock.stem)
