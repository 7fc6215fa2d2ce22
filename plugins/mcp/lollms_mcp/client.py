"""Talking to MCP servers with the official SDK, from synchronous code.

One background thread runs an asyncio loop; each configured server gets one live session, opened on
first use and kept (a stdio server is started once, not once per call). Callers wait on it with a
time limit and a cancel event, so a step can be stopped at any moment.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ServerConfig


class McpError(RuntimeError):
    """A failure a person can act on (server, tool, arguments); ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class McpTimeout(McpError):
    """The server did not answer in time."""


class McpCancelled(Exception):
    """The caller's cancel event was set while waiting for the server."""


@dataclass(frozen=True)
class ToolInfo:
    name: str
    description: str
    input_schema: dict[str, Any]

    def signature(self) -> str:
        """``add(a: number, b: number, note?: string)``."""
        props = self.input_schema.get("properties") or {}
        required = set(self.input_schema.get("required") or ())
        params = [
            f"{key}{'' if key in required else '?'}: {spec.get('type', 'any') if isinstance(spec, dict) else 'any'}"
            for key, spec in props.items()
        ]
        return f"{self.name}({', '.join(params)})"


@dataclass(frozen=True)
class ToolResult:
    """A tool's answer: ``value`` for later steps (structured content, else the text), ``text``
    joined from its text blocks, and how many non-text blocks (images, audio) were left out."""

    value: Any
    text: str
    is_error: bool
    other_blocks: int = 0


def to_result(result: Any) -> ToolResult:
    """The SDK's ``CallToolResult`` as a :class:`ToolResult`."""
    blocks = list(result.content or ())
    texts = [str(b.text) for b in blocks if getattr(b, "type", "") == "text"]
    text = "\n".join(texts)
    structured = result.structured_content
    if isinstance(structured, dict) and set(structured) == {"result"}:
        value = structured["result"]  # MCPServer wraps a plain return value as {"result": ...}
    elif structured is not None:
        value = structured
    else:
        value = text
    return ToolResult(value, text, bool(result.is_error), len(blocks) - len(texts))


@dataclass
class _Held:
    key: str
    ready: asyncio.Future[Any]
    stop: asyncio.Event
    task: asyncio.Task[None] | None = None
    log: Path | None = None


@dataclass
class Connections:
    """Live sessions with MCP servers on one background event loop (see the module docstring)."""

    log_dir: Path | None = None  # where each stdio server's stderr goes (default $LOLLMS_HOME/logs)
    _loop: asyncio.AbstractEventLoop | None = None
    _held: dict[str, _Held] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what callers use ------------------------------------------------------------------
    def list_tools(
        self, server: ServerConfig, timeout: float, cancel: threading.Event | None = None
    ) -> list[ToolInfo]:
        async def listing() -> list[ToolInfo]:
            client = await self._session(server)
            tools: list[ToolInfo] = []
            cursor = None
            for _page in range(50):  # a server that pages forever must not hang the step
                page = await client.list_tools(cursor=cursor)
                tools.extend(
                    ToolInfo(t.name, t.description or "", dict(t.input_schema or {}))
                    for t in page.tools
                )
                cursor = page.next_cursor
                if not cursor:
                    break
            return tools

        tools: list[ToolInfo] = self._wait(
            listing(), timeout, cancel, f"MCP server '{server.name}'", server
        )
        return tools

    def call_tool(
        self,
        server: ServerConfig,
        name: str,
        arguments: dict[str, Any],
        timeout: float,
        cancel: threading.Event | None = None,
    ) -> ToolResult:
        async def calling() -> ToolResult:
            client = await self._session(server)
            return to_result(await client.call_tool(name, arguments))

        what = f"tool '{name}' on MCP server '{server.name}'"
        result: ToolResult = self._wait(calling(), timeout, cancel, what, server)
        return result

    def server_log(self, server: ServerConfig) -> Path:
        """Where a stdio server's stderr (its log) is written."""
        from lollms_runtime.home import home

        folder = self.log_dir or home() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"mcp-{server.name}.log"

    def close(self) -> None:
        """Stop every server and the loop (at exit, or when a test is done)."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return

        async def stop_all() -> None:
            for held in list(self._held.values()):
                held.stop.set()
            tasks = [h.task for h in self._held.values() if h.task is not None]
            self._held.clear()
            if tasks:
                await asyncio.wait(tasks, timeout=5)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop_all(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)

    # -- inside -----------------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="lollms-mcp", daemon=True).start()
                self._loop = loop
            return self._loop

    def _wait(
        self,
        coro: Coroutine[Any, Any, Any],
        timeout: float,
        cancel: threading.Event | None,
        what: str,
        server: ServerConfig,
    ) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())
        deadline = time.monotonic() + max(0.0, timeout)
        while not future.done():
            concurrent.futures.wait([future], timeout=0.05)
            if future.done():
                break
            if cancel is not None and cancel.is_set():
                future.cancel()
                raise McpCancelled()
            if time.monotonic() >= deadline:
                future.cancel()
                raise McpTimeout(
                    f"{what} did not answer within {timeout:g}s",
                    "raise timeout: on the step (or the server's timeout in mcp.json), "
                    "or check the server" + self._log_hint(server),
                )
        try:
            return future.result()
        except McpError:
            raise
        except Exception as exc:
            raise McpError(
                f"{what} failed: {_describe(exc)}", self._log_hint(server).strip("; ")
            ) from exc

    def _log_hint(self, server: ServerConfig) -> str:
        held = self._held.get(server.name)
        return f"; its log: {held.log}" if held is not None and held.log is not None else ""

    async def _session(self, server: ServerConfig) -> Any:
        """The live client of ``server``, connecting (again) when needed."""
        held = self._held.get(server.name)
        if held is None or held.key != server.key() or (held.task and held.task.done()):
            if held is not None:
                held.stop.set()
            held = _Held(server.key(), asyncio.get_running_loop().create_future(), asyncio.Event())
            # Callers that gave up never read a failed connection: read it here, so asyncio
            # does not log "exception was never retrieved".
            held.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._held[server.name] = held
            held.task = asyncio.create_task(self._hold(server, held))
        # shield: a caller that gives up must not cancel the connection others wait for
        return await asyncio.shield(held.ready)

    async def _hold(self, server: ServerConfig, held: _Held) -> None:
        """Open the connection, hand it out, keep it open until stopped (one task: anyio's
        scopes must be entered and left by the same task)."""
        from mcp import Client

        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await stack.enter_async_context(
                    Client(await self._transport(server, held, stack))
                )
                held.ready.set_result(client)
                await held.stop.wait()
        except BaseException as exc:
            if not held.ready.done():
                held.ready.set_exception(
                    McpError(
                        f"cannot connect to MCP server '{server.name}' ({server.describe()}): "
                        f"{_describe(exc)}",
                        "check it in mcp.json; `lollms mcp list` tries every server"
                        + self._log_hint(server),
                    )
                )
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            if self._held.get(server.name) is held and held.stop.is_set():
                del self._held[server.name]

    async def _transport(
        self, server: ServerConfig, held: _Held, stack: contextlib.AsyncExitStack
    ) -> Any:
        if server.transport == "http":
            from mcp.client.streamable_http import streamable_http_client

            if not server.headers:
                return server.url
            from mcp.shared._httpx_utils import create_mcp_http_client

            http = await stack.enter_async_context(create_mcp_http_client(dict(server.headers)))
            return streamable_http_client(server.url, http_client=http)
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        held.log = self.server_log(server)
        errlog = stack.enter_context(held.log.open("a", encoding="utf-8"))
        params = StdioServerParameters(
            command=server.command, args=list(server.args), env=dict(server.env), cwd=server.cwd
        )
        return stdio_client(params, errlog=errlog)


def _describe(exc: BaseException) -> str:
    """One line for an exception, looking inside anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, McpError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


CONNECTIONS = Connections()
atexit.register(CONNECTIONS.close)
