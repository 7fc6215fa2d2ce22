"""Where the runtime keeps its files: ``$LOLLMS_HOME`` (default ``~/.lollms-runtime``)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import LollmsError


def home_path() -> Path:
    """Where the runtime's home folder is, without creating it (for reading a file there)."""
    raw = os.environ.get("LOLLMS_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".lollms-runtime"


def home() -> Path:
    """The runtime's home folder, created on first use."""
    path = home_path()
    _make_folder(path, "LOLLMS_HOME")
    return path


def _make_folder(path: Path, variable: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise LollmsError(
            f"cannot use {path} as the runtime's folder ({reason}): set {variable} to a folder "
            "you can write to"
        ) from None


def models_dir() -> Path:
    """Converted models (GGUF files converted to MLX folders): ``$LOLLMS_MODELS_DIR``, by default
    ``$LOLLMS_HOME/models`` (set it to share converted models between homes)."""
    raw = os.environ.get("LOLLMS_MODELS_DIR")
    path = Path(raw).expanduser() if raw else home() / "models"
    _make_folder(path, "LOLLMS_MODELS_DIR")
    return path


def database_path() -> Path:
    """The SQLite file holding discussions."""
    return home() / "discussions.sqlite3"


def artifacts_dir() -> Path:
    """Images and other files produced by turns, one sub-folder per discussion."""
    path = home() / "artifacts"
    _make_folder(path, "LOLLMS_HOME")
    return path
