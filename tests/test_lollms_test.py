"""`lollms test`: the runner of personalities' declared tests, and the command."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from engine_support import host, personality

from lollms_runtime.cli import main
from lollms_runtime.contracts import TextBackendFactory
from lollms_runtime.events import TurnError
from lollms_runtime.personality_tests import (
    NO_TEXT_BACKEND,
    SCRIPTED_ONLY,
    Outcome,
    TestRunner,
    check,
    summary,
)
from lollms_runtime.plugins import PluginHost, get_plugin_manager, hookimpl
from lollms_runtime.runtime import Runtime
from lollms_runtime.testing import ScriptedTextBackend

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "personalities"


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))


# -- expectations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expect", "outcome", "problems"),
    [
        ({"contains": "PARIS"}, Outcome("It is Paris."), []),
        ({"contains": ["paris", "rome"]}, Outcome("Paris"), ["the reply does not contain 'rome'"]),
        ({"not_contains": "as an ai"}, Outcome("As an AI, no"), ["the reply contains 'as an ai'"]),
        ({"not_contains": ["x", "y"]}, Outcome("z"), []),
        ({"regex": "^b"}, Outcome("a\nb"), []),
        ({"regex": "^c"}, Outcome("a\nb"), ["the reply does not match /^c/"]),
        (
            {"regex": "("},
            Outcome("a"),
            ["the regex /(/ is invalid: missing ), unterminated subpattern at position 0"],
        ),
        (
            {"min_length": 5},
            Outcome("abc"),
            ["the reply has 3 characters, fewer than min_length 5"],
        ),
        ({"max_length": 2}, Outcome("abc"), ["the reply has 3 characters, more than max_length 2"]),
        ({"min_length": 3, "max_length": 3}, Outcome("abc"), []),
        ({"branch": {"c": "then"}}, Outcome("", {"c": "then"}), []),
        (
            {"branch": {"c": "then"}},
            Outcome("", {"c": "else"}),
            ["condition 'c' took 'else', expected 'then'"],
        ),
        ({"branch": {"c": "then"}}, Outcome(""), ["condition 'c' did not run"]),
        ({"image": True}, Outcome(images=1), []),
        ({"image": True}, Outcome(), ["no image was produced"]),
        ({"image": False}, Outcome(images=2), ["2 image(s) were produced, expected none"]),
        ({"error": True}, Outcome(error=TurnError("boom")), []),
        ({"error": True}, Outcome(), ["the turn succeeded, but the test expects it to fail"]),
        ({}, Outcome(error=TurnError("boom", "g", "do x")), ["the turn failed: boom (hint: do x)"]),
    ],
)
def test_check(expect: dict[str, Any], outcome: Outcome, problems: list[str]) -> None:
    assert check(expect, outcome) == problems


def test_summary_counts() -> None:
    assert summary([], 0.5) == "no tests ran in 0.50s"


# -- the runner ----------------------------------------------------------------------------

FAILING = """
settings:
  mode: {type: string, default: a}
pipeline:
  - condition:
      id: pick
      ask: Is it a question?
      then: [{generate: {id: answer}}]
      else: [{set: {answer: "no question"}}]
  - reply: {text: "{{ answer }}"}
tests:
  - name: good
    input: why?
    choices: ["yes"]
    scripted: ["Because."]
    expect: {contains: because, branch: {pick: then}}
  - name: bad
    input: why?
    choices: ["no"]
    scripted: ["unused"]
    expect: {contains: because, branch: {pick: then}}
  - name: short of answers
    input: why?
    choices: ["yes"]
    expect: {contains: because}
  - name: no choice given
    input: why?
    scripted: ["x"]
  - name: bad settings
    input: why?
    settings: {mode: 3}
    scripted: ["x"]
    choices: ["yes"]
  - name: real model
    input: why?
    seed: 4
    expect: {contains: because}
"""


def test_runner_results_and_reasons(tmp_path: Path) -> None:
    p = personality(tmp_path, FAILING)
    runner = TestRunner(host(), scripted_only=True)
    results = {r.name: r for r in runner.run(p)}
    assert {n: r.status for n, r in results.items()} == {
        "good": "passed",
        "bad": "failed",
        "short of answers": "failed",
        "no choice given": "failed",
        "bad settings": "passed",
        "real model": "skipped",
    }
    assert results["bad"].reasons == (
        "the reply does not contain 'because'",
        "condition 'pick' took 'else', expected 'then'",
    )
    assert results["bad"].reply == "no question"
    assert results["short of answers"].reasons == (
        "the turn failed: step 'answer' (generate) failed: the test's scripted: list has no "
        "answer left for this generate step (it had 0); add one "
        "(hint: set on_error: continue (or fallback) on this step to go on without it)",
        "the reply does not contain 'because'",
    )
    assert results["no choice given"].reasons == (
        "the turn failed: step 'pick' (condition) failed: the test's choices: list has no answer "
        "left for this question (options: yes, no); add one "
        "(hint: set on_error: continue (or fallback) on this step to go on without it)",
    )
    assert results["real model"].reasons == (SCRIPTED_ONLY,)
    assert [r.name for r in runner.run(p, keyword="GOOD")] == ["good"]


def test_bad_settings_in_a_test_fail_it(tmp_path: Path) -> None:
    p = personality(
        tmp_path,
        """
        settings:
          n: {type: integer, default: 1}
        tests:
          - {name: wrong, input: x, settings: {n: lots}, scripted: ["x"]}
        """,
    )
    (result,) = TestRunner(host()).run(p)
    assert result.status == "failed"
    assert result.reasons == (
        "bad settings in the test: setting 'n' expects a integer, got 'lots'",
    )


def test_real_model_tests_skip_without_a_text_backend(tmp_path: Path) -> None:
    p = personality(tmp_path, "tests:\n  - {name: real, input: hi, seed: 1}\n")
    runner = TestRunner(host(), runtime=lambda: Runtime(host=host(), text_backend="absent"))
    (result,) = runner.run(p)
    assert (result.status, result.mode, result.reasons) == ("skipped", "model", (NO_TEXT_BACKEND,))
    (result,) = TestRunner(host()).run(p)
    assert result.reasons == (NO_TEXT_BACKEND,)


class _Recording:
    """A test plugin: a 'recording' text backend standing in for the real model."""

    def __init__(self) -> None:
        self.backend = ScriptedTextBackend()

    @hookimpl
    def register_text_backends(self, register: Any) -> None:
        register(TextBackendFactory("recording", lambda model=None: self.backend))


def test_real_model_tests_run_on_the_runtime_with_their_seed(tmp_path: Path) -> None:
    plugin = _Recording()
    plugin.backend.enqueue("Paris, of course.", "Rome.")
    plugin_host = PluginHost(get_plugin_manager(load_entry_points=False, extra_plugins=[plugin]))
    p = personality(
        tmp_path,
        """
        sampling: {temperature: 0.6}
        tests:
          - {name: seeded, input: capital?, seed: 7, expect: {contains: paris}}
          - {name: unseeded, input: capital?, expect: {contains: paris}}
        """,
    )
    runner = TestRunner(
        plugin_host, runtime=lambda: Runtime(host=plugin_host, text_backend="recording")
    )
    seeded, unseeded = runner.run(p)
    assert (seeded.status, seeded.mode) == ("passed", "model")
    assert unseeded.status == "failed"
    first, second = plugin.backend.history
    assert (first.sampling.seed, first.sampling.temperature) == (7, 0.6)
    assert second.sampling.seed is None


# -- the command ---------------------------------------------------------------------------


def test_every_bundled_personality_passes_its_scripted_tests(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = ["gpt_for_art", "router", "code_buddy", "haiku_poet", "assistant"]
    code = main(["test", *ids, "--scripted-only", "--personalities", str(BUNDLED)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert "gpt_for_art::describes and paints (scripted) PASSED" in out
    assert "assistant::knows the capital of France (real model) [model] SKIPPED " in out
    passed = sum(" PASSED " in line for line in lines)
    skipped = sum(" SKIPPED " in line for line in lines)
    assert passed >= 9
    assert lines[-1].startswith(f"========== {passed} passed, {skipped} skipped in ")


def _write(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "broken_bot"
    folder.mkdir()
    head = "schema: 1\nid: broken_bot\nname: Broken Bot\nconditioning: Be brief.\n"
    (folder / "personality.yaml").write_text(head + textwrap.dedent(body), encoding="utf-8")
    return folder


FAILS = """
tests:
  - name: says hello
    input: hi
    scripted: ["Goodbye."]
    expect: {contains: hello}
  - name: says goodbye
    input: hi
    scripted: ["Goodbye."]
    expect: {contains: goodbye, max_length: 20}
  - name: real one
    input: hi
"""


def test_a_failing_expectation_exits_1_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _write(tmp_path, FAILS)
    code = main(["test", str(folder), "--scripted-only"])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("broken_bot::says hello FAILED (")
    assert lines[1:3] == ["    the reply does not contain 'hello'", "    reply: Goodbye."]
    assert lines[3].startswith("broken_bot::says goodbye PASSED (")
    assert lines[4] == f"broken_bot::real one [model] SKIPPED ({SCRIPTED_ONLY})"
    assert lines[5].startswith("========== 1 passed, 1 failed, 1 skipped in ")


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _write(tmp_path, FAILS)
    code = main(["test", str(folder), "--scripted-only", "--json", "-k", "says"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (data["passed"], data["failed"], data["skipped"]) == (1, 1, 0)
    first = data["results"][0]
    assert {k: first[k] for k in ("personality", "name", "mode", "status", "reasons", "reply")} == {
        "personality": "broken_bot",
        "name": "says hello",
        "mode": "scripted",
        "status": "failed",
        "reasons": ["the reply does not contain 'hello'"],
        "reply": "Goodbye.",
    }


def test_unknown_personality_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", "no_such_bot_here", "--scripted-only"]) == 1
    assert "error: no personality with id 'no_such_bot_here'." in capsys.readouterr().err
