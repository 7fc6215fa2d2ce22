"""Lorebooks (``lore:``): entries injected into the context when their keys appear in the chat.

The semantics follow the Character Card V2/V3 ``character_book`` (see docs/knowledge.md for where
we differ and why). Every regular expression runs through the ``regex`` package with a timeout, so
a pattern that backtracks catastrophically costs at most :data:`REGEX_TIMEOUT` per search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import regex  # type: ignore[import-untyped]

from ..backends.base import ChatMessage
from .limits import (
    MAX_BUDGET,
    MAX_CONTENT_CHARS,
    MAX_ENTRIES,
    MAX_KEY_CHARS,
    MAX_KEYS,
    MAX_RECURSION,
    MAX_REGEX_CHARS,
    MAX_SCAN_CHARS,
    MAX_SCAN_DEPTH,
    REGEX_TIMEOUT,
    KnowledgeError,
)

LOGICS = ("and_any", "and_all", "not_any", "not_all")
MATCHES = ("whole_word", "substring", "regex")
POSITIONS = ("before", "after", "depth")
ROLES = ("system", "user", "assistant")
DEFAULT_SCAN_DEPTH = 2  # SillyTavern's default: the user's message and the reply before it
DEFAULT_BUDGET = 1024

Counter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """About four characters per token: good enough for a budget, free of any tokenizer."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class Entry:
    """One lorebook entry, validated. ``order``: lower is inserted first (higher in the prompt);
    ``priority``: when the budget is short, lower priority is dropped first."""

    index: int
    content: str
    keys: tuple[str, ...] = ()
    secondary_keys: tuple[str, ...] = ()
    logic: str = "and_any"
    name: str = ""
    enabled: bool = True
    constant: bool = False
    case_sensitive: bool = False
    match: str = "whole_word"
    scan_depth: int | None = None
    order: int = 100
    priority: int = 0
    position: str = "before"
    depth: int = 4
    role: str = "system"
    recursive: bool = True  # may this entry's content trigger others (when the book scans so)

    @property
    def label(self) -> str:
        return self.name or f"entry {self.index}"


@dataclass(frozen=True)
class Lorebook:
    entries: tuple[Entry, ...]
    scan_depth: int = DEFAULT_SCAN_DEPTH
    token_budget: int = DEFAULT_BUDGET
    recursive: bool = False
    patterns: Mapping[tuple[int, str], Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Fired:
    """An entry that went into the context, and why (the key that matched, or ``constant``)."""

    entry: Entry
    reason: str

    def as_variable(self) -> dict[str, Any]:
        """What templates see in ``lore``."""
        e = self.entry
        return {
            "name": e.label,
            "content": e.content,
            "position": e.position,
            "depth": e.depth,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class LoreResult:
    fired: tuple[Fired, ...] = ()
    dropped: tuple[str, ...] = ()  # labels left out by the token budget

    def trace(self) -> str:
        """One line for the trace: what fired and why, and what the budget left out."""
        if not self.fired and not self.dropped:
            return ""
        parts = [f"{f.entry.label!r} ({f.reason})" for f in self.fired]
        text = "lore: " + (", ".join(parts) if parts else "none")
        if self.dropped:
            text += "; over the budget: " + ", ".join(repr(d) for d in self.dropped)
        return text


# -- parsing ---------------------------------------------------------------------------------
def _where(*parts: str | int) -> str:
    out = "lore"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise KnowledgeError(
            f"{where}: expected a whole number from {low} to {high}, got {value!r}"
        )
    return value


def _keys(value: Any, where: str, pattern_limit: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise KnowledgeError(f"{where}: expected a list of text")
    keys = tuple(k for k in (k.strip() for k in value) if k)
    for i, key in enumerate(keys):
        if len(key) > pattern_limit:
            raise KnowledgeError(
                f"{where}[{i}]: {len(key)} characters; the limit is {pattern_limit}",
                "shorten the key",
            )
    return keys


def compile_key(key: str, match: str, case_sensitive: bool, where: str) -> Any:
    """The compiled pattern for one key; a regex that does not compile is refused with its reason."""
    flags = regex.VERSION1 | (0 if case_sensitive else regex.IGNORECASE)
    if match == "regex":
        source = key
    elif match == "whole_word":
        # A word boundary only where the key itself starts/ends with a word character, so that
        # keys such as "C++" or "#tag" still match.
        left = r"(?<!\w)" if regex.match(r"\w", key) else ""
        right = r"(?!\w)" if regex.search(r"\w$", key) else ""
        source = left + regex.escape(key) + right
    else:
        source = regex.escape(key)
    try:
        return regex.compile(source, flags)
    except (regex.error, OverflowError, RecursionError) as exc:
        raise KnowledgeError(
            f"{where}: the pattern {key!r} is not a valid regular expression ({exc})",
            "fix the pattern, or use match: whole_word to match the key as written",
        ) from None


def parse_lore(data: Mapping[str, Any] | None) -> Lorebook:
    """The validated lorebook of a personality's ``lore:`` mapping (the schema checked the shape;
    this checks what it cannot say: counts, sizes and that every pattern compiles)."""
    if not data:
        return Lorebook(())
    raw_entries = data.get("entries") or []
    if len(raw_entries) > MAX_ENTRIES:
        raise KnowledgeError(
            f"lore.entries: {len(raw_entries)} entries; the limit is {MAX_ENTRIES}",
            "split the lorebook or remove entries",
        )
    entries: list[Entry] = []
    patterns: dict[tuple[int, str], Any] = {}
    for i, raw in enumerate(raw_entries):
        where = _where("entries", i)
        if not isinstance(raw, Mapping):
            raise KnowledgeError(f"{where}: an entry is a mapping with keys and content")
        content = raw.get("content", "")
        if not isinstance(content, str) or len(content) > MAX_CONTENT_CHARS:
            raise KnowledgeError(
                f"{where}.content: text of at most {MAX_CONTENT_CHARS} characters is expected"
            )
        match = raw.get("match", "whole_word")
        if match not in MATCHES:
            raise KnowledgeError(f"{where}.match: one of {', '.join(MATCHES)}, got {match!r}")
        limit = MAX_REGEX_CHARS if match == "regex" else MAX_KEY_CHARS
        keys = _keys(raw.get("keys"), where + ".keys", limit)
        secondary = _keys(raw.get("secondary_keys"), where + ".secondary_keys", limit)
        if len(keys) + len(secondary) > MAX_KEYS:
            raise KnowledgeError(f"{where}: more than {MAX_KEYS} keys")
        position = raw.get("position", "before")
        if position not in POSITIONS:
            raise KnowledgeError(
                f"{where}.position: one of {', '.join(POSITIONS)}, got {position!r}"
            )
        logic = raw.get("logic", "and_any")
        if logic not in LOGICS:
            raise KnowledgeError(f"{where}.logic: one of {', '.join(LOGICS)}, got {logic!r}")
        role = raw.get("role", "system")
        if role not in ROLES:
            raise KnowledgeError(f"{where}.role: one of {', '.join(ROLES)}, got {role!r}")
        scan = raw.get("scan_depth")
        entry = Entry(
            index=i,
            content=content.strip(),
            keys=keys,
            secondary_keys=secondary,
            logic=logic,
            name=str(raw.get("name", "") or ""),
            enabled=bool(raw.get("enabled", True)),
            constant=bool(raw.get("constant", False)),
            case_sensitive=bool(raw.get("case_sensitive", False)),
            match=match,
            scan_depth=None
            if scan is None
            else _int(scan, where + ".scan_depth", 0, MAX_SCAN_DEPTH),
            order=_int(raw.get("order", 100), where + ".order", -(10**6), 10**6),
            priority=_int(raw.get("priority", 0), where + ".priority", -(10**6), 10**6),
            position=position,
            depth=_int(raw.get("depth", 4), where + ".depth", 0, MAX_SCAN_DEPTH),
            role=role,
            recursive=bool(raw.get("recursive", True)),
        )
        if not entry.enabled:
            entries.append(entry)
            continue
        for name, group in (("keys", keys), ("secondary_keys", secondary)):
            for k, key in enumerate(group):
                patterns[(i, key)] = compile_key(
                    key, match, entry.case_sensitive, f"{where}.{name}[{k}]"
                )
        if not keys and not entry.constant:
            raise KnowledgeError(
                f"{where}: an entry needs keys (or constant: true to be always in)",
                "add keys: [...] that should bring it into the context",
            )
        entries.append(entry)
    return Lorebook(
        tuple(entries),
        scan_depth=_int(
            data.get("scan_depth", DEFAULT_SCAN_DEPTH), "lore.scan_depth", 0, MAX_SCAN_DEPTH
        ),
        token_budget=_int(
            data.get("token_budget", DEFAULT_BUDGET), "lore.token_budget", 1, MAX_BUDGET
        ),
        recursive=bool(data.get("recursive", False)),
        patterns=patterns,
    )


# -- matching --------------------------------------------------------------------------------
def scanned_texts(message: str, history: Sequence[ChatMessage], depth: int) -> list[str]:
    """The ``depth`` most recent messages, newest first: the user's message counts as one."""
    if depth <= 0:
        return []
    texts = [message]
    for m in reversed(history):
        if len(texts) >= depth:
            break
        if m.role != "system":
            texts.append(m.content)
    return [t[-MAX_SCAN_CHARS:] for t in texts]


def _search(pattern: Any, text: str, where: str) -> bool:
    try:
        return pattern.search(text, timeout=REGEX_TIMEOUT) is not None
    except TimeoutError:
        raise KnowledgeError(
            f"{where}: the pattern {pattern.pattern!r} took longer than {REGEX_TIMEOUT}s on the "
            "message (catastrophic backtracking)",
            "simplify the regular expression, e.g. avoid nested repetition such as (a+)+",
        ) from None


def _first_key(
    book: Lorebook, entry: Entry, keys: Sequence[str], texts: Sequence[str]
) -> str | None:
    for key in keys:
        pattern = book.patterns[(entry.index, key)]
        for text in texts:
            if _search(pattern, text, _where("entries", entry.index)):
                return key
    return None


def _triggers(book: Lorebook, entry: Entry, texts: Sequence[str]) -> str | None:
    """Why ``entry`` fires on ``texts`` (the reason for the trace), or None."""
    key = _first_key(book, entry, entry.keys, texts)
    if key is None:
        return None
    if not entry.secondary_keys:
        return f"key {key!r}"
    if entry.logic in ("and_any", "not_any"):
        second = _first_key(book, entry, entry.secondary_keys, texts)
        if entry.logic == "and_any":
            return f"key {key!r} and {second!r}" if second is not None else None
        return f"key {key!r}, none of the secondary keys" if second is None else None
    found = [k for k in entry.secondary_keys if _first_key(book, entry, [k], texts) is not None]
    every = len(found) == len(entry.secondary_keys)
    if entry.logic == "and_all":
        return f"key {key!r} and all secondary keys" if every else None
    return f"key {key!r}, not all secondary keys" if not every else None  # not_all


def select(
    book: Lorebook,
    message: str,
    history: Sequence[ChatMessage] = (),
    count_tokens: Counter = estimate_tokens,
) -> LoreResult:
    """The entries that fire this turn, within the token budget, in insertion order."""
    candidates: dict[int, Fired] = {}
    for entry in book.entries:
        if not entry.enabled:
            continue
        if entry.constant:
            candidates[entry.index] = Fired(entry, "constant")
            continue
        depth = book.scan_depth if entry.scan_depth is None else entry.scan_depth
        reason = _triggers(book, entry, scanned_texts(message, history, depth))
        if reason is not None:
            candidates[entry.index] = Fired(entry, f"{reason} in the chat")
    if book.recursive:
        _recurse(book, candidates)
    kept: list[Fired] = []
    dropped: list[str] = []
    used = 0
    # The budget keeps the highest priority first; constant entries are not exempt (V2 spec:
    # "always inserted ... within budget limit").
    for fired in sorted(
        candidates.values(), key=lambda f: (-f.entry.priority, f.entry.order, f.entry.index)
    ):
        cost = count_tokens(fired.entry.content)
        if used + cost > book.token_budget:
            dropped.append(fired.entry.label)
            continue
        used += cost
        kept.append(fired)
    kept.sort(key=lambda f: (f.entry.order, f.entry.index))
    return LoreResult(tuple(kept), tuple(dropped))


def _recurse(book: Lorebook, candidates: dict[int, Fired]) -> None:
    """Entries whose keys appear in the content of entries that fired (bounded passes)."""
    for _ in range(MAX_RECURSION):
        sources = [f.entry for f in candidates.values() if f.entry.recursive]
        texts = [e.content for e in sources]
        added = False
        for entry in book.entries:
            if not entry.enabled or entry.constant or entry.index in candidates:
                continue
            reason = _triggers(book, entry, texts)
            if reason is not None:
                origin = next(
                    (s.label for s in sources if _triggers(book, entry, [s.content])), "lore"
                )
                candidates[entry.index] = Fired(entry, f"{reason} in {origin!r}")
                added = True
        if not added:
            return


# -- placing ---------------------------------------------------------------------------------
def apply(messages: Sequence[ChatMessage], result: LoreResult) -> list[ChatMessage]:
    """``messages`` with the fired entries placed: before or after the conditioning (the system
    message, created when there is none) or as a message ``depth`` messages from the end."""
    out = list(messages)
    if not result.fired:
        return out
    before = [f.entry.content for f in result.fired if f.entry.position == "before"]
    after = [f.entry.content for f in result.fired if f.entry.position == "after"]
    if before or after:
        has_system = bool(out) and out[0].role == "system"
        conditioning = out[0].content if has_system else ""
        text = "\n\n".join(t for t in (*before, conditioning, *after) if t)
        if has_system:
            out[0] = ChatMessage("system", text)
        else:
            out.insert(0, ChatMessage("system", text))
    floor = 1 if out and out[0].role == "system" else 0
    # Deepest first, so that shallower insertions count their depth from the same end.
    for fired in sorted(
        (f for f in result.fired if f.entry.position == "depth"),
        key=lambda f: -f.entry.depth,
    ):
        at = max(floor, len(out) - fired.entry.depth)
        out.insert(at, ChatMessage(fired.entry.role, fired.entry.content))  # type: ignore[arg-type]
    return out


_PLACE = regex.compile(r"^(lore(?:\.\w+|\[\d+\])*): (.*)$", regex.DOTALL)


def check_lore(data: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str, str]]:
    """What :func:`parse_lore` refuses, as (document path, message, hint) for the loader's
    ``file:line:col`` errors; empty when the lorebook is usable."""
    try:
        parse_lore(data)
    except KnowledgeError as exc:
        m = _PLACE.match(str(exc))
        if m is None:
            return [(("lore",), str(exc), exc.hint)]
        path: list[str | int] = []
        for name, index in regex.findall(r"\.?(\w+)|\[(\d+)\]", m.group(1)):
            path.append(int(index) if index else name)
        return [(tuple(path), m.group(2), exc.hint)]
    return []
