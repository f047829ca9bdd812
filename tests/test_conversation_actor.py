"""The conversation actor: write-through history, replay safety, reset, failures and crashes."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from actors import texts
from actors.conversation import ConversationActor, TurnSettings
from actors.protocol import Command, Reply, ReplyTarget, UserMessage
from actors.registry import ConversationRegistry
from actors.supervisor import Supervisor
from conf import BackoffSettings
from llm import (
    EmptyToolbox,
    LLMUnavailable,
    ModelMessage,
    ModelReply,
    ModelRequest,
    ToolCall,
    ToolResult,
    ToolSpec,
    UserRecord,
    record_to_json,
)
from stores import ConversationStore, FileConversationStore, InMemoryConversationStore, StoreError
from stores.file import conversation_file_name

TARGET = ReplyTarget(chat_id=42)
FAST = BackoffSettings(initial_seconds=0.001, max_seconds=0.005, jitter_seconds=0)


class ScriptedModel:
    """A chat model that answers from a script of callables (or echoes), recording what it saw."""

    def __init__(self, script: Sequence[Callable[[Sequence[ModelMessage]], ModelReply]] = ()) -> None:
        self.script = list(script)
        self.calls: list[list[dict[str, Any]]] = []

    async def complete(self, request: ModelRequest) -> ModelReply:
        messages = request.messages
        self.calls.append([record_to_json(message) for message in messages])
        if self.script:
            return self.script.pop(0)(messages)
        last_user = next(m for m in reversed(messages) if isinstance(m, UserRecord))
        return ModelReply(text=f"echo: {last_user.text}")

    async def aclose(self) -> None:
        return None


def fail_with(exc: Exception) -> Callable[[Sequence[ModelMessage]], ModelReply]:
    def raise_it(messages: Sequence[ModelMessage]) -> ModelReply:
        raise exc

    return raise_it


class RecordingChannel:
    """Collects what the actor delivers and acknowledges; `delivered_event` fires on each delivery."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.done_ids: list[int] = []
        self.typing_blocks = 0
        self.delivered_event = asyncio.Event()

    async def deliver(self, reply: Reply) -> None:
        self.replies.append(reply)
        self.delivered_event.set()

    @asynccontextmanager
    async def typing(self, target: ReplyTarget) -> AsyncIterator[None]:
        self.typing_blocks += 1
        yield

    async def done(self, update_id: int) -> None:
        self.done_ids.append(update_id)

    @property
    def texts(self) -> list[str]:
        return [reply.text for reply in self.replies]


class OneTool:
    """A toolbox with one tool, `clock`, that answers a fixed time."""

    def specs(self) -> Sequence[ToolSpec]:
        return [ToolSpec("clock", "What time it is", {"type": "object", "properties": {}})]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        return ToolResult("12:00")


class World:
    """A registry of conversation actors over one store, model and channel."""

    def __init__(self, model: ScriptedModel, store: ConversationStore | None = None, toolbox: Any = None) -> None:
        self.model = model
        self.store = store or InMemoryConversationStore()
        self.channel = RecordingChannel()
        self.supervisor = Supervisor("conversations", backoff=FAST, max_restarts=10, window_seconds=60)
        self.registry: ConversationRegistry[ConversationActor] = ConversationRegistry(
            self.new_actor, self.supervisor, idle_seconds=60
        )
        self.toolbox = toolbox or EmptyToolbox()

    def new_actor(self, conversation_id: str) -> ConversationActor:
        return ConversationActor(
            conversation_id,
            store=self.store,
            model=self.model,
            toolbox=self.toolbox,
            channel=self.channel,
            settings=TurnSettings("Be brief.", max_steps=4, context_tokens=4000),
        )

    async def ask(self, message: UserMessage | Command) -> Any:
        return await self.registry.ask(message.conversation_id, message, timeout=10)

    async def records(self, conversation_id: str = "42") -> list[dict[str, Any]]:
        return await self.store.load(conversation_id)

    async def stop(self) -> None:
        await self.registry.stop(5)


def user(text: str, update_id: int | None) -> UserMessage:
    return UserMessage("42", text, TARGET, update_id, 42)


async def test_a_message_is_answered_and_every_record_is_written_through() -> None:
    world = World(ScriptedModel())
    assert await world.ask(user("hello", 1)) == "echo: hello"
    records = await world.records()
    assert [record["seq"] for record in records] == [0, 1, 2]
    assert [(record.get("role"), record.get("type")) for record in records] == [
        ("user", None),
        ("assistant", None),
        (None, "delivered"),
    ]
    assert records[0]["content"] == "hello"
    assert all(record["update_id"] == 1 for record in records)
    assert world.channel.texts == ["echo: hello"]
    assert world.channel.done_ids == [1]
    assert world.channel.typing_blocks == 1
    await world.stop()


class CountingStore(InMemoryConversationStore):
    """Records what each append held (on disk an append is one write and one fsync); `fail_next`
    makes the next append fail as a full disk would, before anything is written."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[list[str]] = []
        self.fail_next = False

    async def append(self, conversation_id: str, records: Sequence[dict[str, Any]]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StoreError("No space left on device")
        self.writes.append([record.get("role") or record["type"] for record in records])
        await super().append(conversation_id, records)


async def test_the_users_message_is_stored_with_the_answer_in_one_write_after_the_model_call() -> None:
    store = CountingStore()
    written_when_called: list[list[list[str]]] = []

    def answer(messages: Sequence[ModelMessage]) -> ModelReply:
        written_when_called.append(list(store.writes))
        return ModelReply(text="hi")

    world = World(ScriptedModel([answer]), store)
    assert await world.ask(user("hello", 1)) == "hi"
    assert written_when_called == [[]]  # nothing waited on the disk before the model was called
    assert store.writes == [["user", "assistant"], ["delivered"]]  # two writes per turn, not three
    assert [record["seq"] for record in await world.records()] == [0, 1, 2]
    await world.stop()


async def test_when_the_write_with_the_users_message_fails_the_turn_runs_again_once_it_works() -> None:
    store = CountingStore()

    def answer_then_fill_the_disk(messages: Sequence[ModelMessage]) -> ModelReply:
        store.fail_next = True  # the answer's write, which carries the user's message, fails
        return ModelReply(text="lost with the write")

    world = World(ScriptedModel([answer_then_fill_the_disk]), store)
    assert await world.ask(user("hello", 1)) is None  # parked
    while len(world.channel.replies) < 2:
        world.channel.delivered_event.clear()
        await asyncio.wait_for(world.channel.delivered_event.wait(), 10)
    assert world.channel.texts == [texts.STORE_UNAVAILABLE, "echo: hello"]
    records = await world.records()
    assert [(record["seq"], record.get("role") or record["type"]) for record in records] == [
        (0, "user"),
        (1, "assistant"),
        (2, "delivered"),
    ]
    assert world.channel.done_ids == [1]
    await world.stop()


TWO_TURNS_IN_ORDER = [
    (0, "user", 1),
    (1, "assistant", 1),
    (2, "delivered", 1),
    (3, "user", 2),
    (4, "assistant", 2),
    (5, "delivered", 2),
]
"""(seq, kind, update_id) of two answered messages, as stored."""


async def numbered(world: World) -> list[tuple[int, str, int]]:
    return [
        (record["seq"], record.get("role") or record["type"], record["update_id"]) for record in await world.records()
    ]


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0)


def starts_with_delivered(records: Sequence[Mapping[str, Any]]) -> bool:
    return records[0].get("type") == "delivered"


class GatedStore(CountingStore):
    """Holds each write that `hold_if` picks (by default a delivered marker's) until `release` is set:
    a slow disk. `held` is set once one is held."""

    def __init__(self, hold_if: Callable[[Sequence[Mapping[str, Any]]], bool] = starts_with_delivered) -> None:
        super().__init__()
        self.hold_if = hold_if
        self.release = asyncio.Event()
        self.held = asyncio.Event()

    async def append(self, conversation_id: str, records: Sequence[dict[str, Any]]) -> None:
        if self.hold_if(records):
            self.held.set()
            await self.release.wait()
        await super().append(conversation_id, records)


async def test_the_next_message_is_taken_while_the_answers_delivered_marker_is_written() -> None:
    store = GatedStore()
    world = World(ScriptedModel(), store)
    assert await world.ask(user("one", 1)) == "echo: one"
    await asyncio.wait_for(store.held.wait(), 10)
    assert world.channel.done_ids == []  # the update leaves the ingress log only once its marker is stored
    actor = world.registry.get("42")
    assert actor is not None
    assert not actor.idle
    second = asyncio.ensure_future(world.ask(user("two", 2)))
    await asyncio.wait_for(until(lambda: len(world.model.calls) == 2), 10)  # the marker still held
    store.release.set()
    assert await second == "echo: two"
    assert await numbered(world) == TWO_TURNS_IN_ORDER
    await world.stop()
    assert world.channel.done_ids == [1, 2]
    assert world.channel.texts == ["echo: one", "echo: two"]


async def test_when_the_delivered_marker_fails_it_is_stored_later_and_nothing_is_sent_twice() -> None:
    store = GatedStore()
    world = World(ScriptedModel(), store)
    assert await world.ask(user("one", 1)) == "echo: one"
    await asyncio.wait_for(store.held.wait(), 10)
    second = asyncio.ensure_future(world.ask(user("two", 2)))
    await asyncio.wait_for(until(lambda: len(world.model.calls) == 2), 10)
    store.fail_next = True  # the marker's write fails; the second turn's write is refused after it
    store.release.set()
    assert await second is None  # parked behind the first
    while len(world.channel.replies) < 3:
        world.channel.delivered_event.clear()
        await asyncio.wait_for(world.channel.delivered_event.wait(), 10)
    await world.stop()
    assert world.channel.texts == ["echo: one", texts.STORE_UNAVAILABLE, "echo: two"]
    assert world.channel.done_ids == [1, 2]
    assert await numbered(world) == TWO_TURNS_IN_ORDER


async def test_the_model_sees_the_whole_conversation_in_order() -> None:
    world = World(ScriptedModel())
    for update_id, text in enumerate(["one", "two", "three"], start=1):
        await world.ask(user(text, update_id))
    seen = world.model.calls[-1]
    assert [(m["role"], m["content"]) for m in seen] == [
        ("user", "one"),
        ("assistant", "echo: one"),
        ("user", "two"),
        ("assistant", "echo: two"),
        ("user", "three"),
    ]
    await world.stop()


async def test_a_replayed_update_that_was_delivered_is_skipped() -> None:
    world = World(ScriptedModel())
    await world.ask(user("hello", 5))
    assert await world.ask(user("hello", 5)) is None
    # An older update the conversation holds no record of is not a duplicate: see test_store_faults.
    assert len(world.model.calls) == 1
    assert world.channel.texts == ["echo: hello"]
    assert world.channel.done_ids == [5, 5]
    assert len([r for r in await world.records() if r.get("role") == "user"]) == 1
    await world.stop()


async def test_after_a_restart_an_unanswered_message_gets_its_turn_once() -> None:
    store = InMemoryConversationStore()
    await store.append("42", [{"seq": 0, "role": "user", "content": "still there?", "update_id": 9, "chat_id": 42}])
    world = World(ScriptedModel(), store)
    assert await world.ask(user("still there?", 9)) == "echo: still there?"
    records = await world.records()
    assert [r.get("role") or r.get("type") for r in records] == ["user", "assistant", "delivered"]
    assert world.channel.done_ids == [9]
    await world.stop()


async def test_after_a_restart_an_answer_not_yet_delivered_is_delivered_without_the_model() -> None:
    store = InMemoryConversationStore()
    await store.append(
        "42",
        [
            {"seq": 0, "role": "user", "content": "hi", "update_id": 3, "chat_id": 42},
            {"seq": 1, "role": "assistant", "content": "hello again", "update_id": 3, "chat_id": 42},
        ],
    )
    model = ScriptedModel()
    world = World(model, store)
    assert await world.ask(user("hi", 3)) == "hello again"
    assert model.calls == []
    assert world.channel.replies[0].target == TARGET
    assert (await world.records())[-1]["type"] == "delivered"
    await world.stop()


async def test_reset_starts_afresh_and_keeps_the_archive() -> None:
    world = World(ScriptedModel())
    await world.ask(user("remember 7", 1))
    assert await world.ask(Command("42", "reset", TARGET, 2, 42)) == texts.RESET
    await world.ask(user("what number?", 3))
    assert [(m["role"], m["content"]) for m in world.model.calls[-1]] == [("user", "what number?")]
    records = await world.records()
    assert records[0]["content"] == "remember 7"
    assert any(record.get("type") == "reset" for record in records)
    # A new activation (after eviction or a restart) starts after the reset marker too.
    world.registry.evict_idle(now=float("inf"))
    await world.ask(user("and now?", 4))
    assert [m["content"] for m in world.model.calls[-1] if m["role"] == "user"] == ["what number?", "and now?"]
    await world.stop()


async def test_help_and_start_answer_without_the_model() -> None:
    model = ScriptedModel()
    world = World(model)
    assert await world.ask(Command("42", "help", TARGET, 1, 42)) == texts.HELP
    assert await world.ask(Command("42", "start", TARGET, 2, 42)) == texts.START
    assert model.calls == []
    assert await world.ask(Command("42", "help", TARGET, 1, 42)) is None
    await world.stop()


async def test_a_model_outage_is_told_to_the_user_and_the_next_message_works() -> None:
    model = ScriptedModel([fail_with(LLMUnavailable("down", status=503))])
    world = World(model)
    assert await world.ask(user("hello", 1)) == texts.MODEL_UNAVAILABLE
    assert await world.ask(user("again", 2)) == "echo: again"
    assert world.channel.texts == [texts.MODEL_UNAVAILABLE, "echo: again"]
    assert [m["content"] for m in model.calls[-1] if m["role"] == "user"] == ["hello", "again"]
    await world.stop()


async def test_a_crash_mid_turn_restarts_the_actor_and_the_message_is_answered_once() -> None:
    model = ScriptedModel([fail_with(RuntimeError("bug in the middle of a turn"))])
    world = World(model)
    assert await world.ask(user("hello", 1)) == "echo: hello"
    records = await world.records()
    assert [r.get("role") or r.get("type") for r in records] == ["user", "assistant", "delivered"]
    assert world.channel.texts == ["echo: hello"]
    await world.stop()


async def test_a_poison_message_is_dead_lettered_the_user_told_and_the_actor_goes_on() -> None:
    boom = fail_with(RuntimeError("always"))
    model = ScriptedModel([boom, boom])
    world = World(model)
    with pytest.raises(Exception, match="dead-lettered"):
        await world.ask(user("poison", 1))
    assert world.channel.texts == [texts.DEAD_LETTER]
    assert world.channel.done_ids == [1]
    assert await world.ask(user("next", 2)) == "echo: next"
    assert await world.ask(user("poison", 1)) is None  # a replay of the dead letter is skipped
    # The poison message's own record was never stored (the turn that would have stored it crashed):
    # the dead-letter marker and the next turn are numbered on from what the store holds.
    records = await world.records()
    assert [(record["seq"], record.get("role") or record["type"]) for record in records] == [
        (0, "delivered"),
        (1, "user"),
        (2, "assistant"),
        (3, "delivered"),
    ]
    await world.stop()


async def test_tool_records_are_written_through_with_the_update_id() -> None:
    call = ToolCall("call-1", "clock", {}, "{}")
    model = ScriptedModel(
        [lambda messages: ModelReply(text="", tool_calls=(call,)), lambda messages: ModelReply(text="It is noon.")]
    )
    world = World(model, toolbox=OneTool())
    assert await world.ask(user("time?", 1)) == "It is noon."
    records = await world.records()
    assert [r.get("role") or r.get("type") for r in records] == ["user", "assistant", "tool", "assistant", "delivered"]
    assert records[2]["content"] == "12:00"
    assert {r["update_id"] for r in records} == {1}
    await world.stop()


async def test_tool_calls_interrupted_by_a_crash_are_closed_before_the_turn_resumes() -> None:
    store = InMemoryConversationStore()
    await store.append(
        "42",
        [
            {"seq": 0, "role": "user", "content": "time?", "update_id": 1, "chat_id": 42},
            {
                "seq": 1,
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "a", "name": "clock", "arguments": {}},
                    {"id": "b", "name": "clock", "arguments": {}},
                ],
                "update_id": 1,
            },
            {
                "seq": 2,
                "role": "tool",
                "tool_call_id": "a",
                "name": "clock",
                "content": "12:00",
                "is_error": False,
                "update_id": 1,
            },
        ],
    )
    model = ScriptedModel([lambda messages: ModelReply(text="Noon, I think.")])
    world = World(model, store, OneTool())
    assert await world.ask(user("time?", 1)) == "Noon, I think."
    seen = model.calls[0]
    assert [m.get("tool_call_id") for m in seen if m["role"] == "tool"] == ["a", "b"]
    assert seen[-1]["is_error"] is True
    await world.stop()


async def test_console_messages_without_update_ids_are_all_answered() -> None:
    world = World(ScriptedModel())
    assert await world.ask(user("a", None)) == "echo: a"
    assert await world.ask(user("a", None)) == "echo: a"
    assert world.channel.done_ids == []
    assert len(await world.records()) == 4
    await world.stop()


async def test_chats_are_independent_while_one_turn_is_slow() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    class SlowForOne(ScriptedModel):
        async def complete(self, request: ModelRequest) -> ModelReply:
            last = request.messages[-1]
            if isinstance(last, UserRecord) and last.text == "slow":
                entered.set()
                await release.wait()
            return await super().complete(request)

    world = World(SlowForOne())
    slow = asyncio.create_task(world.registry.ask("42", user("slow", 1)))
    await entered.wait()
    fast = await world.registry.ask("43", UserMessage("43", "fast", ReplyTarget(43), 2, 43), timeout=5)
    assert fast == "echo: fast"
    assert not slow.done()
    release.set()
    assert await slow == "echo: slow"
    await world.stop()


async def test_an_empty_answer_still_reaches_the_user() -> None:
    world = World(ScriptedModel([lambda messages: ModelReply(text="  ")]))
    assert await world.ask(user("say nothing", 1)) == texts.EMPTY_ANSWER
    assert world.channel.texts == [texts.EMPTY_ANSWER]
    await world.stop()


async def test_an_old_format_history_is_resumed_where_it_stopped(tmp_path: Path) -> None:
    # Written before records were typed: update 11 was answered (in a forum topic, quoting the
    # user's message) but its delivery was never recorded.
    shutil.copy(
        Path(__file__).parent / "fixtures" / "history_before_typed_records.jsonl",
        tmp_path / conversation_file_name("42"),
    )
    model = ScriptedModel()
    async with FileConversationStore(tmp_path) as store:
        world = World(model, store)
        assert await world.ask(user("still there?", 11)) == "Yes, still here."
        assert model.calls == []
        assert world.channel.replies[0].target == ReplyTarget(42, message_thread_id=5, reply_to_message_id=77)
        assert await world.ask(user("what did I ask you to remember?", 12)) == "echo: what did I ask you to remember?"
        # The model sees what came after the reset, without the notices.
        assert [(m["role"], m["content"]) for m in model.calls[0]] == [
            ("user", "remember 7"),
            ("user", "still there?"),
            ("assistant", "Yes, still here."),
            ("user", "what did I ask you to remember?"),
        ]
        await world.stop()
        records = await store.load("42")
    assert [r.get("role") or r.get("type") for r in records[15:]] == ["delivered", "user", "assistant", "delivered"]
