"""Map a :class:`Sampling` onto mlx-lm's sampler and logits processors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..backends.base import Sampling

LogitsProcessor = Callable[[Any, Any], Any]


def make_sampler(sampling: Sampling) -> Callable[[Any], Any]:
    """mlx-lm's sampler for ``sampling`` (greedy at temperature 0)."""
    from mlx_lm.sample_utils import make_sampler as mlx_make_sampler

    return mlx_make_sampler(
        temp=max(0.0, sampling.temperature),
        top_p=sampling.top_p if 0.0 < sampling.top_p < 1.0 else 0.0,
        min_p=sampling.min_p,
        top_k=max(0, sampling.top_k),
    )


def make_logits_processors(
    sampling: Sampling, history: Sequence[int] = ()
) -> list[LogitsProcessor]:
    """mlx-lm's logits processors for the penalties and the logit bias.

    ``history`` is the tail of the prompt whose prefill a prompt cache skipped: mlx-lm only shows
    the processors the tokens it was given, so the penalties would otherwise depend on the cache.
    """
    import mlx.core as mx
    from mlx_lm.sample_utils import make_logits_processors as mlx_make_processors

    size = max(1, sampling.repetition_context_size)
    processors: list[LogitsProcessor] = mlx_make_processors(
        logit_bias=dict(sampling.logit_bias) if sampling.logit_bias else None,
        repetition_penalty=(
            sampling.repetition_penalty if sampling.repetition_penalty != 1.0 else None
        ),
        repetition_context_size=size,
        presence_penalty=sampling.presence_penalty or None,
        presence_context_size=size,
        frequency_penalty=sampling.frequency_penalty or None,
        frequency_context_size=size,
    )
    tail = list(history)[-size:]
    if not processors or not tail:
        return processors
    prefix = mx.array(tail, dtype=mx.int32)

    def with_history(processor: LogitsProcessor) -> LogitsProcessor:
        def run(tokens: Any, logits: Any) -> Any:
            return processor(mx.concatenate([prefix, tokens.astype(mx.int32)]), logits)

        return run

    return [with_history(p) for p in processors]
