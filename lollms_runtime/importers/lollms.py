"""LoLLMs personality folder (``config.yaml``, ``assets/logo.png``) -> draft personality.

Nothing in the folder is executed or imported: a ``scripts/processor.py`` is reported, never run.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from ..errors import PersonalityError
from ..knowledge.importing import joined_lines, knowledge_from_data_folder
from ..yamldoc import parse_yaml
from .common import Draft, ImportFailed, clean_name, clean_version, is_empty, make_id

CONFIG = "config.yaml"
PROCESSOR = ("scripts", "processor.py")
LOGO = ("assets", "logo.png")
MAX_CONFIG_BYTES = 1 << 20
MAX_LOGO_BYTES = 10 << 20

# LoLLMs wrote prompts as "!@>sender: text", one message per line; every imported prefix uses it.
HEADER = "!@>"
LINK = "\n"

# key -> (sampling key, type, minimum, maximum, minimum is exclusive)
SAMPLING: dict[str, tuple[str, type, float, float | None, bool]] = {
    "model_temperature": ("temperature", float, 0.0, 2.0, False),
    "model_top_k": ("top_k", int, 0, None, False),
    "model_top_p": ("top_p", float, 0.0, 1.0, True),
    "model_repeat_penalty": ("repetition_penalty", float, 0.5, 2.0, False),
    "model_repeat_last_n": ("repetition_context_size", int, 1, 4096, False),
    "model_n_predicts": ("max_tokens", int, 1, 131072, False),
}

TEXT_KEYS = {
    "author": "author",
    "language": "language",
    "personality_description": "description",
    "personality_conditioning": "conditioning",
    "welcome_message": "welcome",
    "disclaimer": "disclaimer",
    "help": "help",
    "recommended_model": "recommended_model",
}

# Why some known keys have no equivalent, for a warning a person can act on.
NOT_CARRIED = {
    "recommended_binding": "models run on mlx-lm or an OpenAI-compatible server, not bindings",
    "processor_cfg": "it configures the Python processor, which is not run",
    "include_welcome_message_in_discussion": "the welcome message is always shown, never sent",
    "ignore_discussion_documents_rag": "document retrieval is not part of a personality here",
    "lollms_version": "metadata only",
    "creation_date": "metadata only",
    "last_update_date": "metadata only",
}

HANDLED = {
    *TEXT_KEYS,
    *SAMPLING,
    "name",
    "version",
    "category",
    "user_message_prefix",
    "ai_message_prefix",
    "link_text",
    "user_name",
    "anti_prompts",
    "prompts_list",
    "commands",
    "dependencies",
}


def is_lollms_folder(path: Path) -> bool:
    """True when ``path`` is a folder holding a LoLLMs ``config.yaml``."""
    return path.is_dir() and (path / CONFIG).is_file()


def read_lollms(folder: Path) -> Draft:
    """Read a LoLLMs personality folder into a draft (never runs its code)."""
    file = folder / CONFIG
    shown = str(file)
    if file.is_symlink():
        raise ImportFailed(f"{shown}: is a symbolic link; copy the real file there and retry")
    try:
        size = file.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ImportFailed(f"{shown}: {size} bytes is too large for a personality config")
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFailed(f"{shown}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise ImportFailed(f"{shown}: cannot read it ({exc.strerror})") from None
    draft = Draft(folder, "lollms", {})
    config, lines = _parse(text, shown, draft)
    _convert(config, lines, folder, shown, draft)
    return draft


def _parse(text: str, shown: str, draft: Draft) -> tuple[dict[str, Any], dict[str, int]]:
    """The config as data plus the line of each top-level key; duplicate keys only warn. The
    loader's bounds (size, depth, aliases, tags) apply: a hostile config ends in ImportFailed."""
    try:
        # LoLLMs read these files with PyYAML, which keeps the last value: do the same, and say so.
        doc = parse_yaml(text, shown, duplicates="last")
    except PersonalityError as exc:
        raise ImportFailed(str(exc)) from None
    for p in doc.duplicates:
        draft.warn(f"{p.file}:{p.line}: {p.message}; the last value is used, as LoLLMs did")
    data = doc.data
    lines: dict[str, int] = {}
    for key, (line, _col) in doc.key_marks.items():
        if len(key) == 1:
            lines.setdefault(str(key[0]), line)
    if not isinstance(data, dict):
        raise ImportFailed(f"{shown}: expected a mapping of keys such as 'name:'; is it a config?")
    return data, lines


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(value)


# LoLLMs' prompt template placeholders, with the values of its default configuration.
PLACEHOLDERS = {
    "start_header_id_template": HEADER,
    "end_header_id_template": ": ",
    "separator_template": "\n",
    "system_message_template": "system",
}


def _unescape(text: str) -> str:
    # Prefixes were often written in single quotes ('\n'), where YAML keeps the backslash.
    text = text.replace("\\n", "\n").replace("\\t", "\t")
    return re.sub(
        r"\{self\.config\.(\w+)\}", lambda m: PLACEHOLDERS.get(m.group(1), m.group()), text
    )


def bare_sender(prefix: str) -> tuple[str, bool]:
    """The sender name inside a LoLLMs prefix ('!@>User:\\n', '**User:**', 'user') and whether it
    held a ``{placeholder}`` that was removed."""
    text = _unescape(prefix)
    stripped = re.sub(r"\{[^{}]*\}", "", text)
    match = re.match(r"^[\s!@>#*]*(.*?)[\s:>*]*$", stripped, re.DOTALL)
    name = " ".join((match.group(1) if match else "").split())
    return name, stripped != text


def _convert(
    config: dict[str, Any], lines: dict[str, int], folder: Path, shown: str, draft: Draft
) -> None:
    def at(key: str) -> str:
        return f"{shown}:{lines.get(key, 1)}"

    data = draft.data
    ident = make_id(folder.name) or make_id(str(config.get("name", ""))) or "imported"
    data["schema"] = 1
    data["id"] = ident
    raw_name = _text(config.get("name")) or ""
    data["name"] = clean_name(draft, raw_name, folder.name.strip() or ident)
    version = clean_version(draft, config.get("version"), at("version"))
    if version:
        data["version"] = version
    for key, target in TEXT_KEYS.items():
        value = config.get(key)
        if is_empty(value):
            continue
        if key == "welcome_message" and isinstance(value, list):
            variants = [v.strip() for v in value if isinstance(v, str) and v.strip()]
            if len(variants) != len(value):
                draft.warn(f"{at(key)}: some welcome messages are not text; dropped")
            if variants:
                data["welcome"] = variants
            continue
        text = _text(value)
        if text is None:
            text = joined_lines(value)  # LoLLMs also accepts a list of lines here
        if text is None:
            draft.warn(f"{at(key)}: '{key}' should be text, got {type(value).__name__}; dropped")
            continue
        data[target] = text
    category = config.get("category")
    if isinstance(category, list) and category:
        data["category"] = str(category[0])
        if len(category) > 1:
            draft.warn(f"{at('category')}: several categories; kept the first ('{category[0]}')")
    elif not is_empty(category) and _text(category):
        data["category"] = _text(category)
    if "conditioning" in data:
        # The system prompt has its own slot; a leading LoLLMs system header would be repeated.
        data["conditioning"] = re.sub(r"^!@>\s*system\s*:\s*", "", data["conditioning"])
    for key in ("conditioning", "welcome"):
        value = data.get(key, "")
        texts = value if isinstance(value, list) else [value]  # welcome may list variants
        found = {m for text in texts for m in re.findall(r"\{\{\s*(\w+)\s*\}\}", text)}
        for macro in sorted(found):
            draft.warn(f"{key} uses the LoLLMs placeholder {{{{{macro}}}}}, which is not filled in")
    _prefixes(config, at, draft)
    _stops(config, at, draft)
    _sampling(config, at, draft)
    _examples(config, at, draft)
    _commands(config, at, draft, folder)
    deps = config.get("dependencies")
    if not is_empty(deps):
        if isinstance(deps, list) and all(isinstance(d, str) for d in deps):
            data["dependencies"] = [d.strip() for d in deps if d.strip()]
        else:
            draft.warn(f"{at('dependencies')}: expected a list of names; dropped")
    for key, value in config.items():
        if key in HANDLED or is_empty(value):
            continue
        why = NOT_CARRIED.get(key, "lollms-runtime has no such setting")
        draft.warn(f"{at(key)}: key '{key}' not carried over ({why})")
    _assets(folder, draft)
    _data_folder(folder, draft)


def _data_folder(folder: Path, draft: Draft) -> None:
    """LoLLMs indexed the files of its data/ folder: here they become knowledge: documents."""
    documents = knowledge_from_data_folder(folder, draft.warn)
    if documents:
        draft.assets.update(documents)
        draft.data["knowledge"] = sorted(documents)


def _prefixes(config: dict[str, Any], at: Any, draft: Draft) -> None:
    data = draft.data
    if all(is_empty(config.get(k)) for k in ("user_message_prefix", "ai_message_prefix")):
        if not is_empty(config.get("user_name")):
            draft.warn(f"{at('user_name')}: key 'user_name' not carried over (no prefixes are set)")
        return
    user_raw = _text(config.get("user_message_prefix")) or ""
    ai_raw = _text(config.get("ai_message_prefix")) or ""
    user, user_template = bare_sender(user_raw)
    ai, ai_template = bare_sender(ai_raw)
    user_name = _text(config.get("user_name")) or ""
    if user_template or ai_template:
        draft.warn(
            f"{at('user_message_prefix' if user_template else 'ai_message_prefix')}: "
            "a prefix used a LoLLMs template placeholder ({...}); it was removed"
        )
    if not user:
        user = user_name or "User"
    elif user_name and user_name.lower() != user.lower():
        draft.warn(
            f"{at('user_name')}: user_name '{user_name}' not used; the user prefix is '{user}'"
        )
    data["user_prefix"] = f"{HEADER}{user}: "
    data["ai_prefix"] = f"{HEADER}{ai or data['name']}: "
    raw_link = config.get("link_text")
    link = _unescape(raw_link) if isinstance(raw_link, str) else ""
    # A blank link (' ') would run the "!@>" headers together on one line, which LoLLMs never did.
    data["link_text"] = link if link.strip() else LINK


def _stops(config: dict[str, Any], at: Any, draft: Draft) -> None:
    stops: list[str] = []
    raw = config.get("anti_prompts")
    if not is_empty(raw):
        if not isinstance(raw, list):
            raw = [raw]
        for item in raw:
            if not isinstance(item, str):
                draft.warn(f"{at('anti_prompts')}: {item!r} is not text; dropped")
            elif _unescape(item) and _unescape(item) not in stops:
                stops.append(_unescape(item))
    if "user_prefix" in draft.data and HEADER not in stops:
        # LoLLMs always stopped at the next "!@>" header, whatever anti_prompts said.
        stops.append(HEADER)
    if stops:
        draft.data.setdefault("sampling", {})["stop"] = stops


def _sampling(config: dict[str, Any], at: Any, draft: Draft) -> None:
    for key, (target, kind, low, high, exclusive) in SAMPLING.items():
        value = config.get(key)
        if is_empty(value):
            continue
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            draft.warn(f"{at(key)}: {key} {value!r} is not a number; dropped")
            continue
        number: float = value
        if kind is int and number != int(number):
            draft.warn(f"{at(key)}: {key} {value} is not a whole number; rounded")
        clamped = max(number, low)
        if exclusive and clamped <= low:
            clamped = 0.01
        if high is not None:
            clamped = min(clamped, high)
        if clamped != number:
            draft.warn(f"{at(key)}: {key} {value} is out of range; clamped to {clamped}")
        result: float | int = round(clamped) if kind is int else float(clamped)
        draft.data.setdefault("sampling", {})[target] = result


def _example(text: str) -> str:
    # "@<Title>@Body with [field::options::a,b]" -> "Body with [field]"
    body = re.sub(r"^@<[^>]*>@", "", text.strip())
    return re.sub(r"\[([^\[\]:]+)::[^\[\]]*\]", r"[\1]", body).strip()


def _examples(config: dict[str, Any], at: Any, draft: Draft) -> None:
    raw = config.get("prompts_list")
    if is_empty(raw):
        return
    if not isinstance(raw, list):
        draft.warn(f"{at('prompts_list')}: expected a list of prompts; dropped")
        return
    examples = []
    for item in raw:
        if isinstance(item, str) and _example(item):
            examples.append(_example(item))
        else:
            draft.warn(f"{at('prompts_list')}: {item!r} is not a prompt; dropped")
    if examples:
        draft.data["examples"] = examples


def _commands(config: dict[str, Any], at: Any, draft: Draft, folder: Path) -> None:
    raw = config.get("commands")
    if is_empty(raw):
        return
    if not isinstance(raw, list):
        draft.warn(f"{at('commands')}: expected a list of commands; dropped")
        return
    commands = []
    for item in raw:
        if not isinstance(item, dict) or not (item.get("value") or item.get("name")):
            draft.warn(f"{at('commands')}: {item!r} is not a command; dropped")
            continue
        name = str(item.get("name") or item.get("value"))
        command = {"name": name, "prompt": str(item.get("value") or name)}
        if isinstance(item.get("help"), str) and item["help"].strip():
            command["help"] = item["help"].strip()
        dropped = sorted(k for k in item if k not in ("name", "value", "help"))
        if dropped:
            draft.warn(f"{at('commands')}: command '{name}': {', '.join(dropped)} not carried over")
        commands.append(command)
    if commands:
        draft.data["commands"] = commands
        draft.warn(
            f"{at('commands')}: LoLLMs commands called the personality's Python processor; "
            "here each is a button that sends its value (e.g. "
            f"'{commands[0]['prompt']}') as a message"
        )


def _assets(folder: Path, draft: Draft) -> None:
    if folder.joinpath(*PROCESSOR).exists():
        draft.warn(
            f"{folder.joinpath(*PROCESSOR)}: this personality has a Python workflow, which was not "
            "run or imported; it is imported as a chat personality (rewrite the workflow as a "
            "pipeline: in personality.yaml)"
        )
    logo = folder.joinpath(*LOGO)
    if _leaves(folder, logo):
        draft.warn(f"{logo}: is or lies under a symbolic link; not copied")
    elif logo.is_file():
        size = logo.stat().st_size
        if size > MAX_LOGO_BYTES:
            draft.warn(f"{logo}: {size} bytes is too large for an avatar; not copied")
        else:
            draft.assets["assets/logo.png"] = logo.read_bytes()
            draft.data["avatar"] = "assets/logo.png"
    assets = folder / "assets"
    if assets.is_dir() and not _leaves(folder, assets):
        others = sorted(p.name for p in assets.iterdir() if p.name != "logo.png")
        if others:
            shown = ", ".join(others[:5]) + (
                f" and {len(others) - 5} more" if len(others) > 5 else ""
            )
            draft.warn(f"{assets}: only logo.png is copied; not copied: {shown}")


def _leaves(folder: Path, path: Path) -> bool:
    """Whether ``path`` is a symbolic link or reaches outside ``folder`` through one."""
    if path.is_symlink():
        return True
    try:
        return not path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return True
