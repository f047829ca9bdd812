"""Toolboxes that need no servers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llm.base import ToolResult, ToolSpec

__all__ = ["EmptyToolbox"]


class EmptyToolbox:
    """A toolbox without tools: the model answers from its own knowledge."""

    def specs(self) -> Sequence[ToolSpec]:
        """No tools."""
        return ()

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Every call is an error result: there is no such tool."""
        return ToolResult(content=f"There is no tool named {name!r}.", is_error=True)
