"""An answer being written survives its process: killed mid-answer, it is kept as interrupted."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lollms_runtime.store import Store

# The writer: opens the store, starts an answer and streams numbered words into it forever.
WRITER = textwrap.dedent(
    """
    import sys, time
    from lollms_runtime.store import Store

    store = Store(sys.argv[1], flush_interval=0.05)
    d = store.create_discussion("gpt_for_art", title="crash test")
    store.add_message(d.id, "user", "Imagine something cool.")
    answer = store.begin_answer(d.id, model="smollm2")
    step = store.add_step(answer, "generate", step_id="description")
    print(d.id, answer, flush=True)
    i = 0
    while True:
        store.append_answer(answer, f"w{i} ")
        i += 1
        time.sleep(0.002)
    """
)


def _content(db: Path, message_id: str) -> tuple[str, str]:
    conn = sqlite3.connect(db, timeout=10)
    row = conn.execute(
        "SELECT content, status FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    conn.close()
    return (row[0], row[1]) if row else ("", "")


def _wait_for(predicate: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _start_writer(db: Path) -> tuple[subprocess.Popen[str], str, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        pytest.fail(f"the writer process died before starting its answer (exit {proc.returncode})")
    discussion_id, answer_id = line.split()
    return proc, discussion_id, answer_id


def _words(text: str) -> list[str]:
    return text.split()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs kill -9")
def test_process_killed_mid_answer_leaves_an_interrupted_message(tmp_path: Path) -> None:
    db = tmp_path / "discussions.sqlite3"
    proc, discussion_id, answer_id = _start_writer(db)
    try:
        _wait_for(lambda: len(_words(_content(db, answer_id)[0])) >= 50, "streamed text")
        # Another store opening the file while the writer lives must leave its answer alone.
        with Store(db) as bystander:
            assert bystander.get_message(answer_id).status == "running"
            assert bystander.recover_interrupted() == []
        seen_before_kill = _content(db, answer_id)[0]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    with Store(db) as store:
        message = store.get_message(answer_id)
        assert message.status == "interrupted"
        assert message.model == "smollm2"
        words = _words(message.content)
        # Everything written before the kill is there, in order, with nothing made up.
        assert len(words) >= len(_words(seen_before_kill))
        assert words == [f"w{i}" for i in range(len(words))]
        assert store.thread(discussion_id)[-1].id == answer_id
        assert [s.status for s in store.steps(answer_id)] == ["interrupted"]
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store._conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert store.list_discussions("w3")[0].id == discussion_id
        # The dead writer's lock file was tidied away; this store's own remains until close.
        assert [p.name for p in (db.parent / ".writers").iterdir()] == [
            f"{store._writer.token}.lock"
        ]


def test_streamed_text_reaches_the_file_without_further_appends(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite3"
    with Store(db, flush_interval=0.05) as store:
        d = store.create_discussion("p")
        answer = store.begin_answer(d.id)
        store.append_answer(answer, "first ")  # written at once: the first text after a pause
        store.append_answer(answer, "second")  # waits for the interval, then a timer writes it
        _wait_for(lambda: _content(db, answer)[0] == "first second", "the timer's write")
        assert store.get_message(answer).status == "running"


def test_appends_are_batched(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite3"
    with Store(db, flush_interval=60.0, flush_chars=100) as store:
        d = store.create_discussion("p")
        answer = store.begin_answer(d.id)
        store.append_answer(answer, "x")  # first text is written at once
        for _ in range(49):
            store.append_answer(answer, "y")
        # Not yet on disk (the interval is long, 49 characters < 100) but visible through the store.
        assert _content(db, answer)[0] == "x"
        assert store.get_message(answer).content == "x" + "y" * 49
        for _ in range(51):
            store.append_answer(answer, "z")
        assert _content(db, answer)[0] == "x" + "y" * 49 + "z" * 51
        store.append_answer(answer, "tail")
        store.flush()
        assert _content(db, answer)[0].endswith("ztail")


def test_two_stores_in_one_process_do_not_interrupt_each_other(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite3"
    with Store(db) as web:
        d = web.create_discussion("p")
        answer = web.begin_answer(d.id)
        web.append_answer(answer, "streaming")
        with Store(db) as cli:
            assert cli.get_message(answer).status == "running"
        web.append_answer(answer, " on")
        assert web.finish_answer(answer).content == "streaming on"


def test_lock_files_of_dead_writers_are_swept(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite3"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys\nfrom lollms_runtime.store import Store\n"
            "Store(sys.argv[1])\nos._exit(0)",
            str(db),
        ],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        check=True,
    )
    assert proc.returncode == 0
    writers = db.parent / ".writers"
    assert len(list(writers.iterdir())) == 1  # left behind: the process never closed its store
    with Store(db) as store:
        assert [p.stem for p in writers.iterdir()] == [store._writer.token]
    assert list(writers.iterdir()) == []


def test_a_busy_file_delays_streamed_text_but_does_not_lose_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "d.sqlite3"
    with Store(db, flush_interval=0.05, busy_timeout_ms=50) as store:
        d = store.create_discussion("p")
        answer = store.begin_answer(d.id)
        store.append_answer(answer, "before ")
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process writing for a long time
        time.sleep(0.06)
        store.append_answer(answer, "during")  # cannot be written now; must not raise
        assert store.get_message(answer).content == "before during"
        assert "could not save streamed text yet: database is locked" in caplog.text
        blocker.execute("ROLLBACK")
        blocker.close()
        _wait_for(lambda: _content(db, answer)[0] == "before during", "the retried write")
        assert store.finish_answer(answer).content == "before during"
