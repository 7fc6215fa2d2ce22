"""The space mlx-lm's streaming detokenizer drops before an answer's first word.

mlx-lm trims the leading space of the first text it decodes (right for a fresh answer). After an
``answer_prefix`` (Continue), that space is the one between the old text and the new: without it
"coffee" + "can interfere" reads "coffeecan interfere".
"""

from __future__ import annotations

from typing import Any

# How byte-level BPE (GPT-2, Llama 3, SmolLM) and SentencePiece spell a token's leading space.
_SPACE_MARKS = ("Ġ", "▁", " ")


def restore_leading_space(tokenizer: Any, first_token: int, text: str, prefix: str) -> str:
    """``text`` (the first decoded text after ``prefix``) with the space the model generated."""
    if not prefix or prefix[-1].isspace() or not text or text[0].isspace():
        return text
    try:
        piece = tokenizer.convert_ids_to_tokens(int(first_token))
    except Exception:  # a tokenizer without the method: leave the text as decoded
        return text
    return " " + text if isinstance(piece, str) and piece.startswith(_SPACE_MARKS) else text
