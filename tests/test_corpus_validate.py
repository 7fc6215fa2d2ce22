"""`lollms validate` on the real LoLLMs zoo: another format, so every file fails, but cleanly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run_lollms


def _zoo() -> Path | None:
    """``shared/corpora/lollms_zoo`` beside the checkout (or beside the main one of a worktree)."""
    roots = [REPO_ROOT]
    git = REPO_ROOT / ".git"
    if git.is_file():  # a git worktree: .git says "gitdir: <main>/.git/worktrees/<name>"
        gitdir = Path(git.read_text(encoding="utf-8").split(":", 1)[1].strip())
        roots.append(gitdir.parent.parent.parent)
    for root in roots:
        candidate = root.parent / "shared" / "corpora" / "lollms_zoo"
        if candidate.is_dir():
            return candidate
    return None


ZOO = _zoo()
pytestmark = pytest.mark.skipif(
    ZOO is None, reason="the LoLLMs corpus (../shared/corpora/lollms_zoo) is not beside the repo"
)


def test_every_lollms_config_gets_a_clean_located_error() -> None:
    assert ZOO is not None
    files = sorted(str(p) for p in ZOO.rglob("config.yaml"))
    assert len(files) >= 100  # the corpus holds 162 files

    done = run_lollms("validate", "--json", *files, env={"LOLLMS_LOAD_PLUGINS": ""})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    results = json.loads(done.stdout)
    assert [r["path"] for r in results] == files
    for result in results:
        assert result["valid"] is False
        assert result["problems"], result
        for problem in result["problems"]:
            assert problem["file"] == result["path"]
            assert problem["line"] >= 1 and problem["col"] >= 1
            assert problem["message"] and problem["hint"], problem

    done = run_lollms("validate", *files, env={"LOLLMS_LOAD_PLUGINS": ""})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[-1] == f"0 valid, {len(files)} invalid"
    located = re.compile(r"^(.+/config\.yaml):(\d+):(\d+): ")
    for line in lines[:-1]:
        assert line.startswith("    hint: ") or located.match(line), line
    assert {m.group(1) for line in lines if (m := located.match(line))} == set(files)
