"""Tokenizers built from real GGUF vocabularies give the original tokenizer's ids (llama.cpp's tests).

The files are llama.cpp's own vocabulary-only GGUFs with the ids their Hugging Face tokenizers give
on llama.cpp's test strings (``tests/data/gguf_vocab/README.md``).
"""

from __future__ import annotations

import lzma
from pathlib import Path
from typing import Any

import pytest

from lollms_runtime.mlx.gguf_convert import _plain
from lollms_runtime.mlx.gguf_tokenizer import write_tokenizer

DATA = Path(__file__).parent / "data" / "gguf_vocab"
SEPARATOR = "\n__ggml_vocab_test__\n"


def metadata(name: str, tmp_path: Path) -> dict[str, Any]:
    import mlx.core as mx

    path = tmp_path / name
    path.write_bytes(lzma.decompress((DATA / f"{name}.xz").read_bytes()))
    weights, meta = mx.load(str(path), return_metadata=True)  # as convert_gguf reads it
    assert weights == {}  # vocabulary only
    return {key: _plain(value) for key, value in meta.items()}


def cases(name: str) -> list[tuple[str, list[int]]]:
    texts = (DATA / f"{name}.inp").read_text(encoding="utf-8").split(SEPARATOR)
    ids = (DATA / f"{name}.out").read_text(encoding="utf-8").split("\n")
    assert len(ids) >= len(texts) > 40
    return [(text, [int(i) for i in line.split()]) for text, line in zip(texts, ids, strict=False)]


def built(meta: dict[str, Any], folder: Path) -> Any:
    from transformers import AutoTokenizer

    folder.mkdir()
    write_tokenizer(meta, folder)
    return AutoTokenizer.from_pretrained(str(folder))  # what mlx-lm's loader does


@pytest.mark.parametrize(
    ("name", "architecture"),
    [
        ("ggml-vocab-qwen2.gguf", None),  # byte-level BPE with Qwen2's split
        ("ggml-vocab-phi-3.gguf", None),  # sentencepiece, transformers' phi3 recipe
        # The same Llama 2 vocabulary in a llama-architecture file (Llama 2, Mistral, TinyLlama):
        # our llama.cpp spelling of spaces, not transformers' Metaspace.
        ("ggml-vocab-phi-3.gguf", "llama"),
    ],
)
def test_ids_match_the_reference_tokenizer(
    name: str, architecture: str | None, tmp_path: Path
) -> None:
    meta = metadata(name, tmp_path)
    if architecture:
        meta["general.architecture"] = architecture
    tokenizer = built(meta, tmp_path / "tok")
    wrong = [
        (text, got, want)
        for text, want in cases(name)
        if (got := tokenizer.encode(text, add_special_tokens=False)) != want
    ]
    assert wrong == []


def test_sentencepiece_round_trips_and_streams_like_llama(tmp_path: Path) -> None:
    from mlx_lm.tokenizer_utils import SPMStreamingDetokenizer
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    meta = metadata("ggml-vocab-phi-3.gguf", tmp_path)
    meta["general.architecture"] = "llama"
    tokenizer = built(meta, tmp_path / "tok")
    for text, _ in cases("ggml-vocab-phi-3.gguf"):
        if text.strip() and "\x00" not in text:
            assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    # mlx-lm recognises Llama 2's decoder and streams with its sentencepiece detokenizer.
    wrapper = load_tokenizer(tmp_path / "tok")
    detokenizer = wrapper.detokenizer
    assert isinstance(detokenizer, SPMStreamingDetokenizer)
    text = "Hello world,  two spaces and a llama \U0001f999 emoji."
    detokenizer.reset()
    for token in tokenizer.encode(text, add_special_tokens=False):
        detokenizer.add_token(token)
    detokenizer.finalize()
    assert detokenizer.text == text


def test_add_space_prefix_false_is_honoured(tmp_path: Path) -> None:
    meta = metadata("ggml-vocab-phi-3.gguf", tmp_path)
    meta["general.architecture"] = "llama"
    with_prefix = built(meta, tmp_path / "a").encode("Hello", add_special_tokens=False)
    meta["tokenizer.ggml.add_space_prefix"] = False
    without = built(meta, tmp_path / "b")
    assert (
        without.convert_ids_to_tokens(without.encode("Hello", add_special_tokens=False))[0]
        != (without.convert_ids_to_tokens(with_prefix)[0])
    )
    assert without.convert_ids_to_tokens(with_prefix)[0].startswith("\u2581")


def byte_level_meta(pre: str) -> dict[str, Any]:
    """A byte-level vocabulary where " cat" is a token that no merge builds (as in Llama 3)."""
    tokens = ["Ġ", "c", "a", "t", "Ġc", "at", "Ġcat"]
    return {
        "general.architecture": "llama",
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": [1] * len(tokens),
        "tokenizer.ggml.merges": ["Ġ c", "a t"],
    }


def test_llama3_style_vocabularies_take_whole_words_before_merges(tmp_path: Path) -> None:
    llama3 = built(byte_level_meta("llama-bpe"), tmp_path / "llama3")
    gpt2 = built(byte_level_meta("gpt-2"), tmp_path / "gpt2")
    assert llama3.encode(" cat", add_special_tokens=False) == [6]
    assert gpt2.encode(" cat", add_special_tokens=False) == [4, 5]
