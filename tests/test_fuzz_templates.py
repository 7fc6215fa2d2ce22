"""Fuzzing the template and condition layer: rendering or evaluating any text raises only
TemplateError, and the load-time checks report problems instead of raising. `make fuzz` runs
100,000 inputs per target."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fuzz_strategies import FUZZ, PERSONALITY, expressions, templates
from hypothesis import given

from lollms_runtime import template_bounds
from lollms_runtime.loader import validate_document
from lollms_runtime.plugins import PluginHost, get_plugin_manager
from lollms_runtime.templating import TemplateError, evaluate, render
from lollms_runtime.yamldoc import Document

HOST = PluginHost(get_plugin_manager(load_entry_points=False))
CONTEXT: dict[str, Any] = {
    "message": "hello {{ x }}",
    "history": [{"role": "user", "content": "hi"}],
    "settings": {"flag": True, "x": "y"},
    "personality": {"name": "Fuzz"},
    "now": "2026-01-01",
    "a": "an earlier answer",
    "x": 3,
}


@pytest.fixture(autouse=True, scope="module")
def _short_clock() -> Iterator[None]:
    # The time bound itself is tested in test_templating_bounds.py; a shorter one here keeps a
    # run of many looping templates short without changing what may escape.
    saved = template_bounds.MAX_RENDER_SECONDS
    template_bounds.MAX_RENDER_SECONDS = 0.5
    yield
    template_bounds.MAX_RENDER_SECONDS = saved


@FUZZ
@given(source=templates())
def test_rendering_any_template_raises_only_template_error(source: str) -> None:
    try:
        assert isinstance(render(source, CONTEXT), str)
    except TemplateError as exc:
        assert str(exc)


@FUZZ
@given(expression=expressions())
def test_evaluating_any_expression_raises_only_template_error(expression: str) -> None:
    try:
        evaluate(expression, CONTEXT)
    except TemplateError as exc:
        assert str(exc)


@FUZZ
@given(source=templates(), condition=expressions())
def test_checking_any_template_reports_problems_without_raising(
    source: str, condition: str
) -> None:
    data = dict(PERSONALITY)
    data["pipeline"] = [
        {"generate": {"id": "a", "prompt": source}},
        {"reply": {"text": source, "when": condition}},
    ]
    problems = validate_document(Document("p.yaml", data), HOST)
    assert all(p.file == "p.yaml" and p.message for p in problems)
