"""Serving safety: loopback by default, auth parsing, files only from the allowed folders; and
`lollms list` stays free of gradio."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lollms_runtime.app.server import browser_secret, launch, parse_auth
from lollms_runtime.engine import Engine
from lollms_runtime.runtime import Runtime
from lollms_runtime.store import Store
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

ROOT = Path(__file__).resolve().parent.parent


def test_parse_auth() -> None:
    assert parse_auth("ann:secret") == ("ann", "secret")
    assert parse_auth(None) is None
    with pytest.raises(ValueError, match="--auth expects USER:PASSWORD, got 'ann'"):
        parse_auth("ann")


def test_listing_does_not_import_gradio() -> None:
    code = (
        "import sys; from lollms_runtime.cli import main; main(['list']); "
        "print('gradio' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip().splitlines()[-1] == "False"


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_serves_only_allowed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    runtime = Runtime(personalities=[ROOT / "personalities"])
    runtime.engine = Engine(
        runtime.host,
        ScriptedTextBackend(),
        ScriptedImageBackend(),
        resolve_personality=runtime.catalog.get,
    )
    store = Store(tmp_path / "home" / "discussions.sqlite3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    did = store.create_discussion("assistant").id
    artifact = store.artifact_dir(did) / "ok.txt"
    artifact.write_text("yes")
    demo = launch(runtime, store, port=port, block=False)
    try:
        assert demo.server_name == "127.0.0.1"
        base = f"http://127.0.0.1:{port}/gradio_api/file="
        assert _status(base + str(artifact)) == 200
        avatar = runtime.catalog.get("assistant").avatar
        assert avatar is not None and _status(base + str(avatar)) == 200
        assert _status(base + str(secret)) in (403, 404)
        assert _status(base + str(store.path)) in (403, 404)
    finally:
        demo.close()
        store.close()


def test_the_browser_secret_is_kept_across_restarts_and_private(tmp_path: Path) -> None:
    first = browser_secret(tmp_path)
    assert len(first) >= 16
    assert browser_secret(tmp_path) == first  # a restart reads what the page saved
    assert (tmp_path / "app-secret").stat().st_mode & 0o077 == 0
    (tmp_path / "app-secret").write_text("short")  # damaged: a new one, kept from then on
    fresh = browser_secret(tmp_path)
    assert fresh != "short" and browser_secret(tmp_path) == fresh
    missing = tmp_path / "no-such-folder"
    assert len(browser_secret(missing)) >= 16  # nowhere to keep it: one for this start
