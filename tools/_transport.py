"""Building the SDK transport for one server, with a signal when the server's stream ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, TextIO

import anyio
import structlog
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conf.mcp import McpServerSettings

__all__ = ["open_transport"]

log = structlog.get_logger(__name__)

_PYTHON_COMMANDS = frozenset({"python", "python3"})
_MAX_STDERR_LINE = 2000
"""Characters of one stderr line kept in the log (a server dumping a blob must not flood it)."""
_ERROR_WORDS = ("error", "exception", "traceback", "critical", "fatal")
_WARNING_WORDS = ("warn",)


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
    settings: McpServerSettings,
    on_eof: Callable[[], None],
    *,
    errlog: TextIO | None = None,
    name: str = "",
) -> AsyncIterator[tuple[Any, Any]]:
    """Open the server's transport (must be entered and exited in one task, as the SDK requires).

    A stdio server's stderr is logged line by line as `mcp_server_stderr` JSON lines (with the
    server's `name`, through the redacting pipeline), unless `errlog` takes it instead.
    """
    async with AsyncExitStack() as stack:
        transport: AbstractAsyncContextManager[tuple[Any, Any]]
        if settings.command:
            if errlog is None:
                errlog = await stack.enter_async_context(_stderr_to_log(name or settings.command))
            transport = stdio_client(stdio_parameters(settings), errlog=errlog)
        elif settings.transport == "sse":
            transport = sse_client(settings.url, headers=dict(settings.headers) or None)
        else:
            http = await stack.enter_async_context(create_mcp_http_client(headers=dict(settings.headers) or None))
            transport = streamable_http_client(settings.url, http_client=http)
        read, write = await stack.enter_async_context(transport)
        yield _EofSignallingStream(read, on_eof), write


@asynccontextmanager
async def _stderr_to_log(server: str) -> AsyncIterator[TextIO]:
    """A pipe for a child's stderr whose lines become log lines, read until the block ends."""
    read_fd, write_fd = os.pipe()
    writer = os.fdopen(write_fd, "w")
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    pipe = os.fdopen(read_fd, "rb")
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    task = asyncio.create_task(_log_lines(reader, server), name=f"mcp-stderr-{server}")
    try:
        yield writer
    finally:
        # The child holds its own copy of the write end; ours closes so EOF comes when it exits.
        writer.close()
        # The transport has stopped the child by now: its last lines arrive before EOF.
        await asyncio.wait({task}, timeout=1.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        transport.close()


async def _log_lines(reader: asyncio.StreamReader, server: str) -> None:
    pending = b""
    while chunk := await reader.read(65536):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()[-_MAX_STDERR_LINE * 4 :]
        for line in lines:
            _log_line(server, line)
    if pending:
        _log_line(server, pending)


def _log_line(server: str, raw: bytes) -> None:
    line = raw.decode("utf-8", "replace").rstrip()
    if not line:
        return
    lowered = line.lower()
    if any(word in lowered for word in _ERROR_WORDS):
        level = "error"
    elif any(word in lowered for word in _WARNING_WORDS):
        level = "warning"
    else:
        level = "info"
    # The server's own level word, when it wrote one, decides the line's level; the text goes
    # through the redacting log pipeline like every other line.
    getattr(log, level)("mcp_server_stderr", server=server, line=line[:_MAX_STDERR_LINE])
