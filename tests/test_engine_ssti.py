"""Server-side template injection: known payloads stay inert wherever they are put.

A user's message and a setting's value are data: they reach the model and the reply literally and
are never rendered. A personality's own templates run in the sandbox: a payload there ends the turn
with a clear error, or renders harmless text — it never runs code (the marker file stays absent).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from engine_support import done, host, personality, reply, run

from lollms_runtime.engine import Engine, Turn
from lollms_runtime.events import TurnError
from lollms_runtime.templating import TemplateError, evaluate, render
from lollms_runtime.testing import ScriptedTextBackend

MARKER = "MARKER_PATH"

PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__base__.__subclasses__()[40]('MARKER_PATH', 'w').write('x') }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ message.__class__.__mro__ }}",
    "{{ settings.__class__.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].system('touch MARKER_PATH') }}",
    "{{ lipsum.__globals__.os.popen('touch MARKER_PATH').read() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch MARKER_PATH').read() }}",
    "{{ joiner.__init__.__globals__.os.system('touch MARKER_PATH') }}",
    "{{ namespace.__init__.__globals__.os.system('touch MARKER_PATH') }}",
    "{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch MARKER_PATH') }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('touch MARKER_PATH') }}",
    "{{ config.__class__.__init__.__globals__['os'].popen('touch MARKER_PATH').read() }}",
    "{{ request.application.__globals__.__builtins__.__import__('os').popen('touch MARKER_PATH') }}",
    "{{ url_for.__globals__.os.system('touch MARKER_PATH') }}",
    "{{ get_flashed_messages.__globals__.__builtins__.open('MARKER_PATH', 'w') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__()|selectattr('__name__', 'equalto', 'Popen')|list }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{% if c.__name__ == 'Popen' %}"
    "{{ c(['touch', 'MARKER_PATH']) }}{% endif %}{% endfor %}",
    "{{ message|attr('__class__')|attr('__mro__') }}",
    "{{ message|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ message['__class__'] }}",
    "{{ '{0.__class__.__mro__}'.format(message) }}",
    "{{ '%s'|format(message.__class__) }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ message.format_map }}",
    "{{ '{x.__class__.__mro__}'.format_map({'x': message}) }}",
    "{{ settings.update({'paint': false}) }}",
    "{{ history.append('x') }}",
    "{% import 'os' as os %}{{ os.system('touch MARKER_PATH') }}",
    "{% include '/etc/passwd' %}",
    "{% extends '/etc/passwd' %}",
    "{% from 'subprocess' import Popen %}{{ Popen(['touch', 'MARKER_PATH']) }}",
    "{{ range(10**9)|list|length }}",
    "{{ 'a' * 10**9 }}",
    "{{ [0] * 10**9 }}",
    "{{ 2 ** 1000000000 }}",
    "{{ now.__class__.__init__.__globals__ }}",
    "{{ personality.__class__.__subclasses__() }}",
    "{% set x = namespace(a=1) %}{{ x.__class__.__init__.__globals__ }}",
    "{{ self }}",
    "{{ namespace }}",
]

# What a payload that escaped the sandbox would print.
LEAKS = (
    "<class 'subprocess",
    "<module",
    "root:",
    "__builtins__",
    "<class 'type'>",
    "Popen",
    "'os'",
)


def _payload(text: str, marker: Path) -> str:
    return text.replace(MARKER, str(marker))


def test_there_are_enough_payloads() -> None:
    assert len(PAYLOADS) >= 20


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_in_a_message_is_data(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "marker"
    text = _payload(payload, marker)
    p = personality(
        tmp_path,
        """
        pipeline:
          - generate: {id: answer, prompt: "Q: {{ message }}"}
          - reply: {text: "{{ answer }} | {{ message }}"}
        """,
    )
    backend = ScriptedTextBackend("ok")
    events = run(p, text, backend)
    assert backend.history[0].messages[-1].content == f"Q: {text}"
    assert reply(events).text == f"ok | {text}".strip()
    assert not marker.exists()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_in_a_setting_value_is_data(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "marker"
    text = _payload(payload, marker)
    p = personality(
        tmp_path,
        """
        settings:
          note: {type: string, default: ""}
        pipeline:
          - set: {shown: "[{{ settings.note }}]"}
          - condition:
              id: c
              if: settings.note | length > 0
              then: [{set: {seen: "{{ settings.note | upper | lower }}"}}]
          - reply: {text: "{{ shown }}"}
        """,
    )
    events = run(p, "hi", settings={"note": text})
    assert done(events).status == "ok"
    assert reply(events).text == f"[{text}]"
    assert not marker.exists()


def _inert(events: list[object], marker: Path) -> None:
    assert not marker.exists()
    errors = [e for e in events if isinstance(e, TurnError)]
    if errors:
        assert errors[0].message.startswith("step 'r' (reply) failed: ")
    else:
        text = reply(events).text  # type: ignore[arg-type]
        assert not any(leak in text for leak in LEAKS), text


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_in_a_personality_template_is_refused_or_harmless(
    tmp_path: Path, payload: str
) -> None:
    marker = tmp_path / "marker"
    text = _payload(payload, marker)
    base = personality(tmp_path, "pipeline:\n  - reply: {id: r, text: ok}\n")
    # Bypass load-time checks: the sandbox alone must hold.
    p = dataclasses.replace(base, pipeline=({"reply": {"id": "r", "text": text}},))
    events = list(Engine(host(), ScriptedTextBackend()).run_turn(Turn(p, "hi")))
    _inert(events, marker)  # type: ignore[arg-type]


@pytest.mark.parametrize("payload", [p for p in PAYLOADS if p.startswith("{{") and "{%" not in p])
def test_payload_as_a_condition_expression(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "marker"
    expression = _payload(payload, marker)[2:-2]
    context = {"message": "m", "settings": {}, "history": [], "personality": {}, "now": None}
    try:
        value = evaluate(expression, context)
    except TemplateError:
        value = None
    assert not marker.exists()
    assert not any(leak in str(value) for leak in LEAKS)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{{ ''.__class__ }}",
            "not allowed in a template: access to attribute '__class__' of 'str' object is unsafe.",
        ),
        (
            "{{ 'a' * 10**9 }}",
            "not allowed in a template: repeating a sequence beyond 1000000 items is not allowed",
        ),
        (
            "{{ 2 ** 1000000000 }}",
            "not allowed in a template: powers beyond 100000 bits are not allowed",
        ),
        (
            "{{ range(10**9)|list }}",
            "OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).",
        ),
        (
            "{{ settings.update({}) }}",
            "not allowed in a template: access to attribute 'update' of 'dict' object is unsafe.",
        ),
        ("{{ lipsum(5) }}", "'lipsum' is undefined"),
    ],
)
def test_refusals_say_why(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(template, {"settings": {}})
    assert str(info.value) == message


def test_bounded_operators_still_work() -> None:
    assert render("{{ '-' * 3 }}{{ 2 ** 10 }}{{ [1] * 2 }}{{ 3 * 4 }}", {}) == "---1024[1, 1]12"
