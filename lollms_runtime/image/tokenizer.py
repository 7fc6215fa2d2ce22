"""The CLIP byte-level BPE tokenizer of Stable Diffusion text encoders (vocab.json, merges.txt)."""

from __future__ import annotations

import itertools
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

# Same split as transformers' CLIPTokenizer; needs the `regex` module for \p{L} classes.
_PATTERN = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d"""
    r"""|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable characters (so any text has tokens)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


class ClipTokenizer:
    """Turns a prompt into a fixed-length row of token ids: BOS, text (truncated), EOS, padding."""

    def __init__(
        self, vocab: dict[str, int], merges: list[tuple[str, str]], pad_token: str = EOS
    ) -> None:
        import regex  # type: ignore[import-untyped]

        self.vocab = vocab
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.pattern: Any = regex.compile(_PATTERN, regex.IGNORECASE)
        self.bos_id = vocab[BOS]
        self.eos_id = vocab[EOS]
        self.pad_id = vocab.get(pad_token, self.eos_id)
        self._cache: dict[str, list[str]] = {BOS: [BOS], EOS: [EOS]}

    @classmethod
    def from_folder(cls, folder: Path) -> ClipTokenizer:
        """Read ``vocab.json``, ``merges.txt`` and the pad token of a diffusers tokenizer folder."""
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        lines = (folder / "merges.txt").read_text(encoding="utf-8").strip().split("\n")
        # Like CLIPTokenizer: skip the "#version" header and keep the merges CLIP was trained with.
        merges = [line.split() for line in lines[1 : 49152 - 256 - 2 + 1]]
        pairs = [(m[0], m[1]) for m in merges if len(m) == 2]
        return cls(vocab, pairs, pad_token=_pad_token(folder))

    def _bpe(self, word: str) -> list[str]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = set(itertools.pairwise(parts))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, 1 << 30))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def encode(self, text: str, max_length: int) -> list[int]:
        """Token ids of ``text`` as the text encoder expects them: exactly ``max_length`` long."""
        byte_map = bytes_to_unicode()
        clean = " ".join(text.split()).lower()
        ids: list[int] = []
        for word in self.pattern.findall(clean):
            mapped = "".join(byte_map[b] for b in word.encode("utf-8"))
            # A piece missing from the vocabulary maps to EOS, as CLIPTokenizer's unk token does.
            ids.extend(self.vocab.get(piece, self.eos_id) for piece in self._bpe(mapped))
        # Prompts longer than the encoder's window are cut, never an error (CLIP sees 77 tokens).
        ids = [self.bos_id, *ids[: max_length - 2], self.eos_id]
        return ids + [self.pad_id] * (max_length - len(ids))


def _pad_token(folder: Path) -> str:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = folder / name
        if not path.is_file():
            continue
        pad = json.loads(path.read_text(encoding="utf-8")).get("pad_token")
        if isinstance(pad, dict):
            pad = pad.get("content")
        if isinstance(pad, str):
            return pad
    return EOS
