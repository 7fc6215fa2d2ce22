"""Built-in plugin: the ``retrieve`` step kind and the MLX embedding backend.

Registering stays cheap (no SQLite, no numpy, no MLX until a step runs or a backend is created).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..contracts import StepKind
from ..plugins import hookimpl


def run_retrieve(ctx: Any, body: Mapping[str, Any]) -> Any:
    """Search the personality's documents and the discussion's files; the output is a list of
    passages ``{text, source, location, score, cite}`` for later templates."""
    from ..engine import StepError
    from ..knowledge.limits import KnowledgeError
    from ..knowledge.turn import search

    query = ctx.render(body["query"]) if "query" in body else ctx.turn.message
    limit = ctx.number(body, "limit", int) or 3
    min_score = ctx.number(body, "min_score", float) or 0.0
    try:
        found = search(
            ctx,
            query,
            limit,
            min_score,
            tuple(body.get("from", ("personality", "discussion"))),
            body.get("embedding"),
        )
    except KnowledgeError as exc:
        raise StepError(str(exc), exc.hint or "check knowledge: in the personality") from None
    ctx.detail = f"{len(found)} passage(s) for {query[:80]!r}" + (
        ": " + ", ".join(f"{p.source} {p.score:.2f}" for p in found) if found else ""
    )
    return [p.as_variable() for p in found]
    yield  # a runner is a generator


RETRIEVE = StepKind(
    name="retrieve",
    run=run_retrieve,
    summary="Find passages in the personality's knowledge: documents and the discussion's "
    "attached files (BM25; hybrid with an embedding model).",
    schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "query": {
                "type": "string",
                "description": "What to search for (a template); default: the user's message.",
            },
            "limit": {
                "type": ["integer", "string"],
                "minimum": 1,
                "maximum": 50,
                "description": "How many passages at most (default 3).",
            },
            "min_score": {
                "type": ["number", "string"],
                "minimum": 0,
                "description": "Leave out passages scoring lower (BM25, or 0..1 when hybrid).",
            },
            "from": {
                "type": "array",
                "items": {"enum": ["personality", "discussion"]},
                "uniqueItems": True,
                "description": "Which indexes: the personality's documents, the discussion's "
                "attached files (default both).",
            },
            "embedding": {
                "type": "object",
                "additionalProperties": False,
                "required": ["model"],
                "properties": {
                    "backend": {"type": "string", "description": "Embedding backend (mlx)."},
                    "model": {
                        "type": "string",
                        "minLength": 1,
                        "description": "Hugging Face id or folder of the embedding model.",
                    },
                    "pooling": {"enum": ["mean", "last"], "description": "How tokens pool."},
                },
                "description": "Rank by meaning too (hybrid with BM25).",
            },
        },
    },
    templates=("query",),
    example="""\
pipeline:
  - retrieve: {id: found, query: "{{ message }}", limit: 3}
  - generate:
      id: answer
      prompt: |
        {% for p in found %}[{{ loop.index }}] ({{ p.cite }}) {{ p.text }}
        {% endfor %}
        Answer from the passages above and cite them as [n]: {{ message }}
  - reply: {text: "{{ answer }}"}
""",
)


@hookimpl
def register_step_kinds(register: Any) -> None:
    register(RETRIEVE)


def _mlx_embeddings(model: str = "", **options: Any) -> Any:
    from ..knowledge.mlx_embed import MLXEmbeddings

    return MLXEmbeddings(model, **options)


@hookimpl
def register_embedding_backends(register: Any) -> None:
    from ..knowledge.embeddings import EmbeddingBackendFactory

    register(
        EmbeddingBackendFactory(
            "mlx",
            _mlx_embeddings,
            "Pooled hidden states of an mlx-lm model (e.g. Qwen3-Embedding) by id or folder.",
        )
    )
