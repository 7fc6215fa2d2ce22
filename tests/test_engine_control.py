"""Engine control: limits, when, retries, on_error, cancellation, events and streaming visibility."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from engine_support import done, error, finished, host, personality, reply, run, tokens

from lollms_runtime.backends.base import ChatMessage
from lollms_runtime.engine import Engine, Limits, Turn, streamed_ids
from lollms_runtime.events import Done, StepFinished, StepStarted
from lollms_runtime.plugins import PluginHost, get_plugin_manager, hookimpl
from lollms_runtime.testing import ScriptedTextBackend

# -- limits --------------------------------------------------------------------------------


def test_max_steps_stops_a_turn(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - loop: {id: l, max: 50, steps: [{set: {x: 1}}]}
        """,
    )
    events = run(p, limits=Limits(max_steps=10))
    err = error(events)
    assert err.message == "the turn ran more than 10 steps"
    assert err.hint == "check loops and calls in the pipeline"
    assert done(events).status == "failed"
    assert done(events).steps == 11


def test_max_tokens_clamps_and_then_stops_a_turn(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        sampling: {max_tokens: 100}
        pipeline:
          - generate: {id: a}
          - generate: {id: b}
          - generate: {id: c}
        """,
    )
    backend = ScriptedTextBackend("one two three four", "five six seven eight", "nine ten")
    events = run(p, "hi", backend, limits=Limits(max_tokens=6))
    assert [r.sampling.max_tokens for r in backend.history] == [6, 2, 1]
    err = error(events)
    assert err.message == "the turn generated more than 6 tokens (total 22)"
    assert err.hint == "lower max_tokens in the pipeline, or raise the engine's token limit"
    assert done(events).generation_tokens == 7


def test_step_timeout(tmp_path: Path) -> None:
    p = personality(tmp_path, "pipeline:\n  - generate: {id: slow, timeout: 0.001}\n")
    backend = ScriptedTextBackend("a b c d")
    backend.on_chunk = lambda n: threading.Event().wait(0.01)
    err = error(run(p, "hi", backend))
    assert (
        err.message == "step 'slow' (generate) failed: step 'slow' took longer than its time limit"
    )
    assert err.hint == "raise its timeout: or simplify the step"


# -- when, retries, on_error ---------------------------------------------------------------


def test_when_skips_a_step(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        settings:
          enabled: {type: boolean, default: false}
        pipeline:
          - generate: {id: maybe, when: settings.enabled}
          - reply: {text: "{{ maybe }}"}
        """,
    )
    events = run(p, "hi", ScriptedTextBackend("ran"))
    step = finished(events, "maybe")
    assert (step.status, step.detail) == ("skipped", "when: settings.enabled was false")
    assert reply(events).text == "None"
    assert reply(run(p, "hi", ScriptedTextBackend("ran"), settings={"enabled": True})).text == "ran"


class FlakyBackend(ScriptedTextBackend):
    """Fails the first ``failures`` calls."""

    def __init__(self, failures: int, *answers: str) -> None:
        super().__init__(*answers)
        self.failures = failures

    def stream(self, request, cancel=None):  # type: ignore[no-untyped-def]
        if self.failures:
            self.failures -= 1
            self.history.append(request)
            raise RuntimeError("backend hiccup")
        return super().stream(request, cancel)


RETRY = """
pipeline:
  - generate: {id: g, retries: 2}
  - reply: {text: "{{ g }}"}
"""


def test_retries_then_success(tmp_path: Path) -> None:
    backend = FlakyBackend(2, "finally")
    events = run(personality(tmp_path, RETRY), "hi", backend)
    assert reply(events).text == "finally"
    assert len(backend.history) == 3
    assert finished(events, "g").status == "ok"


def test_retries_exhausted(tmp_path: Path) -> None:
    backend = FlakyBackend(3, "never")
    events = run(personality(tmp_path, RETRY), "hi", backend)
    assert len(backend.history) == 3
    assert error(events).message == "step 'g' (generate) failed: backend hiccup"
    assert finished(events, "g").status == "failed"


@pytest.mark.parametrize(
    ("on_error", "status", "text"),
    [("continue", "failed", "None|ok"), ("fallback", "fallback", "plan B for hi|ok")],
)
def test_on_error_continue_and_fallback(
    tmp_path: Path, on_error: str, status: str, text: str
) -> None:
    p = personality(
        tmp_path,
        f"""
        pipeline:
          - generate: {{id: g, on_error: {on_error}, fallback: "plan B for {{{{ message }}}}"}}
          - set: {{after: ok}}
          - reply: {{text: "{{{{ g }}}}|{{{{ after }}}}"}}
        """,
    )
    events = run(p, "hi", FlakyBackend(1))
    step = finished(events, "g")
    assert (step.status, step.error) == (status, "backend hiccup")
    assert reply(events).text == text
    assert done(events).status == "ok"


def test_on_error_fail_is_the_default_and_stops_the_turn(tmp_path: Path) -> None:
    p = personality(tmp_path, "pipeline:\n  - generate: {id: g}\n  - set: {after: 1}\n")
    events = run(p, "hi", FlakyBackend(1))
    err = error(events)
    assert (err.message, err.step_id) == ("step 'g' (generate) failed: backend hiccup", "g")
    assert err.hint == "set on_error: continue (or fallback) on this step to go on without it"
    assert not any(isinstance(e, StepStarted) and e.kind == "set" for e in events)
    assert [type(e).__name__ for e in events][-3:] == ["StepFinished", "TurnError", "Done"]
    assert done(events) == Done("failed", "", done(events).duration, 0, 0, 1)


def test_a_nested_failure_is_reported_once(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - condition:
              id: outer
              if: "true"
              then:
                - post_process: {id: inner, input: "x", ops: [{regex_extract: "y+"}]}
        """,
    )
    events = run(p)
    assert error(events).message == "step 'inner' (post_process) failed: no match for /y+/"
    assert error(events).step_id == "inner"
    assert finished(events, "inner").status == "failed"
    assert finished(events, "outer").status == "failed"


def test_a_nested_failure_can_be_absorbed_by_the_outer_step(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - condition:
              id: outer
              if: "true"
              on_error: continue
              then:
                - post_process: {id: inner, input: "x", ops: [{regex_extract: "y+"}]}
          - reply: {text: "went on"}
        """,
    )
    events = run(p)
    assert reply(events).text == "went on"
    assert (
        finished(events, "outer").error == "step 'inner' (post_process) failed: no match for /y+/"
    )


# -- template errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_body", "message"),
    [
        (
            "pipeline:\n  - generate: {id: g, prompt: '{{ message.nope }}'}\n",
            "step 'g' (generate) failed: 'str object' has no attribute 'nope'",
        ),
        (
            "pipeline:\n  - reply: {text: '{{ 1 / 0 }}'}\n",
            "step 'reply_1' (reply) failed: ZeroDivisionError: division by zero",
        ),
        (
            "pipeline:\n  - condition: {id: c, if: 'message.nope', then: [{set: {a: 1}}]}\n",
            "step 'c' (condition) failed: 'str object' has no attribute 'nope'",
        ),
        (
            "pipeline:\n  - set: {a: '{{ settings.missing }}'}\n",
            "step 'set' (set) failed: 'dict object' has no attribute 'missing'",
        ),
        (
            "pipeline:\n  - generate: {id: g, when: 'message.nope'}\n",
            "step 'g': 'str object' has no attribute 'nope'",
        ),
    ],
)
def test_template_errors_at_run_time(tmp_path: Path, yaml_body: str, message: str) -> None:
    events = run(
        personality(tmp_path, yaml_body, static_checks=False), "hi", ScriptedTextBackend("x")
    )
    assert error(events).message == message
    assert done(events).status == "failed"


def test_a_missing_step_kind(tmp_path: Path) -> None:
    import dataclasses

    p = personality(tmp_path, "pipeline:\n  - set: {a: 1}\n")
    broken = dataclasses.replace(p, pipeline=({"dance": {"id": "d"}},))
    events = list(Engine(host(), ScriptedTextBackend()).run_turn(Turn(broken, "hi")))
    err = error(events)
    assert (err.message, err.hint) == (
        "step kind 'dance' is not available",
        "is its plugin installed?",
    )


# -- cancellation --------------------------------------------------------------------------


def test_cancel_stops_within_one_token_and_keeps_the_partial_text(tmp_path: Path) -> None:
    p = personality(tmp_path, "")
    backend = ScriptedTextBackend("one two three four five six")
    cancel = threading.Event()
    seen: list[int] = []

    def on_chunk(emitted: int) -> None:
        seen.append(emitted)
        if emitted == 2:
            cancel.set()

    backend.on_chunk = on_chunk
    turn = Turn(p, "hi", cancel=cancel)
    events = run(p, text=backend, turn=turn)
    assert [t.text for t in tokens(events)] == ["one", " two"]
    assert seen == [1, 2]
    end = done(events)
    assert (end.status, end.text) == ("cancelled", "one two")
    assert not any(type(e).__name__ in ("Reply", "TurnError") for e in events)


def test_cancel_before_the_turn_runs_no_step(tmp_path: Path) -> None:
    p = personality(tmp_path, "")
    cancel = threading.Event()
    cancel.set()
    backend = ScriptedTextBackend("never")
    events = run(p, text=backend, turn=Turn(p, "hi", cancel=cancel))
    assert [type(e).__name__ for e in events] == ["Done"]
    assert done(events).status == "cancelled"
    assert backend.history == []


def test_cancel_between_steps_skips_the_rest(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        "pipeline:\n  - generate: {id: a}\n  - generate: {id: b}\n  - reply: {text: '{{ b }}'}\n",
    )
    cancel = threading.Event()
    backend = ScriptedTextBackend("first", "second")
    engine = Engine(host(), backend)
    events = []
    for event in engine.run_turn(Turn(p, "hi", cancel=cancel)):
        events.append(event)
        if isinstance(event, StepFinished) and event.step_id == "a":
            cancel.set()
    assert done(events).status == "cancelled"
    assert len(backend.history) == 1


def test_cancel_stops_retries(tmp_path: Path) -> None:
    stop = threading.Event()

    class Failing(ScriptedTextBackend):
        def stream(self, request, cancel=None):  # type: ignore[no-untyped-def]
            self.history.append(request)
            stop.set()
            raise RuntimeError("down")

    backend = Failing()
    p = personality(tmp_path, "pipeline:\n  - generate: {id: g, retries: 5}\n")
    events = run(p, text=backend, turn=Turn(p, "hi", cancel=stop))
    assert len(backend.history) == 1
    assert done(events).status == "failed"
    assert error(events).message == "step 'g' (generate) failed: down"


# -- events and streaming visibility -------------------------------------------------------


def test_event_order_of_a_pipeline(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - generate: {id: draft, max_tokens: 5}
          - post_process: {id: clean, input: "{{ draft }}", ops: [strip]}
          - reply: {text: "{{ clean }}"}
        """,
    )
    events = run(p, "hi", ScriptedTextBackend("a b"))
    order = [
        (type(e).__name__, getattr(e, "step_id", "") or getattr(e, "status", "")) for e in events
    ]
    assert order == [
        ("StepStarted", "draft"),
        ("Token", "draft"),
        ("Token", "draft"),
        ("StepFinished", "draft"),
        ("StepStarted", "clean"),
        ("StepFinished", "clean"),
        ("StepStarted", "reply_3"),
        ("StepFinished", "reply_3"),
        ("Reply", ""),
        ("Done", "ok"),
    ]
    step = finished(events, "draft")
    assert (step.output, step.prompt_tokens, step.generation_tokens) == ("a b", 5, 2)
    assert step.duration >= 0
    end = done(events)
    assert (end.text, end.prompt_tokens, end.generation_tokens, end.steps) == ("a b", 5, 2, 3)


VISIBILITY = """
pipeline:
  - generate: {id: hidden_plan}
  - generate: {id: shown_direct}
  - generate: {id: via_post}
  - post_process: {id: cleaned, input: "{{ via_post }}", ops: [strip]}
  - generate: {id: via_set}
  - set: {alias: "{{ via_set | upper }}"}
  - generate: {id: forced, stream: true}
  - generate: {id: muted, stream: false}
  - reply: {text: "{{ shown_direct }} {{ cleaned }} {{ alias }} {{ muted }}"}
"""


def test_token_visibility(tmp_path: Path) -> None:
    backend = ScriptedTextBackend(*(f"w{i}" for i in range(7)))
    events = run(personality(tmp_path, VISIBILITY), "hi", backend)
    visible = {t.step_id: t.visible for t in tokens(events)}
    assert visible == {
        "hidden_plan": False,
        "shown_direct": True,
        "via_post": True,
        "via_set": True,
        "forced": True,
        "muted": False,
    }


def test_streamed_ids_follow_sub_pipeline_calls(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipelines:
          inner:
            - generate: {id: thinking}
            - generate: {id: said}
            - reply: {text: "{{ said }}"}
        pipeline:
          - call: {id: result, pipeline: inner}
          - call: {id: unused, pipeline: inner}
          - reply: {text: "{{ result }}"}
        """,
    )
    events = run(p, "hi", ScriptedTextBackend("t1", "s1", "t2", "s2"))
    assert [(t.text, t.visible) for t in tokens(events)] == [
        ("t1", False),
        ("s1", True),
        ("t2", False),
        ("s2", False),
    ]
    assert reply(events).text == "s1"


def test_without_a_reply_step_the_last_generate_streams() -> None:
    kinds = PluginHost(get_plugin_manager(load_entry_points=False)).step_kinds
    steps = [{"generate": {"id": "a"}}, {"generate": {"id": "b"}}]
    assert streamed_ids(steps, kinds) == {"b"}
    assert streamed_ids([{"set": {"x": 1}}], kinds) == set()


def test_visible_tokens_in_branches(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - condition:
              id: c
              ask: code?
              then: [{generate: {id: answer}}]
              else: [{generate: {id: other}}, {set: {answer: "{{ other }}"}}]
          - reply: {text: "{{ answer }}"}
        """,
    )
    for choice in ("yes", "no"):
        backend = ScriptedTextBackend("x y").enqueue_choice(choice)
        events = run(p, "hi", backend)
        assert [t.visible for t in tokens(events)] == [True, True]
        assert reply(events).text == "x y"


def test_history_roles_reach_the_backend(tmp_path: Path) -> None:
    p = personality(tmp_path, "pipeline:\n  - generate: {id: g, history: false}\n")
    backend = ScriptedTextBackend("x")
    run(p, "now", backend, history=[ChatMessage("user", "old")])
    assert [m.content for m in backend.history[0].messages] == ["You are a test.", "now"]


# -- observer hooks ------------------------------------------------------------------------


class Observer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def lollms_turn_started(self, turn: Turn) -> None:
        self.calls.append(f"started {turn.message}")

    @hookimpl
    def lollms_step_finished(self, turn: Turn, step: object, result: StepFinished) -> None:
        self.calls.append(f"step {result.step_id}")

    @hookimpl
    def lollms_turn_finished(self, turn: Turn, result: Done) -> None:
        self.calls.append(f"finished {result.status}")
        raise RuntimeError("observer bug")


def test_observer_hooks_run_and_cannot_break_a_turn(tmp_path: Path) -> None:
    from lollms_runtime.plugins import PluginHost, get_plugin_manager

    observer = Observer()
    plugin_host = PluginHost(get_plugin_manager(load_entry_points=False, extra_plugins=[observer]))
    p = personality(tmp_path, "")
    events = list(Engine(plugin_host, ScriptedTextBackend("ok")).run_turn(Turn(p, "hi")))
    assert done(events).status == "ok"
    assert observer.calls == ["started hi", "step answer", "step reply_2", "finished ok"]
    assert [f.error for f in plugin_host.failures] == ["RuntimeError: observer bug"]


def test_one_engine_runs_many_personalities_and_turns(tmp_path: Path) -> None:
    first = personality(
        tmp_path, "pipeline:\n  - generate: {id: a}\n  - reply: {text: '{{ a }}'}\n"
    )
    second = personality(
        tmp_path,
        "pipeline:\n  - generate: {id: b}\n  - generate: {id: c}\n  - reply: {text: '{{ c }}'}\n",
    )
    backend = ScriptedTextBackend("1", "2", "3", "4", "5", "6", "7")
    engine = Engine(host(), backend)
    seen = []
    for p in (first, second, first, second):
        events = list(engine.run_turn(Turn(p, "hi")))
        seen.append((reply(events).text, [(t.step_id, t.visible) for t in tokens(events)]))
    assert seen == [
        ("1", [("a", True)]),
        ("3", [("b", False), ("c", True)]),
        ("4", [("a", True)]),
        ("6", [("b", False), ("c", True)]),
    ]


@pytest.mark.parametrize("target", ["pipeline: inner", "personality: t"])
def test_cancel_inside_a_call_keeps_the_partial_text(tmp_path: Path, target: str) -> None:
    p = personality(
        tmp_path,
        f"""
        pipelines:
          inner:
            - generate: {{id: said}}
            - reply: {{text: "{{{{ said }}}}"}}
        pipeline:
          - call: {{id: result, {target}}}
          - reply: {{text: "{{{{ result }}}}"}}
        """,
    )
    if target.startswith("personality"):
        p = personality(
            tmp_path,
            f"""
            pipeline:
              - call: {{id: result, {target}}}
              - reply: {{text: "{{{{ result }}}}"}}
            """,
            pid="caller",
        )
    callee = personality(tmp_path, "", pid="callee")
    backend = ScriptedTextBackend("alpha beta gamma")
    cancel = threading.Event()
    backend.on_chunk = lambda n: cancel.set() if n == 2 else None
    events = run(p, text=backend, turn=Turn(p, "hi", cancel=cancel), resolve=lambda pid: callee)
    assert [(t.text, t.visible) for t in tokens(events)] == [("alpha", True), (" beta", True)]
    assert (done(events).status, done(events).text) == ("cancelled", "alpha beta")


class Exploding:
    """A buggy third-party step kind: its runner raises something no step should raise."""

    @hookimpl
    def register_step_kinds(self, register: object) -> None:
        from lollms_runtime.contracts import StepKind

        def run(ctx: object, body: object) -> object:
            raise KeyError("missing")
            yield  # a generator, like every runner

        register(StepKind("explode", {"type": "object"}, run=run))  # type: ignore[operator]


def test_a_buggy_step_kind_ends_the_turn_with_an_error_not_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from lollms_runtime.loader import load_personality
    from lollms_runtime.plugins import PluginHost, get_plugin_manager

    plugin_host = PluginHost(
        get_plugin_manager(load_entry_points=False, extra_plugins=[Exploding()])
    )
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "personality.yaml").write_text(
        "schema: 1\nid: p\nname: P\npipeline:\n  - explode: {id: boom}\n", encoding="utf-8"
    )
    p = load_personality(folder, plugin_host)
    events = list(Engine(plugin_host, ScriptedTextBackend()).run_turn(Turn(p, "hi")))
    err = error(events)
    assert err.message == "step 'boom' failed unexpectedly: KeyError: 'missing'"
    assert err.hint.startswith("this is a bug in the step kind or backend")
    assert done(events).status == "failed"
    assert "Traceback" in caplog.text  # kept for the log
