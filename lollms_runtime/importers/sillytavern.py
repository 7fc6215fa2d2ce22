"""SillyTavern character cards (V1, V2, V3; JSON or PNG) -> draft personality.

Macros: ``{{char}}`` (and the old ``<BOT>``) become the character's name, since it is known at
import time; ``{{user}}`` (and ``<USER>``) become "User", the name our prompts give the person.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from typing import Any

from .common import Draft, ImportFailed, NotACard, clean_name, clean_version, is_empty, make_id
from .png import MAX_FILE_BYTES, text_chunks

USER = "User"
MAX_FIELD_CHARS = 100_000
MAX_JSON_BYTES = 8 << 20
MAX_JSON_DEPTH = 64
MAX_NUMBER_CHARS = 100
DEFAULT_MAIN_PROMPT = (
    "Write {{char}}'s next reply in a fictional chat between {{char}} and {{user}}."
)

# Fields we read as text, and the ones we carry over in other ways or on purpose not at all.
TEXT_FIELDS = (
    "name",
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "creator",
    "character_version",
    "nickname",
)
HANDLED = {*TEXT_FIELDS, "alternate_greetings", "tags"}
# Top-level keys SillyTavern writes next to "data" in V2/V3 exports (copies or app state).
OUTER = {
    "spec",
    "spec_version",
    "data",
    *TEXT_FIELDS,
    "avatar",
    "chat",
    "create_date",
    "talkativeness",
    "fav",
    "tags",
    "alternate_greetings",
}
PYGMALION = {
    "char_name": "name",
    "char_persona": "personality",
    "world_scenario": "scenario",
    "char_greeting": "first_mes",
    "example_dialogue": "mes_example",
}
# Card fields that are metadata only: not carried over, and not worth a warning when present.
QUIET = {"creation_date", "modification_date", "source"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def is_card_file(path: Path) -> bool:
    """A cheap guess: a ``.json`` or ``.png`` file (the content decides)."""
    return path.is_file() and path.suffix.lower() in (".json", ".png")


def read_card(path: Path) -> Draft:
    """Read a SillyTavern card (JSON file or PNG with a ``ccv3``/``chara`` chunk)."""
    shown = str(path)
    if path.is_symlink():
        raise ImportFailed(f"{shown}: is a symbolic link; give the real file")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImportFailed(f"{shown}: {size} bytes is too large for a character card")
        blob = path.read_bytes()
    except OSError as exc:
        raise ImportFailed(f"{shown}: cannot read it ({exc.strerror})") from None
    draft = Draft(path, "sillytavern", {})
    if path.suffix.lower() == ".png" or blob.startswith(b"\x89PNG"):
        raw = _png_json(blob, shown)
        draft.assets["assets/avatar.png"] = blob
        draft.data["avatar"] = "assets/avatar.png"
    else:
        raw = blob
    card = _parse_json(raw, shown)
    _convert(card, path, shown, draft)
    return draft


def _png_json(blob: bytes, shown: str) -> bytes:
    chunks = text_chunks(blob, shown)
    key = "ccv3" if "ccv3" in chunks else "chara" if "chara" in chunks else None
    if key is None:
        raise NotACard(
            f"{shown}: this PNG holds no character card (no 'chara' or 'ccv3' text chunk); "
            "export the character from SillyTavern as a PNG card or JSON"
        )
    try:
        return base64.b64decode(chunks[key], validate=True)
    except (binascii.Error, ValueError):
        raise ImportFailed(
            f"{shown}: the '{key}' chunk is not valid base64; the card is damaged"
        ) from None


def _parse_json(raw: bytes, shown: str) -> dict[str, Any]:
    if len(raw) > MAX_JSON_BYTES:
        raise ImportFailed(
            f"{shown}: the card's JSON is {len(raw)} bytes; the limit is {MAX_JSON_BYTES}"
        )
    try:
        card = json.loads(
            raw.decode("utf-8-sig"),
            parse_int=lambda digits: _number(digits, int, shown),
            parse_float=lambda digits: _number(digits, float, shown),
            parse_constant=lambda name: _not_json(name, shown),
        )
    except UnicodeDecodeError:
        raise ImportFailed(f"{shown}: the card is not UTF-8 text (binary data?)") from None
    except json.JSONDecodeError as exc:
        raise ImportFailed(
            f"{shown}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise ImportFailed(_too_deep(shown)) from None
    if not isinstance(card, dict):
        raise NotACard(f"{shown}: a character card is a JSON object, got {type(card).__name__}")
    _check_depth(card, shown)
    return card


def _number(digits: str, kind: type[int] | type[float], shown: str) -> int | float:
    # Python refuses to read integers of more than 4300 digits, slowly; no card field needs 100.
    if len(digits) > MAX_NUMBER_CHARS:
        raise ImportFailed(
            f"{shown}: a number of {len(digits)} characters is not a card value "
            f"(at most {MAX_NUMBER_CHARS}); the card is damaged"
        )
    return kind(digits)


def _not_json(name: str, shown: str) -> Any:
    raise ImportFailed(f"{shown}: '{name}' is not a JSON value; the card is damaged")


def _too_deep(shown: str) -> str:
    return f"{shown}: the card's JSON nests more than {MAX_JSON_DEPTH} levels; the card is damaged"


def _check_depth(card: Any, shown: str) -> None:
    """Cards nest a few levels (a lorebook's entries); refuse deeper ones before anything walks
    them (iteratively: the check itself cannot overflow the stack)."""
    stack: list[tuple[Any, int]] = [(card, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ImportFailed(_too_deep(shown))
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _fields(card: dict[str, Any], shown: str, draft: Draft) -> tuple[dict[str, Any], str]:
    """The card's data mapping and its version label (V1, V2 or V3)."""
    spec = card.get("spec")
    if spec in ("chara_card_v2", "chara_card_v3"):
        data = card.get("data")
        if not isinstance(data, dict):
            raise ImportFailed(f"{shown}: a {spec} card needs a 'data' object")
        for key in card:
            if key not in OUTER and not is_empty(card[key]):
                draft.warn(f"{shown}: top-level key '{key}' not carried over")
        return data, "V3" if spec == "chara_card_v3" else "V2"
    if spec is not None:
        raise ImportFailed(f"{shown}: unknown card spec {spec!r}; expected chara_card_v2 or v3")
    if "char_name" in card and "name" not in card:
        # Pygmalion / old TavernAI cards: the same V1 fields under other names.
        card = {PYGMALION.get(k, k): v for k, v in card.items()}
    if "name" not in card or not ({"first_mes", "description", "personality"} & set(card)):
        raise NotACard(
            f"{shown}: not a SillyTavern character card (no 'spec', or 'name' with 'description' "
            "/ 'first_mes')"
        )
    return card, "V1"


def _check_text(value: Any, field: str, shown: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImportFailed(f"{shown}: field '{field}' should be text, got {type(value).__name__}")
    if len(value) > MAX_FIELD_CHARS:
        raise ImportFailed(
            f"{shown}: field '{field}' is {len(value)} characters; the limit is {MAX_FIELD_CHARS} "
            "(shorten it in SillyTavern and export again)"
        )
    bad = _CONTROL.search(value)
    if bad:
        raise ImportFailed(
            f"{shown}: field '{field}' holds binary data (control character "
            f"U+{ord(bad.group()):04X} at position {bad.start()}); it is not a text card"
        )
    return value.replace("\r\n", "\n").strip()


def _macros(text: str, char: str) -> str:
    text = re.sub(r"\{\{\s*char\s*\}\}|<BOT>", lambda _m: char, text, flags=re.IGNORECASE)
    return re.sub(r"\{\{\s*user\s*\}\}|<USER>", USER, text, flags=re.IGNORECASE)


def _examples_block(text: str) -> str:
    # "<START>" separates example dialogues in SillyTavern.
    parts = [p.strip() for p in re.split(r"<START>", text, flags=re.IGNORECASE)]
    return "\n\n".join(p for p in parts if p)


def _convert(card: dict[str, Any], path: Path, shown: str, draft: Draft) -> None:
    fields, label = _fields(card, shown, draft)
    text = {f: _check_text(fields.get(f), f, shown) for f in TEXT_FIELDS}
    greetings = _text_list(fields.get("alternate_greetings"), "alternate_greetings", shown)
    tags = _text_list(fields.get("tags", card.get("tags")), "tags", shown)
    data = draft.data
    name = clean_name(draft, text["name"], path.stem)
    # V3: the nickname, when set, is what {{char}} stands for.
    char = text["nickname"] or name
    data.update(
        {"schema": 1, "id": make_id(name) or make_id(path.stem) or "imported", "name": name}
    )
    version = clean_version(draft, text["character_version"], f"{shown}: character_version")
    if version:
        data["version"] = version
    if text["creator"]:
        data["author"] = " ".join(text["creator"].split())
    notes = _macros(text["creator_notes"], char)
    if notes:
        first = notes.split("\n\n", 1)[0].strip()
        data["description"] = first if len(first) <= 300 else first[:297].rstrip() + "..."
        data["help"] = notes
    else:
        data["description"] = f"{name}, a character imported from a SillyTavern {label} card."
    data["conditioning"] = _conditioning(text, char)
    welcome = [_macros(g, char) for g in [text["first_mes"], *greetings] if g.strip()]
    if len(welcome) == 1:
        data["welcome"] = welcome[0]
    elif welcome:
        data["welcome"] = welcome
    unique_tags = list(dict.fromkeys(" ".join(t.split()) for t in tags if t.strip()))
    if unique_tags:
        data["tags"] = unique_tags
    leftovers = re.findall(r"\{\{[^{}]*\}\}", data["conditioning"] + "".join(welcome))
    if leftovers:
        shown_macros = ", ".join(sorted(set(leftovers))[:5])
        draft.warn(f"SillyTavern macros left as written (not filled in here): {shown_macros}")
    if text["post_history_instructions"]:
        draft.warn(
            "post_history_instructions are placed at the end of the conditioning "
            "(lollms-runtime has no slot after the chat history)"
        )
    _lorebook(fields.get("character_book"), char, shown, draft)
    _leftovers(fields, shown, draft)


def _lorebook(book: Any, char: str, shown: str, draft: Draft) -> None:
    """The card's lorebook becomes ``lore:`` (see lollms_runtime.knowledge.importing)."""
    if is_empty(book):
        return
    from ..knowledge.importing import lore_from_character_book

    lore = lore_from_character_book(book, lambda t: _macros(t, char), draft.warn, shown)
    if lore is not None:
        draft.data["lore"] = lore


def _conditioning(text: dict[str, str], char: str) -> str:
    system = text["system_prompt"] or DEFAULT_MAIN_PROMPT
    system = re.sub(r"\{\{\s*original\s*\}\}", DEFAULT_MAIN_PROMPT, system, flags=re.IGNORECASE)
    sections = [system]
    if text["description"]:
        sections.append(text["description"])
    if text["personality"]:
        sections.append(f"{{{{char}}}}'s personality: {text['personality']}")
    if text["scenario"]:
        sections.append(f"Scenario: {text['scenario']}")
    if text["mes_example"]:
        sections.append("Example dialogue:\n" + _examples_block(text["mes_example"]))
    if text["post_history_instructions"]:
        sections.append(text["post_history_instructions"])
    return _macros("\n\n".join(sections), char)


def _text_list(value: Any, field: str, shown: str) -> list[str]:
    if is_empty(value):
        return []
    if not isinstance(value, list):
        raise ImportFailed(f"{shown}: field '{field}' should be a list of text")
    if len(value) > 1000:
        raise ImportFailed(f"{shown}: field '{field}' has {len(value)} entries; the limit is 1000")
    return [_check_text(v, f"{field}[{i}]", shown) for i, v in enumerate(value)]


def _leftovers(fields: dict[str, Any], shown: str, draft: Draft) -> None:
    for key, value in fields.items():
        if key in HANDLED or key in QUIET or is_empty(value):
            continue
        if key == "character_book":
            continue  # carried over as lore: by _lorebook
        if key == "extensions" and isinstance(value, dict):
            draft.warn(
                f"{shown}: extensions not carried over: {', '.join(sorted(map(str, value)))}"
            )
        else:
            draft.warn(f"{shown}: field '{key}' not carried over")
