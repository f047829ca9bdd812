"""A whole reminder system in one process, on a fake clock: stores, conversation actors, a channel
that records what reached "Telegram", and the scheduler. `crash()` drops every task and all memory
(what the stores hold survives, as on disk); `start()` again is the restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from actors.conversation import ConversationActor, TurnSettings
from actors.protocol import DeliveryFailed, ReminderDue, Reply, ReplyTarget
from actors.registry import ConversationRegistry
from actors.scheduler import ReminderScheduler
from actors.supervisor import Supervisor
from actors.turn_setup import TurnSetup
from conf import BackoffSettings
from llm import EmptyToolbox, ModelReply, ModelRequest, UserRecord, record_to_json
from ops.backoff import Backoff
from stores import ConversationStore, InMemoryConversationStore, InMemoryPreferenceStore, ReminderStore
from stores.memory_reminders import InMemoryReminderStore
from tests.fakes.clock import FakeWallClock
from tools import ToolContext, Toolkit
from tools.builtin_reminders import ReminderTools

START = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)  # Friday 08:00 in Berlin
BERLIN = ZoneInfo("Europe/Berlin")
FAST = BackoffSettings(initial_seconds=0.001, max_seconds=0.005, jitter_seconds=0)


class ScriptedModel:
    """Answers `task done: <text>` to a reminder's task, `echo: <text>` otherwise; `fail` makes it raise."""

    def __init__(self) -> None:
        self.requests: list[list[dict[str, Any]]] = []
        self.fail: Exception | None = None

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.requests.append([record_to_json(message) for message in request.messages])
        if self.fail is not None:
            raise self.fail
        last = next(message for message in reversed(request.messages) if isinstance(message, UserRecord))
        return ModelReply(text=f"answer to: {last.text.rsplit(chr(10), 1)[-1]}")

    async def aclose(self) -> None:
        return None


@dataclass
class Sent:
    """A message "Telegram" accepted."""

    chat_id: int
    text: str
    at: datetime
    firing_id: str | None


@dataclass
class FakeChannel:
    """Records what it accepts. `blocked` chats refuse (403); `hang` holds a matching delivery
    forever, before (`"before"`) or after (`"after"`) accepting it: a crash then comes at that point."""

    clock: FakeWallClock
    sent: list[Sent] = field(default_factory=list)
    blocked: set[int] = field(default_factory=set)
    hang: tuple[str, str] | None = None  # (text fragment, "before" | "after")
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)

    async def deliver(self, reply: Reply) -> None:
        if self.hang is not None and self.hang[0] in reply.text:
            if self.hang[1] == "after":
                self._accept(reply)
            self.hanging.set()
            await asyncio.Event().wait()
        if reply.target.chat_id in self.blocked:
            raise DeliveryFailed(reply.conversation_id, "Forbidden: bot was blocked by the user")
        self._accept(reply)

    def _accept(self, reply: Reply) -> None:
        self.sent.append(Sent(reply.target.chat_id, reply.text, self.clock.now(), reply.firing_id))
        self.changed.set()

    @asynccontextmanager
    async def typing(self, target: ReplyTarget) -> AsyncIterator[None]:
        yield

    async def done(self, update_id: int) -> None:
        return None

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [item.text for item in self.sent if chat_id is None or item.chat_id == chat_id]

    async def until_sent(self, count: int, timeout: float = 5.0) -> list[Sent]:
        async with asyncio.timeout(timeout):
            while len(self.sent) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.sent


class ReminderWorld:
    """Stores that survive crashes, and a running system over them that does not."""

    def __init__(
        self,
        *,
        reminders: ReminderStore | None = None,
        conversations: ConversationStore | None = None,
        clock: FakeWallClock | None = None,
    ) -> None:
        self.clock = clock or FakeWallClock(START)
        self.reminders = reminders or InMemoryReminderStore(clock=self.clock)
        self.conversations = conversations or InMemoryConversationStore()
        self.preferences = InMemoryPreferenceStore()
        self.channel = FakeChannel(self.clock)
        self.model = ScriptedModel()
        self.scheduler: ReminderScheduler | None = None
        self.registry: ConversationRegistry[ConversationActor] | None = None
        self.tools: ReminderTools | None = None
        self._task: asyncio.Task[None] | None = None
        self.told: list[ReminderDue] = []

    def start(self) -> None:
        """Start the system afresh (after `crash` or `stop`: a restart)."""
        backoff = Backoff(FAST)
        supervisor = Supervisor("conversations", backoff=backoff, max_restarts=10, window_seconds=60)
        scheduler_box: list[ReminderScheduler] = []
        tools = ReminderTools(self.reminders, lambda due: scheduler_box[0].wake(due))
        setup = TurnSetup(
            "You are a test.",
            Toolkit(EmptyToolbox(), tools.tools),
            default_zone=BERLIN,
            context_tokens=16000,
            preferences=self.preferences,
            clock=self.clock.now,
        )

        def new_actor(conversation_id: str) -> ConversationActor:
            return ConversationActor(
                conversation_id,
                store=self.conversations,
                model=self.model,
                toolbox=EmptyToolbox(),
                channel=self.channel,
                settings=TurnSettings("You are a test."),
                setup=setup,
                backoff=backoff,
                reminders=tools,
            )

        registry: ConversationRegistry[ConversationActor] = ConversationRegistry(
            new_actor, supervisor, idle_seconds=3600
        )

        def tell(conversation_id: str, message: ReminderDue) -> asyncio.Future[Any]:
            self.told.append(message)
            return registry.actor_for(conversation_id).ask_future(message)

        scheduler = ReminderScheduler(self.reminders, tell, clock=self.clock, backoff=backoff)
        scheduler_box.append(scheduler)
        self.scheduler, self.registry, self.tools = scheduler, registry, tools
        self._task = asyncio.create_task(scheduler.run(), name="scheduler")

    async def stop(self) -> None:
        """A clean stop: the scheduler first, then the actors drain."""
        assert self.scheduler is not None
        assert self.registry is not None
        assert self._task is not None
        self.scheduler.stop()
        await self._task
        await self.registry.stop(2.0)

    async def crash(self) -> None:
        """Every task ends at once, mid-step; nothing but the stores remains."""
        assert self.registry is not None
        assert self._task is not None
        self._task.cancel()
        await asyncio.wait([self._task])
        await self.registry.stop(0)
        self.channel.hang = None

    async def create(
        self, text: str, at: str, *, chat: int = 42, user: int = 7, repeat: str | None = None, run: bool = False
    ) -> dict[str, Any]:
        """`create_reminder` as the model in `chat` calls it (the system must be started)."""
        import json

        assert self.tools is not None
        arguments: dict[str, Any] = {"text": text, "at": at, "run": run}
        if repeat is not None:
            arguments["repeat"] = repeat
        toolbox = Toolkit(EmptyToolbox(), self.tools.tools).for_turn(
            ToolContext(user, str(chat), ReplyTarget(chat), BERLIN, self.clock.now())
        )
        result = await toolbox.call("create_reminder", arguments)
        assert not result.is_error, result.content
        made: dict[str, Any] = json.loads(result.content)
        return made

    async def settle(self, until: datetime | None = None) -> None:
        """Wait until the scheduler sleeps (until `until`, if given) with nothing in flight."""
        scheduler = self.scheduler
        assert scheduler is not None
        await self.clock.wait_for(lambda: self.clock.is_sleeping(until) and scheduler.in_flight == 0)

    async def records(self, chat: int = 42) -> list[dict[str, Any]]:
        return await self.conversations.load(str(chat))


def firing_records(records: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The records of one type (`reminder_fired`, `delivered`, ...) that a firing caused."""
    return [record for record in records if record.get("type") == kind and record.get("firing_id")]


def only(items: Sequence[Any], predicate: Callable[[Any], bool]) -> list[Any]:
    return [item for item in items if predicate(item)]
