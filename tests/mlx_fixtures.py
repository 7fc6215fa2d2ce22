"""Shared fixtures for the MLX tests: one session LOLLMS_HOME and one loaded default model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mlx_home(session_models_dir: Path) -> Iterator[Path]:
    """A session models folder (LOLLMS_MODELS_DIR) so the GGUF conversion happens once per run,
    whatever LOLLMS_HOME each test uses."""
    models = session_models_dir
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOLLMS_MODELS_DIR", str(models))
        yield models


@pytest.fixture(scope="session")
def mlx_backend(mlx_home: Path) -> object:
    """The default model's shared backend (converted from the embedded GGUF, loaded once)."""
    from lollms_runtime.mlx.backend import shared_backend

    return shared_backend("default")
