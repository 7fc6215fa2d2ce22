"""Knowledge retrieval: BM25 recall@3 on the labelled set the tests carry, indexing time per MB,
and query latency over 1,000 passages (goal: under 20 ms per query).

Run: ``python benchmarks/bench_knowledge.py``. Everything is written to a temporary folder.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lollms_runtime.knowledge.documents import read_bytes
from lollms_runtime.knowledge.index import Index
from lollms_runtime.knowledge.library import sync_folder

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "knowledge"
WORDS = [
    "harbour",
    "lantern",
    "ferry",
    "glacier",
    "meadow",
    "turbine",
    "pottery",
    "glaze",
    "kiln",
    "honey",
    "heather",
    "tide",
    "sailing",
    "radio",
    "telescope",
    "cheese",
    "dumpling",
    "loom",
    "drone",
    "boiler",
    "pressure",
    "valve",
    "bridge",
    "pier",
    "library",
    "chess",
    "festival",
    "trail",
    "hut",
    "reserve",
    "moth",
    "dictionary",
    "alphabet",
    "island",
    "village",
]


def recall_at_3(folder: Path) -> tuple[float, int, float]:
    index = Index(folder / "labelled.sqlite3")
    report = sync_folder(index, DATA, ["docs/*.md"])
    questions = json.loads((DATA / "questions.json").read_text(encoding="utf-8"))
    hits = sum(
        any(p.source == f"docs/{q['answer_in']}" for p in index.search(q["question"], 3))
        for q in questions
    )
    return hits / len(questions), len(questions), report.seconds


def synthetic(n: int) -> str:
    """About 700 characters of varied words: one passage."""
    return " ".join(WORDS[(n * 7 + k * k) % len(WORDS)] for k in range(90)) + f" code{n}."


def indexing_and_latency(
    folder: Path, passages: int = 1000
) -> tuple[float, float, int, float, float]:
    docs = folder / "docs"
    docs.mkdir()
    total = 0
    for d in range(passages // 10):  # 100 documents of 10 paragraphs
        text = "\n\n".join(synthetic(d * 10 + k) for k in range(10))
        total += len(text.encode())
        (docs / f"d{d:03d}.txt").write_text(text, encoding="utf-8")
    index = Index(folder / "synthetic.sqlite3")
    started = time.perf_counter()
    sync_folder(index, folder, ["docs/*.txt"])
    seconds = time.perf_counter() - started
    chunks = index.chunk_count()
    assert chunks >= passages
    latencies = []
    for n in range(200):
        query = f"{WORDS[n % len(WORDS)]} {WORDS[(n * 3) % len(WORDS)]} code{n * 5 % passages}"
        begin = time.perf_counter()
        found = index.search(query, 3)
        latencies.append(time.perf_counter() - begin)
        assert found
    mb = total / 1e6
    p50 = statistics.median(latencies) * 1000
    p95 = sorted(latencies)[int(len(latencies) * 0.95)] * 1000
    return seconds / mb, mb, chunks, p50, p95


def parse_rate(folder: Path) -> float:
    """Reading and chunking alone (no SQLite), MB per second, on the labelled documents."""
    blobs = [(p.name, p.read_bytes()) for p in sorted((DATA / "docs").glob("*.md"))] * 30
    started = time.perf_counter()
    for name, blob in blobs:
        read_bytes(blob, name)
    return sum(len(b) for _, b in blobs) / 1e6 / (time.perf_counter() - started)


def main() -> None:
    with tempfile.TemporaryDirectory() as raw:
        folder = Path(raw)
        recall, count, labelled_seconds = recall_at_3(folder)
        per_mb, mb, chunks, p50, p95 = indexing_and_latency(folder)
        rate = parse_rate(folder)
    print("knowledge retrieval (SQLite FTS5, BM25)")
    print(f"  recall@3 on the labelled set ({count} questions): {recall:.3f} (goal >= 0.9)")
    print(f"  indexing the labelled set: {labelled_seconds * 1000:.0f} ms")
    print(f"  indexing: {per_mb:.2f} s per MB ({mb:.2f} MB, 100 documents, {chunks} passages)")
    print(f"  reading Markdown: {rate:.1f} MB/s")
    print(
        f"  query latency over {chunks} passages: p50 {p50:.2f} ms, p95 {p95:.2f} ms (goal < 20 ms)"
    )


if __name__ == "__main__":
    main()
