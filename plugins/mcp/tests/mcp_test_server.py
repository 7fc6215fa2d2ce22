"""A small MCP server for the tests, written with the SDK's MCPServer (formerly FastMCP):
a calculator, a file reader confined to one folder, a slow tool and a failing one.

    python mcp_test_server.py FOLDER              (stdio)
    python mcp_test_server.py FOLDER --http PORT  (streamable HTTP on 127.0.0.1:PORT/mcp)
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

FOLDER = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path.cwd()
server = MCPServer("lollms-test-tools")


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def divide(a: float, b: float) -> float:
    """Divide a by b."""
    if b == 0:
        raise ToolError("cannot divide by zero")
    return a / b


@server.tool()
def read_file(name: str) -> str:
    """Read a text file of the server's folder."""
    path = (FOLDER / name).resolve()
    if not path.is_relative_to(FOLDER) or not path.is_file():
        raise ToolError(f"no file named {name!r}")
    return path.read_text(encoding="utf-8")


@server.tool()
async def slow(seconds: float) -> str:
    """Wait, then answer."""
    await anyio.sleep(seconds)
    return "done"


if __name__ == "__main__":
    if "--http" in sys.argv:
        port = int(sys.argv[sys.argv.index("--http") + 1])
        server.run("streamable-http", host="127.0.0.1", port=port)
    else:
        server.run()
