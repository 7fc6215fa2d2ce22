"""YAML 1.1's extra booleans (yes, no, on, off) are read as the words written, as in YAML 1.2.

PyYAML alone turns `no:` into the key False and `answer: no` into False; a setting or a switch
case named `yes` then silently vanished. Keys keep the word; values keep the word, and where a
boolean is wanted the loader says where and to write true or false.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_support import host, personality, reply, run

from lollms_runtime.errors import PersonalityError
from lollms_runtime.loader import load_personality
from lollms_runtime.yamldoc import parse_yaml

HEAD = "schema: 1\nid: bot\nname: Bot\nconditioning: Hi.\n"


def test_keys_keep_the_word_written() -> None:
    doc = parse_yaml(
        "yes: 1\nNo: 2\non: 3\nOFF: 4\ny: 5\nn: 6\ntrue: 7\nFalse: 8\n'yes ': 9\n", "f.yaml"
    )
    assert list(doc.data) == ["yes", "No", "on", "OFF", "y", "n", "true", "False", "yes "]
    assert doc.key_marks[("OFF",)] == (4, 1)


def test_words_that_used_to_collide_are_separate_keys() -> None:
    # Under YAML 1.1 both are the key True: a duplicate, or the first one silently lost.
    assert parse_yaml("cases:\n  yes: 1\n  on: 2\n", "f.yaml").data == {
        "cases": {"yes": 1, "on": 2}
    }


def test_a_repeated_word_is_still_a_located_duplicate() -> None:
    with pytest.raises(PersonalityError) as info:
        parse_yaml("cases:\n  yes: 1\n  yes: 2\n", "f.yaml")
    assert str(info.value) == (
        "f.yaml:3:3: cases.yes: duplicate key 'yes' (first defined at line 2)\n"
        "    hint: YAML keeps only the last value: remove or rename one of them"
    )


def test_values_follow_yaml_1_2() -> None:
    data = parse_yaml(
        "a: [yes, No, on, OFF, y, n, true, False, TRUE, 'true', ~, 3, 1.5]\n", "f.yaml"
    ).data
    assert data == {
        "a": ["yes", "No", "on", "OFF", "y", "n", True, False, True, "true", None, 3, 1.5]
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "settings:\n  paint: {type: boolean, default: yes}\n",
            "p.yaml:6:35: settings.paint.default: expected a boolean, got a string ('yes')\n"
            "    hint: write true or false ('yes' is read as text, as in YAML 1.2)",
        ),
        (
            "pipeline:\n  - generate: {id: a, history: Off}\n  - reply: {text: '{{ a }}'}\n",
            "p.yaml:6:32: pipeline[0].generate.history: expected a boolean, got a string ('Off')\n"
            "    hint: write true or false ('Off' is read as text, as in YAML 1.2)",
        ),
    ],
)
def test_a_word_where_a_boolean_is_wanted_is_a_located_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(HEAD + body, encoding="utf-8")
    with pytest.raises(PersonalityError) as info:
        load_personality("p.yaml", host())
    assert str(info.value) == expected


SWITCH = """
settings:
  answer: {type: string, default: no, enum: [yes, no, maybe]}
  flag: {type: boolean, default: true}
pipeline:
  - condition:
      id: said
      switch: settings.answer
      cases:
        yes: [{set: {out: "agreed"}}]
        no: [{set: {out: "refused"}}]
      default: [{set: {out: "undecided"}}]
  - condition:
      id: flagged
      switch: settings.flag
      cases:
        true: [{set: {flag_out: "on"}}]
        false: [{set: {flag_out: "off"}}]
  - set: {word: no}
  - reply: {text: "{{ out }}/{{ said }}/{{ flag_out }}/{{ word }}"}
"""


@pytest.mark.parametrize(
    ("settings", "text"),
    [
        ({}, "refused/no/on/no"),
        ({"answer": "yes", "flag": False}, "agreed/yes/off/no"),
        ({"answer": "maybe"}, "undecided/maybe/on/no"),
    ],
)
def test_switch_cases_named_yes_and_no(
    tmp_path: Path, settings: dict[str, object], text: str
) -> None:
    p = personality(tmp_path, SWITCH)
    assert p.settings["answer"].default == "no"
    assert reply(run(p, settings=settings)).text == text


def test_a_quoted_word_keeps_the_schema_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(HEAD + "settings:\n  paint: {type: boolean, default: 'yes'}\n")
    with pytest.raises(PersonalityError) as info:
        load_personality("p.yaml", host())
    assert str(info.value).endswith(
        "    hint: The default must be a value of the setting's type (boolean)."
    )
