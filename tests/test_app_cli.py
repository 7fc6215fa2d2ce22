"""The CLI as people read it: `lollms show` lists what each setting accepts; `lollms run` keeps the
trace and the answer on separate lines, prints the answer once when piped, and says in one line
when a picture could not be painted (scripted backends; the real model is proven elsewhere)."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest

from lollms_runtime import runtime as runtime_module
from lollms_runtime.cli import main
from lollms_runtime.engine import Engine
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

DRAFT = "Artbot: A neon city at night, with towering skyscrapers glowing in violet light."
NO_PAINTER = "no image model here: run `lollms models pull stabilityai/sd-turbo` to paint"


@pytest.fixture
def text(monkeypatch: pytest.MonkeyPatch) -> ScriptedTextBackend:
    """`lollms run`'s Runtime on scripted backends; the painter has no model."""
    backend = ScriptedTextBackend()
    real = runtime_module.Runtime

    def scripted(*args: Any, **kwargs: Any) -> Any:
        rt = real(*args, **kwargs)
        painter = ScriptedImageBackend(fail_with=NO_PAINTER)
        rt.engine = Engine(rt.host, backend, painter, resolve_personality=rt.catalog.get)
        return rt

    monkeypatch.setattr(runtime_module, "Runtime", scripted)
    return backend


def test_show_lists_allowed_values_and_ranges(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "gpt_for_art"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  width (integer, one of 256 | 512 | 768, default 512)" in lines
    assert "  steps (integer, 1 to 50, default 20): Denoising steps" in lines
    assert "  paint (boolean, default True): Paint the description" in lines
    assert any(
        line.startswith("  painter (string, one of 'mlx-diffusion' | 'a1111' | 'openai-images',")
        for line in lines
    )


def test_piped_trace_prints_the_answer_once(
    text: ScriptedTextBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    # GPT for Art post-processes its draft ("Artbot:" goes): piped, only the reply is printed.
    text.enqueue(DRAFT)
    assert main(["run", "gpt_for_art", "Imagine.", "--trace", "--set", "paint=false"]) == 0
    out = capsys.readouterr()
    reply = "A neon city at night, with towering skyscrapers glowing in violet light."
    assert out.out == reply + "\n"
    assert "--- reply ---" not in out.out and "Artbot" not in out.out
    assert "▶ generate Imagine the artwork" in out.err
    assert "✓ Keep one clean paragraph: ok" in out.err


class Terminal(io.StringIO):
    """stdout and stderr as one terminal shows them: interleaved, in order."""

    def isatty(self) -> bool:
        return True


def test_trace_lines_do_not_run_into_the_streamed_answer(
    text: ScriptedTextBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    text.enqueue("Hello there, friend.")
    assert main(["run", "assistant", "Hi", "--trace", "--no-save"]) == 0
    lines = terminal.getvalue().splitlines()
    # The streamed answer has a line of its own, and it is shown once.
    assert "Hello there, friend." in lines, lines
    assert sum("Hello there, friend." in line for line in lines) == 1
    assert any(line.startswith("✓ answer: ok") for line in lines), lines


def test_run_says_when_nothing_was_painted(
    text: ScriptedTextBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    text.enqueue(DRAFT)
    assert main(["run", "gpt_for_art", "Imagine.", "--no-save"]) == 0
    out = capsys.readouterr()
    assert f"not painted: {NO_PAINTER}" in out.err.splitlines()
