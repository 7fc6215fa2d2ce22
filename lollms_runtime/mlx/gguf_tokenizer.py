"""Build a Hugging Face ``tokenizer.json`` and its config from a GGUF vocabulary (no torch)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


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
