"""The toolbox the turn loop calls: every connected server's tools under unique, valid names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import structlog

from llm.base import ToolResult, ToolSpec
from tools._names import assign_names
from tools.connection import McpTool

__all__ = ["McpToolbox", "ToolSource"]

log = structlog.get_logger(__name__)


class ToolSource(Protocol):
    """What the toolbox needs of a server: its tools now, and a way to call one.

    `McpConnection` is one; so is anything in a test that answers the same way.
    """

    def tools(self) -> Sequence[McpTool]:
        """The tools available now (none while the server is down)."""
        ...

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Call a tool by its name on the server; failures come back as `is_error` results."""
        ...


class McpToolbox:
    """`llm.base.Toolbox` over named tool sources.

    The model sees `<server>__<tool>` (sanitised to `^[a-zA-Z0-9_-]{1,64}$`, made unique with a
    hash suffix where two names come out the same); `call` maps the name back and routes the call.
    Names are recomputed from the sources' current tools each time, so a server that comes
    back or changes its tools is seen at the next turn.
    """

    def __init__(self, sources: Mapping[str, ToolSource]) -> None:
        self._sources = dict(sources)

    def _names(self) -> tuple[dict[str, tuple[str, str]], dict[tuple[str, str], McpTool]]:
        tools: dict[tuple[str, str], McpTool] = {}
        for server, source in self._sources.items():
            for tool in source.tools():
                tools[(server, tool.name)] = tool
        return assign_names(tools), tools

    def specs(self) -> Sequence[ToolSpec]:
        """The tools available now, sorted by name (a server that is down contributes none)."""
        names, tools = self._names()
        return [
            ToolSpec(name=name, description=tools[pair].description, parameters=tools[pair].input_schema)
            for name, pair in sorted(names.items())
        ]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Call the tool the model named; an unknown name or a failure is an `is_error` result."""
        names, _ = self._names()
        pair = names.get(name)
        if pair is None:
            log.info("mcp_unknown_tool", tool=name)
            return ToolResult(f"There is no tool named {name!r} (it may be unavailable right now).", is_error=True)
        server, tool = pair
        return await self._sources[server].call_tool(tool, arguments)
