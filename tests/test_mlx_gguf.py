"""GGUF -> MLX conversion: tokenizer ids against a reference BPE, q/k un-permutation, logits."""

from __future__ import annotations

import itertools
import json
from functools import cache
from pathlib import Path
from typing import Any

import mlx_fixtures
import numpy as np
import pytest

from lollms_runtime.mlx.gguf_convert import converted_folder, ensure_converted, unpermute_rows
from lollms_runtime.mlx.models import embedded_gguf

TEXTS = [
    "Hello, world!",
    "héllo wörld, ça va?",
    "日本語のテキストです。",
    "emoji 🎉🚀 and symbols ∑ ≠ ∞",
    "  two leading spaces\n\nnew lines\t\ttabs   ",
    "numbers 12345 and 3.14159, year 2024",
    "don't won't I'm we'll they've",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n",
    "def f(x):\n    return x ** 2  # code",
]

# Session fixtures shared by every MLX test module.
mlx_home = mlx_fixtures.mlx_home
mlx_backend = mlx_fixtures.mlx_backend


def llama_cpp_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (the reference we must undo)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def test_unpermute_inverts_llama_cpp_permute() -> None:
    import mlx.core as mx

    rng = np.random.default_rng(0)
    for heads, head_dim, cols in [(9, 64, 5), (3, 64, 7), (4, 8, 2)]:
        original = rng.standard_normal((heads * head_dim, cols)).astype(np.float32)
        restored = np.array(unpermute_rows(mx.array(llama_cpp_permute(original, heads)), heads))
        np.testing.assert_array_equal(restored, original)


@pytest.fixture(scope="module")
def folder(mlx_home: Path) -> Path:
    return ensure_converted(embedded_gguf())


def test_conversion_is_cached_and_loadable(folder: Path) -> None:
    assert folder == converted_folder(embedded_gguf())
    assert folder.parent == mlx_home_path(folder)
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert ensure_converted(embedded_gguf()) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime  # not converted again
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["num_hidden_layers"] == 30
    assert config["tie_word_embeddings"] is True
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tokenizer_config["chat_template"]
    assert tokenizer_config["eos_token"] == "<|im_end|>"


def mlx_home_path(folder: Path) -> Path:
    import os

    return Path(os.environ["LOLLMS_MODELS_DIR"])


def test_qk_rows_are_unpermuted_from_the_gguf(folder: Path) -> None:
    import mlx.core as mx

    raw = mx.load(str(embedded_gguf()))
    converted = mx.load(str(folder / "model.safetensors"))
    for kind, ours, heads in [("attn_q", "q_proj", 9), ("attn_k", "k_proj", 3)]:
        for part in ("weight", "scales", "biases"):
            gguf = np.array(raw[f"blk.3.{kind}.{part}"])
            mine = np.array(converted[f"model.layers.3.self_attn.{ours}.{part}"])
            np.testing.assert_array_equal(llama_cpp_permute(mine, heads), gguf)
    np.testing.assert_array_equal(
        np.array(converted["model.layers.3.self_attn.v_proj.weight"]),
        np.array(raw["blk.3.attn_v.weight"]),
    )


@cache
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def reference_encode(
    text: str, tokens: list[str], merges: list[str], specials: list[str]
) -> list[int]:
    """A from-scratch byte-level BPE over the GGUF's own vocabulary and merges.

    Pre-tokenization as SmolLM2's tokenizer does it: digits one by one, then GPT-2's regex.
    """
    import regex

    vocab = {t: i for i, t in enumerate(tokens)}
    ranks = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
    gpt2 = regex.compile(
        r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    )
    special = regex.compile("(" + "|".join(regex.escape(s) for s in specials) + ")")
    table = _bytes_to_unicode()
    ids: list[int] = []
    for piece in special.split(text):
        if piece in specials:
            ids.append(vocab[piece])
            continue
        for chunk in regex.split(r"(\p{N})", piece):
            for word in gpt2.findall(chunk):
                parts = [table[b] for b in word.encode("utf-8")]
                while len(parts) > 1:
                    pairs = [
                        (ranks.get(pair, 1 << 30), i)
                        for i, pair in enumerate(itertools.pairwise(parts))
                    ]
                    rank, i = min(pairs)
                    if rank == 1 << 30:
                        break
                    parts[i : i + 2] = [parts[i] + parts[i + 1]]
                ids.extend(vocab[p] for p in parts)
    return ids


@pytest.mark.model
def test_tokenizer_matches_a_reference_bpe(mlx_backend: Any) -> None:
    import mlx.core as mx

    _, meta = mx.load(str(embedded_gguf()), return_metadata=True)
    tokens = list(meta["tokenizer.ggml.tokens"])
    merges = list(meta["tokenizer.ggml.merges"])
    types = list(meta["tokenizer.ggml.token_type"].tolist())
    specials = [t for t, kind in zip(tokens, types, strict=True) if kind == 3]
    tokenizer = mlx_backend.tokenizer
    for text in TEXTS:
        ours = tokenizer.encode(text, add_special_tokens=False)
        assert ours == reference_encode(text, tokens, merges, specials), text
        assert tokenizer.decode(ours) == text


@pytest.mark.model
def test_quantized_logits_match_a_float32_reference(mlx_home: Path) -> None:
    """The quantized model (MLX's quantized kernels) against its dequantized float32 copy."""
    import mlx.core as mx

    from lollms_runtime.mlx.models import load_model

    quantized = load_model("default", "quantized")
    reference = load_model("default", "float32")
    assert reference.model is not quantized.model
    ids = quantized.tokenizer.encode("The capital of France is Paris. The capital of Italy is")
    a = quantized.model(mx.array(ids)[None]).astype(mx.float32)
    b = reference.model(mx.array(ids)[None])
    assert b.dtype == mx.float32
    diff = mx.abs(a - b).max().item()
    scale = mx.abs(b).max().item()
    assert diff <= 0.02 * scale, (diff, scale)
    assert (mx.argmax(a, axis=-1) == mx.argmax(b, axis=-1)).all().item()
    rome = quantized.tokenizer.encode(" Rome", add_special_tokens=False)[0]
    assert mx.argmax(b[0, -1]).item() == rome
