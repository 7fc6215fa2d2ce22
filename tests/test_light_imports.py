"""Importing the package, `lollms list` and `lollms validate` stay light: no model stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO_ROOT

HEAVY = ("mlx", "mlx_lm", "gradio", "transformers", "torch", "numpy", "PIL")

SCRIPT = textwrap.dedent(
    """\
    import contextlib, io, json, sys
    import lollms_runtime
    stages = {"import": sorted(sys.modules)}
    from lollms_runtime.cli import main
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["list", "--personalities", sys.argv[1]]) == 0
        stages["list"] = sorted(sys.modules)
        assert main(["validate", sys.argv[1] + "/bot"]) == 0
        stages["validate"] = sorted(sys.modules)
        main(["plugins"])
        stages["plugins"] = sorted(sys.modules)
    print(json.dumps(stages))
    """
)


def stages(folder: Path, env: dict[str, str]) -> dict[str, set[str]]:
    """Top-level modules imported after each stage of SCRIPT, run in a fresh interpreter."""
    (folder / "bot").mkdir(exist_ok=True)
    (folder / "bot" / "personality.yaml").write_text(
        "schema: 1\nid: bot\nname: Bot\npipeline:\n  - generate: {id: a}\n  - reply: {}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, list[str]] = json.loads(done.stdout)
    return {stage: {name.split(".")[0] for name in names} for stage, names in found.items()}


def test_import_list_and_validate_do_not_import_the_model_stack(tmp_path: Path) -> None:
    # Every plugin installed in this environment loads, as when a user types the command.
    for stage, modules in stages(tmp_path, {}).items():
        assert not modules & set(HEAVY), f"{stage} imported {sorted(modules & set(HEAVY))}"


def test_list_imports_neither_validation_nor_the_engine(tmp_path: Path) -> None:
    # What keeps `lollms list` fast over hundreds of personalities (built-ins only, so that an
    # installed plugin's own imports do not count here).
    listed = stages(tmp_path, {"LOLLMS_LOAD_PLUGINS": ""})["list"]
    assert not listed & {"jsonschema", "jinja2", *HEAVY}, sorted(listed)


def test_every_default_plugin_module_imports_light() -> None:
    code = (
        "import pkgutil, importlib, sys, lollms_runtime.default_plugins as d\n"
        "for m in pkgutil.iter_modules(d.__path__): importlib.import_module(d.__name__ + '.' + m.name)\n"
        f"print(sorted({{n.split('.')[0] for n in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr
