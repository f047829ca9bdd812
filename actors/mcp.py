"""The supervised actor of one MCP server: it runs the server's connection in its own task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conf.mcp import McpServerSettings
from conf.settings import BackoffSettings
from llm.base import ToolResult
from tools import McpConnection, McpTool

__all__ = ["McpServerActor"]


class McpServerActor:
    """One MCP server under the supervisor, started as a permanent child:

        supervisor.start_child(f"mcp:{name}", actor.run, restart="permanent")

    The session handling (connect, list, reconnect with backoff, timeouts) is the connection's,
    in `tools/`; the actor only gives it a supervised task. It serves as the toolbox's source for
    this server (`tools()`, `call_tool()`), so `McpToolbox({name: actor})` works as well as
    passing `actor.connection`.
    """

    def __init__(self, name: str, settings: McpServerSettings, backoff: BackoffSettings, **options: Any) -> None:
        self.connection = McpConnection(name, settings, backoff, **options)

    @property
    def name(self) -> str:
        """The server's name in the MCP servers file."""
        return self.connection.name

    async def run(self) -> None:
        """Keep the server connected until cancelled. A server that is down or dies is retried
        here, forever; this returns or raises only on a bug (or cancellation)."""
        await self.connection.run()

    def tools(self) -> Sequence[McpTool]:
        """The server's tools now; empty while it is down."""
        return self.connection.tools()

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Call one of the server's tools; failures are `is_error` results."""
        return await self.connection.call_tool(name, arguments)
