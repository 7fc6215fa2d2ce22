"""Attention on MLX's CPU backend, computed by numpy: long discussions stay fast on Linux.

Measured on a 2-core x86 CPU (``benchmarks/bench_mlx.py`` prints the table): MLX's CPU ``exp``
costs about 18 ns an element and its small batched matmuls run about 5x slower than numpy's, so
``mx.fast.scaled_dot_product_attention`` over a long cached discussion dominates a turn's time
to first token. The same attention in numpy (its own multithreaded OpenBLAS and vectorised
``exp``) is 5x faster for 21 new tokens over 877 cached, and equal within 1e-6.

:func:`install` swaps the attention function of the mlx-lm modules a model uses for
:func:`attention`, which hands every case it does not cover (a GPU device, a quantized KV cache,
attention sinks, a trace under ``mx.compile``) back to mlx-lm unchanged. ``LOLLMS_CPU_ATTENTION=0``
keeps mlx-lm's own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# Rows of queries computed at once: bounds the score matrix of a long prefill (heads x rows x keys).
QUERY_BLOCK = 256
_ATTRIBUTE = "scaled_dot_product_attention"
_bypass = [False]  # set by mlx_attention(): benchmarks compare both in one process


@contextmanager
def mlx_attention() -> Iterator[None]:
    """Within this block, patched models use mlx-lm's own attention (for comparisons)."""
    _bypass[0] = True
    try:
        yield
    finally:
        _bypass[0] = False


def enabled() -> bool:
    """Whether the numpy attention is wanted (``LOLLMS_CPU_ATTENTION=0`` turns it off)."""
    return os.environ.get("LOLLMS_CPU_ATTENTION", "1") != "0"


def install(model: Any) -> list[str]:
    """Route ``model``'s attention through :func:`attention`; returns the modules patched.

    Patched once per module and per process; the wrapper still checks every call, so a model
    running on a GPU in the same process keeps mlx-lm's kernel.
    """
    from mlx_lm.models import base

    if not enabled():
        return []
    patched = []
    names = {type(module).__module__ for _, module in model.named_modules()}
    for name in sorted(names):
        module = sys.modules.get(name)
        current = getattr(module, _ATTRIBUTE, None)
        if current is base.scaled_dot_product_attention:
            setattr(module, _ATTRIBUTE, _wrap(current))
            patched.append(name)
    return patched


def _wrap(original: Any) -> Any:
    def scaled_dot_product_attention(
        queries: Any,
        keys: Any,
        values: Any,
        cache: Any,
        scale: float,
        mask: Any,
        sinks: Any = None,
    ) -> Any:
        result = None
        # One query row is a decode step: mlx-lm builds step n+1 lazily before it yields token n,
        # and an eager attention there would hold the first token back by a whole step.
        if queries.shape[2] > 1 and sinks is None and not hasattr(cache, "bits") and not _bypass[0]:
            result = attention(queries, keys, values, scale=scale, mask=mask)
        if result is None:
            return original(queries, keys, values, cache, scale=scale, mask=mask, sinks=sinks)
        return result

    scaled_dot_product_attention.lollms_original = original  # type: ignore[attr-defined]
    return scaled_dot_product_attention


def attention(queries: Any, keys: Any, values: Any, scale: float, mask: Any = None) -> Any:
    """``softmax(q·kᵀ·scale + mask)·v`` like ``mx.fast.scaled_dot_product_attention``, in numpy.

    Shapes: queries ``(B, H, Lq, D)``, keys/values ``(B, Hk, Lk, D)`` with ``H`` a multiple of
    ``Hk`` (grouped-query attention). ``mask`` is None, ``"causal"`` (the queries are the last
    ``Lq`` positions), a boolean array (True keeps) or an additive array. Returns None when it
    cannot help: not on the CPU, or inside a function transformation such as ``mx.compile``.
    """
    import mlx.core as mx

    if mx.default_device() != mx.cpu or (mask is not None and not _supported_mask(mask)):
        return None
    arrays = [queries, keys, values] + ([mask] if isinstance(mask, mx.array) else [])
    try:
        mx.eval(arrays)
    except (ValueError, RuntimeError):
        return None  # a tracer: mx.compile / vmap / grad cannot hand values to numpy
    q, k, v = (_numpy(a) for a in (queries, keys, values))
    m = _numpy(mask) if isinstance(mask, mx.array) else mask
    out = _attend(q, k, v, float(scale), m)
    return mx.array(out).astype(queries.dtype)


def _supported_mask(mask: Any) -> bool:
    import mlx.core as mx

    return (isinstance(mask, str) and mask == "causal") or isinstance(mask, mx.array)


def _numpy(array: Any) -> np.ndarray:
    """``array`` as numpy: booleans as they are, every other dtype as float32."""
    import mlx.core as mx
    import numpy as np

    if array.dtype not in (mx.float32, mx.bool_):
        array = array.astype(mx.float32)
    return np.asarray(array)


def _attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, mask: Any) -> np.ndarray:
    import numpy as np

    batch, heads, length, depth = q.shape
    kv_heads, keys = k.shape[1], k.shape[2]
    group = heads // kv_heads
    # Grouped-query attention without repeating k and v: the heads sharing a kv head are stacked.
    grouped = q.reshape(batch, kv_heads, group, length, depth)
    out = np.empty((batch, kv_heads, group, length, v.shape[-1]), dtype=np.float32)
    key_t = np.swapaxes(k, -1, -2)[:, :, None]
    values = v[:, :, None]
    for start in range(0, length, QUERY_BLOCK):
        stop = min(length, start + QUERY_BLOCK)
        scores = np.matmul(grouped[:, :, :, start:stop], key_t)
        scores *= np.float32(scale)
        if isinstance(mask, str):  # causal: query i sits at position keys - length + i
            rows = np.arange(keys - length + start, keys - length + stop)[:, None]
            scores[..., rows < np.arange(keys)[None, :]] = -np.inf
        elif mask is not None:
            block = _mask_block(mask, batch, heads, kv_heads, group, length, start, stop, keys)
            if block.dtype == np.bool_:
                scores = np.where(block, scores, np.float32(-np.inf))
            else:
                scores += block
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        total = scores.sum(axis=-1, keepdims=True)
        out[:, :, :, start:stop] = np.matmul(scores, values) / total
    return out.reshape(batch, heads, length, -1)


def _mask_block(
    mask: np.ndarray,
    batch: int,
    heads: int,
    kv_heads: int,
    group: int,
    length: int,
    start: int,
    stop: int,
    keys: int,
) -> np.ndarray:
    """The mask rows ``start:stop``, broadcast to ``(B, Hk, group, rows, keys)``."""
    import numpy as np

    full = np.broadcast_to(mask, (batch, heads, length, keys))
    return full[:, :, start:stop].reshape(batch, kv_heads, group, stop - start, keys)
