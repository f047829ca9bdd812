"""Building the SDK transport for one server, with a signal when the server's stream ends."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, TextIO

import anyio
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conf.mcp import McpServerSettings

__all__ = ["open_transport"]

_PYTHON_COMMANDS = frozenset({"python", "python3"})


class _EofSignallingStream:
    """A read stream that calls `on_eof` when the server's side ends (process exit, closed stream).

    The SDK's dispatcher fails pending requests on EOF but keeps the session object around;
    this is how the connection learns at once that a stdio server died, not at the next call.
    """

    __slots__ = ("_inner", "_on_eof")

    def __init__(self, inner: Any, on_eof: Callable[[], None]) -> None:
        self._inner = inner
        self._on_eof = on_eof

    @property
    def last_context(self) -> Any:
        # The dispatcher reads the sender's contextvars snapshot through this attribute.
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_eof()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _EofSignallingStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _EofSignallingStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def stdio_parameters(settings: McpServerSettings) -> StdioServerParameters:
    """The subprocess to start. `python` means this interpreter, so servers installed beside the
    assistant (like mcp-server-time) are found whatever `python` is on PATH."""
    command = sys.executable if settings.command in _PYTHON_COMMANDS else settings.command
    return StdioServerParameters(
        command=command,
        args=list(settings.args),
        env=dict(settings.env) or None,
        cwd=settings.cwd or None,
    )


@asynccontextmanager
async def open_transport(
    settings: McpServerSettings, on_eof: Callable[[], None], *, errlog: TextIO | None = None
) -> AsyncIterator[tuple[Any, Any]]:
    """Open the server's transport (must be entered and exited in one task, as the SDK requires)."""
    async with AsyncExitStack() as stack:
        transport: AbstractAsyncContextManager[tuple[Any, Any]]
        if settings.command:
            transport = stdio_client(stdio_parameters(settings), errlog=errlog or sys.stderr)
        elif settings.transport == "sse":
            transport = sse_client(settings.url, headers=dict(settings.headers) or None)
        else:
            http = await stack.enter_async_context(create_mcp_http_client(headers=dict(settings.headers) or None))
            transport = streamable_http_client(settings.url, http_client=http)
        read, write = await stack.enter_async_context(transport)
        yield _EofSignallingStream(read, on_eof), write
