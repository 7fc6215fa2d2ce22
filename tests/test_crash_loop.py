"""Kill -9 the API server at random points of a saved turn, many times: the database stays
intact, every message saved before stays as it was, and the answer cut short is kept as
*interrupted* with the text it had (a prefix of the whole answer)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lollms_runtime.store import Store

ROOT = Path(__file__).resolve().parent.parent
ANSWER = " ".join(f"w{i}" for i in range(300))
KILLS = 8


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(home: Path, port: int) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "api_server.py"), str(home), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1):
                return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise AssertionError("the API server did not start")


def _send(port: int, body: dict[str, object]) -> None:
    """Start a streamed turn and read a little of it; the server is killed meanwhile."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps({**body, "stream": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            for _ in response:
                pass
    except OSError:
        pass  # the kill cut the stream


def _rows(db: Path) -> dict[str, tuple[str, str, str]]:
    with sqlite3.connect(db, timeout=10) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {
            row[0]: (row[1], row[2], row[3])
            for row in c.execute("SELECT id, role, content, status FROM messages")
        }


def test_killed_server_keeps_every_message_and_the_interrupted_answer(tmp_path: Path) -> None:
    import threading

    rng = random.Random(1234)
    home = tmp_path / "home"
    home.mkdir()
    db = home / "discussions.sqlite3"
    before: dict[str, tuple[str, str, str]] = {}
    discussion: str | None = None
    statuses = []
    for round_ in range(KILLS):
        port = _port()
        server = _start(home, port)
        body: dict[str, object] = {
            "model": "assistant",
            "messages": [{"role": "user", "content": f"message {round_}"}],
            "discussion": discussion or "new",
        }
        sender = threading.Thread(target=_send, args=(port, body), daemon=True)
        sender.start()
        time.sleep(rng.uniform(0.0, 2.0))  # before the answer, while it streams, or after it
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        sender.join(timeout=30)
        rows = _rows(db)
        # Nothing saved before this round changed, except answers the store recovered.
        for mid, (role, content, _status) in before.items():
            assert rows[mid][:2] == (role, content), f"round {round_}: {mid} changed"
        store = Store(db)  # opening marks the killed writer's answer interrupted
        try:
            if discussion is None:
                found = store.list_discussions()
                if not found:
                    continue  # killed before the discussion was created: nothing to check
                discussion = found[0].id
            thread = store.thread(discussion)
            last = thread[-1]
            if last.role == "assistant":
                assert last.status in ("interrupted", "ok"), last.status
                assert ANSWER.startswith(last.content), last.content[-40:]
                statuses.append(last.status)
        finally:
            store.close()
        before = _rows(db)
        assert all(status != "running" for _r, _c, status in before.values())
    assert "interrupted" in statuses, statuses  # the kills did land mid-answer
