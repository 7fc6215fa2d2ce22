"""The command line never prints a traceback for a user's mistake: each one is a single line that
says what to do, exit 1 (2 for a usage error). The real CLI (in process, or in a subprocess where
the process itself matters), a real SQLite file, real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

from lollms_runtime.cli import main
from lollms_runtime.store import Store

PERSONALITY = """\
schema: 1
id: tuned
name: Tuned
conditioning: Hi.
settings:
  paint: {type: boolean, default: true}
  strength: {type: number, minimum: 0, maximum: 1, default: 0.5}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "ps" / "tuned").mkdir(parents=True)
    (tmp_path / "ps" / "tuned" / "personality.yaml").write_text(PERSONALITY, encoding="utf-8")
    return tmp_path / "ps"


def one_error(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The single line a mistake prints (argparse adds its usage lines first)."""
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.splitlines()[-1]


@pytest.fixture
def lollms(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``lollms ARGS`` in this process (a subprocess per case would cost seconds each)."""

    def run(*args: str | Path, env: dict[str, str] | None = None) -> Any:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


@pytest.mark.parametrize("action", ["show", "export", "delete"])
def test_an_unknown_discussion_id(lollms: Any, action: str) -> None:
    assert one_error(lollms("discussions", action, "nosuchid")) == (
        "error: no discussion 'nosuchid' (deleted, or another store?)"
    )


def test_an_unknown_discussion_to_continue(lollms: Any, folder: Path) -> None:
    done = lollms("run", "tuned", "hi", "--discussion", "nosuchid", "--personalities", folder)
    assert one_error(done) == "error: no discussion 'nosuchid' (deleted, or another store?)"


def test_a_lollms_home_that_is_a_file(lollms: Any, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    done = lollms("discussions", "list", env={"LOLLMS_HOME": str(tmp_path / "file")})
    assert one_error(done) == (
        f"error: cannot use {tmp_path / 'file'} as the runtime's folder (File exists): "
        "set LOLLMS_HOME to a folder you can write to"
    )


def test_a_database_file_that_is_not_a_database(lollms: Any, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "discussions.sqlite3").write_bytes(b"not a database" * 100)
    done = lollms("discussions", "list", env={"LOLLMS_HOME": str(tmp_path / "home")})
    assert one_error(done) == (
        f"error: {tmp_path / 'home' / 'discussions.sqlite3'} is not a usable discussion store "
        "(file is not a database): move it aside and restart, or point LOLLMS_HOME at another "
        "folder."
    )


def test_a_database_path_that_is_a_folder(lollms: Any, tmp_path: Path) -> None:
    (tmp_path / "home" / "discussions.sqlite3").mkdir(parents=True)
    done = lollms("discussions", "list", env={"LOLLMS_HOME": str(tmp_path / "home")})
    assert one_error(done).startswith("error: cannot open the discussion store ")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--seed", "-1"], "argument --seed: a seed is an integer from 0 to 4294967295, got -1"),
        (["--seed", "abc"], "argument --seed: expected an integer, got 'abc'"),
        (["--temperature", "nan"], "argument --temperature: expected a finite number, got 'nan'"),
        (["--temperature", "inf"], "argument --temperature: expected a finite number, got 'inf'"),
        (
            ["--temperature", "1e400"],
            "argument --temperature: expected a finite number, got '1e400'",
        ),
        (["--temperature", "-1"], "argument --temperature: temperature must be 0 to 2, got -1"),
        (
            ["--temperature", "1e300"],
            "argument --temperature: temperature must be 0 to 2, got 1e300",
        ),
        (["--max-tokens", "0"], "argument --max-tokens: max_tokens must be 1 to 131072, got 0"),
        (["--max-tokens", "1.5"], "argument --max-tokens: expected an integer, got '1.5'"),
    ],
)
def test_wrong_sampling_values_are_usage_errors(
    lollms: Any, folder: Path, args: list[str], expected: str
) -> None:
    done = lollms("run", "tuned", "hi", "--no-save", *args, "--personalities", str(folder))
    assert one_error(done, 2) == f"lollms run: error: {expected}"


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("pant=false", "error: tuned has no setting 'pant'; did you mean 'paint'?"),
        ("zzz=1", "error: tuned has no setting 'zzz'; its settings: paint, strength"),
        ("strength=nan", "error: setting 'strength' expects a number, got 'nan'"),
        ("strength=inf", "error: setting 'strength' expects a number, got 'inf'"),
        ("strength=2", "error: setting 'strength' must be <= 1 (got 2.0)"),
        ("paint", "error: --set expects NAME=VALUE, got 'paint'"),
    ],
)
def test_wrong_settings(lollms: Any, folder: Path, pair: str, expected: str) -> None:
    done = lollms("run", "tuned", "hi", "--no-save", "--set", pair, "--personalities", folder)
    assert one_error(done) == expected


@pytest.mark.parametrize("port", ["0", "65536", "99999", "-1", "http"])
def test_an_invalid_port(lollms: Any, port: str) -> None:
    message = one_error(lollms("serve", "--port", port), 2)
    assert message.startswith("lollms serve: error: argument --port: ")
    assert "65535" in message or "expected an integer" in message


def test_a_busy_port_is_refused_before_serving(lollms: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = lollms("serve", "--port", str(port))
    assert one_error(done) == (
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use): another program "
        "uses it; stop that program or pass --port with another number"
    )


def test_an_address_of_no_machine(lollms: Any) -> None:
    message = one_error(lollms("serve", "--host", "no-such-host.invalid"))
    assert message.startswith("error: cannot serve on 'no-such-host.invalid': not an address")


def closed_pipe(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`lollms ARGS | head -0`: the reader is gone before anything is written."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LOLLMS_HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "lollms_runtime.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    err = process.stderr.read()
    return subprocess.CompletedProcess(args, process.wait(timeout=120), "", err)


@pytest.mark.parametrize("command", [["list"], ["discussions", "list"], ["plugins"]])
def test_a_closed_pipe_ends_quietly(lollms: Any, command: list[str], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    store = Store(home / "discussions.sqlite3")
    for i in range(200):
        store.create_discussion("assistant", model="m", title=f"discussion {i} " + "x" * 300)
    store.close()
    done = closed_pipe(*command, home=home)
    assert done.returncode == 1
    assert done.stderr == ""


def test_the_api_refuses_a_busy_port_too(lollms: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = lollms("api", "--port", str(port))
    assert one_error(done) == (
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use): another program "
        "uses it; stop that program or pass --port with another number"
    )
    assert one_error(lollms("api", "--port", "70000"), 2).startswith(
        "lollms api: error: argument --port: a port is a number from 1 to 65535"
    )
