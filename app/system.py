"""The system: builds the store, model, tools, registry and gateway, runs them, stops them in order."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any, Literal

import structlog

from actors.conversation import ConversationActor, TurnSettings
from actors.protocol import ConversationMessage, ReplyChannel
from actors.registry import ConversationRegistry
from actors.supervisor import Supervisor
from app.metered import MeteredChatModel, MeteredToolbox
from conf import Settings
from llm import ChatModel
from ops.memory import release_free_memory

__all__ = ["EXIT_FATAL", "EXIT_OK", "AssistantSystem"]

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1
GAUGE_INTERVAL_SECONDS = 60.0

Mode = Literal["telegram", "console"]


class AssistantSystem:
    """Everything `python main.py` runs, wired once.

    Start order: store and ingress log, model, MCP server actors, registry, gateway (last, so
    nothing arrives before its destination exists). Stop order is the reverse: the gateway stops
    taking updates, conversation actors drain their mailboxes within the grace period, MCP
    actors and the sweeper stop, then the model client and the stores close.
    """

    def __init__(self, settings: Settings, mcp_servers: Mapping[str, Any], mode: Mode = "telegram") -> None:
        self.settings = settings
        self.mcp_servers = mcp_servers
        self.mode = mode
        self.exit_code = EXIT_OK
        self._shutdown = asyncio.Event()
        self.started = asyncio.Event()
        """Set once every part is built and running (for tests and embedders)."""
        self.registry: ConversationRegistry[ConversationActor] | None = None
        self.gateway: Any = None
        self.health: Any = None
        self.mcp_actors: dict[str, Any] = {}

    def request_stop(self, exit_code: int = EXIT_OK) -> None:
        """Begin a graceful stop; the first non-zero exit code wins."""
        if exit_code and not self.exit_code:
            self.exit_code = exit_code
        self._shutdown.set()

    def _escalate(self, child: str, error: BaseException | None) -> None:
        log.critical("supervisor_escalation", child=child, error=repr(error))
        self.request_stop(EXIT_FATAL)

    async def run(self, *, install_signal_handlers: bool = True) -> int:
        """Run until a signal, end of console input, or an escalation; returns the exit status."""
        settings = self.settings
        if install_signal_handlers:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.request_stop)
        async with AsyncExitStack() as stack:
            from stores import build_stores

            store, ingress = build_stores(settings.store, settings.backoff)
            await stack.enter_async_context(store)
            await stack.enter_async_context(ingress)

            from llm import build_chat_model, load_system_prompt

            model: ChatModel = build_chat_model(settings.llm, settings.backoff, lazy=True)
            stack.push_async_callback(model.aclose)
            system_prompt = load_system_prompt(settings.llm)
            metrics = self._metrics()
            if metrics is not None:
                model = MeteredChatModel(model, metrics, settings.llm.provider)

            root = Supervisor(
                "root",
                backoff=settings.backoff,
                max_restarts=settings.actors.max_restarts,
                window_seconds=settings.actors.restart_window_seconds,
                on_escalate=self._escalate,
            )
            toolbox = self._start_tools(root)
            if metrics is not None:
                toolbox = MeteredToolbox(toolbox, metrics)
            conversations = Supervisor(
                "conversations",
                backoff=settings.backoff,
                max_restarts=settings.actors.max_restarts,
                window_seconds=settings.actors.restart_window_seconds,
            )
            turn = TurnSettings(system_prompt, settings.llm.max_steps, settings.llm.context_tokens)
            channel_holder: list[ReplyChannel] = []

            def new_actor(conversation_id: str) -> ConversationActor:
                return ConversationActor(
                    conversation_id,
                    store=store,
                    model=model,
                    toolbox=toolbox,
                    channel=channel_holder[0],
                    settings=turn,
                    mailbox_size=settings.actors.mailbox_size,
                    metrics=metrics,
                )

            registry: ConversationRegistry[ConversationActor] = ConversationRegistry(
                new_actor,
                conversations,
                idle_seconds=settings.actors.idle_seconds,
                after_evictions=release_free_memory,
            )
            self.registry = registry
            root.start_child(
                "registry-sweeper", registry.run_evictions, restart="transient", stop=registry.stop_sweeper
            )
            if metrics is not None:
                root.start_child("gauges", lambda: self._report_gauges(registry, metrics), restart="transient")

            gateway_child = self._start_gateway(root, registry, ingress, channel_holder, metrics)
            log.info(
                "assistant_started",
                mode=self.mode,
                provider=settings.llm.provider,
                model=settings.llm.model,
                store=settings.store.backend,
                mcp_servers=sorted(self.mcp_servers),
            )
            self.started.set()
            try:
                await self._shutdown.wait()
            finally:
                log.info("assistant_stopping", exit_code=self.exit_code)
                grace = settings.actors.stop_grace_seconds
                root.stop_child(gateway_child)
                await asyncio.shield(gateway_child.finished)
                await registry.stop(grace)
                await root.stop(grace)
                if self.gateway is not None and hasattr(self.gateway, "aclose"):
                    await self.gateway.aclose()
        log.info("assistant_stopped", exit_code=self.exit_code)
        return self.exit_code

    async def _report_gauges(self, registry: ConversationRegistry[ConversationActor], metrics: Any) -> None:
        """Actors alive and the deepest mailbox, once a minute (one line, not one per message)."""
        while True:
            await asyncio.sleep(GAUGE_INTERVAL_SECONDS)
            metrics.actors_alive(len(registry))
            metrics.mailbox_depth(max((actor.queued for actor in registry), default=0), actor_kind="conversation")

    def _metrics(self) -> Any:
        if not self.settings.metrics.enabled:
            return None
        from ops.metrics import Metrics

        return Metrics(self.settings.metrics)

    def _start_tools(self, root: Supervisor) -> Any:
        from llm import EmptyToolbox

        if not self.mcp_servers:
            return EmptyToolbox()
        from actors.mcp import McpServerActor
        from tools import McpToolbox

        for name, server in self.mcp_servers.items():
            actor = McpServerActor(name, server, self.settings.backoff)
            self.mcp_actors[name] = actor
            root.start_child(f"mcp:{name}", actor.run, restart="permanent")
        return McpToolbox({name: actor.connection for name, actor in self.mcp_actors.items()})

    def _start_gateway(
        self,
        root: Supervisor,
        registry: ConversationRegistry[ConversationActor],
        ingress: Any,
        channel_holder: list[ReplyChannel],
        metrics: Any,
    ) -> Any:
        if self.mode == "console":
            from channels.console import ConsoleChannel, ConsoleGateway

            channel_holder.append(ConsoleChannel())

            def ask(conversation_id: str, message: ConversationMessage) -> asyncio.Future[object]:
                return registry.actor_for(conversation_id).ask_future(message)

            console = ConsoleGateway(ask, self.request_stop, stdin=sys.stdin)
            self.gateway = console
            return root.start_child("console-gateway", console.run, restart="temporary")
        from channels.telegram.gateway import TelegramGateway

        gateway = TelegramGateway(self.settings, registry, ingress, metrics=metrics)
        channel_holder.append(gateway.channel)
        self.gateway = gateway
        if self.settings.health.port:
            from ops.health import HealthServer

            self.health = HealthServer(self.settings.health.host, self.settings.health.port, gateway.health)
            root.start_child("health", self.health.run, restart="permanent")
        return root.start_child("telegram-gateway", gateway.run, restart="permanent", stop=gateway.stop)
