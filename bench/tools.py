"""Tool-call round trips against tests/fakes/mcp_server.py over stdio and streamable HTTP.

For each transport: the SDK's own `mcp.Client.call_tool` (the floor), then our path
(`McpToolbox.call` -> `McpConnection.call_tool` -> SDK -> result conversion), on the `echo` tool;
then a `slow` tool that sleeps a known time, to show what a call costs beyond the server's own work.

    .venv/bin/python bench/tools.py            # 300 echo calls per row
    .venv/bin/python bench/tools.py --quick    # 30
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402 - after the path set-up, so the project's packages import
from mcp import Client, StdioServerParameters  # noqa: E402

from conf.mcp import McpServerSettings  # noqa: E402
from ops.backoff import Backoff  # noqa: E402
from tools import McpConnection, McpToolbox  # noqa: E402

FAKE = str(ROOT / "tests" / "fakes" / "mcp_server.py")
SLOW_SECONDS = 0.05


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    for _ in range(min(5, n)):  # warm-up: connections, caches, first-call imports
        await call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


@contextmanager
def http_server() -> Iterator[int]:
    process = subprocess.Popen(
        [sys.executable, FAKE, "--transport", "streamable-http"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline().split()[1])
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


async def raw(target: str | StdioServerParameters, n: int, mode: str = "auto") -> list[float]:
    async with Client(target, mode=mode, cache=None) as client:
        return await measure(lambda: client.call_tool("echo", {"text": "ping"}), n)


async def ours(settings: McpServerSettings, n: int, slow: int) -> tuple[list[float], list[float]]:
    connection = McpConnection("bench", settings, Backoff())
    task = asyncio.create_task(connection.run(), name="bench:mcp")
    try:
        async with asyncio.timeout(30):
            await connection.wait_until(lambda c: c.connected)
        toolbox = McpToolbox({"bench": connection})
        echo = await measure(lambda: toolbox.call("bench__echo", {"text": "ping"}), n)
        sleeps = await measure(lambda: toolbox.call("bench__slow", {"seconds": SLOW_SECONDS}), slow)
        return echo, sleeps
    finally:
        task.cancel()
        await asyncio.wait([task])


def row(transport: str, path: str, samples: list[float], floor: float | None, server_ms: float = 0.0) -> str:
    median = statistics.median(samples)
    beyond = median - server_ms
    extra = f"{median - floor:+9.2f}" if floor is not None else f"{'-':>9}"
    return (
        f"{transport:<16} {path:<34} {len(samples):>6} {median:>10.2f} {percentile(samples, 0.99):>9.2f}"
        f" {extra} {beyond:>11.2f}"
    )


async def main(quick: bool) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    n, slow = (30, 10) if quick else (300, 40)
    stdio = McpServerSettings(command=sys.executable, args=(FAKE,))
    header = (
        f"{'transport':<16} {'path':<34} {'calls':>6} {'median ms':>10} {'p99 ms':>9} {'vs SDK':>9} {'beyond srv':>11}"
    )
    lines = [header, "-" * len(header)]

    params = StdioServerParameters(command=sys.executable, args=[FAKE])
    floor_samples = await raw(params, n)
    floor = statistics.median(floor_samples)
    lines.append(row("stdio", "SDK Client.call_tool (echo)", floor_samples, None))
    echo, sleeps = await ours(stdio, n, slow)
    lines.append(row("stdio", "McpToolbox.call (echo)", echo, floor))
    lines.append(
        row("stdio", f"McpToolbox.call (slow {SLOW_SECONDS * 1000:.0f} ms)", sleeps, None, SLOW_SECONDS * 1000)
    )

    with http_server() as port:
        url = f"http://127.0.0.1:{port}/mcp"
        floor_samples = await raw(url, n)
        floor = statistics.median(floor_samples)
        lines.append(row("streamable-http", "SDK Client.call_tool (echo)", floor_samples, None))
        lines.append(row("streamable-http", "SDK, legacy protocol 2025-11-25", await raw(url, n, "legacy"), None))
        echo, sleeps = await ours(McpServerSettings(url=url), n, slow)
        lines.append(row("streamable-http", "McpToolbox.call (echo)", echo, floor))
        lines.append(
            row(
                "streamable-http",
                f"McpToolbox.call (slow {SLOW_SECONDS * 1000:.0f} ms)",
                sleeps,
                None,
                SLOW_SECONDS * 1000,
            )
        )
    print("\n".join(lines))
    print(
        "\nvs SDK: our median minus the SDK's on the same transport (toolbox routing, name mapping,"
        " timeouts, result conversion).\nbeyond srv: median minus the time the tool itself spends"
        " (0 for echo, the sleep for slow)."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run")
    asyncio.run(main(parser.parse_args().quick))
