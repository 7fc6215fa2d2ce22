"""Hugging Face ids: downloaded through huggingface_hub from a local stand-in hub, then cached.

The stand-in is a real HTTP server on 127.0.0.1 speaking the few hub endpoints snapshot_download
uses; the client runs in a subprocess because huggingface_hub reads HF_ENDPOINT at import time.
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
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_handler(folder: Path, hits: list[str]) -> type[BaseHTTPRequestHandler]:
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}

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
            if path == f"/api/models/{REPO}/revision/main":
                info = {"id": REPO, "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]}
                self._send(json.dumps(info).encode(), "application/json", {}, head)
            elif path.startswith(f"/api/models/{REPO}/tree/"):
                tree = [
                    {"type": "file", "path": n, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                    for n, b in files.items()
                ]
                self._send(json.dumps(tree).encode(), "application/json", {}, head)
            elif path.startswith(f"/{REPO}/resolve/"):
                name = path.rsplit("/", 1)[1]
                if name not in files:
                    self.send_error(404)
                    return
                body = files[name]
                headers = {"ETag": f'"{hashlib.sha1(body).hexdigest()}"', "X-Repo-Commit": COMMIT}
                self._send(body, "application/octet-stream", headers, head)
            else:
                self.send_error(404)

        def do_GET(self) -> None:
            self._route(head=False)

        def do_HEAD(self) -> None:
            self._route(head=True)

    return Hub


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A stand-in hub serving a tiny random llama converted to an MLX folder."""
    from test_mlx_gguf_families import tiny_model, write_gguf

    from lollms_runtime.mlx.gguf_convert import convert_gguf

    model, config = tiny_model("llama")
    write_gguf(tmp_path / "tiny.gguf", "llama", model, config)
    folder = tmp_path / "served"
    convert_gguf(tmp_path / "tiny.gguf", folder)
    (folder / "pytorch_model.bin").write_bytes(b"not for mlx")  # must not be downloaded
    hits: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(folder, hits))
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


def run_client(tmp_path: Path, endpoint: str, offline: str) -> subprocess.CompletedProcess[str]:
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
        [sys.executable, "-c", CLIENT, REPO],
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
