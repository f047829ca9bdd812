"""Shared pieces of the memory tests: a model that summarises deterministically and calls the memory
tools when told to, and conversations of several users over one set of stores."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from actors.conversation import ConversationActor, TurnSettings
from actors.protocol import Command, ReplyTarget, UserMessage
from actors.registry import ConversationRegistry
from actors.supervisor import Supervisor
from actors.turn_setup import TurnSetup
from conf import BackoffSettings
from llm import (
    EmptyToolbox,
    LLMUnavailable,
    ModelReply,
    ModelRequest,
    ToolCall,
    ToolResultRecord,
    UserRecord,
)
from llm.context import estimate_text_tokens, estimate_tokens
from llm.summary import SUMMARY_INSTRUCTIONS
from ops.backoff import Backoff
from stores import (
    ConversationStore,
    FactRanker,
    FactStore,
    InMemoryConversationStore,
    InMemoryFactStore,
    InMemoryPreferenceStore,
    PreferenceStore,
)
from tests.feature_backends import FakeClock
from tests.test_conversation_actor import RecordingChannel
from tools.builtin import Toolkit
from tools.memory import memory_tools

NOW = datetime(2026, 3, 10, 13, 5, tzinfo=UTC)
FAST = BackoffSettings(initial_seconds=0.001, max_seconds=0.005, jitter_seconds=0)
SUMMARY_PREFIX = SUMMARY_INSTRUCTIONS.split("{", 1)[0]
REMEMBER = re.compile(r"remember: (.+)$", re.DOTALL)
RECALL = re.compile(r"recall: (.+)$", re.DOTALL)
KEEP_LINE = re.compile(r"FACT:[^\n]*")


def is_summary_request(request: ModelRequest) -> bool:
    return request.system.startswith(SUMMARY_PREFIX)


def request_tokens(request: ModelRequest) -> int:
    """What a request costs by the estimate the context budget uses."""
    instructions = estimate_text_tokens(request.system) + estimate_text_tokens(request.volatile_system)
    return instructions + sum(estimate_tokens(message) for message in request.messages)


@dataclass
class MemoryModel:
    """A chat model for the memory tests.

    A summary request is answered with the `FACT:` lines of its transcript (the earlier summary's
    included), deduplicated, after a line naming how many lines it read: deterministic and bounded.
    A user message ending in `remember: X` (or `recall: X`) makes it call the remember (recall) tool
    with X, then answer `noted (<the tool's result>)`. Any other message is echoed. `summary_gate`,
    when set, holds summary calls until it is set; `fail_summaries` fails that many summary calls first.
    """

    requests: list[ModelRequest] = field(default_factory=list)
    summary_gate: asyncio.Event | None = None
    fail_summaries: int = 0
    summary_started: asyncio.Event = field(default_factory=asyncio.Event)
    _calls: int = 0

    @property
    def turn_requests(self) -> list[ModelRequest]:
        return [request for request in self.requests if not is_summary_request(request)]

    @property
    def summary_requests(self) -> list[ModelRequest]:
        return [request for request in self.requests if is_summary_request(request)]

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        if is_summary_request(request):
            return await self._summarise(request)
        last = request.messages[-1]
        if isinstance(last, ToolResultRecord):
            return ModelReply(text=f"noted ({last.content})")
        assert isinstance(last, UserRecord)
        for pattern, tool, argument in ((REMEMBER, "remember", "fact"), (RECALL, "recall", "query")):
            match = pattern.search(last.text)
            if match is not None:
                self._calls += 1
                call = ToolCall(f"call-{self._calls}", tool, {argument: match.group(1)})
                return ModelReply(text="", tool_calls=(call,))
        return ModelReply(text=f"echo: {last.text}")

    async def _summarise(self, request: ModelRequest) -> ModelReply:
        self.summary_started.set()
        if self.summary_gate is not None:
            await self.summary_gate.wait()
        if self.fail_summaries:
            self.fail_summaries -= 1
            raise LLMUnavailable("summariser down", status=503)
        [transcript] = request.messages
        assert isinstance(transcript, UserRecord)
        kept = list(dict.fromkeys(KEEP_LINE.findall(transcript.text)))
        lines = len(transcript.text.splitlines())
        return ModelReply(text="\n".join([f"(summary of {lines} lines)", *kept]))

    async def aclose(self) -> None:
        return None


@dataclass
class Users:
    """Conversation actors over one conversation store and one set of memory stores."""

    model: MemoryModel = field(default_factory=MemoryModel)
    store: ConversationStore = field(default_factory=InMemoryConversationStore)
    facts: FactStore = field(default_factory=InMemoryFactStore)
    preferences: PreferenceStore = field(default_factory=InMemoryPreferenceStore)
    context_tokens: int = 4000
    clock: FakeClock = field(default_factory=lambda: FakeClock(NOW))
    channel: RecordingChannel = field(default_factory=RecordingChannel)
    registry: ConversationRegistry[ConversationActor] = field(init=False)
    setup: TurnSetup = field(init=False)

    def __post_init__(self) -> None:
        self.setup = TurnSetup(
            "Be brief.",
            Toolkit(EmptyToolbox(), memory_tools(self.facts, FactRanker())),
            default_zone=ZoneInfo("UTC"),
            context_tokens=self.context_tokens,
            facts=self.facts,
            ranker=FactRanker(),
            preferences=self.preferences,
            clock=self.clock,
        )
        self.registry = self.new_registry()

    def new_registry(self) -> ConversationRegistry[ConversationActor]:
        supervisor = Supervisor("conversations", backoff=Backoff(FAST), max_restarts=10, window_seconds=60)
        return ConversationRegistry(self.new_actor, supervisor, idle_seconds=3600)

    def new_actor(self, conversation_id: str) -> ConversationActor:
        return ConversationActor(
            conversation_id,
            store=self.store,
            model=self.model,
            toolbox=EmptyToolbox(),
            channel=self.channel,
            settings=TurnSettings("Be brief.", max_steps=4, context_tokens=self.context_tokens),
            setup=self.setup,
            backoff=Backoff(FAST),
        )

    async def say(self, chat: int, user: int | None, text: str, update_id: int | None = None) -> Any:
        message = UserMessage(str(chat), text, ReplyTarget(chat), update_id, user)
        return await self.registry.ask(str(chat), message, timeout=10)

    async def command(
        self, chat: int, user: int | None, name: str, args: str = "", update_id: int | None = None
    ) -> Any:
        command = Command(str(chat), name, ReplyTarget(chat), update_id, user, args)  # type: ignore[arg-type]
        return await self.registry.ask(str(chat), command, timeout=10)

    async def restart(self) -> None:
        """Every actor stops (as at a restart); the next message starts a fresh activation from the store."""
        await self.registry.stop(5)
        self.registry = self.new_registry()

    async def stop(self) -> None:
        await self.registry.stop(5)


def records_of_kind(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [record for record in records if (record.get("role") or record.get("type")) == kind]


def dump(value: Any) -> str:
    return json.dumps(value, default=str)


WaitFor = Callable[[], bool]
