"""The generated controls: each Setting type maps to its control, and a changed value reaches the
pipeline's template context (seen in what the scripted backends were asked)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from lollms_runtime.app import controls
from lollms_runtime.app.turns import Chat
from lollms_runtime.conversation import ConversationService
from lollms_runtime.engine import Engine
from lollms_runtime.personality import Setting
from lollms_runtime.runtime import Runtime
from lollms_runtime.store import Store
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

ROOT = Path(__file__).resolve().parent.parent
ANSWER = "Artbot: A neon city at night, with towering skyscrapers glowing in violet light."


class Rig:
    """A runtime on scripted backends, a store in tmp, and the app's turn runner."""

    def __init__(self, tmp_path: Path) -> None:
        self.text = ScriptedTextBackend()
        self.image = ScriptedImageBackend()
        self.image_calls: list[tuple[str | None, str | None]] = []
        self.runtime = Runtime(
            personalities=[ROOT / "personalities", ROOT / "tests" / "personalities"]
        )

        def painter(name: str | None, model: str | None) -> ScriptedImageBackend:
            self.image_calls.append((name, model))
            return self.image

        self.runtime.engine = Engine(
            self.runtime.host, self.text, painter, resolve_personality=self.runtime.catalog.get
        )
        self.store = Store(tmp_path / "discussions.sqlite3")
        self.chat = Chat(ConversationService(self.runtime, self.store))

    def turn(self, pid: str, values: dict[str, Any], sampling: dict[str, Any] | None = None) -> Any:
        """Run one turn with control ``values`` passed through the real Gradio components."""
        personality = self.runtime.catalog.get(pid)
        received = []
        for setting in personality.settings.values():
            component = controls.build_control(setting, values.get(setting.name))
            # What the browser sends back is what the handler receives after preprocess.
            received.append(component.preprocess(component.value))
        settings = controls.settings_from(personality, received)
        self.text.enqueue(ANSWER)
        turns = self.chat.send(
            personality,
            "Imagine something cool.",
            discussion_id=None,
            settings=settings,
            sampling=sampling or {},
            cancel=threading.Event(),
        )
        return list(turns)[-1]


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    return Rig(tmp_path)


@pytest.mark.parametrize(
    ("setting", "kind", "extra"),
    [
        (Setting("flag", "boolean", True, title="A flag"), "checkbox", {}),
        (Setting("mode", "string", "a", enum=("a", "b")), "dropdown", {"choices": ["a", "b"]}),
        (Setting("n", "integer", 3, minimum=1, maximum=9), "slider", {"step": 1}),
        (Setting("r", "number", 1.0, minimum=0, maximum=2, step=0.5), "slider", {"step": 0.5}),
        (Setting("x", "number", 2.5), "number", {"precision": None}),
        (Setting("i", "integer", 2), "number", {"precision": 0}),
        (Setting("s", "string", "hi"), "textbox", {"lines": 1}),
        (Setting("t", "string", "hi", multiline=True), "textarea", {"lines": 3}),
    ],
)
def test_each_setting_type_maps_to_its_control(setting: Setting, kind: str, extra: dict[str, Any]):
    spec = controls.control_spec(setting)
    assert spec.kind == kind
    assert spec.kwargs["value"] == setting.default
    assert spec.kwargs["label"] == setting.label
    for key, value in extra.items():
        assert spec.kwargs[key] == value


def test_description_becomes_info_and_saved_value_wins() -> None:
    setting = Setting("amount", "number", 2.5, title="Amount", description="An unbounded number.")
    component = controls.build_control(setting, 4.0)
    assert type(component).__name__ == "Number"
    assert component.label == "Amount"
    assert component.info == "An unbounded number."
    assert component.value == 4.0


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("flag", False, "flag=False"),
        ("mode", "loud", "mode=loud"),
        ("count", 7, "count=7"),
        ("ratio", 1.5, "ratio=1.5"),
        ("amount", 42.25, "amount=42.25"),
        ("label", "fancy", "label=fancy"),
        ("notes", "line one\nline two", "notes=line one\nline two"),
    ],
)
def test_changed_control_reaches_the_template_context(
    rig: Rig, name: str, value: Any, shown: str
) -> None:
    rig.turn("app_controls", {})
    default_system = rig.text.history[-1].messages[0].content
    assert shown not in default_system
    rig.turn("app_controls", {name: value})
    system = rig.text.history[-1].messages[0].content
    assert system.startswith("flag=")
    assert shown in system


def test_gpt_for_art_controls_reach_the_painter(rig: Rig) -> None:
    rig.turn(
        "gpt_for_art",
        {
            "steps": 7,
            "guidance": 3.5,
            "width": 256,
            "negative_prompt": "no cats\nno dogs",
            "image_model": "my/painter",
            "style": "watercolour",
            "seed": 11,
        },
    )
    request = rig.image.history[-1]
    assert (request.steps, request.guidance, request.width) == (7, 3.5, 256)
    assert request.negative_prompt == "no cats\nno dogs"
    assert request.seed == 11
    assert request.prompt.endswith(", watercolour")
    assert rig.image_calls[-1] == ("mlx-diffusion", "my/painter")
    assert "The artwork is a watercolour." in rig.text.history[-1].messages[0].content


def test_paint_checkbox_off_takes_the_else_branch(rig: Rig) -> None:
    _, shown = rig.turn("gpt_for_art", {"paint": True})
    assert len(rig.image.history) == 1
    assert any(isinstance(m["content"], dict) for m in shown.messages)  # the image inline
    _, shown = rig.turn("gpt_for_art", {"paint": False})
    assert len(rig.image.history) == 1
    condition = [
        m for m in shown.messages if m.get("metadata", {}).get("title", "").startswith("condition")
    ]
    assert "else" in condition[-1]["metadata"]["log"]
    assert not any(isinstance(m["content"], dict) for m in shown.messages)


def test_sampling_panel_reaches_the_request(rig: Rig) -> None:
    personality = rig.runtime.catalog.get("gpt_for_art")
    values = controls.sampling_values(personality.sampling)
    assert values[-1] == -1  # no seed: random
    panel = controls.build_sampling_controls(personality.sampling)
    changed = {
        "temperature": 0.3,
        "top_p": 0.5,
        "top_k": 5,
        "max_tokens": 9,
        "repetition_penalty": 1.3,
    }
    received = []
    for (name, *_), component in zip(controls.SAMPLING_FIELDS, panel, strict=False):
        received.append(component.preprocess(changed[name]))
    received.append(panel[-1].preprocess(123))
    sampling = controls.sampling_from(received)
    rig.turn("gpt_for_art", {"paint": False}, sampling)
    got = rig.text.history[-1].sampling
    assert (got.temperature, got.top_p, got.top_k, got.max_tokens) == (0.3, 0.5, 5, 9)
    assert got.repetition_penalty == 1.3
    assert got.seed == 123
    assert controls.sampling_from([*received[:-1], -1]).get("seed") is None


def test_settings_are_saved_per_personality(rig: Rig) -> None:
    personality = rig.runtime.catalog.get("app_controls")
    rig.store.save_settings("app_controls", {"count": 8, "mode": "nope", "gone": 1})
    values = controls.saved_values(personality, rig.store.get_settings("app_controls"))
    assert values["count"] == 8
    assert values["mode"] == "calm"  # no longer valid: the default
    assert "gone" not in values
