"""The built-in embedding backend: an mlx-lm model's pooled hidden states.

Decoder embedding models such as Qwen3-Embedding are mlx-lm models read with last-token pooling;
mean pooling suits the others. The model is named by Hugging Face id or by folder, loaded on
first use and shared; imports of MLX happen only here.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .limits import KnowledgeError

MAX_TOKENS = 512  # of each text; a passage is about 200 tokens, a longer text is cut
_loaded: dict[str, tuple[Any, Any]] = {}
_lock = threading.Lock()


def _load(model: str) -> tuple[Any, Any]:
    with _lock:
        if model not in _loaded:
            from mlx_lm import load

            try:
                _loaded[model] = load(model)[:2]  # type: ignore[assignment]
            except Exception as exc:
                where = "folder" if Path(model).exists() else "Hugging Face id"
                raise KnowledgeError(
                    f"cannot load the embedding model {model!r} ({where}): {exc}",
                    "give an mlx-lm model folder, or an id already downloaded "
                    "(huggingface-cli download ID)",
                ) from None
        return _loaded[model]


class MLXEmbeddings:
    """:class:`~lollms_runtime.knowledge.embeddings.EmbeddingBackend` on MLX."""

    def __init__(self, model: str, pooling: str = "mean") -> None:
        if not model:
            raise KnowledgeError("the mlx embedding backend needs a model (id or folder)")
        if pooling not in ("mean", "last"):
            raise KnowledgeError(f"pooling must be mean or last, got {pooling!r}")
        self.model_name = model
        self.pooling = pooling
        self.identity = f"mlx:{model}:{pooling}"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import mlx.core as mx

        model, tokenizer = _load(self.model_name)
        inner = getattr(model, "model", None)
        if inner is None:
            raise KnowledgeError(f"{self.model_name}: this model kind exposes no hidden states")
        out: list[list[float]] = []
        for text in texts:
            ids = list(tokenizer.encode(text or " "))[:MAX_TOKENS] or [0]
            hidden = inner(mx.array([ids]))[0].astype(mx.float32)  # (tokens, width)
            pooled = hidden[-1] if self.pooling == "last" else mx.mean(hidden, axis=0)
            out.append([float(x) for x in pooled.tolist()])  # type: ignore[union-attr,arg-type]
        return out
