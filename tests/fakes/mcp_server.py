"""A real MCP server for tests and benchmarks, built with the SDK's `MCPServer`.

Run it as a program:

    python tests/fakes/mcp_server.py --transport stdio
    python tests/fakes/mcp_server.py --transport streamable-http --port 0   # prints "PORT <n>" when listening
    python tests/fakes/mcp_server.py --transport sse --port 8123

Tools: `echo`, `add`, `slow` (sleeps), `fail` (an `is_error` result), `image` (a small PNG), `report`
(text and an embedded resource), `pid`, `crash` (the process exits at once, mid-call),
`grow` (registers a new tool and announces tools/list_changed). `--page-size N` splits tools/list
into pages of N tools, to exercise cursor pagination; `--name` sets the server's name; `--announce`
(HTTP only) prints `CALL slow` when a `slow` call starts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import sys
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

__all__ = ["PNG_BYTES", "build_server", "main"]

# A 1x1 transparent PNG: the smallest image a provider accepts.
PNG_BYTES = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class _PagedServer(MCPServer):
    """MCPServer whose tools/list answers in pages of `page_size` tools, cursor = offset."""

    def __init__(self, *args: Any, page_size: int = 0, **kwargs: Any) -> None:
        self._page_size = page_size
        super().__init__(*args, **kwargs)

    async def _handle_list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        tools = await self.list_tools()
        if self._page_size <= 0:
            return types.ListToolsResult(tools=tools)
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + self._page_size
        return types.ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)


def build_server(name: str = "fake", page_size: int = 0, announce: bool = False) -> MCPServer:
    """The fake server with all its tools registered. `announce` prints "CALL slow" to stdout when
    `slow` starts (HTTP transports only: over stdio, stdout is the protocol), so a test can wait
    for a call to be in flight instead of sleeping."""
    server = _PagedServer(name, page_size=page_size, log_level="WARNING")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep for `seconds`, then answer."""
        if announce:
            print("CALL slow", flush=True)
        await asyncio.sleep(seconds)
        return f"slept {seconds}"

    @server.tool()
    def fail(message: str = "it failed") -> str:
        """Always fail with `message` (an is_error result)."""
        raise ToolError(message)

    @server.tool()
    def image() -> Image:
        """Return a 1x1 PNG."""
        return Image(data=PNG_BYTES, format="png")

    @server.tool()
    def report() -> list[types.TextContent | types.EmbeddedResource]:
        """Return text and an embedded text resource."""
        return [
            types.TextContent(text="report follows"),
            types.EmbeddedResource(
                resource=types.TextResourceContents(uri="memo://1", mime_type="text/plain", text="the memo body")
            ),
        ]

    @server.tool()
    def pid() -> int:
        """This server process's id."""
        return os.getpid()

    @server.tool()
    def crash() -> str:
        """Kill this server process at once, without answering."""
        sys.stdout.flush()
        os._exit(3)

    @server.tool()
    async def grow(name: str, ctx: Context) -> str:
        """Register a new tool `name` (it echoes) and announce tools/list_changed."""

        def grown(text: str) -> str:
            return f"{name}: {text}"

        server.add_tool(grown, name=name, description=f"A tool added at run time ({name}).")
        # 2026-07-28 sessions hear of it through subscriptions/listen, older ones by notification.
        await ctx.notify_tools_changed()
        session = getattr(ctx.request_context, "session", None)
        if session is not None and hasattr(session, "send_tool_list_changed"):
            await session.send_tool_list_changed()
        return f"added {name}"

    return server


def _listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A restarted server must be able to take the port its predecessor just died on.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


async def _serve_http(server: MCPServer, transport: str, port: int) -> None:
    app = server.sse_app() if transport == "sse" else server.streamable_http_app()
    sock = _listening_socket(port)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    uvicorn_server = uvicorn.Server(config)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    await uvicorn_server.serve(sockets=[sock])


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transport", choices=["stdio", "streamable-http", "sse"], default="stdio")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="fake")
    parser.add_argument("--page-size", type=int, default=0)
    parser.add_argument("--announce", action="store_true", help="print CALL lines on stdout (HTTP only)")
    args = parser.parse_args(argv)
    if args.announce and args.transport == "stdio":
        parser.error("--announce needs an HTTP transport: stdout carries the stdio protocol")
    server = build_server(args.name, args.page_size, args.announce)
    if line := os.environ.get("FAKE_MCP_STDERR_LINE"):
        # What third-party servers do: talk on stderr, secrets from their environment included.
        print(line.format(**os.environ), file=sys.stderr, flush=True)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        asyncio.run(_serve_http(server, args.transport, args.port))


if __name__ == "__main__":
    main()
