"""Turn a :class:`GenerationRequest` into prompt text and tokens (template, prefixes, raw)."""

from __future__ import annotations

from typing import Any

from ..backends.base import GenerationRequest, Prefixes


def prompt_text(request: GenerationRequest, tokenizer: Any) -> str:
    """The prompt the model sees, ending where the answer starts (after ``answer_prefix``)."""
    if request.raw_prompt is not None:
        return request.raw_prompt
    if request.prefixes is not None:
        return _with_prefixes(request, request.prefixes) + request.answer_prefix
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return str(text) + request.answer_prefix
    # A base model without a template: fall back to LoLLMs' default prefixes.
    return _with_prefixes(request, Prefixes()) + request.answer_prefix


def _with_prefixes(request: GenerationRequest, prefixes: Prefixes) -> str:
    parts: list[str] = []
    for message in request.messages:
        prefix = {
            "system": prefixes.system_prefix,
            "user": prefixes.user_prefix,
            "assistant": prefixes.ai_prefix,
        }[message.role]
        parts.append(f"{prefix}{message.content}{prefixes.link_text}")
    parts.append(prefixes.ai_prefix)
    return "".join(parts)


def encode(text: str, tokenizer: Any) -> list[int]:
    """Token ids of ``text``, adding BOS only when the text does not already start with it."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = bos is None or not text.startswith(bos)
    return list(tokenizer.encode(text, add_special_tokens=add_special))
