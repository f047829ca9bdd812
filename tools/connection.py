"""One MCP server's connection: session, tool list, reconnection with backoff, calls with timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Final, TextIO, cast

import mcp_types as types
import structlog
from mcp import Client, MCPError
from mcp.client._transport import Transport
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from conf.mcp import McpServerSettings
from llm.base import ToolResult
from ops.aio import wait_event
from ops.backoff import Backoff
from tools._convert import convert_result, object_schema
from tools._transport import open_transport

__all__ = ["McpConnection", "McpTool", "describe_failure"]

log = structlog.get_logger(__name__)

CLIENT_INFO: Final = types.Implementation(name="personal-assistant", version="0.1.0")
_MAX_PAGES: Final = 100
"""tools/list pages read per listing: a server whose cursor never ends cannot hang the connection."""
_CALL_GRACE_SECONDS: Final = 1.0
"""Beyond the SDK's own read timeout, in case a transport hangs before the request is even sent."""


# Over HTTP the 2026-07-28 protocol costs ~44 ms a call here against ~2 ms with the initialize
# handshake of 2025-11-25 (bench/tools.py; a delayed-ACK stall in the new request pattern, by its
# 40 ms shape). Every server speaks the older handshake, and tools/list_changed still arrives.
_MODE: dict[str, str] = {"stdio": "auto", "streamable-http": "legacy", "sse": "legacy"}


@dataclass(frozen=True, slots=True)
class McpTool:
    """A tool as one server lists it (after the server's include/exclude filter)."""

    name: str
    description: str
    input_schema: Mapping[str, Any] = field(default_factory=dict)


def describe_failure(exc: BaseException) -> str:
    """A short, secret-free reason for logs and `--check`: the innermost error's type and message."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, MCPError):
        return f"MCP error {exc.code}: {exc.message}"[:200]
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


class McpConnection:
    """Keeps one MCP server connected for as long as `run()` runs, and calls its tools.

    `run()` owns the SDK session: it is entered and exited in `run()`'s task, as the SDK requires.
    It connects, lists the tools (all pages), relists on `tools/list_changed` and every
    `heartbeat_seconds` (which is also how an idle HTTP server's death is noticed), and reconnects
    after `backoff`'s delay when the server dies or forgets the session. While the
    server is down `tools()` is empty and `call_tool` answers with an error result. `call_tool` may
    be used from any task.
    """

    def __init__(
        self,
        name: str,
        settings: McpServerSettings,
        backoff: Backoff,
        *,
        heartbeat_seconds: float = 30.0,
        connect_timeout: float | None = None,
        errlog: TextIO | None = None,
    ) -> None:
        self._name = name
        self._settings = settings
        self._backoff = backoff
        self._heartbeat_seconds = heartbeat_seconds
        self._connect_timeout = connect_timeout if connect_timeout is not None else max(settings.timeout, 10.0)
        self._errlog = errlog
        self._client: Client | None = None
        self._tools: tuple[McpTool, ...] = ()
        self._tool_names: frozenset[str] = frozenset()
        self._changed = asyncio.Event()
        # Set by the transport, notifications, the listener and failed calls; read by run()'s task.
        self._wake = asyncio.Event()
        self._eof = False
        self._relist_wanted = False
        self._probe_wanted = False
        self._lost_reason = ""
        self.connects = 0
        """How many times a session came up."""
        self.failures = 0
        """Connection attempts that failed since the server was last up."""
        self.last_failure = ""
        """Why the last connection attempt or session ended, if it did."""

    @property
    def name(self) -> str:
        """The server's name in the MCP servers file."""
        return self._name

    @property
    def settings(self) -> McpServerSettings:
        """The server's settings."""
        return self._settings

    @property
    def connected(self) -> bool:
        """True while a session is up and its tools are listed."""
        return self._client is not None

    def tools(self) -> tuple[McpTool, ...]:
        """The server's tools now; empty while it is down."""
        return self._tools

    async def wait_until(self, predicate: Callable[[McpConnection], bool]) -> None:
        """Wait until `predicate(self)` holds; it is checked whenever the connection's state changes.

        Has no timeout of its own: wrap it in `asyncio.timeout`.
        """
        while True:
            changed = self._changed
            if predicate(self):
                return
            await changed.wait()

    # -- the session's task -------------------------------------------------------------------

    async def run(self) -> None:
        """Connect and stay connected, forever, until cancelled. Never returns and never raises
        for the server being down or dying; cancellation closes the session and propagates."""
        attempt = 0
        down_since: float | None = None
        while True:
            was_up, reason = await self._session_once()
            self._raise_if_cancelled()
            self.last_failure = reason
            if was_up:
                attempt = 0
                down_since = None
            attempt += 1
            self.failures = attempt
            self._notify()
            delay = self._backoff.delay(attempt)
            if down_since is None:
                down_since = time.monotonic()
                log.warning("mcp_server_unavailable", server=self._name, reason=reason, retry_in_s=round(delay, 2))
            else:
                log.debug("mcp_server_retry_failed", server=self._name, reason=reason, attempt=attempt)
            await self._backoff.sleep(delay)

    @staticmethod
    def _raise_if_cancelled() -> None:
        # A cancellation that lands while the SDK's anyio scopes tear down a failed session can be
        # absorbed by them; the task still counts it, and a stop request must never be lost.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError

    async def _session_once(self) -> tuple[bool, str]:
        """One session from connect to its end; returns (it came up, why it ended)."""
        self._eof = False
        self._relist_wanted = self._probe_wanted = False
        self._lost_reason = ""
        self._wake.clear()
        was_up = False
        started = time.monotonic()
        try:
            async with AsyncExitStack() as stack:
                # The deadline covers connecting only; asyncio's timeout does not nest in anyio's
                # cancel scopes, so the session's scopes may outlive this block.
                async with asyncio.timeout(self._connect_timeout):
                    transport = cast(
                        Transport, open_transport(self._settings, self._on_eof, errlog=self._errlog, name=self._name)
                    )
                    client = await stack.enter_async_context(
                        Client(
                            transport,
                            cache=None,
                            client_info=CLIENT_INFO,
                            message_handler=self._on_message,
                            mode=_MODE[self._settings.kind],
                        )
                    )
                    await self._relist(client)
                stack.callback(self._set_down)
                was_up = True
                self._set_up(client, time.monotonic() - started)
                return True, await self._watch(client)
        except Exception as exc:  # boundary: any failure of the server or its transport is an outage
            log.debug("mcp_session_failed", server=self._name, exc_info=True)
            return was_up, describe_failure(exc)
        finally:
            self._set_down()

    async def _watch(self, client: Client) -> str:
        """Serve the session until the server goes away; return why."""
        listener: asyncio.Task[None] | None = None
        if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            # 2026-07-28 servers announce tool changes only on a subscriptions/listen stream.
            listener = asyncio.create_task(self._listen(client), name=f"mcp:{self._name}:listen")
        try:
            while True:
                if self._eof:
                    return "the server closed the connection"
                if self._lost_reason:
                    return self._lost_reason
                if not await wait_event(self._wake, self._heartbeat_seconds):
                    self._probe_wanted = True
                self._wake.clear()
                if self._eof or self._lost_reason:
                    continue
                if self._relist_wanted or self._probe_wanted:
                    self._relist_wanted = self._probe_wanted = False
                    async with asyncio.timeout(self._settings.timeout):
                        await self._relist(client)
        finally:
            if listener is not None:
                listener.cancel()
                await asyncio.wait([listener])

    async def _listen(self, client: Client) -> None:
        acknowledged = False
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                acknowledged = True
                async for _event in subscription:
                    self._poke(relist=True)
            reason = "the server ended the tools/list_changed subscription"
        except ListenNotSupportedError:
            return
        except SubscriptionLost:
            reason = "the tools/list_changed subscription was lost"
        except Exception as exc:  # boundary: the stream's failure is the server's failure
            if not acknowledged and isinstance(exc, MCPError):
                # The server does not serve subscriptions: the heartbeat's relisting has to do.
                log.debug("mcp_listen_unsupported", server=self._name, reason=describe_failure(exc))
                return
            reason = describe_failure(exc)
        self._lost_reason = reason
        self._wake.set()

    async def _relist(self, client: Client) -> None:
        listed: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        else:
            log.warning("mcp_tool_pages_capped", server=self._name, pages=_MAX_PAGES, tools=len(listed))
        allowed = self._settings.tools.allows
        tools = tuple(
            McpTool(
                name=tool.name,
                description=tool.description or tool.title or "",
                input_schema=object_schema(tool.input_schema),
            )
            for tool in listed
            if allowed(tool.name)
        )
        if tools != self._tools:
            self._tools = tools
            self._tool_names = frozenset(tool.name for tool in tools)
            if self._client is not None:
                log.info("mcp_tools_changed", server=self._name, tools=sorted(self._tool_names))
            self._notify()

    async def _on_message(self, message: types.ServerNotification | Exception) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._poke(relist=True)
        elif isinstance(message, Exception):
            log.debug("mcp_transport_error", server=self._name, reason=describe_failure(message))
            self._poke(probe=True)

    def _on_eof(self) -> None:
        self._eof = True
        self._wake.set()

    def _poke(self, *, relist: bool = False, probe: bool = False) -> None:
        self._relist_wanted |= relist
        self._probe_wanted |= probe
        self._wake.set()

    def _set_up(self, client: Client, seconds: float) -> None:
        self._client = client
        self.connects += 1
        self.failures = 0
        log.info(
            "mcp_server_connected",
            server=self._name,
            transport=self._settings.kind,
            protocol=client.protocol_version,
            tools=sorted(self._tool_names),
            connect_ms=round(seconds * 1000, 1),
        )
        self._notify()

    def _set_down(self) -> None:
        if self._client is None and not self._tools:
            return
        self._client = None
        self._tools = ()
        self._tool_names = frozenset()
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- calls from any task --------------------------------------------------------------------

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Call the server's tool `name`. Failures, timeouts and a server that is down come back as
        a ToolResult with `is_error` and a short explanation; only cancellation propagates."""
        client = self._client
        if client is None:
            return ToolResult(f"The {self._name} tools are unavailable right now (server not connected).", True)
        if name not in self._tool_names:
            return ToolResult(f"The {self._name} server has no tool named {name!r}.", True)
        timeout = self._settings.timeout
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout + _CALL_GRACE_SECONDS):
                result = await client.call_tool(name, dict(arguments), read_timeout_seconds=timeout)
        except TimeoutError:
            return self._failed(name, started, f"The tool {name} did not answer within {timeout:g} s.")
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                return self._failed(name, started, f"The tool {name} did not answer within {timeout:g} s.")
            if exc.code == CONNECTION_CLOSED:
                self._poke(probe=True)
                return self._failed(
                    name, started, f"The connection to the {self._name} server was lost during the call."
                )
            return self._failed(name, started, f"The {self._name} server refused the call: {exc.message[:300]}")
        except ValidationError:
            return self._failed(name, started, f"The {self._name} server answered with a malformed result.")
        except Exception as exc:  # boundary: a tool's failure must reach the model as a result
            log.warning("mcp_call_failed", server=self._name, tool=name, reason=describe_failure(exc))
            self._poke(probe=True)
            return self._failed(name, started, f"The {self._name} server could not be reached.")
        log.debug(
            "mcp_tool_called",
            server=self._name,
            tool=name,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            is_error=result.is_error,
        )
        return convert_result(result)

    def _failed(self, tool: str, started: float, explanation: str) -> ToolResult:
        log.info(
            "mcp_tool_failed",
            server=self._name,
            tool=tool,
            reason=explanation,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return ToolResult(explanation, is_error=True)
