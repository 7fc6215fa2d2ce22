"""A K-quant file made by llama.cpp's own quantizer converts to the model the file describes.

``tests/data/gguf_kquant/tiny-llama-Q4_K_M.gguf`` is a random tiny llama that llama.cpp's
``llama-quantize`` turned into its Q4_K_M mix (Q4_K and Q6_K blocks, F32 norms; see make.py there).
The reference is the same file read by the ``gguf`` package's dequantizers, in float32.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_mlx_gguf_families import HF_TO_GGUF, unpermute

from lollms_runtime.mlx.gguf_convert import ensure_converted

gguf = pytest.importorskip("gguf")

FILE = Path(__file__).parent / "data" / "gguf_kquant" / "tiny-llama-Q4_K_M.gguf"
CONFIG = {
    "model_type": "llama",
    "hidden_size": 256,
    "num_hidden_layers": 2,
    "intermediate_size": 512,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "vocab_size": 261,
    "tie_word_embeddings": False,
}
GGUF_TO_HF = {value: key for key, value in HF_TO_GGUF.items()}


def reference_model() -> Any:
    """The file's tensors dequantized by the gguf package, q/k rows put back in HF order."""
    import mlx.core as mx
    from mlx_lm.utils import _get_classes

    weights = []
    for tensor in gguf.GGUFReader(str(FILE)).tensors:
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        array = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(shape)
        base, _, suffix = tensor.name.rpartition(".")
        parts = base.split(".")
        if parts[0] == "blk":
            name = f"model.layers.{parts[1]}.{GGUF_TO_HF[parts[2]]}.{suffix}"
            if parts[2] in ("attn_q", "attn_k"):
                key = "num_attention_heads" if parts[2] == "attn_q" else "num_key_value_heads"
                array = unpermute(array, int(CONFIG[key]))  # type: ignore[call-overload]
        else:
            name = f"{GGUF_TO_HF[base]}.{suffix}"
        weights.append((name, mx.array(array.astype(np.float32))))
    model_class, args_class = _get_classes(CONFIG)
    model = model_class(args_class.from_dict(CONFIG))
    model.load_weights(weights)
    return model


def test_llama_cpp_q4_k_m_file_converts_to_the_model_it_describes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlx.core as mx
    import mlx_lm

    monkeypatch.setenv("LOLLMS_MODELS_DIR", str(tmp_path / "models"))
    types = {t.tensor_type.name for t in gguf.GGUFReader(str(FILE)).tensors}
    assert {"Q4_K", "Q6_K"} <= types  # really llama.cpp's K-quant mix
    path = tmp_path / FILE.name
    shutil.copy(FILE, path)
    converted, tokenizer = mlx_lm.load(str(ensure_converted(path)))
    text = "The quick brown fox jumps over the lazy dog."
    ids = tokenizer.encode(text, add_special_tokens=False)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert pieces[:2] == ["T", "he"] and "Ġthe" in pieces  # the file's merges apply

    def logits(model: Any) -> np.ndarray:
        return np.array(model(mx.array(ids)[None])[0].astype(mx.float32))

    ours, ref = logits(converted), logits(reference_model())
    # Q4_K blocks are kept exactly (4-bit MLX groups on the same grid), Q6_K re-gridded at 8 bits.
    assert np.abs(ours - ref).max() <= 0.01 * np.abs(ref).max()
    assert (ours.argmax(-1) == ref.argmax(-1)).all()
    layers = converted.model.layers
    assert (layers[0].mlp.up_proj.bits, layers[1].mlp.down_proj.bits) == (4, 8)


@pytest.mark.parametrize("kind", ["Q4_K", "Q5_K"])
def test_k_quant_blocks_become_the_same_values_in_mlx(kind: str) -> None:
    import mlx.core as mx

    from lollms_runtime.mlx.gguf_convert import _exact_affine

    qtype = gguf.GGMLQuantizationType[kind]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, size=(4, 2 * size), dtype=np.uint8)  # 4 rows of 2 blocks
    raw[:, [0, 1, 2, 3, size, size + 1, size + 2, size + 3]] = 0x20  # small, finite d and dmin

    class Tensor:
        tensor_type = qtype
        data = raw

    exact = _exact_affine(Tensor(), (4, 2 * block), gguf)
    assert exact is not None
    packed, scales, biases = exact
    ours = np.array(mx.dequantize(packed, scales, biases, group_size=32, bits=int(kind[1])))
    want = gguf.quants.dequantize(raw, qtype).reshape(4, 2 * block)
    assert np.abs(ours - want).max() <= 2e-3 * np.abs(want).max()
