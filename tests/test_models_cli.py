"""`lollms models`: local text and image models are listed; `pull` routes to the right downloader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lollms_runtime.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path))
    monkeypatch.setenv("LOLLMS_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path


def test_lists_embedded_converted_and_image_models(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lollms_runtime.image.tiny import build_tiny_model

    text = home / "models" / "my-llm"
    text.mkdir(parents=True)
    (text / "config.json").write_text("{}")
    (text / "model.safetensors").write_bytes(b"\0" * 10)
    build_tiny_model(home / "models" / "acme--tiny-sd")
    assert main(["models", "--json"]) == 0
    listed = {(m["kind"], m["id"]) for m in json.loads(capsys.readouterr().out)}
    assert ("text", "default") in listed
    assert ("text", "my-llm") in listed
    assert ("image", "acme/tiny-sd") in listed
    assert ("text", "acme--tiny-sd") not in listed  # a diffusion folder is not a text model


def test_a_converted_gguf_is_listed_once_under_its_source(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The folder a GGUF was converted into is the same model: the picker of the app and
    `lollms models` once listed the embedded model twice ("default" and
    "SmolLM2-135M-Instruct.Q4_1-<hash>")."""
    from lollms_runtime.mlx.gguf_convert import converted_folder
    from lollms_runtime.mlx.models import embedded_gguf

    pulled = home / "hub" / "models--acme--tiny-GGUF" / "snapshots" / "abc" / "tiny.Q8_0.gguf"
    pulled.parent.mkdir(parents=True)
    pulled.write_bytes(b"GGUF" + b"\0" * 60)
    (home / "hub" / "models--acme--tiny-GGUF" / "refs").mkdir()
    (home / "hub" / "models--acme--tiny-GGUF" / "refs" / "main").write_text("abc")
    for gguf in (embedded_gguf(), pulled):
        folder = converted_folder(gguf)
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"\0" * 10)
    other = home / "models" / "my-llm"  # converted from a file given by path: listed
    other.mkdir()
    (other / "config.json").write_text("{}")
    (other / "model.safetensors").write_bytes(b"\0" * 10)
    assert main(["models", "--json"]) == 0
    texts = [m["id"] for m in json.loads(capsys.readouterr().out) if m["kind"] == "text"]
    assert texts == ["default", "my-llm", "acme/tiny-GGUF/tiny.Q8_0.gguf"]


def test_pull_routes_image_and_text_repos(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import huggingface_hub

    calls: list[tuple[str, Any]] = []
    repos = {
        "acme/painter": [
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
        ],
        "acme/talker": ["config.json", "model.safetensors", "tokenizer.json"],
    }

    def list_repo_files(self: Any, repo_id: str, **_: Any) -> list[str]:
        return repos[repo_id]

    def snapshot_download(repo_id: str, allow_patterns: Any = None, **_: Any) -> str:
        calls.append((repo_id, allow_patterns))
        folder = home / "hub" / repo_id.replace("/", "--")
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", list_repo_files)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert main(["models", "pull", "acme/talker"]) == 0
    assert main(["models", "pull", "acme/painter"]) == 0
    assert [c[0] for c in calls] == ["acme/talker", "acme/painter"]
    assert "*.safetensors" in calls[0][1] and not any(p.endswith(".py") for p in calls[0][1])
    assert "model_index.json" in calls[1][1]
    assert "acme/painter:" in capsys.readouterr().out


def test_pull_without_an_id_is_a_clear_error(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "pull"]) == 1
    assert "give the model to fetch" in capsys.readouterr().err
