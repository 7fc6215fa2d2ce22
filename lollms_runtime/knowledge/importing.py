"""Knowledge carried over by the importers: a SillyTavern card's ``character_book`` becomes
``lore:``; a LoLLMs personality's ``data/`` folder becomes ``knowledge:`` documents.

Nothing is dropped silently: every lorebook feature without an equivalent here is reported, with
the entry it was on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .documents import SUPPORTED
from .limits import MAX_CONTENT_CHARS, MAX_DOCUMENT_BYTES, MAX_DOCUMENTS, MAX_ENTRIES

# SillyTavern's world-info extensions: selectiveLogic numbers, position numbers, role numbers.
ST_LOGIC = {0: "and_any", 1: "not_all", 2: "not_any", 3: "and_all"}
ST_ROLES = {0: "system", 1: "user", 2: "assistant"}
# Extension fields that carry no behaviour, or that we map: not reported.
ST_QUIET = {
    "position",
    "depth",
    "role",
    "selectiveLogic",
    "match_whole_words",
    "case_sensitive",
    "scan_depth",
    "prevent_recursion",
    "exclude_recursion",
    "display_index",
    "weight",
    "addMemo",
    "automation_id",
    "vectorized",
    "useProbability",
    "probability",
    "group",
    "group_override",
    "group_weight",
    "use_group_scoring",
    "sticky",
    "cooldown",
    "delay",
    "delay_until_recursion",
    "match_persona_description",
    "match_character_description",
    "match_character_personality",
    "match_character_depth_prompt",
    "match_scenario",
    "match_creator_notes",
    "triggers",
    "ignore_budget",
    "outlet_name",
}
# Of those, the ones whose non-default values change behaviour we do not have.
ST_UNSUPPORTED_DEFAULTS: dict[str, Any] = {
    "probability": 100,
    "group": "",
    "sticky": 0,
    "cooldown": 0,
    "delay": 0,
    "delay_until_recursion": False,
    "match_persona_description": False,
    "match_character_description": False,
    "match_character_personality": False,
    "match_character_depth_prompt": False,
    "match_scenario": False,
    "match_creator_notes": False,
    "triggers": [],
    "ignore_budget": False,
    "outlet_name": "",
}
ENTRY_FIELDS = {
    "keys",
    "content",
    "extensions",
    "enabled",
    "insertion_order",
    "case_sensitive",
    "use_regex",
    "constant",
    "name",
    "priority",
    "id",
    "comment",
    "selective",
    "secondary_keys",
    "position",
}
BOOK_FIELDS = {"name", "description", "scan_depth", "token_budget", "recursive_scanning"}
BOOK_FIELDS |= {"extensions", "entries"}
DECORATOR = re.compile(r"^@@(@?)(\w+)(?:\s+(.*))?$")
_REGEX_KEY = re.compile(r"^/(.+)/([a-z]*)$", re.DOTALL)


def lore_from_character_book(
    book: Any, macros: Callable[[str], str], warn: Callable[[str], None], where: str
) -> dict[str, Any] | None:
    """The ``lore:`` mapping of a V2/V3 ``character_book``; ``macros`` fills in {{char}}/{{user}}.
    Returns None when the book holds no usable entry."""
    if not isinstance(book, Mapping):
        warn(f"{where}: character_book is not an object; not carried over")
        return None
    for key in sorted(set(book) - BOOK_FIELDS):
        warn(f"{where}: character_book.{key} not carried over (unknown lorebook field)")
    if book.get("extensions"):
        warn(
            f"{where}: character_book.extensions not carried over: "
            + ", ".join(sorted(map(str, book["extensions"])))
        )
    raw_entries = book.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        return None
    if len(raw_entries) > MAX_ENTRIES:
        warn(f"{where}: {len(raw_entries)} lorebook entries; only the first {MAX_ENTRIES} kept")
    lore: dict[str, Any] = {}
    if _whole(book.get("scan_depth")) is not None:
        lore["scan_depth"] = max(0, min(100, int(book["scan_depth"])))
    if _whole(book.get("token_budget")) is not None and int(book["token_budget"]) > 0:
        lore["token_budget"] = min(32768, int(book["token_budget"]))
    if book.get("recursive_scanning"):
        lore["recursive"] = True
    entries = []
    for i, raw in enumerate(raw_entries[:MAX_ENTRIES]):
        label = f"{where}: character_book entry {i}"
        if not isinstance(raw, Mapping):
            warn(f"{label}: not an object; dropped")
            continue
        entry = _entry(raw, macros, _prefixed(warn, label))
        if entry is not None:
            entries.append(entry)
    if not entries:
        return None
    lore["entries"] = entries
    return lore


def _prefixed(warn: Callable[[str], None], label: str) -> Callable[[str], None]:
    return lambda message: warn(f"{label}: {message}")


def _whole(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _texts(value: Any, macros: Callable[[str], str]) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [macros(v.strip())[:500] for v in value if isinstance(v, str) and v.strip()]


def _entry(
    raw: Mapping[str, Any], macros: Callable[[str], str], warn: Callable[[str], None]
) -> dict[str, Any] | None:
    for key in sorted(set(raw) - ENTRY_FIELDS):
        warn(f"field '{key}' not carried over (unknown lorebook field)")
    content = str(raw["content"]) if isinstance(raw.get("content"), str) else ""
    entry: dict[str, Any] = {}
    ext = raw.get("extensions") if isinstance(raw.get("extensions"), Mapping) else {}
    assert isinstance(ext, Mapping)
    content = _decorators(content, entry, warn)
    content = macros(content.strip())
    if len(content) > MAX_CONTENT_CHARS:
        warn(f"content cut to {MAX_CONTENT_CHARS} characters")
        content = content[:MAX_CONTENT_CHARS]
    name = raw.get("name") or raw.get("comment") or ""
    if isinstance(name, str) and name.strip():
        entry["name"] = " ".join(name.split())[:200]
    keys = _texts(raw.get("keys"), macros)
    secondary = _texts(raw.get("secondary_keys"), macros)
    use_regex = bool(raw.get("use_regex"))
    if use_regex or any(_REGEX_KEY.match(k) for k in keys + secondary):
        keys, secondary = _regex_keys(keys, entry, warn), _regex_keys(secondary, entry, warn)
        entry["match"] = "regex"
    elif ext.get("match_whole_words") is True:
        entry["match"] = "whole_word"
    else:
        # SillyTavern matches anywhere in a word unless "match whole words" is on.
        entry["match"] = "substring"
    if keys:
        entry["keys"] = keys
    if secondary and raw.get("selective", bool(secondary)):
        entry["secondary_keys"] = secondary
        logic = ext.get("selectiveLogic", 0)
        entry["logic"] = ST_LOGIC.get(logic, "and_any") if isinstance(logic, int) else "and_any"
    elif secondary:
        warn("secondary_keys ignored: selective is false (as the card spec says)")
    entry["content"] = content
    if raw.get("enabled") is False:
        entry["enabled"] = False
    if raw.get("constant"):
        entry["constant"] = True
    case = raw.get("case_sensitive")
    if case is None:
        case = ext.get("case_sensitive")
    if case:
        entry["case_sensitive"] = True
    if _whole(raw.get("insertion_order")) is not None:
        entry["order"] = int(raw["insertion_order"])
    if _whole(raw.get("priority")) is not None:
        entry["priority"] = int(raw["priority"])
    if _whole(ext.get("scan_depth")) is not None:
        entry["scan_depth"] = max(0, min(100, int(ext["scan_depth"])))
    if ext.get("prevent_recursion"):
        entry["recursive"] = False
    _position(raw, ext, entry, warn)
    for key, default in ST_UNSUPPORTED_DEFAULTS.items():
        if (
            key in ext
            and ext[key] not in (default, None)
            and not (key == "probability" and not ext.get("useProbability", True))
        ):
            warn(f"extensions.{key} = {ext[key]!r} not carried over (lollms-runtime has no {key})")
    for key in sorted(set(map(str, ext)) - ST_QUIET):
        warn(f"extensions.{key} not carried over (unknown lorebook extension)")
    if not keys and not entry.get("constant"):
        if entry.get("enabled", True):
            warn("no keys and not constant: it could never fire; kept disabled")
        entry["enabled"] = False
    # The order a person reads an entry in: what it is, what fires it, what it says, the rest.
    first = ("name", "keys", "secondary_keys", "logic", "content")
    return {k: entry[k] for k in first if k in entry} | {
        k: v for k, v in entry.items() if k not in first
    }


def _regex_keys(keys: list[str], entry: dict[str, Any], warn: Callable[[str], None]) -> list[str]:
    """V3 regex keys are written /pattern/flags: keep the pattern, read the 'i' flag."""
    out = []
    for key in keys:
        m = _REGEX_KEY.match(key)
        if m:
            pattern, flags = m.group(1), m.group(2)
            if "i" not in flags:
                entry["case_sensitive"] = True
            for flag in sorted(set(flags) - {"i", "g"}):
                warn(f"regex flag '{flag}' of {key!r} not carried over")
            out.append(pattern)
        else:
            out.append(key)
    return out


def _decorators(content: str, entry: dict[str, Any], warn: Callable[[str], None]) -> str:
    """V3 decorators (``@@depth 4`` lines at the start of content) we understand become fields."""
    lines = content.split("\n")
    kept_from = 0
    for index, line in enumerate(lines):
        m = DECORATOR.match(line.strip())
        if not m:
            break
        kept_from = index + 1
        name, arg = m.group(2), (m.group(3) or "").strip()
        if name == "depth" and arg.isdigit():
            entry["position"], entry["depth"] = "depth", min(100, int(arg))
        elif name == "scan_depth" and arg.isdigit():
            entry["scan_depth"] = min(100, int(arg))
        elif name == "role" and arg in ("system", "user", "assistant"):
            entry["role"] = arg
        elif name == "position" and arg in ("before_desc", "after_desc"):
            entry["position"] = "before" if arg == "before_desc" else "after"
        elif name == "constant":
            entry["constant"] = True
        else:
            warn(f"decorator @@{name}{' ' + arg if arg else ''} not carried over")
    return "\n".join(lines[kept_from:])


def _position(
    raw: Mapping[str, Any],
    ext: Mapping[str, Any],
    entry: dict[str, Any],
    warn: Callable[[str], None],
) -> None:
    if "position" in entry:
        return
    position = raw.get("position")
    st = ext.get("position")
    if st == 4:  # SillyTavern "@ depth"
        entry["position"] = "depth"
        if _whole(ext.get("depth")) is not None:
            entry["depth"] = max(0, min(100, int(ext["depth"])))
        role = ext.get("role")
        if isinstance(role, int) and role in ST_ROLES:
            entry["role"] = ST_ROLES[role]
    elif st in (2, 3, 5, 6, 7):
        names = {2: "top of Author's Note", 3: "bottom of Author's Note", 5: "top of examples"}
        names |= {6: "bottom of examples", 7: "an outlet"}
        warn(f"position '{names[st]}' has no equivalent; placed after the conditioning")
        entry["position"] = "after"
    elif position == "after_char" or st == 1:
        entry["position"] = "after"
    elif position not in (None, "before_char") and st not in (None, 0):
        warn(f"position {position!r} unknown; placed before the conditioning")


def knowledge_from_data_folder(folder: Path, warn: Callable[[str], None]) -> dict[str, bytes]:
    """The documents of a LoLLMs personality's ``data/`` folder (the files LoLLMs indexed: its
    direct children) that we can read, as package paths -> content; others are reported."""
    data = folder / "data"
    if not data.is_dir() or data.is_symlink():
        if data.is_symlink():
            warn(f"{data}: is a symbolic link; not copied")
        return {}
    found: dict[str, bytes] = {}
    for path in sorted(data.iterdir()):
        if path.is_symlink():
            warn(f"{path}: is a symbolic link; not copied")
            continue
        if not path.is_file() or path.name in ("db.db", "db.sqli") or path.name.startswith("."):
            continue
        if path.suffix.lower() not in SUPPORTED:
            warn(f"{path}: '{path.suffix}' documents cannot be read here; not copied")
            continue
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            warn(f"{path}: {size} bytes is too large for a document; not copied")
            continue
        if len(found) >= MAX_DOCUMENTS:
            warn(f"{data}: more than {MAX_DOCUMENTS} documents; the rest not copied")
            break
        found[f"knowledge/{path.name}"] = path.read_bytes()
    return found


def joined_lines(value: Any) -> str | None:
    """A LoLLMs field written as a list of lines, joined as LoLLMs joins it (one line each)."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "\n".join(value).strip()
    return None
