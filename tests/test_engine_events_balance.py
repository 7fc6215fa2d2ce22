"""Every StepStarted gets its StepFinished (cancel, limits, errors), inner steps closing first; and
nested steps are found under the keys a step kind declares, not by the shape of its body."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT
from engine_support import done, error, host, personality, run, tokens

from lollms_runtime.backends.base import ChoiceResult, GenerationRequest, TextChunk
from lollms_runtime.contracts import StepKind
from lollms_runtime.default_plugins.steps import BUILTIN_STEP_KINDS
from lollms_runtime.engine import Engine, Limits, StepContext, Turn, streamed_ids
from lollms_runtime.errors import PersonalityError
from lollms_runtime.events import Done, Event, StepFinished, StepStarted, Token
from lollms_runtime.loader import load_personality
from lollms_runtime.personality import Personality
from lollms_runtime.pipeline import walk as _walk
from lollms_runtime.plugins import PluginHost, get_plugin_manager, hookimpl
from lollms_runtime.recorder import record_turn
from lollms_runtime.store import Store
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

# -- the balance check ---------------------------------------------------------------------


@dataclass
class _Open:
    started: StepStarted
    text: list[str] = field(default_factory=list)  # the step's own tokens


def balanced(events: Sequence[Event]) -> list[StepFinished]:
    """Check StepStarted/StepFinished nest like parentheses and all close before Done; check a
    cut-short step's output is the text it streamed. Returns the StepFinished events in order."""
    stack: list[_Open] = []
    closed: list[StepFinished] = []
    for index, event in enumerate(events):
        if isinstance(event, StepStarted):
            stack.append(_Open(event))
        elif isinstance(event, Token):
            for frame in stack:
                if frame.started.step_id == event.step_id:
                    frame.text.append(event.text)
        elif isinstance(event, StepFinished):
            assert stack, f"event {index}: {event.step_id} finished but was never started"
            frame = stack.pop()
            assert (frame.started.step_id, frame.started.path) == (event.step_id, event.path), (
                f"event {index}: {event.step_id} at {event.path} closes "
                f"{frame.started.step_id} at {frame.started.path}"
            )
            assert event.kind == frame.started.kind
            if event.status in ("cancelled", "failed") and frame.text:
                assert event.output == "".join(frame.text), event  # the partial text is kept
            closed.append(event)
        elif isinstance(event, Done):
            assert index == len(events) - 1, "Done is not the last event"
            assert not stack, f"still running at Done: {[f.started.step_id for f in stack]}"
    assert isinstance(events[-1], Done)
    return closed


def statuses(events: Sequence[Event]) -> list[tuple[str, str]]:
    return [(f.step_id, f.status) for f in balanced(events)]


def cancel_after(backend: ScriptedTextBackend, n: int) -> threading.Event:
    cancel = threading.Event()
    backend.on_chunk = lambda emitted: cancel.set() if emitted == n else None
    return cancel


# -- cancellation --------------------------------------------------------------------------


def test_cancel_mid_generate_closes_the_step_with_its_partial_text(tmp_path: Path) -> None:
    p = personality(tmp_path, "")
    backend = ScriptedTextBackend("one two three four five")
    cancel = cancel_after(backend, 2)
    events = run(p, text=backend, turn=Turn(p, "hi", cancel=cancel))
    assert statuses(events) == [("answer", "cancelled")]
    (step,) = balanced(events)
    assert (step.output, step.error) == ("one two", "")
    assert step.generation_tokens == 2
    assert (done(events).status, done(events).text) == ("cancelled", "one two")


def test_cancel_of_a_hidden_generate_keeps_its_partial_text(tmp_path: Path) -> None:
    p = personality(tmp_path, "pipeline:\n  - generate: {id: notes}\n  - reply: {text: 'fixed'}\n")
    backend = ScriptedTextBackend("alpha beta gamma")
    cancel = cancel_after(backend, 2)
    events = run(p, text=backend, turn=Turn(p, "hi", cancel=cancel))
    assert [t.visible for t in tokens(events)] == [False, False]
    (step,) = balanced(events)
    assert (step.status, step.output) == ("cancelled", "alpha beta")


def test_cancel_inside_a_loop_closes_inner_then_outer(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - loop:
              id: rounds
              max: 3
              steps:
                - generate: {id: draft}
          - reply: {text: "{{ draft }}"}
        """,
    )
    backend = ScriptedTextBackend("a b", "c d e", "f")
    cancel = threading.Event()
    seen = [0]

    def on_chunk(emitted: int) -> None:
        seen[0] += 1
        if seen[0] == 4:  # the second token of the second round
            cancel.set()

    backend.on_chunk = on_chunk
    events = run(p, text=backend, turn=Turn(p, "hi", cancel=cancel))
    assert statuses(events) == [
        ("draft", "ok"),
        ("draft", "cancelled"),
        ("rounds", "cancelled"),
    ]
    finished = balanced(events)
    assert finished[1].output == "c d"
    assert finished[2].output == "c d"  # the visible text the loop's round produced
    assert done(events).status == "cancelled"


@pytest.mark.parametrize("target", ["pipeline: inner", "personality: callee"])
def test_cancel_inside_a_call_closes_every_level(tmp_path: Path, target: str) -> None:
    callee = personality(tmp_path, "", pid="callee")
    p = personality(
        tmp_path,
        f"""
        pipelines:
          inner:
            - generate: {{id: said}}
            - reply: {{text: "{{{{ said }}}}"}}
        pipeline:
          - condition:
              id: branch
              if: "true"
              then:
                - call: {{id: result, {target}}}
          - reply: {{text: "{{{{ result }}}}"}}
        """,
    )
    backend = ScriptedTextBackend("alpha beta gamma")
    cancel = cancel_after(backend, 2)
    events = run(p, text=backend, turn=Turn(p, "hi", cancel=cancel), resolve=lambda pid: callee)
    inner = "said" if target.startswith("pipeline") else "answer"
    assert statuses(events) == [
        (inner, "cancelled"),
        ("result", "cancelled"),
        ("branch", "cancelled"),
    ]
    assert [f.output for f in balanced(events)] == ["alpha beta"] * 3
    assert (done(events).status, done(events).text) == ("cancelled", "alpha beta")


def test_cancel_between_nested_steps_closes_the_open_ones(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - for_each:
              id: each
              items: "[1, 2, 3]"
              steps:
                - generate: {id: g}
        """,
    )
    cancel = threading.Event()
    engine = Engine(host(), ScriptedTextBackend("x", "y", "z"))
    events: list[Event] = []
    for event in engine.run_turn(Turn(p, "hi", cancel=cancel)):
        events.append(event)
        if isinstance(event, StepFinished) and event.step_id == "g":
            cancel.set()  # Stop pressed after the first item: the next step never starts
    assert statuses(events) == [("g", "ok"), ("each", "cancelled")]


# -- limits and errors ---------------------------------------------------------------------


def test_max_steps_inside_a_loop_closes_the_loop(tmp_path: Path) -> None:
    p = personality(tmp_path, "pipeline:\n  - loop: {id: l, max: 50, steps: [{set: {x: 1}}]}\n")
    events = run(p, limits=Limits(max_steps=4))
    assert statuses(events) == [("set", "ok")] * 3 + [("l", "failed")]
    assert balanced(events)[-1].error == "the turn ran more than 4 steps"
    assert error(events).message == "the turn ran more than 4 steps"


def test_max_tokens_closes_the_generate_with_its_text(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - condition:
              id: c
              if: "true"
              then:
                - generate: {id: a}
                - generate: {id: b}
                - generate: {id: d}
        """,
    )
    backend = ScriptedTextBackend("one two three", "four", "five six")
    events = run(p, text=backend, limits=Limits(max_tokens=4))
    assert statuses(events) == [("a", "ok"), ("b", "ok"), ("d", "failed"), ("c", "failed")]
    message = error(events).message
    assert message.startswith("the turn generated more than 4 tokens")
    d, c = balanced(events)[2:]
    assert (d.output, d.error, c.error) == ("five", message, message)
    assert d.generation_tokens == 1


def test_max_loop_iterations_caps_and_closes(tmp_path: Path) -> None:
    p = personality(tmp_path, "pipeline:\n  - loop: {id: l, max: 50, steps: [{set: {x: 1}}]}\n")
    events = run(p, limits=Limits(max_loop_iterations=2))
    assert statuses(events) == [("set", "ok"), ("set", "ok"), ("l", "ok")]
    assert balanced(events)[-1].detail == "2 iteration(s) (cap reached)"


def test_call_depth_closes_every_call(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipelines:
          again:
            - call: {id: deeper, pipeline: again}
        pipeline:
          - call: {id: top, pipeline: again}
        """,
    )
    events = run(p, limits=Limits(max_call_depth=2))
    message = "calls nested deeper than 2 levels"
    finished = balanced(events)
    assert [(f.step_id, f.status, f.error) for f in finished] == [
        ("deeper", "failed", message),
        ("deeper", "failed", message),
        ("top", "failed", message),
    ]
    assert error(events).message == message


def test_step_timeout_closes_the_step_with_its_text(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        "pipeline:\n  - loop: {id: l, max: 1, steps: [{generate: {id: slow, timeout: 0.001}}]}\n",
    )
    backend = ScriptedTextBackend("a b c d")
    backend.on_chunk = lambda n: threading.Event().wait(0.01)
    events = run(p, "hi", backend)
    finished = balanced(events)
    assert [(f.step_id, f.status) for f in finished] == [("slow", "failed"), ("l", "failed")]
    partial = finished[0].output
    assert partial and "a b c d".startswith(partial) and partial != "a b c d"


class Exploding:
    """A buggy third-party step kind, used inside a condition."""

    @hookimpl
    def register_step_kinds(self, register: Any) -> None:
        def boom(ctx: object, body: object) -> Iterator[Event]:
            yield Token("half", "boom", visible=False)
            raise KeyError("missing")

        register(StepKind("explode", {"type": "object"}, run=boom))


def test_an_unexpected_exception_closes_the_steps(tmp_path: Path) -> None:
    plugin_host = PluginHost(
        get_plugin_manager(load_entry_points=False, extra_plugins=[Exploding()])
    )
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "personality.yaml").write_text(
        "schema: 1\nid: p\nname: P\npipeline:\n"
        "  - condition: {id: c, if: 'true', then: [{explode: {id: boom}}]}\n",
        encoding="utf-8",
    )
    p = load_personality(folder, plugin_host)
    events = list(Engine(plugin_host, ScriptedTextBackend()).run_turn(Turn(p, "hi")))
    finished = balanced(events)
    assert [(f.step_id, f.status, f.error) for f in finished] == [
        ("boom", "failed", "KeyError: 'missing'"),
        ("c", "failed", "KeyError: 'missing'"),
    ]
    assert finished[0].output == "half"
    assert error(events).message == "step 'boom' failed unexpectedly: KeyError: 'missing'"


def test_a_template_error_in_when_closes_the_step(tmp_path: Path) -> None:
    p = personality(
        tmp_path, "pipeline:\n  - generate: {id: g, when: 'message.nope'}\n", static_checks=False
    )
    events = run(p, "hi", ScriptedTextBackend("x"))
    (step,) = balanced(events)
    assert (step.status, step.error) == ("failed", "'str object' has no attribute 'nope'")
    assert error(events).message == "step 'g': 'str object' has no attribute 'nope'"


# -- consumers -----------------------------------------------------------------------------


def test_the_recorder_stores_a_cancelled_step(tmp_path: Path) -> None:
    p = personality(tmp_path, "")
    backend = ScriptedTextBackend("one two three")
    cancel = cancel_after(backend, 2)
    events = run(p, text=backend, turn=Turn(p, "hi", cancel=cancel))
    store = Store(tmp_path / "d.sqlite3")
    discussion = store.create_discussion("t")
    store.add_message(discussion.id, "user", "hi")
    list(record_turn(store, discussion.id, iter(events)))
    answer = store.thread(discussion.id)[-1]
    (step,) = store.steps(answer.id)
    assert (answer.status, step.status, step.output) == ("cancelled", "cancelled", "one two")


def test_the_app_shows_a_cancelled_step_as_stopped() -> None:
    from lollms_runtime.app.trace import StepView, step_message
    from lollms_runtime.events import Status

    message = step_message(StepView("generate", "answer", status=Status.CANCELLED, tokens=2))
    assert message["metadata"]["status"] == "done"
    assert message["metadata"]["log"] == "stopped · 2 tokens"


# -- every documented pipeline, cancelled after N tokens -----------------------------------


class EndlessBackend(ScriptedTextBackend):
    """Answers every request with the same words and picks the first option of every choice."""

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[TextChunk]:
        self.answers.append("w1 w2 w3 w4 w5 w6 w7")
        return super().stream(request, cancel)

    def choose(self, request: GenerationRequest, choices: Sequence[str]) -> ChoiceResult:
        self.choices.append(choices[0])
        return super().choose(request, choices)


def _documented() -> list[tuple[str, str]]:
    guide = (REPO_ROOT / "docs" / "format.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", guide, re.DOTALL)
    found = [(f"format.md#{i}", b) for i, b in enumerate(blocks) if b.startswith("schema: 1\n")]
    found += [
        (kind.name, f"schema: 1\nid: example\nname: Example\n{kind.example}")
        for kind in BUILTIN_STEP_KINDS
    ]
    return found


@pytest.mark.parametrize(("name", "yaml_text"), _documented(), ids=lambda v: str(v)[:20])
def test_documented_pipelines_stay_balanced_when_cancelled(
    name: str, yaml_text: str, tmp_path: Path
) -> None:
    file = tmp_path / "personality.yaml"
    file.write_text(yaml_text, encoding="utf-8")
    try:
        p = load_personality(file, host())
    except PersonalityError as exc:  # test_docs says which example is broken
        pytest.skip(f"{name} does not load: {exc}")
    total = None
    for n in (None, 1, 2, 3, 5, 8, 13):
        backend = EndlessBackend()
        cancel = _cancel_after_turn_tokens(backend, n) if n else threading.Event()
        turn = Turn(p, "hello there", cancel=cancel, artifacts_dir=tmp_path / "art")
        events = run(p, text=backend, image=ScriptedImageBackend(), turn=turn, resolve=_self(p))
        balanced(events)
        end = done(events)
        if n is None:
            assert end.status == "ok", events
            total = end.generation_tokens
        elif total is not None and n < total:
            assert end.status == "cancelled", (n, events)
            cut = [f for f in balanced(events) if f.status == "cancelled"]
            assert cut, "a turn cancelled while a step ran closes that step as cancelled"


def _cancel_after_turn_tokens(backend: ScriptedTextBackend, n: int) -> threading.Event:
    """Stop the turn after its n-th token, counted over all its requests."""
    cancel = threading.Event()
    seen = [0]

    def on_chunk(emitted: int) -> None:
        seen[0] += 1
        if seen[0] == n:
            cancel.set()

    backend.on_chunk = on_chunk
    return cancel


def _self(p: Personality) -> Any:
    return lambda pid: p


# -- nested steps by declaration -----------------------------------------------------------


class Shapes:
    """Two plugin kinds: `table` whose rows look like steps but are data, `group` that declares
    its `body` as nested steps and runs them."""

    @hookimpl
    def register_step_kinds(self, register: Any) -> None:
        def table(ctx: StepContext, body: Any) -> Iterator[Event]:
            return len(body["rows"])
            yield

        def group(ctx: StepContext, body: Any) -> Iterator[Event]:
            return (yield from ctx.run_steps(body["body"], ctx.step_path + ".group.body"))

        register(StepKind("table", {"type": "object"}, run=table))
        register(StepKind("group", {"type": "object"}, run=group, nested=("body",)))


@pytest.fixture
def shapes_host() -> PluginHost:
    return PluginHost(get_plugin_manager(load_entry_points=False, extra_plugins=[Shapes()]))


def _load(tmp_path: Path, plugin_host: PluginHost, body: str) -> Personality:
    folder = tmp_path / "p"
    folder.mkdir(exist_ok=True)
    (folder / "personality.yaml").write_text(f"schema: 1\nid: p\nname: P\n{body}", encoding="utf-8")
    return load_personality(folder, plugin_host)


def test_walk_follows_declared_keys_only(shapes_host: PluginHost) -> None:
    steps = [
        {"table": {"id": "t", "rows": [{"generate": {"id": "fake"}}]}},
        {"group": {"id": "g", "body": [{"generate": {"id": "real"}}], "extra": [{"set": {}}]}},
        {"unknown": {"then": [{"generate": {"id": "hidden"}}]}},
    ]
    walked = [(kind, body.get("id")) for kind, body in _walk(steps, shapes_host.step_kinds)]
    assert walked == [("table", "t"), ("group", "g"), ("generate", "real"), ("unknown", None)]


def test_walk_of_the_built_in_kinds_covers_every_branch(shapes_host: PluginHost) -> None:
    steps = [
        {
            "condition": {
                "if": "x",
                "then": [{"set": {"a": 1}}],
                "elif": [{"if": "y", "then": [{"set": {"b": 1}}]}],
                "else": [{"set": {"c": 1}}],
            }
        },
        {"condition": {"switch": "x", "cases": {"k": [{"set": {"d": 1}}]}, "default": []}},
        {"loop": {"steps": [{"for_each": {"items": "z", "steps": [{"set": {"e": 1}}]}}]}},
        {"post_process": {"ops": [{"template": "{{ text }}"}], "fallback": [{"set": {"f": 1}}]}},
    ]
    kinds = shapes_host.step_kinds  # the built-ins, and two plugin kinds
    names = [next(iter(body)) for kind, body in _walk(steps, kinds) if kind == "set"]
    assert names == ["a", "b", "c", "d", "e"]


def test_rows_that_look_like_steps_are_not_taken_for_steps(
    tmp_path: Path, shapes_host: PluginHost
) -> None:
    body = """
pipeline:
  - table: {id: t, rows: [{generate: {id: fake}}]}
  - reply: {text: "{{ fake }}"}
"""
    with pytest.raises(PersonalityError, match="unknown name 'fake'"):
        _load(tmp_path, shapes_host, body)


def test_a_declared_nested_body_is_walked(tmp_path: Path, shapes_host: PluginHost) -> None:
    p = _load(
        tmp_path,
        shapes_host,
        """
pipeline:
  - group:
      id: g
      body:
        - generate: {id: inner}
  - reply: {text: "{{ inner }}"}
""",
    )
    engine = Engine(shapes_host, ScriptedTextBackend("deep answer"))
    assert streamed_ids(p.pipeline, shapes_host.step_kinds) == {"inner"}
    events = list(engine.run_turn(Turn(p, "hi")))
    assert [(f.step_id, f.kind) for f in balanced(events)][:2] == [
        ("inner", "generate"),
        ("g", "group"),
    ]
    assert [(t.text, t.visible) for t in tokens(events)] == [("deep", True), (" answer", True)]
    assert done(events).text == "deep answer"
