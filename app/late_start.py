"""What starts once the assistant already serves: the model SDK's import and the MCP servers.

Start-up used to import the MCP SDK (~1 s of CPU and ~25 MB) and spawn every stdio server before
the gateway's first poll, and left the model SDK's import (~0.4 s) to the first message, inside its
reply deadline. Now the gateway polls first; right after its first poll (or after `grace_seconds`
when Telegram is slow to answer) the model SDK is imported in a thread and the MCP servers are
started, each one's tools appearing in the toolbox when it has connected (`DeferredToolbox`).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from conf.mcp import McpServerSettings
from conf.settings import LLMSettings
from llm import EmptyToolbox, Toolbox, ToolResult, ToolSpec
from ops.aio import wait_event
from ops.backoff import Backoff

if TYPE_CHECKING:
    from actors.mcp import McpServerActor
    from actors.supervisor import Supervisor

__all__ = ["DeferredToolbox", "LateStart"]

log = structlog.get_logger(__name__)


class DeferredToolbox:
    """A Toolbox without tools until `attach(toolbox)`; from then on, that toolbox's tools."""

    def __init__(self) -> None:
        self._toolbox: Toolbox | None = None

    def attach(self, toolbox: Toolbox) -> None:
        """Serve `toolbox`'s tools from now on."""
        self._toolbox = toolbox

    def specs(self) -> Sequence[ToolSpec]:
        """The attached toolbox's tools (none before)."""
        return () if self._toolbox is None else self._toolbox.specs()

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Call through the attached toolbox; before it, every call is an error result."""
        if self._toolbox is None:
            return ToolResult(f"There is no tool named {name!r} (it may be unavailable right now).", is_error=True)
        return await self._toolbox.call(name, arguments)


class LateStart:
    """The start-up steps that wait until the gateway serves (see the module). Run `run` as a
    transient child of the root supervisor; `done` is set once the MCP servers' actors exist.
    Without `llm` (a process that runs no turns) no model SDK is imported."""

    def __init__(
        self,
        llm: LLMSettings | None,
        servers: Mapping[str, McpServerSettings],
        backoff: Backoff,
        root: Supervisor,
        *,
        grace_seconds: float = 5.0,
    ) -> None:
        self._llm = llm
        self._servers = servers
        self._backoff = backoff
        self._root = root
        self._grace_seconds = grace_seconds
        self._deferred = DeferredToolbox()
        self.toolbox: Toolbox = self._deferred if servers else EmptyToolbox()
        """The MCP servers' tools: none until they start, then each one's once it has connected."""
        self.actors: dict[str, McpServerActor] = {}
        self.done = asyncio.Event()

    async def run(self, serving: asyncio.Event | None) -> None:
        """Wait for `serving` (the gateway's first poll; None: start at once), then do the steps."""
        if serving is not None:
            await wait_event(serving, self._grace_seconds)
        if self._llm is not None:
            try:
                await asyncio.to_thread(_import_provider, self._llm)
            except ImportError as exc:  # the first model call will report it to the user and the log
                log.error("llm_sdk_import_failed", provider=self._llm.provider, error=repr(exc))
        if self._servers and not self.actors:  # not again after a restart
            await self._start_servers()
        self.done.set()

    async def _start_servers(self) -> None:
        # The MCP SDK is the heaviest import of all: in a thread, so the loop keeps serving.
        await asyncio.to_thread(importlib.import_module, "actors.mcp")
        from actors.mcp import McpServerActor
        from tools import McpToolbox

        for name, server in self._servers.items():
            actor = McpServerActor(name, server, self._backoff)
            self.actors[name] = actor
            self._root.start_child(f"mcp:{name}", actor.run, restart="permanent")
        self._deferred.attach(McpToolbox({name: actor.connection for name, actor in self.actors.items()}))
        log.info("mcp_servers_starting", servers=sorted(self.actors))


def _import_provider(settings: LLMSettings) -> None:
    """Import the configured provider's module (and so its SDK), as the lazy chat model would at
    its first request."""
    from llm.factory import provider_module

    importlib.import_module(provider_module(settings))
