"""Importing the package, `lollms list` and `lollms validate` stay light: no model stack."""

from __future__ import annotations

import json
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


def test_import_list_and_validate_do_not_import_the_model_stack(tmp_path: Path) -> None:
    (tmp_path / "bot").mkdir()
    (tmp_path / "bot" / "personality.yaml").write_text(
        "schema: 1\nid: bot\nname: Bot\npipeline:\n  - generate: {id: a}\n  - reply: {}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    stages: dict[str, list[str]] = json.loads(done.stdout)
    for stage, modules in stages.items():
        top = {name.split(".")[0] for name in modules}
        assert not top & set(HEAVY), f"{stage} imported {sorted(top & set(HEAVY))}"
    # Listing must not even pay for validation (jsonschema) or the engine (jinja2): that is
    # what keeps `lollms list` fast with hundreds of personalities.
    listed = {name.split(".")[0] for name in stages["list"]}
    assert "jsonschema" not in listed and "jinja2" not in listed
    assert "lollms_runtime.engine" not in stages["list"]


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
