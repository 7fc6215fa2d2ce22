"""Templates cannot build unbounded output: every payload fails at once with a clear reason.

Each payload below would take gigabytes (or hours) without the bounds in templating.py; here it
must end with a TemplateError naming the limit, having allocated only a few megabytes.
"""

from __future__ import annotations

import dataclasses
import time
import tracemalloc
from pathlib import Path

import pytest
from engine_support import host, personality, reply

from lollms_runtime import template_bounds
from lollms_runtime.engine import Engine, Turn
from lollms_runtime.events import TurnError
from lollms_runtime.templating import (
    MAX_LOOP_ITERATIONS,
    MAX_RENDER_CHARS,
    MAX_RENDER_WORK,
    TemplateError,
    evaluate,
    render,
    render_value,
)
from lollms_runtime.testing import ScriptedTextBackend

BIG = "{% set s = 'x' * 1000000 %}"
NESTED_OUTPUT = (
    "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}x"
    "{% endfor %}{% endfor %}{% endfor %}"
)

PAYLOADS = [
    # widths and counts given to filters
    "{{ 'x'|center(10**9) }}",
    "{{ 'x'|indent(10**9) }}",
    "{{ ('x\\n' * 500000)|indent('y' * 1000) }}",
    "{{ 'x'|wordwrap(10**9) }}",
    "{{ [1]|batch(10**9, 'x')|list }}",
    "{{ [1]|slice(10**9)|list }}",
    "{{ 'ab'|replace('', 'x' * 900000) }}",
    "{{ range(10**5)|join('x' * 10**6) }}",
    "{{ ([0] * 1000000)|join('x') }}",
    "{{ '%1000000000d'|format(1) }}",
    "{{ ([[0] * 1000] * 1000)|sum(start=[])|length }}",
    # str methods
    "{{ 'x'.ljust(10**9) }}",
    "{{ 'x'.rjust(10**9) }}",
    "{{ 'x'.center(10**9) }}",
    "{{ 'x'.zfill(10**9) }}",
    "{{ ('\\t' * 100000).expandtabs(100) }}",
    "{{ 'ab'.replace('', 'x' * 900000) }}",
    "{{ 'ab'.replace('', 'x' * 900000).replace('x', 'yy') }}",
    "{{ ('x' * 10**6).join(range(10**5)|map('string')) }}",
    "{{ 'aaaa'.translate({97: 'x' * 900000}) }}",
    "{{ ('x'|safe).ljust(10**9) }}",
    "{{ ('ab'|e).replace('', 'x' * 900000) }}",
    # format strings
    "{{ '{:>1000000000}'.format(1) }}",
    "{{ '{:>{}}'.format(1, 10**9) }}",
    "{{ ('{0}' * 300000).format('x' * 1000000) }}",
    "{{ '%1000000000d' % 1 }}",
    "{{ '%*d' % (10**9, 1) }}",
    "{{ '%.1000000000f' % 1.0 }}",
    # operators
    "{{ [0] * 1000000 * 1000 }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}"
    "{% endfor %}{{ ns.n > 1 }}",
    # a small value whose text is huge (a list holding one string a thousand times)
    BIG + "{{ [s] * 1000 }}",
    BIG + "{{ ([s] * 1000)|string|length }}",
    BIG + "{{ ([s] * 1000)|tojson|length }}",
    BIG + "{{ ([s] * 1000)|upper|length }}",
    BIG + "{{ '%s' % ([s] * 1000,) }}",
    BIG + "{{ '%s' % {'a': [s] * 1000} }}",
    BIG + "{{ '%(a)s' % {'a': [s] * 1000} }}",
    BIG + "{{ '{0!r}'.format([s] * 1000) }}",
    BIG + "{{ ([s] * 1000) ~ '' }}",
    BIG + "{% set ns = namespace(a=[s] * 1000) %}{{ ns }}",
    # output of a whole render, of {% set %} blocks, macros and filter blocks
    NESTED_OUTPUT,
    "{% for i in range(1000) %}{{ 'x' * 2000 }}{% endfor %}",
    BIG + "{% set y %}{% for i in range(1000) %}{{ s }}{% endfor %}{% endset %}{{ y|length }}",
    "{% macro m() %}{% for i in range(1000) %}{{ 'x' * 1000000 }}{% endfor %}{% endmacro %}"
    "{{ m()|length }}",
    "{% filter upper %}{% for i in range(1000) %}{{ 'x' * 1000000 }}{% endfor %}{% endfilter %}",
    # loops that output nothing, and fresh large values built on every pass
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% set ns = namespace(l=[]) %}{% for i in range(1000) %}"
    "{% set ns.l = ns.l + ['%07d'|format(i) * 100000] %}{% endfor %}{{ ns.l|length }}",
]


def _render_measured(template: str) -> tuple[str, int]:
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError) as info:
            render(template, {})
        return str(info.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_is_refused_before_it_allocates(payload: str) -> None:
    message, peak = _render_measured(payload)
    assert message.startswith("not allowed in a template: "), message
    limits = (MAX_RENDER_CHARS, MAX_LOOP_ITERATIONS, MAX_RENDER_WORK, 100_000)
    assert any(str(limit) in message for limit in limits), message
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MiB for {payload}"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{{ 'x'|center(10**9) }}",
            "a 'center' filter size beyond 1000000 characters is not allowed",
        ),
        ("{{ 'x'.ljust(10**9) }}", "padding text (ljust) beyond 1000000 characters is not allowed"),
        (
            "{{ '{:>1000000000}'.format(1) }}",
            "a format width beyond 1000000 characters is not allowed",
        ),
        ("{{ '%1000000000d' % 1 }}", "formatting text beyond 1000000 characters is not allowed"),
        (
            "{{ 'ab'.replace('', 'x' * 900000) }}",
            "replacing text beyond 1000000 characters is not allowed",
        ),
        (
            "{{ range(10**5)|join('x' * 10**6) }}",
            "joining text beyond 1000000 characters is not allowed",
        ),
        (
            NESTED_OUTPUT,
            "more than 200000 loop iterations in one template is not allowed",
        ),
        (
            "{% for i in range(1000) %}{{ 'x' * 2000 }}{% endfor %}",
            "the text one template renders beyond 1000000 characters is not allowed",
        ),
        (
            BIG + "{{ [s] * 1000 }}",
            "the text of one value beyond 1000000 characters is not allowed",
        ),
        (
            "{% set ns = namespace(l=[]) %}{% for i in range(1000) %}"
            "{% set ns.l = ns.l + ['%07d'|format(i) * 100000] %}{% endfor %}",
            "building more than 20000000 characters in one template is not allowed",
        ),
    ],
)
def test_refusals_name_the_limit(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(template, {})
    assert str(info.value) == f"not allowed in a template: {message}"


@pytest.mark.parametrize(
    "expression",
    [
        "'x'.ljust(10**9)",
        "'x'|center(10**9)",
        "'{:>1000000000}'.format(1)",
        "range(10**5)|join('x' * 10**6)",
        "['x' * 1000000] * 1000",  # small to hold, huge once shown as text
    ],
)
def test_expressions_are_bounded_too(expression: str) -> None:
    for call in (
        lambda: evaluate(expression, {}),
        lambda: render_value("{{ " + expression + " }}", {}),
    ):
        with pytest.raises(TemplateError, match=r"not allowed in a template: .*1000000"):
            call()


def test_the_budget_is_per_render() -> None:
    # 150000 iterations: under the budget once, over it if budgets leaked between renders.
    template = "{% for i in range(1000) %}{% for j in range(150) %}{% endfor %}{% endfor %}ok"
    assert [render(template, {}) for _ in range(3)] == ["ok", "ok", "ok"]


def test_a_render_past_its_time_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    # The clock is the last resort for CPU; a negative limit makes the first check fire.
    monkeypatch.setattr(template_bounds, "MAX_RENDER_SECONDS", -1.0)
    with pytest.raises(TemplateError) as info:
        render("{% for i in range(3) %}{{ i }}{% endfor %}", {})
    assert str(info.value) == (
        "not allowed in a template: a template running longer than -1 seconds is not allowed"
    )
    monkeypatch.undo()
    assert render("{% for i in range(3) %}{{ i }}{% endfor %}", {}) == "012"


def test_templates_under_the_limits_still_work() -> None:
    context = {"items": [{"name": "a"}, {"name": "b"}], "text": "one\ntwo"}
    cases = {
        "{{ ('x' * 1000000)|length }}": "1000000",
        "{{ ('x' * 999999) ~ 'y' }}": "x" * 999999 + "y",
        "{{ '%5d|%-3s|%.2f' % (1, 'b', 1.5) }}": "    1|b  |1.50",
        "{{ '%(a)s-%(a)s' % {'a': 'z'} }}": "z-z",
        "{{ '{:>5}|{!r}|{:,}'.format('a', 'b', 1234567) }}": "    a|'b'|1,234,567",
        "{{ items|join(', ', attribute='name') }}": "a, b",
        "{{ items|map(attribute='name')|join }}": "ab",
        "{{ '-'.join(['a', 'b']) }}|{{ 'a\tb'.expandtabs(2) }}": "a-b|a b",
        "{{ text|indent(2, first=true) }}|{{ 'ab'|center(6) }}|": "  one\n  two|  ab  |",
        "{{ 'aXbX'|replace('X', '--') }}|{{ 'abc'.replace('b', 'B') }}|{{ 'ab'.zfill(4) }}": (
            "a--b--|aBc|00ab"
        ),
        "{{ '%s!'|format('hi') }}|{{ 'abc'.translate({97: 'A'}) }}": "hi!|Abc",
        "{% set ns = namespace(t='') %}{% for i in range(3) %}{% set ns.t = ns.t ~ i %}"
        "{% endfor %}{{ ns.t }}": "012",
        "{% macro m(x) %}<{{ x }}>{% endmacro %}"
        "{% set y %}{{ m(1) }}{% endset %}{{ y }}{{ m(2) }}": "<1><2>",
        "{% for row in range(300) %}{% for c in range(300) %}{% endfor %}{% endfor %}"
        "{{ [1, 2] + [3] }}{{ 'a' + 'b' }}{{ 7 % 3 }}{{ 3 * 4 }}": "[1, 2, 3]ab112",
        "{% for i in range(3) %}{{ loop.index }}/{{ loop.length }}{% if not loop.last %},"
        "{% endif %}{% endfor %}": "1/3,2/3,3/3",
        "{% for i in range(500) %}{{ 'x' * 1000 }}{% endfor %}": "x" * 500000,
    }
    for template, expected in cases.items():
        assert render(template, context) == expected, template


def test_a_refused_template_is_a_clear_step_error(tmp_path: Path) -> None:
    base = personality(tmp_path, "pipeline:\n  - reply: {id: r, text: ok}\n")
    p = dataclasses.replace(base, pipeline=({"reply": {"id": "r", "text": NESTED_OUTPUT}},))
    events = list(Engine(host(), ScriptedTextBackend()).run_turn(Turn(p, "hi")))
    errors = [e for e in events if isinstance(e, TurnError)]
    assert errors, [type(e).__name__ for e in events]
    assert errors[0].message == (
        "step 'r' (reply) failed: not allowed in a template: "
        "more than 200000 loop iterations in one template is not allowed"
    )


def test_a_long_reply_under_the_limit_is_kept_whole(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        pipeline:
          - reply: {id: r, text: "{% for i in range(2000) %}{{ message }}{% endfor %}"}
        """,
    )
    events = list(Engine(host(), ScriptedTextBackend()).run_turn(Turn(p, "y" * 400)))
    assert reply(events).text == "y" * 800000


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{{ ('x' * 200000)|sort|length }}",
            "the 'sort' filter on more than 100000 items is not allowed",
        ),
        (
            "{{ ('a ' * 150000).split()|map('upper')|list|length }}",
            "the 'map' filter on more than 100000 items is not allowed",
        ),
        (
            "{{ (' ' * 199000)|wordwrap(1) }}",  # textwrap: 24 s before, quadratic in the word
            "wrapping a word of 199000 characters at width 1 is not allowed",
        ),
        (
            "{{ ('x' * 300000)|urlize }}",
            "the text of the 'urlize' filter's input beyond 200000 characters is not allowed",
        ),
    ],
)
def test_filters_that_work_item_by_item_are_bounded(template: str, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateError) as info:
        render(template, {})
    assert str(info.value) == f"not allowed in a template: {message}"
    assert time.perf_counter() - started < 2.0


def test_a_filter_calling_back_for_each_item_stops_on_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # groupby looks each item's attribute up through the sandbox: ~3 s for 100,000 items before,
    # whatever the bound; the lookups now check the clock.
    monkeypatch.setattr(template_bounds, "MAX_RENDER_SECONDS", 0.3)
    started = time.perf_counter()
    with pytest.raises(TemplateError, match=r"running longer than 0\.3 seconds"):
        render(
            "{% for i in range(20) %}{{ items|groupby('real')|length }}{% endfor %}",
            {"items": list(range(100_000))},
        )
    assert time.perf_counter() - started < 1.5
