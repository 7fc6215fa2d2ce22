"""GGUF conversion end to end on tiny random llama / qwen2 models written the way llama.cpp does.

Each test builds a random mlx-lm model (the float reference), writes it as a GGUF file with the
`gguf` package (q/k rows permuted for llama, as convert_hf_to_gguf.py does), converts it back with
our converter and checks the converted model's logits against the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lollms_runtime.mlx.gguf_convert import ensure_converted
from lollms_runtime.mlx.models import embedded_gguf

gguf = pytest.importorskip("gguf")

# Hugging Face name -> llama.cpp name (the convention llama.cpp's converter writes).
HF_TO_GGUF = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf: str) -> str:
    base, _, suffix = hf.rpartition(".")
    if base.startswith("model.layers."):
        _, _, layer, rest = base.split(".", 3)
        return f"blk.{layer}.{HF_TO_GGUF[rest]}.{suffix}"
    return f"{HF_TO_GGUF[base]}.{suffix}"


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def tiny_model(family: str, **overrides: Any) -> tuple[Any, dict[str, Any]]:
    import mlx.core as mx
    from mlx_lm.utils import _get_classes

    config = {
        "model_type": family,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "vocab_size": 49152,
        "tie_word_embeddings": family == "qwen2",
        "max_position_embeddings": 512,
        **overrides,
    }
    model_class, args_class = _get_classes(config)
    mx.random.seed(3)
    model = model_class(args_class.from_dict(config))
    if family == "qwen2":  # make the attention biases matter
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias = mx.random.normal(proj.bias.shape) * 0.5
    mx.eval(model.parameters())
    return model, config


def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(
    path: Path,
    family: str,
    model: Any,
    config: dict[str, Any],
    quant: Any = None,
    extra: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Write ``model`` as llama.cpp would; returns the weights the file really holds (HF layout)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    _, meta = mx.load(str(embedded_gguf()), return_metadata=True)
    writer = gguf.GGUFWriter(str(path), family)
    writer.add_uint32(f"{family}.embedding_length", config["hidden_size"])
    writer.add_uint32(f"{family}.block_count", config["num_hidden_layers"])
    writer.add_uint32(f"{family}.feed_forward_length", config["intermediate_size"])
    writer.add_uint32(f"{family}.attention.head_count", config["num_attention_heads"])
    writer.add_uint32(f"{family}.attention.head_count_kv", config["num_key_value_heads"])
    writer.add_uint32(f"{family}.context_length", config["max_position_embeddings"])
    writer.add_float32(f"{family}.attention.layer_norm_rms_epsilon", config["rms_norm_eps"])
    writer.add_float32(f"{family}.rope.freq_base", config["rope_theta"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(list(meta["tokenizer.ggml.tokens"]))
    writer.add_token_types([int(t) for t in meta["tokenizer.ggml.token_type"].tolist()])
    writer.add_token_merges(list(meta["tokenizer.ggml.merges"]))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(str(meta["tokenizer.chat_template"]))
    held: dict[str, np.ndarray] = {}
    for name, value in tree_flatten(model.parameters()):
        array = np.array(value.astype(mx.float32))
        heads = 0
        if family == "llama" and (".q_proj." in name or ".k_proj." in name):
            heads = config["num_attention_heads" if ".q_proj." in name else "num_key_value_heads"]
            array = permute(array, heads)
        if quant is not None and array.ndim == 2:
            packed = gguf.quants.quantize(array, quant)
            writer.add_tensor(gguf_name(name), packed, raw_dtype=quant)
            array = gguf.quants.dequantize(packed, quant).reshape(array.shape)
        else:
            writer.add_tensor(gguf_name(name), array)
        held[name] = unpermute(array, heads) if heads else array
    for name, array in (extra or {}).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return held


def logits(model: Any, ids: list[int]) -> np.ndarray:
    import mlx.core as mx

    return np.array(model(mx.array(ids)[None]).astype(mx.float32))


IDS = [1, 504, 3458, 282, 4649, 314, 7042, 30, 216, 1780, 2, 17, 99, 1234]


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_float_gguf_converts_to_the_same_logits(
    family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlx_lm

    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    reference, config = tiny_model(family)
    path = tmp_path / f"tiny-{family}.gguf"
    write_gguf(path, family, reference, config)
    converted, tokenizer = mlx_lm.load(str(ensure_converted(path)))
    np.testing.assert_allclose(logits(converted, IDS), logits(reference, IDS), atol=1e-4, rtol=1e-4)
    assert tokenizer.encode("Hello world", add_special_tokens=False) == [19556, 905]


def test_quantizations_mlx_cannot_read_go_through_the_gguf_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlx.core as mx
    import mlx_lm

    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    reference, config = tiny_model("llama")
    path = tmp_path / "tiny-q5.gguf"
    held = write_gguf(path, "llama", reference, config, quant=gguf.GGMLQuantizationType.Q5_0)
    with pytest.raises((RuntimeError, ValueError)):
        mx.load(str(path))  # the case the fallback exists for
    folder = ensure_converted(path)
    converted, _ = mlx_lm.load(str(folder))
    float_logits = logits(reference, IDS)
    # The reference is the model with exactly the (dequantized) weights the file holds.
    reference.load_weights([(name, mx.array(value)) for name, value in held.items()])
    ours, ref = logits(converted, IDS), logits(reference, IDS)
    # Quantized again for MLX (8 bits for Q5_0): what that adds is small next to Q5_0's own error.
    assert np.abs(ours - ref).max() <= 0.25 * np.abs(float_logits - ref).max()
    proj = converted.model.layers[0].mlp.up_proj
    assert (proj.bits, proj.group_size) == (8, 32)
    float16_bytes = sum(v.size * 2 for v in held.values())
    assert (folder / "model.safetensors").stat().st_size < 0.6 * float16_bytes


def llama_cpp_rope_freqs(config: dict[str, Any], scaling: dict[str, float]) -> np.ndarray:
    """The ``rope_freqs`` divisors llama.cpp's convert_hf_to_gguf.py writes for Llama 3.x."""
    dim, base = config["head_dim"], config["rope_theta"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    context, factor = scaling["original_max_position_embeddings"], scaling["factor"]
    divisors = []
    for freq in 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim)):
        wavelength = 2 * np.pi / freq
        if wavelength < context / high:
            divisors.append(1.0)
        elif wavelength > context / low:
            divisors.append(factor)
        else:
            smooth = (context / wavelength - low) / (high - low)
            divisors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(divisors, dtype=np.float32)


def test_llama3_rope_scaling_comes_back_from_rope_freqs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlx_lm

    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    scaling = {
        "rope_type": "llama3",
        "factor": 32.0,  # Llama 3.2's
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    # Llama 3's base: with 8 frequencies, one is smoothed and three are divided by the factor.
    reference, config = tiny_model("llama", rope_theta=500000.0, rope_scaling=scaling)
    plain, _ = tiny_model("llama", rope_theta=500000.0)
    path = tmp_path / "tiny-llama3.gguf"
    rope_freqs = {"rope_freqs.weight": llama_cpp_rope_freqs(config, scaling)}
    write_gguf(path, "llama", reference, config, extra=rope_freqs)
    folder = ensure_converted(path)
    converted, _ = mlx_lm.load(str(folder))
    ids = [int(i) for i in np.random.default_rng(0).integers(3, 49152, size=400)]
    ours, ref = logits(converted, ids), logits(reference, ids)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)
    # The scaling matters at these positions: without it the logits move well past the tolerance.
    assert np.abs(logits(plain, ids) - ref).max() > 100 * 1e-4


def test_unknown_rope_freqs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lollms_runtime.mlx.gguf_convert import GGUFConversionError

    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    reference, config = tiny_model("llama")
    path = tmp_path / "tiny-odd-rope.gguf"
    odd = {"rope_freqs.weight": np.linspace(1, 3, config["head_dim"] // 2).astype(np.float32)}
    write_gguf(path, "llama", reference, config, extra=odd)
    with pytest.raises(GGUFConversionError, match="rope_freqs match no Llama 3 rope scaling"):
        ensure_converted(path)


def test_unsupported_architecture_is_refused_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lollms_runtime.mlx.gguf_convert import GGUFConversionError

    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    writer = gguf.GGUFWriter(str(tmp_path / "odd.gguf"), "mamba")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFConversionError, match="architecture 'mamba' is not supported"):
        ensure_converted(tmp_path / "odd.gguf")


def test_rope_scaling_metadata_maps_to_mlx_lm() -> None:
    from lollms_runtime.mlx.gguf_convert import GGUFConversionError, _rope_scaling

    config = {"head_dim": 16, "rope_theta": 10000.0}

    def scaling(**meta: Any) -> Any:
        return _rope_scaling(
            "qwen2", {f"qwen2.rope.scaling.{k}": v for k, v in meta.items()}, {}, config
        )

    assert scaling() is None
    assert scaling(type="linear", factor=1.0) is None
    assert scaling(type="linear", factor=4.0)["factor"] == 4.0
    yarn = scaling(type="yarn", factor=4.0, original_context_length=32768)
    assert (yarn["rope_type"], yarn["original_max_position_embeddings"]) == ("yarn", 32768)
    with pytest.raises(GGUFConversionError, match="rope scaling 'longrope' is not supported"):
        scaling(type="longrope", factor=2.0)
