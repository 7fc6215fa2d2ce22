"""Convert a GGUF file (llama.cpp, Ollama, LoLLMs) into an MLX model folder for mlx_lm.load.

Q4_0, Q4_1 and Q8_0 tensors come straight out of ``mx.load`` as MLX quantized arrays (group size
32). Files with other types are read with the ``gguf`` package: Q4_K/Q5_K blocks become MLX
4/5-bit arrays holding the same values, other quantizations are quantized again as MLX affine
arrays (group 32, two bits more than the source).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..home import models_dir
from .gguf_tokenizer import write_tokenizer

CONVERTER_VERSION = "2"  # bump when the output layout changes so cached folders are rebuilt
_lock = threading.Lock()

# llama.cpp tensor names -> Hugging Face / mlx-lm names (per block; suffixes are kept).
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
# Families whose q/k rows llama.cpp permuted for its interleaved rope (qwen models use NEOX rope).
_PERMUTED_FAMILIES = {"llama"}
SUPPORTED_FAMILIES = ("llama", "qwen2", "qwen3")


class GGUFConversionError(ValueError):
    """A GGUF file this converter cannot turn into an MLX model; the message says why."""


def converted_folder(gguf_path: Path) -> Path:
    """Where the MLX conversion of ``gguf_path`` is cached (keyed by size, mtime and converter)."""
    stat = gguf_path.stat()
    key = f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{CONVERTER_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return models_dir() / f"{gguf_path.stem}-{digest}"


def ensure_converted(gguf_path: str | os.PathLike[str]) -> Path:
    """The MLX folder for a GGUF file, converting it on first use (once, then cached)."""
    path = Path(gguf_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    target = converted_folder(path)
    with _lock:
        if (target / "config.json").is_file():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            convert_gguf(path, tmp)
            try:
                tmp.rename(target)
            except OSError:  # another process finished first: keep its folder
                if not (target / "config.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Write config.json, model.safetensors and tokenizer files for ``gguf_path`` in ``out_dir``."""
    import mlx.core as mx

    reader = _reader_if_mlx_cannot_keep(gguf_path)
    if reader is not None:
        # mx.load refuses some of its types and turns the rest (K-quants) into float16.
        weights, metadata = _load_with_gguf_package(gguf_path, reader)
    else:
        loaded: Any = mx.load(str(gguf_path), return_metadata=True)
        weights, metadata = loaded
    meta = {key: _plain(value) for key, value in metadata.items()}
    family = str(meta.get("general.architecture", "?"))
    if family not in SUPPORTED_FAMILIES:
        raise GGUFConversionError(
            f"{gguf_path.name}: architecture {family!r} is not supported by the GGUF converter "
            f"(supported: {', '.join(SUPPORTED_FAMILIES)}); "
            "use an MLX model from Hugging Face instead"
        )
    config = _config(family, meta, weights)
    tensors = _rename(weights, config, permuted=family in _PERMUTED_FAMILIES)
    out_dir.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out_dir / "model.safetensors"), tensors, metadata={"format": "mlx"})
    write_tokenizer(meta, out_dir)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))


def _plain(value: Any) -> Any:
    """GGUF metadata values as Python objects (mx.load returns scalars and arrays as mx.array)."""
    return value.tolist() if hasattr(value, "tolist") else value


def _config(family: str, meta: Mapping[str, Any], weights: Mapping[str, Any]) -> dict[str, Any]:
    def get(key: str, default: Any = None) -> Any:
        return meta.get(f"{family}.{key}", default)

    heads = int(get("attention.head_count"))
    hidden = int(get("embedding_length"))
    vocab = int(get("vocab_size") or len(meta["tokenizer.ggml.tokens"]))
    config: dict[str, Any] = {
        "model_type": family,
        "architectures": [_ARCHITECTURES[family]],
        "hidden_size": hidden,
        "num_hidden_layers": int(get("block_count")),
        "intermediate_size": int(get("feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(get("attention.head_count_kv", heads)),
        "head_dim": int(get("attention.key_length") or hidden // heads),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(get("context_length", 4096)),
        "vocab_size": vocab,
        "tie_word_embeddings": "output.weight" not in weights,
        "attention_bias": "blk.0.attn_q.bias" in weights,
        "mlp_bias": False,
    }
    for name in ("bos", "eos"):
        token_id = meta.get(f"tokenizer.ggml.{name}_token_id")
        if token_id is not None:
            config[f"{name}_token_id"] = int(token_id)
    scaling = _rope_scaling(family, meta, weights, config)
    if scaling is not None:
        config["rope_scaling"] = scaling
    if any(key.endswith(".scales") for key in weights):
        # A default only: mlx-lm infers bits and group size per layer from the scales' shapes.
        config["quantization"] = {"group_size": 32, "bits": 4, "mode": "affine"}
    return config


# Llama 3.x's rope scaling, written by llama.cpp only as the per-frequency divisors in the
# ``rope_freqs`` tensor; these are the parameters Meta's configs use (3.1: factor 8, 3.2: 32).
_LLAMA3_CANDIDATES = [
    (low, high, context)
    for context in (8192, 4096, 16384, 32768)
    for low, high in ((1.0, 4.0), (1.0, 8.0), (1.0, 2.0), (2.0, 4.0), (2.0, 8.0))
]


def _rope_scaling(
    family: str, meta: Mapping[str, Any], weights: Mapping[str, Any], config: Mapping[str, Any]
) -> dict[str, Any] | None:
    """mlx-lm's ``rope_scaling`` for the file: Llama 3's from ``rope_freqs``, or linear / YaRN."""
    if "rope_freqs.weight" in weights:
        return _llama3_scaling(weights["rope_freqs.weight"], config)
    kind = str(meta.get(f"{family}.rope.scaling.type") or "none")
    factor = float(meta.get(f"{family}.rope.scaling.factor") or 0.0)
    if kind == "none" or factor in (0.0, 1.0):
        return None
    if kind == "linear":
        return {"type": "linear", "rope_type": "linear", "factor": factor}
    if kind == "yarn":
        context = meta.get(f"{family}.rope.scaling.original_context_length")
        scaling: dict[str, Any] = {"type": "yarn", "rope_type": "yarn", "factor": factor}
        if context:
            scaling["original_max_position_embeddings"] = int(context)
        return scaling
    raise GGUFConversionError(
        f"rope scaling {kind!r} is not supported by the GGUF converter (linear, yarn and "
        "Llama 3's are); use an MLX model from Hugging Face instead"
    )


def _llama3_scaling(freqs: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """The Llama 3 parameters that reproduce llama.cpp's ``rope_freqs`` divisors exactly."""
    import numpy as np

    divisors = np.array(freqs, dtype=np.float64).reshape(-1)
    factor = float(divisors.max())
    dim = int(config["head_dim"])
    inverse = float(config["rope_theta"]) ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    wavelengths = 2 * np.pi * inverse
    for low, high, context in _LLAMA3_CANDIDATES:
        smooth = (context / wavelengths - low) / (high - low)
        expected = np.where(
            wavelengths < context / high,
            1.0,
            np.where(wavelengths > context / low, factor, 1 / ((1 - smooth) / factor + smooth)),
        )
        if expected.shape == divisors.shape and np.allclose(expected, divisors, rtol=1e-4):
            return {
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low,
                "high_freq_factor": high,
                "original_max_position_embeddings": context,
            }
    raise GGUFConversionError(
        "the file's rope_freqs match no Llama 3 rope scaling this converter knows; "
        "use an MLX model from Hugging Face instead"
    )


_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}


def _rename(
    weights: Mapping[str, Any], config: Mapping[str, Any], permuted: bool
) -> dict[str, Any]:
    tensors: dict[str, Any] = {}
    for name, value in weights.items():
        base, _, suffix = name.rpartition(".")
        parts = base.split(".")
        if parts[0] == "blk" and len(parts) == 3 and parts[2] in _BLOCK_NAMES:
            layer, kind = parts[1], parts[2]
            new = f"model.layers.{layer}.{_BLOCK_NAMES[kind]}.{suffix}"
            if permuted and kind in ("attn_q", "attn_k") and suffix != "bias":
                heads = config["num_attention_heads" if kind == "attn_q" else "num_key_value_heads"]
                value = unpermute_rows(value, heads)
        elif base in _TOP_NAMES:
            new = f"{_TOP_NAMES[base]}.{suffix}"
        elif base == "rope_freqs":
            continue  # Llama 3's rope scaling: in the config as rope_scaling (see _rope_scaling)
        else:
            raise GGUFConversionError(f"unexpected tensor {name!r} in the GGUF file")
        tensors[new] = value
    return tensors


def unpermute_rows(weight: Any, heads: int) -> Any:
    """Undo llama.cpp's q/k row permutation (interleaved rope pairs -> HF's half-split layout).

    llama.cpp writes ``w.reshape(heads, 2, rows // heads // 2, ...).swapaxes(1, 2)``; rows are the
    output features, so the same reordering applies to packed weights, scales and biases alike.
    """
    rows = weight.shape[0]
    rest = tuple(weight.shape[1:])
    return weight.reshape(heads, rows // heads // 2, 2, *rest).swapaxes(1, 2).reshape(rows, *rest)


# MLX affine bits for a llama.cpp quantization read through the gguf package: two bits more than
# the source (a grid 4x finer, so re-gridding adds about 1/16 of the file's own quantization noise),
# 8 from 5 bits up; MLX has no K-quant kernels, and float16 would triple a Q4_K_M file's size.
# (Q4_0/Q4_1/Q8_0 get here only beside other types: alone, mx.load reads them exactly.)
_REQUANT_BITS = {
    "Q1_0": 4, "TQ1_0": 4, "TQ2_0": 4, "IQ1_S": 4, "IQ1_M": 4, "IQ2_XXS": 4, "IQ2_XS": 4,
    "IQ2_S": 4, "Q2_K": 4, "IQ3_XXS": 5, "IQ3_S": 5, "Q3_K": 5, "IQ4_NL": 6, "IQ4_XS": 6,
    "Q4_K": 6, "MXFP4": 6, "NVFP4": 6, "Q4_0": 6, "Q4_1": 6, "Q5_0": 8, "Q5_1": 8, "Q5_K": 8,
    "Q6_K": 8, "Q8_0": 8, "Q8_1": 8, "Q8_K": 8,
}  # fmt: skip
REQUANT_GROUP = 32


# Tensor types mx.load reads as they are: floats, and the quantizations that map exactly onto
# MLX's affine group-32 arrays.
MLX_NATIVE_TYPES = frozenset({"F32", "F16", "Q4_0", "Q4_1", "Q8_0"})


def _reader_if_mlx_cannot_keep(path: Path) -> Any:
    """A ``gguf.GGUFReader`` of ``path`` when it holds types beyond :data:`MLX_NATIVE_TYPES`.

    None when ``mx.load`` reads every tensor as it is (or without the gguf package: then
    ``mx.load`` alone reads the file, and K-quants come out as float16).
    """
    try:
        import gguf
    except ImportError:
        return None
    reader = gguf.GGUFReader(str(path))  # memory-mapped: the header only is parsed here
    types = {t.tensor_type.name for t in reader.tensors}
    return reader if types - MLX_NATIVE_TYPES else None


def _load_with_gguf_package(path: Path, reader: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read any GGUF quantization through the ``gguf`` package (``reader`` is its GGUFReader).

    Q4_K/Q5_K matrices become MLX arrays with the same values (:func:`_exact_affine`); other
    quantized matrices are dequantized and quantized again as MLX affine arrays (group 32, bits
    from :data:`_REQUANT_BITS`), so a K-quant file does not triple in size as float16 would.
    Norms stay float32 and float tensors keep their precision.
    """
    import gguf
    import mlx.core as mx
    import numpy as np

    weights: dict[str, Any] = {}
    for tensor in reader.tensors:
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        base = tensor.name.removesuffix(".weight")
        exact = _exact_affine(tensor, shape, gguf) if len(shape) == 2 else None
        if exact is not None:  # no dequantizing: the blocks are re-packed as they are
            weights[f"{base}.weight"], weights[f"{base}.scales"], weights[f"{base}.biases"] = exact
            continue
        try:
            array = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(shape)
        except NotImplementedError as exc:
            raise GGUFConversionError(
                f"{path.name}: tensor {tensor.name} uses {tensor.tensor_type.name}, which the "
                "gguf package cannot read; pick another quantization of this model"
            ) from exc
        bits = _REQUANT_BITS.get(tensor.tensor_type.name)
        if array.ndim == 1:
            weights[tensor.name] = mx.array(array.astype(np.float32))  # norms stay float32
        elif bits and array.ndim == 2 and shape[-1] % REQUANT_GROUP == 0:
            packed, scales, biases = mx.quantize(
                mx.array(array.astype(np.float32)), group_size=REQUANT_GROUP, bits=bits
            )
            weights[f"{base}.weight"] = packed
            weights[f"{base}.scales"] = scales.astype(mx.float16)
            weights[f"{base}.biases"] = biases.astype(mx.float16)
        else:
            weights[tensor.name] = mx.array(array.astype(np.float16))
    metadata: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        metadata[key] = _field_value(field, gguf)
    return weights, metadata


# K-quants whose 32-value sub-blocks are affine grids, as MLX's group-32 arrays are: bits of q.
_EXACT_BITS = {"Q4_K": 4, "Q5_K": 5}


def _exact_affine(tensor: Any, shape: tuple[int, ...], gguf: Any) -> tuple[Any, Any, Any] | None:
    """Q4_K / Q5_K blocks as MLX affine arrays holding the very same values (same q, same grid).

    Each 32-value sub-block is ``d*sc*q - dmin*m``: an MLX group with scale ``d*sc`` and bias
    ``-dmin*m``; only the float16 rounding of those two products differs from llama.cpp.
    """
    import mlx.core as mx
    import numpy as np

    bits = _EXACT_BITS.get(tensor.tensor_type.name)
    if bits is None or shape[-1] % 256:
        return None
    _, type_size = gguf.GGML_QUANT_SIZES[tensor.tensor_type]
    blocks = np.asarray(tensor.data).view(np.uint8).reshape(-1, type_size)
    count = blocks.shape[0]
    d = blocks[:, 0:2].view(np.float16).astype(np.float32)
    dmin = blocks[:, 2:4].view(np.float16).astype(np.float32)
    sc, m = gguf.quants.Q4_K.get_scale_min(blocks[:, 4:16])  # Q5_K packs them the same way
    nibbles = np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    low = blocks[:, -128:].reshape(count, 4, 1, 32) >> nibbles
    q = (low & np.uint8(0x0F)).reshape(count, 8, 32)
    if bits == 5:  # the fifth bit of each value, one byte per position, one bit per sub-block
        shifts = np.arange(8, dtype=np.uint8).reshape(1, 8, 1)
        high = (blocks[:, 16:48].reshape(count, 1, 32) >> shifts) & np.uint8(1)
        q = q | (high << np.uint8(4))
    rows = shape[0]
    scales = (d * sc.astype(np.float32)).reshape(rows, -1)
    biases = -(dmin * m.astype(np.float32)).reshape(rows, -1)
    packed = _pack_bits(q.reshape(rows, -1), bits)
    return (
        mx.array(packed),
        mx.array(scales.astype(np.float16)),
        mx.array(biases.astype(np.float16)),
    )


def _pack_bits(q: Any, bits: int) -> Any:
    """Values < 2**bits as MLX packs them: a little-endian bit stream per row, in uint32 words."""
    import numpy as np

    planes = (q[..., None] >> np.arange(bits, dtype=np.uint8)) & np.uint8(1)
    packed = np.packbits(planes.reshape(q.shape[0], -1), axis=-1, bitorder="little")
    return packed.view("<u4")


def _field_value(field: Any, gguf: Any) -> Any:
    types = field.types
    if not types:
        return None

    def scalar(index: int, kind: Any) -> Any:
        part = field.parts[index]
        if kind == gguf.GGUFValueType.STRING:
            return bytes(part).decode("utf-8", errors="replace")
        return part.tolist()[0]

    if types[0] == gguf.GGUFValueType.ARRAY:
        return [scalar(i, types[-1]) for i in field.data]
    return scalar(field.data[0], types[0])
