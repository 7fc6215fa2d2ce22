"""The lollms-runtime plugin: the ``tool`` step kind and the ``lollms mcp list`` command.

Importing it stays cheap (no MCP SDK): listing personalities loads every plugin.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Generator, Mapping
from typing import Any

from lollms_runtime.contracts import StepKind, StepProblem
from lollms_runtime.plugins import hookimpl

from .config import McpConfigError, config_path, load_servers

NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_.\-/:]{1,128}$"}


def run_tool(ctx: Any, body: Mapping[str, Any]) -> Generator[Any, None, Any]:
    """The ``tool`` runner: renders the arguments, the rest is :func:`lollms_mcp.tools.call`."""
    from lollms_runtime.context import Cancelled, StepError

    from .client import McpCancelled, McpError
    from .tools import call

    arguments = _render(ctx, body.get("arguments") or {})
    left = ctx.time_left()  # the step's own time limit (timeout:)
    try:
        result = call(
            body["server"],
            body["name"],
            arguments,
            timeout=left,
            cancel=ctx.turn.cancel,
        )
    except McpCancelled:
        raise Cancelled() from None
    except McpError as exc:
        raise StepError(str(exc), exc.hint) from None
    except McpConfigError as exc:  # the file was broken after the personality loaded
        message, _, hint = str(exc).partition("\n    hint: ")
        raise StepError(message, hint or "fix the file; `lollms mcp list` reads it") from None
    ctx.detail = f"{body['server']}.{body['name']}" + (
        f" ({result.other_blocks} non-text block(s) left out)" if result.other_blocks else ""
    )
    return result.value
    yield  # a runner is a generator


def _render(ctx: Any, value: Any) -> Any:
    """Templates inside the arguments, at any depth; ``"{{ x }}"`` alone keeps x's type."""
    if isinstance(value, str):
        return ctx.value(value)
    if isinstance(value, Mapping):
        return {str(k): _render(ctx, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(ctx, v) for v in value]
    return value


def check_tool(body: Mapping[str, Any]) -> list[StepProblem]:
    """The load-time check (``StepKind.check``): the step names a server the user configured.

    Read at every load, so a server added to mcp.json counts at once (no restart, no cache).
    """
    import difflib

    server = body.get("server")
    if not isinstance(server, str):
        return []  # the schema said so already
    path = config_path()
    try:
        names = sorted(load_servers(path))
    except McpConfigError as exc:
        first = str(exc).splitlines()[0]
        return [
            StepProblem(
                f"the MCP servers cannot be read: {first}",
                "fix the file; `lollms mcp list` reads it",
                ("server",),
            )
        ]
    if server in names:
        return []
    if not names:
        hint = f"no MCP server is configured: add it under mcpServers in {path}"
    else:
        close = difflib.get_close_matches(server, names, n=1)
        hint = (f"did you mean '{close[0]}'? " if close else "") + (
            f"configured in {path}: {', '.join(names)}"
        )
    return [StepProblem(f"MCP server '{server}' is not configured", hint, ("server",))]


def tool_kind() -> StepKind:
    return StepKind(
        name="tool",
        run=run_tool,
        check=check_tool,
        summary="Call a tool of an MCP server the user configured; its result is the step's "
        "output (lollms-mcp plugin).",
        schema={
            "type": "object",
            "additionalProperties": False,
            "required": ["server", "name"],
            "properties": {
                "server": {
                    **NAME,
                    "description": "An MCP server configured in mcp.json (`lollms mcp list`).",
                },
                "name": {**NAME, "description": "The tool's name (`lollms mcp list` shows them)."},
                "arguments": {
                    "type": "object",
                    "description": "The tool's arguments; strings are templates, checked against "
                    "the tool's input schema.",
                },
            },
        },
        example="""\
pipeline:
  - tool:
      id: total
      server: calculator
      name: add
      arguments: {a: "{{ message | length }}", b: 2}
      timeout: 20
  - reply: {text: "The total is {{ total }}."}
""",
    )


@hookimpl
def register_step_kinds(register: Any) -> None:
    register(tool_kind())


@hookimpl(optionalhook=True)  # the hook is newer than some lollms-runtime releases
def describe_plugin(report: Any) -> None:
    """``lollms plugins`` shows the configured servers (read from mcp.json, never contacted)."""
    path = config_path()
    try:
        servers = load_servers(path)
    except McpConfigError as exc:
        report(f"MCP servers in {path}", [f"cannot be read: {str(exc).splitlines()[0]}"])
        return
    lines = [f"{s.name}  ({s.describe()})" for s in servers.values()]
    report(
        f"MCP servers in {path}",
        lines or ["none configured: add one under mcpServers; `lollms mcp list` shows their tools"],
    )


@hookimpl
def register_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "mcp",
        parents=[common],  # the options every command shares
        help="MCP servers for the tool step (lollms-mcp)",
        description=f"MCP servers for the tool step, configured in {config_path()}.",
    )
    sub = parser.add_subparsers(dest="mcp_command", metavar="COMMAND")
    listing = sub.add_parser("list", help="configured servers and their tools")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for each server (default 30)"
    )
    listing.set_defaults(handler=cmd_list)
    parser.set_defaults(handler=lambda args: parser.print_help() or 0)


def cmd_list(args: argparse.Namespace) -> int:
    """``lollms mcp list``: each server, how it runs, and its tools (or why it cannot answer)."""
    from .client import CONNECTIONS, McpError

    path = config_path()
    servers = load_servers(path)
    report: list[dict[str, Any]] = []
    for server in servers.values():
        entry: dict[str, Any] = {"name": server.name, "transport": server.describe()}
        try:
            tools = CONNECTIONS.list_tools(server, min(args.timeout, server.timeout))
            entry["tools"] = [
                {"name": t.name, "signature": t.signature(), "description": t.description}
                for t in tools
            ]
        except McpError as exc:
            entry["error"] = str(exc)
        report.append(entry)
    failed = any("error" in e for e in report)
    if args.json:
        print(json.dumps({"config": str(path), "servers": report}, indent=2))
        return 1 if failed else 0
    if not report:
        print(f"no MCP server is configured: add one under mcpServers in {path}")
        return 0
    for entry in report:
        print(f"{entry['name']}  ({entry['transport']})")
        for tool in entry.get("tools", ()):
            summary = tool["description"].strip().splitlines()
            print(f"  {tool['signature']}" + (f"  {summary[0]}" if summary else ""))
        if "error" in entry:
            print(f"  error: {entry['error']}", file=sys.stderr)
    return 1 if failed else 0
