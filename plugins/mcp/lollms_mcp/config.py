"""The user's MCP servers: ``$LOLLMS_HOME/mcp.json`` in the ``mcpServers`` shape other MCP clients
use. Personalities only name a server; what runs (a command, a URL) is decided here, by the user."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lollms_runtime.errors import LollmsError, Problem

CONFIG_FILE = "mcp.json"
DEFAULT_TIMEOUT = 60.0
HTTP_TYPES = ("http", "streamable-http", "streamableHttp", "streamable_http")
EXAMPLE = '{"mcpServers": {"files": {"command": "uvx", "args": ["mcp-server-filesystem", "."]}}}'


class McpConfigError(LollmsError):
    """``mcp.json`` cannot be used: the message names file:line:col and what to change."""


@dataclass(frozen=True)
class ServerConfig:
    """One configured server: a command started over stdio, or a streamable HTTP URL."""

    name: str
    transport: Literal["stdio", "http"]
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT

    def describe(self) -> str:
        if self.transport == "http":
            return f"http: {self.url}"
        return "stdio: " + " ".join([self.command, *self.args])

    def key(self) -> str:
        """Identity of the connection: a server whose settings changed gets a new one."""
        return json.dumps(
            [
                self.transport,
                self.command,
                self.args,
                dict(self.env),
                self.cwd,
                self.url,
                dict(self.headers),
            ],
            sort_keys=True,
        )


def config_path() -> Path:
    """``$LOLLMS_HOME/mcp.json`` (reading it never creates the home folder)."""
    from lollms_runtime.home import home_path

    return home_path() / CONFIG_FILE


def load_servers(path: Path | None = None) -> dict[str, ServerConfig]:
    """The servers of ``path`` (default :func:`config_path`); none when the file does not exist."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise McpConfigError(f"{path}: cannot read: {exc}") from None
    try:
        json.loads(text)  # JSON, not just YAML: other MCP clients must read the same file
    except json.JSONDecodeError as exc:
        raise McpConfigError(
            str(Problem(str(path), exc.lineno, exc.colno, "", f"not valid JSON: {exc.msg}"))
        ) from None
    from lollms_runtime.errors import PersonalityError
    from lollms_runtime.yamldoc import parse_yaml

    try:
        doc = parse_yaml(text, str(path))  # JSON is YAML: this keeps where each value is
    except PersonalityError as exc:
        raise McpConfigError(str(exc)) from None
    data = doc.data
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError(
            str(doc.problem((), "expected an object with the key mcpServers", f"e.g. {EXAMPLE}"))
        )
    found: dict[str, ServerConfig] = {}
    for name, entry in servers.items():
        where: tuple[str | int, ...] = ("mcpServers", str(name))
        if not isinstance(entry, dict):
            raise McpConfigError(str(doc.problem(where, "expected an object", f"e.g. {EXAMPLE}")))
        if entry.get("disabled") is True:
            continue
        try:
            found[str(name)] = _server(str(name), entry, path.parent)
        except ValueError as exc:
            key, message, hint = exc.args
            raise McpConfigError(str(doc.problem((*where, key), message, hint))) from None
    return found


def _server(name: str, entry: Mapping[str, Any], folder: Path) -> ServerConfig:
    """One entry; raises ``ValueError(key, message, hint)``. Keys other clients add are ignored."""
    timeout = entry.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError("timeout", "expected a number of seconds above 0", "e.g. 30")
    kind = entry.get("type", "http" if "url" in entry else "stdio")
    if kind in HTTP_TYPES:
        url = entry.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(
                "url", "expected an http:// or https:// URL", "e.g. http://127.0.0.1:8000/mcp"
            )
        return ServerConfig(
            name, "http", url=url, headers=_strings(entry, "headers"), timeout=float(timeout)
        )
    if kind != "stdio":
        raise ValueError(
            "type",
            f"transport {kind!r} is not supported",
            "use stdio (a command) or http (streamable HTTP; the older sse transport is not)",
        )
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip():
        raise ValueError("command", "missing the command that starts the server", f"e.g. {EXAMPLE}")
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str | int | float) for a in args):
        raise ValueError("args", "expected a list of strings", '"args": ["server.py"]')
    cwd = entry.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise ValueError("cwd", "expected a folder", '"cwd": "~/projects"')
    return ServerConfig(
        name,
        "stdio",
        command=os.path.expanduser(command),
        args=tuple(str(a) for a in args),
        env=_strings(entry, "env"),
        cwd=str(folder / os.path.expanduser(cwd)) if cwd else None,
        timeout=float(timeout),
    )


def _strings(entry: Mapping[str, Any], key: str) -> dict[str, str]:
    value = entry.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(key, "expected an object of strings", f'"{key}": {{"NAME": "value"}}')
    return {str(k): v for k, v in value.items()}
