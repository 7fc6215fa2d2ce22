"""Promises of SECURITY.md that no other test file holds: personalities are data (no code of
theirs is run, nothing is installed at run time), their patterns run with a time limit, and the
app listens on loopback by default."""

from __future__ import annotations

import ast
import subprocess
import time
from pathlib import Path

import pytest
from engine_support import error, personality, reply, run

from lollms_runtime.cli import build_parser
from lollms_runtime.patterns import PATTERN_SECONDS
from lollms_runtime.testing import ScriptedTextBackend

PACKAGE = Path(__file__).resolve().parent.parent / "lollms_runtime"
# `lollms install` runs pip because the user asked for it; mlx/blas.py finds the system's OpenBLAS
# (ctypes.util may ask ldconfig), with no input from any personality. Nothing else starts a process.
MAY_RUN_PROCESSES = {"commands/install.py", "mlx/blas.py"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "execfile", "runpy"}
FORBIDDEN_MODULES = {"subprocess", "runpy", "pty", "ctypes.util", "multiprocessing"}
FORBIDDEN_OS = {"system", "popen", "execv", "execve", "execvp", "spawnv", "spawnl", "fork"}


def sources() -> list[tuple[str, ast.Module]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        found.append((relative, ast.parse(path.read_text(encoding="utf-8"))))
    return found


def test_the_runtime_never_executes_code_or_starts_a_process() -> None:
    offences = []
    for relative, tree in sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in FORBIDDEN_CALLS:
                    offences.append(f"{relative}:{node.lineno}: {node.func.id}()")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "os" and node.attr in FORBIDDEN_OS:
                    offences.append(f"{relative}:{node.lineno}: os.{node.attr}")
            elif (
                isinstance(node, ast.Import | ast.ImportFrom) and relative not in MAY_RUN_PROCESSES
            ):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                module = node.module if isinstance(node, ast.ImportFrom) else None
                for name in [*names, module]:
                    if name in FORBIDDEN_MODULES:
                        offences.append(f"{relative}:{node.lineno}: import {name}")
    assert offences == []
    assert len(sources()) > 50  # the scan really read the package


def test_a_personalitys_dependencies_are_never_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    p = personality(tmp_path, "dependencies: [surely-not-installed-xyz, requests]\n")
    assert p.dependencies == ("surely-not-installed-xyz", "requests")
    events = run(p, "hello", ScriptedTextBackend().enqueue("hi there"))
    assert reply(events).text == "hi there"


def test_serve_listens_on_loopback_by_default() -> None:
    # The real server binding 127.0.0.1 is checked in test_app_server.py.
    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1"


@pytest.mark.parametrize(
    "op", ["{regex_replace: {pattern: '(a|aa)+$', replacement: ''}}", "{regex_extract: '(a|aa)+$'}"]
)
def test_a_personalitys_pattern_cannot_backtrack_for_ever(tmp_path: Path, op: str) -> None:
    # With `re` this pattern takes minutes on 40 characters (90 s measured for `(a+)+$` on 29).
    p = personality(
        tmp_path,
        f"""
        pipeline:
          - generate: {{id: a}}
          - post_process: {{id: b, input: "{{{{ a }}}}", ops: [{op}]}}
          - reply: {{text: "{{{{ b }}}}"}}
        """,
    )
    started = time.perf_counter()
    events = run(p, "hi", ScriptedTextBackend().enqueue("a" * 40 + "b"))
    assert time.perf_counter() - started < PATTERN_SECONDS + 10  # minutes without the limit
    assert error(events).message.endswith(
        "the pattern /(a|aa)+$/ ran longer than 1 s on this text: simplify it (nested repeats "
        "such as (a+)+ backtrack without end)"
    )
