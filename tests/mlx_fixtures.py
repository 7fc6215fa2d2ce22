"""Shared fixtures for the MLX tests: one session LOLLMS_HOME and one loaded default model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mlx_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A session LOLLMS_HOME so the GGUF conversion happens once per test run."""
    home = tmp_path_factory.mktemp("lollms-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOLLMS_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def mlx_backend(mlx_home: Path) -> object:
    """The default model's shared backend (converted from the embedded GGUF, loaded once)."""
    from lollms_runtime.mlx.backend import shared_backend

    return shared_backend("default")
