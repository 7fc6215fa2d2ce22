"""Shared fixtures: an isolated environment per test, a fresh plugin host, the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from mlx_fixtures import mlx_backend, mlx_home  # the real-model session fixtures

from lollms_runtime.plugins import PluginHost, get_plugin_manager

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_PLUGINS = REPO_ROOT / "tests" / "plugins"


@pytest.fixture(scope="session")
def session_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Converted models, shared by the whole run: the embedded GGUF is converted once."""
    return tmp_path_factory.mktemp("lollms-models")


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session_models_dir: Path
) -> None:
    """No test reads the user's home, personality path or plugin allow-list."""
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "lollms-home"))
    monkeypatch.setenv("LOLLMS_MODELS_DIR", str(session_models_dir))
    monkeypatch.delenv("LOLLMS_PERSONALITIES_PATH", raising=False)
    monkeypatch.delenv("LOLLMS_LOAD_PLUGINS", raising=False)


@pytest.fixture
def plugin_host() -> PluginHost:
    """A fresh host with only the built-in plugins (installed entry points are not loaded)."""
    return PluginHost(get_plugin_manager(load_entry_points=False))


def run_lollms(
    *args: str,
    pythonpath: Iterable[str | Path] = (),
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``lollms ARGS`` in a fresh interpreter, with ``pythonpath`` before this checkout."""
    full = {**os.environ, **(env or {})}
    full["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), str(REPO_ROOT)])
    return subprocess.run(
        [sys.executable, "-m", "lollms_runtime.cli", *args],
        env=full,
        cwd=cwd or REPO_ROOT,  # `-m` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        timeout=120,
    )


def pip_install_target(packages: Sequence[Path], target: Path) -> None:
    """Install local packages into ``target`` (a folder to put on PYTHONPATH), without network."""
    try:
        import hatchling  # noqa: F401  (the test packages build with it, without isolation)
    except ImportError:
        pytest.fail("hatchling is missing from the environment: pip install hatchling")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    command += ["--no-build-isolation", "--no-index", "--target", str(target)]
    done = subprocess.run(
        [*command, *map(str, packages)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="session")
def test_plugins_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the test plugins of tests/plugins, installed through their entry points."""
    target = tmp_path_factory.mktemp("plugins-site")
    pip_install_target(sorted(p for p in TEST_PLUGINS.iterdir() if p.is_dir()), target)
    return target


__all__ = ["mlx_backend", "mlx_home"]
