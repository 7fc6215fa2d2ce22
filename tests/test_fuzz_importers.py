"""Fuzzing both importers: any SillyTavern card (JSON or PNG) and any LoLLMs config.yaml ends in
ImportFailed or in a draft that validates. `make fuzz` runs 100,000 inputs per target."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_strategies import FUZZ, card_json, card_pngs, lollms_configs
from hypothesis import given

from lollms_runtime.importers import ImportFailed
from lollms_runtime.importers.common import Draft
from lollms_runtime.importers.lollms import read_lollms
from lollms_runtime.importers.sillytavern import read_card
from lollms_runtime.importers.yamlout import dump_personality
from lollms_runtime.loader import validate_document
from lollms_runtime.plugins import PluginHost, get_plugin_manager
from lollms_runtime.yamldoc import parse_yaml

HOST = PluginHost(get_plugin_manager(load_entry_points=False))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz-import")


def assert_validates(draft: Draft) -> None:
    """What `lollms import` would write must load: the importer's output is never invalid."""
    doc = parse_yaml(dump_personality(draft.data), "personality.yaml")
    problems = validate_document(doc, HOST)
    assert not problems, "\n".join(map(str, problems))


@FUZZ
@given(raw=card_json())
def test_any_json_card_imports_or_fails_cleanly(raw: bytes, folder: Path) -> None:
    card = folder / "card.json"
    card.write_bytes(raw)
    try:
        draft = read_card(card)
    except ImportFailed as exc:
        assert str(exc).startswith(str(card))
        return
    assert_validates(draft)


@FUZZ
@given(blob=card_pngs())
def test_any_png_card_imports_or_fails_cleanly(blob: bytes, folder: Path) -> None:
    card = folder / "card.png"
    card.write_bytes(blob)
    try:
        draft = read_card(card)
    except ImportFailed as exc:
        assert str(exc).startswith(str(card))
        return
    assert_validates(draft)


@FUZZ
@given(text=lollms_configs())
def test_any_lollms_config_imports_or_fails_cleanly(text: str, folder: Path) -> None:
    (folder / "config.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        draft = read_lollms(folder)
    except ImportFailed:
        return
    assert_validates(draft)
