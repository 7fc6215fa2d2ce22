"""The discussion store on real SQLite files: discussions, branches, answers, search, settings."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lollms_runtime.store import NotFoundError, Store, StoreError, UnsafePathError
from lollms_runtime.store.schema import LATEST


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    with Store(tmp_path / "db" / "discussions.sqlite3") as s:
        yield s


def test_default_path_is_under_lollms_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    with Store() as s:
        assert s.path == (tmp_path / "home" / "discussions.sqlite3").resolve()
        assert s.artifacts_root == (tmp_path / "home" / "artifacts").resolve()
        d = s.create_discussion("gpt_for_art")
        assert s.artifact_dir(d.id) == (tmp_path / "home" / "artifacts" / d.id).resolve()


def test_pragmas_wal_foreign_keys_and_schema_version(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST == 4
    conn.close()
    assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000


def test_discussion_title_comes_from_first_user_message(store: Store) -> None:
    d = store.create_discussion("gpt_for_art", model="smollm2")
    assert (d.title, d.personality_id, d.model, d.leaf_id) == ("", "gpt_for_art", "smollm2", None)
    store.add_message(d.id, "system", "You are Artbot.")
    store.add_message(d.id, "user", "\n  Imagine something cool.  \nwith details")
    assert store.get_discussion(d.id).title == "Imagine something cool."
    store.add_message(d.id, "user", "Another question")
    assert store.get_discussion(d.id).title == "Imagine something cool."
    renamed = store.rename_discussion(d.id, "  Cool art ")
    assert renamed.title == "Cool art"
    assert renamed.updated_at >= d.updated_at


def test_messages_chain_under_the_leaf_and_thread_is_root_to_leaf(store: Store) -> None:
    d = store.create_discussion("p")
    system = store.add_message(d.id, "system", "sys")
    user = store.add_message(d.id, "user", "hello", sampling={"temperature": 0.2})
    answer = store.add_message(d.id, "assistant", "hi", model="m1", metadata={"k": [1, 2]})
    assert (system.parent_id, user.parent_id, answer.parent_id) == (None, system.id, user.id)
    assert store.get_discussion(d.id).leaf_id == answer.id
    thread = store.thread(d.id)
    assert [m.content for m in thread] == ["sys", "hello", "hi"]
    assert thread[1].sampling == {"temperature": 0.2}
    assert (thread[2].model, thread[2].metadata, thread[2].status) == (
        "m1",
        {"k": [1, 2]},
        "ok",
    )
    assert [m.content for m in store.thread(d.id, leaf_id=user.id)] == ["sys", "hello"]


def test_edit_and_resend_makes_a_sibling_branch_and_keeps_the_old_one(store: Store) -> None:
    d = store.create_discussion("p")
    q1 = store.add_message(d.id, "user", "first question")
    a1 = store.add_message(d.id, "assistant", "first answer")
    q2 = store.add_message(d.id, "user", "follow-up")
    a2 = store.add_message(d.id, "assistant", "follow-up answer")
    # Edit the follow-up: a new user message under the same parent, and its answer.
    q2b = store.add_message(d.id, "user", "edited follow-up", parent_id=q2.parent_id)
    a2b_id = store.begin_answer(d.id)
    store.append_answer(a2b_id, "edited answer")
    store.finish_answer(a2b_id)
    assert [m.content for m in store.thread(d.id)] == [
        "first question",
        "first answer",
        "edited follow-up",
        "edited answer",
    ]
    assert [m.id for m in store.siblings(q2.id)] == [q2.id, q2b.id]
    assert [m.id for m in store.siblings(q2b.id)] == [q2.id, q2b.id]
    assert [m.id for m in store.children(a1.id)] == [q2.id, q2b.id]
    assert [m.id for m in store.siblings(q1.id)] == [q1.id]
    # Switching to the old sibling shows the old branch down to its own leaf.
    assert store.set_leaf(d.id, q2.id) == a2.id
    assert [m.content for m in store.thread(d.id)] == [
        "first question",
        "first answer",
        "follow-up",
        "follow-up answer",
    ]
    assert store.set_leaf(d.id, q2.id, descend=False) == q2.id
    assert store.thread(d.id)[-1].id == q2.id
    # Regenerate: another answer to the same question is a sibling of the first one.
    store.set_leaf(d.id, a2.id)
    regen = store.begin_answer(d.id, parent_id=q2.id)
    store.finish_answer(regen, content="regenerated")
    assert [m.id for m in store.siblings(a2.id)] == [a2.id, regen]
    assert store.thread(d.id)[-1].content == "regenerated"


def test_branch_links_are_checked(store: Store) -> None:
    d1 = store.create_discussion("p")
    d2 = store.create_discussion("p")
    m1 = store.add_message(d1.id, "user", "in d1")
    with pytest.raises(NotFoundError, match="in discussion"):
        store.add_message(d2.id, "user", "x", parent_id=m1.id)
    with pytest.raises(NotFoundError, match="in discussion"):
        store.set_leaf(d2.id, m1.id)
    with pytest.raises(NotFoundError, match="no discussion"):
        store.add_message("nope", "user", "x")
    with pytest.raises(StoreError, match="unknown role 'bot'"):
        store.add_message(d1.id, "bot", "x")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="use begin_answer"):
        store.add_message(d1.id, "assistant", "x", status="running")


def test_streamed_answer_is_readable_while_generating_and_finishes_with_stats(store: Store) -> None:
    d = store.create_discussion("p")
    store.add_message(d.id, "user", "q")
    answer = store.begin_answer(d.id, model="m", sampling={"temperature": 0.5})
    for word in ["Once ", "upon ", "a ", "time"]:
        store.append_answer(answer, word)
    live = store.get_message(answer)
    assert (live.status, live.content) == ("running", "Once upon a time")
    done = store.finish_answer(answer, stats={"generation_tokens": 4}, metadata={"seed": 1})
    assert (done.status, done.content) == ("ok", "Once upon a time")
    assert done.metadata == {"seed": 1, "stats": {"generation_tokens": 4}}
    assert done.sampling == {"temperature": 0.5}
    with pytest.raises(StoreError, match="call begin_answer"):
        store.append_answer(answer, "more")
    with pytest.raises(StoreError, match="cannot finish as 'running'"):
        store.finish_answer(answer, "running")
    # Continue: reopen the answer and append to it.
    store.continue_answer(answer)
    store.append_answer(answer, ", the end.")
    assert store.finish_answer(answer).content == "Once upon a time, the end."


def test_failed_and_cancelled_answers_keep_error_and_close_running_steps(store: Store) -> None:
    d = store.create_discussion("p")
    failing = store.begin_answer(d.id)
    store.append_answer(failing, "partial")
    step = store.add_step(failing, "generate", step_id="description")
    msg = store.finish_answer(failing, "failed", error="model crashed: out of memory")
    assert (msg.status, msg.content, msg.error) == (
        "failed",
        "partial",
        "model crashed: out of memory",
    )
    assert store.steps(failing)[0].status == "interrupted"
    cancelled = store.begin_answer(d.id)
    store.add_step(cancelled, "generate")
    store.finish_answer(cancelled, "cancelled")
    assert store.steps(cancelled)[0].status == "cancelled"
    assert step.position == 0


def test_steps_are_ordered_and_updated(store: Store) -> None:
    d = store.create_discussion("p")
    answer = store.begin_answer(d.id)
    first = store.add_step(answer, "generate", step_id="description", title="Describe")
    second = store.add_step(answer, "text_to_image", step_id="artwork")
    assert (first.position, second.position, first.status) == (0, 1, "running")
    store.update_step(
        first.n,
        status="ok",
        output={"text": "a red fox", "path": Path("x.png")},
        duration_s=1.25,
        prompt_tokens=30,
        generation_tokens=12,
    )
    store.update_step(second.n, status="failed", error="no image backend: install one")
    steps = store.steps(answer)
    assert [s.step_id for s in steps] == ["description", "artwork"]
    assert steps[0].output == {"text": "a red fox", "path": "x.png"}
    assert (steps[0].duration_s, steps[0].prompt_tokens, steps[0].generation_tokens) == (
        1.25,
        30,
        12,
    )
    assert (steps[1].status, steps[1].error) == ("failed", "no image backend: install one")
    with pytest.raises(StoreError, match="unknown step status 'done'"):
        store.update_step(first.n, status="done")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        store.update_step(10_000, status="ok")


def test_search_matches_titles_and_message_text(store: Store) -> None:
    art = store.create_discussion("gpt_for_art", title="Street art ideas")
    store.add_message(art.id, "user", "Paint a dragon over the café")
    cook = store.create_discussion("chef", title="Dinner")
    store.add_message(cook.id, "user", "A recipe with 100% dark chocolate")
    answer = store.begin_answer(cook.id)
    store.append_answer(answer, "Melt the couverture slowly.")
    store.finish_answer(answer)

    def ids(search: str | None, personality: str | None = None) -> list[str]:
        return [d.id for d in store.list_discussions(search, personality_id=personality)]

    assert ids(None) == [cook.id, art.id]  # most recently updated first
    assert ids("dragon") == [art.id]
    assert ids("DRAG") == [art.id]  # prefix, any case
    assert ids("cafe") == [art.id]  # diacritics folded
    assert ids("street") == [art.id]  # title
    assert ids("couverture") == [cook.id]  # an answer's streamed text
    assert ids("melt slowly") == [cook.id]  # every word must match
    assert ids("melt dragon") == []
    assert ids("100%") == [cook.id]
    assert ids('"unbalanced AND (') == []  # never FTS syntax
    assert ids("dragon", "chef") == []
    assert ids(None, "chef") == [cook.id]
    assert ids("   ") == [cook.id, art.id]
    assert len(store.list_discussions(limit=1)) == 1
    assert [d.id for d in store.list_discussions(limit=1, offset=1)] == [art.id]


def test_search_follows_edits_and_deletes(store: Store) -> None:
    d = store.create_discussion("p", title="Animals")
    m = store.add_message(d.id, "user", "zebra")
    answer = store.begin_answer(d.id)
    store.finish_answer(answer, content="giraffe")
    assert [x.id for x in store.list_discussions("giraffe")] == [d.id]
    store.continue_answer(answer)
    store.finish_answer(answer, content="okapi")
    assert store.list_discussions("giraffe") == []
    assert [x.id for x in store.list_discussions("okapi")] == [d.id]
    store.delete_message(m.id)
    assert store.list_discussions("zebra") == []
    assert store.list_discussions("okapi") == []
    assert (
        store._conn.execute(
            "INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')"
        ).fetchall()
        == []
    )


def test_delete_message_removes_its_subtree_and_moves_the_leaf(store: Store) -> None:
    d = store.create_discussion("p")
    q = store.add_message(d.id, "user", "q")
    a1 = store.add_message(d.id, "assistant", "a1")
    a2 = store.add_message(d.id, "assistant", "a2", parent_id=q.id)
    follow = store.add_message(d.id, "user", "more")
    store.add_step(a2.id, "generate")
    store.delete_message(a2.id)
    for gone in (a2.id, follow.id):
        with pytest.raises(NotFoundError):
            store.get_message(gone)
    assert store.steps(a2.id) == []
    assert [m.id for m in store.thread(d.id)] == [q.id, a1.id]


def test_delete_discussion_cascades_and_removes_its_artifact_folder(store: Store) -> None:
    keep = store.create_discussion("p")
    kept = store.add_message(keep.id, "user", "keep me")
    d = store.create_discussion("p")
    store.add_message(d.id, "user", "q")
    answer = store.begin_answer(d.id)
    store.add_step(answer, "text_to_image")
    image = store.artifact_dir(d.id) / "img.png"
    image.write_bytes(b"png")
    store.add_artifact(answer, image)
    store.save_settings("p", {"paint": True})
    store.delete_discussion(d.id)
    with pytest.raises(NotFoundError):
        store.get_discussion(d.id)
    with pytest.raises(NotFoundError):
        store.get_message(answer)
    assert not image.parent.exists()
    counts = {
        table: store._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in ("discussions", "messages", "steps", "artifacts", "messages_fts")
    }
    assert counts == {
        "discussions": 1,
        "messages": 1,
        "steps": 0,
        "artifacts": 0,
        "messages_fts": 1,
    }
    assert store.get_message(kept.id).content == "keep me"
    assert store.get_settings("p") == {"paint": True}  # settings belong to the personality
    with pytest.raises(NotFoundError):
        store.delete_discussion(d.id)


def test_delete_discussion_with_a_very_long_chain(store: Store) -> None:
    # A cascade down parent links would recurse once per message (SQLite caps that at 1000).
    d = store.create_discussion("p")
    with store._write():
        for i in range(1200):
            store.add_message(d.id, "user" if i % 2 == 0 else "assistant", f"m{i}")
    assert len(store.thread(d.id)) == 1200
    store.delete_discussion(d.id)
    assert store._conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0


def test_settings_round_trip(store: Store) -> None:
    assert store.get_settings("gpt_for_art") == {}
    settings = {"paint": False, "steps": 20, "width": 512, "style": "ukiyo-e ✓", "tags": ["a"]}
    store.save_settings("gpt_for_art", settings)
    assert store.get_settings("gpt_for_art") == settings
    store.save_settings("gpt_for_art", {"paint": True})
    assert store.get_settings("gpt_for_art") == {"paint": True}
    assert store.get_settings("other") == {}
    with Store(store.path) as again:
        assert again.get_settings("gpt_for_art") == {"paint": True}


def test_artifacts_are_recorded_relative_to_the_store(store: Store) -> None:
    d = store.create_discussion("p")
    answer = store.begin_answer(d.id)
    folder = store.artifact_dir(d.id)
    assert folder == store.root / "artifacts" / d.id and folder.is_dir()
    (folder / "a.png").write_bytes(b"1")
    first = store.add_artifact(answer, folder / "a.png", params={"seed": 3}, step_id="artwork")
    second = store.add_artifact(answer, f"artifacts/{d.id}/b.png", kind="file", mime="text/plain")
    assert first.path == f"artifacts/{d.id}/a.png"
    assert (first.params, first.step_id, first.kind) == ({"seed": 3}, "artwork", "image")
    assert [a.path for a in store.artifacts(answer)] == [first.path, second.path]
    assert store.resolve_artifact(first.path) == folder / "a.png"
    other = store.create_discussion("p")
    with pytest.raises(UnsafePathError, match="outside"):
        store.add_artifact(answer, store.artifact_dir(other.id) / "x.png")
    with pytest.raises(UnsafePathError, match="outside"):
        store.add_artifact(answer, store.path)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "discussions.sqlite3",
        "/etc/passwd",
        "../secret.txt",
        "artifacts/../discussions.sqlite3",
        "artifacts/x/../../discussions.sqlite3",
        "artifacts\\..\\discussions.sqlite3",
        "C:/Windows/win.ini",
        "artifacts/x\x00.png",
        ".writers/x.lock",
        "artifacts",
    ],
)
def test_unsafe_artifact_paths_are_refused(store: Store, path: str) -> None:
    with pytest.raises(UnsafePathError, match="refusing artifact path"):
        store.resolve_artifact(path)


def test_symlink_out_of_the_artifacts_folder_is_refused(store: Store, tmp_path: Path) -> None:
    d = store.create_discussion("p")
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    (store.artifact_dir(d.id) / "link.txt").symlink_to(secret)
    with pytest.raises(UnsafePathError, match="resolves outside"):
        store.resolve_artifact(f"artifacts/{d.id}/link.txt")


def test_threads_share_one_store(store: Store) -> None:
    d = store.create_discussion("p")
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(25):
                answer = store.begin_answer(d.id, parent_id=None)
                store.append_answer(answer, f"w{k}-{i}")
                store.add_step(answer, "generate")
                store.finish_answer(answer)
                store.list_discussions("w")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = store._conn.execute("SELECT content, status FROM messages ORDER BY content").fetchall()
    assert len(rows) == 100
    assert {r["status"] for r in rows} == {"ok"}
    assert sorted(r["content"] for r in rows) == sorted(
        f"w{k}-{i}" for k in range(4) for i in range(25)
    )


def test_closed_store_refuses_writes_and_interrupts_its_open_answers(tmp_path: Path) -> None:
    s = Store(tmp_path / "d.sqlite3")
    d = s.create_discussion("p")
    answer = s.begin_answer(d.id)
    s.append_answer(answer, "half")
    s.close()
    s.close()  # twice is fine
    with pytest.raises(StoreError, match="closed"):
        s.create_discussion("p")
    with Store(tmp_path / "d.sqlite3") as again:
        msg = again.get_message(answer)
        assert (msg.status, msg.content) == ("interrupted", "half")


def test_a_file_that_is_not_a_database_gets_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable discussion store"):
        Store(bad)
