"""Knowledge on the real embedded model (SmolLM2-135M through mlx-lm): a lorebook entry changes
the answer, and `lollms run --attach` retrieves from the attached file."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from conftest import run_lollms

from lollms_runtime.events import Done, Reply, StepFinished
from lollms_runtime.loader import load_personality
from lollms_runtime.runtime import Runtime

pytestmark = pytest.mark.model
GREEDY = {"max_tokens": 12, "temperature": 0.0}

KEEPER = """\
schema: 1
id: keeper
name: Keeper
conditioning: You are a helpful assistant. Answer in a few words.
lore:
  entries:
    - name: Password
      keys: [password]
      enabled: {enabled}
      content: "The secret password is Zanzibar. When asked for the password, answer Zanzibar."
      position: after
"""


def keeper(folder: Path, enabled: bool) -> Path:
    folder.mkdir(parents=True)
    (folder / "personality.yaml").write_text(
        KEEPER.replace("{enabled}", "true" if enabled else "false"), encoding="utf-8"
    )
    return folder


def test_a_lore_entry_changes_the_answer(tmp_path: Path, mlx_home: Path) -> None:
    runtime = Runtime()
    answers = {}
    for enabled in (False, True):
        p = load_personality(keeper(tmp_path / str(enabled), enabled), runtime.host)
        events = list(runtime.run(p, "What is the secret password?", sampling=GREEDY))
        done = events[-1]
        assert isinstance(done, Done) and done.status == "ok", events
        answers[enabled] = next(e for e in events if isinstance(e, Reply)).text
        step = next(e for e in events if isinstance(e, StepFinished) and e.step_id == "answer")
        if enabled:
            assert step.detail == "lore: 'Password' (key 'password' in the chat)"
        else:
            assert step.detail == ""
    assert "zanzibar" in answers[True].lower(), answers
    assert "zanzibar" not in answers[False].lower(), answers


def test_run_attach_retrieves_from_the_attached_file(tmp_path: Path, mlx_home: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "personality.yaml").write_text(
        textwrap.dedent(
            """\
            schema: 1
            id: plain
            name: Plain
            conditioning: Answer from the passages.
            """
        ),
        encoding="utf-8",
    )
    notes = tmp_path / "notes.md"
    notes.write_text("# Keys\n\nThe spare key is under the blue flowerpot.\n", encoding="utf-8")
    done = run_lollms(
        "run",
        str(folder),
        "Where is the spare key?",
        "--attach",
        str(notes),
        "--max-tokens",
        "8",
        "--trace",
        "--temperature",
        "0",
    )
    assert done.returncode == 0, done.stderr
    assert "(attached notes.md: 1 passage(s))" in done.stderr
    assert re.search(r"retrieved: notes\.md \(Keys\) \d", done.stderr), done.stderr
    refused = run_lollms("run", str(folder), "hi", "--attach", str(notes), "--no-save")
    assert refused.returncode == 1
    assert "--no-save cannot be used with --discussion, --continue or --attach" in refused.stderr
