"""Fuzzing the discussion import (the app's Import JSON, `ConversationService.import_json`):
any file ends in an ImportFormatError or a discussion that reads back whole. `make fuzz` runs
100,000 inputs per target."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz_strategies import FUZZ, JSON_LIKE, TEXT, deep_nesting
from hypothesis import given
from hypothesis import strategies as st

from lollms_runtime.conversation import ConversationService
from lollms_runtime.store import ImportFormatError, Store


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConversationService]:
    store = Store(tmp_path_factory.mktemp("fuzz-discussions") / "d.sqlite3")
    yield ConversationService(None, store)
    store.close()


@pytest.fixture(scope="module")
def export(service: ConversationService) -> dict[str, Any]:
    d = service.new("assistant")
    user = service.store.add_message(d.id, "user", "hello")
    answer = service.store.add_message(d.id, "assistant", "hi there", user.id)
    service.store.add_step(answer.id, "generate", step_id="answer", title="answer", output="hi")
    return service.export_json(d.id)


NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "1" * 5000]),
)
FIELDS = [
    ("discussion", "created_at"),
    ("discussion", "updated_at"),
    ("discussion", "leaf_id"),
    ("discussion", "title"),
    ("discussion", "personality_id"),
    ("messages", 0, "parent_id"),
    ("messages", 1, "parent_id"),
    ("messages", 1, "role"),
    ("messages", 1, "status"),
    ("messages", 1, "created_at"),
    ("messages", 1, "content"),
    ("messages", 1, "steps"),
    ("messages", 1, "steps", 0, "position"),
    ("messages", 1, "steps", 0, "status"),
    ("messages", 1, "artifacts"),
    ("format",),
    ("version",),
]


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    """The real export with a few fields replaced by hostile values, written as JSON text in which
    numbers and constants may be spelled as JSON never allows."""
    data = json.loads(json.dumps(base))
    raw_numbers: dict[str, str] = {}
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(FIELDS))
        value = draw(st.one_of(JSON_LIKE, NUMBERS, TEXT))
        target: Any = data
        for part in path[:-1]:
            try:
                target = target[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            if isinstance(target, dict) or (isinstance(target, list) and path[-1] < len(target)):
                if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity", "1e999"):
                    marker = f"__raw{len(raw_numbers)}__"
                    raw_numbers[f'"{marker}"'] = value
                    value = marker
                target[path[-1]] = value
    text = json.dumps(data, default=str)
    for marker, spelled in raw_numbers.items():
        text = text.replace(marker, spelled)
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(data=st.data())
def test_any_damaged_export_imports_or_is_refused_cleanly(
    data: st.DataObject, service: ConversationService, export: dict[str, Any]
) -> None:
    raw = data.draw(mutated(export))
    try:
        discussion_id = service.import_json(raw)
    except ImportFormatError as exc:
        assert str(exc)  # a message that says what is wrong
        return
    thread = service.history(discussion_id)  # what was imported reads back
    assert all(m.discussion_id == discussion_id for m in thread)
    service.export_json(discussion_id)  # and exports again
    service.delete(discussion_id)


@FUZZ
@given(
    raw=st.one_of(
        st.binary(max_size=300),
        deep_nesting().map(str.encode),
        JSON_LIKE.map(lambda v: json.dumps(v, default=str).encode("utf-8", "surrogatepass")),
    )
)
def test_any_file_at_all_is_refused_cleanly(raw: bytes, service: ConversationService) -> None:
    try:
        discussion_id = service.import_json(raw)
    except ImportFormatError as exc:
        assert str(exc)
        return
    service.delete(discussion_id)  # pragma: no cover - random bytes are never an export


def test_the_fuzz_targets_reach_both_outcomes(
    service: ConversationService, export: dict[str, Any]
) -> None:
    """The base export imports (so the mutations start from something valid)."""
    discussion_id = service.import_json(json.dumps(export))
    assert [m.content for m in service.history(discussion_id)] == ["hello", "hi there"]
    with pytest.raises(ImportFormatError):
        service.import_json(Path(__file__).read_bytes())
