"""Dense retrieval: the embedding-backend hook, hybrid ranking, and the MLX backend on a tiny
model built here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from engine_support import finished, personality, reply

from lollms_runtime.engine import Engine, Turn
from lollms_runtime.knowledge.documents import Section
from lollms_runtime.knowledge.embeddings import dense_search, embed_missing, factories, hybrid
from lollms_runtime.knowledge.index import Index, Passage
from lollms_runtime.plugins import PluginHost, get_plugin_manager
from lollms_runtime.testing import ScriptedTextBackend

PLUGIN = Path(__file__).parent / "plugins" / "lollms-test-plugin"


@pytest.fixture
def test_plugin() -> Any:
    sys.path.insert(0, str(PLUGIN))
    try:
        import lollms_test_plugin

        yield lollms_test_plugin
    finally:
        sys.path.remove(str(PLUGIN))


def test_a_plugin_embedding_backend_ranks_by_meaning_in_retrieve(
    tmp_path: Path, test_plugin: Any
) -> None:
    """register_embedding_backends: the test plugin's backend is found and used by retrieve."""
    pm = get_plugin_manager(extra_plugins=[test_plugin], load_entry_points=False)
    assert {"letters", "mlx"} <= set(factories(pm))
    p = personality(
        tmp_path,
        """\
knowledge: [docs/*.md]
pipeline:
  - retrieve: {id: found, limit: 1, embedding: {backend: letters, model: x}}
  - reply: {text: "{{ found[0].source }} {{ found[0].score > 0 }}"}
""",
    )
    (p.folder / "docs").mkdir()
    (p.folder / "docs" / "zzz.md").write_text("zzz zzz zzz buzz\n", encoding="utf-8")
    (p.folder / "docs" / "aaa.md").write_text("banana bandana\n", encoding="utf-8")
    engine = Engine(PluginHost(pm), ScriptedTextBackend())
    # No word is shared with either document: BM25 finds nothing, the letters decide.
    events = list(engine.run_turn(Turn(p, "a nab")))
    assert reply(events).text == "docs/aaa.md True"
    assert "1 passage(s)" in finished(events, "found").detail


def test_unknown_embedding_backend_is_a_clear_step_error(tmp_path: Path) -> None:
    from engine_support import error, run

    p = personality(
        tmp_path,
        "knowledge: [a.md]\npipeline:\n  - retrieve: {embedding: {backend: nope, model: x}}\n",
    )
    (p.folder / "a.md").write_text("text\n", encoding="utf-8")
    message = error(run(p, "hi")).message
    assert "no embedding backend named 'nope' (installed: mlx)" in message


class Fixed:
    identity = "fixed"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed(self, texts: Any) -> list[list[float]]:
        self.seen.extend(texts)
        return [[1.0, 0.0] if "sun" in t else [0.0, 1.0] for t in texts]


def test_vectors_are_computed_once_and_hybrid_fuses_both_rankings(tmp_path: Path) -> None:
    index = Index(tmp_path / "i.sqlite3")
    index.put("a.md", [Section("the sun is bright")], "d1", 1)
    index.put("b.md", [Section("the moon is pale, the moon is cold")], "d2", 1)
    backend = Fixed()
    assert embed_missing(index, backend) == 2
    assert embed_missing(index, backend) == 0  # stored beside the passages
    dense = dense_search(index, backend, "sunny", 2)
    assert [p.source for p in dense] == ["a.md", "b.md"]
    lexical = index.search("moon", 2)
    assert [p.source for p in lexical] == ["b.md"]
    fused = hybrid(lexical, dense, 2)
    # b.md: BM25 half (1.0 * 0.5) + cosine 0; a.md: cosine half only (0.5): b first on the tie-break
    # of insertion, both present with scores in [0, 1].
    assert {p.source for p in fused} == {"a.md", "b.md"}
    assert all(0 <= p.score <= 1 for p in fused)


def test_hybrid_prefers_a_passage_both_rankings_found() -> None:
    a = Passage("a", "a.md", "", 2.0, 1)
    b = Passage("b", "b.md", "", 1.0, 2)
    fused = hybrid([a, b], [Passage("b", "b.md", "", 0.9, 2), Passage("a", "a.md", "", 0.1, 1)], 2)
    assert [p.source for p in fused] == ["b.md", "a.md"]
    assert fused[0].score == pytest.approx(0.25 + 0.45)


# -- MLX ------------------------------------------------------------------------------------
def tiny_embedding_model(folder: Path) -> Path:
    """A tiny llama-shaped mlx-lm model with a word-level tokenizer, random weights."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[UNK]", "sun", "moon", "star", "the", "is", "bright", "pale", "cold", "warm"]
    vocab = {w: i for i, w in enumerate(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]"})
    )
    config = {
        "model_type": "llama",
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "intermediate_size": 32,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "vocab_size": len(words),
        "tie_word_embeddings": True,
    }
    (folder / "config.json").write_text(json.dumps(config))
    mx.random.seed(0)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(model.parameters())))
    return folder


def test_mlx_embeddings_on_a_tiny_model(tmp_path: Path) -> None:
    from lollms_runtime.knowledge.mlx_embed import MLXEmbeddings

    model = tiny_embedding_model(tmp_path / "tiny")
    backend = MLXEmbeddings(str(model))
    vectors = backend.embed(["the sun is bright", "the moon is pale", "the sun is bright"])
    assert len(vectors) == 3 and all(len(v) == 16 for v in vectors)
    assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
    assert MLXEmbeddings(str(model), pooling="last").identity == f"mlx:{model}:last"
    index = Index(tmp_path / "i.sqlite3")
    index.put("sun.md", [Section("the sun is bright and warm")], "d1", 1)
    index.put("moon.md", [Section("the moon is pale and cold")], "d2", 1)
    found = dense_search(index, backend, "the moon is pale and cold", 2)
    assert found[0].source == "moon.md" and found[0].score == pytest.approx(1.0, abs=1e-4)


def test_mlx_embedding_model_that_cannot_load_is_explained(tmp_path: Path) -> None:
    from lollms_runtime.knowledge.limits import KnowledgeError
    from lollms_runtime.knowledge.mlx_embed import MLXEmbeddings

    with pytest.raises(KnowledgeError, match="cannot load the embedding model"):
        MLXEmbeddings(str(tmp_path / "missing")).embed(["x"])
