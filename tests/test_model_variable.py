"""``model`` in templates: the model a turn runs on, so a workflow can say what a small model does
badly (the router's translations on the embedded 135M model) instead of doing it."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_support import done, host, personality, reply, run

from lollms_runtime.context import ModelInfo
from lollms_runtime.errors import PersonalityError
from lollms_runtime.loader import load_personality
from lollms_runtime.testing import ScriptedTextBackend

ROUTER = Path(__file__).resolve().parent.parent / "personalities" / "router"


def scripted(parameters: int | None, *answers: str) -> ScriptedTextBackend:
    backend = ScriptedTextBackend(*answers)
    backend.parameters = parameters
    return backend


def test_templates_read_the_model_id_backend_and_size(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - reply: {text: "{{ model.id }} {{ model.backend }} {{ model.parameters }} {{ model['id'] }}"}
        """,
    )
    assert reply(run(p, text=scripted(135_000_000))).text == "scripted scripted 135000000 scripted"
    # A backend that cannot tell (a remote server) reads as none, so `model.parameters and ...`
    # is simply false.
    assert reply(run(p, text=scripted(None))).text == "scripted scripted None scripted"


def test_the_model_is_looked_up_only_when_a_template_reads_it() -> None:
    asked: list[int] = []

    def backend() -> ScriptedTextBackend:
        asked.append(1)
        return scripted(7)

    info = ModelInfo(backend)
    assert asked == []
    assert dict(info) == {"id": "scripted", "backend": "scripted", "parameters": 7}
    assert info["parameters"] == 7 and asked == [1]  # looked up once


def test_a_size_the_backend_gets_wrong_is_not_passed_on(tmp_path: Path) -> None:
    p = personality(tmp_path, 'pipeline:\n  - reply: {text: "{{ model.parameters }}"}\n')
    backend = ScriptedTextBackend()
    backend.parameters = "7B"  # type: ignore[assignment]  # a plugin's mistake
    assert reply(run(p, text=backend)).text == "None"


@pytest.mark.parametrize(
    ("step", "where"),
    [
        ("- set: {model: '1'}", "pipeline[0].set.model"),
        ("- generate: {id: model}", "pipeline[0].generate.id"),
        ("- post_process: {id: history, input: x, ops: [strip]}", "pipeline[0].post_process.id"),
    ],
)
def test_a_step_cannot_take_a_name_every_template_has(
    tmp_path: Path, step: str, where: str
) -> None:
    with pytest.raises(PersonalityError) as raised:
        personality(tmp_path, f"pipeline:\n  {step}\n  - reply\n")
    text = str(raised.value)
    assert f"{where}: '" in text and "is a name every template already has" in text, text
    assert "personality.yaml:" in text and "hint: choose another name" in text, text


def router_answer(parameters: int | None, *answers: str) -> tuple[str, ScriptedTextBackend]:
    p = load_personality(ROUTER / "lollms_personality_router", host())
    backend = scripted(parameters, *answers).enqueue_choice("translate")
    events = run(p, "Translate into French: the cat sleeps on the sofa.", text=backend)
    assert done(events).status == "ok", events[-3:]
    return reply(events).text, backend


def test_the_router_says_a_small_model_cannot_translate_and_how_to_get_one() -> None:
    text, backend = router_answer(135_000_000)
    assert text.startswith("This model is too small to translate (135M parameters)"), text
    assert "`lollms models pull mlx-community/Qwen2.5-1.5B-Instruct-4bit`" in text, text
    assert backend.history == []  # no word salad was generated


@pytest.mark.parametrize("parameters", [1_500_000_000, None])
def test_the_router_translates_on_a_big_model_or_one_of_unknown_size(
    parameters: int | None,
) -> None:
    text, backend = router_answer(parameters, "Le chat dort sur le canapé.")
    assert text == "Le chat dort sur le canapé."
    assert "You translate text into French" in (backend.history[-1].messages[0].content or "")
