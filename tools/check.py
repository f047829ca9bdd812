"""`python main.py --check` for MCP servers: connect once, list the tools, close."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO, cast

from mcp import Client
from mcp.client._transport import Transport

from conf.mcp import McpServerSettings
from tools._transport import open_transport
from tools.connection import CLIENT_INFO, describe_failure

__all__ = ["ServerCheck", "check_servers"]


@dataclass(frozen=True, slots=True)
class ServerCheck:
    """One server's check: `tools` (after its filter) when `ok`, else the `reason` it failed."""

    name: str
    ok: bool
    tools: tuple[str, ...] = ()
    reason: str = ""


async def check_servers(
    servers: Mapping[str, McpServerSettings], timeout: float, *, errlog: TextIO | None = None
) -> list[ServerCheck]:
    """Check every server concurrently, each within `timeout` seconds; results in the given order."""
    checks = [_check_one(name, settings, timeout, errlog) for name, settings in servers.items()]
    return list(await asyncio.gather(*checks))


async def _check_one(name: str, settings: McpServerSettings, timeout: float, errlog: TextIO | None) -> ServerCheck:
    # Each check is its own task (gather), so each session is entered and exited in one task.
    try:
        async with asyncio.timeout(timeout):
            transport = cast(Transport, open_transport(settings, lambda: None, errlog=errlog, name=name))
            async with Client(transport, cache=None, client_info=CLIENT_INFO) as client:
                names: list[str] = []
                cursor: str | None = None
                for _ in range(100):
                    page = await client.list_tools(cursor=cursor)
                    names.extend(tool.name for tool in page.tools if settings.tools.allows(tool.name))
                    cursor = page.next_cursor
                    if not cursor:
                        break
    except Exception as exc:  # boundary: every failure is a line of the check's report
        return ServerCheck(name=name, ok=False, reason=describe_failure(exc))
    return ServerCheck(name=name, ok=True, tools=tuple(names))
