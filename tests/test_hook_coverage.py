"""Every hook in hookspecs.py has a test: this table says which, and the test below checks it."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from lollms_runtime import hookspecs

TESTS = Path(__file__).resolve().parent

# hook -> "file::test" that proves a plugin's implementation of it is used.
HOOK_TESTS = {
    "register_personalities": "test_plugins.py::test_installed_plugin_personality_and_command",
    "register_step_kinds": (
        "test_plugins.py::test_a_plugin_kind_defines_a_name_streams_into_the_reply_and_holds_nested_steps"
    ),
    "register_postprocessors": (
        "test_plugins.py::test_plugin_step_kind_and_operation_run_in_the_engine_and_lifecycle_hooks_fire"
    ),
    "register_text_backends": "test_plugins.py::test_backends_and_personalities_are_collected",
    "register_image_backends": "test_plugins.py::test_installed_plugins_load_and_broken_ones_are_reported",
    "register_embedding_backends": (
        "test_knowledge_dense.py::test_a_plugin_embedding_backend_ranks_by_meaning_in_retrieve"
    ),
    "register_commands": "test_plugins.py::test_installed_plugin_personality_and_command",
    "describe_plugin": "test_plugins.py::test_lollms_plugins_shows_what_plugins_describe",
    "lollms_startup": "test_plugins.py::test_lollms_startup_reaches_plugins",
    "lollms_turn_started": (
        "test_plugins.py::test_plugin_step_kind_and_operation_run_in_the_engine_and_lifecycle_hooks_fire"
    ),
    "lollms_step_finished": "test_plugins.py::test_lollms_step_finished_receives_the_real_step_finished",
    "lollms_turn_finished": (
        "test_plugins.py::test_plugin_step_kind_and_operation_run_in_the_engine_and_lifecycle_hooks_fire"
    ),
}


def hook_names() -> set[str]:
    return {
        name
        for name, value in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(value, "lollms_runtime_spec")
    }


def test_every_hook_has_a_test() -> None:
    missing = hook_names() - set(HOOK_TESTS)
    assert not missing, f"hooks without a test (add one and list it in HOOK_TESTS): {missing}"
    stale = set(HOOK_TESTS) - hook_names()
    assert not stale, f"HOOK_TESTS names hooks that no longer exist: {stale}"


def test_the_listed_tests_exist_and_mention_their_hook() -> None:
    plugin_source = TESTS / "plugins" / "lollms-test-plugin" / "lollms_test_plugin" / "__init__.py"
    implemented = {
        node.name
        for node in ast.parse(plugin_source.read_text(encoding="utf-8")).body
        if isinstance(node, ast.FunctionDef)
    }
    for hook, where in HOOK_TESTS.items():
        file, test = where.split("::")
        tree = ast.parse((TESTS / file).read_text(encoding="utf-8"))
        names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert test in names, f"{hook}: {where} does not exist"
        # the test plugin implements every hook, so the listed tests exercise a real plugin's hook
        assert hook in implemented, f"the test plugin does not implement {hook}"


def test_every_hook_has_a_one_line_docstring() -> None:
    for name in hook_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert doc and "\n" not in doc, f"hook {name} needs a one-line docstring"
