"""KV prompt caches kept between calls: a token trie with LRU eviction (mlx-lm's LRUPromptCache).

A discussion's next turn finds its previous turn's cache (prompt + answer) as a prefix; generate
steps that start the same way (conditioning + discussion) share the common prefix, trimmed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any


class PromptCacheStore:
    """Hands out a KV cache covering the longest cached prefix of a prompt, and takes it back."""

    def __init__(self, model: Any, max_entries: int = 16, max_bytes: int = 2 << 30) -> None:
        from mlx_lm.models.cache import LRUPromptCache

        self.model = model
        self._lru = LRUPromptCache(max_size=max_entries, max_bytes=max_bytes)
        self._lock = threading.Lock()

    def fetch(self, tokens: Sequence[int]) -> tuple[list[Any], int]:
        """A cache (a private copy) and how many leading ``tokens`` it already holds.

        At least one token is always left to prefill: the model needs it to produce the next logits.
        """
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

        with self._lock:
            cache, rest = self._lru.fetch_nearest_cache("model", list(tokens))
        if cache is None:
            return make_prompt_cache(self.model), 0
        cached = len(tokens) - len(rest)
        if cached >= len(tokens):
            if not can_trim_prompt_cache(cache):
                return make_prompt_cache(self.model), 0
            trim_prompt_cache(cache, cached - len(tokens) + 1)
            cached = len(tokens) - 1
        return cache, cached

    def store(self, tokens: Sequence[int], cache: list[Any]) -> None:
        """Keep ``cache`` (holding ``tokens``) for later calls; the LRU bounds the memory."""
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        held = cache_length(cache)
        tokens = list(tokens)
        if held > len(tokens):
            if not can_trim_prompt_cache(cache):
                return
            trim_prompt_cache(cache, held - len(tokens))
        elif held < len(tokens):
            tokens = tokens[:held]
        if not tokens:
            return
        with self._lock:
            self._lru.insert_cache("model", tokens, cache)

    def clear(self) -> None:
        """Forget every cached prompt."""
        with self._lock:
            self._lru.trim_to(n_sequences=0)

    @property
    def nbytes(self) -> int:
        return int(self._lru.nbytes)

    def __len__(self) -> int:
        return len(self._lru)


def cache_length(cache: list[Any]) -> int:
    """How many tokens a KV cache holds."""
    for layer in cache:
        offset = getattr(layer, "offset", None)
        if isinstance(offset, int):
            return offset
    return 0
