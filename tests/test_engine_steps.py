"""Every built-in step kind, run by the real engine on the scripted backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_support import done, error, finished, personality, reply, run, tokens
from PIL import Image

from lollms_runtime.backends.base import ChatMessage
from lollms_runtime.events import (
    ImageProduced,
    Progress,
    Reply,
    StepFinished,
    StepStarted,
)
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

# -- generate ------------------------------------------------------------------------------


def test_default_pipeline_is_a_chat(tmp_path: Path) -> None:
    p = personality(tmp_path, "sampling: {temperature: 0.3, max_tokens: 40}\n")
    backend = ScriptedTextBackend("Hello there")
    history = [ChatMessage("user", "earlier"), ChatMessage("assistant", "before")]
    events = run(p, "hi", backend, history=history)
    kinds = [(type(e).__name__, getattr(e, "kind", "")) for e in events]
    assert kinds == [
        ("StepStarted", "generate"),
        ("Token", ""),
        ("Token", ""),
        ("StepFinished", "generate"),
        ("StepStarted", "reply"),
        ("StepFinished", "reply"),
        ("Reply", ""),
        ("Done", ""),
    ]
    assert reply(events).text == "Hello there"
    assert done(events).status == "ok"
    assert done(events).steps == 2
    (request,) = backend.history
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "You are a test."),
        ("user", "earlier"),
        ("assistant", "before"),
        ("user", "hi"),
    ]
    assert request.sampling.temperature == 0.3
    assert request.sampling.max_tokens == 40
    assert all(t.visible for t in tokens(events))


def test_generate_prompt_system_overrides_and_stop_merge(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        sampling: {temperature: 0.7, top_k: 40, max_tokens: 100, stop: ["###"]}
        settings:
          temp: {type: number, default: 0.25}
        pipeline:
          - generate:
              id: out
              prompt: "Topic: {{ message | upper }}"
              system: "System for {{ personality.name }}"
              history: false
              temperature: "{{ settings.temp }}"
              top_p: 0.5
              min_p: 0.1
              repetition_penalty: 1.2
              max_tokens: 7
              seed: 3
              stop: ["\\n\\n"]
          - reply: {text: "{{ out }}"}
        """,
    )
    backend = ScriptedTextBackend("one two three four five six seven eight nine")
    events = run(p, "cats", backend, history=[ChatMessage("user", "old")])
    (request,) = backend.history
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "System for Test t"),
        ("user", "Topic: CATS"),
    ]
    s = request.sampling
    assert (s.temperature, s.top_k, s.top_p, s.min_p) == (0.25, 40, 0.5, 0.1)
    assert (s.repetition_penalty, s.max_tokens, s.seed) == (1.2, 7, 3)
    assert s.stop == ("###", "\n\n")
    assert reply(events).text == "one two three four five six seven"
    assert finished(events, "out").generation_tokens == 7


def test_generate_user_sampling_overrides_sit_between_personality_and_step(
    tmp_path: Path,
) -> None:
    p = personality(
        tmp_path,
        """
        sampling: {temperature: 0.7, max_tokens: 100}
        pipeline:
          - generate: {id: a}
          - generate: {id: b, temperature: 0.1}
        """,
    )
    backend = ScriptedTextBackend("x", "y")
    run(p, "hi", backend, sampling={"temperature": 0.9, "seed": 5})
    first, second = backend.history
    assert (first.sampling.temperature, first.sampling.seed) == (0.9, 5)
    assert (second.sampling.temperature, second.sampling.seed) == (0.1, 5)


def test_generate_answer_prefix_is_sent_kept_and_streamed(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - generate: {id: code, answer_prefix: "```{{ 'py' }}\\n"}
          - reply: {text: "{{ code }}"}
        """,
    )
    backend = ScriptedTextBackend("print(1)")
    events = run(p, "hi", backend)
    assert backend.history[0].answer_prefix == "```py\n"
    assert reply(events).text == "```py\nprint(1)"
    assert [t.text for t in tokens(events)] == ["```py\n", "print(1)"]


def test_generate_bad_number_option_names_the_option(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - generate: {id: g, max_tokens: "{{ 'many' }}"}
        """,
    )
    events = run(p, "hi", ScriptedTextBackend("x"))
    assert error(events).message == (
        "step 'g' (generate) failed: option 'max_tokens' must be a int, got 'many'"
    )


# -- condition -----------------------------------------------------------------------------

BRANCHES = """
settings:
  n: {type: integer, default: 0}
pipeline:
  - condition:
      id: pick
      if: settings.n == 1
      then: [{set: {out: "one"}}]
      elif:
        - if: settings.n == 2
          then: [{set: {out: "two"}}]
        - if: settings.n > 2
          then: [{set: {out: "many"}}]
      else: [{set: {out: "none"}}]
  - reply: {text: "{{ out }} {{ pick }}"}
"""


@pytest.mark.parametrize(
    ("n", "text", "detail"),
    [
        (1, "one then", "settings.n == 1 -> True => then"),
        (2, "two elif[0]", "settings.n == 1 -> False; settings.n == 2 -> True => elif[0]"),
        (
            5,
            "many elif[1]",
            "settings.n == 1 -> False; settings.n == 2 -> False; settings.n > 2 -> True => elif[1]",
        ),
        (
            0,
            "none else",
            "settings.n == 1 -> False; settings.n == 2 -> False; settings.n > 2 -> False => else",
        ),
    ],
)
def test_condition_if_elif_else(tmp_path: Path, n: int, text: str, detail: str) -> None:
    p = personality(tmp_path, BRANCHES)
    events = run(p, settings={"n": n})
    assert reply(events).text == text
    assert finished(events, "pick").detail == detail
    assert finished(events, "pick").output == text.split()[1]


def test_condition_branch_steps_have_their_paths(tmp_path: Path) -> None:
    p = personality(tmp_path, BRANCHES)
    events = run(p, settings={"n": 2})
    paths = [e.path for e in events if isinstance(e, StepStarted)]
    assert paths == ["pipeline[0]", "pipeline[0].condition.elif[0].then[0]", "pipeline[1]"]


ASK = """
pipeline:
  - condition:
      id: paint
      ask: "Does the user want a {{ 'picture' }}?"
      then: [{generate: {id: answer, prompt: "paint"}}]
      elif:
        - ask: Is it a greeting?
          then: [{set: {answer: "hello!"}}]
      else: [{generate: {id: answer, prompt: "chat"}}]
  - reply: {text: "{{ answer }}"}
"""


def test_condition_ask_yes(tmp_path: Path) -> None:
    backend = ScriptedTextBackend("a painting").enqueue_choice("yes")
    events = run(personality(tmp_path, ASK), "draw a cat", backend)
    assert reply(events).text == "a painting"
    request, options = backend.choice_history[0]
    assert options == ("yes", "no")
    assert request.messages[-1].content == (
        "draw a cat\n\n---\nQuestion about the message above: Does the user want a picture?\n"
        "Answer with exactly one of: yes, no."
    )
    assert finished(events, "paint").detail == (
        "asked 'Does the user want a picture?': yes (p=0.90) => then"
    )
    assert backend.history[0].messages[-1].content == "paint"


def test_condition_ask_no_then_elif_ask_yes(tmp_path: Path) -> None:
    backend = ScriptedTextBackend().enqueue_choice("no", "yes")
    events = run(personality(tmp_path, ASK), "hello", backend)
    assert reply(events).text == "hello!"
    assert finished(events, "paint").output == "elif[0]"
    assert len(backend.choice_history) == 2
    assert backend.history == []


def test_condition_ask_no_no_goes_to_else(tmp_path: Path) -> None:
    backend = ScriptedTextBackend("chatting").enqueue_choice("no", "no")
    events = run(personality(tmp_path, ASK), "hm", backend)
    assert reply(events).text == "chatting"
    assert finished(events, "paint").output == "else"


SWITCH = """
settings:
  mode: {type: string, default: a}
  flag: {type: boolean, default: true}
pipeline:
  - condition:
      id: which
      switch: settings.mode
      cases:
        a: [{set: {out: "case a"}}]
        b: [{set: {out: "case b"}}]
      default: [{set: {out: "default"}}]
  - condition:
      id: boolean
      switch: settings.flag
      cases:
        "true": [{set: {flag_out: "yes"}}]
  - reply: {text: "{{ out }}/{{ which }}/{{ flag_out }}/{{ boolean }}"}
"""


@pytest.mark.parametrize(
    ("settings", "text"),
    [
        ({}, "case a/a/yes/true"),
        ({"mode": "b", "flag": False}, "case b/b/None/false"),
        ({"mode": "zzz"}, "default/zzz/yes/true"),
    ],
)
def test_condition_switch(tmp_path: Path, settings: dict[str, object], text: str) -> None:
    events = run(personality(tmp_path, SWITCH), settings=settings)
    assert reply(events).text == text


CHOOSE = """
pipeline:
  - condition:
      id: intent
      choose: [translate, summarize, chat]
      question: "What does {{ personality.id }} see?"
      cases:
        translate: [{generate: {id: answer, prompt: "translate"}}]
        summarize: [{set: {answer: "summary"}}]
      default: [{set: {answer: "default chat"}}]
  - reply: {text: "{{ answer }}", show: [intent]}
"""


@pytest.mark.parametrize(
    ("choice", "text"),
    [("translate", "bonjour"), ("summarize", "summary"), ("chat", "default chat")],
)
def test_condition_choose(tmp_path: Path, choice: str, text: str) -> None:
    backend = ScriptedTextBackend("bonjour").enqueue_choice(choice)
    events = run(personality(tmp_path, CHOOSE), "hello", backend)
    assert reply(events).text == text
    assert reply(events).shown == {"intent": choice}
    request, options = backend.choice_history[0]
    assert options == ("translate", "summarize", "chat")
    assert "Question about the message above: What does t see?" in request.messages[-1].content
    case = f"case {choice}" if choice != "chat" else "default"
    assert finished(events, "intent").detail == (
        f"asked 'What does t see?': {choice} (p=0.90) => {case}"
    )


def test_choose_with_an_answer_outside_the_options_fails_clearly(tmp_path: Path) -> None:
    backend = ScriptedTextBackend().enqueue_choice("dance")
    events = run(personality(tmp_path, CHOOSE), "hello", backend)
    assert error(events).message == (
        "step 'intent' (condition) failed: scripted choice 'dance' is not one of "
        "['translate', 'summarize', 'chat']"
    )


# -- post_process --------------------------------------------------------------------------


def _post(tmp_path: Path, ops: str, text: str, fallback: str = "") -> tuple[object, list[object]]:
    body = f"""
    pipeline:
      - generate: {{id: raw}}
      - post_process:
          id: out
          input: "{{{{ raw }}}}"
          ops: {ops}
          {fallback}
      - reply: {{text: "{{{{ out }}}}"}}
    """
    events = run(personality(tmp_path, body), "hi", ScriptedTextBackend(text))
    outputs = [e.output for e in events if isinstance(e, StepFinished) and e.step_id == "out"]
    return (outputs[0] if outputs else None), list(events)


@pytest.mark.parametrize(
    ("ops", "text", "expected"),
    [
        ("[strip]", "  padded  ", "padded"),
        ("[first_paragraph]", "One.\nStill one.\n\n Two.", "One.\nStill one."),
        ("[truncate_sentence]", "First one. Second one! Unfinished", "First one. Second one!"),
        ("[{truncate_sentence: 14}]", "First one. Second one! Third.", "First one."),
        ("[{truncate_sentence: null}]", "No end at all", "No end at all"),
        ("[{truncate: 5}]", "abcdefghij", "abcde"),
        ("[{remove_prefix: 'Assistant:'}]", "assistant: hi", "hi"),
        ("[{remove_prefix: ['Bot:', 'Artbot:']}]", "Artbot: a scene", "a scene"),
        ("[{remove_prefix: 'X:'}]", "no prefix", "no prefix"),
        ("[{remove_suffix: 'END'}]", "done end", "done"),
        ("[{remove_suffix: [a, '!!']}]", "wow!!", "wow"),
        (
            "[{regex_replace: {pattern: 'C(A)T', replacement: 'd\\1g', flags: i}}]",
            "cat and CAT",
            "dag and dAg",
        ),
        ("[{regex_extract: 'n(\\d+)'}]", "n42 n7", "42"),
        ("[{regex_extract: {pattern: '\\d+'}}]", "a 12 b", "12"),
        (
            "[{regex_extract: {pattern: '(?P<w>[a-z]+)=(\\d)', group: w}}]",
            "x key=1",
            "key",
        ),
        ("[{regex_extract: {pattern: 'zzz', default: 'none'}}]", "abc", "none"),
        (
            "[{regex_extract: {pattern: '^b.*$', flags: m}}]",
            "a\nbee line\nc",
            "bee line",
        ),
        ("[{extract_code: null}]", "see\n```js\nlet a\n```\nend", "let a"),
        ("[{extract_code: python}]", "```js\nx\n```\n```python\ny = 1\n```", "y = 1"),
        ("[{extract_code: {language: js}}]", "```js\nlet b\n```", "let b"),
        ("[{extract_code: null}]", "```\nunterminated", "unterminated"),
        ("[{template: 'Hi {{ text | upper }} from {{ personality.id }}'}]", "bob", "Hi BOB from t"),
        ("[strip, {remove_prefix: 'A:'}, first_paragraph]", "  A: one\n\ntwo", "one"),
    ],
)
def test_post_process_operations(tmp_path: Path, ops: str, text: str, expected: str) -> None:
    output, _ = _post(tmp_path, ops, text)
    assert output == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('Here: {"a": 1, "b": [2]} done', {"a": 1, "b": [2]}),
        ('```json\n[1, 2, {"x": null}]\n```', [1, 2, {"x": None}]),
        ('broken { then {"ok": true}', {"ok": True}),
    ],
)
def test_extract_json(tmp_path: Path, text: str, expected: object) -> None:
    output, _ = _post(tmp_path, "[{extract_json: null}]", text)
    assert output == expected


JSON_SCHEMA_OPS = (
    "[{extract_json: {schema: {type: object, required: [name], "
    "properties: {name: {type: string}, age: {type: integer}}}}}]"
)


def test_extract_json_with_a_schema(tmp_path: Path) -> None:
    output, _ = _post(tmp_path, JSON_SCHEMA_OPS, 'x {"name": "Ada", "age": 36}')
    assert output == {"name": "Ada", "age": 36}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"name": "Ada", "age": "old"}',
            "the JSON does not match the schema at age: 'old' is not of type 'integer'",
        ),
        (
            '{"age": 3}',
            "the JSON does not match the schema at the top level: 'name' is a required property",
        ),
        ("no json here", "no JSON object or array found in the text"),
    ],
)
def test_extract_json_failures(tmp_path: Path, text: str, message: str) -> None:
    _, events = _post(tmp_path, JSON_SCHEMA_OPS, text)
    err = error(events)  # type: ignore[arg-type]
    assert err.message == f"step 'out' (post_process) failed: {message}"
    assert err.step_id == "out"
    assert err.hint == "set on_error: continue (or fallback) on this step to go on without it"


@pytest.mark.parametrize(
    ("ops", "text", "message"),
    [
        ("[{regex_extract: 'n(\\d+)'}]", "nothing", "no match for /n(\\d+)/"),
        ("[{extract_code: null}]", "no fence", "no fenced code block found"),
        ("[{extract_code: rust}]", "```py\nx\n```", "no ```rust code block found"),
        (
            "[{template: '{{ text.nope }}'}]",
            "x",
            "'str object' has no attribute 'nope'",
        ),
    ],
)
def test_post_process_failures(tmp_path: Path, ops: str, text: str, message: str) -> None:
    _, events = _post(tmp_path, ops, text)
    assert error(events).message == f"step 'out' (post_process) failed: {message}"  # type: ignore[arg-type]


def test_post_process_without_input_uses_the_last_text(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - generate: {id: raw}
          - post_process: {id: out, ops: [{truncate: 3}]}
          - reply: {}
        """,
    )
    events = run(p, "hi", ScriptedTextBackend("abcdef"))
    assert reply(events).text == "abc"


def test_post_process_fallback_keeps_the_turn_going(tmp_path: Path) -> None:
    output, events = _post(
        tmp_path,
        "[{extract_json: null}]",
        "none",
        fallback="on_error: fallback\n          fallback: '{{ raw | upper }}'",
    )
    assert output == "NONE"
    step = finished(events, "out")  # type: ignore[arg-type]
    assert (step.status, step.error) == ("fallback", "no JSON object or array found in the text")
    assert reply(events).text == "NONE"  # type: ignore[arg-type]


# -- text_to_image -------------------------------------------------------------------------

PAINT = """
settings:
  size: {type: integer, default: 64}
  steps: {type: integer, default: 3}
pipeline:
  - text_to_image:
      id: art
      prompt: "a {{ message }}"
      negative_prompt: blurry
      width: "{{ settings.size }}"
      height: 72
      steps: "{{ settings.steps }}"
      guidance: "{{ 2.5 }}"
      seed: 11
      count: COUNT
  - reply: {text: "painted", images: ["{{ art }}"]}
"""


def test_text_to_image_saves_pngs_with_progress(tmp_path: Path) -> None:
    image = ScriptedImageBackend()
    out = tmp_path / "artifacts"
    events = run(
        personality(tmp_path, PAINT.replace("COUNT", "1")), "cat", image=image, artifacts_dir=out
    )
    (request,) = image.history
    assert (request.prompt, request.negative_prompt) == ("a cat", "blurry")
    assert (request.width, request.height, request.steps) == (64, 72, 3)
    assert (request.guidance, request.seed, request.count) == (2.5, 11, 1)
    progress = [(e.done, e.total) for e in events if isinstance(e, Progress)]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    (produced,) = [e for e in events if isinstance(e, ImageProduced)]
    assert produced.path.parent == out
    assert produced.params["seed"] == 11
    with Image.open(produced.path) as png:
        assert png.size == (64, 72)
    assert finished(events, "art").output == str(produced.path)
    assert reply(events).images == (produced.path,)
    names = [type(e).__name__ for e in events]
    assert names.index("Progress") < names.index("ImageProduced") < names.index("Reply")


def test_text_to_image_count_gives_a_list(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    events = run(
        personality(tmp_path, PAINT.replace("COUNT", "3")),
        "cat",
        image=ScriptedImageBackend(),
        artifacts_dir=out,
        settings={"steps": 1},
    )
    produced = [e.path for e in events if isinstance(e, ImageProduced)]
    assert len(produced) == 3
    assert len(set(produced)) == 3
    assert all(p.is_file() and p.parent == out for p in produced)
    assert finished(events, "art").output == [str(p) for p in produced]
    assert reply(events).images == tuple(produced)
    assert [e.params["seed"] for e in events if isinstance(e, ImageProduced)] == [11, 12, 13]


def test_text_to_image_without_a_backend(tmp_path: Path) -> None:
    events = run(personality(tmp_path, PAINT.replace("COUNT", "1")), "cat")
    err = error(events)
    assert err.message == "step 'art' (text_to_image) failed: no image backend is configured"
    assert err.hint == "install one (see `lollms plugins`) or turn painting off in the settings"


def test_text_to_image_backend_failure_and_empty_prompt(tmp_path: Path) -> None:
    events = run(
        personality(tmp_path, PAINT.replace("COUNT", "1")),
        "cat",
        image=ScriptedImageBackend(fail_with="out of memory"),
        artifacts_dir=tmp_path,
    )
    assert error(events).message == "step 'art' (text_to_image) failed: out of memory"
    p = personality(
        tmp_path,
        """
        pipeline:
          - text_to_image: {id: art, prompt: "{{ message | trim }}"}
        """,
    )
    events = run(p, "   ", image=ScriptedImageBackend(), artifacts_dir=tmp_path)
    err = error(events)
    assert err.message == "step 'art' (text_to_image) failed: the image prompt is empty"
    assert err.hint == "check the template of prompt:"


# -- reply, set ----------------------------------------------------------------------------


def test_reply_text_images_and_show(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - set: {a: 1, pics: "{{ ['x.png', 'y.png'] }}", none_pic: null}
          - generate: {id: g}
          - reply:
              text: "  {{ g }} / {{ a + 1 }}  "
              images: ["{{ pics }}", "{{ none_pic }}", "z.png"]
              show: [g, a]
        """,
    )
    events = run(p, "hi", ScriptedTextBackend("said"))
    r = reply(events)
    assert r == Reply(
        "said / 2", (Path("x.png"), Path("y.png"), Path("z.png")), {"g": "said", "a": 1}
    )
    assert done(events).text == "said / 2"


def test_reply_without_text_uses_the_last_text(tmp_path: Path) -> None:
    p = personality(tmp_path, "pipeline:\n  - generate: {id: g}\n  - reply: {}\n")
    assert reply(run(p, "hi", ScriptedTextBackend("last"))).text == "last"


def test_no_reply_step_replies_with_the_last_text(tmp_path: Path) -> None:
    p = personality(tmp_path, "pipeline:\n  - generate: {id: g}\n  - set: {x: 1}\n")
    events = run(p, "hi", ScriptedTextBackend("fallback text"))
    assert reply(events).text == "fallback text"


def test_set_keeps_native_types_and_renders_templates(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - set: {n: 3, early: "{{ n }}"}
          - set:
              items: "{{ [1, 2] + [n] }}"
              word: "x{{ message }}y"
              flag: true
          - reply: {text: "{{ items | sum }} {{ word }} {{ flag }} {{ n * 2 }} {{ early }}"}
        """,
        static_checks=False,  # the loader refuses `early`: n is used before the step that sets it
    )
    events = run(p, "Q")
    # The values of one set step are all rendered before any is stored: early saw n unset.
    assert reply(events).text == "6 xQy True 6 None"
    outputs = [e.output for e in events if isinstance(e, StepFinished) and e.kind == "set"]
    assert outputs == [{"n": 3, "early": None}, {"items": [1, 2, 3], "word": "xQy", "flag": True}]


# -- loop, for_each ------------------------------------------------------------------------


def test_loop_runs_while_the_expression_holds(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - set: {draft: ""}
          - loop:
              id: grow
              while: "draft | length < 8"
              max: 5
              steps:
                - generate: {id: draft, prompt: "longer than {{ draft }}"}
          - reply: {text: "{{ draft }}"}
        """,
    )
    backend = ScriptedTextBackend("ab", "abcd", "abcdefghij", "never")
    events = run(p, "hi", backend)
    assert reply(events).text == "abcdefghij"
    assert [r.messages[-1].content for r in backend.history] == [
        "longer than ",
        "longer than ab",
        "longer than abcd",
    ]
    assert finished(events, "grow").detail == "3 iteration(s)"
    assert list(backend.answers) == ["never"]


def test_loop_stops_at_its_cap(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - set: {n: 0}
          - loop:
              id: forever
              while: "true"
              max: 4
              steps: [{set: {n: "{{ n + 1 }}"}}]
          - reply: {text: "{{ n }}"}
        """,
    )
    events = run(p)
    assert reply(events).text == "4"
    assert finished(events, "forever").detail == "4 iteration(s) (cap reached)"


def test_loop_cap_is_bounded_by_the_engine_limit(tmp_path: Path) -> None:
    from lollms_runtime.engine import Limits

    p = personality(
        tmp_path,
        """
        pipeline:
          - set: {n: 0}
          - loop: {id: l, max: 50, steps: [{set: {n: "{{ n + 1 }}"}}]}
          - reply: {text: "{{ n }}"}
        """,
    )
    events = run(p, limits=Limits(max_loop_iterations=3))
    assert reply(events).text == "3"


def test_for_each_collects_outputs_and_respects_its_cap(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - for_each:
              id: each
              items: "['a', 'b', 'c', 'd']"
              as: letter
              max: 3
              steps:
                - generate: {id: g, prompt: "{{ loop_index }}:{{ letter }}"}
          - reply: {text: "{{ each | join(',') }}"}
        """,
    )
    backend = ScriptedTextBackend("A", "B", "C", "D")
    events = run(p, "hi", backend)
    assert reply(events).text == "A,B,C"
    assert [r.messages[-1].content for r in backend.history] == ["0:a", "1:b", "2:c"]
    assert finished(events, "each").detail == "3 item(s), 1 over the cap skipped"


def test_for_each_default_name_is_item(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - for_each: {id: each, items: "[1, 2]", steps: [{set: {x: "{{ item * 10 }}"}}]}
          - reply: {text: "{{ x }}"}
        """,
    )
    events = run(p)
    assert reply(events).text == "20"
    assert finished(events, "each").output == [{"x": 10}, {"x": 20}]


def test_for_each_over_a_string_fails_clearly(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        "pipeline:\n  - for_each: {id: each, items: message, steps: [{set: {x: 1}}]}\n",
    )
    assert error(run(p, "abc")).message == (
        "step 'each' (for_each) failed: items must give a list, got str"
    )


# -- call ----------------------------------------------------------------------------------

SUB = """
pipelines:
  shout:
    - generate: {id: loud, prompt: "shout {{ message }}"}
    - reply: {text: "{{ loud | upper }}!"}
  quiet:
    - set: {q: "{{ message | lower }}"}
pipeline:
  - call: {id: shouted, pipeline: shout, message: "{{ message }} please"}
  - call: {id: whispered, pipeline: quiet, message: "LOW"}
  - reply: {text: "{{ shouted }} {{ whispered }}"}
"""


def test_call_a_sub_pipeline(tmp_path: Path) -> None:
    backend = ScriptedTextBackend("hey you")
    events = run(personality(tmp_path, SUB), "hi", backend)
    assert backend.history[0].messages[-1].content == "shout hi please"
    # A sub-pipeline without a reply returns its last output.
    assert reply(events).text == "HEY YOU! {'q': 'low'}"
    paths = [e.path for e in events if isinstance(e, StepStarted)]
    assert paths == [
        "pipeline[0]",
        "pipelines.shout[0]",
        "pipelines.shout[1]",
        "pipeline[1]",
        "pipelines.quiet[0]",
        "pipeline[2]",
    ]


def test_call_an_unknown_sub_pipeline(tmp_path: Path) -> None:
    from engine_support import host

    from lollms_runtime.engine import Engine, Turn
    from lollms_runtime.testing import ScriptedTextBackend as Backend

    p = personality(tmp_path, SUB)
    # The loader rejects unknown names; a personality built in code can still hold one.
    import dataclasses

    broken = dataclasses.replace(p, pipeline=({"call": {"id": "c", "pipeline": "nope"}},))
    events = list(Engine(host(), Backend()).run_turn(Turn(broken, "hi")))
    err = error(events)
    assert err.message == "step 'c' (call) failed: no sub-pipeline named 'nope'"
    assert err.hint == "define it under pipelines:"


def test_call_another_personality(tmp_path: Path) -> None:
    other = personality(
        tmp_path,
        """
        conditioning: I am the other one.
        settings:
          tone: {type: string, default: calm}
        pipeline:
          - generate: {id: o, prompt: "{{ settings.tone }}: {{ message }}"}
          - reply: {text: "<{{ o }}>"}
        """,
        pid="other",
    )
    caller = personality(
        tmp_path,
        """
        pipeline:
          - call: {id: asked, personality: other, message: "from caller: {{ message }}"}
          - reply: {text: "{{ asked }}"}
        """,
    )
    backend = ScriptedTextBackend("done it")
    resolved: list[str] = []

    def resolve(pid: str) -> object:
        resolved.append(pid)
        return other

    events = run(caller, "hi", backend, resolve=resolve)  # type: ignore[arg-type]
    assert resolved == ["other"]
    assert reply(events).text == "<done it>"
    request = backend.history[0]
    assert request.messages[0].content == "I am the other one."
    assert request.messages[-1].content == "calm: from caller: hi"
    # The call's output is what the reply shows, so the called generate streams visibly.
    assert all(t.visible for t in tokens(events, "o"))


def test_call_another_personality_needs_a_resolver(tmp_path: Path) -> None:
    caller = personality(tmp_path, "pipeline:\n  - call: {id: c, personality: other}\n")
    assert error(run(caller)).message == (
        "step 'c' (call) failed: this runtime cannot call other personalities"
    )


def test_personality_calling_itself_hits_the_depth_limit(tmp_path: Path) -> None:
    me = personality(
        tmp_path,
        """
        pipeline:
          - call: {id: again, personality: t}
        """,
    )
    events = run(me, resolve=lambda pid: me)
    err = error(events)
    assert err.message == "calls nested deeper than 4 levels"
    assert err.hint == "check for personalities that call each other in a cycle"
    assert done(events).status == "failed"


def test_sub_pipeline_calling_itself_hits_the_depth_limit(tmp_path: Path) -> None:
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
    err = error(run(p))
    assert err.message == "calls nested deeper than 4 levels"
    assert err.hint == "check for sub-pipelines that call each other in a cycle"


def test_unknown_post_process_operation(tmp_path: Path) -> None:
    import dataclasses

    from engine_support import host

    from lollms_runtime.engine import Engine, Turn

    p = personality(tmp_path, "pipeline:\n  - set: {a: 1}\n")
    broken = dataclasses.replace(
        p, pipeline=({"post_process": {"id": "pp", "input": "x", "ops": [{"sparkle": None}]}},)
    )
    err = error(list(Engine(host(), ScriptedTextBackend()).run_turn(Turn(broken, "hi"))))
    assert (err.message, err.hint) == (
        "step 'pp' (post_process) failed: unknown operation 'sparkle'",
        "is its plugin installed?",
    )


class _EmptyPainter(ScriptedImageBackend):
    def generate(self, request, progress=None, cancel=None):  # type: ignore[no-untyped-def]
        return []


def test_image_backend_returning_nothing(tmp_path: Path) -> None:
    p = personality(tmp_path, "pipeline:\n  - text_to_image: {id: art, prompt: x}\n")
    err = error(run(p, image=_EmptyPainter(), artifacts_dir=tmp_path))
    assert err.message == "step 'art' (text_to_image) failed: the image backend returned no image"


def test_cancel_while_painting(tmp_path: Path) -> None:
    import threading

    from lollms_runtime.engine import Turn

    cancel = threading.Event()

    class Cancelling(ScriptedImageBackend):
        def generate(self, request, progress=None, cancel=None):  # type: ignore[no-untyped-def]
            def progress_then_cancel(done: int, total: int) -> None:
                if progress is not None:
                    progress(done, total)
                stop.set()

            return super().generate(request, progress_then_cancel, cancel)

    stop = cancel
    p = personality(tmp_path, "pipeline:\n  - text_to_image: {id: art, prompt: x, steps: 5}\n")
    image = Cancelling()
    events = run(p, image=image, turn=Turn(p, "hi", cancel=cancel, artifacts_dir=tmp_path))
    assert done(events).status == "cancelled"
    assert [e.done for e in events if isinstance(e, Progress)] == [1]
    assert not list(tmp_path.glob("*.png"))


def test_step_stop_strings_add_to_the_users_override(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        sampling: {stop: ["P"]}
        pipeline:
          - generate: {id: a, stop: ["S"]}
          - generate: {id: b}
        """,
    )
    backend = ScriptedTextBackend("x", "y")
    run(p, "hi", backend, sampling={"stop": ["U"]})
    assert [r.sampling.stop for r in backend.history] == [("U", "S"), ("U",)]
