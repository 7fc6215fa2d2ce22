"""The store under hostile files and hard conditions: bounded imports, exports that do not pile
up, two processes on one discussion, and a full disk."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lollms_runtime.conversation import ConversationService
from lollms_runtime.conversation.service import EXPORT_TTL_S
from lollms_runtime.store import AnswerInProgress, ImportFormatError, Store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def service(tmp_path: Path) -> ConversationService:
    return ConversationService(None, Store(tmp_path / "d.sqlite3"))


def _export(service: ConversationService) -> dict[str, object]:
    d = service.new("assistant")
    service.store.add_message(d.id, "user", "hello")
    service.store.add_message(d.id, "assistant", "hi")
    return service.export_json(d.id)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.replace('"created_at": ', '"created_at": NaN, "x": ', 1), "NaN is not a JSON"),
        (lambda t: t.replace('"created_at": ', '"created_at": Infinity, "x": ', 1), "Infinity"),
        (lambda t: t.replace('"created_at": ', '"created_at": 1e999, "x": ', 1), "too large"),
        (lambda t: '{"a": ' * 100 + "1" + "}" * 100, "nests deeper than 64 levels"),
        (lambda t: "[" * 200_000 + "]" * 200_000, "nests deeper than 64 levels"),
        (lambda t: "\xff\xfe" + t, "not valid JSON"),
        (lambda t: t[:50], "not valid JSON"),
    ],
)
def test_import_refuses_unsafe_json(service: ConversationService, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    text = mutate(json.dumps(_export(service)))
    with pytest.raises(ImportFormatError) as info:
        service.import_json(text.encode("utf-8", "surrogatepass"))
    assert str(info.value).startswith("this file cannot be imported: ")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("created_at", 10**400, "created_at: a 401-digit number is out of range"),
        ("created_at", -1e300, "is out of range"),
        ("created_at", "yesterday", "created_at: expected a number, found str"),
    ],
)
def test_import_refuses_numbers_out_of_range(
    service: ConversationService, where: str, value: object, message: str
) -> None:
    data = _export(service)
    data["discussion"][where] = value  # type: ignore[index]
    with pytest.raises(ImportFormatError, match=message):
        service.import_json(json.dumps(data))


def test_step_positions_must_be_whole_numbers(service: ConversationService) -> None:
    data = _export(service)
    messages = data["messages"]
    assert isinstance(messages, list)
    messages[1]["steps"] = [{"kind": "generate", "position": 1.5, "status": "ok"}]
    with pytest.raises(ImportFormatError, match=r"messages\[1\]\.steps\[0\]\.position"):
        service.import_json(json.dumps(data))
    messages[1]["steps"] = [{"kind": "generate", "status": "ok"}]
    with pytest.raises(ImportFormatError, match=r"steps\[0\]\.position: missing"):
        service.import_json(json.dumps(data))


def test_a_valid_export_still_imports(service: ConversationService) -> None:
    data = _export(service)
    new_id = service.import_json(json.dumps(data).encode())
    assert [m.content for m in service.history(new_id)] == ["hello", "hi"]


def test_exports_go_with_the_discussion_and_do_not_pile_up(
    service: ConversationService, tmp_path: Path
) -> None:
    d = service.new("assistant")
    service.store.add_message(d.id, "user", "hello")
    folder = service.store.artifact_dir(d.id) / "exports"
    old = folder / "discussion-old.json"
    folder.mkdir(parents=True)
    old.write_text("{}")
    os.utime(old, (time.time() - EXPORT_TTL_S - 5,) * 2)
    fresh = folder / "discussion-fresh.md"
    fresh.write_text("x")
    md = service.export_file(d.id, "md", folder)
    js = service.export_file(d.id, "json", folder)
    assert md.parent == folder and js.parent == folder
    assert json.loads(js.read_text())["messages"][0]["content"] == "hello"
    assert not old.exists() and fresh.exists()
    service.delete(d.id)
    assert not folder.exists()


WRITER = textwrap.dedent(
    """
    import sys, time
    from lollms_runtime.store import Store
    store = Store(sys.argv[1])
    answer = store.begin_answer(sys.argv[2])
    store.append_answer(answer, "half an ans")
    store.flush()
    print("writing", flush=True)
    sys.stdin.readline()
    store.finish_answer(answer)
    store.close()
    print("done", flush=True)
    """
)


def test_two_processes_cannot_chain_under_an_answer_being_written(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    store = Store(path)
    d = store.create_discussion("assistant")
    store.add_message(d.id, "user", "hello")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), d.id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        with pytest.raises(AnswerInProgress) as info:
            store.add_message(d.id, "user", "are you there?")
        assert str(info.value) == (
            "the answer before this message is still being written (in another window or "
            "process): wait for it to finish or stop it, then send again"
        )
        assert [m.role for m in store.thread(d.id)] == ["user", "assistant"]
        assert writer.stdin is not None
        writer.stdin.write("\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "done"
    finally:
        writer.kill()
        writer.wait()
    store.add_message(d.id, "user", "are you there?")  # the answer is finished now
    assert [m.role for m in store.thread(d.id)] == ["user", "assistant", "user"]
    store.close()


FULL_DISK = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from lollms_runtime.conversation import ConversationService
    from lollms_runtime.engine import Engine
    from lollms_runtime.events import Done, TurnError
    from lollms_runtime.runtime import Runtime
    from lollms_runtime.store import Store
    from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

    home = Path(sys.argv[1])
    store = Store(home / "d.sqlite3")
    runtime = Runtime(personalities=[Path(sys.argv[2])])
    long = " ".join(f"word{i}" + "x" * 200 for i in range(3000))
    text = ScriptedTextBackend("a short first answer", long)
    runtime.engine = Engine(
        runtime.host, text, ScriptedImageBackend(), resolve_personality=runtime.catalog.get
    )
    service = ConversationService(runtime, store)
    p = runtime.catalog.get("assistant")
    turn = service.send(p, "hello")
    for _ in turn:
        pass
    limit = max(f.stat().st_size for f in home.iterdir() if f.is_file()) + 200_000
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    turn = service.send(p, "tell me everything", discussion_id=turn.discussion_id)
    events = list(turn)
    errors = [e for e in events if isinstance(e, TurnError)]
    print("ERROR", errors[0].message if errors else None)
    print("DONE", events[-1].status if isinstance(events[-1], Done) else events[-1])
    store.close()
    print("CLOSED")
    """
)


def test_a_full_disk_ends_the_turn_with_a_message_and_keeps_what_was_saved(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(home), str(ROOT / "personalities")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["ERROR"].startswith("the discussion store ")
    assert "the disk is full or a file-size limit was reached" in lines["ERROR"]
    assert lines["DONE"] == "failed"
    assert "CLOSED" in out.stdout
    with sqlite3.connect(home / "d.sqlite3") as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = Store(home / "d.sqlite3")  # a new process: the unfinished answer is interrupted
    (d,) = store.list_discussions()
    thread = store.thread(d.id)
    assert [m.content for m in thread[:3]] == [
        "hello",
        "a short first answer",
        "tell me everything",
    ]
    answer = thread[3]
    assert answer.status in ("interrupted", "failed")
    assert answer.content.startswith("word0xxx") and len(answer.content) > 1000
    store.close()
