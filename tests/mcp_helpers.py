"""Helpers shared by the MCP tests: the fake server's settings, running a connection, HTTP servers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from conf.mcp import McpServerSettings, McpToolFilter
from conf.settings import BackoffSettings
from ops.backoff import Backoff
from tools import McpConnection

FAKE = str(Path(__file__).resolve().parent / "fakes" / "mcp_server.py")
FAST = Backoff(BackoffSettings(initial_seconds=0.05, max_seconds=0.3, multiplier=2, jitter_seconds=0.05))
FAKE_TOOLS = ["add", "crash", "echo", "fail", "grow", "image", "pid", "report", "slow"]


def stdio_settings(*extra: str, timeout: float = 5, tools: McpToolFilter | None = None) -> McpServerSettings:
    return McpServerSettings(
        command=sys.executable, args=(FAKE, *extra), timeout=timeout, tools=tools or McpToolFilter()
    )


@asynccontextmanager
async def running(connection: McpConnection, *, wait: bool = True) -> AsyncIterator[McpConnection]:
    """Run the connection in its own task (as the actor does) and stop it afterwards."""
    task = asyncio.create_task(connection.run(), name=f"test:{connection.name}")
    try:
        if wait:
            await until(connection, lambda c: c.connected)
        yield connection
    finally:
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, f"{connection.name}: run() ignored its cancellation"
    assert task.cancelled(), "run() must only end by cancellation"


async def until(connection: McpConnection, predicate: Callable[[McpConnection], bool], timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        await connection.wait_until(predicate)


@contextmanager
def http_server(port: int = 0, transport: str = "streamable-http") -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The fake server as its own process, listening on 127.0.0.1 (port 0: any free port).

    It announces `slow` calls on its stdout ("CALL slow"): read them with `process.stdout.readline()`.
    """
    process = subprocess.Popen(
        [sys.executable, FAKE, "--transport", transport, "--port", str(port), "--announce"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "PORT <n>" once it listens
        assert line.startswith("PORT "), line
        yield process, int(line.split()[1])
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
