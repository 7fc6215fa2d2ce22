"""Fuzzing the personality loader and the catalog's fast path: for any text, only the documented
error (PersonalityError, located) comes out, and work stays bounded (alias bombs, deep nesting,
tags, huge numbers, unicode). `make fuzz` runs 100,000 inputs per target."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_strategies import FUZZ, yaml_documents
from hypothesis import given

from lollms_runtime.catalog import _summary
from lollms_runtime.errors import PersonalityError
from lollms_runtime.loader import build_personality, validate_document
from lollms_runtime.plugins import PluginHost, get_plugin_manager
from lollms_runtime.yamldoc import parse_yaml

HOST = PluginHost(get_plugin_manager(load_entry_points=False))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz-loader")


@FUZZ
@given(text=yaml_documents())
def test_loading_any_text_ends_in_a_located_error_or_a_personality(text: str) -> None:
    try:
        doc = parse_yaml(text, "p.yaml")
        problems = validate_document(doc, HOST)
        if not problems:
            build_personality(doc.data, Path("/nonexistent/p.yaml"))
    except PersonalityError as exc:
        assert exc.problems and all(p.file == "p.yaml" and p.line >= 1 for p in exc.problems)
        return
    for problem in problems:
        assert problem.file == "p.yaml" and problem.line >= 1 and problem.message


@FUZZ
@given(text=yaml_documents())
def test_listing_any_text_never_raises(text: str, folder: Path) -> None:
    file = folder / "personality.yaml"
    file.write_text(text, encoding="utf-8", errors="surrogatepass")
    entry = _summary(file, "fuzz", {})
    assert entry.error or entry.id
