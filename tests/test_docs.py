"""The format docs: the generated reference is current, and every step kind's example is valid."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, run_lollms

from lollms_runtime.default_plugins.steps import BUILTIN_STEP_KINDS
from lollms_runtime.docs_gen import reference_markdown
from lollms_runtime.errors import PersonalityError
from lollms_runtime.loader import load_personality
from lollms_runtime.plugins import PluginHost

REFERENCE = REPO_ROOT / "docs" / "reference.md"
GUIDE = REPO_ROOT / "docs" / "format.md"


def test_reference_is_up_to_date(plugin_host: PluginHost) -> None:
    assert REFERENCE.read_text(encoding="utf-8") == reference_markdown(plugin_host), (
        "docs/reference.md is stale: run `make docs` "
        "(LOLLMS_LOAD_PLUGINS= lollms schema --markdown > docs/reference.md)"
    )


def test_make_docs_command_writes_the_same_reference() -> None:
    done = run_lollms("schema", "--markdown", env={"LOLLMS_LOAD_PLUGINS": ""})
    assert done.returncode == 0
    assert done.stdout == REFERENCE.read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", BUILTIN_STEP_KINDS, ids=lambda k: k.name)
def test_step_kind_example_is_a_valid_pipeline(
    kind: object, plugin_host: PluginHost, tmp_path: Path
) -> None:
    from lollms_runtime.contracts import StepKind

    assert isinstance(kind, StepKind)
    assert kind.example, f"{kind.name} has no example"
    file = tmp_path / "personality.yaml"
    file.write_text(f"schema: 1\nid: example\nname: Example\n{kind.example}", encoding="utf-8")
    try:
        personality = load_personality(file, plugin_host)
    except PersonalityError as exc:  # show the located problems, not just "invalid"
        pytest.fail(f"the example of {kind.name} is invalid:\n{exc}")
    assert kind.name in keys_of(personality.raw), f"the example of {kind.name} does not use it"


def keys_of(value: Any) -> set[str]:
    """Every mapping key anywhere in ``value``."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_of(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_of(v)}
    return set()


def test_the_guide_covers_the_format_and_points_to_the_reference() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    assert "reference.md" in guide
    for topic in (
        "conditioning",
        "user_prefix",
        "sampling",
        "settings",
        "pipeline",
        "pipelines",
        "tests",
        "schema",
        "LOLLMS_LOAD_PLUGINS",
        "register_step_kinds",
    ):
        assert topic in guide, f"docs/format.md does not mention {topic}"
    for kind in BUILTIN_STEP_KINDS:
        assert f"`{kind.name}`" in guide, f"docs/format.md does not mention the {kind.name} step"


def test_complete_examples_in_the_guide_are_valid(plugin_host: PluginHost, tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.DOTALL)
    complete = [block for block in blocks if block.startswith("schema: 1\n")]
    assert len(complete) >= 4
    for number, block in enumerate(complete):
        file = tmp_path / f"example{number}.yaml"
        file.write_text(block, encoding="utf-8")
        try:
            load_personality(file, plugin_host)
        except PersonalityError as exc:
            pytest.fail(f"example {number} of docs/format.md is invalid:\n{exc}")
