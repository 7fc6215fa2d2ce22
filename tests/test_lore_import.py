"""Import of knowledge: a SillyTavern card's character_book (V2 and V3) becomes lore:, a LoLLMs
personality's data/ folder becomes knowledge: documents, a list conditioning is joined."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_support import host

from lollms_runtime.importers import import_source
from lollms_runtime.knowledge.lore import parse_lore, select
from lollms_runtime.loader import load_personality


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))


def card(spec: str, book: dict[str, Any]) -> dict[str, Any]:
    data = {
        "name": "Seraphina",
        "description": "{{char}} guards the glade.",
        "first_mes": "Hello {{user}}.",
        "character_book": book,
    }
    version = "3.0" if spec == "chara_card_v3" else "2.0"
    return {"spec": spec, "spec_version": version, "data": data}


def imported(tmp_path: Path, spec: str, book: dict[str, Any]) -> tuple[dict[str, Any], str]:
    source = tmp_path / "card.json"
    source.write_text(json.dumps(card(spec, book)), encoding="utf-8")
    result = import_source(source, tmp_path / "out")
    (folder,) = result.package.glob("lollms_personality_*")
    load_personality(folder, host())  # what was written validates
    data = yaml.safe_load((folder / "personality.yaml").read_text(encoding="utf-8"))
    return data, "\n".join(result.warnings)


V2_BOOK = {
    "name": "Glade lore",
    "scan_depth": 3,
    "token_budget": 300,
    "recursive_scanning": True,
    "extensions": {},
    "entries": [
        {
            "keys": ["{{char}}", "guardian"],
            "content": "{{char}} has watched over {{user}}'s village for a century.",
            "extensions": {},
            "enabled": True,
            "insertion_order": 5,
            "case_sensitive": True,
            "name": "History",
            "priority": 7,
            "id": 1,
            "comment": "not used",
            "selective": True,
            "secondary_keys": ["village"],
            "constant": False,
            "position": "after_char",
        },
        {
            "keys": ["moon"],
            "content": "The moon is sacred.",
            "extensions": {
                "position": 4,
                "depth": 2,
                "role": 1,
                "selectiveLogic": 2,
                "match_whole_words": True,
                "scan_depth": 6,
                "prevent_recursion": True,
            },
            "enabled": False,
            "insertion_order": 100,
            "secondary_keys": ["sun"],
            "selective": True,
        },
        {
            "keys": [],
            "content": "Magic is rare.",
            "extensions": {},
            "enabled": True,
            "insertion_order": 1,
            "constant": True,
        },
    ],
}


def test_a_v2_character_book_becomes_lore_field_by_field(tmp_path: Path) -> None:
    data, warnings = imported(tmp_path, "chara_card_v2", V2_BOOK)
    assert data["lore"] == {
        "scan_depth": 3,
        "token_budget": 300,
        "recursive": True,
        "entries": [
            {
                "name": "History",
                "keys": ["Seraphina", "guardian"],
                "secondary_keys": ["village"],
                "logic": "and_any",
                "content": "Seraphina has watched over User's village for a century.",
                "match": "substring",
                "case_sensitive": True,
                "order": 5,
                "priority": 7,
                "position": "after",
            },
            {
                "keys": ["moon"],
                "secondary_keys": ["sun"],
                "logic": "not_any",
                "content": "The moon is sacred.",
                "match": "whole_word",
                "enabled": False,
                "order": 100,
                "scan_depth": 6,
                "recursive": False,
                "position": "depth",
                "depth": 2,
                "role": "user",
            },
            {
                "content": "Magic is rare.",
                "match": "substring",
                "constant": True,
                "order": 1,
            },
        ],
    }
    assert "character_book" not in warnings  # everything had a place
    # And it behaves: the constant entry first (order 1), the History entry on its keys.
    lore = parse_lore(data["lore"])
    result = select(lore, "Is Seraphina from the village?")
    assert [(f.entry.label, f.reason) for f in result.fired] == [
        ("entry 2", "constant"),
        ("History", "key 'Seraphina' and 'village' in the chat"),
    ]


def test_v3_regex_keys_decorators_and_unknown_features_are_reported(tmp_path: Path) -> None:
    book = {
        "extensions": {"world_id": 3},
        "future_field": True,
        "entries": [
            {
                "keys": ["/dragons?/i", "/Wyrm/"],
                "content": "@@depth 1\n@@role assistant\n@@activate_only_after 3\nDragons sleep.",
                "extensions": {"sticky": 2, "probability": 50, "useProbability": True, "vibe": 1},
                "enabled": True,
                "insertion_order": 10,
                "use_regex": True,
                "group_name": "x",
            },
            {
                "keys": ["forest"],
                "content": "Old trees.",
                "extensions": {"position": 2},
                "enabled": True,
                "insertion_order": 10,
                "use_regex": False,
                "selective": False,
                "secondary_keys": ["oak"],
            },
        ],
    }
    data, warnings = imported(tmp_path, "chara_card_v3", book)
    first, second = data["lore"]["entries"]
    assert first == {
        "keys": ["dragons?", "Wyrm"],
        "content": "Dragons sleep.",
        "match": "regex",
        "case_sensitive": True,  # one key had no 'i' flag
        "order": 10,
        "position": "depth",
        "depth": 1,
        "role": "assistant",
    }
    assert second["position"] == "after" and "secondary_keys" not in second
    for expected in (
        "character_book.future_field not carried over (unknown lorebook field)",
        "character_book.extensions not carried over: world_id",
        "character_book entry 0: field 'group_name' not carried over (unknown lorebook field)",
        "character_book entry 0: decorator @@activate_only_after 3 not carried over",
        "character_book entry 0: extensions.sticky = 2 not carried over",
        "character_book entry 0: extensions.probability = 50 not carried over",
        "character_book entry 0: extensions.vibe not carried over (unknown lorebook extension)",
        "character_book entry 1: position 'top of Author's Note' has no equivalent",
        "character_book entry 1: secondary_keys ignored: selective is false",
    ):
        assert expected in warnings, (expected, warnings)
    assert parse_lore(data["lore"]).entries[0].match == "regex"  # the patterns compile


def test_an_entry_without_keys_is_kept_disabled_and_reported(tmp_path: Path) -> None:
    book = {
        "entries": [
            {
                "keys": [],
                "content": "Lost.",
                "extensions": {},
                "enabled": True,
                "insertion_order": 1,
            }
        ]
    }
    data, warnings = imported(tmp_path, "chara_card_v2", book)
    assert data["lore"]["entries"][0]["enabled"] is False
    assert "no keys and not constant: it could never fire; kept disabled" in warnings


# -- LoLLMs ---------------------------------------------------------------------------------
def lollms_folder(tmp_path: Path, config: str) -> Path:
    folder = tmp_path / "src" / "keeper"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(config, encoding="utf-8")
    return folder


def test_a_list_conditioning_is_joined_line_by_line_not_dropped(tmp_path: Path) -> None:
    config = (
        "name: Keeper\npersonality_conditioning:\n  - '!@>system: Act as a lighthouse keeper.'\n"
        "  - Answer briefly.\npersonality_description:\n  - Keeps the light.\n  - Knows the sea.\n"
    )
    result = import_source(lollms_folder(tmp_path, config), tmp_path / "out")
    (folder,) = result.package.glob("lollms_personality_*")
    data = yaml.safe_load((folder / "personality.yaml").read_text(encoding="utf-8"))
    assert data["conditioning"] == "Act as a lighthouse keeper.\nAnswer briefly."
    assert data["description"] == "Keeps the light.\nKnows the sea."
    assert not any("conditioning" in w for w in result.warnings)


def test_the_data_folder_becomes_knowledge_documents(tmp_path: Path) -> None:
    folder = lollms_folder(tmp_path, "name: Keeper\npersonality_conditioning: Keep the light.\n")
    data_dir = folder / "data"
    data_dir.mkdir()
    (data_dir / "lamp.md").write_text("# Lamp\n\nThe lamp burns colza oil.\n", encoding="utf-8")
    (data_dir / "log.txt").write_text("Storm on the 3rd.\n", encoding="utf-8")
    (data_dir / "tool.exe").write_bytes(b"MZ")
    (data_dir / "db.db").write_bytes(b"SQLite format 3\x00")  # LoLLMs' own index: not a document
    result = import_source(folder, tmp_path / "out")
    (package,) = result.package.glob("lollms_personality_*")
    data = yaml.safe_load((package / "personality.yaml").read_text(encoding="utf-8"))
    assert data["knowledge"] == ["knowledge/lamp.md", "knowledge/log.txt"]
    assert (package / "knowledge" / "lamp.md").read_text().startswith("# Lamp")
    assert any(
        "tool.exe: '.exe' documents cannot be read here; not copied" in w for w in result.warnings
    )
    # The imported personality retrieves from them.
    from lollms_runtime.knowledge.library import personality_index

    index = personality_index(load_personality(package, host()))
    assert index is not None
    assert index.search("what oil does the lamp burn", 1)[0].source == "knowledge/lamp.md"
