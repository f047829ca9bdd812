"""Wrappers that report model and tool calls as metrics, so `llm/` and `tools/` stay unaware of them."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from llm import ChatModel, ModelReply, ModelRequest, Toolbox, ToolResult, ToolSpec

__all__ = ["MeteredChatModel", "MeteredToolbox"]


class CallMetrics(Protocol):
    """What the wrappers report to (ops.metrics.Metrics implements it)."""

    def model_call(self, latency_ms: float, *, ok: bool, provider: str) -> None: ...

    def tool_call(self, latency_ms: float, *, ok: bool, server: str, tool: str) -> None: ...


class MeteredChatModel:
    """A ChatModel that reports each request's latency and outcome (after the retries inside it)."""

    def __init__(self, model: ChatModel, metrics: CallMetrics, provider: str) -> None:
        self._model = model
        self._metrics = metrics
        self._provider = provider

    async def complete(self, request: ModelRequest) -> ModelReply:
        """Ask the wrapped model, timing it; an LLMError counts as a failed call."""
        started = time.perf_counter()
        ok = False
        try:
            reply = await self._model.complete(request)
            ok = True
            return reply
        finally:
            self._metrics.model_call((time.perf_counter() - started) * 1000, ok=ok, provider=self._provider)

    async def aclose(self) -> None:
        """Close the wrapped model."""
        await self._model.aclose()


class MeteredToolbox:
    """A Toolbox that reports each call's latency and whether it was an error result."""

    def __init__(self, toolbox: Toolbox, metrics: CallMetrics) -> None:
        self._toolbox = toolbox
        self._metrics = metrics

    def specs(self) -> Sequence[ToolSpec]:
        """The wrapped toolbox's tools."""
        return self._toolbox.specs()

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Call the tool, timing it; `server__tool` names are split for the metric's dimensions."""
        started = time.perf_counter()
        result = await self._toolbox.call(name, arguments)
        server, _, tool = name.partition("__")
        self._metrics.tool_call(
            (time.perf_counter() - started) * 1000, ok=not result.is_error, server=server, tool=tool or name
        )
        return result
