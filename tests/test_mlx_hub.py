"""Hugging Face ids: downloaded through huggingface_hub from a local stand-in hub, then cached.

The stand-in is a real HTTP server on 127.0.0.1 speaking the few hub endpoints snapshot_download,
list_repo_files and hf_hub_download use; the client runs in a subprocess because huggingface_hub
reads HF_ENDPOINT at import time. It serves an MLX repo and a GGUF repo (several quantizations).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPO = "lollms-test/tiny-llama"
GGUF_REPO = "lollms-test/tiny-llama-GGUF"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_handler(repos: dict[str, Path], hits: list[str]) -> type[BaseHTTPRequestHandler]:
    served = {
        repo: {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        for repo, folder in repos.items()
    }

    class Hub(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, body: bytes, content_type: str, extra: dict[str, str], head: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _route(self, head: bool) -> None:
            path = self.path.split("?", 1)[0]
            hits.append(f"{self.command} {path}")
            for repo, files in served.items():
                if path == f"/api/models/{repo}/revision/main":
                    siblings = [{"rfilename": n} for n in files]
                    info = {"id": repo, "sha": COMMIT, "siblings": siblings}
                    self._send(json.dumps(info).encode(), "application/json", {}, head)
                    return
                if path.startswith(f"/api/models/{repo}/tree/"):
                    tree = [
                        {"type": "file", "path": n, "size": len(b), "oid": sha1(b)}
                        for n, b in files.items()
                    ]
                    self._send(json.dumps(tree).encode(), "application/json", {}, head)
                    return
                if path.startswith(f"/{repo}/resolve/"):
                    name = path.rsplit("/", 1)[1]
                    if name not in files:
                        break
                    body = files[name]
                    headers = {"ETag": f'"{sha1(body)}"', "X-Repo-Commit": COMMIT}
                    self._send(body, "application/octet-stream", headers, head)
                    return
            self.send_error(404)

        def do_GET(self) -> None:
            self._route(head=False)

        def do_HEAD(self) -> None:
            self._route(head=True)

    return Hub


def sha1(body: bytes) -> str:
    return hashlib.sha1(body).hexdigest()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A stand-in hub serving a tiny random llama as an MLX folder and as GGUF files."""
    import gguf
    from test_mlx_gguf_families import tiny_model, write_gguf

    from lollms_runtime.mlx.gguf_convert import convert_gguf

    model, config = tiny_model("llama")
    ggufs = tmp_path / "served-gguf"
    ggufs.mkdir()
    q8 = gguf.GGMLQuantizationType.Q8_0
    write_gguf(ggufs / "tiny-llama-Q8_0.gguf", "llama", model, config, q8)
    f16 = gguf.GGMLQuantizationType.F16
    write_gguf(ggufs / "tiny-llama-F16.gguf", "llama", model, config, f16)
    # Preferred over Q8_0 by name, but shards and vision projectors are never picked.
    (ggufs / "tiny-llama-Q4_0-00001-of-00002.gguf").write_bytes(b"shard one")
    (ggufs / "tiny-llama-Q4_0-00002-of-00002.gguf").write_bytes(b"shard two")
    (ggufs / "mmproj-tiny-llama-Q4_0.gguf").write_bytes(b"vision projector")
    (ggufs / "README.md").write_text("tiny llama GGUF")
    folder = tmp_path / "served"
    convert_gguf(ggufs / "tiny-llama-F16.gguf", folder)
    (folder / "pytorch_model.bin").write_bytes(b"not for mlx")  # must not be downloaded
    hits: list[str] = []
    handler = make_handler({REPO: folder, GGUF_REPO: ggufs}, hits)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


CLIENT = """
import sys
from lollms_runtime.mlx.models import load_model
loaded = load_model(sys.argv[1], "quantized")
print(loaded.folder)
print(sorted(p.name for p in loaded.folder.iterdir()))
print(loaded.tokenizer.encode("Hello world", add_special_tokens=False))
"""


def run_client(
    tmp_path: Path, endpoint: str, offline: str, *args: str, code: str = CLIENT
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_ENDPOINT": endpoint,
        "HF_HUB_OFFLINE": offline,
        "HF_HOME": str(tmp_path / "hf"),
        "LOLLMS_HOME": str(tmp_path / "home"),
        "HF_HUB_DISABLE_XET": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", code, *(args or (REPO,))],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=ROOT,
    )


def test_hub_model_downloads_once_then_loads_offline(
    tmp_path: Path, hub: tuple[str, list[str]]
) -> None:
    endpoint, hits = hub
    first = run_client(tmp_path, endpoint, "0")
    assert first.returncode == 0, first.stderr
    folder, names, ids = first.stdout.strip().splitlines()[-3:]
    assert Path(folder).is_relative_to(tmp_path / "hf")
    assert "model.safetensors" in names and "config.json" in names
    assert "pytorch_model.bin" not in names  # only what mlx-lm can use is fetched
    assert ids == "[19556, 905]"
    assert any(hit.startswith("GET /lollms-test/tiny-llama/resolve/") for hit in hits)

    hits.clear()
    again = run_client(tmp_path, endpoint, "1")  # offline: served from the local cache
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-3] == folder
    assert hits == []

    missing = subprocess.run(
        [sys.executable, "-c", CLIENT, "lollms-test/never-downloaded"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(tmp_path / "hf"),
            "LOLLMS_HOME": str(tmp_path / "home"),
        },
        timeout=180,
        cwd=ROOT,
    )
    assert missing.returncode != 0
    assert "lollms models pull lollms-test/never-downloaded" in missing.stderr


GGUF_CLIENT = """
import sys
from lollms_runtime.backends.base import ChatMessage, GenerationRequest, Sampling
from lollms_runtime.mlx.backend import shared_backend
backend = shared_backend(sys.argv[1], "quantized")
request = GenerationRequest([ChatMessage("user", "Hi")], Sampling(temperature=0, max_tokens=3))
chunks = list(backend.stream(request))
print(backend.loaded.folder)
print(sum(1 for c in chunks if c.token is not None))
"""
CLI = "import sys; from lollms_runtime.cli import main; sys.exit(main(sys.argv[1:]))"


def resolves(hits: list[str]) -> list[str]:
    return sorted(h.rsplit("/", 1)[1] for h in hits if h.startswith(f"GET /{GGUF_REPO}/resolve/"))


def test_gguf_repo_downloads_one_quantization_then_loads_offline(
    tmp_path: Path, hub: tuple[str, list[str]]
) -> None:
    endpoint, hits = hub
    first = run_client(tmp_path, endpoint, "0", GGUF_REPO, code=GGUF_CLIENT)
    assert first.returncode == 0, first.stderr
    folder, tokens = first.stdout.strip().splitlines()[-2:]
    assert Path(folder).name.startswith("tiny-llama-Q8_0-")  # converted from the chosen file
    assert int(tokens) > 0
    assert resolves(hits) == ["tiny-llama-Q8_0.gguf"]  # never every quantization

    hits.clear()
    pulled = run_client(tmp_path, endpoint, "0", "models", "pull", f"{GGUF_REPO}:f16", code=CLI)
    assert pulled.returncode == 0, pulled.stderr
    path = pulled.stdout.strip().splitlines()[-1].split(": ", 1)[1]
    assert Path(path).name == "tiny-llama-F16.gguf" and Path(path).is_relative_to(tmp_path / "hf")
    assert resolves(hits) == ["tiny-llama-F16.gguf"]

    unknown = run_client(tmp_path, endpoint, "0", "models", "pull", f"{GGUF_REPO}:Q2_K", code=CLI)
    assert unknown.returncode == 1
    assert "available quantizations: F16, Q4_0 (split), Q8_0" in unknown.stderr

    hits.clear()
    again = run_client(tmp_path, endpoint, "1", GGUF_REPO, code=GGUF_CLIENT)  # from the cache
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-2] == folder
    assert hits == []

    listed = run_client(tmp_path, endpoint, "1", "models", "--json", code=CLI)
    assert listed.returncode == 0, listed.stderr
    ids = {m["id"]: m["source"] for m in json.loads(listed.stdout)}
    assert ids[f"{GGUF_REPO}/tiny-llama-Q8_0.gguf"] == "hf-cache gguf"
    # Its converted folder is the same model: listed once, as the file pulled (once listed twice).
    assert Path(folder).name not in ids

    missing = run_client(tmp_path, endpoint, "1", f"{GGUF_REPO}:Q6_K", code=GGUF_CLIENT)
    assert missing.returncode != 0
    assert f"lollms models pull {GGUF_REPO}:Q6_K" in missing.stderr
