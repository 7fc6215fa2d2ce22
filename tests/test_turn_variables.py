"""``Turn.variables``: initial values the step templates read as data, never as template source."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine_support import personality, run

from lollms_runtime.engine import Turn
from lollms_runtime.events import Reply
from lollms_runtime.testing import ScriptedTextBackend


def test_initial_variables_reach_templates_and_stay_literal(tmp_path: Path) -> None:
    base = personality(tmp_path, "description: d\n")
    p = dataclasses.replace(
        base,
        pipeline=(
            {
                "generate": {
                    "id": "answer",
                    "prompt": "Q: {{ question }}",
                    "answer_prefix": "{{ so_far }}",
                }
            },
            {"reply": {"text": "{{ answer }} / {{ question }} / {{ message }}"}},
        ),
    )
    text = ScriptedTextBackend("more words")
    turn = Turn(
        p,
        "the real message",
        variables={
            "question": "what is {{ 7 * 7 }}?",
            "so_far": "It is {% raw %}",
            "answer": "not this",  # the step's output replaces an initial value of its id
            "message": "shadowed",  # the turn's own names win over initial variables
        },
    )
    events = run(p, text=text, turn=turn)
    request = text.history[-1]
    assert request.messages[-1].content == "Q: what is {{ 7 * 7 }}?"
    assert request.answer_prefix == "It is {% raw %}"
    (reply,) = [e for e in events if isinstance(e, Reply)]
    assert reply.text == "It is {% raw %}more words / what is {{ 7 * 7 }}? / the real message"


def test_an_initial_variable_beats_a_declared_id(tmp_path: Path) -> None:
    base = personality(tmp_path, "description: d\n")
    p = dataclasses.replace(
        base,
        pipeline=(
            {"condition": {"if": "false", "then": [{"set": {"picked": "'then'"}}]}},
            {"reply": {"text": "picked={{ picked }}"}},
        ),
    )
    without = run(p, turn=Turn(p, "hi"))
    with_value = run(p, turn=Turn(p, "hi", variables={"picked": "initial"}))
    assert [e.text for e in without if isinstance(e, Reply)] == ["picked=None"]
    assert [e.text for e in with_value if isinstance(e, Reply)] == ["picked=initial"]
