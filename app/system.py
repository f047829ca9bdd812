"""The system: builds every part from settings, starts them in one order, stops them in the reverse."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import structlog

from actors import TurnSettings
from actors.protocol import ConversationMessage, ReplyChannel
from actors.registry import ConversationRegistry
from actors.supervisor import Child, Supervisor
from app.edges import ConsoleEdge, Edge, TelegramEdge, open_edge
from app.memory import build_turn_setup
from app.metered import MeteredChatModel, MeteredToolbox
from app.reminders import reminder_tools, start_scheduler
from app.scale import Role, open_queue_ingress, start_edges
from conf import Settings
from conf.mcp import McpServerSettings
from llm import ChatModel, Toolbox
from llm.context import forget_estimates
from ops.backoff import Backoff
from ops.memory import release_free_memory
from stores import ConversationStore, FeatureStores, IngressLog

if TYPE_CHECKING:
    from actors.accounting import Accounting
    from actors.conversation import ConversationActor
    from actors.mcp import McpServerActor
    from actors.media import ConversationMedia
    from actors.scheduler import ReminderScheduler
    from actors.turn_setup import TurnSetup
    from channels.console import ConsoleGateway
    from channels.telegram.gateway import TelegramGateway
    from ops.health import HealthServer
    from ops.metrics import Metrics
    from tools.builtin_reminders import ReminderTools

__all__ = ["EXIT_FATAL", "EXIT_OK", "AssistantSystem", "ConversationFactory"]

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1
GAUGE_INTERVAL_SECONDS = 60.0

Mode = Literal["telegram", "console"]


def _release_evicted() -> None:
    """After idle conversations were evicted: drop what only they used, then return the memory."""
    forget_estimates()
    release_free_memory()


@dataclass(frozen=True, slots=True)
class ConversationFactory:
    """Makes the actor of one conversation from what every conversation shares."""

    store: ConversationStore
    model: ChatModel
    toolbox: Toolbox
    channel: ReplyChannel
    turn: TurnSettings
    mailbox_size: int
    metrics: Metrics | None
    setup: TurnSetup | None = None
    """The instructions and tools of each turn (the user's facts, zone, built-in tools)."""
    backoff: Backoff | None = None
    media: ConversationMedia | None = None
    """Reading voice, photos and files (None: a message with files is explained as unreadable)."""
    shared: bool = False
    """Other workers write to the same store (the ingress queue): actors check for their writes."""
    accounting: Accounting | None = None
    """Usage, the daily budget and each chat's model."""
    reminders: ReminderTools | None = None

    def __call__(self, conversation_id: str) -> ConversationActor:
        """A new (not yet started) actor for `conversation_id`."""
        # Imported with the first conversation, not before the first poll: the actors' modules load
        # the turn loop, summaries, streaming and the ledgers, which start-up does not use.
        from actors.media_conversation import MediaConversationActor
        from actors.shared_conversation import SharedConversationActor

        actor_class = SharedConversationActor if self.shared else MediaConversationActor
        return actor_class(
            conversation_id,
            store=self.store,
            model=self.model,
            toolbox=self.toolbox,
            channel=self.channel,
            settings=self.turn,
            mailbox_size=self.mailbox_size,
            metrics=self.metrics,
            setup=self.setup,
            backoff=self.backoff,
            media=self.media,
            accounting=self.accounting,
            reminders=self.reminders,
        )


class AssistantSystem:
    """Everything `python main.py` runs, wired once, in one order (see `run`)."""

    def __init__(
        self, settings: Settings, mcp_servers: Mapping[str, McpServerSettings], mode: Mode = "telegram"
    ) -> None:
        self.settings = settings
        self.mcp_servers = mcp_servers
        self.mode = mode
        self.role: Role = "both"  # which of gateway and worker run: `--role` (app/scale.py)
        self.backoff = Backoff(settings.backoff)
        """The one backoff policy every retrying part is given."""
        self.exit_code = EXIT_OK
        self._shutdown = asyncio.Event()
        self.started = asyncio.Event()
        """Set once every part is built and running (for tests and embedders)."""
        self.registry: ConversationRegistry[ConversationActor] | None = None
        self.gateway: TelegramGateway | ConsoleGateway | None = None
        self.health: HealthServer | None = None
        self.metrics: Metrics | None = None
        self.mcp_actors: dict[str, McpServerActor] = {}
        """The MCP servers' actors, made once the gateway serves (see `tools_started`)."""
        self.tools_started = asyncio.Event()
        """Set once the MCP servers' actors exist (their tools appear as each connects)."""
        self.features: FeatureStores | None = None
        """The facts, reminders, usage and preference stores, once open."""
        self.scheduler: ReminderScheduler | None = None

    def request_stop(self, exit_code: int = EXIT_OK) -> None:
        """Begin a graceful stop; the first non-zero exit code wins."""
        if exit_code and not self.exit_code:
            self.exit_code = exit_code
        self._shutdown.set()

    def _escalate(self, child: str, error: BaseException | None) -> None:
        log.critical("supervisor_escalation", child=child, error=repr(error))
        self.request_stop(EXIT_FATAL)

    async def run(self, *, install_signal_handlers: bool = True) -> int:
        """Run until a signal, end of console input, or an escalation; returns the exit status.

        Start order: the stores, the model, the reply channel (Telegram: its sending client and
        flood-controlled sender), the root supervisor with the MCP server actors, the registry of
        conversation actors, and the gateway last, so nothing arrives before its destination exists.
        Each part goes on one AsyncExitStack as it starts, so they stop in the reverse order and
        every stop step runs even when an earlier one raised: the gateway stops taking updates and
        finishes its notices, conversation actors drain their mailboxes within the grace period,
        the sweeper, MCP actors and health endpoint stop, then the sender, the Telegram client,
        the model client and the stores close.
        """
        if install_signal_handlers:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.request_stop)
        self.metrics = self._build_metrics()
        async with AsyncExitStack() as stack:
            if self.metrics is not None:
                stack.callback(self.metrics.flush)  # the last step: what every part reported
            store, ingress = await self._open_stores(stack)
            features = await self._open_feature_stores(stack)
            model = self._open_model(stack)
            edge = await open_edge(stack, self.settings, self.mode, ingress, self.backoff, self.metrics)
            root = self._start_root(stack)
            toolbox = self._start_tools(root)
            factory = self._conversation_factory(store, model, toolbox, edge.channel)
            if factory.accounting is not None:  # after the actors stop, before the stores close
                stack.push_async_callback(factory.accounting.meter.aclose)
            # The scheduler starts after the actors whose tools wake it: they look it up when called.
            reminders = reminder_tools(features.reminders, lambda: self.scheduler)
            setup = build_turn_setup(self.settings, toolbox, features, stack, extra_tools=reminders.tools)
            media = edge.media if isinstance(edge, TelegramEdge) else None
            factory = dataclasses.replace(factory, setup=setup, backoff=self.backoff, media=media, reminders=reminders)
            registry = self._start_registry(stack, root, factory)
            # Stopped before the conversation actors drain: no firing goes to an actor that is stopping.
            if self.role != "gateway":  # every worker runs one; each firing is claimed (docs/scale.md)
                self.scheduler, scheduler = start_scheduler(root, registry, features.reminders, self.backoff)
                stack.push_async_callback(_stop_child, root, scheduler)
            self._start_gateway(stack, root, registry, ingress, edge)
            serving = getattr(self.gateway, "polling", None)  # Telegram's first poll; the console serves at once
            root.start_child("late-start", lambda: self._late.run(serving), restart="transient")
            stack.callback(self._log_stopping)
            self._log_started()
            self.started.set()
            await self._shutdown.wait()
        log.info("assistant_stopped", exit_code=self.exit_code)
        return self.exit_code

    # -- start, in order; each step puts its own stop on the stack ----------------------------------

    def _build_metrics(self) -> Metrics | None:
        if not self.settings.metrics.enabled:
            return None
        from ops.metrics import Metrics

        return Metrics(self.settings.metrics, interval_s=self.settings.metrics.interval_seconds)

    async def _open_stores(self, stack: AsyncExitStack) -> tuple[ConversationStore, IngressLog]:
        from stores import build_stores

        store, ingress = build_stores(self.settings.store, self.backoff)
        await stack.enter_async_context(store)
        if self.settings.queue.enabled and self.mode == "telegram":
            return store, await open_queue_ingress(stack, self.settings, self.backoff)
        await stack.enter_async_context(ingress)
        return store, ingress

    async def _open_feature_stores(self, stack: AsyncExitStack) -> FeatureStores:
        from stores import build_feature_stores

        features = build_feature_stores(self.settings.store, self.backoff)
        await stack.enter_async_context(features)
        self.features = features
        return features

    def _accounting(self) -> Accounting | None:
        """Usage, budget and model choice (actors.accounting), on the feature stores."""
        if self.features is None:
            return None
        from actors.accounting import Accounting, ModelChoice
        from actors.usage import UsageMeter

        settings = self.settings
        owner = settings.telegram.allowed_user_ids.owner
        meter = UsageMeter(
            self.features.usage, self.features.preferences, settings.usage, default_zone=settings.timezone, owner=owner
        )
        models = ModelChoice(self.features.preferences, settings.llm.models, settings.llm.model)
        return Accounting(meter, models, priced=bool(settings.usage.prices), metrics=self.metrics)

    def _open_model(self, stack: AsyncExitStack) -> ChatModel:
        from llm import build_chat_model

        model: ChatModel = build_chat_model(self.settings.llm, self.backoff, lazy=True)
        stack.push_async_callback(model.aclose)
        if self.metrics is not None:
            model = MeteredChatModel(model, self.metrics, self.settings.llm.provider)
        return model

    def _start_root(self, stack: AsyncExitStack) -> Supervisor:
        actors = self.settings.actors
        root = Supervisor(
            "root",
            backoff=self.backoff,
            max_restarts=actors.max_restarts,
            window_seconds=actors.restart_window_seconds,
            on_escalate=self._escalate,
        )
        stack.push_async_callback(root.stop, actors.stop_grace_seconds)
        return root

    def _start_tools(self, root: Supervisor) -> Toolbox:
        from app.late_start import LateStart

        # The MCP servers start once the gateway serves; their tools appear as each one connects.
        # A gateway only enqueues: it runs no turns, so it needs neither tools nor the model's SDK.
        turns = self.role != "gateway"
        self._late = LateStart(
            self.settings.llm if turns else None, self.mcp_servers if turns else {}, self.backoff, root
        )
        self.mcp_actors, self.tools_started = self._late.actors, self._late.done
        toolbox = self._late.toolbox
        if self.metrics is not None:
            toolbox = MeteredToolbox(toolbox, self.metrics)
        return toolbox

    def _conversation_factory(
        self, store: ConversationStore, model: ChatModel, toolbox: Toolbox, channel: ReplyChannel
    ) -> ConversationFactory:
        from llm import load_system_prompt

        llm = self.settings.llm
        return ConversationFactory(
            store=store,
            model=model,
            toolbox=toolbox,
            channel=channel,
            turn=TurnSettings(
                load_system_prompt(llm),
                llm.max_steps,
                llm.context_tokens,
                reply_within_seconds=llm.retry_budget_seconds,
            ),
            mailbox_size=self.settings.actors.mailbox_size,
            metrics=self.metrics,
            backoff=self.backoff,
            shared=self.settings.queue.enabled,
            accounting=self._accounting(),
        )

    def _start_registry(
        self, stack: AsyncExitStack, root: Supervisor, factory: ConversationFactory
    ) -> ConversationRegistry[ConversationActor]:
        actors = self.settings.actors
        conversations = Supervisor(
            "conversations",
            backoff=self.backoff,
            max_restarts=actors.max_restarts,
            window_seconds=actors.restart_window_seconds,
        )
        registry: ConversationRegistry[ConversationActor] = ConversationRegistry(
            factory,
            conversations,
            idle_seconds=actors.idle_seconds,
            after_evictions=_release_evicted,
            max_live=actors.max_live,
            max_idle=actors.max_idle,
        )
        self.registry = registry
        stack.push_async_callback(registry.stop, actors.stop_grace_seconds)
        root.start_child("registry-sweeper", registry.run_evictions, restart="transient", stop=registry.stop_sweeper)
        metrics = self.metrics
        if metrics is not None:
            root.start_child("gauges", lambda: self._report_gauges(registry, metrics), restart="transient")
        return registry

    def _start_gateway(
        self,
        stack: AsyncExitStack,
        root: Supervisor,
        registry: ConversationRegistry[ConversationActor],
        ingress: IngressLog,
        edge: Edge,
    ) -> None:
        if isinstance(edge, ConsoleEdge):
            self._start_console_gateway(stack, root, registry)
            return
        if self.settings.webhook.enabled or self.settings.queue.enabled:
            parts = (root, registry, ingress, edge.channel, edge.bot, self.backoff, stack)
            self.gateway, self.health = start_edges(self.settings, self.role, *parts)
            return
        from channels.telegram.gateway import TelegramGateway

        gateway = TelegramGateway(
            self.settings, registry, ingress, bot=edge.bot, channel=edge.channel, backoff=self.backoff
        )
        self.gateway = gateway
        if self.settings.health.port:
            from ops.health import HealthServer

            self.health = HealthServer(self.settings.health.host, self.settings.health.port, gateway.health)
            root.start_child("health", self.health.run, restart="permanent")
        child = root.start_child("telegram-gateway", gateway.run, restart="permanent", stop=gateway.stop)
        stack.push_async_callback(gateway.aclose)
        stack.push_async_callback(_stop_child, root, child)

    def _start_console_gateway(
        self, stack: AsyncExitStack, root: Supervisor, registry: ConversationRegistry[ConversationActor]
    ) -> None:
        from channels.console import ConsoleGateway

        def ask(conversation_id: str, message: ConversationMessage) -> asyncio.Future[object]:
            return registry.actor_for(conversation_id).ask_future(message)

        console = ConsoleGateway(ask, self.request_stop, stdin=sys.stdin)
        self.gateway = console
        child = root.start_child("console-gateway", console.run, restart="temporary")
        stack.push_async_callback(_stop_child, root, child)

    # -- while running ----------------------------------------------------------------------------

    def _log_started(self) -> None:
        settings = self.settings
        log.info(
            "assistant_started",
            mode=self.mode,
            provider=settings.llm.provider,
            model=settings.llm.model,
            store=settings.store.backend,
            role=self.role,
            ingress="webhook" if settings.webhook.enabled else "queue" if settings.queue.enabled else "polling",
            mcp_servers=sorted(self.mcp_servers),
        )

    def _log_stopping(self) -> None:
        log.info("assistant_stopping", exit_code=self.exit_code)

    async def _report_gauges(self, registry: ConversationRegistry[ConversationActor], metrics: Metrics) -> None:
        """Actors alive and the deepest mailbox, once a minute (one line, not one per message); then
        the minute's metrics are written, so a quiet assistant's last values do not wait."""
        while True:
            await asyncio.sleep(GAUGE_INTERVAL_SECONDS)
            metrics.actors_alive(len(registry))
            metrics.mailbox_depth(max((actor.queued for actor in registry), default=0), actor_kind="conversation")
            metrics.flush()


async def _stop_child(supervisor: Supervisor, child: Child) -> None:
    """Ask one child to finish and wait until it has (a stop step of the exit stack)."""
    supervisor.stop_child(child)
    await asyncio.shield(child.finished)
