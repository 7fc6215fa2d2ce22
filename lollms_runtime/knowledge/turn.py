"""Knowledge in a turn: the lorebook applied to every model call, the passages the default chat
retrieves, and the ``retrieve`` step's search. Called from the generate path with the step context.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..backends.base import ChatMessage
from .index import Index, Passage
from .limits import MAX_PASSAGES
from .lore import Lorebook, LoreResult, apply, parse_lore, select

_LORE = "_lollms_lore"
_AUTO = "_lollms_auto_passages"
AUTO_PASSAGES = 3


def lorebook(personality: Any) -> Lorebook:
    """The parsed lorebook of a personality; parsed once per distinct ``lore:`` content (a
    personality reloaded with other entries gets them, the same one is not parsed twice)."""
    data = personality.raw.get("lore")
    if not data:
        return Lorebook(())
    return _parsed(json.dumps(data, sort_keys=True, default=str))


@functools.lru_cache(maxsize=64)
def _parsed(source: str) -> Lorebook:
    return parse_lore(json.loads(source))


def turn_lore(ctx: Any) -> LoreResult:
    """The entries that fire this turn (computed once per step context); templates read them as
    ``lore`` (see :class:`.variables.TurnLore`)."""
    cached = getattr(ctx, _LORE, None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    book = lorebook(ctx.personality)
    result = select(book, ctx.turn.message, ctx.turn.history) if book.entries else LoreResult()
    setattr(ctx, _LORE, result)
    return result


def sources(ctx: Any, wanted: Sequence[str] = ("personality", "discussion")) -> list[Index]:
    """The indexes a turn may read: the personality's documents and the discussion's files."""
    from .library import discussion_index, personality_index

    found: list[Index] = []
    if "personality" in wanted and (own := personality_index(ctx.personality)) is not None:
        found.append(own)
    if "discussion" in wanted and (mine := discussion_index(ctx.turn.discussion_id)) is not None:
        found.append(mine)
    return found


def search(
    ctx: Any,
    query: str,
    limit: int,
    min_score: float = 0.0,
    wanted: Sequence[str] = ("personality", "discussion"),
    embedding: Mapping[str, Any] | None = None,
) -> list[Passage]:
    """The best passages over the turn's indexes: BM25, or hybrid when an embedding is named."""
    limit = max(1, min(limit, MAX_PASSAGES))
    found: list[Passage] = []
    backend = None
    if embedding:
        from .embeddings import embedding_backend

        backend = embedding_backend(ctx.plugins.pm, embedding)
    for index in sources(ctx, wanted):
        lexical = index.search(query, limit * (4 if backend else 1))
        if backend is None:
            found.extend(lexical)
            continue
        from .embeddings import dense_search, hybrid

        found.extend(hybrid(lexical, dense_search(index, backend, query, limit * 4), limit))
    found.sort(key=lambda p: -p.score)
    return [p for p in found if p.score >= min_score][:limit]


def passages_block(passages: Sequence[Passage]) -> str:
    """Passages as the model reads them, numbered so that the reply can cite ``[1]``."""
    lines = ["Passages from the documents (cite them as [1], [2], ... when you use them):"]
    for number, p in enumerate(passages, 1):
        where = f"{p.source}, {p.location}" if p.location else p.source
        lines.append(f"[{number}] ({where}) {p.text}")
    return "\n\n".join(lines)


def _auto_passages(ctx: Any) -> list[Passage]:
    """The default chat (a personality without a pipeline) reads its documents and the
    discussion's files by itself: the best passages for the user's message."""
    cached = getattr(ctx, _AUTO, None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    found: list[Passage] = []
    if not ctx.personality.pipeline:
        found = search(ctx, ctx.turn.message, AUTO_PASSAGES)
        ctx.variables["passages"] = [p.as_variable() for p in found]
    setattr(ctx, _AUTO, found)
    return found


def with_knowledge(ctx: Any, messages: list[ChatMessage]) -> list[ChatMessage]:
    """``messages`` with this turn's lore placed and, in the default chat, retrieved passages added
    to the conditioning; the step's trace says which entries fired and why."""
    # A KnowledgeError goes up to the step runner, which turns it into a step error.
    result = turn_lore(ctx)
    passages = _auto_passages(ctx)
    out = apply(messages, result)
    notes = [result.trace()] if result.trace() else []
    if passages:
        block = passages_block(passages)
        if out and out[0].role == "system":
            out[0] = ChatMessage("system", f"{out[0].content}\n\n{block}")
        else:
            out.insert(0, ChatMessage("system", block))
        notes.append("retrieved: " + ", ".join(_cite(p) for p in passages))
    if notes:
        ctx.detail = "; ".join(n for n in (ctx.detail, *notes) if n)
    return out


def _cite(p: Passage) -> str:
    where = f"{p.source} ({p.location})" if p.location else p.source
    return f"{where} {p.score:.2f}"
