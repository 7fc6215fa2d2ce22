"""Dense retrieval as a plugin contract: an embedding backend turns texts into vectors.

Plugins register factories through the ``register_embedding_backends`` hook
(``register(EmbeddingBackendFactory(...))``); the built-in one runs an MLX model (see
:mod:`.mlx_embed`). Vectors are stored beside the passages in the index, keyed by the backend's
``identity`` (model and pooling), so changing the model never mixes vectors of two models.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .index import Index, Passage
from .limits import KnowledgeError

BATCH = 16


@runtime_checkable
class EmbeddingBackend(Protocol):
    """Turns texts into vectors of one fixed size (any scale: they are normalised here)."""

    identity: str

    def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]: ...


@dataclass(frozen=True)
class EmbeddingBackendFactory:
    """Creates embedding backends: ``create(model, **options)``; import heavy modules lazily."""

    name: str
    create: Callable[..., EmbeddingBackend]
    summary: str = ""


_factories_lock = threading.Lock()
_backends: dict[tuple[str, str, tuple[tuple[str, Any], ...]], EmbeddingBackend] = {}


def factories(pm: Any) -> dict[str, EmbeddingBackendFactory]:
    """The embedding backend factories the plugins of ``pm`` register."""
    found: dict[str, EmbeddingBackendFactory] = {}

    def register(factory: EmbeddingBackendFactory) -> None:
        found.setdefault(factory.name, factory)

    hook = getattr(pm.hook, "register_embedding_backends", None)
    if hook is not None:
        hook(register=register)
    return found


def embedding_backend(pm: Any, spec: Mapping[str, Any]) -> EmbeddingBackend:
    """The backend a step's ``embedding:`` names (``backend``, ``model``, options), shared."""
    name = str(spec.get("backend", "mlx"))
    model = str(spec.get("model", ""))
    options = {k: v for k, v in spec.items() if k not in ("backend", "model")}
    key = (name, model, tuple(sorted(options.items())))
    with _factories_lock:
        if key in _backends:
            return _backends[key]
        available = factories(pm)
        if name not in available:
            known = ", ".join(sorted(available)) or "none"
            raise KnowledgeError(
                f"no embedding backend named '{name}' (installed: {known})",
                "install the plugin that provides it, or use backend: mlx",
            )
        backend = available[name].create(model, **options)
        _backends[key] = backend
        return backend


def _normalised(rows: Sequence[Sequence[float]]) -> Any:
    import numpy as np

    matrix = np.asarray(rows, dtype=np.float32)
    if matrix.ndim != 2:
        raise KnowledgeError("the embedding backend returned vectors of different sizes")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def embed_missing(index: Index, backend: EmbeddingBackend) -> int:
    """Embed the passages that have no vector for this backend yet; returns how many."""
    rows = index.missing_vectors(backend.identity)
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        vectors = _normalised(backend.embed([text for _, text in batch]))
        index.put_vectors(
            backend.identity,
            [(cid, vec.tobytes()) for (cid, _), vec in zip(batch, vectors, strict=True)],
        )
    return len(rows)


def dense_search(index: Index, backend: EmbeddingBackend, query: str, limit: int) -> list[Passage]:
    """The ``limit`` passages whose vectors are closest to the query's (cosine similarity)."""
    import numpy as np

    embed_missing(index, backend)
    stored = index.vectors(backend.identity)
    if not stored:
        return []
    ids = [cid for cid, _ in stored]
    matrix = np.stack([np.frombuffer(blob, dtype=np.float32) for _, blob in stored])
    q = _normalised(backend.embed([query]))[0]
    if q.shape[0] != matrix.shape[1]:
        raise KnowledgeError("the stored vectors and the query's have different sizes")
    scores = matrix @ q
    best = np.argsort(-scores)[:limit]
    found = index.passages([ids[i] for i in best])
    return [
        Passage(p.text, p.source, p.location, float(scores[i]), p.chunk_id)
        for i in best
        if (p := found.get(ids[i])) is not None
    ]


def hybrid(lexical: Sequence[Passage], dense: Sequence[Passage], limit: int) -> list[Passage]:
    """Both rankings fused: BM25 scaled to [0, 1] by the best one, plus cosine similarity, halved.
    A passage found by one ranking only gets that half."""
    top = max((p.score for p in lexical), default=0.0) or 1.0
    fused: dict[tuple[str, int], tuple[Passage, float]] = {}
    for p in lexical:
        fused[(p.source, p.chunk_id)] = (p, 0.5 * p.score / top)
    for p in dense:
        key = (p.source, p.chunk_id)
        base, score = fused.get(key, (p, 0.0))
        fused[key] = (base, score + 0.5 * max(0.0, p.score))
    ranked = sorted(fused.values(), key=lambda item: -item[1])[:limit]
    return [Passage(p.text, p.source, p.location, s, p.chunk_id) for p, s in ranked]
