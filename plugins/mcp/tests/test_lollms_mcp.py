"""lollms-mcp: tools of a real MCP server (started by the tests over stdio and over streamable
HTTP on loopback) as pipeline steps, the user's mcp.json, errors, timeouts, cancel, the command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PLUGIN_ROOT.parents[1]
SERVER = Path(__file__).resolve().parent / "mcp_test_server.py"
sys.path.insert(0, str(PLUGIN_ROOT))  # the plugin under test, installed or not

from lollms_mcp import plugin  # noqa: E402
from lollms_mcp.client import CONNECTIONS  # noqa: E402
from lollms_mcp.config import McpConfigError, load_servers  # noqa: E402

from lollms_runtime.engine import Engine, Turn  # noqa: E402
from lollms_runtime.errors import PersonalityError  # noqa: E402
from lollms_runtime.events import Done, StepFinished, TurnError  # noqa: E402
from lollms_runtime.loader import load_personality  # noqa: E402
from lollms_runtime.plugins import PluginHost, get_plugin_manager  # noqa: E402
from lollms_runtime.testing import ScriptedTextBackend  # noqa: E402

CALCULATOR = """\
pipeline:
  - tool:
      id: total
      server: tools
      name: add
      arguments: {a: "{{ message | length }}", b: "{{ 2 }}"}
  - tool: {id: note, server: tools, name: read_file, arguments: {name: note.txt}}
  - generate: {id: answer, prompt: "The sum is {{ total }} and the note says {{ note }}"}
  - reply: {text: "{{ answer }} ({{ total }})"}
"""


@pytest.fixture(scope="module")
def server_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("mcp-files")
    (folder / "note.txt").write_text("bring an umbrella", encoding="utf-8")
    yield folder
    CONNECTIONS.close()  # stops the stdio servers this module started


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LOLLMS_LOAD_PLUGINS", raising=False)
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def configure(home: Path, servers: dict[str, Any]) -> Path:
    path = home / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}, indent=2), encoding="utf-8")
    return path


def stdio_entry(folder: Path, **extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(SERVER), str(folder)], **extra}


def host() -> PluginHost:
    """A fresh plugin host with the built-ins and this plugin: it reads mcp.json as it is now."""
    return PluginHost(get_plugin_manager(extra_plugins=[plugin], load_entry_points=False))


def personality(tmp_path: Path, pipeline: str, plugin_host: PluginHost) -> Any:
    file = tmp_path / "p.yaml"
    file.write_text(f"schema: 1\nid: tooled\nname: Tooled\n{pipeline}", encoding="utf-8")
    return load_personality(file, plugin_host)


def run(plugin_host: PluginHost, who: Any, message: str, *answers: str) -> list[Any]:
    backend = ScriptedTextBackend(*answers)
    events = list(Engine(plugin_host, backend).run_turn(Turn(who, message)))
    events.append(backend)  # last: what the model was asked
    return events


def turn_error(events: list[Any]) -> TurnError:
    (error,) = [e for e in events if isinstance(e, TurnError)]
    return error


# -- configuration ---------------------------------------------------------------------------


def test_the_users_servers_are_read_in_the_mcpservers_shape(home: Path) -> None:
    assert load_servers() == {}  # no file: no server, no error
    configure(
        home,
        {
            "files": {"command": "uvx", "args": ["srv", 3], "env": {"K": "v"}, "alwaysAllow": []},
            "web": {"type": "http", "url": "http://127.0.0.1:8000/mcp", "timeout": 5},
            "off": {"command": "x", "disabled": True},
        },
    )
    servers = load_servers()
    assert sorted(servers) == ["files", "web"]
    assert servers["files"].describe() == "stdio: uvx srv 3"
    assert (servers["files"].env, servers["files"].timeout) == ({"K": "v"}, 60.0)
    assert (servers["web"].describe(), servers["web"].timeout) == (
        "http: http://127.0.0.1:8000/mcp",
        5.0,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"mcpServers": {"a": {"args": []}}}', "1:22: mcpServers.a.command: missing the command"),
        (
            '{"mcpServers": {\n  "a": {"url": "ftp://x"}}}',
            "2:16: mcpServers.a.url: expected an http",
        ),
        ('{"mcpServers": {"a": {"type": "sse", "url": "http://x"}}}', "transport 'sse' is not"),
        ('{"mcpServers": {"a": {"command": "x",}}}', "1:38: not valid JSON: Expecting property"),
        ('{"servers": {}}', "1:1: expected an object with the key mcpServers"),
    ],
)
def test_a_broken_config_says_where(home: Path, text: str, message: str) -> None:
    (home / "mcp.json").write_text(text, encoding="utf-8")
    with pytest.raises(McpConfigError) as caught:
        load_servers()
    assert str(caught.value).startswith(str(home / "mcp.json") + ":")
    assert message in str(caught.value)


def test_a_personality_naming_an_unconfigured_server_is_refused_at_load(
    home: Path, tmp_path: Path
) -> None:
    """The kind's load-time check (StepKind.check) reads mcp.json at each load: one host sees
    the servers as they are now, and every problem says file:line:col."""
    step = "pipeline:\n  - tool: {server: calc, name: add}\n"
    where = f"{tmp_path / 'p.yaml'}:5:20: pipeline[0].tool.server: "
    one_host = host()
    with pytest.raises(PersonalityError) as caught:
        personality(tmp_path, step, one_host)
    assert str(caught.value) == (
        f"{where}MCP server 'calc' is not configured\n"
        f"    hint: no MCP server is configured: add it under mcpServers in {home / 'mcp.json'}"
    )
    configure(home, {"calculator": {"command": "x"}, "files": {"command": "y"}})
    with pytest.raises(PersonalityError) as caught:
        personality(tmp_path, step.replace("calc,", "calculater,"), one_host)
    assert str(caught.value) == (
        f"{where}MCP server 'calculater' is not configured\n    hint: did you mean 'calculator'? "
        f"configured in {home / 'mcp.json'}: calculator, files"
    )
    with pytest.raises(PersonalityError) as caught:
        personality(tmp_path, step.replace("calc,", "zzz,"), one_host)
    assert str(caught.value).endswith(
        f"\n    hint: configured in {home / 'mcp.json'}: calculator, files"
    )
    assert personality(tmp_path, step.replace("calc,", "calculator,"), one_host).pipeline
    (home / "mcp.json").write_text("{", encoding="utf-8")
    with pytest.raises(PersonalityError) as caught:
        personality(tmp_path, step.replace("calc,", "calculator,"), one_host)
    assert str(caught.value).startswith(
        f"{where}the MCP servers cannot be read: {home / 'mcp.json'}:"
    )


# -- calling tools ---------------------------------------------------------------------------


def test_a_pipeline_calls_tools_over_stdio_and_uses_their_results(
    home: Path, tmp_path: Path, server_folder: Path
) -> None:
    configure(home, {"tools": stdio_entry(server_folder)})
    plugin_host = host()
    events = run(plugin_host, personality(tmp_path, CALCULATOR, plugin_host), "hello", "Noted.")
    backend = events.pop()
    assert isinstance(events[-1], Done) and events[-1].status == "ok", events
    outputs = {e.step_id: e.output for e in events if isinstance(e, StepFinished)}
    assert outputs["total"] == 7.0  # len("hello") + 2, typed by the tool's schema
    assert outputs["note"] == "bring an umbrella"
    prompt = backend.history[0].messages[-1].content
    assert prompt == "The sum is 7.0 and the note says bring an umbrella"
    assert events[-1].text == "Noted. (7.0)"


def test_tool_errors_end_the_step_with_a_clear_message(
    home: Path, tmp_path: Path, server_folder: Path
) -> None:
    configure(home, {"tools": stdio_entry(server_folder, timeout=30)})
    plugin_host = host()
    cases = [
        (
            "{server: tools, name: divide, arguments: {a: 1, b: 0}}",
            "tool 'divide' on MCP server 'tools' failed: Error executing tool divide: cannot divide by zero",
        ),
        (
            "{server: tools, name: add, arguments: {a: one, b: 2}}",
            "argument 'a' of tool 'add': 'one' is not of type 'number'",
        ),
        (
            "{server: tools, name: add, arguments: {a: 1}}",
            "the arguments of tool 'add': 'b' is a required property",
        ),
        ("{server: tools, name: ad}", "MCP server 'tools' has no tool 'ad'"),
        (
            "{server: tools, name: slow, arguments: {seconds: 120}, timeout: 1}",
            "tool 'slow' on MCP server 'tools' did not answer within 1s",
        ),
    ]
    for body, message in cases:
        who = personality(tmp_path, f"pipeline:\n  - tool: {body}\n", plugin_host)
        started = time.monotonic()
        error = turn_error(run(plugin_host, who, "x"))
        assert error.message.split(" failed: ", 1)[1] == message
        assert time.monotonic() - started < 30  # the slow tool asks for 120s
    assert error.hint.startswith("raise timeout: on the step")

    wrong_args = personality(tmp_path, f"pipeline:\n  - tool: {cases[1][0]}\n", plugin_host)
    assert turn_error(run(plugin_host, wrong_args, "x")).hint == (
        "it takes add(a: number, b: number)"
    )
    configure(home, {"other": stdio_entry(server_folder)})  # the server went away after loading
    error = turn_error(run(plugin_host, wrong_args, "x"))
    assert error.message.endswith("failed: MCP server 'tools' is not configured")
    assert (
        error.hint
        == f"add it under mcpServers in {home / 'mcp.json'} (`lollms mcp list` shows the servers)"
    )
    (home / "mcp.json").write_text('{"mcpServers": {"tools": {"command": 3}}}', encoding="utf-8")
    error = turn_error(run(plugin_host, wrong_args, "x"))
    assert error.message == (
        f"step 'tool_1' (tool) failed: {home / 'mcp.json'}:1:38: mcpServers.tools.command: "
        "missing the command that starts the server"
    )
    assert error.hint.startswith('e.g. {"mcpServers": ')


def test_cancelling_stops_a_running_tool(home: Path, tmp_path: Path, server_folder: Path) -> None:
    configure(home, {"tools": stdio_entry(server_folder)})
    plugin_host = host()
    who = personality(
        tmp_path,
        "pipeline:\n  - tool: {server: tools, name: slow, arguments: {seconds: 60}}\n",
        plugin_host,
    )
    turn = Turn(who, "x")
    import threading

    threading.Timer(1.0, turn.cancel.set).start()
    started = time.monotonic()
    events = list(Engine(plugin_host, ScriptedTextBackend()).run_turn(turn))
    assert isinstance(events[-1], Done) and events[-1].status == "cancelled"
    assert time.monotonic() - started < 10


def test_a_server_that_cannot_start_is_a_step_error(home: Path, tmp_path: Path) -> None:
    configure(home, {"tools": {"command": str(tmp_path / "no-such-server")}})
    plugin_host = host()
    who = personality(tmp_path, "pipeline:\n  - tool: {server: tools, name: add}\n", plugin_host)
    error = turn_error(run(plugin_host, who, "x"))
    assert error.message == (
        f"step 'tool_1' (tool) failed: cannot connect to MCP server 'tools' (stdio: "
        f"{tmp_path / 'no-such-server'}): FileNotFoundError: [Errno 2] No such file or directory: "
        f"'{tmp_path / 'no-such-server'}'"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def http_server(server_folder: Path) -> Iterator[str]:
    """The test server over streamable HTTP on loopback, stopped after the test."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVER), str(server_folder), "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, "the HTTP test server exited"
            assert time.monotonic() < deadline, "the HTTP test server did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_pipeline_calls_tools_over_streamable_http(
    home: Path, tmp_path: Path, http_server: str
) -> None:
    configure(home, {"tools": {"type": "http", "url": http_server}})
    plugin_host = host()
    events = run(plugin_host, personality(tmp_path, CALCULATOR, plugin_host), "hey", "Fine.")
    events.pop()
    assert isinstance(events[-1], Done) and events[-1].status == "ok", events
    assert events[-1].text == "Fine. (5.0)"
    who = personality(
        tmp_path,
        "pipeline:\n  - tool: {server: tools, name: divide, arguments: {a: 1, b: 0}}\n",
        plugin_host,
    )
    assert turn_error(run(plugin_host, who, "x")).message.endswith(
        "failed: tool 'divide' on MCP server 'tools' failed: Error executing tool divide: cannot divide by zero"
    )


# -- installed -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This plugin installed through its entry point into a folder for PYTHONPATH."""
    target = tmp_path_factory.mktemp("mcp-site")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    command += ["--no-build-isolation", "--no-index", "--target", str(target), str(PLUGIN_ROOT)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return target


def lollms(
    site: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``lollms ARGS`` in a fresh interpreter with only this installed plugin loaded."""
    full = {**os.environ, **(env or {}), "LOLLMS_LOAD_PLUGINS": "mcp"}
    full["PYTHONPATH"] = f"{site}{os.pathsep}{REPO_ROOT}"
    return subprocess.run(
        [sys.executable, "-m", "lollms_runtime.cli", *args],
        env=full,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_installed_the_command_lists_servers_and_tools(
    home: Path, server_folder: Path, http_server: str, site: Path
) -> None:
    empty = lollms(site, "mcp", "list")
    assert (empty.returncode, empty.stdout) == (
        0,
        f"no MCP server is configured: add one under mcpServers in {home / 'mcp.json'}\n",
    )
    configure(
        home,
        {
            "calc": stdio_entry(server_folder),
            "web": {"url": http_server},
            "gone": {"url": "http://127.0.0.1:9/mcp", "timeout": 5},
        },
    )
    listed = lollms(site, "mcp", "list")
    assert listed.returncode == 1  # one server did not answer
    tools = [
        "  add(a: number, b: number)  Add two numbers.",
        "  divide(a: number, b: number)  Divide a by b.",
        "  read_file(name: string)  Read a text file of the server's folder.",
        "  slow(seconds: number)  Wait, then answer.",
    ]
    assert listed.stdout.splitlines() == [
        f"calc  (stdio: {sys.executable} {SERVER} {server_folder})",
        *tools,
        f"web  (http: {http_server})",
        *tools,
        "gone  (http: http://127.0.0.1:9/mcp)",
    ]
    assert "error: cannot connect to MCP server 'gone'" in listed.stderr
    kinds = json.loads(lollms(site, "plugins", "--json").stdout)
    assert "tool" in kinds["step_kinds"] and kinds["failures"] == []
    # `lollms plugins` shows the configured servers (describe_plugin: read, never contacted).
    (section,) = [s for s in kinds["sections"] if s["plugin"] == "mcp"]
    assert section["title"] == f"MCP servers in {home / 'mcp.json'}"
    assert section["lines"] == [
        f"calc  (stdio: {sys.executable} {SERVER} {server_folder})",
        f"web  (http: {http_server})",
        "gone  (http: http://127.0.0.1:9/mcp)",
    ]
    shown = lollms(site, "plugins").stdout
    assert f"\nMCP servers in {home / 'mcp.json'} (mcp):\n  calc  (stdio: " in shown


# -- the examples ----------------------------------------------------------------------------

DESK_HELPER = PLUGIN_ROOT / "examples" / "desk_helper"


def test_the_desk_helper_example_lets_the_model_choose_the_tool(
    home: Path, server_folder: Path
) -> None:
    configure(home, {"desk": stdio_entry(PLUGIN_ROOT / "examples")})
    plugin_host = host()
    who = load_personality(DESK_HELPER, plugin_host)
    engine_backend = ScriptedTextBackend('{"a": 2, "b": 3}', "Two plus three is five.")
    engine_backend.enqueue_choice("arithmetic")
    events = list(Engine(plugin_host, engine_backend).run_turn(Turn(who, "What is 2 plus 3?")))
    assert isinstance(events[-1], Done) and events[-1].text == "Two plus three is five.", events
    assert engine_backend.history[-1].messages[-1].content == (
        "The user asked: What is 2 plus 3?\nThe tool answered: 5.0\nAnswer the user."
    )
    engine_backend.enqueue("You should water the plants on Friday.").enqueue_choice("file")
    events = list(Engine(plugin_host, engine_backend).run_turn(Turn(who, "note.txt")))
    assert isinstance(events[-1], Done) and events[-1].status == "ok", events
    assert "The tool answered: Water the plants on Friday." in (
        engine_backend.history[-1].messages[-1].content
    )


def test_the_step_kinds_example_is_a_valid_pipeline(home: Path, tmp_path: Path) -> None:
    configure(home, {"calculator": {"command": "x"}})
    kind = plugin.tool_kind()
    assert personality(tmp_path, kind.example, host()).pipeline[0]["tool"]["name"] == "add"


@pytest.mark.model
def test_the_real_model_answers_with_the_tools_result(
    home: Path,
    tmp_path: Path,
    server_folder: Path,
    site: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    configure(home, {"tools": stdio_entry(server_folder)})
    file = tmp_path / "summer.yaml"
    file.write_text(
        "schema: 1\nid: summer\nname: Summer\nsampling: {max_tokens: 12, temperature: 0}\n"
        "pipeline:\n"
        "  - tool: {id: total, server: tools, name: add, arguments: {a: 2, b: 3}}\n"
        '  - generate: {id: answer, prompt: "What is 2 plus 3?", answer_prefix: "The sum is '
        '{{ total }}."}\n'
        '  - reply: {text: "{{ answer }}"}\n',
        encoding="utf-8",
    )
    models = os.environ.get("LOLLMS_MODELS_DIR") or str(tmp_path_factory.mktemp("models"))
    env = {"LOLLMS_MODELS_DIR": models, "HF_HUB_OFFLINE": "1"}
    done = lollms(site, "run", str(file), "go", "--no-save", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("The sum is 5.0.")  # the tool's result, then the real model
