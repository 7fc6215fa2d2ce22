"""Documents a personality ships (knowledge:) and files attached to a discussion: read, chunked,
indexed once in SQLite FTS5 under LOLLMS_HOME, rebuilt when they change, bounded, retrieved."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from engine_support import error, finished, personality, reply, run

from lollms_runtime.engine import Turn
from lollms_runtime.errors import PersonalityError
from lollms_runtime.knowledge import limits
from lollms_runtime.knowledge.documents import chunks, read_bytes
from lollms_runtime.knowledge.index import Index, fts_query
from lollms_runtime.knowledge.library import (
    attach,
    discussion_index,
    personality_index,
    sync_folder,
)
from lollms_runtime.knowledge.limits import KnowledgeError
from lollms_runtime.testing import ScriptedTextBackend

DATA = Path(__file__).parent / "data" / "knowledge"


def questions() -> list[dict[str, str]]:
    loaded: list[dict[str, str]] = json.loads((DATA / "questions.json").read_text())
    return loaded


def test_the_labelled_set_is_large_enough() -> None:
    documents = list((DATA / "docs").glob("*.md"))
    assert len(documents) >= 30
    assert len(questions()) >= 30
    assert {q["answer_in"] for q in questions()} <= {d.name for d in documents}


def test_bm25_recall_at_3_on_the_labelled_set(tmp_path: Path) -> None:
    index = Index(tmp_path / "i.sqlite3")
    report = sync_folder(index, DATA, ["docs/*.md"])
    assert len(report.added) >= 30
    hits = 0
    for q in questions():
        found = index.search(q["question"], 3)
        hits += any(p.source == f"docs/{q['answer_in']}" for p in found)
    recall = hits / len(questions())
    assert recall >= 0.9, recall


def test_documents_are_indexed_once_and_rebuilt_when_they_change(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    shutil.copytree(DATA / "docs", folder / "docs")
    index = Index(tmp_path / "i.sqlite3")
    first = sync_folder(index, folder, ["docs/*.md"])
    assert first.changed and not first.unchanged
    again = sync_folder(index, folder, ["docs/*.md"])
    assert not again.changed and again.unchanged == len(first.added)
    # Same content, new time: not re-read into the index (the digest decides).
    os.utime(folder / "docs" / "corvo-hut.md", (1, 1))
    assert not sync_folder(index, folder, ["docs/*.md"]).changed
    (folder / "docs" / "corvo-hut.md").write_text("# Corvo hut\n\nThe hut now has 50 beds.\n")
    (folder / "docs" / "anchor-inn.md").unlink()
    changed = sync_folder(index, folder, ["docs/*.md"])
    assert (changed.updated, changed.removed, changed.added) == (
        ["docs/corvo-hut.md"],
        ["docs/anchor-inn.md"],
        [],
    )
    assert "50 beds" in index.search("beds in the hut", 1)[0].text
    gone = index.search("Harbour Stout", 50)  # the removed document's passages are gone
    assert gone and all(p.source != "docs/anchor-inn.md" for p in gone)


def test_markdown_sections_are_cited_by_heading() -> None:
    sections = read_bytes(b"intro\n\n# Setup\n\nstep one\n\n## Oil\n\nuse colza\n", "a.md")
    assert [(s.location, s.text.strip()) for s in sections] == [
        ("", "intro"),
        ("Setup", "# Setup\n\nstep one"),
        ("Oil", "## Oil\n\nuse colza"),
    ]


def test_html_is_read_as_visible_text() -> None:
    page = b"<html><head><style>p{}</style><script>var x=1</script></head><body><h2>Tea</h2>"
    page += b"<p>Brew &amp; wait.</p></body></html>"
    (section,) = read_bytes(page, "a.html")
    assert section.location == "Tea"
    assert "Brew & wait." in section.text and "var x" not in section.text


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with ``text`` in Helvetica, written by hand (offsets computed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def test_pdf_pages_are_read_and_located() -> None:
    (section,) = read_bytes(minimal_pdf("The vault code is 4417."), "manual.pdf")
    assert section.location == "page 1" and "vault code is 4417" in section.text


def test_a_hostile_or_broken_pdf_is_refused_with_a_message() -> None:
    with pytest.raises(KnowledgeError, match=r"bad\.pdf: not a readable PDF"):
        read_bytes(b"%PDF-1.4\n" + b"\x00garbage" * 100, "bad.pdf")
    with pytest.raises(KnowledgeError, match=r"bad\.pdf"):
        read_bytes(b"%PDF-1.4\n1 0 obj << /Type /Pages /Kids [1 0 R] /Count 9999999 >>", "bad.pdf")


def test_a_huge_or_binary_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lollms_runtime.knowledge.documents.MAX_DOCUMENT_BYTES", 1000)
    with pytest.raises(
        KnowledgeError, match=r"big\.txt: 1001 bytes; a document may hold at most 1000"
    ):
        read_bytes(b"x" * 1001, "big.txt")
    with pytest.raises(KnowledgeError, match="holds binary data"):
        read_bytes(b"ab\x00cd", "a.txt")
    with pytest.raises(KnowledgeError, match=r"cannot read '\.exe' documents"):
        read_bytes(b"MZ", "a.exe")


def test_chunks_are_bounded_and_overlap() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    pieces = list(chunks(read_bytes(text.encode(), "a.txt")))
    assert len(pieces) > 5
    assert all(len(p.text) <= limits.CHUNK_CHARS for p in pieces)
    assert pieces[0].text[-20:] in pieces[1].text or pieces[1].text[:10] in pieces[0].text


def test_the_chunk_limit_of_an_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lollms_runtime.knowledge.index.MAX_CHUNKS", 3)
    index = Index(tmp_path / "i.sqlite3")
    text = ("A sentence that takes some room. " * 100).encode()
    with pytest.raises(KnowledgeError, match="an index holds at most 3"):
        index.put("a.txt", read_bytes(text, "a.txt"), "d", len(text))


def test_user_text_is_never_read_as_fts_syntax(tmp_path: Path) -> None:
    assert fts_query('NEAR("a" OR b*) AND -c') == '"near" OR "b" OR "c"'
    index = Index(tmp_path / "i.sqlite3")
    index.put("a.md", read_bytes(b"quotes and stars", "a.md"), "d", 1)
    assert index.search('"quotes" * AND (', 3)[0].source == "a.md"
    assert index.search("???", 3) == []


# -- paths ----------------------------------------------------------------------------------
def test_a_path_out_of_the_folder_is_refused_at_load_with_its_place(tmp_path: Path) -> None:
    with pytest.raises(PersonalityError) as caught:
        personality(tmp_path, "knowledge:\n  - docs/*.md\n  - ../secrets/*.md\n")
    text = str(caught.value)
    assert "personality.yaml:7:5: knowledge[1]: '../secrets/*.md' goes up with '..'" in text
    with pytest.raises(PersonalityError, match=r"knowledge\[0\]\.path: '/etc/\*' is an absolute"):
        personality(tmp_path, "knowledge:\n  - path: /etc/*\n")


def test_a_glob_matching_a_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("the password is hunter2\n")
    p = personality(tmp_path, "knowledge: [docs/*.md]\n")
    (p.folder / "docs").mkdir()
    (p.folder / "docs" / "ok.md").write_text("fine\n")
    (p.folder / "docs" / "link.md").symlink_to(outside / "secret.md")
    with pytest.raises(KnowledgeError, match="leads outside the personality's folder"):
        personality_index(p)


def test_the_index_lives_under_lollms_home_never_in_the_package(tmp_path: Path) -> None:
    p = personality(tmp_path, "knowledge: [notes.md]\n")
    (p.folder / "notes.md").write_text("The boiler code is E42.\n")
    index = personality_index(p)
    assert index is not None
    assert index.path.is_relative_to(Path(os.environ["LOLLMS_HOME"]))
    assert sorted(x.name for x in p.folder.iterdir()) == ["notes.md", "personality.yaml"]


def test_a_named_file_that_is_missing_is_reported(tmp_path: Path) -> None:
    p = personality(tmp_path, "knowledge: [nothere.md]\n")
    with pytest.raises(KnowledgeError, match=r"'nothere\.md': no such file in the personality"):
        personality_index(p)


# -- in a turn ------------------------------------------------------------------------------
RETRIEVE = """\
knowledge: [docs/*.md]
pipeline:
  - retrieve: {id: found, limit: 2}
  - generate:
      id: answer
      prompt: "{% for p in found %}[{{ loop.index }}] ({{ p.cite }}) {{ p.text }} {% endfor %}Q: {{ message }}"
  - reply: {text: "{{ answer }} [{{ found[0].source }}]"}
"""


def with_docs(tmp_path: Path, body: str) -> object:
    p = personality(tmp_path, body)
    shutil.copytree(DATA / "docs", p.folder / "docs")
    return p


def test_the_retrieve_step_gives_passages_with_source_location_and_score(tmp_path: Path) -> None:
    p = with_docs(tmp_path, RETRIEVE)
    backend = ScriptedTextBackend("Fifty minutes.")
    events = run(p, "How long does the ferry crossing to Orsel take?", backend)  # type: ignore[arg-type]
    assert reply(events).text == "Fifty minutes. [docs/orsel-ferry.md]"
    found = finished(events, "found")
    assert found.output[0]["source"] == "docs/orsel-ferry.md"
    assert found.output[0]["location"] == "Orsel ferry timetable"
    assert found.output[0]["score"] > 0
    assert found.detail.startswith("2 passage(s) for 'How long does the ferry")
    prompt = backend.history[0].messages[-1].content
    assert prompt.startswith("[1] (docs/orsel-ferry.md, Orsel ferry timetable) # Orsel ferry")


def test_min_score_and_the_query_template(tmp_path: Path) -> None:
    body = (
        "knowledge: [docs/*.md]\npipeline:\n"
        "  - retrieve: {id: found, query: 'glimmerfish {{ message }}', min_score: 1000}\n"
        "  - reply: {text: '{{ found | length }}'}\n"
    )
    events = run(with_docs(tmp_path, body), "scales")  # type: ignore[arg-type]
    assert reply(events).text == "0"


def test_the_default_chat_reads_its_documents_and_cites_them(tmp_path: Path) -> None:
    p = with_docs(tmp_path, "knowledge: [docs/*.md]\n")
    backend = ScriptedTextBackend("At 07:25 [1].")
    events = run(p, "When does the school bus leave Varn?", backend)  # type: ignore[arg-type]
    system = backend.history[0].messages[0].content
    assert system.startswith("You are a test.\n\nPassages from the documents (cite them as [1]")
    assert "[1] (docs/school-bus.md, Island school bus)" in system
    assert "retrieved: docs/school-bus.md (Island school bus)" in finished(events, "answer").detail


def test_attached_files_join_the_discussions_index_and_the_default_chat_uses_them(
    tmp_path: Path,
) -> None:
    result = attach("disc-1", "../../notes.txt", b"The spare key is under the blue flowerpot.")
    assert result["source"] == "notes.txt" and result["chunks"] == 1
    assert discussion_index("disc-2") is None  # another discussion sees nothing
    p = personality(tmp_path, "")
    backend = ScriptedTextBackend("Under the blue flowerpot [1].")
    turn = Turn(p, "Where is the spare key?", discussion_id="disc-1")
    events = run(p, text=backend, turn=turn)
    assert "[1] (notes.txt) The spare key is under the blue flowerpot." in (
        backend.history[0].messages[0].content
    )
    assert "retrieved: notes.txt" in finished(events, "answer").detail
    # Attaching the same name again replaces it.
    attach("disc-1", "notes.txt", b"The spare key is now with the neighbour.")
    index = discussion_index("disc-1")
    assert index is not None and len(index.known()) == 1
    assert "neighbour" in index.search("spare key", 1)[0].text


def test_attachments_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lollms_runtime.knowledge.library.MAX_ATTACHMENT_BYTES", 10)
    with pytest.raises(KnowledgeError, match=r"attachment a\.txt: 11 bytes; the limit is 10"):
        attach("d", "a.txt", b"x" * 11)
    with pytest.raises(KnowledgeError, match="is not a file name"):
        attach("d", "../..", b"x")


def test_a_broken_document_fails_the_turn_with_a_message(tmp_path: Path) -> None:
    p = personality(tmp_path, "knowledge: [a.pdf]\n")
    (p.folder / "a.pdf").write_bytes(b"%PDF-1.4 nothing else")
    events = run(p, "hi", ScriptedTextBackend("x"))
    assert "a.pdf: not a readable PDF" in error(events).message


def test_query_latency_over_a_thousand_chunks(tmp_path: Path) -> None:
    index = Index(tmp_path / "i.sqlite3")
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
        "mu",
        "nu",
        "xi",
    ]
    with index.batch():
        for n in range(1000):
            text = " ".join(words[(n + k) % len(words)] for k in range(40)) + f" item{n}"
            index.put(f"d{n}.txt", read_bytes(text.encode(), f"d{n}.txt"), str(n), len(text))
    assert index.chunk_count() == 1000
    started = time.perf_counter()
    for n in range(50):
        assert index.search(f"gamma item{n * 7}", 3)[0].source == f"d{n * 7}.txt"
    per_query = (time.perf_counter() - started) / 50
    assert per_query < 0.1, per_query  # the goal is 20 ms (benchmarks/bench_knowledge.py)


def test_attachments_are_listed_detached_and_forgotten_with_their_discussion() -> None:
    from lollms_runtime.knowledge.library import attachments, detach, forget

    attach("d9", "a.txt", b"alpha")
    attach("d9", "b.md", b"# B\n\nbeta")
    assert [a["source"] for a in attachments("d9")] == ["a.txt", "b.md"]
    assert detach("d9", "a.txt") and not detach("d9", "a.txt")
    assert [a["source"] for a in attachments("d9")] == ["b.md"]
    forget("d9")
    assert attachments("d9") == [] and discussion_index("d9") is None


def test_retrieve_from_only_the_discussion_and_a_templated_limit(tmp_path: Path) -> None:
    attach("d10", "notes.txt", b"The gate code is 1234.")
    body = (
        "knowledge: [docs/*.md]\nsettings:\n  k: {type: integer, default: 1}\npipeline:\n"
        "  - retrieve: {id: found, from: [discussion], limit: '{{ settings.k }}'}\n"
        '  - reply: {text: \'{{ found | map(attribute="source") | join(",") }}\'}\n'
    )
    p = with_docs(tmp_path, body)
    turn = Turn(p, "What is the gate code?", discussion_id="d10")  # type: ignore[arg-type]
    assert reply(run(p, text=ScriptedTextBackend(), turn=turn)).text == "notes.txt"  # type: ignore[arg-type]


def test_lollms_knowledge_indexes_and_searches_from_the_command_line(tmp_path: Path) -> None:
    from conftest import run_lollms

    folder = tmp_path / "p"
    shutil.copytree(DATA / "docs", folder / "docs")
    (folder / "personality.yaml").write_text(
        "schema: 1\nid: kc\nname: KC\nknowledge: [docs/*.md]\n", encoding="utf-8"
    )
    done = run_lollms("knowledge", str(folder), "how deep is the lake", "--limit", "1", "--json")
    assert done.returncode == 0, done.stderr
    (passage,) = json.loads(done.stdout)
    assert (passage["source"], passage["location"]) == ("docs/tessaly-lake.md", "Lake Tessaly")
    assert "kc: 34 document(s), 34 passage(s) from docs/*.md" in done.stderr
    (folder / "docs" / "bad.pdf").write_bytes(b"%PDF-1.4 nothing")
    (folder / "personality.yaml").write_text(
        "schema: 1\nid: kc\nname: KC\nknowledge: [docs/*.md, docs/*.pdf]\n", encoding="utf-8"
    )
    broken = run_lollms("knowledge", str(folder))
    assert broken.returncode == 1
    assert broken.stderr.startswith("error: docs/bad.pdf: not a readable PDF")
    assert "Traceback" not in broken.stderr
