"""How tiny-llama-Q4_K_M.gguf was made: a random tiny llama, written as llama.cpp writes an F32
GGUF (q/k rows permuted), then quantized by llama.cpp's own `llama-quantize` (built from the
llama.cpp sources in the `llama_cpp_python-0.3.36` sdist on PyPI):

    python tests/data/gguf_kquant/make.py /path/to/llama-quantize

Not run by the tests; they read the committed result.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np

HERE = Path(__file__).parent
HIDDEN, LAYERS, FFN, HEADS, KV_HEADS = 256, 2, 512, 4, 2
HEAD_DIM = HIDDEN // HEADS
MERGES = ["Ġ t", "h e", "Ġt he"]
MERGED = ["Ġt", "he", "Ġthe"]


def byte_tokens() -> list[str]:
    """GPT-2's printable spelling of the 256 bytes, two control tokens, three merged tokens."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    spelling = dict(zip(printable, (chr(c) for c in codes), strict=True))
    return [spelling[b] for b in range(256)] + ["<|endoftext|>", "<|im_start|>", *MERGED]


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py row order for q/k (interleaved rope pairs)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main(quantize: str) -> None:
    rng = np.random.default_rng(7)
    tokens = byte_tokens()

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.08).astype(np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "tiny-llama-F32.gguf"
        writer = gguf.GGUFWriter(str(source), "llama")
        writer.add_uint32("llama.embedding_length", HIDDEN)
        writer.add_uint32("llama.block_count", LAYERS)
        writer.add_uint32("llama.feed_forward_length", FFN)
        writer.add_uint32("llama.attention.head_count", HEADS)
        writer.add_uint32("llama.attention.head_count_kv", KV_HEADS)
        writer.add_uint32("llama.context_length", 512)
        writer.add_uint32("llama.rope.dimension_count", HEAD_DIM)
        writer.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        writer.add_float32("llama.rope.freq_base", 10000.0)
        writer.add_uint32("llama.vocab_size", len(tokens))
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(tokens)
        writer.add_token_types([1] * 256 + [3, 3] + [1] * len(MERGED))
        writer.add_token_merges(MERGES)
        writer.add_bos_token_id(256)
        writer.add_eos_token_id(256)
        writer.add_tensor("token_embd.weight", matrix(len(tokens), HIDDEN))
        for i in range(LAYERS):
            norm = (1 + rng.standard_normal(HIDDEN) * 0.1).astype(np.float32)
            writer.add_tensor(f"blk.{i}.attn_norm.weight", norm)
            writer.add_tensor(f"blk.{i}.attn_q.weight", permute(matrix(HIDDEN, HIDDEN), HEADS))
            k = permute(matrix(KV_HEADS * HEAD_DIM, HIDDEN), KV_HEADS)
            writer.add_tensor(f"blk.{i}.attn_k.weight", k)
            writer.add_tensor(f"blk.{i}.attn_v.weight", matrix(KV_HEADS * HEAD_DIM, HIDDEN))
            writer.add_tensor(f"blk.{i}.attn_output.weight", matrix(HIDDEN, HIDDEN))
            writer.add_tensor(f"blk.{i}.ffn_norm.weight", norm[::-1].copy())
            writer.add_tensor(f"blk.{i}.ffn_gate.weight", matrix(FFN, HIDDEN))
            writer.add_tensor(f"blk.{i}.ffn_up.weight", matrix(FFN, HIDDEN))
            writer.add_tensor(f"blk.{i}.ffn_down.weight", matrix(HIDDEN, FFN))
        writer.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        writer.add_tensor("output.weight", matrix(len(tokens), HIDDEN))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        target = HERE / "tiny-llama-Q4_K_M.gguf"
        subprocess.run([quantize, str(source), str(target), "Q4_K_M"], check=True)


if __name__ == "__main__":
    main(sys.argv[1])
