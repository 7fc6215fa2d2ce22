"""Lorebook semantics, field by field: matching, secondary-key logic, scan depth, order, priority,
position, budget, recursion; and the lore applied in a turn with the trace saying why."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from engine_support import error, finished, personality, reply, run

from lollms_runtime.backends.base import ChatMessage
from lollms_runtime.errors import PersonalityError
from lollms_runtime.knowledge.limits import KnowledgeError
from lollms_runtime.knowledge.lore import Lorebook, apply, parse_lore, select
from lollms_runtime.testing import ScriptedTextBackend


def book(*entries: dict[str, Any], **options: Any) -> Lorebook:
    return parse_lore({"entries": list(entries), **options})


def fired(lore: Lorebook, message: str, history: tuple[ChatMessage, ...] = ()) -> list[str]:
    return [f.entry.label for f in select(lore, message, history).fired]


def user(text: str) -> ChatMessage:
    return ChatMessage("user", text)


def bot(text: str) -> ChatMessage:
    return ChatMessage("assistant", text)


# -- matching -------------------------------------------------------------------------------
def test_whole_word_is_the_default_and_case_is_ignored() -> None:
    lore = book({"name": "cat", "keys": ["cat"], "content": "Cats purr."})
    assert fired(lore, "My CAT sleeps") == ["cat"]
    assert fired(lore, "a category error") == []  # not inside another word


def test_substring_matching_fires_inside_words() -> None:
    lore = book({"name": "cat", "keys": ["cat"], "content": "x", "match": "substring"})
    assert fired(lore, "a category error") == ["cat"]


def test_case_sensitive_keys() -> None:
    lore = book({"name": "Rose", "keys": ["Rose"], "content": "x", "case_sensitive": True})
    assert fired(lore, "Rose came in") == ["Rose"]
    assert fired(lore, "a rose bloomed") == []


def test_keys_with_punctuation_still_match_as_words() -> None:
    lore = book({"name": "cpp", "keys": ["C++"], "content": "x"})
    assert fired(lore, "I write C++ daily") == ["cpp"]


def test_regex_keys() -> None:
    lore = book({"name": "year", "keys": [r"\b1[89]\d\d\b"], "content": "x", "match": "regex"})
    assert fired(lore, "born in 1871") == ["year"]
    assert fired(lore, "born in 2001") == []


def test_a_regex_that_does_not_compile_is_refused_with_its_place() -> None:
    with pytest.raises(KnowledgeError, match=r"lore\.entries\[0\]\.keys\[0\]: the pattern '\(a' "):
        book({"keys": ["(a"], "content": "x", "match": "regex"})


def test_catastrophic_backtracking_is_stopped_by_the_timeout() -> None:
    lore = book({"name": "evil", "keys": ["(a|aa)+$"], "content": "x", "match": "regex"})
    started = time.monotonic()
    with pytest.raises(KnowledgeError, match="catastrophic backtracking"):
        select(lore, "a" * 40 + "!")
    assert time.monotonic() - started < 2


def test_disabled_entries_never_fire_and_constant_ones_always_do() -> None:
    lore = book(
        {"name": "off", "keys": ["dragon"], "content": "x", "enabled": False},
        {"name": "always", "content": "The world is flat.", "constant": True},
    )
    result = select(lore, "a dragon")
    assert [(f.entry.label, f.reason) for f in result.fired] == [("always", "constant")]


def test_an_entry_needs_keys_unless_constant() -> None:
    with pytest.raises(KnowledgeError, match=r"lore\.entries\[0\]: an entry needs keys"):
        book({"content": "x"})


# -- secondary keys -------------------------------------------------------------------------
LOGIC_CASES = [
    ("and_any", "dragon fire", True),
    ("and_any", "dragon ice", True),
    ("and_any", "dragon", False),
    ("and_all", "dragon fire ice", True),
    ("and_all", "dragon fire", False),
    ("not_any", "dragon", True),
    ("not_any", "dragon fire", False),
    ("not_all", "dragon fire", True),
    ("not_all", "dragon fire ice", False),
]


@pytest.mark.parametrize(("logic", "message", "fires"), LOGIC_CASES)
def test_secondary_key_logic(logic: str, message: str, fires: bool) -> None:
    lore = book(
        {
            "name": "d",
            "keys": ["dragon"],
            "secondary_keys": ["fire", "ice"],
            "logic": logic,
            "content": "x",
        }
    )
    assert fired(lore, message) == (["d"] if fires else [])


def test_the_trace_names_the_key_that_matched() -> None:
    lore = book(
        {"name": "d", "keys": ["wyrm", "dragon"], "secondary_keys": ["fire"], "content": "x"}
    )
    result = select(lore, "the dragon breathes fire")
    assert result.fired[0].reason == "key 'dragon' and 'fire' in the chat"
    assert result.trace() == "lore: 'd' (key 'dragon' and 'fire' in the chat)"


# -- scan depth -----------------------------------------------------------------------------
def test_scan_depth_counts_the_users_message_and_recent_ones() -> None:
    history = (user("tell me of the dragon"), bot("It sleeps."), user("and then?"), bot("Hm."))
    entry = {"name": "d", "keys": ["dragon"], "content": "x"}
    assert fired(book(entry, scan_depth=1), "go on", history) == []
    assert fired(book(entry, scan_depth=4), "go on", history) == []
    assert fired(book(entry, scan_depth=5), "go on", history) == ["d"]
    assert fired(book(entry, scan_depth=0), "dragon", history) == []  # scans nothing


def test_an_entry_may_have_its_own_scan_depth() -> None:
    history = (user("the dragon"), bot("yes"))
    entry = {"name": "d", "keys": ["dragon"], "content": "x", "scan_depth": 3}
    assert fired(book(entry, scan_depth=1), "go on", history) == ["d"]


def test_the_default_scan_depth_is_two_messages() -> None:
    history = (user("the dragon"), bot("It sleeps."))
    entry = {"name": "d", "keys": ["dragon"], "content": "x"}
    assert fired(book(entry), "go on", history) == []
    assert fired(book(entry), "go on", (bot("the dragon wakes"),)) == ["d"]


# -- order, priority, budget ----------------------------------------------------------------
def test_insertion_order_lower_first() -> None:
    lore = book(
        {"name": "late", "keys": ["x"], "content": "L", "order": 200},
        {"name": "early", "keys": ["x"], "content": "E", "order": 10},
    )
    assert fired(lore, "x") == ["early", "late"]


def test_the_budget_drops_lower_priority_first_and_the_trace_says_so() -> None:
    forty = "w" * 160  # 40 estimated tokens
    lore = book(
        {"name": "low", "keys": ["x"], "content": forty, "priority": 1, "order": 1},
        {"name": "high", "keys": ["x"], "content": forty, "priority": 9, "order": 2},
        {"name": "mid", "keys": ["x"], "content": forty, "priority": 5, "order": 3},
        token_budget=90,
    )
    result = select(lore, "x")
    assert [f.entry.label for f in result.fired] == ["high", "mid"]
    assert result.dropped == ("low",)
    assert "over the budget: 'low'" in result.trace()


def test_constant_entries_count_against_the_budget_too() -> None:
    lore = book({"name": "c", "content": "w" * 400, "constant": True}, token_budget=50)
    assert select(lore, "hi").dropped == ("c",)


def test_a_token_counter_can_be_given() -> None:
    lore = book({"name": "c", "content": "one two three", "constant": True}, token_budget=2)
    assert select(lore, "hi", count_tokens=lambda t: len(t.split())).dropped == ("c",)
    assert select(lore, "hi", count_tokens=lambda t: 1).fired


# -- recursion ------------------------------------------------------------------------------
def test_recursive_scanning_lets_content_trigger_other_entries() -> None:
    entries = (
        {"name": "a", "keys": ["king"], "content": "The king rides a griffin."},
        {"name": "b", "keys": ["griffin"], "content": "Griffins eat gold."},
    )
    assert fired(book(*entries), "the king") == ["a"]
    result = select(book(*entries, recursive=True), "the king")
    assert [(f.entry.label, f.reason) for f in result.fired] == [
        ("a", "key 'king' in the chat"),
        ("b", "key 'griffin' in 'a'"),
    ]


def test_an_entry_can_refuse_to_trigger_others() -> None:
    entries = (
        {"name": "a", "keys": ["king"], "content": "griffin", "recursive": False},
        {"name": "b", "keys": ["griffin"], "content": "x"},
    )
    assert fired(book(*entries, recursive=True), "the king") == ["a"]


# -- position -------------------------------------------------------------------------------
def test_positions_before_after_and_at_depth() -> None:
    lore = book(
        {"name": "b", "keys": ["x"], "content": "BEFORE"},
        {"name": "a", "keys": ["x"], "content": "AFTER", "position": "after"},
        {"name": "d", "keys": ["x"], "content": "DEEP", "position": "depth", "depth": 2},
        {
            "name": "u",
            "keys": ["x"],
            "content": "AS USER",
            "position": "depth",
            "depth": 0,
            "role": "user",
        },
    )
    messages = [ChatMessage("system", "COND"), user("one"), bot("two"), user("x")]
    out = apply(messages, select(lore, "x"))
    assert [(m.role, m.content) for m in out] == [
        ("system", "BEFORE\n\nCOND\n\nAFTER"),
        ("user", "one"),
        ("system", "DEEP"),
        ("assistant", "two"),
        ("user", "x"),
        ("user", "AS USER"),
    ]


def test_a_depth_beyond_the_history_goes_right_after_the_conditioning() -> None:
    lore = book({"keys": ["x"], "content": "DEEP", "position": "depth", "depth": 50})
    out = apply([ChatMessage("system", "C"), user("x")], select(lore, "x"))
    assert [m.content for m in out] == ["C", "DEEP", "x"]


def test_without_a_conditioning_a_system_message_is_made() -> None:
    lore = book({"keys": ["x"], "content": "LORE"})
    assert apply([user("x")], select(lore, "x"))[0] == ChatMessage("system", "LORE")


# -- bounds and load-time errors ------------------------------------------------------------
def test_too_many_entries_are_refused() -> None:
    with pytest.raises(KnowledgeError, match="1001 entries; the limit is 1000"):
        book(*({"keys": ["k"], "content": "x"} for _ in range(1001)))


def test_the_schema_checks_lore_at_load_with_a_location(tmp_path: Path) -> None:
    body = "lore:\n  entries:\n    - keys: [x]\n      content: y\n      position: middle\n"
    with pytest.raises(PersonalityError) as caught:
        personality(tmp_path, body)
    assert "personality.yaml:9:17: lore.entries[0].position" in str(caught.value)


# -- in a turn ------------------------------------------------------------------------------
LORE = """\
lore:
  entries:
    - name: Kingdom
      keys: [kingdom]
      content: The kingdom of Varn is ruled by Queen Ysolde.
    - name: Rules
      constant: true
      content: Never mention the moon.
      position: after
"""


def test_lore_reaches_the_model_and_the_trace_says_why(tmp_path: Path) -> None:
    backend = ScriptedTextBackend("Queen Ysolde rules.")
    events = run(personality(tmp_path, LORE), "Who rules the kingdom?", backend)
    system = backend.history[0].messages[0]
    assert system == ChatMessage(
        "system",
        "The kingdom of Varn is ruled by Queen Ysolde.\n\nYou are a test.\n\nNever mention the moon.",
    )
    detail = finished(events, "answer").detail
    assert detail == "lore: 'Kingdom' (key 'kingdom' in the chat), 'Rules' (constant)"
    assert reply(events).text == "Queen Ysolde rules."


def test_templates_read_the_entries_that_fired(tmp_path: Path) -> None:
    body = LORE + (
        "pipeline:\n"
        "  - generate: {id: answer}\n"
        '  - reply: {text: "{% for e in lore %}{{ e.name }}={{ e.reason }};{% endfor %}"}\n'
    )
    events = run(personality(tmp_path, body), "the kingdom", ScriptedTextBackend("ok"))
    assert reply(events).text == "Kingdom=key 'kingdom' in the chat;Rules=constant;"


def test_a_broken_pattern_is_refused_at_load_with_its_place(tmp_path: Path) -> None:
    body = "lore:\n  entries:\n    - keys: [ok, '(a']\n      content: y\n      match: regex\n"
    with pytest.raises(PersonalityError) as caught:
        personality(tmp_path, body)
    assert str(caught.value).endswith(
        "personality.yaml:7:18: lore.entries[0].keys[1]: the pattern '(a' is not a valid regular "
        "expression (missing ) at position 2)\n"
        "    hint: fix the pattern, or use match: whole_word to match the key as written"
    )


def test_a_pattern_that_backtracks_fails_the_turn_with_a_message(tmp_path: Path) -> None:
    body = "lore:\n  entries:\n    - {name: evil, keys: ['(a|aa)+$'], content: y, match: regex}\n"
    events = run(personality(tmp_path, body), "a" * 40 + "!", ScriptedTextBackend("x"))
    message = error(events).message
    assert "lore.entries[0]: the pattern '(a|aa)+$' took longer than 0.05s" in message


def test_templates_cannot_reach_the_turn_through_lore(tmp_path: Path) -> None:
    body = LORE + "pipeline:\n  - reply: {text: '{{ lore._ctx }}'}\n"
    events = run(personality(tmp_path, body, static_checks=False), "the kingdom")
    assert "access to attribute '_ctx' of 'TurnLore' object is unsafe" in error(events).message
