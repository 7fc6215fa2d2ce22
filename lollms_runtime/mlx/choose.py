"""Score answer choices from the model's log-probabilities: one pass over the shared context."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def score_choices(
    model: Any,
    tokenizer: Any,
    context: Sequence[int],
    cached: int,
    cache: list[Any],
    choices: Sequence[str],
) -> list[float]:
    """Sum of the log-probabilities of each choice's tokens following ``context``.

    ``cache`` already holds ``context[:cached]``; the rest of the context is prefilled once, then
    all choices' continuations run as one batch on top of copies of that cache.
    """
    import mlx.core as mx

    encoded = [list(tokenizer.encode(c, add_special_tokens=False)) for c in choices]
    for choice, ids in zip(choices, encoded, strict=True):
        if not ids:
            raise ValueError(f"choice {choice!r} has no tokens")
    logits = model(mx.array(list(context[cached:]))[None], cache=cache)[:, -1, :]
    first = _log_softmax(logits[0].astype(mx.float32))
    scores = [first[ids[0]] for ids in encoded]
    longest = max(len(ids) for ids in encoded)
    if longest > 1:
        # Right padding is harmless: causal attention keeps the pad after every real token.
        pad = encoded[0][0]
        rows = [ids[:-1] + [pad] * (longest - len(ids)) for ids in encoded]
        batch_cache = _repeat_cache(cache, len(encoded))
        out = model(mx.array(rows), cache=batch_cache)
        rest = _log_softmax(out.astype(mx.float32))
        for i, ids in enumerate(encoded):
            for j, token in enumerate(ids[1:]):
                scores[i] = scores[i] + rest[i, j, token]
    values = mx.stack(scores)
    mx.eval(values)
    listed: Any = values.tolist()
    return [float(v) for v in listed]


def _log_softmax(x: Any) -> Any:
    import mlx.core as mx

    return x - mx.logsumexp(x, axis=-1, keepdims=True)


def _repeat_cache(cache: list[Any], batch: int) -> list[Any]:
    """New KV caches holding ``batch`` copies of ``cache``'s keys and values (``cache`` is kept)."""
    import mlx.core as mx
    from mlx_lm.models.cache import KVCache

    copies: list[Any] = []
    for layer in cache:
        if not isinstance(layer, KVCache):
            raise NotImplementedError(
                f"choose() supports models with plain KV caches, not {type(layer).__name__}"
            )
        fresh = KVCache()  # type: ignore[no-untyped-call]
        if layer.keys is not None:
            keys, values = layer.keys_and_values()  # type: ignore[no-untyped-call]
            fresh.keys = mx.repeat(keys, batch, axis=0)
            fresh.values = mx.repeat(values, batch, axis=0)
            fresh.offset = layer.offset
        copies.append(fresh)
    return copies
