"""Export to Markdown and JSON, and import back: all branches, steps and artifacts survive."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lollms_runtime.store import ImportFormatError, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store" / "discussions.sqlite3") as s:
        yield s


def _art_discussion(store: Store) -> str:
    """A discussion with two branches, steps, an image, an interrupted answer and an error."""
    d = store.create_discussion("gpt_for_art", model="smollm2")
    store.add_message(d.id, "system", "You are Artbot.")
    q1 = store.add_message(d.id, "user", "Imagine something cool.")
    answer = store.begin_answer(
        d.id, model="smollm2", sampling={"temperature": 0.8, "stop": ["###"]}
    )
    store.append_answer(answer, "A neon koi swims ")
    store.append_answer(answer, "through a rainy alley.")
    step = store.add_step(answer, "generate", step_id="description", title="Describe")
    store.update_step(
        step.n,
        status="ok",
        output="A neon koi",
        duration_s=0.5,
        prompt_tokens=40,
        generation_tokens=9,
    )
    store.add_step(answer, "condition", status="ok", output={"then": True})
    image = store.artifact_dir(d.id) / "koi 1.png"
    image.write_bytes(b"\x89PNG fake")
    store.add_artifact(
        answer,
        image,
        params={"prompt": "neon koi [alley]", "seed": 3},
        step_id="artwork",
        mime="image/png",
    )
    for name, params in (("speech-1.wav", {"part": 0, "prompt": "sentence 1"}), ("speech.wav", {})):
        audio = store.artifact_dir(d.id) / name
        audio.write_bytes(b"RIFF fake")
        store.add_artifact(answer, audio, kind="audio", params=params, mime="audio/wav")
    store.finish_answer(answer, stats={"generation_tokens": 9, "finish_reason": "stop"})
    # The old branch: an earlier edit of the question, answered with an error.
    q1_old = store.add_message(d.id, "user", "Imagine something.", parent_id=q1.parent_id)
    failed = store.begin_answer(d.id)
    store.finish_answer(failed, "failed", error="model not found: pull it first")
    # Back to the newer branch, continued and interrupted.
    store.set_leaf(d.id, answer)
    store.add_message(d.id, "user", "Add street art")
    cut = store.begin_answer(d.id)
    store.append_answer(cut, "Graffiti of")
    store.finish_answer(cut, "interrupted")
    assert q1_old.parent_id == q1.parent_id
    return d.id


def _normalized(export: dict[str, Any]) -> dict[str, Any]:
    """An export with ids and timestamps replaced by stable placeholders."""
    ids: dict[str, str] = {}

    def alias(value: str | None) -> str | None:
        if value is None:
            return None
        return ids.setdefault(value, f"id{len(ids)}")

    out: dict[str, Any] = json.loads(json.dumps(export))
    disc = out["discussion"]
    for m in out["messages"]:
        m["id"], m["parent_id"] = alias(m["id"]), alias(m["parent_id"])
        m["created_at"] = m["updated_at"] = 0
        for a in m["artifacts"]:
            a["created_at"] = 0
    disc["id"], disc["leaf_id"] = None, alias(disc["leaf_id"])
    disc["created_at"] = disc["updated_at"] = 0
    return out


def test_json_round_trip_keeps_everything(store: Store, tmp_path: Path) -> None:
    original = _art_discussion(store)
    exported = store.export_json(original)
    assert (exported["format"], exported["version"]) == ("lollms-runtime/discussion", 1)
    assert len(exported["messages"]) == 7
    # Through real JSON text, as a file on disk would be.
    data = json.loads(json.dumps(exported))
    copy = store.import_json(data, files_from=store.artifact_dir(original))
    assert copy != original
    again = store.export_json(copy)
    assert _normalized(again) == _normalized(exported)
    # The copy is a discussion of its own: same thread, its own file.
    assert [m.content for m in store.thread(copy)] == [m.content for m in store.thread(original)]
    image = store.artifacts(store.thread(copy)[2].id)[0]
    assert image.path == f"artifacts/{copy}/koi 1.png"
    assert store.resolve_artifact(image.path).read_bytes() == b"\x89PNG fake"
    store.delete_discussion(original)
    assert store.resolve_artifact(image.path).exists()
    # The created time is kept; updated is when it came in.
    assert store.get_discussion(copy).created_at == exported["discussion"]["created_at"]


def test_import_into_another_store_without_files(store: Store, tmp_path: Path) -> None:
    original = _art_discussion(store)
    exported = json.loads(json.dumps(store.export_json(original)))
    with Store(tmp_path / "other" / "d.sqlite3") as other:
        copy = other.import_json(exported)
        assert _normalized(other.export_json(copy)) == _normalized(exported)
        assert [d.id for d in other.list_discussions("koi")] == [copy]
        image = other.artifacts(other.thread(copy)[2].id)[0]
        assert not other.resolve_artifact(image.path).exists()  # records only, as documented


def test_imported_generating_answer_becomes_interrupted(store: Store) -> None:
    d = store.create_discussion("p")
    live = store.begin_answer(d.id)
    store.append_answer(live, "half")
    exported = store.export_json(d.id)
    assert exported["messages"][0]["status"] == "running"
    copy = store.import_json(exported)
    assert [(m.status, m.content) for m in store.thread(copy)] == [("interrupted", "half")]


def test_markdown_export_reads_well(store: Store) -> None:
    d = _art_discussion(store)
    md = store.export_markdown(d, link_prefix="/store/")
    assert md.startswith("# Imagine something cool.\n\n- Personality: `gpt_for_art`\n")
    assert "- Model: `smollm2`" in md
    # The active branch only, in order, under role headings.
    order = [
        "## System",
        "You are Artbot.",
        "## User",
        "Imagine something cool.",
        "## Assistant (smollm2)",
        "A neon koi swims through a rainy alley.",
        f"![neon koi (alley)](/store/artifacts/{d}/koi%201.png)",
        "- `generate` Describe: ok, 0.50 s",
        "Add street art",
        "## Assistant (interrupted)",
        "Graffiti of",
    ]
    at = 0
    for text in order:
        assert text in md[at:], f"{text!r} missing or out of order"
        at = md.index(text, at) + len(text)
    assert "Imagine something." not in md.replace("Imagine something cool.", "")
    assert "sentence 1" not in md  # a piece of the speech is not listed beside the whole one
    assert f"[audio](/store/artifacts/{d}/speech.wav)" in md
    assert "model not found" not in md
    # The other branch exports its error.
    old_leaf = next(m for m in store.export_json(d)["messages"] if m["status"] == "failed")["id"]
    store.set_leaf(d, old_leaf)
    assert "> **Error:** model not found: pull it first" in store.export_markdown(d)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda e: e.update(format="something-else"),
            "format: expected 'lollms-runtime/discussion'",
        ),
        (lambda e: e.update(version=99), "version: this lollms-runtime reads export version 1"),
        (lambda e: e.pop("discussion"), "discussion: expected an object"),
        (lambda e: e["discussion"].pop("personality_id"), "discussion.personality_id: missing"),
        (lambda e: e.update(messages={}), "messages: expected a list"),
        (lambda e: e["messages"][1].update(role="bot"), r"messages\[1\].role: 'bot' is not one of"),
        (lambda e: e["messages"][1].update(status="done"), r"messages\[1\].status: 'done' is not"),
        (lambda e: e["messages"][1].update(content=3), r"messages\[1\].content: expected text"),
        (
            lambda e: e["messages"][1].update(parent_id="nope"),
            r"messages\[1\].parent_id: 'nope' is",
        ),
        (
            lambda e: e["messages"][1].update(id=e["messages"][0]["id"]),
            r"messages\[1\].id: .* twice",
        ),
        (lambda e: e["messages"].reverse(), r"messages\[0\].parent_id: .* earlier message"),
        (lambda e: e["discussion"].update(leaf_id="zzz"), "discussion.leaf_id: 'zzz' is not"),
        (
            lambda e: e["messages"][2]["artifacts"][0].update(path="../../discussions.sqlite3"),
            r"messages\[2\].artifacts\[0\].path: .* must be a plain path",
        ),
        (
            lambda e: e["messages"][2]["artifacts"][0].update(path="/etc/passwd"),
            "must be a plain path",
        ),
        (lambda e: e["messages"][2]["steps"][0].update(kind=None), r"steps\[0\].kind: expected"),
        (lambda e: e["messages"][2]["steps"][0].update(position="a"), "expected a number"),
    ],
)
def test_import_errors_name_the_field(store: Store, change: Any, message: str) -> None:
    exported = json.loads(json.dumps(store.export_json(_art_discussion(store))))
    before = len(store.list_discussions())
    change(exported)
    with pytest.raises(ImportFormatError, match=message):
        store.import_json(exported)
    assert len(store.list_discussions()) == before  # nothing half-imported


def test_export_of_an_empty_discussion(store: Store) -> None:
    d = store.create_discussion("p", title="Empty")
    assert store.export_markdown(d.id).startswith("# Empty\n")
    copy = store.import_json(store.export_json(d.id))
    assert store.thread(copy) == []
    assert store.get_discussion(copy).title == "Empty"
