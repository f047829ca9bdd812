"""The supervised actor of one MCP server: it runs the server's connection in its own task."""

from __future__ import annotations

from typing import Any

from conf.mcp import McpServerSettings
from conf.settings import BackoffSettings
from ops.backoff import Backoff
from tools import McpConnection

__all__ = ["McpServerActor"]


class McpServerActor:
    """One MCP server under the supervisor, started as a permanent child:

        supervisor.start_child(f"mcp:{name}", actor.run, restart="permanent")

    The session handling (connect, list, reconnect with backoff, timeouts) is the connection's,
    in `tools/`; the actor only gives it a supervised task. The toolbox reads the server's tools
    from `actor.connection`. Plain backoff settings are made into `Backoff(settings)`.
    """

    def __init__(
        self, name: str, settings: McpServerSettings, backoff: Backoff | BackoffSettings, **options: Any
    ) -> None:
        self.connection = McpConnection(name, settings, Backoff.of(backoff), **options)

    @property
    def name(self) -> str:
        """The server's name in the MCP servers file."""
        return self.connection.name

    async def run(self) -> None:
        """Keep the server connected until cancelled. A server that is down or dies is retried
        here, forever; this returns or raises only on a bug (or cancellation)."""
        await self.connection.run()
