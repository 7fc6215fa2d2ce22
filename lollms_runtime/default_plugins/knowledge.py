"""Built-in plugin: the ``retrieve`` step kind and the MLX embedding backend.

Registering stays cheap (no SQLite, no numpy, no MLX until a step runs or a backend is created).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from ..contracts import StepKind
from ..plugins import hookimpl


def run_retrieve(ctx: Any, body: Mapping[str, Any]) -> Any:
    """Search the personality's documents and the discussion's files; the output is a list of
    passages ``{text, source, location, score, cite}`` for later templates."""
    from ..context import StepError
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


@hookimpl
def register_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "knowledge",
        help="index a personality's knowledge: documents and search them",
        description="Index (when they changed) and search a personality's knowledge: documents, "
        "and a discussion's attached files with --discussion; shows what a retrieve step finds.",
    )
    p.add_argument("id", help="personality id, or the path of its file or folder")
    p.add_argument("query", nargs="?", help="what to search for (none: only index and report)")
    p.add_argument(
        "--limit",
        type=int,
        default=3,
        choices=range(1, 51),
        metavar="N",
        help="passages to show (1-50, default 3)",
    )
    p.add_argument("--discussion", metavar="ID", help="also search this discussion's files")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_knowledge)


def _cmd_knowledge(args: Any) -> int:
    import json

    from ..catalog import Catalog
    from ..knowledge.library import discussion_index, patterns, personality_index
    from ..loader import default_host

    catalog = Catalog(default_host(), getattr(args, "personalities", None) or ())
    personality = catalog.resolve(args.id)
    indexes = []
    own = personality_index(personality)
    if own is not None:
        indexes.append(own)
        documents = len(own.known())
        print(
            f"{personality.id}: {documents} document(s), {own.chunk_count()} passage(s) "
            f"from {', '.join(patterns(personality.raw.get('knowledge')))} (index: {own.path})",
            file=sys.stderr,
        )
    else:
        print(f"{personality.id}: no knowledge: documents", file=sys.stderr)
    mine = discussion_index(args.discussion)
    if mine is not None:
        indexes.append(mine)
    if not args.query:
        return 0
    found = sorted(
        (p for index in indexes for p in index.search(args.query, args.limit)),
        key=lambda p: -p.score,
    )[: args.limit]
    if args.json:
        print(json.dumps([p.as_variable() for p in found], ensure_ascii=False))
        return 0
    for number, p in enumerate(found, 1):
        print(f"[{number}] {p.as_variable()['cite']} (score {p.score:.2f})")
        print("    " + " ".join(p.text.split())[:300])
    if not found:
        print("no passage matches", file=sys.stderr)
    return 0
