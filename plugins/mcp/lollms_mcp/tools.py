"""Calling one tool by server and tool name: the configured server, the tool's input schema,
arguments checked against it, a time limit and a cancel event. Plain arguments, no engine."""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Mapping
from typing import Any

from .client import CONNECTIONS, Connections, McpError, McpTimeout, ToolInfo, ToolResult
from .config import ServerConfig, config_path, load_servers


def configured_server(name: str, servers: Mapping[str, ServerConfig] | None = None) -> ServerConfig:
    """The server named ``name`` in the user's mcp.json, or an error that says how to add it."""
    servers = load_servers() if servers is None else servers
    if name in servers:
        return servers[name]
    close = difflib.get_close_matches(name, sorted(servers), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise McpError(
        f"MCP server '{name}' is not configured",
        hint + f"add it under mcpServers in {config_path()} (`lollms mcp list` shows the servers)",
    )


def find_tool(server: ServerConfig, tools: list[ToolInfo], name: str) -> ToolInfo:
    for tool in tools:
        if tool.name == name:
            return tool
    names = sorted(t.name for t in tools)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise McpError(
        f"MCP server '{server.name}' has no tool '{name}'",
        hint + f"its tools: {', '.join(names) or 'none'}",
    )


_SCALARS = {"integer": int, "number": float}


def coerce_arguments(arguments: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Templates render to text: give a top-level argument the number or boolean type its schema
    asks for when the text is exactly one ("3" -> 3, "true" -> True); anything else is kept."""
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    out = dict(arguments)
    for key, value in arguments.items():
        spec = props.get(key) if isinstance(props, dict) else None
        wanted = spec.get("type") if isinstance(spec, dict) else None
        if not isinstance(value, str) or not isinstance(wanted, str):
            continue
        text = value.strip()
        if wanted == "boolean" and text.lower() in ("true", "false"):
            out[key] = text.lower() == "true"
        elif wanted in _SCALARS:
            try:
                number = float(text)
            except ValueError:
                continue
            if wanted == "number":
                out[key] = number
            elif number.is_integer():
                out[key] = int(number)
    return out


def check_arguments(tool: ToolInfo, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``arguments`` coerced and validated against the tool's input schema."""
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import SchemaError, best_match

    values = coerce_arguments(arguments, tool.input_schema)
    cls = validators.validator_for(tool.input_schema, default=Draft202012Validator)
    try:
        cls.check_schema(tool.input_schema)
    except SchemaError:
        return values  # the server's schema is broken: let the server judge the arguments
    error = best_match(cls(tool.input_schema).iter_errors(values))
    if error is None:
        return values
    where = ".".join(str(p) for p in error.absolute_path)
    what = f"argument '{where}'" if where else "the arguments"
    raise McpError(f"{what} of tool '{tool.name}': {error.message}", f"it takes {tool.signature()}")


def call(
    server_name: str,
    tool_name: str,
    arguments: Mapping[str, Any],
    *,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    connections: Connections = CONNECTIONS,
) -> ToolResult:
    """Call ``tool_name`` of the configured server ``server_name``; a result the server marks as
    an error raises :class:`McpError` with its text. ``timeout`` (default: the server's) covers
    connecting, listing the tools and the call."""
    server = configured_server(server_name)
    limit = server.timeout if timeout is None else min(timeout, server.timeout)
    deadline = time.monotonic() + limit

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    try:
        tool = find_tool(server, connections.list_tools(server, left(), cancel), tool_name)
        values = check_arguments(tool, arguments)
        result = connections.call_tool(server, tool.name, values, left(), cancel)
    except McpTimeout as exc:  # said with the whole limit, not what was left of it
        raise McpTimeout(
            f"tool '{tool_name}' on MCP server '{server.name}' did not answer within {round(limit, 1):g}s",
            exc.hint,
        ) from None
    if result.is_error:
        raise McpError(
            f"tool '{tool.name}' on MCP server '{server.name}' failed: "
            f"{result.text.strip() or 'no message'}",
            f"its log: {connections.server_log(server)}" if server.transport == "stdio" else "",
        )
    return result
