"""Make a prompt fit the model's context before any prefill, by the personality's declared policy.

The prompt may take the context minus room for the answer: ``min(max_tokens, context // 2)``
tokens are kept for it. ``drop_oldest`` leaves out the oldest messages of the history (system
messages and the newest message always stay) until the prompt fits; ``refuse`` raises
:class:`~lollms_runtime.backends.base.PromptTooLong`. Either way the message says what happened.
A raw prompt cannot be trimmed and is always refused when too long.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..backends.base import ChatMessage, GenerationRequest, PromptTooLong
from .prompts import encode, prompt_text


@dataclass(frozen=True)
class Fitted:
    """The request to run, its prompt tokens, and a notice when messages were left out."""

    request: GenerationRequest
    tokens: list[int]
    notice: str = ""


def context_window(model: Any, default: int = 4096) -> int:
    """How many tokens ``model`` attends to (its config's ``max_position_embeddings``)."""
    args = getattr(model, "args", None)
    for name in ("max_position_embeddings", "max_seq_len", "n_ctx", "seq_length"):
        value = getattr(args, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


def prompt_budget(window: int, max_tokens: int) -> int:
    """Tokens a prompt may take in a context of ``window``, leaving room for the answer."""
    return window - min(max(1, max_tokens), window // 2)


def fit_request(request: GenerationRequest, tokenizer: Any, window: int) -> Fitted:
    """``request`` as it will run, trimmed or refused when its prompt exceeds the context."""
    tokens = encode(prompt_text(request, tokenizer), tokenizer)
    budget = prompt_budget(window, request.sampling.max_tokens)
    if len(tokens) <= budget:
        return Fitted(request, tokens)
    where = (
        f"the prompt is {len(tokens)} tokens but the model's context of {window} tokens "
        f"leaves {budget} for it ({window - budget} are kept for the answer)"
    )
    if request.raw_prompt is not None:
        raise PromptTooLong(f"{where}; a raw prompt cannot be trimmed: shorten it")
    if request.context_policy == "refuse":
        raise PromptTooLong(
            f"{where}; the personality's context_policy is 'refuse': shorten the message "
            "or start a new discussion"
        )
    messages = list(request.messages)
    head = 0
    while head < len(messages) - 1 and messages[head].role == "system":
        head += 1
    droppable = max(0, len(messages) - 1 - head)

    def trimmed(count: int) -> tuple[GenerationRequest, list[int]]:
        kept = messages[:head] + _after_drop(messages[head:-1], count) + messages[-1:]
        changed = replace(request, messages=tuple(kept))
        return changed, encode(prompt_text(changed, tokenizer), tokenizer)

    # The prompt shrinks as more messages go: the fewest dropped that fit, by bisection.
    low, high = 1, droppable
    best: tuple[GenerationRequest, list[int]] | None = None
    while low <= high:
        middle = (low + high) // 2
        candidate = trimmed(middle)
        if len(candidate[1]) <= budget:
            best, high = candidate, middle - 1
        else:
            low = middle + 1
    if best is None:
        shortest = trimmed(droppable)[1] if droppable else tokens
        raise PromptTooLong(
            f"{where}; even without the history the prompt is {len(shortest)} tokens: "
            "shorten the message (or the personality's conditioning)"
        )
    left_out = len(messages) - len(best[0].messages)
    notice = (
        f"the {left_out} oldest message{'s were' if left_out != 1 else ' was'} left out to fit "
        f"the model's context of {window} tokens (context_policy: drop_oldest)"
    )
    return Fitted(best[0], best[1], notice)


def _after_drop(history: list[ChatMessage], count: int) -> list[ChatMessage]:
    """``history`` without its ``count`` oldest messages; never starts on an assistant message,
    since chat templates expect the user to speak first."""
    rest = history[count:]
    while rest and rest[0].role == "assistant":
        rest = rest[1:]
    return rest
