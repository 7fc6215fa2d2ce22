"""Build a Hugging Face ``tokenizer.json`` and its config from a GGUF vocabulary (no torch)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# llama.cpp's pre-tokenizer names (``tokenizer.ggml.pre``) for which it takes a word that is in the
# vocabulary whole, before any merge (llama-vocab.cpp's ``ignore_merges``; ``"ignore_merges": true``
# in the original tokenizer.json). Llama 3 relies on it: " Việt" is one token no merge reaches.
IGNORE_MERGES = frozenset(
    {
        "llama3",
        "llama-v3",
        "llama-bpe",
        "falcon3",
        "falcon-h1",
        "pixtral",
        "midm-2.0",
        "lfm2",
        "jina-v5-nano",
        "minicpm5",
        "youtu",
        "glm4",
        "glm5",
        "tekken",
        "granite-embed-multi-97m",
    }
)
SPACE = "\u2581"  # sentencepiece's visible space


def write_tokenizer(meta: Mapping[str, Any], out_dir: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and the chat template for a GGUF's metadata."""
    # transformers' GGUF converter; its module imports no torch (only its GGUF reader does).
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING,
        convert_gguf_tokenizer,
    )

    renames = GGUF_TOKENIZER_MAPPING["tokenizer"]
    tokenizer_dict = {
        name: meta[f"tokenizer.{key}"]
        for key, name in renames.items()
        if f"tokenizer.{key}" in meta
    }
    family = str(meta["general.architecture"])
    backend, _ = convert_gguf_tokenizer(family, tokenizer_dict)
    if tokenizer_dict.get("pre_tokenizer_type") in IGNORE_MERGES:
        backend.model.ignore_merges = True
    if tokenizer_dict.get("tokenizer_type") == "llama" and family in _PLAIN_SENTENCEPIECE:
        _spell_spaces_like_llama_cpp(
            backend, bool(meta.get("tokenizer.ggml.add_space_prefix", True))
        )
    backend.save(str(out_dir / "tokenizer.json"))

    tokens = meta["tokenizer.ggml.tokens"]

    def token(key: str) -> str | None:
        index = meta.get(f"tokenizer.ggml.{key}")
        return str(tokens[int(index)]) if index is not None else None

    sentencepiece = tokenizer_dict.get("tokenizer_type") == "llama"
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("bos_token_id"),
        "eos_token": token("eos_token_id"),
        "unk_token": token("unknown_token_id"),
        "pad_token": token("padding_token_id"),
        # llama.cpp adds BOS to sentencepiece vocabularies unless the file says otherwise.
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", sentencepiece)),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(meta.get(f"{family}.context_length", 4096)),
    }
    template = meta.get("tokenizer.chat_template")
    if template:
        config["chat_template"] = str(template)
        (out_dir / "chat_template.jinja").write_text(str(template))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {k: v for k, v in config.items() if k.endswith("_token") and v is not None}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2))


# Families whose sentencepiece vocabulary transformers builds with its generic Llama recipe.
_PLAIN_SENTENCEPIECE = frozenset({"llama", "qwen2", "qwen3"})


def _spell_spaces_like_llama_cpp(backend: Any, add_space_prefix: bool) -> None:
    """Sentencepiece the way llama.cpp (and Llama 2's own tokenizer.json) does it.

    One space is prepended to the text and every space becomes "\u2581", with no splitting: " " is
    "\u2581\u2581" (one token in Llama 2's vocabulary), where transformers' ``Metaspace`` recipe gives
    "\u2581" and disagrees with llama.cpp on every text that starts with spaces.
    """
    from tokenizers import decoders, normalizers

    steps = [normalizers.Prepend(SPACE)] if add_space_prefix else []
    backend.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", SPACE)])
    backend.pre_tokenizer = None
    decode = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_space_prefix:
        decode.append(decoders.Strip(" ", 1, 0))
    backend.decoder = decoders.Sequence(decode)
